#!/usr/bin/env bash
# Smoke-tests a live tiny-llm URL: readiness, liveness, the model it serves, chat page, /generate and a streamed
# chat completion.
# Usage: smoke-test.sh https://SERVICE-URL  (also works against http://127.0.0.1:8000 for a local run)
# Environment (all optional):
#   API_KEY               sent as a Bearer token; the script then also checks that a call without it is refused
#   EXPECT_MODEL_SOURCE   the model the image was built from: empty for the default preset trained in the build,
#                         hf:ORG/NAME[@REVISION], gs://BUCKET/PREFIX or ./models/DIR; /v1/models must report it
#   EXPECT_FINETUNED      true when that source was fine-tuned on the corpus
#   EXPECT_PARAMETERS     the parameter count the build measured
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

# The key goes to curl through a header file (mode 600), never on a command line.
auth=()
if [ -n "${API_KEY:-}" ]; then
  (umask 077 && printf 'Authorization: Bearer %s\n' "${API_KEY}" >"${work}/auth-header")
  auth=(-H "@${work}/auth-header")
fi

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

# The model: where it came from and its size, as asked for.
code="$(curl -s -o "${work}/models.json" -w '%{http_code}' --max-time 20 "${auth[@]}" "${base}/v1/models")"
[ "${code}" = "200" ] || fail "GET /v1/models answered ${code}: $(head -c 300 "${work}/models.json")"
expected="${EXPECT_MODEL_SOURCE:-}"
if [ -z "${expected}" ]; then
  jq -e '.data[0].source | .kind == "trained" and .preset == "default"' "${work}/models.json" >/dev/null ||
    fail "/v1/models does not report the default preset trained in the build: $(jq -c '.data[0].source' "${work}/models.json")"
else
  uri="${expected}"
  revision=""
  case "${expected}" in hf:*@*) uri="${expected%@*}" revision="${expected##*@}" ;; esac
  case "${uri}" in
    ./* | [!a-z]*) match='(.uri // "") | endswith("/" + ($uri | sub("^\\./"; "")))' ;;
    *) match='.uri == $uri' ;;
  esac
  jq -e --arg uri "${uri}" --arg revision "${revision}" \
    ".data[0].source | (${match}) and (\$revision == \"\" or .revision == \$revision)" \
    "${work}/models.json" >/dev/null ||
    fail "/v1/models does not report ${expected}: $(jq -c '.data[0].source' "${work}/models.json")"
  fine_tuned="$([ "${EXPECT_FINETUNED:-false}" = true ] && echo true || echo false)"
  jq -e --argjson f "${fine_tuned}" '.data[0].source.fine_tuned == $f' "${work}/models.json" >/dev/null ||
    fail "/v1/models says fine_tuned is not ${fine_tuned}"
fi
if [ -n "${EXPECT_PARAMETERS:-}" ]; then
  jq -e --argjson n "${EXPECT_PARAMETERS}" '.data[0].parameters == $n' "${work}/models.json" >/dev/null ||
    fail "/v1/models reports $(jq '.data[0].parameters' "${work}/models.json") parameters, the build measured ${EXPECT_PARAMETERS}"
fi
echo "smoke: ok  GET /v1/models → $(jq -r '.data[0].source.description + ", " + (.data[0].parameters | tostring) + " parameters"' "${work}/models.json")"

if [ -n "${API_KEY:-}" ]; then
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "${base}/v1/models")"
  [ "${code}" = "401" ] || fail "GET /v1/models without the API key answered ${code}, not 401"
  echo "smoke: ok  GET /v1/models without the key → 401"
fi

code="$(curl -s -o "${work}/page.html" -w '%{http_code}' --max-time 20 "${base}/")"
[ "${code}" = "200" ] && grep -qi '<html' "${work}/page.html" || fail "GET / answered ${code} without HTML"
echo "smoke: ok  GET / 200 ($(wc -c <"${work}/page.html") bytes)"

code="$(curl -s -o "${work}/generate.json" -w '%{http_code}' --max-time 60 "${auth[@]}" \
  -H 'content-type: application/json' -d '{"prompt":"What does this pipeline do?"}' "${base}/generate")"
[ "${code}" = "200" ] || fail "POST /generate answered ${code}: $(head -c 300 "${work}/generate.json")"
jq -e '.response | type == "string"' "${work}/generate.json" >/dev/null || fail "POST /generate has no string response"
echo "smoke: ok  POST /generate → $(jq -c '.response' "${work}/generate.json" | head -c 120)"

code="$(curl -s -N -o "${work}/stream.txt" -w '%{http_code}' --max-time 60 "${auth[@]}" -H 'content-type: application/json' \
  -d '{"model":"tiny-llm","stream":true,"max_tokens":24,"messages":[{"role":"user","content":"What is Cloud Run?"}]}' \
  "${base}/v1/chat/completions")"
[ "${code}" = "200" ] || fail "streamed chat completion answered ${code}: $(head -c 300 "${work}/stream.txt")"
chunks="$(grep -c '^data: {' "${work}/stream.txt" || true)"
[ "${chunks}" -gt 0 ] || fail "the stream has no data chunks"
[ "$(grep '^data: ' "${work}/stream.txt" | tail -n 1)" = "data: [DONE]" ] || fail "the stream does not end with data: [DONE]"
echo "smoke: ok  streamed chat completion: ${chunks} chunks, then [DONE]"
echo "smoke: all checks passed for ${base}"
