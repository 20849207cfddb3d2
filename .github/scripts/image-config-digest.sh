#!/usr/bin/env bash
# Prints the config digest (sha256:…) of the single image in a `docker save` archive: the image's identity,
# the same whether it sits in a tarball, the local engine or a registry manifest.
set -euo pipefail
archive="${1:?usage: image-config-digest.sh IMAGE.tar}"
config="$(tar -xOf "${archive}" manifest.json | jq -r 'if length == 1 then .[0].Config else error("expected exactly one image") end')"
hex="${config#blobs/sha256/}"
hex="${hex%.json}"
if ! [[ "${hex}" =~ ^[0-9a-f]{64}$ ]]; then
  echo "image-config-digest: unexpected config entry '${config}' in ${archive}" >&2
  exit 1
fi
# The file must hash to its name, or the archive was altered.
actual="$(tar -xOf "${archive}" "${config}" | sha256sum | cut -d' ' -f1)"
if [ "${actual}" != "${hex}" ]; then
  echo "image-config-digest: ${config} hashes to ${actual}" >&2
  exit 1
fi
echo "sha256:${hex}"
