#!/usr/bin/env python3
"""Pause/resume soak under load, amber next to QEMU microvm: does the guest come through?

usage: bench/soak_cmp.py [--runs N] [--load both|streams|writes|none] [--vcpus N] [--no-pause]
                        [amber] [qemu]
       (in the test host: scripts/testhost.sh -- python3 bench/soak_cmp.py; make soak-cmp)
Each VMM boots a guest (2 vCPUs by default) on a copy of rootfs.ext4. The load, by default both
halves: a guest loop writes files with `dd conv=fsync` ("writes"), and 16 MiB agent exec streams
run back to back over vsock ("streams"). The VM is paused and resumed $AMBER_SOAK_CYCLES times
(default 1000) at random intervals. Runs go N times per VMM, the VMMs taking turns. Prints one
line per run (cycles done, MiB streamed, the first error) and a pass count per VMM.

A run fails at its first error (a stream that stops, errs or closes, a pause or resume refused,
the VMM gone). Its evidence goes to build/test-results/soak-cmp/VMM-LOAD-NvCPU-runN-HHMMSS.txt at
once, while the VM still runs: for both VMMs the exit status if it ended, the guest's
/proc/interrupts and the tail of its kernel log (if the agent still answers) and the console;
for amber also its SIGUSR2 state report (vCPUs with the bytes at RIP, virtqueue indices, vsock
credit counters) with KVM's counters, and the agent's own log ring (tests/e2e/evidence.py).
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
import evidence as e2e_evidence  # noqa: E402  (tests/e2e, on the path through lib)

RESULTS = os.path.join(harness.BUILD, "test-results", "soak-cmp")
WRITER = ("mkdir -p /load; setsid sh -c 'i=0; while :; do dd if=/dev/urandom of=/load/f$((i%20)) "
          "bs=4096 count=16 conv=fsync 2>/dev/null; i=$((i+1)); done' </dev/null >/dev/null 2>&1 &")


def evidence(vm, kind, tag, cycle, errors):
    """Saves what the VMM and the guest show of a failed run (amber's stall reports and agent
    ring; for both VMMs the exit status, the guest's dmesg if its agent answers, and the
    console); returns the file's path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "%s-%s-%s.txt" % (kind, tag, time.strftime("%H%M%S")))
    parts = ["%s %s failed at cycle %d: %s" % (kind, tag, cycle, "; ".join(errors))]
    if vm.vm.proc.poll() is not None:
        parts.append("%s exited with status %s" % (kind, vm.vm.proc.returncode))
    # Two reports 2 s apart: the per-vCPU KVM counters' growth tells a vCPU that loops in
    # exits (emulated instructions, no interrupts) from one that halts or runs. QEMU has no
    # such report (SIGUSR2 is not one of its signals): its console and exit status say what
    # they can (with -no-reboot, a guest triple fault ends QEMU).
    for n in (1, 2) if kind == "amber" else ():
        try:
            parts.append(vm.vm.state_report().replace("amber state (SIGUSR2)",
                                                      "amber state (SIGUSR2), report %d" % n))
        except Exception as e:  # noqa: BLE001 - evidence is best effort
            parts.append("state report failed: %s" % e)
        if n == 1:
            time.sleep(2)
    # The agent's ring first: it answers on its own port even when the command port does not.
    if kind == "amber":
        parts.append(e2e_evidence.agent_log_section(vm.vm))
    try:
        r = vm.agent().exec("cat /proc/interrupts; dmesg | tail -n 60", timeout=15.0)
        parts.append("--- guest: /proc/interrupts, dmesg ---\n%s" % r.stdout)
    except Exception as e:  # noqa: BLE001
        parts.append("--- guest: the agent did not answer (%s) ---" % e)
    parts.append(vm.vm.tail(80))
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")
    return path


def clock_offset(vm):
    """The guest's wall clock minus the host's, as "+0 s" (to a second), or "?" if the agent does not
    answer: about 0 when the guest's clock runs on through pauses (amber), the time spent
    paused behind when kvmclock stands still (QEMU, and AMBER_TEST_FREEZE_CLOCK)."""
    try:
        t0 = time.time()
        out = vm.sh("date +%s", timeout_s=30).stdout  # busybox: whole seconds
        t1 = time.time()
        return "%+.0f s" % (float(out.strip()) - (t0 + t1) / 2)
    except Exception:  # noqa: BLE001 - a figure for the log line only
        return "?"


