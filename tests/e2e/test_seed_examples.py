"""e2e: the three pause examples of the sandbox SDK this project's SDK follows ("Basic Pause",
"Pause During Long Operation", "With Error Handling" in its pause documentation), run as they
are written against amber's SDK on real guests. Their text carries no licence, so it is not
copied into the project: each example is the same statements in the same order, with `amber`
for the other SDK's module name, and its printed lines are checked against the output its
comments promise. test_sdk.py's seed scenarios check the same behaviour in finer detail.

Each example calls Sandbox.create() with no arguments: the class points XDG_RUNTIME_DIR at a
private directory, so that they run in the SDK's default runtime root and leave nothing behind.
"""
import contextlib
import io
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))

import harness  # noqa: E402
import amber  # noqa: E402


def basic_pause():
    from amber import Sandbox
    sbx = Sandbox.create()
    # Create a file to demonstrate state preservation
    sbx.execute("echo '42' > /tmp/value.txt")
    # Pause the sandbox
    result = sbx.pause()
    print(f"Paused: {result['paused']}")
    print(f"Paused at: {result['paused_at']}")
    # Resume later
    sbx.resume()
    # File system state is preserved
    output = sbx.execute("cat /tmp/value.txt")
    print(output.stdout)  # "42"
    sbx.delete()


def pause_during_long_operation():
    from amber import Sandbox
    import time
    sbx = Sandbox.create()
    # Create setup files
    sbx.execute("mkdir -p /tmp/workspace")
    sbx.execute("echo 'setup complete' > /tmp/workspace/status.txt")
    # Pause to save resources while waiting
    sbx.pause()
    print("Sandbox paused, saving resources...")
    # Do other work...
    time.sleep(60)
    # Resume when ready
    sbx.resume()
    print("Sandbox resumed, continuing work...")
    # Files are still there
    status = sbx.execute("cat /tmp/workspace/status.txt")
    print(status.stdout)  # "setup complete"
    sbx.delete()


def with_error_handling():
    from amber import Sandbox, SandboxClientError
    sbx = Sandbox.create()
    try:
        sbx.pause()
        print("Sandbox paused successfully")
        # Try to pause again (will raise error)
        sbx.pause()
    except SandboxClientError as e:
        if "already paused" in str(e):
            print("Sandbox is already paused")
    finally:
        sbx.delete()


@harness.long_tier("three cold boots and the example's 60 s sleep: test_sdk's seed scenarios run the same "
                   "calls on one sandbox")
class TestSeedExamples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(harness.AMBER, os.X_OK):
            raise unittest.SkipTest("build/amber is missing: run make")
        if not os.path.exists("/dev/kvm"):
            raise unittest.SkipTest("no /dev/kvm here (run through scripts/testhost.sh)")

    def setUp(self):
        self.xdg = tempfile.mkdtemp(prefix="amber-seed-", dir="/tmp")
        saved = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = self.xdg
        self.addCleanup(self.cleanup, saved)

    def cleanup(self, saved):
        for s in amber.Sandbox.list():
            try:
                s.delete()
            except amber.SandboxError as e:
                harness.log("cleanup of %s: %s" % (s.id, e))
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
        shutil.rmtree(self.xdg, ignore_errors=True)

    def run_example(self, example):
        """The example's printed lines; it must leave no sandbox behind (each ends in delete())."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            example()
        lines = out.getvalue().split("\n")
        harness.log("%s printed %r" % (example.__name__, lines))
        self.assertEqual(amber.Sandbox.list(), [], "the example's sandbox is still there after delete()")
        return lines

    def test_basic_pause(self):
        lines = self.run_example(basic_pause)
        self.assertEqual(lines[0], "Paused: True")
        self.assertRegex(lines[1], r"^Paused at: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
        self.assertEqual(lines[2:], ["42", "", ""], "output.stdout was not '42\\n'")

    def test_pause_during_long_operation(self):
        lines = self.run_example(pause_during_long_operation)
        self.assertEqual(lines, ["Sandbox paused, saving resources...", "Sandbox resumed, continuing work...",
                                 "setup complete", "", ""])

    def test_with_error_handling(self):
        lines = self.run_example(with_error_handling)
        self.assertEqual(lines, ["Sandbox paused successfully", "Sandbox is already paused", ""])


if __name__ == "__main__":
    unittest.main()
