"""The SDK against a hostile agent (tests/agent/hostile_agent.py): bounded buffers, a download
timeout, escaped guest text, and the guest's file mode never applied (issue 17)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)
sys.path.insert(0, SDK)
REPO = os.path.dirname(os.path.dirname(SDK))
HOSTILE = os.path.join(REPO, "tests", "agent", "hostile_agent.py")
FAKE = os.path.join(HERE, "fake_amber.py")

from amber import Sandbox, SandboxClientError, SandboxTimeoutError, proto  # noqa: E402

MIB = 1 << 20


def no_controls(text):
    return not any(ord(c) < 0x20 or ord(c) == 0x7F or 0x80 <= ord(c) < 0xA0 for c in text)


class TestClientBounds(unittest.TestCase):
    """proto.AgentClient straight on the hostile agent's socket."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="amber-hostile-")
        self.sock = os.path.join(self.dir, "evil.sock")
        self.proc = subprocess.Popen([sys.executable, HOSTILE, self.sock], stdout=subprocess.PIPE)
        self.assertEqual(self.proc.stdout.readline().strip(), b"ready")
        self.addCleanup(self.cleanup)
        self.client = proto.AgentClient(lambda t: proto.connect_unix(self.sock, t))

    def cleanup(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_read_file_stops_at_max_bytes(self):
        t0 = time.monotonic()
        with self.assertRaises(proto.AgentLimitError) as cm:
            self.client.read_file("/flood", timeout=30, max_bytes=2 * MIB)
        self.assertIn("max_bytes", str(cm.exception))
        self.assertLess(time.monotonic() - t0, 20)

    def test_read_file_times_out(self):
        t0 = time.monotonic()
        with self.assertRaises(proto.AgentTimeout):
            self.client.read_file("/stall", timeout=1.0)
        self.assertLess(time.monotonic() - t0, 5)

    def test_exec_output_is_bounded(self):
        with self.assertRaises(proto.AgentLimitError) as cm:
            self.client.exec(["yes"], timeout=30, max_output_bytes=2 * MIB)
        self.assertIn("stdout", str(cm.exception))

    def test_guest_text_is_escaped(self):
        v = self.client.ping()["agent_version"]
        self.assertTrue(no_controls(v), repr(v))
        self.assertIn("\\x1b", v)
        with self.assertRaises(proto.AgentError) as cm:
            self.client.read_file("/error", timeout=10)
        self.assertTrue(no_controls(cm.exception.message), repr(cm.exception.message))
        self.assertTrue(no_controls(str(cm.exception)), repr(str(cm.exception)))

    def test_mode_is_not_applied(self):
        # read_file returns bytes; the agent's MODE 06777 goes nowhere.
        self.assertEqual(self.client.read_file("/x", timeout=10), b"owned\n")


class TestSandboxDownload(unittest.TestCase):
    """Sandbox.download()/execute()/ping() through tests/fake_amber.py with the hostile agent."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="amber-sdk-hostile-")
        env = {"AMBER_BIN": FAKE, "AMBER_KVM_DEVICE": "/dev/null", "AMBER_TIMEOUT_SCALE": "1",
               "FAKE_AMBER_AGENT": HOSTILE}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self.addCleanup(self.restore, saved)
        self.sbx = Sandbox.create(runtime_dir=self.root)

    def restore(self, saved):
        try:
            self.sbx.delete()
        except Exception:  # noqa: BLE001
            pass
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(self.root, ignore_errors=True)

    def test_download_bounds_and_timeout(self):
        with self.assertRaises(SandboxClientError) as cm:
            self.sbx.download("/flood", max_bytes=MIB)
        self.assertEqual(cm.exception.status, 413)
        self.assertIn("max_bytes", str(cm.exception))
        t0 = time.monotonic()
        with self.assertRaises(SandboxTimeoutError):
            self.sbx.download("/stall", timeout=1.0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(self.sbx.download("/etc/passwd"), b"owned\n")

    def test_execute_bound_and_escaped_text(self):
        with self.assertRaises(SandboxClientError) as cm:
            self.sbx.execute("yes", max_output_bytes=MIB)
        self.assertEqual(cm.exception.status, 413)
        self.assertTrue(no_controls(self.sbx.ping()["agent_version"]))
        with self.assertRaises(SandboxClientError) as cm:
            self.sbx.download("/error")
        self.assertTrue(no_controls(str(cm.exception)), repr(str(cm.exception)))


if __name__ == "__main__":
    unittest.main()
