#!/usr/bin/env bash
# Runs the e2e suite: directly where the CPU has vmx/svm, otherwise inside the test host.
# usage: tests/e2e/run.sh RESULTS_DIR   (writes RESULTS_DIR/e2e.txt: "N passed, N failed")
# Env: AMBER_E2E_BUDGET_S (1150) bounds the whole suite's wall time. Nested TCG sometimes hangs
# the test host's kernel; scripts/testhost.sh then kills it, and the suite resumes in a fresh
# test host from its journal (tests/e2e/run_tests.py) while the budget lasts.
set -u
results=${1:?usage: tests/e2e/run.sh RESULTS_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd -P)
mkdir -p "$results"
results=$(cd "$results" && pwd -P)
cd "$repo"
budget=${AMBER_E2E_BUDGET_S:-1150}
case "$budget" in
'' | *[!0-9]*)
    echo "e2e: AMBER_E2E_BUDGET_S takes a whole number of seconds, not '$budget'" >&2
    exit 2
    ;;
esac
rm -f "$results/e2e.txt" "$results/e2e-journal.txt"
start=$SECONDS

if grep -qwE 'vmx|svm' /proc/cpuinfo; then
    echo "e2e: hardware virtualization found: running the tests directly"
    AMBER_E2E_DEADLINE=$(($(date +%s) + budget)) /usr/bin/python3 tests/e2e/run_tests.py "$results"
    rc=$?
else
    echo "e2e: no vmx/svm on this CPU: running the tests inside the test host (scripts/testhost.sh)"
    # Only the checkout is writable inside the test host: collect results there, then copy them.
    inner=$results
    case "$results/" in
    "$repo"/*) ;;
    *) inner=$repo/build/e2e-results.$$ ;;
    esac
    rm -rf "$inner/e2e.txt" "$inner/e2e-journal.txt"
    mkdir -p "$inner"
    attempt=1
    while :; do
        left=$((budget - (SECONDS - start)))
        # The test host gets what is left; the suite inside stops itself 40 s earlier (an
        # absolute time: the test host's boot comes out of the same budget) so that it can
        # still write its totals and the failures' reasons.
        # A hung test-host kernel is declared after 60 s without its 5 s heartbeat (the
        # default 120 s is for interactive use), leaving more of the budget to the resumed run.
        AMBER_E2E_DEADLINE=$(($(date +%s) + left - 40)) TESTHOST_TIMEOUT_S=$left TESTHOST_STALL_S=60 \
            scripts/testhost.sh -- /usr/bin/python3 tests/e2e/run_tests.py "$inner" </dev/null
        rc=$?
        [ -s "$inner/e2e.txt" ] && break
        left=$((budget - (SECONDS - start)))
        if [ "$attempt" -ge 6 ] || [ "$left" -lt 180 ]; then
            echo "e2e: the test host died $attempt time(s); $left s of the budget left: not trying again"
            break
        fi
        attempt=$((attempt + 1))
        echo "e2e: the test host died (exit status $rc); resuming the suite in a fresh one ($left s left)"
    done
    if [ "$inner" != "$results" ]; then
        cp -r "$inner"/. "$results"/ && rm -rf "$inner"
    fi
fi

if [ ! -s "$results/e2e.txt" ]; then
    # What the journal holds (each test's last outcome), plus one failure for the unfinished run.
    echo "e2e: the run did not finish (exit status $rc); counting that as one more failure"
    /usr/bin/python3 tests/e2e/run_tests.py --unfinished "$results"
    rc=1
fi
exit "$rc"
