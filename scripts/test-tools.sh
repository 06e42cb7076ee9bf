#!/usr/bin/env bash
# Runs before `npm test`: installs the real tools the suites drive (Debian packages) when they are missing,
# so one command runs the whole suite on a fresh machine. Without root (and without password-less sudo) it
# only says what is missing; the suites then skip with a message, except under CI=true, where they fail.
set -euo pipefail

missing=()
command -v bazel >/dev/null 2>&1 || missing+=(bazel-bootstrap)   # the real Bazel client (4.2.3)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)                    # reference server for tests and bench
command -v openssl >/dev/null 2>&1 || missing+=(openssl)            # test certificates for TLS
dpkg -s libnetty-tcnative-jni >/dev/null 2>&1 || missing+=(libnetty-tcnative-jni)  # OpenSSL for Bazel 4.2.3's grpcs://
command -v strace >/dev/null 2>&1 || missing+=(strace)              # checks the disk store syncs before it publishes
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)         # prlimit and unshare: descriptor limits, a tiny tmpfs
[ ${#missing[@]} -eq 0 ] && exit 0

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
