#!/usr/bin/env python3
"""Runs every tests/e2e/test_*.py (unittest) and records "N passed, N failed" in RESULTS/e2e.txt.

usage: run_tests.py RESULTS_DIR [unittest name filters...]
       run_tests.py --unfinished RESULTS_DIR   (totals of a run that died: its journal, where a
                                                test left without an outcome counts as failed)

Every test's start and outcome go to the journal RESULTS/e2e-journal.txt as they happen. A run
that finds a journal resumes it: tests with an outcome are not run again, and a test that was
cut off in the middle (its test host died) runs again; cut off three times, it counts as failed.
Inside the test host, a test that fails after a guest triple fault, soft lockup or exit livelock
runs again, up to twice, and any other failing test once (see retry_failed); every retry is
printed. The totals in e2e.txt come from the journal: a test's last outcome counts.

Watchdogs: a test running longer than $AMBER_E2E_TEST_TIMEOUT_S (default 300 s, scaled), or
whose VM is caught in an exit livelock after its first minute, has its VMs killed, which fails
it; a run longer than $AMBER_E2E_TOTAL_TIMEOUT_S (default 1800 s, scaled), or still running at
$AMBER_E2E_DEADLINE (epoch seconds, set by run.sh), is ended with what it has: the test it cut
off counts as failed (or one failure if it was between tests).
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

import harness  # noqa: E402


class Journal:
    """The append-only record of test starts and outcomes: one "<event> <test id>" per line."""

    OUTCOMES = ("pass", "fail", "skip")

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.starts = {}
        self.outcomes = {}
        self.fixtures = {}  # class/module fixture (setUpClass...) -> "fail" or "ok" (its retry ran)
        self.faulted = {}  # test id -> failures that followed a guest fault (test host)
        self.why = {}  # test id -> the one-line reason of its latest failure
        self.retried = {}  # test id -> retries run
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    event, _, name = line.rstrip("\n").partition(" ")
                    self._note(event, name)

    def _note(self, event, name):
        if event == "start":
            self.starts[name] = self.starts.get(name, 0) + 1
        elif event in self.OUTCOMES:
            self.outcomes[name] = event
        elif event in ("fixture-fail", "fixture-ok"):
            self.fixtures[name] = event[len("fixture-"):]
        elif event == "faulted":
            self.faulted[name] = self.faulted.get(name, 0) + 1
        elif event == "retry":
            self.retried[name] = self.retried.get(name, 0) + 1
        elif event == "why":
            test, _, reason = name.partition(" ")
            self.why[test] = reason

    def record(self, event, name):
        with self.lock:
            self._note(event, name)
            with open(self.path, "a") as f:
                f.write("%s %s\n" % (event, name))
                f.flush()
                os.fsync(f.fileno())

    def unfinished(self):
        """Tests that started but have no outcome: cut off with their test host, or lost by the
        runner. Each counts as a failure until a later run gives it an outcome."""
        return [n for n in self.starts if n not in self.outcomes]

    def failed(self):
        """(test id, reason) of every test whose last outcome is a failure, every fixture that
        failed, and every test left without an outcome."""
        return ([(n, self.why.get(n, "?")) for n, o in self.outcomes.items() if o == "fail"] +
                [(n, self.why.get(n, "?")) for n, o in self.fixtures.items() if o == "fail"] +
                [(n, "started but has no outcome (cut off)") for n in self.unfinished()])

    def totals(self):
        values = list(self.outcomes.values())
        return values.count("pass"), (values.count("fail") + list(self.fixtures.values()).count("fail")
                                      + len(self.unfinished()))


class JournalResult(unittest.TextTestResult):
    """Writes each start and outcome to the journal, and arms the per-test watchdog."""

    journal = None
    test_timeout_s = 300.0

    _class = None
    _faults = 0

    def startTest(self, test):
        super().startTest(test)
        self.journal.record("start", test.id())
        # Counted from the start of the test's class: tests that share a VM all fail after it
        # triple-faults, including those that run after the fault itself.
        if type(test) is not JournalResult._class:
            JournalResult._class = type(test)
            JournalResult._faults = harness.GUEST_FAULTS[0]
        self._t0 = time.monotonic()
        self._done = threading.Event()
        threading.Thread(target=self._watch, args=(test.id(),), daemon=True).start()

    def stopTest(self, test):
        self._done.set()
        super().stopTest(test)
        self.stream.write("  (%.1f s)\n" % (time.monotonic() - self._t0))
        self.stream.flush()

    LIVELOCK_FIRST_S, LIVELOCK_EVERY_S = 60.0, 30.0

    def _watch(self, name):
        """The test's watchdog: kills its VMs (after a report) once it runs past test_timeout_s,
        or earlier, from LIVELOCK_FIRST_S on, when a VM is caught in an exit livelock (the
        test host's fault; its report counts it, so the test is retried) rather than letting
        it burn the rest of its 300 s."""
        deadline = self._t0 + self.test_timeout_s
        check = self._t0 + self.LIVELOCK_FIRST_S
        while not self._done.wait(max(0.0, min(deadline, check) - time.monotonic())):
            if time.monotonic() >= deadline:
                why = "ran past %.0f s" % self.test_timeout_s
            else:
                check = time.monotonic() + self.LIVELOCK_EVERY_S
                with harness._LIVE_LOCK:
                    live = list(harness.LIVE)
                if not any(vm.livelocked() for vm in live):
                    continue
                why = "has a VM in an exit livelock"
            print("\ne2e: watchdog: %s %s; its VMs' state, then killing them" % (name, why), flush=True)
            report_live()
            kill_live()
            return

    def addSuccess(self, test):
        super().addSuccess(test)
        self.journal.record("pass", test.id())

    def _say_failed(self, name, test, err):
        """Prints and journals the one-line reason of name's failure (err, or an unexpected
        success). Printed now, not only at the end: a run cut off by its budget still says why."""
        reason = one_line(self._exc_info_to_string(err, test)) if err else "unexpected success"
        print("\ne2e: FAIL %s: %s" % (name, reason), flush=True)
        self.journal.record("why", "%s %s" % (name, reason))

    def _failed(self, test, err):
        self._say_failed(test.id(), test, err)
        self.journal.record("fail", test.id())
        report_live()  # a class's shared VM is still up: what it looks like after the failure
        if harness.GUEST_FAULTS[0] != self._faults and harness.in_test_host():
            self.journal.record("faulted", test.id())

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._failed(test, err)

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._failed(test, err)
        else:  # setUpClass/setUpModule: the suite's tests never started
            name = str(test).replace(" ", "_")
            self._say_failed(name, test, err)
            self.journal.record("fixture-fail", name)

    def addSubTest(self, test, subtest, err):
        # A failing subtest is the only word unittest says of its test's failure: no
        # addFailure, and no addSuccess either. Without this the test had no outcome at all,
        # and counted neither way (CI trial 26: "53 passed, 0 failed" of 54).
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._failed(test, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.journal.record("skip", test.id())

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.journal.record("pass", test.id())

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._failed(test, None)


def write_results(results_dir, journal, extra_failed=0):
    passed, failed = journal.totals()
    failed += extra_failed
    # The failures' one-line reasons, for tests/summary.sh to repeat at the end of the log.
    with open(os.path.join(results_dir, "e2e-failed.txt"), "w") as f:
        for name, reason in journal.failed():
            f.write("e2e: FAILED %s: %s\n" % (name, reason))
    with open(os.path.join(results_dir, "e2e.txt"), "w") as f:
        f.write("%d passed, %d failed\n" % (passed, failed))
    print("e2e: %d passed, %d failed" % (passed, failed), flush=True)
    return failed


def write_results_of_cut_run(results_dir, journal):
    """write_results for a run that ended early (its watchdog, or its test host died): a test
    cut off mid-run already counts as failed; a run that died between tests gets one failure."""
    return write_results(results_dir, journal, extra_failed=0 if journal.unfinished() else 1)


def report_live():
    """Prints each live VM's console tail and amber's state report. A stalled guest then leaves
    amber's view behind, and the KVM counters in it tell a test-host exit livelock (which the
    harness counts as a guest fault, so the failure earns its retry)."""
    with harness._LIVE_LOCK:
        live = list(harness.LIVE)
    for vm in live:
        try:
            print("e2e: live %s (pid %d), console tail:\n%s%s"
                  % (os.path.basename(vm.argv[0]), vm.proc.pid, "\n".join(vm.lines[-15:]),
                     vm.state_report()), flush=True)
        except Exception as e:  # noqa: BLE001 - a report must never stop the run
            print("e2e: no state from pid %d: %s" % (vm.proc.pid, e), flush=True)


def descendants(pid):
    """Every process below pid (from /proc), deepest last; pid itself is not included."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def kill_live():
    """Kills the harness's VMs, then every other process this runner started (the SDK's
    sandboxes, amberctl, nc): a hung test ends, whatever it was waiting on."""
    with harness._LIVE_LOCK:
        live = list(harness.LIVE)
    for vm in live:
        try:
            os.killpg(vm.proc.pid, signal.SIGKILL)
        except OSError:
            pass
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def start_watchdog(results_dir, journal):
    # tests/e2e/run.sh gives an absolute deadline (epoch seconds): the test host's boot, and
    # earlier test hosts of a resumed run, have already spent part of the budget.
    deadline = os.environ.get("AMBER_E2E_DEADLINE")
    if deadline:
        limit = max(float(deadline) - time.time(), 1.0)
    else:
        limit = harness.scaled(float(os.environ.get("AMBER_E2E_TOTAL_TIMEOUT_S", "1800")))

    def fire():
        print("e2e: watchdog: the run exceeded %.0f s; killing it" % limit, flush=True)
        kill_live()
        write_results_of_cut_run(results_dir, journal)
        os._exit(1)

    t = threading.Timer(limit, fire)
    t.daemon = True
    t.start()
    return t


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


