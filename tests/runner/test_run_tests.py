"""Unit tests of the e2e runner's accounting (tests/e2e/run_tests.py and its test-host additions in
tests/testhost/e2e.py), with mock suites and no VM: what counts, what runs again and on what evidence."""
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "testhost"))

import control  # noqa: E402
import e2e as TH  # noqa: E402
import run_tests as R  # noqa: E402

CALLS = {}


def count(name):
    CALLS[name] = CALLS.get(name, 0) + 1
    return CALLS[name]


class Mocks:
    """The suites the runner is tested on: nested, so that discovery does not run them as tests."""

    class SubtestCase(unittest.TestCase):
        def test_cases(self):
            for case in ("a", "b"):
                with self.subTest(case=case):
                    self.assertNotEqual(case, "b", "subtest b fails")

        def test_plain(self):
            pass

    class FlakyFixture(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            if count("fixture") == 1:
                raise RuntimeError("the guest did not boot")

        def test_one(self):
            pass

    class FailsOnce(unittest.TestCase):
        def test_flaky(self):
            self.assertGreater(count("flaky"), 1, "first run fails")

    class SharedGuest(unittest.TestCase):
        """Two tests on one guest: a fault of that guest fails both on their first run."""

        def test_a(self):
            self.assertGreater(count("shared_a"), 1, "the shared guest died")

        def test_b(self):
            self.assertGreater(count("shared_b"), 1, "the shared guest died")

    class GoneInTeardown(unittest.TestCase):
        """A class whose guest died: its test fails, and so does its tearDownClass (the SDK's
        delete() of a sandbox that is gone)."""

        @classmethod
        def tearDownClass(cls):
            if count("teardown") == 1:
                raise RuntimeError("sandbox sbx-2 is gone: guest reset (triple fault on vcpu0)")

        def test_on_it(self):
            self.assertGreater(count("on_it"), 1, "the class's guest died")

    class FailsTwice(unittest.TestCase):
        def test_twice(self):
            self.assertGreater(count("twice"), 2, "fails its first two runs")

    class GoneSandbox(unittest.TestCase):
        def test_gone(self):
            if count("gone") == 1:
                raise RuntimeError("sandbox sbx-1 is gone: guest reset (triple fault on vcpu0) (status 0)")

    class AlwaysFails(unittest.TestCase):
        def test_broken(self):
            self.fail("always")

    class Skips(unittest.TestCase):
        def test_runs(self):
            pass

        def test_skipped(self):
            self.skipTest("no cgroup v2 here")

    class OnlySkips(unittest.TestCase):
        def test_skipped(self):
            self.skipTest("needs /dev/kvm")

    class PauseLike(unittest.TestCase):
        """Stands for a test_pause class: a retry of one of its tests re-runs them all."""

        def test_1_first(self):
            self.assertEqual(count("pause1"), 0, "fails whenever it runs in this process")

        def test_2_cut(self):
            count("pause2")


Mocks.PauseLike.__module__ = "test_pause_mock"


class Accounting(unittest.TestCase):
    def setUp(self):
        CALLS.clear()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        os.environ["AMBER_E2E_LOGDIR"] = self.dir
        self.runner = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0, resultclass=R.CountingResult)

    def journal(self):
        j = TH.Journal(os.path.join(self.dir, "e2e-journal.txt"))
        j._kernel_lines = lambda: []  # the machine's own kernel log is not the mock's
        return j

    def found(self, *cases):
        loader = unittest.TestLoader()
        return unittest.TestSuite([loader.loadTestsFromTestCase(c) for c in cases])

    def run_plain(self, *cases):
        R.CountingResult.outcomes = outcomes = R.Outcomes()
        with contextlib.redirect_stdout(io.StringIO()):  # the runner prints each failure
            self.runner.run(self.found(*cases))
        return outcomes

    def run_testhost(self, journal, *cases):
        """run_tests.main's test-host path on the mock suite; returns (printed, extra failures)."""
        R.CountingResult.outcomes = journal
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            extra = TH.run(self.runner, self.found(*cases), journal, self.dir)
        return out.getvalue(), extra

    def results(self, outcomes, extra=()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            failed = R.write_results(self.dir, outcomes, extra)
        files = {}
        for name in ("e2e", "e2e-failed", "e2e-skipped", "e2e-retried"):
            with open(os.path.join(self.dir, name + ".txt")) as f:
                files[name] = f.read()
        return failed, files, out.getvalue()

    # Plain runner (a host with vmx/svm)

    def test_a_failing_subtest_fails_its_test(self):
        outcomes = self.run_plain(Mocks.SubtestCase)
        self.assertEqual(outcomes.totals(), (1, 1, 0))
        self.assertEqual([n for n, _ in outcomes.failed()], [Mocks.SubtestCase("test_cases").id()])

    def test_skips_are_counted_and_listed_with_their_reason(self):
        failed, files, _ = self.results(self.run_plain(Mocks.Skips))
        self.assertEqual(failed, 0)
        self.assertEqual(files["e2e"], "1 passed, 0 failed, 1 skipped\n")
        self.assertIn("Skips.test_skipped: no cgroup v2 here", files["e2e-skipped"])

    def test_a_run_that_executed_no_test_fails(self):
        failed, files, _ = self.results(self.run_plain(Mocks.OnlySkips))
        self.assertEqual(failed, 1)
        self.assertEqual(files["e2e"], "0 passed, 1 failed, 1 skipped\n")
        self.assertIn("no test ran", files["e2e-failed"])

    def test_a_failed_class_setup_counts_once(self):
        outcomes = self.run_plain(Mocks.FlakyFixture)
        self.assertEqual(outcomes.totals(), (0, 1, 0))
        self.assertIn("the guest did not boot", outcomes.failed()[0][1])

    # In the test host

    def test_a_failure_in_the_test_host_counts_and_is_not_run_again(self):
        journal = self.journal()
        printed, extra = self.run_testhost(journal, Mocks.FailsOnce, Mocks.FlakyFixture)
        self.assertEqual(CALLS, {"flaky": 1, "fixture": 1}, printed)
        # The test host's early stop is armed and callable from a result (no VM: no reason).
        self.assertIsNone(R.CountingResult.__new__(R.CountingResult).stall_check([]))
        self.assertEqual(journal.totals(), (0, 2, 0))
        self.assertEqual((journal.notes, extra), ([], []))

    def test_a_failed_class_setup_is_not_run_again_in_a_resumed_test_host(self):
        journal = self.journal()
        self.run_testhost(journal, Mocks.FlakyFixture)
        with open(journal.path, "a") as f:
            f.write("died test host (debian12) killed: its heartbeat stopped 61 s ago\n")
        journal = self.journal()
        self.run_testhost(journal, Mocks.FlakyFixture, Mocks.FailsOnce)
        self.assertEqual(CALLS, {"fixture": 1, "flaky": 1})
        self.assertEqual(journal.totals(), (0, 2, 0))

    def test_a_failure_while_the_test_hosts_kernel_broke_runs_again_once_and_is_listed(self):
        journal = self.journal()
        journal._kernel_lines = lambda: ["BUG: soft lockup - CPU#1 stuck for 23s! [amber-vcpu0]"]
        _, extra = self.run_testhost(journal, Mocks.FailsOnce, Mocks.AlwaysFails)
        self.assertEqual(CALLS["flaky"], 2)
        self.assertEqual(journal.totals(), (1, 1, 0))  # the retry's outcome is final
        failed, files, printed = self.results(journal, extra)
        lines = printed.splitlines()
        self.assertEqual(lines[-1], "e2e: 1 passed, 1 failed, 0 skipped")
        self.assertRegex(lines[-3], r"RETRIED .*FailsOnce.test_flaky: first failure: .*first run fails.*; "
                                    r"evidence: the test host's kernel logged: BUG: soft lockup")
        self.assertIn("RETRIED", lines[-2])  # AlwaysFails, retried once, still failed
        self.assertEqual(files["e2e-retried"].count("RETRIED"), 2)

    def test_a_retry_runs_only_the_test_it_is_for(self):
        journal = self.journal()
        said = iter([[], ["Oops: 0000 [#1] PREEMPT SMP NOPTI"]])  # start, then failure, of test_flaky
        journal._kernel_lines = lambda: next(said, [])
        self.run_testhost(journal, Mocks.FailsOnce, Mocks.FlakyFixture)
        self.assertEqual(CALLS, {"flaky": 2, "fixture": 1})  # the fixture failed without evidence
        self.assertEqual(journal.totals(), (1, 1, 0))

    def cut_off(self, name, calls):
        """A journal in which name started, counted as run once, and its test host died under it."""
        count(calls)
        self.journal().record("start", name)
        with open(os.path.join(self.dir, "e2e-journal.txt"), "a") as f:
            f.write("died test host (debian12) killed: its heartbeat stopped 61 s ago\n")
        return self.journal()

    def test_a_cut_off_test_with_evidence_runs_again_in_the_fresh_test_host(self):
        name = Mocks.FailsOnce("test_flaky").id()
        journal = self.cut_off(name, "flaky")
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (1, 0, 0))
        self.assertEqual(len(journal.notes), 1, journal.notes)
        self.assertIn("RESUMED in a fresh test host (it died under %s): test host (debian12) killed: its "
                      "heartbeat stopped" % name, journal.notes[0])
        self.assertEqual(journal.retried, {})  # a resume is not a retry

    def test_a_resumed_test_keeps_its_one_retry_for_a_failure_with_evidence(self):
        name = Mocks.FailsTwice("test_twice").id()
        journal = self.cut_off(name, "twice")
        said = iter([[], ["Oops: 0000 [#1] PREEMPT SMP NOPTI"]])  # its resumed run fails under an oops
        journal._kernel_lines = lambda: next(said, [])
        self.run_testhost(journal, Mocks.FailsTwice)
        self.assertEqual(CALLS["twice"], 3)
        self.assertEqual(journal.totals(), (1, 0, 0))
        self.assertIn("evidence: the test host's kernel logged: Oops", journal.retried[name])

    def test_a_cut_off_test_without_evidence_counts(self):
        name = Mocks.FailsOnce("test_flaky").id()
        self.journal().record("start", name)
        journal = self.journal()
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertNotIn("flaky", CALLS)
        self.assertEqual(journal.failed(), [(name, "cut off with no evidence that its test host died")])

    def test_a_test_cut_off_twice_counts_as_failed(self):
        name = Mocks.FailsOnce("test_flaky").id()
        j = self.journal()
        for _ in range(2):
            j.record("start", name)
            with open(j.path, "a") as f:
                f.write("died test host (debian12) died: QEMU exited with 0 before the command ended\n")
            j = self.journal()
            TH.select(self.found(Mocks.FailsOnce), j)
        self.assertEqual(j.totals(), (0, 1, 0))
        self.assertIn("died under it again", j.failed()[0][1])

    def test_a_test_host_that_died_between_tests_is_listed_but_retries_nothing(self):
        j = self.journal()
        j.record("start", Mocks.Skips("test_runs").id())
        j.record("pass", Mocks.Skips("test_runs").id())
        with open(j.path, "a") as f:
            f.write("died test host (backports) killed: its heartbeat stopped 60 s ago\n")
        journal = self.journal()
        self.run_testhost(journal, Mocks.Skips)
        self.assertEqual(journal.totals(), (1, 0, 1))
        self.assertEqual(journal.retried, {})
        self.assertEqual(len(journal.notes), 1)
        self.assertIn("RESUMED in a fresh test host (it died between tests)", journal.notes[0])

    def test_a_retried_pause_test_reruns_its_whole_class_which_must_pass(self):
        first, cut = Mocks.PauseLike("test_1_first").id(), Mocks.PauseLike("test_2_cut").id()
        self.assertTrue(first.startswith("test_pause_mock."))
        j = self.journal()
        for event, name in (("start", first), ("pass", first), ("start", cut)):
            j.record(event, name)
        with open(j.path, "a") as f:
            f.write("died test host (debian12) killed: its heartbeat stopped 61 s ago\n")
        journal = self.journal()
        self.run_testhost(journal, Mocks.PauseLike)
        self.assertEqual(CALLS, {"pause1": 1, "pause2": 1})
        self.assertEqual(journal.totals(), (1, 1, 0))  # test_1 passed before, fails on the re-run
        self.assertEqual(self.journal().totals(), (1, 1, 0))  # and so reads the journal

    def test_more_than_two_retried_tests_fail_the_run(self):
        j = self.journal()
        for n in range(TH.MAX_RETRIED + 1):
            self.assertEqual(TH.too_many_retries(j), [])
            j.retry("test_x.T.test_%d" % n, "cut off", "heartbeat stopped")
            j.record("pass", "test_x.T.test_%d" % n)
        failed, files, _ = self.results(j, TH.too_many_retries(j))
        self.assertEqual(failed, 1)
        self.assertEqual(files["e2e"], "3 passed, 1 failed, 0 skipped\n")
        self.assertIn("3 tests retried, more than 2", files["e2e-failed"])

    def guest_fault_log(self):
        log = os.path.join(self.dir, "some_test.log")
        with open(log, "w") as f:
            f.write("[stderr] KVM: triple fault on vCPU 0\n")
        os.utime(log, (time.time() + 60, time.time() + 60))  # written while the test ran

    def control_guest(self, journal, *labels):
        """A QEMU control guest (not started) that showed these faults just now."""
        journal.control = control.ControlGuest(self.dir)
        journal.control.events = [(time.time(), label, "mock") for label in labels]

    def test_a_guest_fault_the_control_guest_showed_is_retried_once_and_its_retry_counts(self):
        self.guest_fault_log()
        journal = self.journal()
        self.control_guest(journal, "a guest triple fault")
        self.run_testhost(journal, Mocks.AlwaysFails)
        self.assertEqual(journal.totals(), (0, 1, 0))  # the retry failed too: it counts
        self.assertIn("after a guest triple fault", journal.failed()[0][1])
        self.assertEqual(len(journal.retried), 1)
        self.assertIn("evidence: its guest's log shows a guest triple fault; the QEMU control guest "
                      "showed a guest triple fault too, during the failing test",
                      list(journal.retried.values())[0])
        self.assertIn("the QEMU control guest booted 0 time(s)", journal.notes[-1])

    def test_a_guest_fault_the_control_guest_did_not_show_counts(self):
        self.guest_fault_log()
        journal = self.journal()
        self.control_guest(journal, "a guest soft lockup")  # another kind of fault: no evidence
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (0, 1, 0))
        self.assertEqual(CALLS["flaky"], 1)
        self.assertEqual(journal.retried, {})
        self.assertIn("the QEMU control guest showed no such fault", journal.failed()[0][1])

    def test_a_guest_fault_without_a_control_guest_counts(self):
        self.guest_fault_log()
        journal = self.journal()
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (0, 1, 0))
        self.assertEqual(journal.retried, {})
        self.assertIn("no QEMU control guest ran", journal.failed()[0][1])

    def test_with_retry_unconfirmed_a_guest_fault_reruns_listed_as_unconfirmed(self):
        os.environ["AMBER_E2E_RETRY_UNCONFIRMED"] = "1"
        self.addCleanup(os.environ.pop, "AMBER_E2E_RETRY_UNCONFIRMED")
        self.guest_fault_log()
        journal = self.journal()
        self.control_guest(journal)  # it showed nothing
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (1, 0, 0))
        line = list(journal.retried.values())[0]
        self.assertIn("the QEMU control guest showed no such fault", line)
        self.assertIn("evidence: its guest's log shows a guest triple fault; unconfirmed", line)

    def test_a_control_guest_fault_outside_the_test_is_named_so(self):
        cg = control.ControlGuest(self.dir)
        cg.events = [(100.0, "a guest triple fault", "mock")]
        self.assertIsNone(cg.evidence(["a guest soft lockup"], 200.0, 300.0))
        self.assertIn("in this run, not during the test", cg.evidence(["a guest triple fault"], 200.0, 300.0))
        self.assertIn("during the failing test", cg.evidence(["a guest triple fault"], 90.0, 110.0))
        cg.stop()

    def test_a_guest_fault_whose_retry_passes_is_listed(self):
        self.guest_fault_log()
        journal = self.journal()
        self.control_guest(journal, "a guest triple fault")
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (1, 0, 0))
        self.assertEqual(CALLS["flaky"], 2)
        _, files, _ = self.results(journal)
        self.assertIn("RETRIED", files["e2e-retried"])
        self.assertIn("a guest triple fault", files["e2e-retried"])

    def test_a_guest_fault_reruns_the_class_as_one_retry(self):
        self.guest_fault_log()
        journal = self.journal()
        self.control_guest(journal, "a guest triple fault")
        self.run_testhost(journal, Mocks.SharedGuest)
        self.assertEqual(journal.totals(), (2, 0, 0))
        self.assertEqual(len(journal.retried), 1)  # one fault, one retry, whatever it failed
        self.assertEqual(TH.too_many_retries(journal), [])

    def test_a_wedged_vcpu_in_the_saved_stall_report_is_a_guest_fault(self):
        os.environ["AMBER_E2E_RETRY_UNCONFIRMED"] = "1"
        self.addCleanup(os.environ.pop, "AMBER_E2E_RETRY_UNCONFIRMED")
        name = "test_run_tests.Mocks.FailsOnce.test_flaky"
        os.makedirs(os.path.join(self.dir, name))
        report = os.path.join(self.dir, name, "vm0-1.txt")  # what report_live saves at the failure
        with open(report, "w") as f:
            f.write("amber: info: state: vcpu0 regs: no sample (did not answer)\n(a wedged vCPU: vcpu0 stayed "
                    "runnable in KVM_RUN for 1 s without one exit and did not answer amber's signal)\n")
        os.utime(report, (time.time() + 60, time.time() + 60))  # written while the test ran
        journal = self.journal()
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (1, 0, 0))
        self.assertIn("its guest's log shows a wedged vCPU", journal.retried[name])

    def test_a_guest_fault_that_fails_a_test_and_its_class_teardown_is_one_retry(self):
        self.guest_fault_log()
        journal = self.journal()
        self.control_guest(journal, "a guest triple fault")
        self.run_testhost(journal, Mocks.GoneInTeardown)
        self.assertEqual(journal.totals(), (1, 0, 0))
        self.assertEqual(CALLS["teardown"], 2)  # the class ran again, fixture included
        self.assertEqual(list(journal.retried), ["test_run_tests.Mocks.GoneInTeardown.test_on_it"])

    def leak_setup(self, rip):
        """A fake test-host kallsyms with __svm_vcpu_run at 0xffffffffc055a170, and a test log whose
        stall report shows vcpu1 at rip."""
        syms = os.path.join(self.dir, "kallsyms")
        with open(syms, "w") as f:
            f.write("ffffffffc055a000 t svm_vcpu_free\t[kvm_amd]\nffffffffc055a170 t __svm_vcpu_run\t[kvm_amd]\n"
                    "ffffffffc055a380 t __svm_sev_es_vcpu_run\t[kvm_amd]\n")
        for name, value in (("KALLSYMS", syms), ("SHUTDOWN_LOG", os.path.join(self.dir, "none"))):
            self.addCleanup(setattr, TH.leak, name, getattr(TH.leak, name))
            setattr(TH.leak, name, value)
        TH.leak._range.clear()
        self.addCleanup(TH.leak._range.clear)
        log = os.path.join(self.dir, "stalled.log")
        with open(log, "w") as f:
            f.write("[stderr] amber: info: state: vcpu1 regs: rip %#x rsp 0xffffd18440a63a70\n" % rip)
        os.utime(log, (time.time() + 60, time.time() + 60))

    def test_a_guest_on_the_test_hosts_vmrun_site_is_retried_with_that_evidence(self):
        self.leak_setup(0xffffffffc055a20c)
        journal = self.journal()
        self.run_testhost(journal, Mocks.FailsOnce)  # no control guest, no plain retry
        self.assertEqual(journal.totals(), (1, 0, 0))
        line = list(journal.retried.values())[0]
        self.assertIn("evidence: amber's stall report shows vcpu1 at rip 0xffffffffc055a20c, inside the test "
                      "host's own __svm_vcpu_run (0xffffffffc055a170-0xffffffffc055a380)", line)

    def test_a_failure_asks_the_live_vm_for_its_report_before_judging_it(self):
        self.leak_setup(0)  # the test's log has no stall report of its own
        log = os.path.join(self.dir, "asked.log")

        class StalledVm:
            argv, lines = ["/build/amber"], []
            proc = subprocess.Popen(["sleep", "60"])

            def state_report(self):  # amber answers SIGUSR2 into the test's log
                with open(log, "a") as f:
                    f.write("[stderr] amber: info: state: vcpu0 regs: rip 0xffffffffc055a20c rsp 0\n")
                os.utime(log, (time.time() + 60, time.time() + 60))
                return "--- amber state (SIGUSR2) ---"

        vm = StalledVm()
        self.addCleanup(lambda: (vm.proc.kill(), vm.proc.wait()))
        with TH.harness._LIVE_LOCK:
            TH.harness.LIVE.add(vm)
        self.addCleanup(TH.harness.LIVE.discard, vm)
        journal = self.journal()
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (1, 0, 0))
        self.assertIn("amber's stall report shows vcpu0 at rip 0xffffffffc055a20c", list(journal.retried.values())[0])

    def test_a_stall_report_at_an_ordinary_rip_is_no_evidence(self):
        self.leak_setup(0xffffffffc055a380)  # the next function: not the VMRUN site
        journal = self.journal()
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (0, 1, 0))
        self.assertEqual(journal.retried, {})

    def test_a_traced_shutdown_exit_names_its_rip(self):
        rng = (0xffffffffc055a170, 0xffffffffc055a380)
        trace = ["vcpu0-172 [001] ..... 16.8: kvm_exit: vcpu 0 reason shutdown rip 0x20001e info1 0x0",
                 "vcpu1-173 [000] ..... 20.1: kvm_exit: vcpu 1 reason shutdown rip 0xffffffffc055a20c info1 0x0"]
        self.assertIsNone(TH.leak.evidence([], trace[:1], rng))  # a guest's own triple fault
        self.assertIn("the test host's KVM trace of a shutdown exit shows vcpu1 at rip 0xffffffffc055a20c",
                      TH.leak.evidence([], trace, rng))
        self.assertIsNone(TH.leak.evidence([], trace, None))  # no kvm-amd symbols: no evidence

    def test_with_retry_unconfirmed_a_fault_named_in_the_failure_itself_reruns(self):
        os.environ["AMBER_E2E_RETRY_UNCONFIRMED"] = "1"
        self.addCleanup(os.environ.pop, "AMBER_E2E_RETRY_UNCONFIRMED")
        journal = self.journal()
        self.run_testhost(journal, Mocks.GoneSandbox)  # no log names the fault; the SDK's error does
        self.assertEqual(journal.totals(), (1, 0, 0))
        self.assertIn("evidence: its guest's log shows a guest triple fault; unconfirmed",
                      list(journal.retried.values())[0])

    def test_a_failure_s_evidence_outlives_the_test_host_that_saw_it(self):
        """A test fails with a guest fault, then its test host dies before the retries: the run
        resumed in a fresh test host retries it on the journaled evidence."""
        os.environ["AMBER_E2E_RETRY_UNCONFIRMED"] = "1"
        self.addCleanup(os.environ.pop, "AMBER_E2E_RETRY_UNCONFIRMED")
        name = Mocks.GoneSandbox("test_gone").id()
        count("gone")
        first = self.journal()
        first.record("start", name)
        first.record("fail", name, "RuntimeError: sandbox sbx-1 is gone: guest reset (triple fault on vcpu0)")
        with open(first.path, "a") as f:
            f.write("died test host (debian12) killed: its heartbeat stopped 61 s ago\n")
        journal = self.journal()
        self.run_testhost(journal, Mocks.GoneSandbox)
        self.assertEqual(CALLS["gone"], 2)
        self.assertEqual(journal.totals(), (1, 0, 0))
        self.assertIn("evidence: its guest's log shows a guest triple fault; unconfirmed",
                      journal.retried[name])

    def test_with_retry_unconfirmed_a_failure_without_a_fault_still_counts(self):
        os.environ["AMBER_E2E_RETRY_UNCONFIRMED"] = "1"
        self.addCleanup(os.environ.pop, "AMBER_E2E_RETRY_UNCONFIRMED")
        journal = self.journal()
        self.run_testhost(journal, Mocks.FailsOnce)  # no fault in any log
        self.assertEqual(journal.totals(), (0, 1, 0))
        self.assertEqual(CALLS["flaky"], 1)
        self.assertEqual(journal.retried, {})

    def test_a_plain_failure_is_not_retried(self):
        journal = self.journal()
        self.run_testhost(journal, Mocks.FailsOnce)
        self.assertEqual(journal.totals(), (0, 1, 0))
        self.assertEqual(CALLS["flaky"], 1)
        self.assertEqual(journal.retried, {})

    def test_a_resumed_journal_keeps_outcomes_and_reasons(self):
        journal = self.journal()
        self.run_testhost(journal, Mocks.SubtestCase, Mocks.Skips)
        again = self.journal()
        self.assertEqual(again.totals(), journal.totals())
        self.assertEqual(again.failed(), journal.failed())
        self.assertEqual(again.listed("skip"), journal.listed("skip"))

    def test_a_cut_run_counts_its_cut_off_test_or_one_failure(self):
        journal = self.journal()
        self.run_testhost(journal, Mocks.SubtestCase)
        self.assertEqual(self.results(journal, TH.cut_run_failures(journal))[1]["e2e"],
                         "1 passed, 2 failed, 0 skipped\n")  # died between tests: +1
        journal.record("start", Mocks.AlwaysFails("test_broken").id())
        self.assertEqual(self.results(journal, TH.cut_run_failures(journal))[1]["e2e"],
                         "1 passed, 2 failed, 0 skipped\n")  # the cut-off test is the +1

    def test_kill_live_ends_every_process_the_runner_started(self):
        # A test's helpers outside the harness (the SDK's sandboxes) must not outlive a watchdog.
        proc = subprocess.Popen(["sh", "-c", "sleep 100 & sleep 100"], start_new_session=True)

        def reap():
            try:
                os.killpg(proc.pid, 9)  # whatever kill_live left
            except OSError:
                pass
            proc.wait()
        self.addCleanup(reap)
        deadline = time.monotonic() + 5
        while len(R.descendants(os.getpid())) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        kids = R.descendants(os.getpid())
        self.assertIn(proc.pid, kids)
        self.assertNotIn(os.getpid(), kids)
        killed = R.kill_live()
        self.assertEqual(set(kids) - set(killed), set(), "kill_live must return every pid it killed")
        self.assertEqual(proc.wait(timeout=5), -9)

        def running():
            return [p for p in kids if TH.proc_state(p) not in ("Z", None)]
        deadline = time.monotonic() + 5
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(running(), [], "kill_live left these running")


