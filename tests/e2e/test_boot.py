"""Boot the stock Debian cloud kernel under amber: bzImage and PVH vmlinux, 1 and 4 vCPUs, 5 GiB, power-off and reboot.

Three guest boots in all; each checks several things at once (vCPU count, memory, boot path, exit):
  - bzImage, 1 vCPU, --mem-mib 5120: nproc 1, MemTotal close to 5 GiB, ends in power-off;
  - PVH vmlinux, 4 vCPUs: nproc 4, ends in power-off;
  - bzImage, 2 vCPUs: nproc 2, the CPU flags amber sets (hypervisor, x2apic, and the
    TSC-deadline timer where KVM has it), ends in reboot.
Bad command-line input is checked without a guest: exit status 2 and one clear line on stderr.
"""
import fcntl
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

KVM_CHECK_EXTENSION = 0xAE03  # _IO(KVMIO, 0x03)
KVM_CAP_TSC_DEADLINE_TIMER = 72


def kvm_has_cap(cap):
    """Whether this host's /dev/kvm reports capability cap (KVM_CHECK_EXTENSION > 0)."""
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(fd, KVM_CHECK_EXTENSION, cap) > 0
    finally:
        os.close(fd)


POWEROFF_LINE = "amber: info: exit: guest powered off"
REBOOT_LINE = re.compile(r"^amber: info: exit: guest rebooted\b")


class TestBoot(harness.AmberTestCase):
    """Boots with each kernel format and CPU count. A guest triple fault fails the test, in the test
    host too (docs/testing.md says what evidence alone lets a test run again)."""

    def boot(self, kernel, vcpus, mem_mib, actions):
        """Boots the initramfs with amber.test=actions; returns the Vm once the ready marker is seen."""
        harness.log("boot %s, %d vCPU, %d MiB, amber.test=%s"
                    % (os.path.basename(kernel), vcpus, mem_mib, actions))
        vm = self.amber(kernel=kernel, initrd=True, vcpus=vcpus, mem_mib=mem_mib,
                        cmdline_extra="amber.test=" + actions)
        vm.wait_for(harness.READY)
        return vm

    def check_nproc(self, vm, want):
        m = vm.wait_for(r"^amber-nproc: (\d+)$", timeout=30)
        self.assertEqual(int(m.group(1)), want,
                         "the guest sees %s CPUs with --vcpus %d\n%s" % (m.group(1), want, vm.tail()))

    def check_exit(self, vm, want_line, what):
        """amber must exit 0 and say why on stderr, in exactly one exit line."""
        rc = vm.wait_exit()
        self.assertEqual(rc, 0, "amber exited %s after the guest %s\n%s" % (rc, what, vm.tail()))
        exits = [l for l in vm.stderr_lines if l.startswith("amber: ") and ": exit: " in l]
        self.assertEqual(len(exits), 1, "want one exit reason line on stderr, got %r\n%s"
                         % (exits, vm.tail()))
        ok = want_line.match(exits[0]) if hasattr(want_line, "match") else exits[0] == want_line
        self.assertTrue(ok, "exit line %r does not say the guest %s\n%s" % (exits[0], what, vm.tail()))
        harness.log("%s: exit 0 after %.1f s" % (what, vm.elapsed_s()))

    @harness.long_tier('5 GiB of RAM: the 2- and 4-vCPU boots run')
    def test_bzimage_1vcpu_5gib_poweroff(self):
        vm = self.boot(harness.VMLINUZ, 1, 5120, "nproc,meminfo,poweroff")
        self.check_nproc(vm, 1)
        m = vm.wait_for(r"^amber-memtotal-kb: (\d+)$", timeout=30)
        total_kib = int(m.group(1))
        # MemTotal excludes the kernel image and early reservations: 4.8 GiB is a generous floor,
        # and anything above 4 GiB proves RAM past the 32-bit MMIO gap is used.
        floor_kib = int(4.8 * 1024 * 1024)
        self.assertGreater(total_kib, floor_kib, "MemTotal %d KiB with --mem-mib 5120 (want > %d)\n%s"
                           % (total_kib, floor_kib, vm.tail()))
        self.assertLessEqual(total_kib, 5120 * 1024, "MemTotal %d KiB is more than the 5 GiB given\n%s"
                             % (total_kib, vm.tail()))
        self.check_exit(vm, POWEROFF_LINE, "powered off")

    def test_pvh_vmlinux_4vcpus_poweroff(self):
        if not os.path.exists(harness.VMLINUX):
            self.fail("%s is missing: run make guest" % harness.VMLINUX)
        vm = self.boot(harness.VMLINUX, 4, 256, "nproc,poweroff")
        self.check_nproc(vm, 4)
        self.check_exit(vm, POWEROFF_LINE, "powered off")

    def test_bzimage_2vcpus_reboot(self):
        vm = self.boot(harness.VMLINUZ, 2, 256, "nproc,cpuflags,reboot")
        self.check_nproc(vm, 2)
        m = vm.wait_for(r"^amber-cpu-flags: (.*)$", timeout=30)
        flags = m.group(1).split()
        for want in ("hypervisor", "x2apic"):
            self.assertIn(want, flags, "the guest's CPU lacks %r\n%s" % (want, vm.tail()))
        # The TSC-deadline timer is offered exactly when this host's KVM has it.
        self.assertEqual("tsc_deadline_timer" in flags, kvm_has_cap(KVM_CAP_TSC_DEADLINE_TIMER),
                         "tsc_deadline_timer in the guest's flags should follow KVM's capability; "
                         "flags: %s" % " ".join(flags))
        self.check_exit(vm, REBOOT_LINE, "rebooted")


