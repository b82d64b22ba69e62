"""Hibernate, templates and fork against tests/fake_amber.py (which writes a JSON "snapshot" and
restores by starting a new agent): the store's layout, the SDK's flows and their bad cases.
The guest identity step is replaced by a recorder: the fake's agent runs on this host."""
import json
import os
import subprocess
import sys
import time
import unittest

import fakeenv  # noqa: E402
from fakeenv import SDK  # noqa: E402

from amber import Sandbox, SandboxClientError, SandboxError, SandboxNotFoundError  # noqa: E402
from amber import runtime, store, template  # noqa: E402

_saved_identity = template.set_identity


def setUpModule():
    fakeenv.set_env()


def tearDownModule():
    fakeenv.restore_env()
    template.set_identity = _saved_identity


def ended(pid):
    """True once process pid is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class HibernateCase(fakeenv.StoreCase):
    def create(self, **kw):
        return Sandbox.create(runtime_dir=self.root, **kw)

    def fake_load(self, sbx):
        return sbx.info()["fake_load"]


class TestHibernate(HibernateCase):
    def test_round_trip(self):
        sbx = self.create(timeout=600)
        f = os.path.join(self.work, "kept")
        sbx.execute("echo 42 > %s" % f)
        pid = sbx.pid
        rec = sbx.pause(keep_memory=False)
        self.assertEqual(rec["memory"], "disk")
        self.assertTrue(rec["paused"])
        self.assertEqual(rec["sandbox_id"], sbx.id)
        self.assertTrue(rec["paused_at"])
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        self.assertFalse(os.path.exists(sbx.dir), "the runtime directory stayed")
        for name in ("vm.snap", "vm.mem", "rootfs.ext4", "hibernated.json", "config.json"):
            self.assertTrue(os.path.isfile(os.path.join(self.pd(sbx.id), name)), name)
        self.assertEqual(sbx.state(), "Hibernated")
        listed = {s.id: s.state() for s in Sandbox.list(runtime_dir=self.root)}
        self.assertEqual(listed, {sbx.id: "Hibernated"})
        self.assertEqual([s.id for s in Sandbox.list(runtime_dir=self.root, state="hibernated")], [sbx.id])
        self.assertEqual(Sandbox.list(runtime_dir=self.root, state="running"), [])
        with self.assertRaises(SandboxClientError) as cm:
            sbx.execute("true")
        self.assertEqual(cm.exception.status, 409)
        self.assertIn("hibernated", str(cm.exception))

        r = sbx.resume()
        self.assertEqual(r["memory"], "disk")
        self.assertEqual(sbx.state(), "Running")
        self.assertEqual(sbx.execute("cat %s" % f).stdout.strip(), "42")
        load = self.fake_load(sbx)
        self.assertEqual(load["mem"], os.path.join(self.pd(sbx.id), "vm.mem"))
        self.assertEqual(load["drive_overrides"],
                         [{"drive_id": "drive0", "path_on_host": os.path.join(self.pd(sbx.id), "rootfs.ext4")}])
        self.assertEqual(load["vsock_override"]["uds_path"], sbx.vsock_sock)
        for name in ("vm.snap", "vm.mem", "hibernated.json"):
            self.assertFalse(os.path.exists(os.path.join(self.pd(sbx.id), name)), name + " stayed")
        self.assertTrue(0 < sbx.get_timeout()["timeout_s_left"] <= 600, "the deadline was not carried")
        # A second hibernate reuses the drive already in the persistent directory.
        sbx.pause(keep_memory=False)
        sbx.resume()
        sbx.delete()
        self.assertFalse(os.path.exists(self.pd(sbx.id)), "delete left the persistent directory")

    def test_connect_from_a_new_process_resumes(self):
        sbx = self.create()
        sbx.pause(keep_memory=False)
        code = ("import sys; sys.path.insert(0, %r); from amber import Sandbox; "
                "s = Sandbox.connect(%r, runtime_dir=%r); print(s.execute('echo hi').stdout.strip())"
                % (SDK, sbx.id, self.root))
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True, timeout=60,
                             env=dict(os.environ))
        self.assertEqual(out.stdout.decode().strip(), "hi")
        self.assertEqual(Sandbox.get(sbx.id, runtime_dir=self.root).state(), "Running")

    def test_hibernated_does_not_count_towards_max_sandboxes(self):
        a = self.create()
        with self.assertRaises(SandboxClientError) as cm:
            self.create(max_sandboxes=1)
        self.assertEqual(cm.exception.status, 429)
        a.pause(keep_memory=False)
        b = self.create(max_sandboxes=1)
        self.assertEqual(b.state(), "Running")

    def test_disk_full_leaves_it_paused_in_memory(self):
        os.environ["FAKE_AMBER_SNAP_ENOSPC"] = "1"
        sbx = self.create()
        with self.assertRaises(SandboxClientError) as cm:
            sbx.pause(keep_memory=False)
        self.assertEqual(cm.exception.status, 507)
        self.assertIn("No space left", str(cm.exception))
        self.assertIn("still paused in memory", str(cm.exception))
        self.assertEqual(sbx.state(), "Paused")
        self.assertFalse(store.is_hibernated(self.pd(sbx.id)))
        self.assertFalse(os.path.exists(os.path.join(self.pd(sbx.id), "vm.mem")), "a partial file stayed")
        sbx.resume()
        self.assertEqual(sbx.execute("echo ok").stdout.strip(), "ok")

    def test_an_amber_that_outlives_its_sigkill_is_an_error(self):
        """The kill after the snapshot waits for amber to be gone and says so when it is not;
        the snapshot stays, and resume() works once amber has ended."""
        from unittest import mock
        sbx = self.create()
        sbx.execute("echo kept > %s" % os.path.join(self.work, "lingers"))
        pid = sbx.pid
        with mock.patch("amber.sandbox._wait_pidfd", return_value=False):
            with self.assertRaises(SandboxError) as cm:
                sbx.pause(keep_memory=False)
        self.assertIn("amber (pid %d) has not exited" % pid, str(cm.exception))
        self.assertIn("snapshot is safe on disk", str(cm.exception))
        self.assertTrue(store.is_hibernated(self.pd(sbx.id)))
        # The SIGKILL was sent; resume() is for once amber has ended and let go of its lock
        # (the fake's agent, which dies with it, may hold it a moment longer).
        deadline = time.monotonic() + 30
        while not (ended(pid) and runtime.probe(sbx.dir) != runtime.ALIVE):
            self.assertLess(time.monotonic(), deadline, "the fake amber outlived its SIGKILL")
            time.sleep(0.01)
        sbx.resume()
        self.assertEqual(sbx.execute("cat %s" % os.path.join(self.work, "lingers")).stdout.strip(), "kept")

    def test_delete_of_an_amber_that_outlives_its_sigkill_keeps_its_files(self):
        from unittest import mock
        sbx = self.create()
        with mock.patch("amber.sandbox._wait_pidfd", return_value=False):
            with self.assertRaises(SandboxError) as cm:
                sbx.delete(timeout=0.1)
        self.assertIn("has not exited", str(cm.exception))
        self.assertTrue(os.path.isdir(sbx.dir), "its runtime directory went while amber lived")

    def test_corrupt_or_missing_snapshot_names_the_file(self):
        sbx = self.create()
        sbx.pause(keep_memory=False)
        snap = os.path.join(self.pd(sbx.id), "vm.snap")
        with open(snap, "wb") as f:
            f.write(b"\0garbage")
        with self.assertRaises(SandboxNotFoundError) as cm:
            sbx.resume()
        self.assertIn(snap, str(cm.exception))
        self.assertEqual(sbx.state(), "Hibernated", "a failed resume must keep the files")
        os.unlink(os.path.join(self.pd(sbx.id), "vm.mem"))
        with self.assertRaises(SandboxNotFoundError) as cm:
            Sandbox.connect(sbx.id, runtime_dir=self.root)
        self.assertIn(os.path.join(self.pd(sbx.id), "vm.mem"), str(cm.exception))


class TestTemplates(HibernateCase):
    def test_template_children_are_distinct(self):
        parent = self.create(envs={"A": "1"})
        rec = parent.snapshot_template("base")
        self.assertEqual(rec["source_id"], parent.id)
        self.assertIn(rec["rootfs_copy"], ("reflink", "sparse"))
        self.assertEqual(parent.state(), "Running", "the source stays running")
        self.assertEqual([t["name"] for t in Sandbox.list_templates()], ["base"])
        with self.assertRaises(SandboxClientError) as cm:
            parent.snapshot_template("base")
        self.assertEqual(cm.exception.status, 409)
        with self.assertRaises(SandboxClientError):
            parent.snapshot_template("../x")

        kids = [Sandbox.create(template="base", runtime_dir=self.root) for _ in range(2)]
        tdir = store.template_dir("base")
        loads = [self.fake_load(k) for k in kids]
        self.assertEqual({ld["mem"] for ld in loads}, {os.path.join(tdir, "vm.mem")})
        cids = {ld["vsock_override"]["guest_cid"] for ld in loads}
        self.assertEqual(len(cids), 2)
        self.assertNotIn(3, cids)
        drives = [ld["drive_overrides"][0]["path_on_host"] for ld in loads]
        self.assertEqual(drives, [os.path.join(self.pd(k.id), "rootfs.ext4") for k in kids])
        self.assertTrue(all(os.path.isfile(p) for p in drives))
        self.assertEqual(sorted(i[0] for i in self.identities), sorted(k.id for k in kids))
        self.assertEqual(len({i[2] for i in self.identities}), 2, "machine-ids repeat")
        self.assertEqual(kids[0].envs, {"A": "1"})
        self.assertEqual(kids[0].execute("echo child").stdout.strip(), "child")

        with self.assertRaises(SandboxClientError) as cm:
            Sandbox.delete_template("base", runtime_dir=self.root)
        self.assertEqual(cm.exception.status, 409)
        self.assertIn(kids[0].id, str(cm.exception))
        kids[0].pause(keep_memory=False)  # a hibernated child no longer needs the template
        kids[1].delete()
        Sandbox.delete_template("base", runtime_dir=self.root)
        self.assertEqual(Sandbox.list_templates(), [])
        kids[0].resume()
        self.assertEqual(kids[0].execute("echo back").stdout.strip(), "back")
        with self.assertRaises(SandboxNotFoundError):
            Sandbox.create(template="base", runtime_dir=self.root)

    def test_fork(self):
        parent = self.create(metadata={"job": "7"})
        kids = parent.fork(n=3)
        self.assertEqual(len({k.id for k in kids} | {parent.id}), 4)
        self.assertEqual(parent.state(), "Running")
        for k in kids:
            self.assertEqual(k.state(), "Running")
            self.assertEqual(k.metadata, {"job": "7"})
            self.assertEqual(k.config["forked_from"], parent.id)
        self.assertEqual(len({self.fake_load(k)["vsock_override"]["guest_cid"] for k in kids}), 3)
        forks = os.listdir(store.forks_root())
        self.assertEqual(len(forks), 1)
        with self.assertRaises(SandboxClientError):
            parent.fork(n=0)
        kids[0].delete()
        self.assertEqual(len(os.listdir(store.forks_root())), 1, "the image went while in use")
        for k in kids[1:]:
            k.delete()
        self.assertEqual(os.listdir(store.forks_root()), [], "an unused fork image stayed")


if __name__ == "__main__":
    unittest.main()
