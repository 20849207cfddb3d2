#!/usr/bin/env bash
# Smoke-tests a live tiny-llm URL: readiness, liveness, chat page, /generate and a streamed chat completion.
# Usage: smoke-test.sh https://SERVICE-URL  (also works against http://127.0.0.1:8000 for a local run)
set -euo pipefail
base="${1:?usage: smoke-test.sh BASE_URL}"
base="${base%/}"
ready_timeout="${READY_TIMEOUT_SECONDS:-180}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

fail() {
  echo "smoke: FAIL $*" >&2
  exit 1
}

# Cold start: Cloud Run starts an instance on the first request; poll until the model is loaded.
deadline=$((SECONDS + ready_timeout))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${base}/ready")" = "200" ]; do
  [ "${SECONDS}" -lt "${deadline}" ] || fail "/ready did not answer 200 within ${ready_timeout}s"
  sleep 3
done
echo "smoke: ok  GET /ready 200"

code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${base}/health")"
[ "${code}" = "200" ] || fail "GET /health answered ${code}"
echo "smoke: ok  GET /health 200"

code="$(curl -s -o "${work}/page.html" -w '%{http_code}' --max-time 20 "${base}/")"
[ "${code}" = "200" ] && grep -qi '<html' "${work}/page.html" || fail "GET / answered ${code} without HTML"
echo "smoke: ok  GET / 200 ($(wc -c <"${work}/page.html") bytes)"

code="$(curl -s -o "${work}/generate.json" -w '%{http_code}' --max-time 60 \
  -H 'content-type: application/json' -d '{"prompt":"What does this pipeline do?"}' "${base}/generate")"
[ "${code}" = "200" ] || fail "POST /generate answered ${code}: $(head -c 300 "${work}/generate.json")"
jq -e '.response | type == "string"' "${work}/generate.json" >/dev/null || fail "POST /generate has no string response"
echo "smoke: ok  POST /generate → $(jq -c '.response' "${work}/generate.json" | head -c 120)"

code="$(curl -s -N -o "${work}/stream.txt" -w '%{http_code}' --max-time 60 -H 'content-type: application/json' \
  -d '{"model":"tiny-llm","stream":true,"max_tokens":24,"messages":[{"role":"user","content":"What is Cloud Run?"}]}' \
  "${base}/v1/chat/completions")"
[ "${code}" = "200" ] || fail "streamed chat completion answered ${code}: $(head -c 300 "${work}/stream.txt")"
chunks="$(grep -c '^data: {' "${work}/stream.txt" || true)"
[ "${chunks}" -gt 0 ] || fail "the stream has no data chunks"
[ "$(grep '^data: ' "${work}/stream.txt" | tail -n 1)" = "data: [DONE]" ] || fail "the stream does not end with data: [DONE]"
echo "smoke: ok  streamed chat completion: ${chunks} chunks, then [DONE]"
echo "smoke: all checks passed for ${base}"