class TestBadInput(harness.AmberTestCase):
    """Each bad input ends amber with status 2 and one line on stderr that names the problem."""

    def run_amber(self, args, want_words):
        argv = [harness.AMBER] + args
        try:
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, timeout=harness.scaled(30))
        except subprocess.TimeoutExpired:
            self.fail("amber %s still running after 30 s (it should refuse at once)" % " ".join(args))
        err = res.stderr.decode("utf-8", "replace")
        lines = [l for l in err.splitlines() if l.strip()]
        why = "amber %s: status %d, stderr:\n%s\nstdout:\n%s" % (
            " ".join(args), res.returncode, err, res.stdout.decode("utf-8", "replace")[-2000:])
        self.assertEqual(res.returncode, 2, why)
        self.assertEqual(len(lines), 1, "want exactly one line on stderr; " + why)
        for word in want_words:
            self.assertIn(word.lower(), lines[0].lower(), "the message does not name %r; %s" % (word, why))

    def test_missing_kernel(self):
        missing = self.path("no-such-kernel")
        self.run_amber(["--kernel", missing], [missing])

    def test_not_a_kernel(self):
        junk = self.path("junk.bin")
        with open(junk, "wb") as f:
            f.write(b"this is not a kernel\n" * 4096)
        self.run_amber(["--kernel", junk, "--initrd", harness.INITRAMFS], ["junk.bin"])

    def test_vcpus_zero(self):
        self.run_amber(["--kernel", harness.VMLINUZ, "--vcpus", "0"], ["vcpus"])

    def test_vcpus_33(self):
        self.run_amber(["--kernel", harness.VMLINUZ, "--vcpus", "33"], ["vcpus"])

    def test_memory_the_host_cannot_give(self):
        # 1 TiB - 1 MiB: within the flag's range, far beyond the test host's RAM.
        self.run_amber(["--kernel", harness.VMLINUZ, "--initrd", harness.INITRAMFS,
                        "--mem-mib", str(1024 * 1024 - 1), "--console", "none"],
                       ["memory", str(1024 * 1024 - 1)])


if __name__ == "__main__":
    unittest.main()
