#!/usr/bin/env python3
"""Runs every tests/e2e/test_*.py (unittest) and records "N passed, N failed, N skipped" in RESULTS/e2e.txt.

usage: run_tests.py RESULTS_DIR [unittest name filters: module, class or test]

Discover, run each test under a per-test timeout ($AMBER_E2E_TEST_TIMEOUT_S, default 300 s,
scaled: past it the test's VMs and helpers are killed, which fails it), write the results. Every
failure counts; skips and failures are listed with their reasons (RESULTS/e2e-skipped.txt,
e2e-failed.txt). A run in which no test passed or failed fails. Inside the test host (no vmx/svm),
tests/testhost/e2e.py adds what only it needs: the journal, resume, retries on evidence.
"""
import os
import signal
import sys
import threading
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import evidence  # noqa: E402
import harness  # noqa: E402


class Outcomes:
    """Each test's start and latest outcome, in memory: record("start"|"pass"|"fail"|"skip", id,
    reason). A class fixture (setUpClass) that fails is one failure under its own name."""

    def __init__(self):
        self.starts, self.outcomes, self.why = {}, {}, {}
        self.notes = []  # lines for the summary: retried tests, resumed test hosts
        self.lock = threading.Lock()

    def _note(self, event, name, reason=""):
        if event == "start":
            self.starts[name] = self.starts.get(name, 0) + 1
        elif event in ("pass", "fail", "skip"):
            self.outcomes[name] = event
            if reason:
                self.why[name] = reason

    def record(self, event, name, reason=""):
        with self.lock:
            self._note(event, name, reason)

    def unfinished(self):
        """Tests that started but have no outcome: cut off mid-test. Each counts as failed."""
        return [n for n in self.starts if n not in self.outcomes]

    def listed(self, outcome):
        return [(n, self.why.get(n, "?")) for n, o in self.outcomes.items() if o == outcome]

    def failed(self):
        """(id, reason) of every failed test or fixture and every test left without an outcome."""
        return self.listed("fail") + [(n, "started but has no outcome (cut off)") for n in self.unfinished()]

    def totals(self):
        """(passed, failed, skipped)."""
        values = list(self.outcomes.values())
        return values.count("pass"), len(self.failed()), values.count("skip")