if __name__ == "__main__":
    unittest.main()


class WedgedVcpu(unittest.TestCase):
    """The stall report's wedge label (e2e.wedge_label): a vCPU runnable in KVM_RUN that made no
    exit and did not answer amber's signal."""

    REPORT = ["amber: info: state: vcpu0: 9 exits, last KVM_EXIT_IO at 0x3fc, in KVM_RUN; back from 0 pauses",
              "amber: info: state: vcpu0 regs: no sample (did not answer)"]

    def test_a_runnable_silent_vcpu_with_no_exit_is_wedged(self):
        label = TH.wedge_label({"vcpu0": "R"}, {"vcpu0": "R"}, {"exits": 0}, self.REPORT, 1.0)
        self.assertIn("(a wedged vCPU: vcpu0 stayed runnable in KVM_RUN for 1 s", label)
        self.assertEqual(TH.guest_faults(["kvm counters (debugfs, +1 s): exits 24478 (+0)" + label]),
                         ["a wedged vCPU"])

    def test_any_exit_a_sleeping_thread_or_an_answer_is_not(self):
        self.assertEqual(TH.wedge_label({"vcpu0": "R"}, {"vcpu0": "R"}, {"exits": 3}, self.REPORT, 1.0), "")
        self.assertEqual(TH.wedge_label({"vcpu0": "S"}, {"vcpu0": "S"}, {"exits": 0}, self.REPORT, 1.0), "",
                         "a halted vCPU sleeps in KVM_RUN and makes no exit: not wedged")
        self.assertEqual(TH.wedge_label({"vcpu0": "R"}, {"vcpu0": "S"}, {"exits": 0}, self.REPORT, 1.0), "")
        answered = self.REPORT[:1] + ["amber: info: state: vcpu0 regs: rip 0xffffffff81000000 rsp 0x0"]
        self.assertEqual(TH.wedge_label({"vcpu0": "R"}, {"vcpu0": "R"}, {"exits": 0}, answered, 1.0), "")
        self.assertEqual(TH.wedge_label({"vcpu1": "R"}, {"vcpu1": "R"}, {"exits": 0}, self.REPORT, 1.0), "",
                         "vcpu1 answered (only vcpu0 did not), and vcpu0's thread was not seen runnable")

    def test_vcpu_states_reads_this_process_threads(self):
        import threading
        ready, stop = threading.Event(), threading.Event()

        def spin():
            ready.set()
            while not stop.is_set():
                pass
        t = threading.Thread(target=spin, name="vcpu7", daemon=True)
        t.start()
        ready.wait()
        try:
            import ctypes
            libc = ctypes.CDLL(None)
            libc.pthread_setname_np(ctypes.c_ulong(t.ident), b"vcpu7")
            states = TH.vcpu_states(os.getpid())
        finally:
            stop.set()
            t.join()
        self.assertIn(states.get("vcpu7"), ("R", "S"), states)


