"""e2e: a vm_start that fails part-way stops the vCPUs it already started (issue 17).

build/test-hooks/amber with --id vcpu-start-fail-1 cannot start vCPU 1's thread, after vCPU 0
already runs the guest. amber must exit with the error, promptly: teardown kicks and joins
vCPU 0. Before the fix, vm_destroy joined vCPU 0 without stopping it and never returned.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TEST_HOOKS_AMBER = os.path.join(harness.BUILD, "test-hooks", "amber")


def needs_kvm(test):
    ok = os.access("/dev/kvm", os.R_OK | os.W_OK)
    return unittest.skipUnless(ok, "needs /dev/kvm (run in the test host)")(test)


@needs_kvm
class TestVcpuStartFails(harness.AmberTestCase):

    def test_second_vcpu_fails_to_start(self):
        if not os.access(TEST_HOOKS_AMBER, os.X_OK):
            self.fail("%s is missing: make build/test-hooks/amber" % TEST_HOOKS_AMBER)
        argv = harness.amber_argv(initrd=harness.INITRAMFS, vcpus=2, mem_mib=256,
                                  cmdline=harness.DEFAULT_CMDLINE + " rdinit=/usr/bin/yes",
                                  binary=TEST_HOOKS_AMBER, extra=["--id", "vcpu-start-fail-1"])
        vm = self.start(argv)
        status = vm.wait_exit(timeout=30)
        stderr = "\n".join(vm.stderr_lines)
        self.assertNotEqual(status, 0, "amber should fail when a vCPU cannot start\n" + stderr)
        self.assertGreater(status, 0, "amber was killed (%d) instead of exiting\n%s"
                           % (status, stderr))
        self.assertIn("cannot start vcpu1 thread", stderr)


if __name__ == "__main__":
    unittest.main()