# A test whose test host dies under it this many times counts as failed (the TAP test's 100 MiB
# has taken the test host's kernel down twice running in one CI trial).
MAX_CUT_OFFS = 3


def select(suite, journal):
    """The tests still to run, in discovery order; a test cut off MAX_CUT_OFFS times is failed
    instead."""
    todo = []
    for test in flatten(suite):
        name = test.id()
        if name in journal.outcomes:
            continue
        if journal.starts.get(name, 0) >= MAX_CUT_OFFS:
            print("e2e: FAILED %s: its test host died under it %d times" % (name, MAX_CUT_OFFS), flush=True)
            journal.record("why", "%s its test host died under it %d times" % (name, MAX_CUT_OFFS))
            journal.record("fail", name)
            continue
        if journal.starts.get(name, 0) >= 1:
            print("e2e: %s was cut off when its test host died; running it again" % name, flush=True)
        todo.append(test)
    return unittest.TestSuite(todo)


MAX_FAULT_RETRIES = 2


def settle_fixtures(found, journal):
    """Marks a failed fixture ("setUpClass_(mod.Class)") ok once every test it guards has run
    to an outcome on a retry: its failure is then counted by those tests, not twice."""
    ids = [t.id() for t in flatten(found)]
    for name, state in list(journal.fixtures.items()):
        scope = name[name.find("(") + 1:name.rfind(")")] + "."
        mine = [i for i in ids if i.startswith(scope)]
        if state == "fail" and mine and all(i in journal.outcomes for i in mine):
            journal.record("fixture-ok", name)


