"""Lifetimes and identity against tests/fake_amber.py (which keeps the /timeout deadline as amber
does): create(timeout=, on_timeout=), set_timeout, metadata, envs, and Sandbox.list's filters."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from fakeenv import AGENT, FAKE, HERE, REPO, SDK, needs_agent  # noqa: E402,F401 (puts the SDK on sys.path)

from amber import Sandbox, SandboxClientError, SandboxNotFoundError  # noqa: E402

import fakeenv  # noqa: E402

setUpModule = fakeenv.set_env
tearDownModule = fakeenv.restore_env


@needs_agent
class TestLifetime(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="amber-life-test-")
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for sbx in Sandbox.list(runtime_dir=self.root):
            try:
                sbx.delete()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def create(self, **kw):
        return Sandbox.create(runtime_dir=self.root, **kw)

    def test_deadline_outlives_the_creator(self):
        code = ("import sys; sys.path.insert(0, %r); from amber import Sandbox; "
                "s = Sandbox.create(runtime_dir=%r, timeout=2); print(s.id)" % (SDK, self.root))
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, timeout=60)
        sid = out.stdout.decode().strip()
        sbx = Sandbox.get(sid, runtime_dir=self.root)
        left = sbx.get_timeout()["timeout_s_left"]
        self.assertTrue(0 < left <= 2, left)
        time.sleep(3.5)
        with self.assertRaises(SandboxNotFoundError) as cm:
            Sandbox.get(sid, runtime_dir=self.root)
        self.assertIn("timeout", str(cm.exception))

    def test_set_timeout_extends_and_pause_action(self):
        sbx = self.create(timeout=1, on_timeout="pause")
        sbx.set_timeout(3)  # keeps "pause"
        self.assertEqual(sbx.get_timeout()["on_timeout"], "pause")
        time.sleep(1.6)
        self.assertEqual(sbx.state(), "Running", "set_timeout did not move the deadline")
        time.sleep(2.2)
        self.assertEqual(sbx.state(), "Paused")
        self.assertIsNone(sbx.get_timeout()["timeout_s_left"])
        sbx.resume()
        self.assertEqual(sbx.commands.run("echo alive").stdout, "alive\n")

    def test_bad_timeouts(self):
        sbx = self.create()
        self.assertIsNone(sbx.get_timeout()["timeout_s_left"])
        for bad in (0, -3, "10", None, True, float("nan"), 10 ** 9):
            with self.assertRaises(SandboxClientError) as cm:
                sbx.set_timeout(bad)
            self.assertIn("timeout must be a number of seconds > 0", str(cm.exception))
        with self.assertRaises(SandboxClientError):
            sbx.set_timeout(5, on_timeout="hibernate")
        with self.assertRaises(SandboxClientError):
            self.create(timeout=0)
        self.assertEqual([s.id for s in Sandbox.list(runtime_dir=self.root)], [sbx.id],
                         "a refused create left a sandbox behind")

    def test_metadata_envs_and_filters(self):
        a = self.create(metadata={"team": "red", "job": "1"}, envs={"GREETING": "hi"})
        b = self.create(metadata={"team": "blue"})
        self.assertEqual(a.commands.run("echo $GREETING").stdout, "hi\n")
        self.assertEqual(a.execute("echo $GREETING").stdout, "hi\n")
        self.assertEqual(a.commands.run("echo $GREETING", env={"GREETING": "yo"}).stdout, "yo\n")
        again = Sandbox.get(a.id, runtime_dir=self.root)  # as another process would see it
        self.assertEqual((again.metadata, again.envs), ({"team": "red", "job": "1"}, {"GREETING": "hi"}))
        ids = lambda **kw: [s.id for s in Sandbox.list(runtime_dir=self.root, **kw)]  # noqa: E731
        self.assertEqual(ids(metadata={"team": "red"}), [a.id])
        self.assertEqual(ids(metadata={"team": "red", "job": "2"}), [])
        self.assertEqual(sorted(ids()), sorted([a.id, b.id]))
        b.pause()
        self.assertEqual(ids(state="paused"), [b.id])
        self.assertEqual(ids(state="running"), [a.id])
        self.assertEqual(sorted(ids(state=["running", "paused"])), sorted([a.id, b.id]))
        for kw in ({"state": "stopped"}, {"state": []}, {"metadata": {"k": 1}}, {"metadata": "x"}):
            with self.assertRaises(SandboxClientError, msg=repr(kw)):
                Sandbox.list(runtime_dir=self.root, **kw)
        for kw in ({"metadata": {"k": 5}}, {"envs": {"1BAD": "x"}}, {"envs": {"A": "x" * 5000}},
                   {"metadata": {str(i): "v" for i in range(65)}}):
            with self.assertRaises(SandboxClientError, msg=repr(kw)):
                self.create(**kw)


AMBERCTL = os.path.join(REPO, "build", "amberctl")


@unittest.skipUnless(os.access(AMBERCTL, os.X_OK) and os.access(AGENT, os.X_OK),
                     "build/amberctl or build/amber-agent is missing (make)")
class TestAmberctlCreate(unittest.TestCase):
    def setUp(self):
        self.xdg = tempfile.mkdtemp(prefix="amber-ctl-create-")
        self.root = os.path.join(self.xdg, "amber")
        self.addCleanup(shutil.rmtree, self.xdg, True)
        self.addCleanup(lambda: [s.delete() for s in Sandbox.list(runtime_dir=self.root)])

    def ctl(self, *args):
        env = dict(os.environ, XDG_RUNTIME_DIR=self.xdg, AMBER_BIN=FAKE, AMBER_TIMEOUT_SCALE="1")
        return subprocess.run([AMBERCTL, "create"] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, timeout=60)

    def test_create_prints_the_id_the_sdk_finds(self):
        r = self.ctl("--timeout", "2", "--metadata", "team=red", "--env", "GREETING=hey", "--vcpus", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        sid = r.stdout.decode().strip()
        sbx = Sandbox.get(sid, runtime_dir=self.root)
        self.assertEqual((sbx.metadata, sbx.config["vcpus"]), ({"team": "red"}, 2))
        self.assertEqual(sbx.commands.run("echo $GREETING").stdout, "hey\n")
        self.assertEqual([s.id for s in Sandbox.list(runtime_dir=self.root, metadata={"team": "red"})], [sid])
        self.assertLessEqual(sbx.get_timeout()["timeout_s_left"], 2)
        time.sleep(3.5)
        with self.assertRaises(SandboxNotFoundError) as cm:
            Sandbox.get(sid, runtime_dir=self.root)
        self.assertIn("timeout", str(cm.exception))

    def test_bad_options_exit_2(self):
        for args in (["--timeout", "0"], ["--timeout", "-1"], ["--on-timeout", "stop"], ["--env", "1A=b"],
                     ["--metadata", "novalue"], ["--vcpus", "0"], ["--id", "../x"], ["extra"]):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 2, "%s: %s" % (args, r.stderr))
        self.assertEqual(Sandbox.list(runtime_dir=self.root), [])
        r = self.ctl("--id", "twice")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("--id", "twice")
        self.assertEqual(r.returncode, 4)
        self.assertIn(b"already exists", r.stderr)


if __name__ == "__main__":
    unittest.main()
