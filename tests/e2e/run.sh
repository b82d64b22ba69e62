#!/usr/bin/env bash
# Runs the e2e suite: directly where the CPU has vmx/svm, otherwise inside the test host.
# usage: tests/e2e/run.sh RESULTS_DIR [run_tests.py filters...]
#   (writes RESULTS_DIR/e2e.txt: "N passed, N failed, N skipped")
set -u
results=${1:?usage: tests/e2e/run.sh RESULTS_DIR [filters...]}
shift
cd "$(dirname "$0")/../.."
mkdir -p "$results"
rm -f "$results/e2e.txt"
if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
    exec tests/testhost/run-e2e.sh "$results" "$@"
fi
echo "e2e: hardware virtualization found: running the tests directly"
exec /usr/bin/python3 tests/e2e/run_tests.py "$results" "$@"
