#!/usr/bin/env bash
# Runs the e2e suite inside the test host, resuming it in a fresh test host when one dies.
# usage: tests/testhost/run-e2e.sh RESULTS_DIR [run_tests.py filters...]  (from tests/e2e/run.sh)
# Env: AMBER_E2E_BUDGET_S (1150) bounds the whole suite's wall time; TESTHOST_STACK picks the
# QEMU+Linux pair. Nested TCG sometimes hangs or panics the test host's kernel; testhost.sh then
# kills it and says how it died, that evidence goes to the journal ("died ..."), and the suite
# resumes from its journal while the budget lasts (tests/testhost/e2e.py says what may run again).
# AMBER_E2E_CONTROL=1 (the default here; make e2e sets 0 unless E2E_STRICT=1) runs a QEMU-microvm
# control guest alongside the suite (tests/testhost/control.py): a guest fault is retried only
# when it shows the same kind.
set -u
export AMBER_E2E_CONTROL=${AMBER_E2E_CONTROL:-1}
results=${1:?usage: tests/testhost/run-e2e.sh RESULTS_DIR [filters...]}
shift
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
start=$SECONDS
echo "e2e: no vmx/svm on this CPU: running the tests inside the test host (stack ${TESTHOST_STACK:-debian12})"
# Only the checkout is writable inside the test host: collect results there, then copy them.
inner=$results
case "$results/" in
"$repo"/*) ;;
*) inner=$repo/build/e2e-results.$$ ;;
esac
rm -rf "$inner/e2e.txt" "$inner/e2e-journal.txt"
mkdir -p "$inner"
evidence=$inner/testhost-died.txt
attempt=1
while :; do
    left=$((budget - (SECONDS - start)))
    # The test host gets what is left; the suite inside stops itself 40 s earlier (an absolute
    # time: the test host's boot comes out of the same budget) so that it can still write its
    # totals. A hung test-host kernel is declared after 30 s without its 5 s heartbeat: in the
    # logs of 2026-12-06's runs, no test host whose heartbeat was 20 s late ever came back, and
    # each death waited for costs the budget that long (docs/testing.md).
    rm -f "$evidence"
    AMBER_E2E_DEADLINE=$(($(date +%s) + left - 40)) TESTHOST_TIMEOUT_S=$left TESTHOST_STALL_S=30 \
        TESTHOST_EVIDENCE=$evidence \
        tests/testhost/testhost.sh -- /usr/bin/python3 tests/e2e/run_tests.py "$inner" "$@" </dev/null
    rc=$?
    [ -s "$inner/e2e.txt" ] && break
    left=$((budget - (SECONDS - start)))
    if [ ! -s "$evidence" ]; then
        echo "e2e: the run ended without totals (exit status $rc) and without evidence that its test host died"
        break
    fi
    # The evidence lets the test it cut off run again, once (see tests/testhost/e2e.py).
    echo "died $(head -c 300 "$evidence" | tr '\t\n' '  ' | sed 's/ *$//')" >>"$inner/e2e-journal.txt"
    if [ "$attempt" -ge 4 ] || [ "$left" -lt 180 ]; then
        echo "e2e: the test host died $attempt time(s); $left s of the budget left: not trying again"
        break
    fi
    attempt=$((attempt + 1))
    echo "e2e: the test host died ($(cat "$evidence")); resuming the suite in a fresh one ($left s left)"
done
rm -f "$evidence"
if [ ! -s "$inner/e2e.txt" ]; then
    # What the journal holds (each test's last outcome), plus one failure for the unfinished run.
    echo "e2e: the run did not finish (exit status $rc); counting that as one more failure"
    /usr/bin/python3 tests/testhost/e2e.py --unfinished "$inner"
    rc=1
fi
if [ "$inner" != "$results" ]; then
    cp -r "$inner"/. "$results"/ && rm -rf "$inner"
fi
exit "$rc"
