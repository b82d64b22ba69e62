#!/usr/bin/env python3
"""Runs every tests/e2e/test_*.py (unittest) and records "N passed, N failed" in RESULTS/e2e.txt.

usage: run_tests.py RESULTS_DIR [unittest name filters...]
The results file is written in every case: a crash counts as one failure, and a watchdog
($AMBER_E2E_TOTAL_TIMEOUT_S, default 3600 s, scaled) ends a hung run the same way.
"""
import os
import signal
import sys
import threading
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


class CountingResult(unittest.TextTestResult):
    """Counts passes as they happen so that the watchdog can report a partial run."""

    passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        CountingResult.passed += 1


def write_results(results_dir, passed, failed):
    with open(os.path.join(results_dir, "e2e.txt"), "w") as f:
        f.write("%d passed, %d failed\n" % (passed, failed))
    print("e2e: %d passed, %d failed" % (passed, failed), flush=True)


def kill_live():
    with harness._LIVE_LOCK:
        procs = list(harness.LIVE)
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass


def start_watchdog(results_dir, state):
    limit = harness.scaled(float(os.environ.get("AMBER_E2E_TOTAL_TIMEOUT_S", "3600")))

    def fire():
        print("e2e: watchdog: the run exceeded %.0f s; killing it" % limit, flush=True)
        kill_live()
        write_results(results_dir, CountingResult.passed, state["failed"] + 1)
        os._exit(1)

    t = threading.Timer(limit, fire)
    t.daemon = True
    t.start()
    return t


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results_dir = os.path.abspath(sys.argv[1])
    os.makedirs(results_dir, exist_ok=True)
    log_dir = os.path.join(results_dir, "e2e-logs")
    os.makedirs(log_dir, exist_ok=True)
    os.environ.setdefault("AMBER_E2E_LOGDIR", log_dir)
    filters = sys.argv[2:]

    state = {"failed": 0}
    passed, failed = 0, 0
    watchdog = start_watchdog(results_dir, state)
    try:
        loader = unittest.TestLoader()
        if filters:
            loader.testNamePatterns = ["*%s*" % f for f in filters]
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
        print("e2e: %d tests found, timeout scale %.2g, kvm native: %s"
              % (suite.countTestCases(), harness.timeout_scale(), harness.kvm_native()), flush=True)
        runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=CountingResult)
        result = runner.run(suite)
        bad = result.failures + result.errors + [(t, "unexpected success") for t in result.unexpectedSuccesses]
        failed = len(bad)
        passed = CountingResult.passed
        for test, tb in bad:
            lines = [l for l in str(tb).strip().splitlines() if l.strip()]
            reason = first_error_line(lines) or (lines[-1] if lines else "?")
            print("e2e: FAILED %s: %s" % (test.id(), reason), flush=True)
    except BaseException:
        traceback.print_exc()
        failed += 1
    finally:
        watchdog.cancel()
        kill_live()
        write_results(results_dir, passed, failed)
    return 0 if failed == 0 else 1


def first_error_line(lines):
    """The exception line of a formatted traceback ("AssertionError: ..."), if any."""
    for l in lines:
        if not l.startswith(" ") and ("Error" in l.split(":", 1)[0] or "Exception" in l.split(":", 1)[0]):
            return l
    return None


if __name__ == "__main__":
    sys.exit(main())
