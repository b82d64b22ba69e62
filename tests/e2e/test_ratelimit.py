"""e2e: Firecracker's rate_limiter on a drive (docs/rate-limiter.md).

One boot through the API: a data drive limited to 1 MiB/s holds a guest `dd` with O_DIRECT to
within 10 % of 1 MiB/s; PATCH /drives raises the limit to 2 MiB/s while the guest runs and the
next `dd` follows it; a pause in the middle of a throttled `dd` loses nothing. The rate is timed
in the guest (/proc/uptime around dd), so exec round trips do not count. The entropy device's
limiter (256 B/s) makes reading 1 KiB of /dev/hwrng take at least 2.5 s.
"""
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import util_amber as U  # noqa: E402

MIB = 1 << 20
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off quiet"
TOLERANCE = 0.10


def bucket(bytes_per_s):
    """A bandwidth bucket refilled every 125 ms: a small initial burst, so the average over a few
    seconds is the rate itself."""
    return {"bandwidth": {"size": bytes_per_s // 8, "one_time_burst": 0, "refill_time": 125}}


class TestRateLimit(harness.AmberTestCase):
    def setUp(self):
        super().setUp()
        U.arm_watchdog(400)
        self.addCleanup(U.disarm_watchdog)

    def call(self, api, method, url, body=None, want=204):
        status, reply = api.call(method, url, body)
        self.assertEqual(status, want, "%s %s answered %d %r, expected %d"
                         % (method, url, status, reply, want))
        return reply

    def dd_rate(self, vsock, mib, skip_mib=0):
        """Reads mib MiB from /dev/vda with O_DIRECT in 64 KiB blocks; returns MiB/s as timed in
        the guest."""
        out = U.guest_sh(vsock, "a=$(cut -d' ' -f1 /proc/uptime); "
                         "dd if=/dev/vda of=/dev/null bs=64k count=%d skip=%d iflag=direct 2>&1; "
                         "b=$(cut -d' ' -f1 /proc/uptime); echo \"uptime $a $b\""
                         % (mib * 16, skip_mib * 16), timeout=120)
        m = re.search(r"uptime ([0-9.]+) ([0-9.]+)", out)
        self.assertIsNotNone(m, "no timing from the guest: %r" % out)
        self.assertIn("%d+0 records in" % (mib * 16), out, "dd did not read everything: %r" % out)
        seconds = float(m.group(2)) - float(m.group(1))
        self.assertGreater(seconds, 0, out)
        return mib / seconds

    def test_drive_bandwidth_and_live_patch(self):
        sock = self.path("api.sock")
        vm = self.start([harness.AMBER, "--api-sock", sock, "--id", "ratelimit"])
        U.wait_for_path(sock, vm=vm)
        api = U.Api(sock)
        self.addCleanup(api.close)
        data = self.path("data.img")
        with open(data, "wb") as f:
            f.truncate(64 * MIB)
        vsock = self.path("v.sock")
        self.call(api, "PUT", "/boot-source", {"kernel_image_path": harness.VMLINUZ,
                                               "initrd_path": harness.INITRAMFS,
                                               "boot_args": BOOT_ARGS})
        self.call(api, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 256})
        # Hostile limiters are refused at PUT time, naming the field.
        for bad in ({"bandwidth": {"size": -1, "refill_time": 100}},
                    {"bandwidth": {"size": 1, "refill_time": 100, "burst": 1}},
                    {"ops": {"size": 1}}, {"bandwidth": {"size": "1", "refill_time": 1}}):
            reply = self.call(api, "PUT", "/drives/data",
                              {"drive_id": "data", "path_on_host": data, "is_root_device": False,
                               "rate_limiter": bad}, want=400)
            self.assertIn("rate_limiter", reply["fault_message"], reply)
        self.call(api, "PUT", "/drives/data", {"drive_id": "data", "path_on_host": data,
                                               "is_root_device": False, "is_read_only": False,
                                               "rate_limiter": bucket(1 * MIB)})
        self.call(api, "PUT", "/vsock", {"guest_cid": 3, "uds_path": vsock})
        self.call(api, "PUT", "/entropy", {"rate_limiter": {"bandwidth": {"size": 256,
                                                                          "refill_time": 1000}}})
        self.call(api, "PUT", "/actions", {"action_type": "InstanceStart"})
        vm.wait_for(harness.READY)
        U.wait_agent(vsock)

        rate1 = self.dd_rate(vsock, 8)
        harness.log("1 MiB/s limiter: dd read at %.3f MiB/s" % rate1)
        self.assertLess(abs(rate1 - 1.0), TOLERANCE,
                        "a 1 MiB/s limiter should hold dd to 1 MiB/s +-10%%, got %.3f" % rate1)

        self.call(api, "PATCH", "/drives/data", {"drive_id": "data",
                                                 "rate_limiter": bucket(2 * MIB)})
        cfg = self.call(api, "GET", "/vm/config", want=200)
        self.assertEqual(cfg["drives"][0]["rate_limiter"]["bandwidth"]["size"], 2 * MIB // 8)
        rate2 = self.dd_rate(vsock, 16, skip_mib=8)
        harness.log("after PATCH to 2 MiB/s: dd read at %.3f MiB/s" % rate2)
        # The limit holds from above to 10 %. From below, only "clearly past the old 1 MiB/s":
        # at 2 MiB/s the TCG guest's own dd time is a fifth of the budget (it reads 7 MiB/s
        # unthrottled), so a loaded test host would fail a 10 % floor that the limiter meets.
        self.assertLess(rate2, 2.0 * (1 + TOLERANCE),
                        "after PATCH to 2 MiB/s dd should read at most 2.2 MiB/s, got %.3f" % rate2)
        self.assertGreater(rate2, 1.5, "the PATCH to 2 MiB/s did not take effect: dd read at "
                           "%.3f MiB/s (the old limit was 1 MiB/s)" % rate2)
        reply = self.call(api, "PATCH", "/drives/data",
                          {"drive_id": "data", "rate_limiter": {"ops": {"size": 1}}}, want=400)
        self.assertIn("refill_time", reply["fault_message"])

        # Pause and resume in the middle of a throttled dd: it finishes with every block read.
        result = {}

        def run():
            try:
                result["rate"] = self.dd_rate(vsock, 4, skip_mib=24)
            except Exception as e:  # reported below, in the test's thread
                result["error"] = e
        t = threading.Thread(target=run)
        t.start()
        time.sleep(1.0)
        self.call(api, "PATCH", "/vm", {"state": "Paused"})
        time.sleep(1.0)
        self.call(api, "PATCH", "/vm", {"state": "Resumed"})
        t.join(harness.scaled(120))
        self.assertFalse(t.is_alive(), "dd did not finish after the pause")
        self.assertNotIn("error", result, result.get("error"))
        harness.log("throttled dd across a pause: %.3f MiB/s" % result["rate"])

        # Entropy: 256 B/s, the bucket holding at most 256. Whatever sizes the guest's driver asks
        # for (and the kernel's own hwrng thread takes its share too), 1 KiB cannot come faster
        # than (1024 - 256 - 128) / 256 = 2.5 s: Linux keeps at most 64 bytes in the virtio-rng
        # driver and 64 in the hw_random core from before dd starts.
        out = U.guest_sh(vsock, "cat /sys/class/misc/hw_random/rng_current; "
                         "a=$(cut -d' ' -f1 /proc/uptime); "
                         "dd if=/dev/hwrng of=/dev/null bs=64 count=16 2>&1; "
                         "b=$(cut -d' ' -f1 /proc/uptime); echo \"uptime $a $b\"", timeout=120)
        self.assertIn("virtio_rng", out, "the guest's hwrng is not virtio-rng: %r" % out)
        self.assertIn("16+0 records in", out, out)
        m = re.search(r"uptime ([0-9.]+) ([0-9.]+)", out)
        seconds = float(m.group(2)) - float(m.group(1))
        harness.log("1 KiB of /dev/hwrng at 256 B/s took %.2f s" % seconds)
        self.assertGreaterEqual(seconds, 2.4, "the entropy limiter did not hold: %r" % out)
        self.assertTrue(vm.alive(), "amber should still run\n%s" % vm.tail())
