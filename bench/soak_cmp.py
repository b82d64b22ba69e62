#!/usr/bin/env python3
"""Pause/resume soak under load, amber next to QEMU microvm: does the guest come through?

usage: bench/soak_cmp.py [amber] [qemu]   (in the test host: scripts/testhost.sh -- python3 bench/soak_cmp.py)
Each VMM boots a 2-vCPU guest on a copy of rootfs.ext4. A guest loop writes files with
`dd conv=fsync`, 16 MiB agent exec streams run back to back over vsock, and the VM is paused
and resumed $AMBER_SOAK_CYCLES times (default 1000) at random intervals. Prints one line per
VMM: cycles done, MiB streamed, and the first error, if any. A check, not a benchmark table.
"""
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import vms  # noqa: E402
from lib import harness  # noqa: E402

WRITER = ("mkdir -p /load; setsid sh -c 'i=0; while :; do dd if=/dev/urandom of=/load/f$((i%20)) "
          "bs=4096 count=16 conv=fsync 2>/dev/null; i=$((i+1)); done' </dev/null >/dev/null 2>&1 &")


def soak(session, kind, cycles):
    """Runs the soak against one VMM; returns its report line."""
    root = session.path("%s-root.ext4" % kind)
    os.system("cp --sparse=always %s %s" % (harness.ROOTFS, root))
    vm = vms.GuestVm(session, kind, vcpus=2, drive=root, vsock=True, control=True,
                     cmdline=lib.CMDLINE + " root=/dev/vda").start()
    try:
        vm.wait_ready()
        vm.wait_agent()
        vm.sh(WRITER)
        stop, streamed, errors = threading.Event(), [0], []

        def streamer():
            while not stop.is_set():
                try:
                    n, _, _ = vms.stream_exec_count(vm, ["dd", "if=/dev/zero", "bs=64k", "count=256"], timeout_s=60)
                    streamed[0] += n
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append("stream: %s" % e)
                    return

        t = threading.Thread(target=streamer, daemon=True)
        t.start()
        rng = random.Random(1)
        t0, done = time.monotonic(), 0
        for i in range(cycles):
            try:
                vm.pause()
                time.sleep(rng.uniform(0, 0.05))
                vm.resume()
                time.sleep(rng.uniform(0, 0.15))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append("cycle %d: %s" % (i, e))
                break
            if vm.vm.proc.poll() is not None:
                errors.append("cycle %d: the VMM exited with %s" % (i, vm.vm.proc.returncode))
                break
            done = i + 1
        stop.set()
        t.join(90)
        return "%s: %d of %d cycles in %.0f s, %d MiB streamed, %s" % (
            kind, done, cycles, time.monotonic() - t0, streamed[0] >> 20,
            "first error: %s" % errors[0] if errors else "no error")
    finally:
        vm.stop()


def main():
    cycles = int(os.environ.get("AMBER_SOAK_CYCLES", "1000"))
    session = harness.Session("soak-cmp")
    try:
        for kind in sys.argv[1:] or ["amber", "qemu"]:
            if kind not in ("amber", "qemu"):
                sys.exit("soak_cmp.py: unknown VMM %r (amber or qemu)" % kind)
            print(soak(session, kind, cycles), flush=True)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
