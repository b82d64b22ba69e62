"""The e2e runner's test-host additions: a journal to resume a run whose test host died, the retry
that evidence of a broken test host allows, fault labels, the livelock sampler and the run's deadline.

tests/e2e/run_tests.py loads this module only inside the test host (harness.in_test_host()).
usage: e2e.py --unfinished RESULTS_DIR   (totals of a run that died: its journal, where a test
                                          left without an outcome counts as failed)

Retry rules. A failure counts unless the test host itself broke under it:
- the test host died under the test (its heartbeat stopped, its kernel panicked, its QEMU
  exited; tests/testhost/testhost.sh writes which, run-e2e.sh journals it as "died"): the
  test runs again in the fresh test host, once. That resume is listed, and it is not a retry
  of the test: a later failure of it may still earn its one retry on the evidence below;
- the test failed and the test host's own kernel logged an oops, BUG, soft lockup, hung task or
  RCU stall meanwhile (/dev/kmsg): the test runs again at the end of the run;
- the test failed and its guest ran on the test host's own state: amber's stall report, or the
  test host's KVM trace of a shutdown exit (init.sh), shows a guest vCPU's RIP inside the test
  host's own VMRUN function (tests/testhost/leak.py): its whole class runs again at the end of
  the run, as one retry;
- the test failed, its guest's log shows a fault of the kinds nested SVM under TCG causes (a
  triple fault, a guest soft lockup, or an exit livelock: the vCPU loops in the test host's KVM,
  which emulates instructions without NRIP save, and never reaches amber), and the QEMU-microvm
  control guest running alongside (tests/testhost/control.py, AMBER_E2E_CONTROL=1) showed the same
  kind of fault in this run: the test's whole class runs again at the end of the run, as one
  retry (its tests may share the guest). Without the control guest's word the failure counts,
  unless AMBER_E2E_RETRY_UNCONFIRMED=1 (make e2e, make test): then it is retried the same way,
  listed as unconfirmed. A failure with none of these signs always counts.
A test is retried at most once and its retry's outcome is final; a retried test_pause* test re-runs its whole class,
and every test of the class must pass again. Every retry, and every test host that died and was
resumed, is listed above the summary line; more than MAX_RETRIED retried tests fail the run.
"""
import glob
import os
import re
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import evidence  # noqa: E402
import harness  # noqa: E402
import leak  # noqa: E402
import run_tests  # noqa: E402

MAX_RETRIED = 2
# The evidence a failure may carry (Journal attributes), journaled with it.
EVIDENCE_KINDS = ("kernel", "leaked", "guest_fault")
# make e2e and make test set AMBER_E2E_RETRY_UNCONFIRMED=1 (E2E_STRICT=1 leaves it unset and runs
# the QEMU control guest instead, which costs the suite its time budget): then a failure whose
# guest's log shows a fault of the nested-SVM kinds (GUEST_FAULTS) earns its class one listed
# re-run without the control guest's word, as "unconfirmed". A failure with no such sign counts,
# whatever the setting. Each such retry is listed, so a reader sees what green rested on; on
# hardware every failure counts.
UNCONFIRMED = "unconfirmed: no QEMU control guest ran to show the same fault (AMBER_E2E_RETRY_UNCONFIRMED)"


def retry_unconfirmed():
    """True when a guest fault the control guest did not confirm may be re-run."""
    return os.environ.get("AMBER_E2E_RETRY_UNCONFIRMED") == "1"


# The test host's own kernel breaking (not a nested guest's: those print on their consoles).
KERNEL_BROKE = re.compile(r"Kernel panic|BUG:|Oops|general protection fault|soft lockup|hard LOCKUP|"
                          r"self-detected stall|blocked for more than|corrupted stack end")
GUEST_FAULTS = (("triple fault", "a guest triple fault"), ("BUG: soft lockup", "a guest soft lockup"),
                ("exit livelock", "an exit livelock"), ("(a wedged vCPU", "a wedged vCPU"))


