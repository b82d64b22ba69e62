"""e2e: hibernate, templates and fork through the SDK (issue 16, docs/hibernate.md) on real guests.

Two cold-booted sandboxes: one goes to disk and back (a file, a counter's pid, a fresh process
that knows only the id, a state directory on a small tmpfs that fills up); the other is made a
template with a package of files and a running server, gets 4 children at once, and is forked
into 3. Children must see the files and the server, keep their writes to themselves, and draw
different random bytes, uuids and machine-ids. The same sandbox also goes to disk, comes back
and forks through AsyncSandbox, on one event loop.
"""
import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SDK = os.path.join(REPO, "sdk", "python")
sys.path.insert(0, HERE)
sys.path.insert(0, SDK)

import harness  # noqa: E402
import evidence  # noqa: E402
from amber import AsyncSandbox, Sandbox, SandboxClientError  # noqa: E402
from amber import store  # noqa: E402

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done"
# Random bytes, a kernel uuid, the machine-id and hostname: one line each.
IDENT = ("head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; "
         "cat /proc/sys/kernel/random/uuid; cat /etc/machine-id 2>/dev/null || echo none; hostname")


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def ended(pid):
    """True when process pid has ended: gone, or a zombie that its parent has not reaped yet (an
    amber that amberctl started is reaped by the test host's init, some time later)."""
    st = evidence.read_stat("/proc/%d/stat" % pid)
    return st is None or st[1][:1] == ["Z"]


def amberctl(run_root, *args):
    """amberctl on the class's runtime and state directories; its stdout (a failure raises)."""
    env = dict(os.environ, XDG_RUNTIME_DIR=os.path.dirname(run_root))
    r = subprocess.run([os.path.join(REPO, "build", "amberctl")] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=harness.scaled(120))
    if r.returncode != 0:
        raise AssertionError("amberctl %s: %d %s" % (" ".join(args), r.returncode, r.stderr.decode()))
    return r.stdout.decode()


def sh(sbx, cmd, timeout=60):
    r = sbx.execute(cmd, timeout=harness.scaled(timeout))
    if r.exit_code != 0:
        raise AssertionError("%s: %r exited %d: %s" % (sbx.id, cmd, r.exit_code, r.stderr))
    return r.stdout


class StoreCase(unittest.TestCase):
    """A private runtime and state directory per class; everything left is deleted."""

    @classmethod
    def setUpClass(cls):
        if not os.access(harness.AMBER, os.X_OK):
            raise unittest.SkipTest("build/amber is missing: run make")
        if not os.path.exists("/dev/kvm"):
            raise unittest.SkipTest("no /dev/kvm here (run through scripts/testhost.sh)")
        cls.tmp = tempfile.mkdtemp(prefix="amber-hib-e2e-", dir="/var/tmp")
        cls.run_root = os.path.join(cls.tmp, "xdg", "amber")  # amberctl's under XDG_RUNTIME_DIR
        cls.state = os.path.join(cls.tmp, "state")
        cls.saved_state = os.environ.get("AMBER_STATE_DIR")
        os.environ["AMBER_STATE_DIR"] = cls.state
        t0 = time.monotonic()
        cls.sbx = Sandbox.create(runtime_dir=cls.run_root)
        harness.log("cold create to ready: %.1f s" % (time.monotonic() - t0))

    @classmethod
    def tearDownClass(cls):
        os.environ["AMBER_STATE_DIR"] = cls.state
        for s in Sandbox.list(runtime_dir=cls.run_root):
            try:
                s.delete()
            except Exception as e:  # noqa: BLE001
                harness.log("cleanup of %s: %s" % (s.id, e))
        if cls.saved_state is None:
            os.environ.pop("AMBER_STATE_DIR", None)
        else:
            os.environ["AMBER_STATE_DIR"] = cls.saved_state
        shutil.rmtree(cls.tmp, ignore_errors=True)


