"""Unit tests of the e2e runner's accounting (tests/e2e/run_tests.py), with mock suites and no VM:
what counts as passed or failed, retries, fixtures, subtests and cut-off runs."""
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import harness  # noqa: E402
import run_tests as R  # noqa: E402

CALLS = {}


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
            CALLS["fixture"] = CALLS.get("fixture", 0) + 1
            if CALLS["fixture"] == 1:
                raise RuntimeError("the guest did not boot")

        def test_one(self):
            pass

        def test_two(self):
            pass


    class FailsOnce(unittest.TestCase):
        def test_flaky(self):
            CALLS["flaky"] = CALLS.get("flaky", 0) + 1
            self.assertGreater(CALLS["flaky"], 1, "first run fails")


    class AlwaysFails(unittest.TestCase):
        def test_broken(self):
            self.fail("always")


class RunnerAccounting(unittest.TestCase):
    def setUp(self):
        CALLS.clear()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.journal = R.Journal(os.path.join(self.dir, "e2e-journal.txt"))
        saved = (R.JournalResult.journal, R.JournalResult._class, harness.in_test_host)
        R.JournalResult.journal = self.journal
        R.JournalResult._class = None

        def restore():
            R.JournalResult.journal, R.JournalResult._class, harness.in_test_host = saved
        self.addCleanup(restore)
        self.runner = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0,
                                              resultclass=R.JournalResult)

    def run_suite(self, *cases, in_test_host=False):
        harness.in_test_host = lambda: in_test_host
        loader = unittest.TestLoader()
        found = unittest.TestSuite([loader.loadTestsFromTestCase(c) for c in cases])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):  # the runner prints each failure as it happens
            self.runner.run(R.select(found, self.journal))
            R.retry_failed(self.runner, found, self.journal)
        return out.getvalue()

    def test_a_failing_subtest_fails_its_test(self):
        self.run_suite(Mocks.SubtestCase)
        self.assertEqual(self.journal.totals(), (1, 1))
        self.assertEqual([n for n, _ in self.journal.failed()], [Mocks.SubtestCase("test_cases").id()])

    def test_a_failure_that_passes_on_its_test_host_retry_counts_as_passed(self):
        printed = self.run_suite(Mocks.FailsOnce, in_test_host=True)
        self.assertEqual(self.journal.totals(), (1, 0))
        self.assertIn("running it again", printed, "a retry must be printed")

    def test_no_retry_outside_the_test_host(self):
        self.run_suite(Mocks.FailsOnce, in_test_host=False)
        self.assertEqual(self.journal.totals(), (0, 1))

    def test_a_repeated_failure_counts(self):
        self.run_suite(Mocks.AlwaysFails, in_test_host=True)
        self.assertEqual(self.journal.totals(), (0, 1))

    def test_a_failed_class_setup_is_retried_and_then_counted_by_its_tests(self):
        self.run_suite(Mocks.FlakyFixture, in_test_host=True)
        self.assertEqual(CALLS["fixture"], 2)
        self.assertEqual(self.journal.totals(), (2, 0))

    def test_a_failed_class_setup_counts_once_outside_the_test_host(self):
        self.run_suite(Mocks.FlakyFixture, in_test_host=False)
        self.assertEqual(self.journal.totals(), (0, 1))

    def test_a_cut_off_test_counts_as_failed_until_it_runs(self):
        name = Mocks.AlwaysFails("test_broken").id().replace("AlwaysFails.test_broken", "Gone.test_cut")
        self.journal.record("start", name)
        self.assertEqual(self.journal.totals(), (0, 1))
        self.assertIn((name, "started but has no outcome (cut off)"), self.journal.failed())
        self.journal.record("pass", name)
        self.assertEqual(self.journal.totals(), (1, 0))

    def test_the_third_cut_off_fails_a_test_without_running_it(self):
        test = Mocks.FailsOnce("test_flaky")
        for _ in range(R.MAX_CUT_OFFS):
            self.journal.record("start", test.id())
        with contextlib.redirect_stdout(io.StringIO()):
            todo = R.select(unittest.TestSuite([test]), self.journal)
        self.assertEqual(todo.countTestCases(), 0)
        self.assertEqual(self.journal.outcomes[test.id()], "fail")
        self.assertNotIn("flaky", CALLS, "a test cut off too often must not run again")

    def test_results_files_carry_totals_and_reasons(self):
        self.run_suite(Mocks.SubtestCase)
        with contextlib.redirect_stdout(io.StringIO()):
            R.write_results(self.dir, self.journal)
        with open(os.path.join(self.dir, "e2e.txt")) as f:
            self.assertEqual(f.read(), "1 passed, 1 failed\n")
        with open(os.path.join(self.dir, "e2e-failed.txt")) as f:
            self.assertIn("subtest b fails", f.read())

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
        R.kill_live()
        self.assertEqual(proc.wait(timeout=5), -9)

        def running():
            left = []
            for p in kids:
                try:
                    with open("/proc/%d/stat" % p) as f:
                        if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                            left.append(p)
                except OSError:
                    pass  # gone
            return left
        deadline = time.monotonic() + 5
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(running(), [], "kill_live left these running")

    def test_a_cut_run_counts_its_cut_off_test_or_one_failure(self):
        def totals_written():
            with contextlib.redirect_stdout(io.StringIO()):
                R.write_results_of_cut_run(self.dir, self.journal)
            with open(os.path.join(self.dir, "e2e.txt")) as f:
                return f.read()
        self.run_suite(Mocks.SubtestCase)
        self.assertEqual(totals_written(), "1 passed, 2 failed\n")  # died between tests: +1
        self.journal.record("start", Mocks.AlwaysFails("test_broken").id())
        self.assertEqual(totals_written(), "1 passed, 2 failed\n")  # the cut-off test is the +1

    def test_a_resumed_journal_keeps_outcomes(self):
        self.run_suite(Mocks.SubtestCase)
        again = R.Journal(self.journal.path)
        self.assertEqual(again.totals(), self.journal.totals())
        self.assertEqual(again.failed(), self.journal.failed())


if __name__ == "__main__":
    unittest.main()