def class_of(name):
    """The class id of a test id ("test_pause.TestPause.test_x" -> "test_pause.TestPause"), or of
    a class fixture's ("tearDownClass_(test_sdk.TestSdk)" -> "test_sdk.TestSdk")."""
    fixture = re.fullmatch(r"\w+_\(([\w.]+)\)", name)
    return fixture.group(1) if fixture else name.rsplit(".", 1)[0]


def reruns_class(name):
    """A pause test's retry re-runs its class: its tests build on each other's pauses."""
    return class_of(name).split(".", 1)[0].startswith("test_pause")


class Journal(run_tests.Outcomes):
    """Outcomes kept in an append-only file, one "<event> <name>[\\t<detail>...]" a line, and
    replayed by the next run in a fresh test host."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.cut = {}  # test id -> evidence that its test host died under it
        self.retried = {}  # test id -> the retry's line
        self.resumed = set()  # tests that ran again in a fresh test host after one died under them
        self.kernel = {}  # test id -> the test host's kernel line logged while it failed
        self.guest_fault = {}  # test id -> the guest fault its logs showed when it failed
        self.leaked = {}  # test id -> evidence that its guest ran on the test host's state (leak.py)
        self.fault_window = {}  # test id -> (fault labels, its start, its failure), epoch seconds
        self.control = None  # the QEMU control guest (control.ControlGuest), when one runs
        self._kmsg = None
        self._t0 = 0.0
        self._trace = 0  # where the test host's shutdown trace stood when the test started
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    event, _, rest = line.rstrip("\n").partition(" ")
                    self._note(event, *rest.split("\t"))

    def _note(self, event, name, reason="", evidence=""):
        if event == "died":  # name: the evidence (run-e2e.sh), for every test it cut off
            cut = self.unfinished()
            for test in cut:
                self.cut[test] = name
            self.notes.append("e2e: RESUMED in a fresh test host%s: %s"
                              % (" (it died under %s)" % ", ".join(cut) if cut else " (it died between tests)", name))
        elif event == "resume":  # listed once already, by its "died" line
            self.resumed.add(name)
        elif event == "retry":
            self.retried[name] = ("e2e: RETRIED %s: first failure: %s; evidence: %s" % (name, reason, evidence))
            self.notes.append(self.retried[name])
        elif event == "evidence":  # a failure's evidence, kept for a run resumed in a fresh test host
            if reason in EVIDENCE_KINDS:
                getattr(self, reason)[name] = evidence
        elif event == "rerun":  # name: a test, or a class whose every test, runs again
            for table in (self.starts, self.outcomes):
                for test in [t for t in table if name in (t, class_of(t)) or "(%s)" % name in t]:
                    del table[test]
        else:
            super()._note(event, name, reason)

    def record(self, event, name, reason="", evidence=""):
        if event == "start":
            self._t0 = time.time()
            self._trace = leak.mark()
            self._kernel_lines()  # what the test host's kernel said before is not this test's
        elif event == "fail":
            broke = [line for line in self._kernel_lines() if KERNEL_BROKE.search(line)]
            if broke:
                self.kernel[name] = "the test host's kernel logged: " + broke[0][:200]
            # The stall reports saved for this failure (RESULTS/<test id>/) carry the test host's
            # own labels (a wedged vCPU), which amber's logs cannot.
            texts = recent_logs(self._t0) + saved_reports(os.path.dirname(self.path), name, self._t0)
            seen = guest_faults(texts + [reason])  # an SDK error may name the fault ("guest reset (triple fault ...)")
            leaked = leak.evidence(texts, leak.shutdown_lines(self._trace), leak.vmrun_range())
            if leaked:
                self.leaked[name] = leaked
            if seen:
                self.guest_fault[name] = "its guest's log shows " + ", ".join(seen)
                self.fault_window[name] = (seen, self._t0, time.time())
                reason += " (after %s)" % ", ".join(seen)
        with self.lock:
            self._note(event, name, reason, evidence)
            lines = [(event, name, reason, evidence)]
            if event == "fail":  # its evidence too: a test host that dies before the retries loses it
                lines += [("evidence", name, kind, getattr(self, kind)[name])
                          for kind in EVIDENCE_KINDS if name in getattr(self, kind)]
            with open(self.path, "a") as f:
                for ev, n, *rest in lines:
                    fields = [ev + " " + n] + [x.replace("\t", " ").replace("\n", " ") for x in rest]
                    f.write("\t".join(fields).rstrip("\t") + "\n")
                f.flush()
                os.fsync(f.fileno())

    def _kernel_lines(self):
        """The test host kernel's log lines since the last call (/dev/kmsg), or []."""
        try:
            if self._kmsg is None:
                self._kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
                os.lseek(self._kmsg, 0, os.SEEK_END)
                return []
            out = []
            while True:
                try:
                    out.append(os.read(self._kmsg, 8192).decode("utf-8", "replace").split(";", 1)[-1])
                except BlockingIOError:
                    return out
                except OSError:  # EPIPE: records overwritten meanwhile; read on
                    continue
        except OSError:
            return []

    def resume(self, name):
        """Journals that name, cut off by a test host that died, runs again in the fresh one (its
        whole class for a pause test). Not a retry: it keeps its one retry for a later failure."""
        self.record("resume", name)
        self.record("rerun", class_of(name) if reruns_class(name) else name)

    def retry(self, name, reason, evidence, whole_class=False):
        """Journals name's one retry: it (its whole class for a pause test, or when asked) runs
        again."""
        self.record("retry", name, reason, evidence)
        self.record("rerun", class_of(name) if whole_class or reruns_class(name) else name)


