"""Seccomp and confinement, end to end (needs /dev/kvm: run in the test host).

- A forbidden syscall under each filter (build/test-hooks/amber, --id seccomp-violate-*) kills
  amber with "amber: seccomp violation: syscall N (name)" and status 159, before guest code runs
  on that thread.
- A guest boots under --chroot, --uid/--gid (nobody), new mount and pid namespaces, a cgroup and
  rlimits; the agent runs commands; the amber process holds no capabilities, is filtered on every
  thread, has an empty environment, no inherited fds, and its root is the chroot.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TEST_HOOKS_AMBER = os.path.join(harness.BUILD, "test-hooks", "amber")
AMBERCTL = os.path.join(harness.BUILD, "amberctl")
VIOLATION_STATUS = 159
NOBODY = 65534


def proc_status(pid, tid=None):
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%d/status" % (pid, tid)
    with open(path) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def needs_kvm(test):
    ok = os.access("/dev/kvm", os.R_OK | os.W_OK)
    return unittest.skipUnless(ok, "needs /dev/kvm (run in the test host)")(test)


@needs_kvm
class TestSeccompViolation(harness.AmberTestCase):
    """The test-hooks build calls a forbidden syscall right after a filter is loaded."""

    def violate(self, kind, want_line):
        if not os.access(TEST_HOOKS_AMBER, os.X_OK):
            self.fail("%s is missing: make build/test-hooks/amber" % TEST_HOOKS_AMBER)
        argv = harness.amber_argv(cmdline=harness.DEFAULT_CMDLINE, mem_mib=128, console="none",
                                  binary=TEST_HOOKS_AMBER, extra=["--id", "seccomp-violate-" + kind])
        vm = self.start(argv)
        status = vm.wait_exit(timeout=harness.scaled(60))
        stderr = "\n".join(vm.stderr_lines)
        self.assertEqual(status, VIOLATION_STATUS, "amber did not die of the violation:\n" + stderr)
        self.assertIn(want_line, vm.stderr_lines, stderr)
        # The violating call never returned: the line after the attempt was not logged.
        self.assertNotIn("was allowed", stderr)

    def test_vmm_thread_socket_inet(self):
        self.violate("vmm", "amber: seccomp violation: syscall 41 (socket)")

    def test_vcpu_thread_openat(self):
        self.violate("vcpu", "amber: seccomp violation: syscall 257 (openat)")

    def test_seccomp_off_is_loud(self):
        argv = harness.amber_argv(kernel="/nonexistent", console="none", extra=["--seccomp=off"])
        vm = self.start(argv)
        self.assertEqual(vm.wait_exit(timeout=harness.scaled(30)), 2)
        self.assertTrue(any("SECCOMP IS OFF" in l for l in vm.stderr_lines), vm.stderr_lines)


@needs_kvm
class TestJailedGuest(unittest.TestCase):
    """One confined guest shared by the checks (a boot is the expensive part)."""

    @classmethod
    def setUpClass(cls):
        cls.session = harness.Session("TestJailedGuest")
        s = cls.session
        cls.root = s.path("jail")
        os.makedirs(cls.root)
        os.chmod(s.dir, 0o755)
        os.chmod(cls.root, 0o755)
        os.chown(cls.root, NOBODY, NOBODY)  # amber creates its sockets and exit file here
        for src, name in ((harness.VMLINUZ, "vmlinuz"), (harness.INITRAMFS, "initramfs.cpio.gz")):
            shutil.copy(src, os.path.join(cls.root, name))
        disk = s.rootfs_copy()
        os.rename(disk, os.path.join(cls.root, "rootfs.ext4"))
        os.chown(os.path.join(cls.root, "rootfs.ext4"), NOBODY, NOBODY)
        cls.cgroup_mount = None
        cls.cgroup = cls.make_cgroup()
        cls.netns = cls.make_netns()
        # An fd amber inherits without being told: it must not survive jail_enter.
        cls.marker = s.path("inherited-marker")
        open(cls.marker, "w").close()
        argv = harness.amber_argv(
            kernel="/vmlinuz", initrd="/initramfs.cpio.gz",
            cmdline=harness.DEFAULT_CMDLINE + " root=/dev/vda", mem_mib=192, console="stdio",
            drives=[{"path": "/rootfs.ext4", "root": True}], vsock=(3, "/v.sock"),
            extra=["--chroot", cls.root, "--uid", NOBODY, "--gid", NOBODY, "--new-mount-ns",
                   "--new-pid-ns", "--rlimit-nofile", 256, "--rlimit-fsize", 1 << 30,
                   "--exit-file", "/exit.json"]
            + (["--cgroup", cls.cgroup] if cls.cgroup else [])
            + (["--netns", cls.netns] if cls.netns else []))
        wrapped = ["/bin/sh", "-c", 'exec 7<"$0"; exec "$@"', cls.marker] + argv
        cls.vm = s.start(wrapped, env={"SECRET_TOKEN": "do-not-leak"})
        try:
            cls.vm.wait_for(harness.READY)
        except AssertionError:
            cls.tearDownClass()
            raise
        cls.amber_pid = cls.find_amber(cls.vm.pid)

    @classmethod
    def make_cgroup(cls):
        base = "/sys/fs/cgroup"
        if not os.path.exists(os.path.join(base, "cgroup.procs")):
            base = cls.session.path("cgroup2")
            os.makedirs(base)
            if subprocess.run(["mount", "-t", "cgroup2", "none", base]).returncode != 0:
                return None
            cls.cgroup_mount = base
        path = os.path.join(base, "amber-jail-test-%d" % os.getpid())
        os.makedirs(path, exist_ok=True)
        return path

    @classmethod
    def make_netns(cls):
        """A network namespace held by a bind mount (what `ip netns add` makes), or None."""
        path = cls.session.path("netns")
        open(path, "w").close()
        if subprocess.run(["unshare", "--net=" + path, "true"]).returncode != 0:
            return None
        return path

    @classmethod
    def find_amber(cls, parent):
        """With --new-pid-ns the process we started waits; amber is its only child."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/task/%d/children" % (parent, parent)) as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("no amber child under the pid-namespace parent %d" % parent)

    @classmethod
    def tearDownClass(cls):
        cls.session.close()
        if cls.cgroup:
            try:
                os.rmdir(cls.cgroup)
            except OSError:
                pass
        if cls.cgroup_mount:
            subprocess.run(["umount", cls.cgroup_mount])
        if cls.netns:
            subprocess.run(["umount", cls.netns])

    def exec_guest(self, *cmd):
        res = subprocess.run([AMBERCTL, "exec", "--vsock", os.path.join(self.root, "v.sock"),
                              "--timeout", "60", "--"] + list(cmd),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=harness.scaled(90))
        return res.returncode, res.stdout.decode(), res.stderr.decode()

    def test_guest_runs_commands(self):
        rc, out, err = self.exec_guest("/bin/sh", "-c", "echo jailed-ok; cat /proc/cpuinfo | grep -c processor")
        self.assertEqual(rc, 0, err)
        self.assertIn("jailed-ok", out)
        rc, out, err = self.exec_guest("/bin/sh", "-c", "echo data > /tmp/f && sync && dd if=/dev/vda bs=4096 count=1 2>/dev/null | wc -c")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split()[-1], "4096")

    def test_no_capabilities_and_unprivileged(self):
        st = proc_status(self.amber_pid)
        self.assertEqual(int(st["CapEff"], 16), 0, st["CapEff"])
        self.assertEqual(int(st["CapPrm"], 16), 0, st["CapPrm"])
        self.assertEqual(int(st["CapAmb"], 16), 0, st["CapAmb"])
        self.assertEqual(st["Uid"].split(), [str(NOBODY)] * 4)
        self.assertEqual(st["Gid"].split(), [str(NOBODY)] * 4)
        self.assertEqual(st["Groups"].strip(), "")
        self.assertEqual(st["NoNewPrivs"].strip(), "1")
        # The pid-namespace parent dropped its ids too.
        parent = proc_status(self.vm.pid)
        self.assertEqual(int(parent["CapEff"], 16), 0)
        self.assertEqual(parent["Uid"].split()[0], str(NOBODY))

    def test_every_thread_filtered(self):
        tids = [int(t) for t in os.listdir("/proc/%d/task" % self.amber_pid)]
        self.assertGreaterEqual(len(tids), 2)  # main + one vCPU
        for tid in tids:
            st = proc_status(self.amber_pid, tid)
            self.assertEqual(st["Seccomp"].strip(), "2", "thread %d (%s) unfiltered" % (tid, st["Name"]))
            self.assertEqual(st["Seccomp_filters"].strip(), "1", "thread %d" % tid)

    def test_namespaces_root_env_fds_limits(self):
        st = proc_status(self.amber_pid)
        self.assertEqual(st["NSpid"].split()[-1], "1")  # pid 1 of its own namespace
        self.assertNotEqual(os.readlink("/proc/%d/ns/mnt" % self.amber_pid), os.readlink("/proc/self/ns/mnt"))
        # Same directory (the link text differs when the test itself runs chrooted).
        self.assertTrue(os.path.samestat(os.stat("/proc/%d/root" % self.amber_pid), os.stat(self.root)))
        with open("/proc/%d/environ" % self.amber_pid, "rb") as f:
            env = f.read()
        self.assertEqual(env.strip(b"\0"), b"", env)
        fdir = "/proc/%d/fd" % self.amber_pid
        targets = [os.readlink(os.path.join(fdir, fd)) for fd in os.listdir(fdir)]
        self.assertFalse(any("inherited-marker" in t for t in targets), targets)
        with open("/proc/%d/limits" % self.amber_pid) as f:
            limits = f.read()
        self.assertRegex(limits, r"Max open files\s+256\s+256")
        self.assertRegex(limits, r"Max file size\s+1073741824\s+1073741824")

    def test_cgroup(self):
        if not self.cgroup:
            self.skipTest("no cgroup v2 here (none mounted, and mounting one failed): --cgroup not checked")
        with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
            self.assertIn(str(self.vm.pid), f.read().split())

    def test_netns(self):
        if not self.netns:
            self.skipTest("cannot make a network namespace here: --netns not checked")
        ns = os.readlink("/proc/%d/ns/net" % self.amber_pid)
        self.assertEqual(ns, "net:[%d]" % os.stat(self.netns).st_ino)

    def test_zz_sigterm_ends_cleanly(self):
        # Runs last (alphabetical): the parent forwards SIGTERM; amber writes its exit file.
        self.vm.signal(signal.SIGTERM)
        self.assertEqual(self.vm.wait_exit(timeout=harness.scaled(30)), 0, self.vm.tail())
        with open(os.path.join(self.root, "exit.json")) as f:
            self.assertIn("SIGTERM", f.read())


if __name__ == "__main__":
    unittest.main()
