#!/usr/bin/env bash
# The janitor's sweep: lists every environment's state prefix in the bucket, reads the expiry its deploy recorded
# (created_at + ttl_hours), and destroys each expired environment whose pipeline run has finished, image included
# (destroy-environment.sh). Fails when it cannot list, read or destroy, never by staying silent.
#
# Runs in terraform/ with gcloud authenticated. STATE_BUCKET and TF_STATE_PREFIX_ROOT locate the state;
# GITHUB_REPOSITORY and GH_TOKEN (actions: read) let it ask GitHub about a run; DRY_RUN=true only reports.
set -euo pipefail

: "${STATE_BUCKET:?STATE_BUCKET is not set}"
: "${TF_STATE_PREFIX_ROOT:?TF_STATE_PREFIX_ROOT is not set}"
: "${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is not set}"
dry_run="${DRY_RUN:-false}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root_url="gs://${STATE_BUCKET}/${TF_STATE_PREFIX_ROOT}/"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

# Every environment has a prefix; an empty root (no environment at all) is the only listing failure that is fine.
if ! listing="$(gcloud storage ls "${root_url}" 2>"${work}/ls.err")"; then
  if ! grep -q 'matched no objects' "${work}/ls.err"; then
    cat "${work}/ls.err" >&2
    echo "::error::cannot list ${root_url}: no environment was checked"
    exit 1
  fi
  listing=""
fi

now="$(date +%s)"
failed=0
checked=0
for url in ${listing}; do
  [[ "${url}" == */ ]] || continue
  env_id="$(basename "${url%/}")"
  checked=$((checked + 1))
  if ! gcloud storage cp "${url}inputs.tfvars.json" "${work}/inputs.json" 2>"${work}/cp.err"; then
    if grep -q 'matched no objects' "${work}/cp.err"; then
      echo "::warning::${env_id}: state without recorded inputs, left for a person to look at"
    else
      cat "${work}/cp.err" >&2
      echo "::error::${env_id}: cannot read its recorded inputs"
      failed=1
    fi
    continue
  fi
  # Same rule as terraform/main.tf's expires_at: created_at + ttl_hours.
  if ! expires="$(jq -er '.created_at + 3600 * .ttl_hours' "${work}/inputs.json")"; then
    echo "::warning::${env_id}: inputs without created_at/ttl_hours, left for a person to look at"
    continue
  fi
  if [ "${now}" -lt "${expires}" ]; then
    echo "${env_id}: expires in $(((expires - now) / 60)) min, kept"
    continue
  fi

  # The environment id is <run id>-<attempt>. While that run goes on, its own destroy job owns the environment.
  run_id="${env_id%-*}"
  if status="$(gh api "repos/${GITHUB_REPOSITORY}/actions/runs/${run_id}" --jq '.status' 2>"${work}/gh.err")"; then
    if [ "${status}" != "completed" ]; then
      echo "${env_id}: expired, but run ${run_id} is ${status}: kept for its own destroy job"
      continue
    fi
  elif grep -q 'HTTP 404' "${work}/gh.err"; then
    status="deleted"
  else
    cat "${work}/gh.err" >&2
    echo "::error::${env_id}: cannot ask GitHub whether run ${run_id} has finished"
    failed=1
    continue
  fi

  echo "${env_id}: expired $(((now - expires) / 60)) min ago, run ${run_id} ${status}"
  if [ "${dry_run}" = "true" ]; then continue; fi
  if bash "${here}/destroy-environment.sh" "${env_id}"; then
    echo "${env_id}: destroyed" >>"${summary}"
  else
    echo "::error::${env_id}: destroy failed"
    failed=1
  fi
done

echo "janitor: ${checked} environment(s) checked"
exit "${failed}"
