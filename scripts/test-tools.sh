#!/usr/bin/env bash
# Runs before `npm test`: installs the real tools the suites drive (Debian packages: Bazel, bubblewrap, nginx, openssl, Redis and Sentinel,
# qemu, systemd-analyze, Chromium) when they are missing, and prepares the arm64 toolchain for the fleet suite,
# so one command runs the whole suite on a fresh machine. Without root (and without password-less sudo) it
# only says what is missing; the suites then skip with a message, except under CI=true, where they fail.
set -euo pipefail

missing=()
command -v bazel >/dev/null 2>&1 || missing+=(bazel-bootstrap)   # the real Bazel client (4.2.3)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)         # the action sandbox every local action runs in
command -v bst >/dev/null 2>&1 || missing+=(buildstream)           # a real Remote Asset client (bst 1.6.8)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)                    # reference server for tests and bench
command -v openssl >/dev/null 2>&1 || missing+=(openssl)            # test certificates for TLS
dpkg -s libnetty-tcnative-jni >/dev/null 2>&1 || missing+=(libnetty-tcnative-jni)  # OpenSSL for Bazel 4.2.3's grpcs://
command -v strace >/dev/null 2>&1 || missing+=(strace)              # checks the disk store syncs before it publishes
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)         # prlimit and unshare: descriptor limits, a tiny tmpfs
# The docker runner's suites start a private dockerd of their own (test/executor/docker/engine.ts); installing
# the package starts nothing. busybox-static is the root file system of the test images.
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)             # the fleet's queue (tests start their own servers)
[ -x /usr/bin/redis-sentinel ] || missing+=(redis-sentinel)         # the failover suite's Sentinels (a package of its own)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)  # the arm64 worker of the fleet suite
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)    # `systemd-analyze verify` of deploy/systemd
[ -x /usr/bin/chromium ] || missing+=(chromium)                     # the status page's browser test (playwright-core drives it)

# The arm64 toolchain (binfmt registration, arm64 sysroot and Node, cached under ~/.cache/larder-test/arm64);
# the fleet suite runs the same idempotent script, and fails under CI=true if it cannot.
arm64_setup() {
  bash "$(dirname "$0")/arm64-setup.sh" >/dev/null || echo "larder tests: scripts/arm64-setup.sh failed; the fleet suite will say why" >&2
}
if [ ${#missing[@]} -eq 0 ]; then
  if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then arm64_setup; fi
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "larder tests: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  exit 0
fi
echo "larder tests: installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
arm64_setup
