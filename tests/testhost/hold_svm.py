#!/usr/bin/python3
"""Test host only: keeps one idle KVM VM open for the test host's lifetime, so that its KVM never
switches SVM off and on again between two sandboxes (docs/testing.md, "SVM switched off and on").

usage: hold_svm.py            hold a VM until killed (tests/testhost/init.sh starts it)
       hold_svm.py toggle N   create and close N VMs, each with one vCPU, and say how far it got:
                              the experiment that found the hang
"""
import fcntl
import os
import signal
import sys
import time

KVM_CREATE_VM = 0xAE01
KVM_CREATE_VCPU = 0xAE41


def create_vm():
    """Opens /dev/kvm and creates a VM; returns (kvm fd, vm fd). On Linux up to 6.11, the first VM
    alive makes KVM switch SVM on in every CPU, and closing the last one switches it off."""
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    return kvm, fcntl.ioctl(kvm, KVM_CREATE_VM, 0)


def toggle(count):
    """Creates and closes count VMs, one vCPU each, saying every fifth how far it got: without a
    VM held open elsewhere, each one makes KVM switch SVM on and off."""
    t0 = time.monotonic()
    for i in range(count):
        kvm, vm = create_vm()
        os.close(fcntl.ioctl(vm, KVM_CREATE_VCPU, 0))
        os.close(vm)
        os.close(kvm)
        if i % 5 == 4:
            print("hold_svm: %d VMs created and closed in %.1f s" % (i + 1, time.monotonic() - t0), flush=True)
    print("hold_svm: done", flush=True)


def main(argv):
    """Holds a VM (no arguments) until killed, or runs toggle; returns the exit status."""
    if argv[1:2] == ["toggle"] and len(argv) == 3 and argv[2].isdigit():
        toggle(int(argv[2]))
        return 0
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        create_vm()  # its two fds stay open until this process ends
    except OSError as e:
        print("hold_svm: cannot hold a VM open: %s" % e, file=sys.stderr)
        return 1
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
