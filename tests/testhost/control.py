"""The QEMU-microvm control guest: a second opinion on guest faults in the test host.

Nested SVM under TCG sometimes kills or wedges a nested guest whatever its VMM does. So while the
e2e suite runs in the test host, a QEMU `-M microvm` guest runs alongside it on the same nested
KVM: the same kernel (build/guest/vmlinuz) and a copy of the same rootfs, two vCPUs, with a load
of the kinds the tests put on amber's guests (block writes with fsync, hashing, timer sleeps, and a
power-off and fresh boot every CYCLE_TICKS ticks). A watcher thread records its faults, each with
the time it was seen:
- "a guest triple fault": QEMU (-no-reboot) ended on a guest reset: no power-off of the load and
  no panic on its console before it;
- "a guest kernel panic": the same, with "Kernel panic" on its console;
- "a guest soft lockup": "BUG: soft lockup" on its console (once a boot: the kernel repeats it
  every few seconds while the lockup lasts);
- "an exit livelock": its tick stopped for STALL_S and KVM's counters (kvm_sample) show the vCPUs
  exiting without halting, taking interrupts or doing I/O; that guest is then killed.
A guest that ends, or shows no tick for WEDGED_S, is booted again (a wedged guest would only eat
the test host's CPU), so the run is covered to its end. The runner
(tests/testhost/e2e.py) retries a test whose guest showed a fault only when this guest showed the
same kind of fault in the same run (evidence()). Its console goes to
$AMBER_E2E_LOGDIR/control/control-guest.log (a subfolder: amber's *.log files are scanned for
faults, the control guest's must not count as amber's).
"""
import os
import threading
import time

import harness

CYCLE_TICKS = 60  # about 3 minutes a boot under nested TCG
STALL_S = 40.0
WEDGED_S = 180.0
LOAD = """#!/bin/sh
# The control guest's load: block writes with fsync, hashing, sleeps; then power-off.
i=0
while [ $i -lt %d ]; do
    i=$((i + 1))
    dd if=/dev/urandom of=/tmp/c bs=64k count=4 2>/dev/null
    dd if=/tmp/c of=/control.dat bs=64k conv=fsync 2>/dev/null
    sha256sum /control.dat >/dev/null
    echo "control: tick $i"
    sleep 2
done
echo "control: cycle done"
""" % CYCLE_TICKS


class ControlGuest:
    """Runs the control guest until stop(); faults() and evidence() say what it showed."""

    def __init__(self, log_dir, kvm_sample=None):
        self.session = harness.Session("control-guest", os.path.join(log_dir, "control"))
        self.kvm_sample = kvm_sample  # callable(vm) -> (line, livelocked), or None
        self.events = []  # (time.time(), label, detail)
        self.boots = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = None
        self.vm = None
        self.started_at = time.time()

    def argv(self, image):
        return ["qemu-system-x86_64", "-M", "microvm,acpi=on", "-enable-kvm", "-cpu", "host", "-m", "128",
                "-smp", "2", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
                "-kernel", harness.VMLINUZ, "-initrd", harness.INITRAMFS,
                "-drive", "id=root,file=%s,format=raw,if=none,cache=writeback,aio=threads" % image,
                "-device", "virtio-blk-device,drive=root",
                "-append", harness.DEFAULT_CMDLINE + " root=/dev/vda rw"]

    def start(self):
        image = self.session.rootfs_copy("control.ext4", files={"/amber-run.sh": LOAD})
        self.thread = threading.Thread(target=self._watch, args=(self.argv(image),), daemon=True)
        self.thread.start()
        return self

    def _boot(self, argv):
        self.vm = self.session.start(argv)
        self.boots += 1
        with harness._LIVE_LOCK:  # not a test's VM: the per-test watchdog's reports skip it
            harness.LIVE.discard(self.vm)
        return self.vm, time.monotonic()

    def _note(self, label, detail):
        with self.lock:
            self.events.append((time.time(), label, detail))
        self.session.vms[-1]._log.write("[control] FAULT %s: %s\n" % (label, detail))
        print("e2e: the QEMU control guest showed %s: %s" % (label, detail), flush=True)

    def _watch(self, argv):
        vm, last_tick = self._boot(argv)
        seen = failed_starts = 0
        locked, last_sample = False, last_tick
        while not self.stopping.wait(2.0):
            lines = vm.lines[seen:]
            seen += len(lines)
            if any("control: tick" in line or harness.READY.strip("^$") in line for line in lines):
                last_tick = time.monotonic()
            for line in lines:
                if "BUG: soft lockup" in line and not locked:
                    locked = True
                    self._note("a guest soft lockup", line.strip()[:200])
            if not vm.alive():
                rc = vm.wait_exit(5)
                text = vm.output()
                failed_starts = 0 if "control: tick" in text else failed_starts + 1
                if rc != 0 and failed_starts >= 3:
                    print("e2e: the QEMU control guest failed to start 3 times (status %s); giving up:\n%s"
                          % (rc, vm.tail(10)), flush=True)
                    vm.kill()
                    return
                if rc == 0 and "control: cycle done" not in text:
                    if "Kernel panic" in text:
                        self._note("a guest kernel panic", "QEMU ended on a guest reset after a panic")
                    else:
                        self._note("a guest triple fault",
                                   "QEMU ended on a guest reset (boot %d) with no power-off and no panic "
                                   "on its console" % self.boots)
                vm.kill()
                vm, last_tick = self._boot(argv)
                seen, locked, last_sample = 0, False, last_tick
            elif time.monotonic() - last_tick > harness.scaled(WEDGED_S):
                self._note("a wedged guest", "no tick for %.0f s (boot %d); booting a fresh one"
                           % (harness.scaled(WEDGED_S), self.boots))
                vm.kill()
                vm, last_tick = self._boot(argv)
                seen, locked, last_sample = 0, False, last_tick
            elif time.monotonic() - max(last_tick, last_sample) > harness.scaled(STALL_S) and self.kvm_sample:
                line, stuck = self.kvm_sample(vm)
                last_sample = time.monotonic()  # sample a stalled guest once per STALL_S
                if stuck:
                    self._note("an exit livelock", line.replace("\n", " "))
                    vm.kill()
                    vm, last_tick = self._boot(argv)
                    seen, locked, last_sample = 0, False, last_tick

    def faults(self):
        with self.lock:
            return list(self.events)

    def evidence(self, labels, t0, t1):
        """The evidence line for a test that failed between t0 and t1 (epoch seconds) with these
        fault labels: the control guest's first fault of one of those kinds in this run (one in
        [t0, t1] first), or None when it showed none of them."""
        same = [e for e in self.faults() if e[1] in labels]
        if not same:
            return None
        during = [e for e in same if t0 - 5 <= e[0] <= t1 + 5]
        when, label, detail = (during or same)[0]
        return ("the QEMU control guest showed %s too, %s (%.0f s into the run; %s)"
                % (label, "during the failing test" if during else "in this run, not during the test",
                   when - self.started_at, detail))

    def stop(self):
        """Stops the watcher and the guest; returns a summary line."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(10)
        self.session.close()
        n = len(self.faults())
        return "e2e: the QEMU control guest booted %d time(s) in %.0f s and showed %d fault(s)%s" % (
            self.boots, time.time() - self.started_at, n,
            ": " + "; ".join(e[1] for e in self.faults()) if n else "")
