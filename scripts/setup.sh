#!/usr/bin/env bash
# Installs every Debian package that amber's build, guest images, tests and benchmarks need.
# Idempotent: packages already present are skipped, and apt is not touched if nothing is missing.
# usage: scripts/setup.sh          install what is missing (`make setup`; make run and make test)
#        scripts/setup.sh --check  only say what is missing, and fail if anything is (plain make)
set -euo pipefail
check_only=0
[ "${1:-}" = --check ] && check_only=1

PACKAGES=(
    build-essential pkg-config clang libclang-rt-14-dev clang-format
    libseccomp-dev libjson-c-dev libcmocka-dev liburing-dev
    acpica-tools
    qemu-system-x86 busybox-static cpio e2fsprogs lz4 zstd xz-utils kmod binutils
    python3 python3-pytest socat iproute2 strace procps util-linux coreutils
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$check_only" = 1 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run \`make setup\` (it installs them with apt-get), then make again" >&2
    exit 1
fi

echo "setup: installing ${missing[*]}"
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
