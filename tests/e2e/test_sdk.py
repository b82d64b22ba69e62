"""e2e tests of the Python SDK (sdk/python/amber) on real guests: the seed's three pause
scenarios, processes surviving a pause, delete and kill semantics, parallel isolation, the
max_sandboxes limit, and sharing sandboxes with amberctl.

Boots are expensive in the test host (15-30 s each), so cheap scenarios share one sandbox per
class. Each class uses its own runtime directory under /tmp, so other sandboxes on the machine
are neither counted nor touched.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))

import harness  # noqa: E402
from amber import (Sandbox, SandboxClientError, SandboxNotFoundError, SandboxUnavailableError,  # noqa: E402
                   timeout_scale)

AMBERCTL = os.path.join(REPO, "build", "amberctl")


def need_vm():
    if not os.access(harness.AMBER, os.X_OK):
        raise unittest.SkipTest("build/amber is missing: run make")
    if not os.path.exists("/dev/kvm"):
        raise unittest.SkipTest("no /dev/kvm here (run through tests/e2e/run.sh or scripts/testhost.sh)")


def new_root(tag):
    """A private runtime directory (its parent plays $XDG_RUNTIME_DIR for amberctl)."""
    xdg = tempfile.mkdtemp(prefix="amber-sdk-%s-" % tag, dir="/tmp")
    return xdg, os.path.join(xdg, "amber")


def proc_alive(pid):
    """True if pid runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def keep_console(sbx, name):
    """Copies the guest console to $AMBER_E2E_LOGDIR (if set) before the sandbox goes away."""
    log_dir = os.environ.get("AMBER_E2E_LOGDIR")
    if not log_dir or not sbx:
        return
    for src, suffix in (("console.log", ".console.log"), ("amber.stderr", ".stderr.log")):
        try:
            shutil.copy(os.path.join(sbx.dir, src), os.path.join(log_dir, "sdk-%s-%s%s" % (name, sbx.id, suffix)))
        except OSError:
            pass


def create(root, **kw):
    t0 = time.monotonic()
    sbx = Sandbox.create(runtime_dir=root, **kw)
    harness.log("sandbox %s up in %.1f s" % (sbx.id, time.monotonic() - t0))
    return sbx


def create_parallel(root, n, **kw):
    """n sandboxes booted concurrently (threads); raises the first failure after cleaning up.
    Every failed boot counts (the e2e runner alone decides what runs again, from evidence)."""
    out, errs = [None] * n, []

    def one(i):
        try:
            out[i] = create(root, **kw)
        except Exception as e:  # noqa: BLE001
            errs.append(e)

    if harness.in_test_host():
        # Concurrent boots under nested TCG have crashed the test host's own kernel; boot one
        # at a time there. The sandboxes still all run at once for the isolation checks.
        for i in range(n):
            one(i)
    else:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errs:
        for s in out:
            if s:
                s.delete()
        raise errs[0]
    return out


