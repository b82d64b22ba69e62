"""e2e: the VM generation ID (issue 16, docs/vmgenid.md): every restore reseeds the guest's RNG.

A guest on Debian's generic kernel (build/guest/generic/: the cloud kernel has no
CONFIG_VMGENID) binds the vmgenid and GED drivers to amber's ACPI devices. It is snapshotted
and resumed, and the snapshot is restored twice: each child must log the kernel's "crng
reseeded due to virtual machine fork", see its own generation ID (read through /dev/mem), and
give /dev/urandom bytes and a random uuid that differ from its sibling's and from the parent's
next reads. Without the device the three would share one RNG state.
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import util_amber as U  # noqa: E402

GENERIC = os.path.join(harness.GUEST, "generic")
KERNEL = os.path.join(GENERIC, "vmlinuz")
INITRD = os.path.join(GENERIC, "initramfs.cpio.gz")
MEM_MIB = 256
VMGENID_GPA = 0xFF000  # LAYOUT_VMGENID
RESEED = "crng reseeded due to virtual machine fork"

# One line per fact: the generation ID (two 64-bit reads of the reserved page), 32 bytes of
# /dev/urandom, a random uuid, and how many vmfork reseeds the kernel logged.
PROBE = ("echo id=$(devmem 0x%X 64)$(devmem 0x%X 64); "
         "echo rand=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'); "
         "echo uuid=$(cat /proc/sys/kernel/random/uuid); "
         "echo reseeds=$(dmesg | grep -c '%s')" % (VMGENID_GPA, VMGENID_GPA + 8, RESEED))


def probe(vsock):
    out = U.guest_sh(vsock, PROBE)
    facts = dict(re.findall(r"^(\w+)=(.*)$", out, re.M))
    for key in ("id", "rand", "uuid", "reseeds"):
        if not facts.get(key):
            raise AssertionError("probe printed no %s: %r" % (key, out))
    return facts


@harness.long_tier("a second guest kernel (Debian's generic one; the default cloud kernel has no "
                   "CONFIG_VMGENID): test_vmgenid.c and test_acpi.c check the device, its ACPI "
                   "objects and the restore edge")
class TestVmGenId(harness.AmberTestCase):

    def setUp(self):
        super().setUp()
        if not (os.path.exists(KERNEL) and os.path.exists(INITRD)):
            self.skipTest("%s is missing (make guest builds it; it needs Debian's "
                          "linux-image-amd64 package)" % GENERIC)
        U.arm_watchdog(600)
        self.addCleanup(U.disarm_watchdog)

    def call(self, api, method, url, body=None, want=None):
        status, reply = api.call(method, url, body)
        if want is not None:
            self.assertEqual(status, want, "%s %s answered %d %r, expected %d"
                             % (method, url, status, reply, want))
        return status, reply

    def restore(self, name, snap, mem):
        vsock = self.path("vsock-%s.sock" % name)
        api_path = self.path("api-%s.sock" % name)
        vm = self.start(harness.amber_argv(kernel=None, api_sock=api_path))
        U.wait_for_path(api_path, vm=vm)
        api = U.Api(api_path)
        self.addCleanup(api.close)
        self.call(api, "PUT", "/snapshot/load",
                  {"snapshot_path": snap, "mem_backend": {"backend_type": "File",
                                                          "backend_path": mem},
                   "resume_vm": True, "vsock_override": {"uds_path": vsock}}, want=204)
        U.wait_agent(vsock)
        return vm, vsock

    def wait_reseed(self, name, vsock, timeout=30.0):
        """The guest's driver reseeds from a workqueue soon after the restore: wait for its line."""
        deadline = time.monotonic() + harness.scaled(timeout)
        while True:
            n = int(U.guest_sh(vsock, "dmesg | grep -c '%s' || true" % RESEED).strip() or 0)
            if n >= 1:
                return n
            if time.monotonic() > deadline:
                log = U.guest_sh(vsock, "dmesg | grep -iE 'vmgenid|ged|random|ACPI0013|VMGEN' "
                                        "| tail -20 || true")
                self.fail("%s: no '%s' within %.0f s after the restore; kernel log:\n%s"
                          % (name, RESEED, harness.scaled(timeout), log))
            time.sleep(0.5)

    def test_each_restore_reseeds(self):
        vsock = self.path("vsock.sock")
        api_path = self.path("api.sock")
        vm = self.amber(kernel=KERNEL, initrd=INITRD, vcpus=1, mem_mib=MEM_MIB,
                        vsock=(3, vsock), api_sock=api_path)
        vm.wait_for(harness.READY, timeout=180)
        U.wait_agent(vsock)
        api = U.Api(api_path)
        self.addCleanup(api.close)

        # The guest bound its drivers to amber's devices.
        drivers = U.guest_sh(vsock, "for d in /sys/bus/acpi/devices/VMGENCTR:00 "
                                    "/sys/bus/platform/devices/ACPI0013:00; do "
                                    "echo $d=$(basename \"$(readlink $d/driver)\"); done")
        harness.log("drivers: %s" % drivers.replace("\n", " "))
        self.assertIn("VMGENCTR:00=vmgenid", drivers)
        self.assertRegex(drivers, r"ACPI0013:00=\S*ged")
        parent0 = probe(vsock)
        self.assertEqual(parent0["reseeds"], "0", "a cold boot logged a vmfork reseed")
        self.assertNotEqual(parent0["id"], "0x00000000000000000x0000000000000000",
                            "the generation ID page is empty")

        snap, mem = self.path("vm.snap"), self.path("vm.mem")
        self.call(api, "POST", "/pause", want=200)
        self.call(api, "PUT", "/snapshot/create",
                  {"snapshot_path": snap, "mem_file_path": mem, "snapshot_type": "Full"}, want=204)
        self.call(api, "POST", "/resume", want=200)

        _, va = self.restore("a", snap, mem)
        _, vb = self.restore("b", snap, mem)
        for name, v in (("a", va), ("b", vb)):
            self.assertEqual(self.wait_reseed(name, v), 1, "%s reseeded more than once" % name)
        a, b, p = probe(va), probe(vb), probe(vsock)
        for name, f in (("parent", parent0), ("parent after", p), ("a", a), ("b", b)):
            harness.log("%-12s id=%s rand=%s... uuid=%s reseeds=%s"
                        % (name, f["id"], f["rand"][:16], f["uuid"], f["reseeds"]))

        # The parent was resumed, not restored: same ID, no reseed.
        self.assertEqual(p["id"], parent0["id"])
        self.assertEqual(p["reseeds"], "0")
        # Each restore has its own ID, and its RNG is its own.
        self.assertEqual(len({p["id"], a["id"], b["id"]}), 3, "generation IDs repeat")
        for key in ("rand", "uuid"):
            values = [p[key], a[key], b[key]]
            self.assertEqual(len(set(values)), 3, "%s repeats across parent, a, b: %r"
                             % (key, values))


if __name__ == "__main__":
    unittest.main()