class TestHibernateE2E(StoreCase):
    def hibernate(self):
        pid = self.sbx.pid
        rss = rss_kib(pid)
        t0 = time.monotonic()
        rec = self.sbx.pause(keep_memory=False)
        took = time.monotonic() - t0
        pd = os.path.join(self.state, self.sbx.id)
        size = sum(os.stat(os.path.join(pd, f)).st_blocks * 512 for f in ("vm.snap", "vm.mem"))
        harness.log("hibernate: %.2f s, %.1f MiB of snapshot on disk; amber's RSS was %s KiB"
                    % (took, size / 2**20, rss))
        self.assertEqual((rec["paused"], rec["memory"], rec["sandbox_id"]), (True, "disk", self.sbx.id))
        self.assertTrue(ended(pid), "amber (pid %d) is still running" % pid)
        self.assertEqual(self.sbx.state(), "Hibernated")
        self.assertEqual([s.state() for s in Sandbox.list(runtime_dir=self.run_root)
                          if s.id == self.sbx.id], ["Hibernated"])
        return pd

    def test_round_trip_keeps_files_and_processes(self):
        sh(self.sbx, "echo on-disk > /root/kept; echo in-ram > /tmp/kept")
        h = self.sbx.commands.run(COUNTER, background=True)
        h.disconnect()
        time.sleep(1)
        before = int(sh(self.sbx, "cat /tmp/count"))
        pd = self.hibernate()
        t0 = time.monotonic()
        self.sbx.resume()
        self.assertEqual(sh(self.sbx, "cat /root/kept /tmp/kept"), "on-disk\nin-ram\n")
        harness.log("resume from disk to first exec: %.2f s" % (time.monotonic() - t0))
        self.assertIn(h.pid, [p.pid for p in self.sbx.commands.list()], "the counter's pid is gone")
        time.sleep(1)
        after = int(sh(self.sbx, "cat /tmp/count"))
        self.assertGreater(after, before, "the counter did not carry on")
        for f in ("vm.snap", "vm.mem", "hibernated.json"):
            self.assertFalse(os.path.exists(os.path.join(pd, f)), f + " was not removed once running")
        self.sbx.commands.kill(h.pid)

    def test_survives_a_lost_sdk_process(self):
        sh(self.sbx, "echo lost-sdk > /tmp/lost")
        self.hibernate()
        code = ("import sys; sys.path.insert(0, %r); from amber import Sandbox; "
                "s = Sandbox.connect(%r, runtime_dir=%r); print(s.execute('cat /tmp/lost').stdout.strip())"
                % (SDK, self.sbx.id, self.run_root))
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=harness.scaled(60))
        self.assertEqual(out.returncode, 0, out.stderr.decode()[-2000:])
        self.assertEqual(out.stdout.decode().strip(), "lost-sdk")
        self.assertEqual(Sandbox.get(self.sbx.id, runtime_dir=self.run_root).state(), "Running")

    def test_amberctl_round_trip(self):
        sh(self.sbx, "echo by-amberctl > /tmp/ctl")
        amberctl(self.run_root, "pause", "--to-disk", "--id", self.sbx.id)
        self.assertEqual(self.sbx.state(), "Hibernated")
        self.assertRegex(amberctl(self.run_root, "list"), r"%s\s+Hibernated" % self.sbx.id)
        amberctl(self.run_root, "resume", "--id", self.sbx.id)
        self.assertEqual(sh(self.sbx, "cat /tmp/ctl"), "by-amberctl\n")

    def test_disk_full_keeps_it_paused_in_memory(self):
        small = os.path.join(self.tmp, "small")
        os.mkdir(small)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", small],
                           stderr=subprocess.PIPE)
        if r.returncode != 0:
            self.skipTest("cannot mount a small tmpfs: %s" % r.stderr.decode().strip())
        self.addCleanup(subprocess.run, ["umount", "-l", small])
        os.environ["AMBER_STATE_DIR"] = small
        try:
            sh(self.sbx, "head -c 40000000 /dev/urandom > /tmp/fill")  # more RAM than the tmpfs
            with self.assertRaises(SandboxClientError) as cm:
                self.sbx.pause(keep_memory=False)
            harness.log("disk full: %s" % cm.exception)
            self.assertEqual(cm.exception.status, 507)
            self.assertIn("still paused in memory", str(cm.exception))
            self.assertEqual(self.sbx.state(), "Paused")
            self.assertFalse(store.is_hibernated(os.path.join(small, self.sbx.id)))
        finally:
            os.environ["AMBER_STATE_DIR"] = self.state
        self.sbx.resume()
        self.assertEqual(sh(self.sbx, "rm /tmp/fill; echo alive"), "alive\n")


