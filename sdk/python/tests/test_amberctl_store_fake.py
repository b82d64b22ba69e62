"""amberctl's hibernate, template and fork commands against tests/fake_amber.py, on the same
store as the SDK: what one makes, the other sees. amberctl gives template and fork children a
hostname and machine-id through the agent, which here runs on this host: every amberctl call
runs in a private UTS and mount namespace with /etc/machine-id and /etc/hostname bind-mounted
over by scratch files (root and unshare(1) are needed; the tests skip without them)."""
import os
import shutil
import subprocess
import tempfile
import unittest

from fakeenv import REPO, needs_agent  # noqa: E402 (puts the SDK on sys.path)

from amber import Sandbox  # noqa: E402
from amber import flow, store, template  # noqa: E402

import fakeenv  # noqa: E402

AMBERCTL = os.path.join(REPO, "build", "amberctl")
_saved_identity = template.set_identity


def setUpModule():
    fakeenv.set_env()


def tearDownModule():
    fakeenv.restore_env()
    template.set_identity = _saved_identity


def _can_unshare():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-um", "true"], stderr=subprocess.DEVNULL).returncode == 0


@needs_agent
@unittest.skipUnless(os.access(AMBERCTL, os.X_OK), "build/amberctl is missing (make)")
@unittest.skipUnless(_can_unshare(), "needs root and unshare -um to keep the fake guest's "
                                     "hostname and machine-id writes off this host")
class TestAmberctlStore(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amber-ctl-store-")
        self.xdg = os.path.join(self.tmp, "xdg")
        os.mkdir(self.xdg)
        self.root = os.path.join(self.xdg, "amber")  # amberctl's runtime root
        self.state = os.path.join(self.tmp, "state")
        self.etc = {f: os.path.join(self.tmp, f) for f in ("machine-id", "hostname")}
        for p in self.etc.values():
            open(p, "w").close()
        os.environ["AMBER_STATE_DIR"] = self.state
        template.set_identity = lambda *a: flow.Sleep(0)
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for s in Sandbox.list(runtime_dir=self.root):
            try:
                s.delete()
            except Exception:  # noqa: BLE001
                pass
        os.environ.pop("AMBER_STATE_DIR", None)
        fakeenv.kill_leftovers(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def ctl(self, *args, want=0):
        env = dict(os.environ, XDG_RUNTIME_DIR=self.xdg, AMBER_STATE_DIR=self.state)
        script = ('mount --bind "$1" /etc/machine-id && mount --bind "$2" /etc/hostname && '
                  'shift 2 && exec "$@"')
        r = subprocess.run(["unshare", "-um", "sh", "-c", script, "sh", self.etc["machine-id"],
                            self.etc["hostname"], AMBERCTL] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=120)
        out, err = r.stdout.decode(), r.stderr.decode()
        self.assertEqual(r.returncode, want, "amberctl %s: %d\n%s%s" % (" ".join(args), r.returncode, out, err))
        return out, err

    def test_hibernate_resume_list_delete(self):
        sbx = Sandbox.create(runtime_dir=self.root)
        self.ctl("pause", "--to-disk", "--id", sbx.id)
        self.assertEqual(sbx.state(), "Hibernated")  # the SDK sees amberctl's hibernation
        out, _ = self.ctl("list")
        self.assertRegex(out, r"%s\s+Hibernated" % sbx.id)
        self.ctl("resume", "--id", sbx.id)
        self.assertEqual(sbx.state(), "Running")
        self.assertEqual(sbx.execute("echo up").stdout.strip(), "up")
        self.assertFalse(os.path.exists(os.path.join(self.state, sbx.id, "vm.mem")))
        sbx.pause(keep_memory=False)  # and amberctl resumes the SDK's
        self.ctl("resume", "--id", sbx.id)
        self.ctl("pause", "--to-disk", "--id", sbx.id)
        self.ctl("delete", "--id", sbx.id)
        self.assertFalse(os.path.exists(os.path.join(self.state, sbx.id)))
        self.ctl("resume", "--id", sbx.id, want=3)

    def test_disk_full_keeps_it_paused(self):
        os.environ["FAKE_AMBER_SNAP_ENOSPC"] = "1"
        try:
            sbx = Sandbox.create(runtime_dir=self.root)
        finally:
            os.environ.pop("FAKE_AMBER_SNAP_ENOSPC")
        _, err = self.ctl("pause", "--to-disk", "--id", sbx.id, want=1)
        self.assertIn("still paused in memory", err)
        self.assertIn("No space left", err)
        self.assertEqual(sbx.state(), "Paused")
        self.assertFalse(store.is_hibernated(os.path.join(self.state, sbx.id)))

    def test_template_and_fork(self):
        parent = Sandbox.create(runtime_dir=self.root)
        self.ctl("template", "create", "--id", parent.id, "tpl")
        self.ctl("template", "create", "--id", parent.id, "tpl", want=4)
        self.assertEqual([t["name"] for t in Sandbox.list_templates()], ["tpl"])
        out, _ = self.ctl("template", "list")
        self.assertIn("tpl", out)
        out, _ = self.ctl("create", "--template", "tpl")
        kid = Sandbox.get(out.strip(), runtime_dir=self.root)
        load = kid.info()["fake_load"]
        self.assertEqual(load["mem"], os.path.join(store.template_dir("tpl"), "vm.mem"))
        self.assertNotEqual(load["vsock_override"]["guest_cid"], 3)
        self.assertEqual(load["drive_overrides"][0]["path_on_host"],
                         os.path.join(self.state, kid.id, "rootfs.ext4"))
        with open(self.etc["hostname"]) as f:
            self.assertEqual(f.read().strip(), kid.id, "the identity script did not run")
        _, err = self.ctl("template", "delete", "tpl", want=4)
        self.assertIn(kid.id, err)
        with self.assertRaises(Exception):
            Sandbox.delete_template("tpl", runtime_dir=self.root)  # the SDK refuses it too
        kid.delete()
        self.ctl("template", "delete", "tpl")
        out, _ = self.ctl("fork", "--id", parent.id, "-n", "2")
        kids = out.split()
        self.assertEqual(len(set(kids)), 2)
        for k in kids:
            self.assertEqual(Sandbox.get(k, runtime_dir=self.root).execute("echo k").stdout.strip(), "k")
        self.assertEqual(parent.state(), "Running")
        self.ctl("fork", "--id", parent.id, "-n", "0", want=2)
        self.assertEqual(len(os.listdir(store.forks_root())), 1)
        self.ctl("delete", "--id", kids[0])
        self.assertEqual(len(os.listdir(store.forks_root())), 1, "the image went while in use")
        self.ctl("delete", "--id", kids[1])
        self.assertEqual(os.listdir(store.forks_root()), [], "an unused fork image stayed")


if __name__ == "__main__":
    unittest.main()