def recent_logs(since, pattern=None):
    """The last MiB of each file matching pattern (default: every console or stderr log in
    $AMBER_E2E_LOGDIR) written since `since`."""
    texts = []
    for path in glob.glob(pattern or os.path.join(os.environ.get("AMBER_E2E_LOGDIR", "/nonexistent"), "*.log")):
        try:
            if os.path.getmtime(path) < since:
                continue
            with open(path, errors="replace") as f:
                f.seek(max(0, os.path.getsize(path) - (1 << 20)))
                texts.append(f.read())
        except OSError:
            continue
    return texts


def saved_reports(results_dir, name, since):
    """The evidence files evidence.report_live saved for test name (RESULTS/<name>/*.txt) since
    `since`."""
    return recent_logs(since, os.path.join(results_dir, glob.escape(name), "*.txt"))


def guest_faults(texts):
    """The faults of the kinds nested SVM under TCG causes ("a guest triple fault", ...) that the
    logs' texts show, sorted; [] when none."""
    return sorted({label for text in texts for marker, label in GUEST_FAULTS if marker in text})


def select(found, journal):
    """The tests still to run: those without an outcome, the ones a dead test host cut off (once,
    with its evidence), and the classes of cut-off pause tests."""
    for name in journal.unfinished():
        evidence = journal.cut.get(name)
        if evidence and name not in journal.resumed:
            print("e2e: %s was cut off when its test host died; running it again" % name, flush=True)
            journal.resume(name)
        elif evidence:
            journal.record("fail", name, "its test host died under it again (%s)" % evidence)
        else:
            journal.record("fail", name, "cut off with no evidence that its test host died")
    return unittest.TestSuite([t for t in run_tests.flatten(found)
                               if t.id() not in journal.outcomes and not fixture_failed(t.id(), journal)])


def fixture_failed(name, journal):
    """True when name's class or module set-up failed: that failure counts, once, and its tests
    do not run again without evidence."""
    scopes = ("(%s)" % class_of(name), "(%s)" % name.split(".", 1)[0])
    return any(o == "fail" and n.endswith(scopes) for n, o in journal.outcomes.items())