class TestTemplateAndForkE2E(StoreCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        sh(cls.sbx, "mkdir -p /opt/pkg && for f in a b c d e; do echo pkg-$f > /opt/pkg/$f.txt; done && "
                    "httpd -p 127.0.0.1:8000 -h /opt/pkg && sleep 0.5 && "
                    "wget -qO- http://127.0.0.1:8000/a.txt")

    def identities(self, sbxs):
        rows = [sh(s, IDENT).split("\n")[:4] for s in sbxs]
        for i, name in enumerate(("urandom bytes", "uuid", "machine-id", "hostname")):
            vals = [r[i] for r in rows]
            self.assertEqual(len(set(vals)), len(vals), "%s repeat: %r" % (name, vals))
        return rows

    def check_isolated(self, sbxs):
        for s in sbxs:
            sh(s, "echo %s > /opt/pkg/mine; echo %s > /tmp/mine" % (s.id, s.id))
        for s in sbxs:
            self.assertEqual(sh(s, "cat /opt/pkg/mine /tmp/mine"), "%s\n%s\n" % (s.id, s.id))

    def test_template_children(self):
        t0 = time.monotonic()
        rec = self.sbx.snapshot_template("e2e-tpl")
        harness.log("template create: %.2f s (source paused %d ms, root drive %s)"
                    % (time.monotonic() - t0, rec["pause_ms"], rec["rootfs_copy"]))
        self.assertEqual(self.sbx.state(), "Running")
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            kids = list(pool.map(lambda _: Sandbox.create(template="e2e-tpl", runtime_dir=self.run_root),
                                 range(4)))
        harness.log("4 children from the template at once: %.2f s" % (time.monotonic() - t0))
        for k in kids:
            self.assertEqual(sh(k, "cat /opt/pkg/c.txt"), "pkg-c\n")
            self.assertEqual(sh(k, "wget -qO- http://127.0.0.1:8000/e.txt"), "pkg-e\n")
        self.check_isolated(kids)
        self.identities(kids + [self.sbx])
        with self.assertRaises(SandboxClientError) as cm:
            Sandbox.delete_template("e2e-tpl", runtime_dir=self.run_root)
        self.assertEqual(cm.exception.status, 409)
        for k in kids:
            k.delete()
        Sandbox.delete_template("e2e-tpl", runtime_dir=self.run_root)

    @harness.long_tier("amberctl's fork: the SDK's fork, which amberctl's shares its store with, runs in make test")
    def test_amberctl_fork(self):
        out = amberctl(self.run_root, "fork", "--id", self.sbx.id, "-n", "1")
        kid = Sandbox.get(out.split()[0], runtime_dir=self.run_root)
        self.assertEqual(sh(kid, "hostname").strip(), kid.id)
        self.assertEqual(sh(kid, "wget -qO- http://127.0.0.1:8000/b.txt"), "pkg-b\n")
        self.identities([kid, self.sbx])
        kid.delete()

    @harness.long_tier("AsyncSandbox: the same flows (flow.py) run here through Sandbox, and the async runner "
                       "is tested against the fake amber (test_aio_hibernate_fake.py)")
    def test_async_hibernate_resume_and_fork(self):
        async def main():
            a = await AsyncSandbox.connect(self.sbx.id, runtime_dir=self.run_root)
            await a.commands.run("echo async > /root/amark")
            pid = a._s.pid
            rec = await a.pause(keep_memory=False)
            self.assertEqual((rec["paused"], rec["memory"]), (True, "disk"))
            self.assertTrue(ended(pid), "amber (pid %d) is still running" % pid)
            self.assertEqual(await a.state(), "Hibernated")
            t0 = time.monotonic()
            await a.resume()
            self.assertEqual((await a.commands.run("cat /root/amark")).stdout, "async\n")
            harness.log("async resume from disk to first exec: %.2f s" % (time.monotonic() - t0))
            self.assertEqual((await a.commands.run("wget -qO- http://127.0.0.1:8000/d.txt")).stdout, "pkg-d\n",
                             "the server did not survive the hibernate")
            t0 = time.monotonic()
            kids = await a.fork(2)
            harness.log("async fork n=2: %.2f s" % (time.monotonic() - t0))
            try:
                self.assertEqual(await a.state(), "Running")
                outs = await asyncio.gather(*(k.commands.run("cat /root/amark; wget -qO- http://127.0.0.1:8000/a.txt")
                                              for k in kids))
                self.assertEqual([o.stdout for o in outs], ["async\npkg-a\n"] * 2)
                return kids
            except BaseException:
                await asyncio.gather(*(k.delete() for k in kids), return_exceptions=True)
                raise

        kids = asyncio.run(main())
        try:
            self.identities([k._s for k in kids] + [self.sbx])
        finally:
            for k in kids:
                k._s.delete()

    def test_fork_diverges(self):
        sh(self.sbx, "echo before > /root/fork-mark")
        t0 = time.monotonic()
        kids = self.sbx.fork(n=3)
        harness.log("fork n=3: %.2f s" % (time.monotonic() - t0))
        self.assertEqual(self.sbx.state(), "Running")
        every = [self.sbx] + kids
        for s in every:
            self.assertEqual(sh(s, "cat /root/fork-mark"), "before\n")
        self.check_isolated(every)
        self.identities(every)
        for k in kids:
            k.delete()


if __name__ == "__main__":
    unittest.main()
