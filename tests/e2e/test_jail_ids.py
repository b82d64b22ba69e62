"""e2e: --uid/--gid without --chroot (issue 17). amber opens /dev/kvm before it drops its ids, so
a user with no access to the device node still boots; /dev/net/tun, which the dropped ids must
open themselves, fails early with an error that says what to do.

Each run happens in a private mount namespace where /dev/kvm (and /dev/net/tun) are bind-mounted
from nodes of mode 0600 owned by root, so uid 65534 cannot open them; nothing outside changes.
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import util_amber as U  # noqa: E402

NOBODY = "65534"
AMBER_BIN = os.environ.get("AMBER_ROUTES_BIN") or harness.AMBER

# $1: a scratch directory for the private nodes; $2: "tun" to lock /dev/net/tun down too;
# the rest: the command. Prints LOCKED once nobody is shown to be unable to open /dev/kvm.
WRAP = r'''
set -e
d=$1; tun=$2; shift 2
mount --make-rprivate /
mount -t tmpfs -o mode=755 none "$d"
lock() { mknod "$d/$2" c $(stat -c '0x%t 0x%T' "$1"); chmod 600 "$d/$2"; mount --bind "$d/$2" "$1"; }
lock /dev/kvm kvm
[ "$tun" = tun ] && lock /dev/net/tun tun
if setpriv --reuid 65534 --regid 65534 --clear-groups sh -c 'exec 3<>/dev/kvm' 2>/dev/null; then
    echo "NOT-LOCKED: uid 65534 can open /dev/kvm"; exit 99
fi
echo LOCKED
exec "$@"
'''


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare") and shutil.which("setpriv"),
                     "needs root, unshare and setpriv")
class TestIdsWithoutChroot(harness.AmberTestCase):
    def setUp(self):
        super().setUp()
        U.arm_watchdog(300)
        self.addCleanup(U.disarm_watchdog)
        if not os.path.exists("/dev/kvm"):
            self.skipTest("no /dev/kvm")
        os.chmod(self.session.dir, 0o755)  # the dropped ids read the kernel from here
        self.kernel = os.path.join(self.session.dir, "vmlinuz")
        self.initrd = os.path.join(self.session.dir, "initramfs.cpio.gz")
        shutil.copy(harness.VMLINUZ, self.kernel)
        shutil.copy(harness.INITRAMFS, self.initrd)
        self.nodes = self.session.path("nodes")
        os.mkdir(self.nodes)

    def start_locked(self, lock_tun, extra=()):
        argv = harness.amber_argv(kernel=self.kernel, initrd=self.initrd, cmdline=harness.DEFAULT_CMDLINE,
                                  mem_mib=128, console="stdio", binary=AMBER_BIN,
                                  extra=["--uid", NOBODY, "--gid", NOBODY] + list(extra))
        wrapped = ["unshare", "-m", "/bin/sh", "-c", WRAP, "sh", self.nodes,
                   "tun" if lock_tun else "-"] + argv
        vm = self.start(wrapped)
        vm.wait_for(r"^(LOCKED|NOT-LOCKED.*)$", timeout=30)
        self.assertNotIn("NOT-LOCKED", vm.output(), "the test could not lock /dev/kvm down")
        return vm

    def test_boots_as_nobody_without_chroot(self):
        vm = self.start_locked(False)
        try:
            vm.wait_for(harness.READY)
        except AssertionError:
            raise AssertionError("amber --uid/--gid without --chroot did not boot with a root-only "
                                 "/dev/kvm\n%s" % vm.tail()) from None
        vm.signal(15)
        self.assertEqual(vm.wait_exit(), 0, vm.tail())

    def test_tun_error_says_what_to_do(self):
        vm = self.start_locked(True, extra=["--net", "tap=tap-amber0"])
        status = vm.wait_exit()
        err = "\n".join(vm.stderr_lines)
        self.assertEqual(status, 2, vm.tail())
        self.assertIn("/dev/net/tun", err)
        self.assertIn("--chroot", err, "the error must say what to do:\n%s" % err)


if __name__ == "__main__":
    unittest.main()
