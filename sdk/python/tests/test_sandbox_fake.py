"""Sandbox lifecycle tests against tests/fake_amber.py (same command-line contract as build/amber,
a real amber-agent behind a Unix socket): everything the SDK does except booting a VM."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from fakeenv import AGENT, FAKE, HERE, REPO, SDK, needs_agent  # noqa: E402,F401 (puts the SDK on sys.path)

from amber import (Sandbox, SandboxClientError, SandboxNotFoundError, SandboxTimeoutError,  # noqa: E402
                   SandboxUnavailableError)

import fakeenv  # noqa: E402

setUpModule = fakeenv.set_env
tearDownModule = fakeenv.restore_env


def alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return "\nState:\tZ" not in f.read()
    except OSError:
        return False


@needs_agent
class TestLifecycle(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="amber-sdk-test-")
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for sbx in Sandbox.list(runtime_dir=self.root):
            try:
                sbx.delete()
            except Exception:  # noqa: BLE001
                pass
        fakeenv.kill_leftovers(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def create(self, **kw):
        return Sandbox.create(runtime_dir=self.root, **kw)

    def test_create_execute_pause_resume_delete(self):
        sbx = self.create(vcpus=2, mem_mib=128)
        for name in ("api.sock", "vsock.sock", "amber.pid", "config.json", "rootfs.ext4", "console.log"):
            self.assertTrue(os.path.exists(os.path.join(sbx.dir, name)), "runtime dir lacks %s" % name)
        self.assertEqual((sbx.config["vcpus"], sbx.config["mem_mib"]), (2, 128))
        r = sbx.execute("echo out; echo err >&2; exit 3")
        self.assertEqual((r.stdout, r.stderr, r.returncode, r.exit_code), ("out\n", "err\n", 3, 3))
        self.assertEqual(sbx.upload("/tmp/amber-sdk-test-%s" % sbx.id, "héllo"), 6)
        self.assertEqual(sbx.download("/tmp/amber-sdk-test-%s" % sbx.id), "héllo".encode())
        os.unlink("/tmp/amber-sdk-test-%s" % sbx.id)

        rec = sbx.pause()
        self.assertEqual((rec["sandbox_id"], rec["paused"]), (sbx.id, True))
        self.assertTrue(rec["paused_at"])
        with self.assertRaises(SandboxClientError) as cm:
            sbx.pause()
        self.assertEqual(cm.exception.status, 409)
        self.assertIn("already paused", str(cm.exception))
        with self.assertRaises(SandboxClientError) as cm:
            sbx.execute("true")
        self.assertEqual(cm.exception.status, 409)
        self.assertIn("paused", str(cm.exception))
        self.assertEqual(sbx.state(), "Paused", "a refused execute() must leave the sandbox paused")
        rec = sbx.resume()
        self.assertEqual(rec["paused"], False)
        self.assertIn("paused_ms", rec)
        with self.assertRaises(SandboxClientError) as cm:
            sbx.resume()
        self.assertEqual(cm.exception.status, 409)

        pid, d = sbx.pid, sbx.dir
        t0 = time.monotonic()
        sbx.delete()
        self.assertLess(time.monotonic() - t0, 4, "delete should take the agent power-off path")
        self.assertFalse(os.path.exists(d), "delete left the runtime directory")
        self.assertFalse(alive(pid), "delete left amber (pid %d) running" % pid)
        for call in (lambda: sbx.execute("true"), sbx.pause, sbx.resume, sbx.delete, sbx.info,
                     lambda: Sandbox.get(sbx.id, runtime_dir=self.root)):
            with self.assertRaises(SandboxNotFoundError):
                call()

    def test_killed_amber_means_not_found_quickly(self):
        sbx = self.create()
        os.kill(sbx.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with self.assertRaises(SandboxNotFoundError) as cm:
            sbx.execute("true")
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn("killed by SIGKILL", str(cm.exception))
        self.assertFalse(os.path.exists(sbx.dir), "the stale directory should be removed")

    def test_amber_dying_during_execute_does_not_hang(self):
        sbx = self.create()
        pid = sbx.pid
        subprocess.Popen(["sh", "-c", "sleep 1; kill -9 %d" % pid])
        t0 = time.monotonic()
        with self.assertRaises((SandboxNotFoundError, SandboxUnavailableError)):
            sbx.execute("sleep 20")
        self.assertLess(time.monotonic() - t0, 8, "execute() hung after amber died")

    def test_stale_directory_reports_exit_reason_and_is_removed(self):
        d = os.path.join(self.root, "old-one")
        os.makedirs(d)
        with open(os.path.join(d, "amber.pid"), "w") as f:
            f.write("999999\n")
        with open(os.path.join(d, "exit.json"), "w") as f:
            f.write('{"reason": "guest power-off", "status": 0}')
        with self.assertRaises(SandboxNotFoundError) as cm:
            Sandbox.get("old-one", runtime_dir=self.root)
        self.assertIn("guest power-off", str(cm.exception))
        self.assertFalse(os.path.exists(d))

    def test_get_and_list_from_another_process_and_amber_outlives_creator(self):
        code = ("import sys; sys.path.insert(0, %r); from amber import Sandbox; "
                "s = Sandbox.create(runtime_dir=%r); print(s.id)" % (SDK, self.root))
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, timeout=60)
        sid = out.stdout.decode().strip()
        sbx = Sandbox.get(sid, runtime_dir=self.root)
        self.assertIn(sid, [s.id for s in Sandbox.list(runtime_dir=self.root)])
        self.assertEqual(sbx.execute(["echo", "still here"]).stdout, "still here\n")
        pid = sbx.pid
        sbx.delete()
        time.sleep(0.2)
        self.assertFalse(alive(pid), "amber of another process left running after delete")

    def test_max_sandboxes_refuses_the_third(self):
        a = self.create(max_sandboxes=2)
        b = self.create(max_sandboxes=2)
        a.pause()  # paused sandboxes count
        with self.assertRaises(SandboxClientError) as cm:
            self.create(max_sandboxes=2)
        self.assertEqual(cm.exception.status, 429)
        self.assertIn("max_sandboxes=2", str(cm.exception))
        self.assertEqual(len(os.listdir(self.root)) - 1, 2, "the refused create left a directory")
        b.delete()
        self.create(max_sandboxes=2).delete()

    def test_context_manager_deletes(self):
        with self.create() as sbx:
            d = sbx.dir
            self.assertEqual(sbx.execute("echo hi").stdout, "hi\n")
        self.assertFalse(os.path.exists(d))

    def test_execute_timeout(self):
        sbx = self.create()
        with self.assertRaises(SandboxTimeoutError) as cm:
            sbx.execute("echo partial; sleep 30", timeout=1)
        self.assertEqual(cm.exception.result.stdout, "partial\n")

    def test_missing_kvm_is_unavailable_with_reason(self):
        os.environ["AMBER_KVM_DEVICE"] = "/nonexistent/kvm"
        try:
            with self.assertRaises(SandboxUnavailableError) as cm:
                self.create()
        finally:
            os.environ["AMBER_KVM_DEVICE"] = "/dev/null"
        self.assertIn("/nonexistent/kvm is missing", str(cm.exception))

    def test_early_exit_shows_stderr_and_cleans_up(self):
        os.environ["FAKE_AMBER_FAIL"] = "cannot open /dev/kvm: permission denied"
        try:
            with self.assertRaises(SandboxUnavailableError) as cm:
                self.create()
        finally:
            del os.environ["FAKE_AMBER_FAIL"]
        self.assertIn("exited with status 1", str(cm.exception))
        self.assertIn("cannot open /dev/kvm: permission denied", str(cm.exception))
        self.assertEqual([n for n in os.listdir(self.root) if not n.startswith(".")], [])

    def test_boot_timeout_kills_amber_and_cleans_up(self):
        os.environ["FAKE_AMBER_BOOT_DELAY_S"] = "30"
        try:
            t0 = time.monotonic()
            with self.assertRaises(SandboxTimeoutError):
                self.create(boot_timeout=1.5)
        finally:
            del os.environ["FAKE_AMBER_BOOT_DELAY_S"]
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual([n for n in os.listdir(self.root) if not n.startswith(".")], [])

    def test_bad_arguments(self):
        for kw in ({"vcpus": 0}, {"mem_mib": "x"}, {"sandbox_id": "../x"}, {"max_sandboxes": 0}):
            with self.assertRaises(SandboxClientError, msg="create(%r) was accepted" % kw):
                self.create(**kw)


if __name__ == "__main__":
    unittest.main()
