#!/usr/bin/env bash
# QEMU reference for the boot benchmark, and a check that the guest images boot (ACPI virtio-mmio).
# usage: bench/qemu_ref.sh [-n RUNS] [--rootfs] [--pvh] [--test ACTION] [--show] ...
# Runs inside the test host (scripts/testhost.sh) when this CPU has no vmx/svm.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$repo"
if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
    echo "qemu_ref: no vmx/svm here: running inside the test host" >&2
    exec scripts/testhost.sh -- bash bench/qemu_ref.sh "$@" </dev/null
fi
exec /usr/bin/python3 bench/qemu_ref.py "$@"
