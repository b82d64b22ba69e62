"""Issue 2's figure: boot to the init marker and VMM peak RSS, amber vs QEMU microvm.

Both VMMs boot the same vmlinuz + initramfs with amber.test=poweroff (init prints the marker,
then powers off), 1 vCPU, the same RAM. Time: process start to the marker line. Peak RSS:
the child's ru_maxrss from wait4. Guest RAM touched: the resident size of the guest-RAM
mapping in /proc/PID/smaps, read when the marker appears (the guest only powers off after it);
overhead = peak RSS minus that.
"""
import os
import select
import subprocess
import time

import lib
import vms
from lib import harness


def boot_once(argv, mem_mib, timeout_s):
    """Returns {ready_s, peak_kib, guest_kib, rc, tail} for one boot."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    fd = proc.stdout.fileno()
    lines, buf, ready_s, guest_kib = [], b"", None, None
    deadline = t0 + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            break
        r, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = harness.clean_line(raw)
            lines.append(line)
            if ready_s is None and lib.READY.search(line):
                ready_s = time.monotonic() - t0
                guest_kib = lib.guest_ram_rss_kib(proc.pid, mem_mib)
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    return {"ready_s": ready_s, "peak_kib": rusage.ru_maxrss, "guest_kib": guest_kib,
            "rc": os.waitstatus_to_exitcode(status), "tail": lines[-25:]}


def run(settings, session):
    """Boots each VMM settings.boot_runs times, alternating; returns the raw samples."""
    out = {}
    for kind in ("amber", "qemu"):
        out[kind] = {"ready_s": [], "peak_mib": [], "guest_mib": [], "overhead_mib": [], "failed": 0,
                     "bad_exit": []}
    cmdline = lib.CMDLINE + " amber.test=poweroff"
    argvs = {k: vms.GuestVm(session, k, mem_mib=settings.mem_mib, cmdline=cmdline).argv
             for k in ("amber", "qemu")}
    for i in range(settings.boot_runs):
        for kind in ("amber", "qemu"):
            r = boot_once(argvs[kind], settings.mem_mib, settings.boot_timeout_s)
            s = out[kind]
            if r["rc"] != 0:
                # Reported apart: a run that reached the marker still counts for the figures.
                s["bad_exit"].append("run %d: exit status %s: %s" % (i + 1, r["rc"], r["tail"][-1] if r["tail"] else ""))
                lib.log("boot %s run %d: exit status %s after the marker:\n    %s"
                        % (kind, i + 1, r["rc"], "\n    ".join(r["tail"][-5:])))
            if r["ready_s"] is None or r["guest_kib"] is None:
                s["failed"] += 1
                lib.log("boot %s run %d FAILED (status %s):\n    %s"
                        % (kind, i + 1, r["rc"], "\n    ".join(r["tail"])))
                continue
            s["ready_s"].append(r["ready_s"])
            s["peak_mib"].append(r["peak_kib"] / 1024.0)
            s["guest_mib"].append(r["guest_kib"] / 1024.0)
            s["overhead_mib"].append((r["peak_kib"] - r["guest_kib"]) / 1024.0)
            lib.log("boot %s run %d: ready %.2f s, peak RSS %.1f MiB, guest RAM touched %.1f MiB"
                    % (kind, i + 1, r["ready_s"], r["peak_kib"] / 1024.0, r["guest_kib"] / 1024.0))
    return out
