#!/usr/bin/env bash
# Installs every Debian package that amber's build, guest images, tests and benchmarks need.
# Idempotent: packages already present are skipped, and apt is not touched if nothing is missing.
set -euo pipefail

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

echo "setup: installing ${missing[*]}"
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
