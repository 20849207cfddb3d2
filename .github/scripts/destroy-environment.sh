#!/usr/bin/env bash
# Destroys one ephemeral environment completely, even after a cancelled apply: recovers a stale state lock, runs
# terraform destroy, then deletes by name what state lost (the Cloud Run service, the image), destroys the API key
# version the deploy added (once no service can read it) and last the state.
#
#   destroy-environment.sh ENVIRONMENT_ID [IMAGE_REF]
#
# Runs in terraform/ (the per-run module) with gcloud authenticated. STATE_BUCKET and TF_STATE_PREFIX_ROOT locate
# the environment's state; IMAGE_REF (optional) is an image pushed for it, deleted even when deploy recorded
# nothing. Callers guarantee no live writer: the pipeline's concurrency group, and the janitor only touches
# environments whose run has finished. So a lock that outlives TF_LOCK_TIMEOUT is stale and is forced open.
# Exits non-zero, with the reason, when anything of the environment may remain.
set -euo pipefail

env_id="${1:?usage: destroy-environment.sh ENVIRONMENT_ID [IMAGE_REF]}"
extra_image="${2:-}"
: "${STATE_BUCKET:?STATE_BUCKET is not set}"
: "${TF_STATE_PREFIX_ROOT:?TF_STATE_PREFIX_ROOT is not set}"
lock_timeout="${TF_LOCK_TIMEOUT:-2m}"
state_url="gs://${STATE_BUCKET}/${TF_STATE_PREFIX_ROOT}/${env_id}"
# The per-run module names the service tiny-llm-<environment id> (terraform/main.tf, local.name).
service_name="tiny-llm-${env_id}"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

say() { echo "${env_id}: $*"; }
fail() {
  echo "::error::${env_id}: $*" >&2
  exit 1
}

# Copies a GCS object to a local file. Returns 1 only when the object does not exist; any other failure
# (authentication, permission, network) stops the script, so an unreadable environment is never taken as gone.
fetch_object() {
  if gcloud storage cp "$1" "$2" 2>"${work}/fetch.err"; then return 0; fi
  if grep -q 'matched no objects' "${work}/fetch.err"; then return 1; fi
  cat "${work}/fetch.err" >&2
  fail "cannot read $1"
}

# Deletes an Artifact Registry image (REGION-docker.pkg.dev/PROJECT/REPO/NAME@sha256:...) and its tags, if present.
delete_image() {
  local ref="$1" path digest versions
  path="${ref%@*}"
  digest="${ref##*@}"
  [[ "${ref}" == *@sha256:* ]] || fail "not an image digest reference: ${ref}"
  versions="$(gcloud artifacts docker images list "${path}" --format='value(version)')" ||
    fail "cannot list the images of ${path}"
  if grep -qxF "${digest}" <<<"${versions}"; then
    gcloud artifacts docker images delete "${ref}" --delete-tags --quiet || fail "cannot delete ${ref}"
    say "deleted image ${ref}"
  else
    say "image ${ref} is already gone"
  fi
}

# Deletes the environment's Cloud Run service by name if it still exists (an apply cancelled before it wrote state).
delete_service() {
  local project="$1" region="$2" names
  names="$(gcloud run services list --project "${project}" --region "${region}" \
    --filter="metadata.name=${service_name}" --format='value(metadata.name)')" ||
    fail "cannot list the Cloud Run services of ${project} in ${region}"
  if grep -qxF "${service_name}" <<<"${names}"; then
    say "service ${service_name} outlived its state: deleting it by name"
    gcloud run services delete "${service_name}" --project "${project}" --region "${region}" --quiet ||
      fail "cannot delete service ${service_name}"
  fi
}

