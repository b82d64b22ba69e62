"""e2e: hostile tiny guests attack amber's virtio-mmio devices, legacy ports and memory map.

Every case of build/guests/evil (tests/guests/evil*.c; the case is picked by "evil=NAME" on the
command line) runs against a VM with a drive, --entropy and a vsock device, under build/amber
(seccomp on) and under the ASan+UBSan build build/san/amber (`make SAN=address,undefined`, run with
--seccomp=off because LeakSanitizer's exit check needs ptrace). amber must survive each attack:
the guest reaches "evil: done", the rng and blk devices still answer well-formed requests, the
guest's power-off ends amber with status 0, and no sanitizer report appears. The ASan build also
boots the Linux initramfs once to the ready marker and powers off.
"""
import os
import re
import unittest

try:
    from . import harness  # python3 -m unittest tests.e2e.test_evil
except ImportError:
    import harness  # run_tests.py puts tests/e2e on sys.path

EVIL = os.path.join(harness.BUILD, "guests", "evil")
SAN_AMBER = os.path.join(harness.BUILD, "san", "amber")
CASES = ("regs", "random", "queue_edge", "chains", "notify", "status", "unmapped", "legacy",
         "reset_storm")
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86:strict_string_checks=1:"
                    "detect_stack_use_after_return=1:check_initialization_order=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
    "LSAN_OPTIONS": "exitcode=88",
}
SAN_REPORT = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:")
# Lines a hostile guest may cause in amber's log, per run: anything far beyond is a log flood.
MAX_STDERR_LINES = 400


def binaries():
    out = [("plain", harness.AMBER, [])]
    if os.access(SAN_AMBER, os.X_OK):
        out.append(("asan", SAN_AMBER, ["--seccomp=off"]))
    return out


class EvilGuests(harness.AmberTestCase):
    @classmethod
    def setUpClass(cls):
        for path, hint in ((EVIL, "make build/guests/evil"), (harness.AMBER, "make")):
            if not os.access(path, os.R_OK):
                raise unittest.SkipTest("%s is missing: %s" % (path, hint))
        if not os.access(SAN_AMBER, os.X_OK):
            harness.log("%s is missing (make SAN=address,undefined build/san/amber): "
                        "evil guests run under build/amber only" % SAN_AMBER)

    def run_case(self, name, binary, extra, case, seed=1):
        disk = self.path("%s-%s.img" % (name, case))
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        argv = harness.amber_argv(kernel=EVIL, cmdline="evil=%s seed=%d" % (case, seed),
                                  mem_mib=64, drives=[{"path": disk}],
                                  vsock=(3, self.path("%s-%s.vsock" % (name, case))),
                                  extra=["--entropy"] + extra, binary=binary)
        env = dict(os.environ, **SAN_ENV)
        vm = self.start(argv, env=env)
        vm.wait_for(harness.READY, timeout=30)
        vm.wait_for(r"^evil: done$", timeout=240)
        rc = vm.wait_exit(timeout=30)
        out, err = vm.output(), "\n".join(vm.stderr_lines)
        report = "%s/%s\n%s" % (name, case, vm.tail(30))
        self.assertIsNone(SAN_REPORT.search(err), "sanitizer report: " + report)
        self.assertEqual(rc, 0, "amber did not end cleanly: " + report)
        self.assertIn("guest powered off", err, report)
        self.assertEqual(len(re.findall(r"^evil: device ", out, re.M)), 3,
                         "the guest did not find blk, rng and vsock: " + report)
        self.assertIn("evil: sanity rng ok", out, report)
        self.assertIn("evil: sanity blk ok", out, report)
        self.assertLess(len(vm.stderr_lines), MAX_STDERR_LINES, "log flood: " + report)
        harness.log("%s/%s: ok in %.1f s, %d log lines (%s)" % (
            name, case, vm.elapsed_s(), len(vm.stderr_lines),
            " ".join(l[6:] for l in vm.lines if l.startswith("evil: ") and "device" not in l)))

    def check(self, case, seed=1):
        for name, binary, extra in binaries():
            with self.subTest(amber=name):
                self.run_case(name, binary, extra, case, seed)


def _make(case):
    def test(self):
        self.check(case)
    test.__doc__ = "evil guest case %s: amber survives, devices still work" % case
    return test


for _case in CASES:
    setattr(EvilGuests, "test_%s" % _case, _make(_case))


def _random_more_seeds(self):
    """More seeds for the random case, under the ASan build when it is there."""
    name, binary, extra = binaries()[-1]
    for seed in (2, 3, 4):
        with self.subTest(seed=seed):
            self.run_case(name, binary, extra, "random", seed)


EvilGuests.test_random_more_seeds = _random_more_seeds


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