def in_scope(name, scopes):
    """True when test name is, or belongs to a class or fixture in, scopes."""
    return name in scopes or class_of(name) in scopes or any("(%s)" % class_of(name) in s for s in scopes)


def control_evidence(journal, name):
    """A guest fault's evidence when the QEMU control guest showed the same kind of fault in this
    run; else None, and the failure's reason says that the control guest did not confirm it."""
    if name not in journal.guest_fault:
        return None
    window = journal.fault_window.get(name)  # none for a failure in a test host that died since
    confirmed = journal.control.evidence(*window) if journal.control and window else None
    if confirmed:
        return journal.guest_fault[name] + "; " + confirmed
    journal.why[name] = journal.why.get(name, "?") + (
        "; no QEMU control guest ran" if not journal.control else
        "; the QEMU control guest showed no such fault" if window else
        "; its test host and QEMU control guest died since")
    return None


def unconfirmed_evidence(journal, name):
    """A guest fault's evidence without the control guest's word, when AMBER_E2E_RETRY_UNCONFIRMED
    allows it; else None."""
    if retry_unconfirmed() and name in journal.guest_fault:
        return journal.guest_fault[name] + "; " + UNCONFIRMED
    return None


def retry_after_evidence(runner, found, journal):
    """Runs again, once, each failed test during which the test host's kernel broke, whose guest
    ran on the test host's state (leak.py), or whose guest showed a nested-SVM fault that the
    QEMU control guest showed too (or, with AMBER_E2E_RETRY_UNCONFIRMED=1, any such fault)."""
    evidence = {n: journal.kernel.get(n) or journal.leaked.get(n) or control_evidence(journal, n)
                or unconfirmed_evidence(journal, n)
                for n, o in journal.outcomes.items() if o == "fail" and n not in journal.retried}
    todo = [n for n, e in evidence.items() if e]
    scopes = set()
    for name in todo:
        # A guest fault re-runs the test's class, as one retry: its tests may share that guest
        # (one triple fault fails them all), and the class must pass again as a whole.
        whole = name not in journal.kernel or reruns_class(name)
        scope = class_of(name) if whole else name
        if scope in scopes:
            continue  # its class runs again already
        print("e2e: %s failed and %s; running %s again" % (name, evidence[name], scope), flush=True)
        journal.retry(name, journal.why.get(name, "?"), evidence[name], whole_class=whole)
        scopes.add(scope)
    if todo:
        runner.run(unittest.TestSuite([t for t in run_tests.flatten(found)
                                       if in_scope(t.id(), scopes) and t.id() not in journal.outcomes]))


def too_many_retries(journal):
    if len(journal.retried) > MAX_RETRIED:
        return [("e2e retries", "%d tests retried, more than %d: the test host is not fit to judge amber"
                 % (len(journal.retried), MAX_RETRIED))]
    return []


def start_control(journal):
    """Starts the QEMU control guest when AMBER_E2E_CONTROL=1 (run-e2e.sh's default); None when
    off or when it cannot start (then no guest fault is retried)."""
    if os.environ.get("AMBER_E2E_CONTROL") != "1":
        return None
    import control
    try:
        journal.control = control.ControlGuest(os.environ["AMBER_E2E_LOGDIR"], kvm_sample).start()
    except Exception as e:  # noqa: BLE001 - the run goes on; guest faults then count
        print("e2e: the QEMU control guest did not start (%s): guest faults count" % e, flush=True)
    return journal.control