# Destroys the Secret Manager version of the API key that the deploy added for this environment (its value goes
# for good); a version already destroyed or gone is fine, any other failure is not.
destroy_key_version() {
  local project="$1" secret="$2" version="$3" state
  if ! state="$(gcloud secrets versions describe "${version}" --secret "${secret}" --project "${project}" \
    --format='value(state)' 2>"${work}/secret.err")"; then
    if grep -q 'NOT_FOUND' "${work}/secret.err"; then
      say "API key version ${secret}/${version} is already gone"
      return 0
    fi
    cat "${work}/secret.err" >&2
    fail "cannot read API key version ${secret}/${version}"
  fi
  if [ "${state}" = "DESTROYED" ]; then
    say "API key version ${secret}/${version} is already destroyed"
    return 0
  fi
  gcloud secrets versions destroy "${version}" --secret "${secret}" --project "${project}" --quiet ||
    fail "cannot destroy API key version ${secret}/${version}"
  say "destroyed API key version ${secret}/${version}"
}

# terraform destroy, output kept for the lock check.
run_destroy() {
  terraform destroy -auto-approve -input=false -lock-timeout="${lock_timeout}" -var-file=inputs.tfvars.json 2>&1 |
    tee "${work}/destroy.log"
}

if ! fetch_object "${state_url}/inputs.tfvars.json" inputs.tfvars.json; then
  say "no recorded inputs: deploy stopped before creating anything"
  if [ -n "${extra_image}" ]; then delete_image "${extra_image}"; fi
  exit 0
fi
project="$(jq -er '.project_id' inputs.tfvars.json)" || fail "recorded inputs have no project_id"
region="$(jq -er '.region' inputs.tfvars.json)" || fail "recorded inputs have no region"
image="$(jq -er '.image' inputs.tfvars.json)" || fail "recorded inputs have no image"
# Absent from environments deployed without an API key (and from those recorded before keys existed).
key_secret="$(jq -er '.api_key_secret' inputs.tfvars.json)" || key_secret=""
key_version="$(jq -er '.api_key_secret_version' inputs.tfvars.json)" || key_version=""

rm -rf .terraform
terraform init -input=false -reconfigure \
  -backend-config="bucket=${STATE_BUCKET}" -backend-config="prefix=${TF_STATE_PREFIX_ROOT}/${env_id}"

destroyed=true
if ! run_destroy; then
  if grep -q 'Error acquiring the state lock' "${work}/destroy.log"; then
    # The GCS backend's lock id is the lock object's generation; Terraform prints it, the object carries it too.
    lock_id="$(sed 's/\x1b\[[0-9;]*m//g' "${work}/destroy.log" |
      grep -E '^[^A-Za-z0-9]*ID:[[:space:]]+[0-9]+[[:space:]]*$' | head -n 1 | grep -oE '[0-9]+' || true)"
    if [ -z "${lock_id}" ]; then
      lock_id="$(gcloud storage objects describe "${state_url}/default.tflock" --format='value(generation)')" ||
        fail "the state is locked and the lock object cannot be read"
    fi
    echo "::warning::${env_id}: state lock ${lock_id} is stale (no other job can hold it): forcing it open"
    terraform force-unlock -force "${lock_id}" || fail "cannot remove the stale state lock ${lock_id}"
    run_destroy || destroyed=false
  else
    destroyed=false
  fi
fi

# Whatever state did not know about: the service first, then the image it ran.
delete_service "${project}" "${region}"
delete_image "${image}"
if [ -n "${extra_image}" ] && [ "${extra_image}" != "${image}" ]; then delete_image "${extra_image}"; fi
# The service is gone now: nothing reads the key version any more.
if [ -n "${key_secret}" ] && [ -n "${key_version}" ]; then
  destroy_key_version "${project}" "${key_secret}" "${key_version}"
fi

if [ "${destroyed}" != true ]; then
  fail "terraform destroy failed; the state stays in ${state_url}/ for the next attempt"
fi
gcloud storage rm --recursive "${state_url}/" || fail "cannot remove ${state_url}/"
say "destroyed"