class Unkillable(unittest.TestCase):
    """e2e.unkillable_check: a process that outlives the watchdog's SIGKILL ends the test host."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="amber-runner-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.broken = os.path.join(self.dir, "broken")

    def test_a_process_still_there_is_reported_to_the_test_host(self):
        p = subprocess.Popen(["sleep", "30"])  # stands in for an amber stuck in the kernel
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        with contextlib.redirect_stdout(io.StringIO()):
            why = TH.unkillable_check("test_x", [p.pid], wait_s=0.5, broken=self.broken)
        self.assertIn("pid %d still alive" % p.pid, why)
        with open(self.broken) as f:
            self.assertIn("under test_x (stuck in the test host's kernel)", f.read())

    def test_a_vm_that_outlives_its_cleanup_s_sigkill_is_handed_to_the_test_host(self):
        seen = []

        def after_sigkill(pids):  # the test host's hook; here it ends the process for real
            seen.extend(pids)
            for pid in pids:
                os.kill(pid, 9)

        vm = TH.harness.Vm(["sh", "-c", "trap '' TERM; sleep 30"], os.path.join(self.dir, "vm.log"))
        # A SIGKILL that does not end the process, as for an amber held in the test host's kernel.
        with mock.patch.object(TH.harness.os, "killpg"), mock.patch.object(TH.harness, "AFTER_SIGKILL", after_sigkill):
            vm.kill(grace_s=0.1)
        self.assertEqual(seen, [vm.proc.pid])

    def test_gone_or_zombie_processes_are_not(self):
        p = subprocess.Popen(["true"])
        while TH.proc_state(p.pid) not in ("Z", None):
            time.sleep(0.01)
        self.assertIsNone(TH.unkillable_check("test_x", [p.pid], wait_s=0.5, broken=self.broken))
        p.wait()
        self.assertFalse(os.path.exists(self.broken))
