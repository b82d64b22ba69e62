#!/usr/bin/env bash
# Installs every Debian package that amber's build, guest images, tests and benchmarks need.
# Idempotent: packages already present are skipped, and apt is not touched if nothing is missing.
# usage: scripts/setup.sh          install what is missing (`make setup`; make run and make test)
#        scripts/setup.sh --check  only say what is missing, and fail if anything is (plain make)
#        scripts/setup.sh --stack backports
#   --stack backports (or TESTHOST_STACK=backports) also unpacks the second test-host pair,
#   bookworm-backports' QEMU and Linux, into build/testhost/backports/ (apt-get download +
#   dpkg -x from Debian's archive, with a private apt state: nothing is installed, the
#   system's apt sources are left alone). tests/testhost/testhost.sh uses it with
#   TESTHOST_STACK=backports.
set -euo pipefail
check_only=0
[ "${1:-}" = --check ] && check_only=1

stack=${TESTHOST_STACK:-debian12}
if [ "${1:-}" = "--stack" ]; then
    stack=${2:?usage: scripts/setup.sh [--stack debian12|backports]}
fi
case "$stack" in
debian12 | backports) ;;
*)
    echo "setup: the test-host stack is debian12 or backports, not '$stack'" >&2
    exit 2
    ;;
esac

PACKAGES=(
    build-essential pkg-config clang libclang-rt-14-dev clang-format
    libseccomp-dev libjson-c-dev libcmocka-dev liburing-dev
    acpica-tools
    qemu-system-x86 busybox-static cpio e2fsprogs lz4 zstd xz-utils kmod binutils
    python3 python3-pytest socat iproute2 strace procps util-linux coreutils tmux
    nftables # sandbox networking's egress rules and NAT (docs/network.md)
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ] && [ "$check_only" = 1 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run \`make setup\` (it installs them with apt-get), then make again" >&2
    exit 1
fi
[ "$check_only" = 1 ] && exit 0

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "setup: done"
fi

# The second test-host pair: bookworm-backports' QEMU (binary and data, run with -L pointing at
# its own data directory) and generic kernel, unpacked, never installed.
backports() {
    local dir apt pkgs p
    dir=$(cd "$(dirname "$0")/.." && pwd -P)/build/testhost/backports
    [ -f "$dir/.ready" ] && return 0
    echo "setup: unpacking the bookworm-backports test-host pair into $dir"
    apt=$dir/apt
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir/deb"
    echo "deb http://deb.debian.org/debian bookworm-backports main" >"$apt/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Get::List-Cleanup=0")
    apt-get "${opts[@]}" update -qq
    # The kernel meta-package names the versioned image; QEMU's data holds its firmware, and
    # seabios the BIOS that QEMU's data directory links to.
    p=$(apt-cache "${opts[@]}" depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    [ -n "$p" ] || { echo "setup: bookworm-backports names no kernel image" >&2; return 1; }
    pkgs=("$p" qemu-system-x86 qemu-system-data seabios)
    (cd "$dir/deb" && apt-get "${opts[@]}" download -q "${pkgs[@]}")
    rm -rf "$dir/kernel" "$dir/qemu"
    mkdir -p "$dir/kernel" "$dir/qemu"
    dpkg -x "$dir/deb/${p}_"*.deb "$dir/kernel"
    for p in qemu-system-x86 qemu-system-data seabios; do
        dpkg -x "$dir/deb/${p}_"*.deb "$dir/qemu"
    done
    "$dir/qemu/usr/bin/qemu-system-x86_64" --version | head -n1
    ls "$dir/kernel/boot/"vmlinuz-*
    touch "$dir/.ready"
}
[ "$stack" = backports ] && backports
exit 0
