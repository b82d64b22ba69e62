#!/usr/bin/env bash
# make bench: runs every benchmark and prints the tables (also written to build/bench/results.md).
# With vmx/svm everything runs directly here. Without, the tiny-guest pause figure runs directly on
# this host's /dev/kvm (if it has one) and everything that boots Linux runs inside ONE test-host
# boot (scripts/testhost.sh). Env: BENCH_QUICK=1, BENCH_RUNS, BENCH_CYCLES, BENCH_SDK_RUNS,
# BENCH_ONLY, BENCH_BLOCK_FS (see bench/bench.py). The test host runs with transparent huge pages on
# (TESTHOST_THP, default always here), as a stock kernel does, for amber and QEMU alike.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$repo"
out=build/bench
mkdir -p "$out"
rm -f "$out/direct.json" "$out/guest.json"
export BENCH_TOKEN="$$-$(date +%s)"
direct=()
if grep -qwE 'vmx|svm' /proc/cpuinfo; then
    echo "bench: hardware virtualization (vmx/svm) found: running the benchmarks directly on this host"
    /usr/bin/python3 bench/bench.py --place "this host (hardware virtualization)" --out "$out/guest.json"
    rc=$?
else
    echo "bench: no vmx/svm on this CPU: the tiny-guest pause figure runs directly on this host's /dev/kvm" \
        "(when there is one); everything that boots Linux runs inside ONE test-host boot (scripts/testhost.sh)"
    /usr/bin/python3 bench/bench.py --place "this host, direct /dev/kvm" --out "$out/direct.json" --tiny-only
    direct=(--direct "$out/direct.json")
    # Nested TCG sometimes hangs the test host's kernel (scripts/testhost.sh kills it: 124) or
    # panics it (125): a fresh test host then resumes the run, keeping the finished sections.
    thp=${TESTHOST_THP:-always}
    for attempt in 1 2 3; do
        TESTHOST_THP=$thp TESTHOST_ENV="${TESTHOST_ENV:-} BENCH_TOKEN BENCH_QUICK BENCH_RUNS BENCH_CYCLES BENCH_SDK_RUNS BENCH_ONLY BENCH_TCP_MIB BENCH_VSOCK_RUNS BENCH_BLOCK_FS" \
            scripts/testhost.sh -- /usr/bin/python3 bench/bench.py --place "test host (QEMU TCG, nested SVM, THP $thp)" \
            --out "$out/guest.json" </dev/null
        rc=$?
        case "$rc" in
        124 | 125) [ "$attempt" -lt 3 ] && echo "bench: the test host died (exit status $rc); resuming in a fresh one" ;;
        *) break ;;
        esac
    done
fi
echo
/usr/bin/python3 bench/report.py --out "$out/results.md" --guest "$out/guest.json" "${direct[@]}" || rc=1
echo "bench: tables written to $out/results.md"
exit "$rc"
