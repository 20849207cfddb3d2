#!/usr/bin/env bash
# Prints the config digest of the linux/amd64 image a registry reference points at (following an index if needed),
# to compare with the config digest of the archive that was scanned.
set -euo pipefail
ref="${1:?usage: registry-config-digest.sh REGISTRY/NAME@sha256:...}"
raw="$(docker buildx imagetools inspect --raw "${ref}")"
if [ "$(jq -r 'has("manifests")' <<<"${raw}")" = "true" ]; then
  child="$(jq -r '[.manifests[] | select(.platform.os == "linux" and .platform.architecture == "amd64")][0].digest' <<<"${raw}")"
  raw="$(docker buildx imagetools inspect --raw "${ref%@*}@${child}")"
fi
jq -r '.config.digest' <<<"${raw}"
