"""e2e: every API route in every VM state, sent to a real amber whose main thread runs under its
seccomp filter once booted (issue 17, defect 2). amber must survive each request, answer 400
with a fault_message outside the route's phases, and keep its guest answering.

One guest boots from flags with an API socket, a data drive and vsock; each route is then sent
while it runs and while it is paused. A second amber, started with only --api-sock, checks the
pre-boot phase (no filter there, but the phase answers must match). amber runs with its working
directory in the scratch directory, so a relative path_on_host exercises path resolution.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import util_amber as U  # noqa: E402

MEM_MIB = 256
# Another amber binary to run these checks against (e.g. an older build, to watch them fail).
AMBER_BIN = os.environ.get("AMBER_ROUTES_BIN") or harness.AMBER
PRE, RUNNING, PAUSED = "Not started", "Running", "Paused"
BOOTED = (RUNNING, PAUSED)
ANY = (PRE, RUNNING, PAUSED)

# (method, path, body, states that serve it). DIR becomes the scratch directory.
ROUTES = [
    ("GET", "/", None, ANY),
    ("GET", "/version", None, ANY),
    ("GET", "/machine-config", None, ANY),
    ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}, (PRE,)),
    ("PATCH", "/machine-config", {"vcpu_count": 1}, (PRE,)),
    ("PUT", "/boot-source", {"kernel_image_path": "vmlinux"}, (PRE,)),
    ("PUT", "/drives/extra", {"drive_id": "extra", "path_on_host": "extra.img",
                              "is_root_device": False, "is_read_only": False}, (PRE,)),
    ("PATCH", "/drives/data", {"drive_id": "data", "path_on_host": "data2.img"}, BOOTED),
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"}, (PRE,)),
    ("PATCH", "/network-interfaces/eth0", {"iface_id": "eth0", "rx_rate_limiter": {}}, BOOTED),
    ("PUT", "/vsock", {"guest_cid": 3, "uds_path": "DIR/other.sock"}, (PRE,)),
    ("PUT", "/entropy", {}, (PRE,)),
    ("PUT", "/logger", {"log_path": "DIR/api.log", "level": "Info"}, (PRE,)),
    ("PUT", "/metrics", {"metrics_path": "DIR/metrics.json"}, (PRE,)),
    ("PUT", "/actions", {"action_type": "FlushMetrics"}, ANY),
    ("PUT", "/actions", {"action_type": "InstanceStart"}, ANY),
    ("PATCH", "/vm", {"state": "Paused"}, BOOTED),
    ("PATCH", "/vm", {"state": "Resumed"}, BOOTED),
    ("GET", "/vm/config", None, ANY),
    ("POST", "/pause", None, ANY),
    ("POST", "/resume", None, ANY),
    # Last: it may end the guest (and amber, cleanly) when it reboots.
    ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}, ANY),
]


def stderr_of(vm):
    with vm._cond:
        return "\n".join(vm.stderr_lines)


def fill(body, scratch):
    if body is None:
        return None
    return {k: (v.replace("DIR", scratch) if isinstance(v, str) else v) for k, v in body.items()}


class TestRoutes(harness.AmberTestCase):
    def setUp(self):
        super().setUp()
        U.arm_watchdog(500)
        self.addCleanup(U.disarm_watchdog)

    def assert_survived(self, vm, api, what):
        """amber is alive, never printed a seccomp violation, and still answers GET /."""
        time.sleep(0.05)
        self.assertTrue(vm.alive(), "%s killed amber (status %r)\n%s"
                        % (what, vm.proc.poll(), vm.tail()))
        self.assertNotIn("seccomp violation", stderr_of(vm), "%s\n%s" % (what, vm.tail()))
        status, reply = api.call("GET", "/")
        self.assertEqual(status, 200, "%s: GET / then answered %d %r" % (what, status, reply))
        return reply["state"]

    def set_state(self, api, want):
        status, reply = api.call("PATCH", "/vm", {"state": "Paused" if want == PAUSED else "Resumed"})
        self.assertEqual(status, 204, "cannot reach %s: %d %r" % (want, status, reply))

    def check_route(self, vm, api, state, method, path, body, phases):
        what = "%s %s %r in state %s" % (method, path, body, state)
        status, reply = api.call(method, path, fill(body, self.session.dir))
        harness.log("%s -> %d %s" % (what, status, reply if status >= 400 else ""))
        if state not in phases:
            self.assertEqual(status, 400, "%s: outside its phases, want 400, got %d %r"
                             % (what, status, reply))
        if status >= 400:
            self.assertIsInstance(reply, dict, what)
            self.assertIn("fault_message", reply, what)
        self.assertNotEqual(status, 500, "%s: %r" % (what, reply))

    def test_booted_routes_under_seccomp(self):
        scratch = self.session.dir
        for name in ("data.img", "data2.img"):
            with open(os.path.join(scratch, name), "wb") as f:
                f.truncate(16 << 20)
        vsock = self.session.path("v.sock")
        api_sock = self.session.path("api.sock")
        argv = harness.amber_argv(initrd=harness.INITRAMFS, cmdline=harness.DEFAULT_CMDLINE,
                                  mem_mib=MEM_MIB, vsock=(3, vsock), api_sock=api_sock,
                                  drives=[{"path": os.path.join(scratch, "data.img"), "id": "data"}],
                                  binary=AMBER_BIN)
        vm = self.start(argv, cwd=scratch)  # seccomp is on by default
        vm.wait_for(harness.READY)
        U.wait_agent(vsock)
        api = U.Api(api_sock)
        self.addCleanup(api.close)
        for state in (RUNNING, PAUSED):
            for method, path, body, phases in ROUTES:
                if path == "/actions" and body["action_type"] == "SendCtrlAltDel":
                    continue
                self.set_state(api, state)
                self.check_route(vm, api, state, method, path, body, phases)
                self.assert_survived(vm, api, "%s %s in state %s" % (method, path, state))
        self.set_state(api, RUNNING)
        status, reply = api.call("GET", "/vm/config")
        self.assertEqual(status, 200)
        drives = {d["drive_id"]: d["path_on_host"] for d in reply["drives"]}
        self.assertEqual(drives.get("data"), os.path.join(scratch, "data2.img"),
                         "a relative path_on_host resolves against amber's working directory")
        self.assertFalse(os.path.exists(os.path.join(scratch, "api.log")),
                         "PUT /logger after boot must not create its file")
        U.agent_ping(vsock)  # the guest still answers
        # Last: Ctrl-Alt-Del may reboot the guest, which ends amber; but never by SIGSYS.
        self.check_route(vm, api, RUNNING, "PUT", "/actions", {"action_type": "SendCtrlAltDel"}, ANY)
        time.sleep(1)
        if not vm.alive():
            self.assertNotEqual(vm.wait_exit(), 159, vm.tail())
        self.assertNotIn("seccomp violation", stderr_of(vm), vm.tail())

    def test_pre_boot_routes(self):
        api_sock = self.session.path("pre.sock")
        vm = self.start([AMBER_BIN, "--api-sock", api_sock, "--id", "routes-pre"],
                        cwd=self.session.dir)
        U.wait_for_path(api_sock, vm=vm)
        api = U.Api(api_sock)
        self.addCleanup(api.close)
        for method, path, body, phases in ROUTES:
            if path == "/actions" and body["action_type"] == "InstanceStart":
                continue  # the configuration here is not bootable; its 400 is the handler's
            self.check_route(vm, api, PRE, method, path, body, phases)
            self.assertEqual(self.assert_survived(vm, api, "%s %s" % (method, path)), PRE)

    def test_file_checks_at_put_and_at_start(self):
        """Firecracker's contract: a kernel, initrd or drive file that is missing, a directory or
        a FIFO is refused by the PUT that names it; InstanceStart checks again, so a file that
        vanished or was swapped for a FIFO in between is a 400 naming it, never a hang. Pre-boot
        only: no guest runs."""
        d = self.session.dir
        api_sock = self.session.path("files.sock")
        vm = self.start([AMBER_BIN, "--api-sock", api_sock, "--id", "routes-files"], cwd=d)
        U.wait_for_path(api_sock, vm=vm)
        api = U.Api(api_sock)
        self.addCleanup(api.close)
        kernel, disk, fifo = (os.path.join(d, n) for n in ("k.bin", "disk.img", "f.fifo"))
        for name in (kernel, disk):
            with open(name, "wb") as f:
                f.truncate(1 << 20)
        os.mkfifo(fifo)

        def expect(method, path, body, status, *words):
            got, reply = api.call(method, path, body)
            harness.log("%s %s %r -> %d %r" % (method, path, body, got, reply))
            self.assertEqual(got, status, "%s %s %r: %r" % (method, path, body, reply))
            for w in words:
                self.assertIn(w, reply["fault_message"], "%s %s %r" % (method, path, body))

        drive = {"drive_id": "d", "is_root_device": False, "path_on_host": disk}
        for bad, words in ((os.path.join(d, "none"), "No such file"), (d, "is a directory"),
                           (fifo, "not a regular file")):
            expect("PUT", "/boot-source", {"kernel_image_path": bad}, 400, "kernel_image_path",
                   words)
            expect("PUT", "/boot-source", {"kernel_image_path": kernel, "initrd_path": bad}, 400,
                   "initrd_path", words)
            expect("PUT", "/drives/d", dict(drive, path_on_host=bad), 400, "path_on_host", words)
        expect("PUT", "/boot-source", {"kernel_image_path": kernel}, 204)
        expect("PUT", "/drives/d", drive, 204)
        start = {"action_type": "InstanceStart"}
        os.unlink(disk)  # the drive vanishes after its PUT
        expect("PUT", "/actions", start, 400, "drive", disk, "No such file")
        os.mkfifo(disk)  # ... and comes back as a FIFO, which a boot would block on
        expect("PUT", "/actions", start, 400, "drive", disk, "not a regular file")
        os.unlink(disk)
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        os.unlink(kernel)
        os.mkfifo(kernel)  # the kernel is swapped for a FIFO
        expect("PUT", "/actions", start, 400, "kernel", kernel, "not a regular file")
        self.assertEqual(self.assert_survived(vm, api, "the refused starts"), PRE)


if __name__ == "__main__":
    unittest.main()
