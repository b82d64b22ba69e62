"""e2e: hostile tiny guests attack amber's virtio-mmio devices, legacy ports and memory map.

build/guests/evil (tests/guests/evil*.c) runs every attack case in turn ("evil=all" on its
command line; "evil=NAME" picks one) against a VM with a drive, --entropy and a vsock device,
once under build/amber (seccomp on) and once under the ASan+UBSan build build/san/amber
(`make SAN=address,undefined`, run with --seccomp=off because LeakSanitizer's exit check needs
ptrace). amber must survive every attack: the guest reaches "evil: done", after each case the
rng and blk devices still answer well-formed requests, the guest's power-off ends amber with
status 0, warnings stay rate-limited, and no sanitizer report appears. The ASan build also boots
the Linux initramfs once to the ready marker and powers off. "evil=triple" makes the guest
triple-fault on purpose, and amber must end with status 0 (a guest reset) and report where.
"""
import os
import re
import subprocess
import unittest

try:
    from . import harness  # python3 -m unittest tests.e2e.test_evil
except ImportError:
    import harness  # run_tests.py puts tests/e2e on sys.path

EVIL = os.path.join(harness.BUILD, "guests", "evil")
SAN_AMBER = os.path.join(harness.BUILD, "san", "amber")
CASES = ("regs", "random", "queue_edge", "chains", "notify", "status", "unmapped", "legacy",
         "reset_storm", "random2")
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86:strict_string_checks=1:"
                    "detect_stack_use_after_return=1:check_initialization_order=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
    "LSAN_OPTIONS": "exitcode=88",
}
SAN_REPORT = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:")
# Log lines per case a hostile guest may cause (warnings are rate-limited): far beyond is a flood.
MAX_STDERR_LINES_PER_CASE = 60


class EvilGuests(harness.AmberTestCase):
    """All cases in one VM per amber build ("evil=all"): few VM launches keep the test host
    quick. Set AMBER_EVIL_CASES="regs chains ..." to run cases one VM each instead."""

    @classmethod
    def setUpClass(cls):
        for path, hint in ((EVIL, "make build/guests/evil"), (harness.AMBER, "make")):
            if not os.access(path, os.R_OK):
                raise unittest.SkipTest("%s is missing: %s" % (path, hint))

    def run_evil(self, label, binary, extra, case, seed=1):
        cases = CASES if case == "all" else (case,)
        disk = self.path("%s-%s.img" % (label, case))
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        argv = harness.amber_argv(kernel=EVIL, cmdline="evil=%s seed=%d" % (case, seed),
                                  mem_mib=64, drives=[{"path": disk}],
                                  vsock=(3, self.path("%s-%s.vsock" % (label, case))),
                                  extra=["--entropy"] + extra, binary=binary)
        vm = self.start(argv, env=dict(os.environ, **SAN_ENV))
        vm.wait_for(harness.READY, timeout=60)
        vm.wait_for(r"^evil: done$", timeout=60 + 60 * len(cases))
        rc = vm.wait_exit(timeout=30)
        out, err = vm.output(), "\n".join(vm.stderr_lines)
        report = "%s/%s\n%s" % (label, case, vm.tail(30))
        self.assertIsNone(SAN_REPORT.search(err), "sanitizer report: " + report)
        self.assertEqual(rc, 0, "amber did not end cleanly: " + report)
        self.assertIn("guest powered off", err, report)
        self.assertEqual(len(re.findall(r"^evil: device ", out, re.M)), 3,
                         "the guest did not find blk, rng and vsock: " + report)
        self.assertEqual(re.findall(r"^evil: case (\S+)$", out, re.M), list(cases), report)
        self.assertNotIn("FAILED", out, report)
        for dev in ("rng", "blk"):
            self.assertEqual(out.count("evil: sanity %s ok" % dev), len(cases),
                             "%s stopped serving after an attack: %s" % (dev, report))
        self.assertLess(len(vm.stderr_lines), MAX_STDERR_LINES_PER_CASE * len(cases) + 20,
                        "log flood: " + report)
        stats = [l[6:] for l in vm.lines if l.startswith("evil: ") and "device" not in l
                 and "sanity" not in l]
        harness.log("%s/%s: ok in %.1f s, %d log lines; %s" % (
            label, case, vm.elapsed_s(), len(vm.stderr_lines), "; ".join(stats)))

    def selected(self):
        names = os.environ.get("AMBER_EVIL_CASES", "").split()
        return names or ["all"]

    def test_evil_plain(self):
        """Every case against build/amber with its seccomp filters on."""
        for case in self.selected():
            with self.subTest(case=case):
                self.run_evil("plain", harness.AMBER, [], case)

    @harness.long_tier('the sanitizer build of the evil guests: test_evil_plain runs the same guests')
    def test_evil_asan(self):
        """Every case against the ASan+UBSan build (LeakSanitizer needs ptrace: seccomp off)."""
        if not os.access(SAN_AMBER, os.X_OK):
            self.skipTest("%s is missing: make SAN=address,undefined build/san/amber" % SAN_AMBER)
        for case in self.selected():
            with self.subTest(case=case):
                self.run_evil("asan", SAN_AMBER, ["--seccomp=off"], case, seed=2)