class CountingResult(unittest.TextTestResult):
    """Records each start and outcome in `outcomes`, and arms the per-test watchdog."""

    outcomes = None
    results_dir = None  # a failure's evidence goes to RESULTS/<test id>/ (tests/e2e/evidence.py)
    test_timeout_s = 300.0
    # Inside the test host: a callable(live_vms) -> reason or None, asked every 30 s after a
    # test's first minute, that ends a test early (an exit livelock below the guest).
    stall_check = None
    # Inside the test host: a callable(test id, the pids killed) run after the watchdog's kills.
    after_kill = None

    def startTest(self, test):
        super().startTest(test)
        self.outcomes.record("start", test.id())
        self._t0 = time.monotonic()
        self._done = threading.Event()
        threading.Thread(target=self._watch, args=(test.id(),), daemon=True).start()

    def stopTest(self, test):
        self._done.set()
        super().stopTest(test)
        self.stream.write("  (%.1f s)\n" % (time.monotonic() - self._t0))
        self.stream.flush()

    def _watch(self, name):
        deadline, check = self._t0 + self.test_timeout_s, self._t0 + 60.0
        while not self._done.wait(max(0.0, min(deadline, check) - time.monotonic())):
            if time.monotonic() >= deadline:
                why = "ran past %.0f s" % self.test_timeout_s
            else:
                check = time.monotonic() + 30.0
                why = self.stall_check and self.stall_check(evidence.live_vms())
                if not why:
                    continue
            print("\ne2e: watchdog: %s %s; its VMs' state, then killing them" % (name, why), flush=True)
            evidence.report_live(name, self.results_dir)
            killed = kill_live()
            if self.after_kill:
                self.after_kill(name, killed)
            return

    def _fail(self, name, test, err):
        reason = one_line(self._exc_info_to_string(err, test)) if err else "unexpected success"
        print("\ne2e: FAIL %s: %s" % (name, reason), flush=True)
        # The test's VMs are still up (cleanups run after this): what they look like now. First,
        # so that the test host's evidence rules (tests/testhost/leak.py) see amber's report.
        evidence.report_live(name, self.results_dir)
        self.outcomes.record("fail", name, reason)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.outcomes.record("pass", test.id())

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test.id(), test, err)

    def addError(self, test, err):
        super().addError(test, err)
        # A fixture (setUpClass, setUpModule) fails under its own name: its tests never started.
        name = test.id() if isinstance(test, unittest.TestCase) else str(test).replace(" ", "_")
        self._fail(name, test, err)

    def addSubTest(self, test, subtest, err):
        # A failing subtest is the only word unittest says of its test's failure.
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._fail(test.id(), test, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.outcomes.record("skip", test.id(), reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.outcomes.record("pass", test.id())

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._fail(test.id(), test, None)


def write_results(results_dir, outcomes, extra_failures=()):
    """Writes e2e.txt ("N passed, N failed, N skipped"), e2e-failed.txt and e2e-skipped.txt (one
    line each, with its reason) and e2e-retried.txt (outcomes.notes); prints the notes just above
    the summary line. extra_failures: (name, reason) of failures outside any test. Returns the
    number failed; a run that executed no test counts as one failure."""
    passed, failed, skipped = outcomes.totals()
    extra = list(extra_failures)
    if passed + failed == 0:
        extra.append(("e2e", "no test ran (%d skipped)" % skipped))
    failed += len(extra)

    def put(name, lines):
        with open(os.path.join(results_dir, name), "w") as f:
            f.writelines(line + "\n" for line in lines)
    put("e2e-failed.txt", ["e2e: FAILED %s: %s" % f for f in outcomes.failed() + extra])
    put("e2e-skipped.txt", ["e2e: SKIPPED %s: %s" % s for s in outcomes.listed("skip")])
    put("e2e-retried.txt", outcomes.notes)
    summary = "%d passed, %d failed, %d skipped" % (passed, failed, skipped)
    put("e2e.txt", [summary])
    for line in outcomes.notes:
        print(line)
    print("e2e: " + summary, flush=True)
    return failed


def descendants(pid):
    """Every process below pid (from /proc), deepest last; pid itself is not included."""
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        st = evidence.read_stat("/proc/%s/stat" % entry)
        if st and len(st[1]) > 1 and st[1][1].isdigit():
            children.setdefault(int(st[1][1]), []).append(int(entry))
    out = list(children.get(pid, []))
    for p in out:  # grows as it goes: breadth first
        out.extend(children.get(p, []))
    return out


def kill_live():
    """Kills the harness's VMs, then every other process this runner started (the SDK's
    sandboxes, amberctl, nc): a hung test ends, whatever it was waiting on. Returns their pids."""
    targets = [(os.killpg, vm.proc.pid) for vm in evidence.live_vms()]
    targets += [(os.kill, p) for p in descendants(os.getpid())]
    for kill, pid in targets:
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return [pid for _, pid in targets]


def flatten(suite):
    for item in suite:
        yield from flatten(item) if isinstance(item, unittest.TestSuite) else [item]


def one_line(tb):
    """A formatted traceback's exception line ("AssertionError: ..."), else its last line, cut
    to 300 characters."""
    lines = [line for line in str(tb).strip().splitlines() if line.strip()]
    found = [line for line in lines if not line.startswith(" ") and
             any(w in line.split(":", 1)[0] for w in ("Error", "Exception"))]
    return (found[0] if found else (lines[-1] if lines else "?"))[:300]


def testhost_module():
    """tests/testhost/e2e.py, the test host's additions, or None on a host with vmx/svm."""
    if not harness.in_test_host():
        return None
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "testhost"))
    sys.modules.setdefault("run_tests", sys.modules[__name__])  # one module, run as a script or not
    import e2e
    return e2e


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results_dir = os.path.abspath(sys.argv[1])
    log_dir = os.path.join(results_dir, "e2e-logs")
    os.makedirs(log_dir, exist_ok=True)
    os.environ.setdefault("AMBER_E2E_LOGDIR", log_dir)
    th = testhost_module()
    outcomes = th.Journal(os.path.join(results_dir, "e2e-journal.txt")) if th else Outcomes()
    CountingResult.outcomes = outcomes
    CountingResult.results_dir = results_dir
    CountingResult.test_timeout_s = harness.scaled(float(os.environ.get("AMBER_E2E_TEST_TIMEOUT_S", "300")))
    extra = []
    try:
        loader = unittest.TestLoader()
        if sys.argv[2:]:
            loader.testNamePatterns = ["*%s*" % f for f in sys.argv[2:]]
        found = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
        runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=CountingResult)
        if th:
            extra = th.run(runner, found, outcomes, results_dir)
        else:
            print("e2e: %d tests, kvm native: %s" % (found.countTestCases(), harness.kvm_native()), flush=True)
            runner.run(found)
        for name, reason in outcomes.failed():
            print("e2e: FAILED %s: %s" % (name, reason), flush=True)
    except BaseException:
        traceback.print_exc()
        extra.append(("e2e runner", "crashed (traceback above)"))
    finally:
        kill_live()
    return 0 if write_results(results_dir, outcomes, extra) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
