#!/usr/bin/env bash
# Runs the e2e suite: directly where the CPU has vmx/svm, otherwise inside one test-host boot.
# usage: tests/e2e/run.sh RESULTS_DIR   (writes RESULTS_DIR/e2e.txt: "N passed, N failed")
set -u
results=${1:?usage: tests/e2e/run.sh RESULTS_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd -P)
mkdir -p "$results"
results=$(cd "$results" && pwd -P)
cd "$repo"

if grep -qwE 'vmx|svm' /proc/cpuinfo; then
    echo "e2e: hardware virtualization found: running the tests directly"
    /usr/bin/python3 tests/e2e/run_tests.py "$results"
    rc=$?
else
    echo "e2e: no vmx/svm on this CPU: running the tests inside the test host (scripts/testhost.sh)"
    # Only the checkout is writable inside the test host: collect results there, then copy them.
    inner=$results
    case "$results/" in
    "$repo"/*) ;;
    *) inner=$repo/build/e2e-results.$$ ;;
    esac
    mkdir -p "$inner"
    scripts/testhost.sh -- /usr/bin/python3 tests/e2e/run_tests.py "$inner" </dev/null
    rc=$?
    if [ "$inner" != "$results" ]; then
        cp -r "$inner"/. "$results"/ && rm -rf "$inner"
    fi
fi

if [ ! -s "$results/e2e.txt" ]; then
    echo "e2e: the run recorded no result (exit status $rc); counting it as one failure"
    echo "0 passed, 1 failed" >"$results/e2e.txt"
fi
exit "$rc"