def run(runner, found, journal, results_dir):
    """run_tests.main's test-host path: resume, run, retry with evidence. Returns the extra
    failures for write_results."""
    harness.STALL_HOOKS.append(lambda vm: kvm_sample(vm)[0])
    run_tests.CountingResult.stall_check = staticmethod(livelock_check)
    run_tests.CountingResult.after_kill = staticmethod(unkillable_check)
    # A test's own cleanup SIGKILLs its amber too (harness.Vm.kill), and would wait on one that
    # cannot die until the per-test watchdog came, minutes later.
    harness.AFTER_SIGKILL = lambda pids: unkillable_check(", ".join(journal.unfinished()) or "a class fixture",
                                                         pids, who="a test's cleanup")
    watchdog = start_deadline(results_dir, journal)
    control = journal.control or start_control(journal)
    try:
        suite = select(found, journal)
        print("e2e: %d tests found, %d to run in the test host (%s), timeout scale %.2g, control guest %s"
              % (found.countTestCases(), suite.countTestCases(), os.environ.get("TESTHOST_STACK", "debian12"),
                 harness.timeout_scale(), "on" if control else "off"), flush=True)
        runner.run(suite)
        retry_after_evidence(runner, found, journal)
    finally:
        watchdog.cancel()
        if control is not None:
            journal.notes.append(control.stop())
    return too_many_retries(journal)


def cut_run_failures(journal):
    """A run that ended early: a test cut off mid-run already counts as failed; a run that died
    between tests gets one failure."""
    return [] if journal.unfinished() else [("e2e run", "ended before its last test")]


def start_deadline(results_dir, journal):
    """Ends the run at $AMBER_E2E_DEADLINE (epoch seconds, from run-e2e.sh: the test host's boot
    and earlier test hosts of a resumed run have spent part of the budget) with what it has."""
    limit = max(float(os.environ.get("AMBER_E2E_DEADLINE", time.time() + 1e9)) - time.time(), 1.0)

    def fire():
        print("e2e: the run reached its deadline (%.0f s); killing it" % limit, flush=True)
        run_tests.kill_live()
        run_tests.write_results(results_dir, journal, cut_run_failures(journal) + too_many_retries(journal))
        os._exit(1)

    t = threading.Timer(limit, fire)
    t.daemon = True
    t.start()
    return t


KVM_COUNTERS = ("exits", "halt_exits", "irq_injections", "irq_window_exits", "io_exits",
                "mmio_exits", "pf_taken", "pf_fixed", "insn_emulation")
# A guest whose vCPUs exit this often in the sampled second, yet neither halt, nor take one
# interrupt, nor reach amber with one I/O exit, is not running guest code at all: it is stuck
# in an exit loop below it (CI trial 20: +19,509 exits, 0 injections, 0 halts).
LIVELOCK_EXITS = 1000


NO_ANSWER = re.compile(r"state: vcpu(\d+) regs: no sample \(did not answer\)")


def vcpu_states(pid):
    """{vCPU thread name: its scheduler state letter} for amber pid, from /proc."""
    out = {}
    for stat in glob.glob("/proc/%d/task/*/stat" % pid):
        st = evidence.read_stat(stat)
        if st and st[0].startswith("vcpu") and st[1]:
            out[st[0]] = st[1][0]
    return out


def wedge_label(before, after, delta, stderr_lines, interval):
    """The stall report's label for vCPUs wedged inside KVM_RUN, or "". A vCPU counts when its
    thread was runnable ("R": not halted, which sleeps) at both samples, it did not answer
    amber's sampling signal in amber's last state report, and KVM counted no exit in between: a
    working kernel's KVM leaves guest mode at least on every host timer tick, and answers a
    signal within milliseconds. The layer below the test host (nested SVM under TCG) is then
    holding that CPU."""
    if delta.get("exits", 1) != 0:
        return ""
    silent = {"vcpu" + m.group(1) for line in stderr_lines[-400:] for m in [NO_ANSWER.search(line)] if m}
    wedged = sorted(t for t in silent if before.get(t) == "R" and after.get(t) == "R")
    if not wedged:
        return ""
    return ("\n(a wedged vCPU: %s stayed runnable in KVM_RUN for %.0f s without one exit and did not answer "
            "amber's signal)" % (", ".join(wedged), interval))