def soak(session, kind, cycles, run=0, load="both", vcpus=2, pause=True):
    """Runs the soak against one VMM; returns (passed, report line)."""
    root = session.path("%s-root.ext4" % kind)
    os.system("cp --sparse=always %s %s" % (harness.ROOTFS, root))
    vm = vms.GuestVm(session, kind, vcpus=vcpus, drive=root, vsock=True, control=True,
                     cmdline=lib.CMDLINE + " root=/dev/vda").start()
    try:
        stop, streamed, errors, syms = threading.Event(), [0], [], ""
        try:
            vm.wait_ready()
            vm.wait_agent()
            # The guest kernel's text symbols for this boot (KASLR moves them), so that a fault's
            # RIP in KVM's trace or amber's report can be placed; kept only if the run fails. Read
            # under both VMMs, so that both guests go through the same steps.
            syms = vm.sh("grep -E ' [tT] ' /proc/kallsyms; true", timeout_s=120).stdout
            if load in ("both", "writes"):
                vm.sh(WRITER)
        except Exception as e:  # noqa: BLE001 - a guest lost before the first cycle fails the run
            errors.append("setup, before any pause: %s" % e)

        def streamer():
            while not stop.is_set():
                try:
                    n, _, _ = vms.stream_exec_count(vm, ["dd", "if=/dev/zero", "bs=64k", "count=256"], timeout_s=60)
                    streamed[0] += n
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append("stream: %s" % e)
                    return

        t = threading.Thread(target=streamer, daemon=True)
        if load in ("both", "streams") and not errors:
            t.start()
        rng = random.Random(1)
        t0, done = time.monotonic(), 0
        for i in range(cycles):
            if errors:
                break  # a stream failed: take the evidence now, while the VM is as it was
            try:
                if pause:
                    vm.pause()
                time.sleep(rng.uniform(0, 0.05))
                if pause:
                    vm.resume()
                else:
                    vm.noop()  # the same API round trips, nothing paused: the control
                time.sleep(rng.uniform(0, 0.15))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append("cycle %d: %s" % (i, e))
                break
            if vm.vm.proc.poll() is not None:
                errors.append("cycle %d: the VMM exited with %s" % (i, vm.vm.proc.returncode))
                break
            done = i + 1
        if not errors and load in ("both", "streams"):
            # The last stream must finish too: a stall at the end counts.
            stop.set()
            t.join(90)
            if t.is_alive():
                errors.append("stream: still running 90 s after the last cycle")
        stop.set()
        offset = clock_offset(vm)
        where = ""
        if errors:
            tag = "%s-%dvcpu%s-run%d" % (load, vcpus, "" if pause else "-nopause", run)
            where = ", evidence in %s" % evidence(vm, kind, tag, done, errors)
            if syms and kind == "amber":
                with open(os.path.join(RESULTS, "kallsyms-%s.txt" % tag), "w") as f:
                    f.write(syms if isinstance(syms, str) else syms.decode("utf-8", "replace"))
        variant = "" if pause else ", no pause"
        if kind == "amber" and os.environ.get("AMBER_TEST_FREEZE_CLOCK") == "1":
            variant += ", kvmclock frozen across pauses (%s)" % os.path.relpath(lib.AMBER, harness.REPO)
        line = "%s run %d (%s, %d vCPUs%s): %d of %d cycles in %.0f s, %d MiB streamed, guest clock %s, %s%s" % (
            kind, run, load, vcpus, variant, done, cycles, time.monotonic() - t0, streamed[0] >> 20, offset,
            "first error: %s" % errors[0] if errors else "no error", where)
        return not errors, line
    finally:
        vm.stop()


def main():
    import argparse
    ap = argparse.ArgumentParser(description="pause/resume soak, amber next to QEMU")
    ap.add_argument("--runs", type=int, default=1, help="runs per VMM (they take turns)")
    ap.add_argument("--load", default="both", choices=("both", "streams", "writes", "none"))
    ap.add_argument("--vcpus", type=int, default=2)
    ap.add_argument("--no-pause", action="store_true",
                    help="the control: the same cycles and API round trips, but nothing paused")
    ap.add_argument("vmm", nargs="*", help="amber, qemu or both (the default)")
    a = ap.parse_args()
    kinds = a.vmm or ["amber", "qemu"]
    for kind in kinds:
        if kind not in ("amber", "qemu"):
            sys.exit("soak_cmp.py: unknown VMM %r (amber or qemu)" % kind)
    cycles = int(os.environ.get("AMBER_SOAK_CYCLES", "1000"))
    os.makedirs(RESULTS, exist_ok=True)
    session = harness.Session("soak-cmp", log_dir=RESULTS)
    passed = {k: 0 for k in kinds}
    try:
        for run in range(1, a.runs + 1):
            # Take turns, and alternate who goes first, so both see the same test-host drift.
            order = kinds if run % 2 else list(reversed(kinds))
            for kind in order:
                ok, line = soak(session, kind, cycles, run, a.load, a.vcpus, not a.no_pause)
                passed[kind] += ok
                print(line, flush=True)
    finally:
        session.close()
    for kind in kinds:
        print("soak-cmp %s: %d of %d runs clean (%d cycles each, load %s, %d vCPUs%s)"
              % (kind, passed[kind], a.runs, cycles, a.load, a.vcpus,
                 ", no pause" if a.no_pause else ""), flush=True)
    return 0 if all(passed[k] == a.runs for k in kinds) else 1


if __name__ == "__main__":
    sys.exit(main())
