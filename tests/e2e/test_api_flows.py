"""e2e: amber driven the way real Firecracker clients drive it (docs/orchestrators.md).

Three boots, one per flow: the go-sdk's call order (FIFO logger/metrics, pause via PATCH /vm,
SendCtrlAltDel), Kata runtime-rs's order (placeholder drives, repeated PUT /vsock, a drive swap
after boot), and a flintlock/Kata-style --no-api --config-file boot. Clients use only Python's
standard library, like a foreign client would.
"""
import json
import os
import re
import signal
import stat
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import util_amber as U  # noqa: E402

MEM_MIB = 256
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off quiet"
ISO_US = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


class TestApiFlows(harness.AmberTestCase):
    def setUp(self):
        super().setUp()
        U.arm_watchdog(400)
        self.addCleanup(U.disarm_watchdog)

    def start_api_only(self, vm_id):
        """amber as the go-sdk starts it: only --api-sock, --id and a seccomp flag."""
        sock = self.path("fc.sock")
        vm = self.start([harness.AMBER, "--api-sock", sock, "--id", vm_id, "--no-seccomp"])
        U.wait_for_path(sock, vm=vm)
        api = U.Api(sock)
        self.addCleanup(api.close)
        return vm, sock, api

    def timed(self, api, method, url, body=None, want=204, budget_ms=None):
        t0 = time.monotonic()
        status, reply = api.call(method, url, body)
        ms = (time.monotonic() - t0) * 1000
        self.assertEqual(status, want, "%s %s answered %d %r, expected %d"
                         % (method, url, status, reply, want))
        if budget_ms is not None:
            self.assertLess(ms, harness.scaled(budget_ms), "%s %s took %.0f ms; the go-sdk's "
                            "client gives it %d ms" % (method, url, ms, budget_ms))
        return reply, ms

    def test_go_sdk_flow(self):
        vm, sock, api = self.start_api_only("gosdk")
        # The socket answers as soon as its file exists: no retry here.
        reply, _ = self.timed(api, "GET", "/machine-config", want=200, budget_ms=3000)
        self.assertIn("vcpu_count", reply)
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        self.assertEqual(mode, 0o600, "the API socket must be mode 0600, is %o" % mode)

        log_fifo, metrics_fifo = self.path("log.fifo"), self.path("metrics.fifo")
        os.mkfifo(log_fifo)
        os.mkfifo(metrics_fifo)
        self.timed(api, "PUT", "/logger", {"log_path": log_fifo, "level": "Debug",
                                           "show_level": False, "show_log_origin": False},
                   budget_ms=500)
        self.timed(api, "PUT", "/metrics", {"metrics_path": metrics_fifo}, budget_ms=500)
        self.timed(api, "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": MEM_MIB,
                                                   "smt": False}, budget_ms=500)
        reply, _ = self.timed(api, "GET", "/machine-config", want=200)
        self.assertEqual((reply.get("vcpu_count"), reply.get("mem_size_mib")), (2, MEM_MIB))
        self.timed(api, "PUT", "/boot-source", {"kernel_image_path": harness.VMLINUZ,
                                                "initrd_path": harness.INITRAMFS,
                                                "boot_args": BOOT_ARGS})
        root = self.rootfs_copy()
        self.timed(api, "PUT", "/drives/root", {"drive_id": "root", "path_on_host": root,
                                                "is_root_device": True, "is_read_only": False},
                   budget_ms=250)
        vsock = self.path("v.sock")
        self.timed(api, "PUT", "/vsock", {"vsock_id": "vsock0", "guest_cid": 3, "uds_path": vsock})
        self.timed(api, "PUT", "/actions", {"action_type": "InstanceStart"})
        vm.wait_for(harness.READY)
        U.wait_agent(vsock)

        root_info = self.timed(api, "GET", "/", want=200)[0]
        self.assertEqual(root_info.get("state"), "Running")
        self.assertEqual(root_info.get("id"), "gosdk")
        self.assertEqual((root_info.get("vcpus"), root_info.get("mem_mib")), (2, MEM_MIB))
        self.assertIn("paused_at", root_info, "GET / must report paused_at (null while running)")
        self.assertIsNone(root_info["paused_at"])
        self.assertGreater(root_info.get("uptime_ms", 0), 0)

        _, pause_ms = self.timed(api, "PATCH", "/vm", {"state": "Paused"}, budget_ms=500)
        paused = self.timed(api, "GET", "/", want=200)[0]
        self.assertEqual(paused.get("state"), "Paused")
        self.assertRegex(paused.get("paused_at") or "", ISO_US)
        _, resume_ms = self.timed(api, "PATCH", "/vm", {"state": "Resumed"}, budget_ms=500)
        harness.log("PATCH /vm at the client: pause %.1f ms, resume %.1f ms" % (pause_ms, resume_ms))
        after = self.timed(api, "GET", "/", want=200)[0]
        self.assertEqual(after.get("state"), "Running")
        for key in ("pause_latency_us_last", "pause_latency_us_max", "resume_latency_us_last",
                    "resume_latency_us_max"):
            self.assertGreater(after.get(key, 0), 0, "GET / should report %s after a pause" % key)
        self.assertEqual(U.guest_sh(vsock, "echo resumed"), "resumed\n")

        # Nobody reads the metrics FIFO yet: FlushMetrics must not block. Then read it.
        self.timed(api, "PUT", "/actions", {"action_type": "FlushMetrics"}, budget_ms=500)
        fd = os.open(metrics_fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self.timed(api, "PUT", "/actions", {"action_type": "FlushMetrics"})
            data = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        lines = [ln for ln in data.decode().splitlines() if ln]
        self.assertTrue(lines, "FlushMetrics wrote nothing to the metrics FIFO")
        for ln in lines:
            self.assertIsInstance(json.loads(ln), dict, "a metrics line is not a JSON object")

        self.timed(api, "PUT", "/actions", {"action_type": "SendCtrlAltDel"})
        rc = vm.wait_exit(60)
        self.assertEqual(rc, 0, "SendCtrlAltDel should power the guest off and amber exit 0\n%s"
                         % vm.tail())
        self.assertFalse(os.path.exists(sock), "amber should remove its API socket on exit")

    def test_runtime_rs_flow(self):
        vm, sock, api = self.start_api_only("kata-rs")
        self.timed(api, "PUT", "/boot-source", {"kernel_image_path": harness.VMLINUZ,
                                                "initrd_path": harness.INITRAMFS,
                                                "boot_args": BOOT_ARGS})
        self.timed(api, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB})
        self.timed(api, "PUT", "/drives/rootfs", {"drive_id": "rootfs",
                                                  "path_on_host": self.rootfs_copy(),
                                                  "is_root_device": True, "is_read_only": False,
                                                  "rate_limiter": None})
        for i in range(1, 6):
            placeholder = self.path("drive%d.img" % i)
            open(placeholder, "wb").close()
            self.timed(api, "PUT", "/drives/drive%d" % i,
                       {"drive_id": "drive%d" % i, "path_on_host": placeholder,
                        "is_root_device": False, "is_read_only": False, "rate_limiter": None})
        vsock = self.path("kata.hvsock")
        body = {"vsock_id": "root", "guest_cid": 3, "uds_path": vsock}
        self.timed(api, "PUT", "/vsock", body)
        self.assertTrue(os.path.exists(vsock), "PUT /vsock must bind the socket at PUT time")
        self.timed(api, "PUT", "/vsock", body)  # runtime-rs sends it twice: unlink and rebind
        self.assertTrue(os.path.exists(vsock))
        self.timed(api, "PUT", "/actions", {"action_type": "InstanceStart"})
        vm.wait_for(harness.READY)
        U.wait_agent(vsock)

        self.assertEqual(U.guest_sh(vsock, "cat /sys/block/vdb/size").strip(), "0",
                         "the zero-byte placeholder drive1 should be vdb with 0 sectors")
        new = self.path("hotplug.img")
        with open(new, "wb") as f:
            f.write(b"amber-hotplug-marker\n")
            f.truncate(4 << 20)
        self.timed(api, "PATCH", "/drives/drive1", {"drive_id": "drive1", "path_on_host": new})
        deadline = time.monotonic() + harness.scaled(20)
        while True:
            size = U.guest_sh(vsock, "cat /sys/block/vdb/size").strip()
            if size == str((4 << 20) // 512) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        self.assertEqual(size, str((4 << 20) // 512), "after PATCH /drives the guest should see "
                         "the new capacity of vdb through a config-change interrupt")
        head = U.guest_sh(vsock, "head -c 21 /dev/vdb")
        self.assertEqual(head, "amber-hotplug-marker\n", "the guest reads the swapped-in file")

        vm.signal(signal.SIGTERM)
        self.assertEqual(vm.wait_exit(30), 0, "SIGTERM should end amber with status 0")

    def test_config_file_no_api(self):
        vsock = self.path("cf.vsock")
        config = {
            "boot-source": {"kernel_image_path": harness.VMLINUZ, "initrd_path": harness.INITRAMFS,
                            "boot_args": BOOT_ARGS},
            "drives": [{"drive_id": "rootfs", "path_on_host": self.rootfs_copy(),
                        "is_root_device": True, "is_read_only": False, "partuuid": None,
                        "rate_limiter": None, "io_engine": "Sync", "cache_type": "Unsafe"}],
            "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB, "smt": False,
                               "track_dirty_pages": False},
            "network-interfaces": [],
            "vsock": {"guest_cid": 3, "uds_path": vsock, "vsock_id": None},
            "logger": None,
            "metrics": None,
        }
        cfg_path = self.path("vm.json")
        with open(cfg_path, "w") as f:
            json.dump(config, f)
        vm = self.start([harness.AMBER, "--id", "flintlock", "--boot-timer", "--no-api",
                         "--config-file", cfg_path], cwd=self.session.dir)
        vm.wait_for(harness.READY)
        U.wait_agent(vsock)
        self.assertEqual(U.guest_sh(vsock, "cat /proc/cmdline; echo ok").splitlines()[-1], "ok")
        leftovers = [n for n in os.listdir(self.session.dir) if n.endswith(".sock")]
        self.assertEqual(leftovers, [], "--no-api must serve no API socket")
        self.assertFalse(os.path.exists("/run/firecracker.socket"))
        # Power off from inside: amber exits 0 (firecracker-containerd treats others as failure).
        U.ctl_exec(vsock, ["poweroff"], timeout=60)
        self.assertEqual(vm.wait_exit(60), 0, "a guest power-off should end amber with 0\n%s"
                         % vm.tail())


if __name__ == "__main__":
    unittest.main()