class TripleFault(harness.AmberTestCase):
    """A guest that triple-faults ends amber with status 0, and amber logs the vCPU's state."""

    def test_triple_fault_reported(self):
        if not os.access(EVIL, os.R_OK):
            self.skipTest("%s is missing: make build/guests/evil" % EVIL)
        syms = subprocess.run(["nm", EVIL], capture_output=True, text=True, check=True).stdout
        fault_rip = int(re.search(r"^([0-9a-f]+) T evil_fault_rip$", syms, re.M).group(1), 16)
        vm = self.start(harness.amber_argv(kernel=EVIL, cmdline="evil=triple", mem_mib=64))
        vm.wait_for(r"^evil: triple fault$", timeout=60)
        rc = vm.wait_exit(timeout=30)
        err = "\n".join(vm.stderr_lines)
        self.assertEqual(rc, 0, "a guest reset ends amber with status 0: " + vm.tail(20))
        self.assertIn("guest reset (triple fault on vcpu0)", err, vm.tail(20))
        m = re.search(r"vcpu0: triple fault at rip (0x[0-9a-f]+) ", err)
        if m:  # Intel: the state at the fault
            self.assertEqual(int(m.group(1), 16), fault_rip, vm.tail(20))
            self.assertRegex(err, r"idt 0/0 ", "the guest's empty IDT: " + vm.tail(20))
        else:  # AMD: KVM reset the vCPU first
            self.assertIn("vcpu0: triple fault; KVM reset the vCPU before reporting it (AMD)",
                          err, vm.tail(20))


class SanitizerLinuxBoot(harness.AmberTestCase):
    """The ASan+UBSan amber boots the Linux initramfs with blk, rng and vsock, then powers off."""

    def test_san_linux_boot(self):
        if not os.access(SAN_AMBER, os.X_OK):
            self.skipTest("%s is missing: make SAN=address,undefined build/san/amber" % SAN_AMBER)
        if not os.access(harness.INITRAMFS, os.R_OK):
            self.skipTest("%s is missing: make guest" % harness.INITRAMFS)
        disk = self.path("data.img")
        with open(disk, "wb") as f:
            f.truncate(8 << 20)
        vm = self.amber(initrd=True, cmdline_extra="amber.test=poweroff", mem_mib=256,
                        drives=[{"path": disk}], vsock=(3, self.path("v.sock")),
                        extra=["--entropy", "--seccomp=off"], binary=SAN_AMBER,
                        env=dict(os.environ, **SAN_ENV))
        vm.wait_for(harness.READY, timeout=180)
        rc = vm.wait_exit(timeout=120)
        err = "\n".join(vm.stderr_lines)
        self.assertIsNone(SAN_REPORT.search(err), "sanitizer report:\n" + vm.tail())
        self.assertEqual(rc, 0, vm.tail())
        self.assertIn("guest powered off", err, vm.tail())
        harness.log("asan linux boot: ready and off in %.1f s" % vm.elapsed_s())


if __name__ == "__main__":
    unittest.main()