def kvm_sample(vm, interval=1.0):
    """KVM's own counters for vm from debugfs (kvm/<pid>-<fd>/, mounted by init.sh), read twice
    interval seconds apart. Returns (line, livelocked); ("", False) when there are none."""
    dirs = glob.glob("/sys/kernel/debug/kvm/%d-*" % vm.pid)
    if not dirs or not vm.alive():
        return "", False

    def sample():
        out = {}
        for name in KVM_COUNTERS:
            try:
                with open(os.path.join(dirs[0], name)) as f:
                    out[name] = int(f.read())
            except (OSError, ValueError):
                pass
        return out

    before, threads = sample(), vcpu_states(vm.pid)
    time.sleep(interval)
    after = sample()
    delta = {k: after[k] - before.get(k, 0) for k in after}
    wedge = wedge_label(threads, vcpu_states(vm.pid), delta, list(getattr(vm, "stderr_lines", [])), interval)
    line = "kvm counters (debugfs, +%.0f s): %s" % (interval, ", ".join(
        "%s %d (+%d)" % (k, after[k], delta[k]) for k in KVM_COUNTERS if k in after))
    quiet = ("halt_exits", "irq_injections", "io_exits", "mmio_exits")
    stuck = delta.get("exits", 0) >= LIVELOCK_EXITS and all(delta.get(k, 1) == 0 for k in quiet)
    if stuck:
        line += "\n(an exit livelock: the vCPUs exit thousands of times a second but neither halt, take an " \
                "interrupt nor do I/O)"
    return line + wedge, stuck


# init.sh links it to the job folder, where tests/testhost/testhost.sh's watchdog looks for it.
BROKEN = "/run/amber-testhost-broken"
UNKILLABLE_S = 60


def unkillable_check(name, killed, wait_s=UNKILLABLE_S, broken=BROKEN, who="the watchdog"):
    """After the watchdog's (or who's) SIGKILLs for test name: a process of killed (their pids) still there
    wait_s seconds later (not a zombie) is held inside the test host's kernel (a wedged vCPU's amber
    cannot leave KVM_RUN), and the tests after it would hang on it too. That is evidence that the
    test host broke: it goes to broken, and testhost.sh then ends this test host, so that the run
    resumes in a fresh one (the test's failure keeps its own evidence). Returns the reason, or None."""
    deadline = time.monotonic() + wait_s
    while True:
        left = [p for p in killed if proc_state(p) not in ("Z", None)]
        if not left:
            return None
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    why = ("pid %s still alive %.0f s after %s's SIGKILL under %s (stuck in the test host's kernel)"
           % (", ".join(map(str, left)), wait_s, who, name))
    print("e2e: %s: ending this test host" % why, flush=True)
    try:
        with open(broken, "w") as f:
            f.write(why + "\n")
    except OSError as e:
        print("e2e: cannot tell the test host's watchdog (%s)" % e, flush=True)
    return why


def proc_state(pid):
    """Process pid's scheduler state letter, or None when it is gone."""
    st = evidence.read_stat("/proc/%d/stat" % pid)
    return st[1][0] if st and st[1] else None


def livelock_check(vms):
    """The per-test watchdog's early stop: a reason when a VM is in an exit livelock, else None.
    The counters go to $AMBER_E2E_LOGDIR/livelock.log too, where guest_faults finds them."""
    for vm in vms:
        line, stuck = kvm_sample(vm)
        if stuck:
            path = os.path.join(os.environ.get("AMBER_E2E_LOGDIR", "/nonexistent"), "livelock.log")
            try:
                with open(path, "a") as f:
                    f.write("pid %d: %s\n" % (vm.pid, line))
            except OSError:
                pass
            return "has a VM in an exit livelock"
    return None


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "--unfinished":
        sys.exit(__doc__)
    journal = Journal(os.path.join(sys.argv[2], "e2e-journal.txt"))
    run_tests.write_results(sys.argv[2], journal, cut_run_failures(journal) + too_many_retries(journal))
    return 1


if __name__ == "__main__":
    sys.exit(main())
