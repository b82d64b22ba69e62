"""e2e: snapshot and restore (issue 15), with real guests and the agent.

One guest per vCPU count (initramfs, so the guest's files live in RAM): write a file, start a
counter, pause, snapshot, kill -9 amber, restore in a new amber on another vsock path, and check
the file, the counter's pid and progress, exec and the guest clock. Then the same snapshot is
restored twice at once, and the API's order errors are checked. The 2-vCPU guest goes through
`amberctl snapshot` and `amberctl restore` for its first round trip.
"""
import hashlib
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import util_amber as U  # noqa: E402

MEM_MIB = 256
COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done")


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SnapshotCase(harness.AmberTestCase):
    vcpus = 1
    use_amberctl = False  # snapshot and the first restore through amberctl instead of the API

    def setUp(self):
        super().setUp()
        U.arm_watchdog(600)
        self.addCleanup(U.disarm_watchdog)

    def call(self, api, method, url, body=None, want=None):
        status, reply = api.call(method, url, body)
        if want is not None:
            self.assertEqual(status, want, "%s %s answered %d %r, expected %d"
                             % (method, url, status, reply, want))
        return status, reply

    def boot_source_vm(self):
        """A booted guest with the agent up; returns (vm, api, vsock path)."""
        vsock = self.path("vsock.sock")
        api_path = self.path("api.sock")
        vm = self.amber(initrd=True, vcpus=self.vcpus, mem_mib=MEM_MIB, vsock=(3, vsock),
                        api_sock=api_path)
        vm.wait_for(harness.READY)
        U.wait_agent(vsock)
        api = U.Api(api_path)
        self.addCleanup(api.close)
        return vm, api, vsock

    def restored_vm(self, name, snap, mem, vsock, resume=True, extra_body=None):
        """A fresh amber with only an API socket, loaded from snap/mem with vsock moved."""
        api_path = self.path("api-%s.sock" % name)
        vm = self.start(harness.amber_argv(kernel=None, api_sock=api_path))
        U.wait_for_path(api_path, vm=vm)
        api = U.Api(api_path)
        self.addCleanup(api.close)
        body = {"snapshot_path": snap, "mem_backend": {"backend_type": "File", "backend_path": mem},
                "resume_vm": resume, "vsock_override": {"uds_path": vsock}}
        body.update(extra_body or {})
        t0 = time.monotonic()
        self.call(api, "PUT", "/snapshot/load", body, want=204)
        harness.log("restore answered in %.1f ms" % ((time.monotonic() - t0) * 1000))
        return vm, api

    def amberctl_restore(self, snapdir):
        """`amberctl restore --id r1 snapdir` in a private runtime root; (vsock path, api)."""
        run = self.path("run")
        os.mkdir(run)
        env = dict(os.environ, XDG_RUNTIME_DIR=run)
        res = subprocess.run([U.AMBERCTL, "restore", "--id", "r1", snapdir], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        d = os.path.join(run, "amber", "r1")
        pidfile = os.path.join(d, "amber.pid")
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                pid = int(f.read().strip() or 0)
            if pid > 0:
                self.addCleanup(lambda: os.kill(pid, signal.SIGKILL) if os.path.exists(
                    "/proc/%d" % pid) else None)
        self.assertEqual(res.returncode, 0, res.stdout)
        api = U.Api(os.path.join(d, "api.sock"))
        self.addCleanup(api.close)
        return os.path.join(d, "vsock.sock"), api

    def snapshot(self, api, snap, mem):
        self.call(api, "POST", "/pause", want=200)
        t0 = time.monotonic()
        self.call(api, "PUT", "/snapshot/create",
                  {"snapshot_path": snap, "mem_file_path": mem, "snapshot_type": "Full"}, want=204)
        harness.log("snapshot/create took %.1f ms, mem file %d KiB allocated of %d KiB"
                    % ((time.monotonic() - t0) * 1000, os.stat(mem).st_blocks // 2,
                       os.stat(mem).st_size // 1024))

    def guest_clock_ok(self, vsock):
        # busybox date has no %N; adjtimex prints the kernel's time to the microsecond.
        before = time.time()
        out = U.guest_sh(vsock, "adjtimex | awk '/tv_sec/ {s=$2} /tv_usec/ {u=$2} "
                                "END {printf \"%d.%06d\\n\", s, u}'").strip()
        after = time.time()
        guest = float(out)
        self.assertTrue(before - 1.0 <= guest <= after + 1.0,
                        "guest clock %.3f outside host [%.3f, %.3f] +- 1 s" % (guest, before, after))

    def test_survives_its_process(self):
        vm, api, vsock = self.boot_source_vm()
        U.guest_sh(vsock, "echo snapshot-payload-42 > /tmp/keep; sync")
        pid = U.guest_sh(vsock, "setsid sh -c '%s' >/dev/null 2>&1 </dev/null & echo $!"
                         % COUNTER).strip()
        time.sleep(1.0)
        self.assertEqual(self.call(api, "GET", "/", want=200)[1]["state"], "Running")
        self.guest_clock_ok(vsock)  # the baseline: a cold-booted guest agrees with the host

        snap, mem = self.path("vm.snap"), self.path("vm.mem")
        # Order errors: create while running is refused.
        status, reply = self.call(api, "PUT", "/snapshot/create",
                                  {"snapshot_path": snap, "mem_file_path": mem})
        self.assertEqual(status, 400, reply)
        self.assertIn("fault_message", reply)
        if self.use_amberctl:
            snapdir = self.path("snapdir")
            res = subprocess.run([U.AMBERCTL, "snapshot", "--api", api.path, snapdir],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            self.assertEqual(res.returncode, 0, res.stdout)
            snap, mem = os.path.join(snapdir, "vm.snap"), os.path.join(snapdir, "vm.mem")
        else:
            self.snapshot(api, snap, mem)
        self.assertEqual(self.call(api, "GET", "/", want=200)[1]["state"], "Paused")
        vm.signal(signal.SIGKILL)
        vm.wait_exit()
        mem_sha = file_sha256(mem)
        time.sleep(3.0)  # time passes between the snapshot and the restore

        if self.use_amberctl:
            new_vsock, api2 = self.amberctl_restore(os.path.dirname(snap))
        else:
            new_vsock = self.path("vsock-restored.sock")
            vm2, api2 = self.restored_vm("r1", snap, mem, new_vsock)
        self.assertEqual(self.call(api2, "GET", "/", want=200)[1]["state"], "Running")
        U.wait_agent(new_vsock)
        self.assertEqual(U.guest_sh(new_vsock, "cat /tmp/keep").strip(), "snapshot-payload-42")
        self.assertEqual(U.guest_sh(new_vsock, "test -d /proc/%s && echo alive" % pid).strip(),
                         "alive")
        c1 = int(U.guest_sh(new_vsock, "cat /tmp/count"))
        time.sleep(1.5)
        c2 = int(U.guest_sh(new_vsock, "cat /tmp/count"))
        self.assertGreater(c2, c1, "the counter did not carry on after restore")
        self.guest_clock_ok(new_vsock)
        self.assertEqual(file_sha256(mem), mem_sha, "restore wrote to the memory file")

        # One snapshot, two sandboxes at once: each has its own writes.
        va, vb = self.path("vsock-a.sock"), self.path("vsock-b.sock")
        vma, _ = self.restored_vm("a", snap, mem, va)
        vmb, _ = self.restored_vm("b", snap, mem, vb)
        U.wait_agent(va)
        U.wait_agent(vb)
        U.guest_sh(va, "echo from-a > /tmp/keep")
        U.guest_sh(vb, "echo from-b > /tmp/keep")
        self.assertEqual(U.guest_sh(va, "cat /tmp/keep").strip(), "from-a")
        self.assertEqual(U.guest_sh(vb, "cat /tmp/keep").strip(), "from-b")
        self.assertEqual(file_sha256(mem), mem_sha, "a restore wrote to the memory file")

    def test_load_after_config_is_refused(self):
        api_path = self.path("api.sock")
        vm = self.start(harness.amber_argv(kernel=None, api_sock=api_path))
        U.wait_for_path(api_path, vm=vm)
        api = U.Api(api_path)
        self.addCleanup(api.close)
        self.call(api, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}, want=204)
        status, reply = self.call(api, "PUT", "/snapshot/load",
                                  {"snapshot_path": "/nonexistent", "mem_file_path": "/none"})
        self.assertEqual(status, 400, reply)
        self.assertIn("fresh amber", reply["fault_message"])
        status, reply = self.call(api, "PUT", "/snapshot/load",
                                  {"snapshot_path": "/x", "mem_backend":
                                   {"backend_type": "Uffd", "backend_path": "/y"}})
        self.assertEqual(status, 400, reply)
        self.assertIn("Uffd", reply["fault_message"])
        self.assertTrue(vm.alive())


    def test_disk_full(self):
        """A memory file that hits a full file system: one clear error, the VM paused and whole."""
        small = self.path("small")
        os.mkdir(small)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "none", small]).returncode:
            self.skipTest("cannot mount a small tmpfs (not root?)")
        self.addCleanup(subprocess.run, ["umount", "-l", small])
        vm, api, vsock = self.boot_source_vm()
        U.guest_sh(vsock, "echo before > /tmp/keep")
        self.call(api, "POST", "/pause", want=200)
        status, reply = self.call(api, "PUT", "/snapshot/create",
                                  {"snapshot_path": os.path.join(small, "vm.snap"),
                                   "mem_file_path": os.path.join(small, "vm.mem")})
        self.assertGreaterEqual(status, 400, reply)
        self.assertIn("No space left on device", reply["fault_message"])
        self.assertFalse(os.path.exists(os.path.join(small, "vm.snap")),
                         "a state file was left for a memory file that did not fit")
        self.assertTrue(vm.alive())
        self.assertEqual(self.call(api, "GET", "/", want=200)[1]["state"], "Paused")
        self.call(api, "POST", "/resume", want=200)
        self.assertEqual(U.guest_sh(vsock, "cat /tmp/keep").strip(), "before")


class TestSnapshot2Vcpus(SnapshotCase):
    vcpus = 2
    use_amberctl = True

    # The order errors and the full disk are checked once, with 1 vCPU.
    test_load_after_config_is_refused = None
    test_disk_full = None


class TestSnapshot1Vcpu(SnapshotCase):
    vcpus = 1


del SnapshotCase

if __name__ == "__main__":
    unittest.main()