class TestSdkSharedSandbox(unittest.TestCase):
    """Scenarios that only need a running sandbox share one (each leaves it running)."""

    @classmethod
    def setUpClass(cls):
        need_vm()
        cls.xdg, cls.root = new_root("shared")
        cls.sbx = create(cls.root)

    @classmethod
    def tearDownClass(cls):
        keep_console(cls.sbx, "shared")
        try:
            cls.sbx.delete()
        finally:
            shutil.rmtree(cls.xdg, ignore_errors=True)

    def setUp(self):
        self.addCleanup(self.ensure_running)

    def ensure_running(self):
        try:
            if self.sbx.state() == "Paused":
                self.sbx.resume()
        except SandboxNotFoundError:
            pass

    def run_ok(self, cmd, **kw):
        r = self.sbx.execute(cmd, **kw)
        self.assertEqual(r.returncode, 0, "%r failed: stdout %r stderr %r" % (cmd, r.stdout, r.stderr))
        return r

    def test_seed_basic_pause_state_survives(self):
        self.run_ok("echo '42' > /tmp/value.txt")
        rec = self.sbx.pause()
        self.assertIs(rec.get("paused"), True, "pause() record: %r" % rec)
        self.assertEqual(rec.get("sandbox_id"), self.sbx.id)
        self.assertRegex(rec.get("paused_at") or "", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "paused_at is not ISO 8601")
        self.assertEqual(self.sbx.state(), "Paused", "GET / should say Paused")
        res = self.sbx.resume()
        self.assertIs(res.get("paused"), False, "resume() record: %r" % res)
        self.assertEqual(self.run_ok("cat /tmp/value.txt").stdout, "42\n", "the file did not survive")

    def test_seed_pause_during_long_operation(self):
        self.run_ok("mkdir -p /tmp/workspace && echo 'setup complete' > /tmp/workspace/status.txt")
        box = {}

        def long_op():
            try:
                box["r"] = self.sbx.execute("sleep 2; echo long operation finished")
            except Exception as e:  # noqa: BLE001
                box["e"] = e

        t = threading.Thread(target=long_op)
        t.start()
        time.sleep(0.5 * timeout_scale() ** 0.5)  # let it start inside the guest
        self.sbx.pause()
        time.sleep(5)
        self.assertTrue(t.is_alive(), "the long execute() finished while the sandbox was paused")
        self.sbx.resume()
        t.join(60 * timeout_scale())
        self.assertFalse(t.is_alive(), "the long execute() did not finish after resume")
        self.assertNotIn("e", box, "the long execute() failed across the pause: %r" % box.get("e"))
        self.assertEqual((box["r"].returncode, box["r"].stdout), (0, "long operation finished\n"))
        self.assertEqual(self.run_ok("cat /tmp/workspace/status.txt").stdout, "setup complete\n")

    def test_seed_pause_twice_is_a_409_conflict(self):
        self.sbx.pause()
        with self.assertRaises(SandboxClientError) as cm:
            self.sbx.pause()
        self.assertEqual(cm.exception.status, 409)
        self.assertIn("already paused", str(cm.exception))
        self.assertEqual(self.sbx.state(), "Paused", "the failed second pause changed the state")
        self.sbx.resume()

    def test_execute_while_paused_is_refused_and_stays_paused(self):
        self.sbx.pause()
        t0 = time.monotonic()
        with self.assertRaises(SandboxClientError) as cm:
            self.sbx.execute("echo should not run")
        self.assertLess(time.monotonic() - t0, 10 * timeout_scale(), "execute() waited instead of refusing")
        self.assertEqual(cm.exception.status, 409)
        self.assertIn("paused", str(cm.exception))
        self.assertEqual(self.sbx.state(), "Paused", "a refused execute() must leave the sandbox paused")
        self.sbx.resume()
        self.run_ok("true")

    def test_processes_survive_pause(self):
        pid = self.run_ok("setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $!").stdout.strip()
        self.assertTrue(pid.isdigit(), "no pid from the background sleep: %r" % pid)
        before = self.run_ok("cat /proc/%s/stat" % pid).stdout.split()[21]  # start time
        self.sbx.pause()
        time.sleep(2)
        self.sbx.resume()
        r = self.sbx.execute("cat /proc/%s/cmdline | tr '\\0' ' '" % pid)
        self.assertEqual(r.returncode, 0, "sleep 1000 (pid %s) is gone after resume: %r" % (pid, r.stderr))
        self.assertIn("sleep 1000", r.stdout, "pid %s is not the sleep any more: %r" % (pid, r.stdout))
        after = self.run_ok("cat /proc/%s/stat" % pid).stdout.split()[21]
        self.assertEqual(after, before, "pid %s was reused by a new process (start time changed)" % pid)
        self.run_ok("kill %s" % pid)

    def test_upload_download_and_stdout_stderr(self):
        data = bytes(range(256)) * 512
        self.assertEqual(self.sbx.upload("/tmp/blob.bin", data), len(data))
        self.assertEqual(self.sbx.download("/tmp/blob.bin"), data, "binary round trip changed the data")
        r = self.sbx.execute(["sh", "-c", "echo out; echo err >&2; exit 5"])
        self.assertEqual((r.stdout, r.stderr, r.returncode, r.exit_code), ("out\n", "err\n", 5, 5))

    def test_amberctl_and_sdk_share_sandboxes(self):
        if not os.access(AMBERCTL, os.X_OK):
            self.skipTest("build/amberctl is missing")
        usage = subprocess.run([AMBERCTL, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
        if "amberctl list" not in usage or "amberctl pause" not in usage:
            self.skipTest("build/amberctl has no list/pause yet")
        env = dict(os.environ, XDG_RUNTIME_DIR=self.xdg)
        r = subprocess.run([AMBERCTL, "list", "--json"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * timeout_scale())
        self.assertEqual(r.returncode, 0, "amberctl list failed: %s" % r.stderr.decode())
        self.assertIn(self.sbx.id, r.stdout.decode(), "amberctl list does not show the SDK's sandbox")
        try:
            json.loads(r.stdout.decode())
        except ValueError:
            self.fail("amberctl list --json is not JSON: %r" % r.stdout[:200])
        r = subprocess.run([AMBERCTL, "pause", "--id", self.sbx.id], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30 * timeout_scale())
        self.assertEqual(r.returncode, 0, "amberctl pause failed: %s" % r.stderr.decode())
        self.assertEqual(self.sbx.state(), "Paused", "the SDK does not see amberctl's pause")
        self.assertEqual(Sandbox.get(self.sbx.id, runtime_dir=self.root).state(), "Paused")
        self.sbx.resume()
        self.assertEqual(self.sbx.execute("echo back").stdout, "back\n")


class TestSdkEndings(unittest.TestCase):
    """Two sandboxes under max_sandboxes=2: the limit, then one deleted and one killed."""

    @classmethod
    def setUpClass(cls):
        need_vm()
        cls.xdg, cls.root = new_root("endings")
        cls.a, cls.b = create_parallel(cls.root, 2, mem_mib=128, max_sandboxes=2)

    @classmethod
    def tearDownClass(cls):
        for s in (cls.a, cls.b):
            keep_console(s, "endings")
            try:
                s.delete()
            except SandboxNotFoundError:
                pass
        shutil.rmtree(cls.xdg, ignore_errors=True)

    def test_a_limit_refuses_the_third(self):
        self.a.pause()  # a paused sandbox still counts
        try:
            with self.assertRaises(SandboxClientError) as cm:
                Sandbox.create(runtime_dir=self.root, mem_mib=128, max_sandboxes=2)
        finally:
            self.a.resume()
        self.assertEqual(cm.exception.status, 429)
        self.assertIn("max_sandboxes=2", str(cm.exception), "the error should name the limit")
        self.assertEqual(sorted(s.id for s in Sandbox.list(runtime_dir=self.root)), sorted([self.a.id, self.b.id]),
                         "the refused create left something behind")

    def test_b_deleted_means_gone(self):
        sbx, pid, d = self.a, self.a.pid, self.a.dir
        self.assertTrue(proc_alive(pid), "amber (pid %s) is not running before delete" % pid)
        t0 = time.monotonic()
        sbx.delete()
        harness.log("delete took %.1f s" % (time.monotonic() - t0))
        self.assertFalse(os.path.exists(d), "delete() left the runtime directory %s" % d)
        self.assertFalse(proc_alive(pid), "delete() left amber (pid %d) running" % pid)
        calls = {"execute": lambda: sbx.execute("true"), "pause": sbx.pause, "resume": sbx.resume,
                 "upload": lambda: sbx.upload("/tmp/x", b"x"), "download": lambda: sbx.download("/tmp/x"),
                 "delete": sbx.delete, "get": lambda: Sandbox.get(sbx.id, runtime_dir=self.root)}
        for name, call in calls.items():
            with self.assertRaises(SandboxNotFoundError, msg="%s() after delete() did not raise "
                                   "SandboxNotFoundError" % name):
                call()

    def test_c_killed_means_not_found(self):
        sbx, pid = self.b, self.b.pid
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        with self.assertRaises((SandboxNotFoundError, SandboxUnavailableError)) as cm:
            sbx.execute("echo hello")
        took = time.monotonic() - t0
        self.assertLess(took, 15, "the call after the kill took %.1f s" % took)
        harness.log("after SIGKILL: %s: %s" % (type(cm.exception).__name__, cm.exception))
        self.assertIn(sbx.id, str(cm.exception), "the message should name the sandbox")
        with self.assertRaises(SandboxNotFoundError):
            sbx.pause()
        self.assertFalse(os.path.exists(sbx.dir), "the stale runtime directory was not cleaned up")


@harness.long_tier("four cold sandboxes at once: test_hibernate's four template children check isolation")
class TestSdkParallel(unittest.TestCase):
    def test_four_sandboxes_are_isolated(self):
        need_vm()
        xdg, root = new_root("parallel")
        self.addCleanup(shutil.rmtree, xdg, True)
        t0 = time.monotonic()
        boxes = create_parallel(root, 4, mem_mib=128)
        harness.log("4 sandboxes up in %.1f s" % (time.monotonic() - t0))
        try:
            self.assertEqual(len({s.id for s in boxes}), 4)
            self.assertEqual(len({s.pid for s in boxes}), 4, "sandboxes share an amber process")
            for s in boxes:
                s.upload("/tmp/mine-%s" % s.id, s.id)
            for s in boxes:
                names = s.execute("ls /tmp").stdout.split()
                mine = [n for n in names if n.startswith("mine-")]
                self.assertEqual(mine, ["mine-%s" % s.id], "%s sees other sandboxes' files: %r" % (s.id, mine))
                self.assertEqual(s.download("/tmp/mine-%s" % s.id).decode(), s.id)
            # Pausing one leaves the others running.
            boxes[0].pause()
            self.assertEqual([s.state() for s in boxes], ["Paused", "Running", "Running", "Running"])
            self.assertEqual(boxes[1].execute("echo ok").stdout, "ok\n")
            boxes[0].resume()
        finally:
            for s in boxes:
                keep_console(s, "parallel")
                s.delete()


if __name__ == "__main__":
    unittest.main()