def retry_failed(runner, found, journal):
    """Runs again, in the test host only, each test that failed after a guest fault: a triple
    fault, a guest kernel soft lockup, or a guest stuck in an exit livelock (seen in harness.Vm's
    stall report), in this run or an earlier, cut-off one. Once per such failure, at most
    MAX_FAULT_RETRIES times; a retry that fails without a new fault is a plain failure and earns
    no further run.

    Nested SVM under QEMU's TCG occasionally triple-faults a guest, leaves a guest vCPU spinning
    in its kernel for minutes (CI trial 19: "soft lockup - CPU#0 stuck for 261s! [nc]" while
    amber saw nothing amiss), holds a guest in an exit loop that injects no interrupt (trial 20:
    19,509 exits in one second, no halt, no injection, no I/O), and panics the test host's own
    kernel ("corrupted stack end detected inside scheduler" in a vCPU thread). On real hardware
    every failure counts.
    Any other failure in the test host runs again once: the test host has also stalled a guest
    with no sign that either layer could see (CI trial 21: a 16 MiB vsock transfer that stopped
    for 300 s, no console message, amber's state unremarkable). A failure that repeats counts.
    Tests whose class set-up failed there (its guest did not boot) get one start as well."""

    def reason(t):
        """Why t runs again now, or None."""
        name, tries = t.id(), journal.retried.get(t.id(), 0)
        if name not in journal.outcomes and not journal.starts.get(name) and tries == 0 \
                and harness.in_test_host():
            return "to start: its class's set-up failed in the test host"
        if journal.outcomes.get(name) != "fail" or tries >= MAX_FAULT_RETRIES:
            return None
        if journal.faulted.get(name, 0) > tries:
            return "after a guest fault in the test host (a nested-TCG artefact)"
        if tries == 0 and harness.in_test_host():
            return "in the test host with no fault seen (it has also stalled guests without one)"
        return None

    for _ in range(MAX_FAULT_RETRIES):
        todo = [(t, reason(t)) for t in flatten(found)]
        todo = [(t, why) for t, why in todo if why]
        if not todo:
            break
        for test, why in todo:
            print("e2e: %s failed %s; running it again (retry %d of at most %d)"
                  % (test.id(), why, journal.retried.get(test.id(), 0) + 1, MAX_FAULT_RETRIES),
                  flush=True)
            journal.record("retry", test.id())
        JournalResult._class = None
        # One suite: tests that share a VM share it again.
        runner.run(unittest.TestSuite([t for t, _ in todo]))
        settle_fixtures(found, journal)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "--unfinished":
        if len(sys.argv) != 3:
            sys.exit(__doc__)
        journal = Journal(os.path.join(sys.argv[2], "e2e-journal.txt"))
        write_results_of_cut_run(sys.argv[2], journal)
        return 1
    results_dir = os.path.abspath(sys.argv[1])
    os.makedirs(results_dir, exist_ok=True)
    log_dir = os.path.join(results_dir, "e2e-logs")
    os.makedirs(log_dir, exist_ok=True)
    os.environ.setdefault("AMBER_E2E_LOGDIR", log_dir)
    filters = sys.argv[2:]

    journal = Journal(os.path.join(results_dir, "e2e-journal.txt"))
    JournalResult.journal = journal
    JournalResult.test_timeout_s = harness.scaled(float(os.environ.get("AMBER_E2E_TEST_TIMEOUT_S", "300")))
    crashed = 0
    watchdog = start_watchdog(results_dir, journal)
    try:
        loader = unittest.TestLoader()
        if filters:
            loader.testNamePatterns = ["*%s*" % f for f in filters]
        found = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
        suite = select(found, journal)
        print("e2e: %d tests found, %d to run, timeout scale %.2g, kvm native: %s"
              % (found.countTestCases(), suite.countTestCases(), harness.timeout_scale(), harness.kvm_native()),
              flush=True)
        runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=JournalResult)
        runner.run(suite)
        retry_failed(runner, found, journal)
        for name, reason in journal.failed():
            print("e2e: FAILED %s: %s" % (name, reason), flush=True)
    except BaseException:
        traceback.print_exc()
        crashed = 1
    finally:
        watchdog.cancel()
        kill_live()
    return 0 if write_results(results_dir, journal, extra_failed=crashed) == 0 else 1


def one_line(tb):
    """A formatted traceback's exception line ("AssertionError: ..."), else its last line, cut
    to 300 characters."""
    lines = [line for line in str(tb).strip().splitlines() if line.strip()]
    found = [line for line in lines if not line.startswith(" ") and
             any(w in line.split(":", 1)[0] for w in ("Error", "Exception"))]
    line = found[0] if found else (lines[-1] if lines else "?")
    return line[:300]


if __name__ == "__main__":
    sys.exit(main())
