#!/usr/bin/env python3
"""QEMU microvm reference boot: time from process start to "amber-guest: ready", and peak RSS.

Run through bench/qemu_ref.sh (which enters the test host when this CPU has no vmx/svm).
"""
import argparse
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402

READY = re.compile(harness.READY)
RUN_SCRIPT = """#!/bin/sh
echo "amber-rootfs: $(grep ' / ' /proc/mounts | head -n1)"
ls -l /dev/vda
"""


def qemu_argv(args, scratch):
    kernel = harness.VMLINUX if args.pvh else harness.VMLINUZ
    cmdline = "console=ttyS0 reboot=t panic=-1 quiet"
    argv = ["qemu-system-x86_64", "-M", "microvm,acpi=on", "-enable-kvm", "-cpu", "host",
            "-m", str(args.mem_mib), "-smp", str(args.vcpus), "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel, "-initrd", harness.INITRAMFS]
    if args.rootfs:
        session = harness.Session("qemu-ref")
        session.dir = scratch
        image = session.rootfs_copy("rootfs.ext4", files={"/amber-run.sh": RUN_SCRIPT})
        argv += ["-drive", "id=root,file=%s,format=raw,if=none,cache=writeback,aio=threads" % image,
                 "-device", "virtio-blk-device,drive=root"]
        cmdline += " root=/dev/vda rw"
    else:
        cmdline += " amber.test=%s" % args.test
    return argv + ["-append", cmdline]


def one_run(argv, timeout_s, show):
    """Boots once; returns (ready_s, exit_s, peak_rss_kib, console lines)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines, ready_s, buf = [], None, b""
    deadline = t0 + timeout_s
    fd = proc.stdout.fileno()
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
            if show:
                print("    | " + line, flush=True)
            if ready_s is None and READY.search(line):
                ready_s = time.monotonic() - t0
    # wait4 gives the child's own peak RSS (ru_maxrss, KiB), read as it is reaped.
    _, status, rusage = os.wait4(proc.pid, 0)
    exit_s = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if buf:
        lines.append(harness.clean_line(buf))
    return ready_s, exit_s, rusage.ru_maxrss, lines, proc.returncode


def summary(name, values, unit, fmt="%.2f"):
    med = statistics.median(values)
    return ("%s median " + fmt + " %s (min " + fmt + ", max " + fmt + ")") % (
        name, med, unit, min(values), max(values))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=5)
    ap.add_argument("--rootfs", action="store_true",
                    help="boot root=/dev/vda from a virtio-blk copy of rootfs.ext4 (found through ACPI)")
    ap.add_argument("--pvh", action="store_true", help="boot build/guest/vmlinux (PVH entry)")
    ap.add_argument("--test", default="poweroff", help="amber.test= action without --rootfs")
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--mem-mib", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=300.0, help="per run, seconds (scaled)")
    ap.add_argument("--show", action="store_true", help="print the first run's console")
    args = ap.parse_args()

    for f in (harness.VMLINUZ, harness.VMLINUX, harness.INITRAMFS, harness.ROOTFS):
        if not os.path.exists(f):
            sys.exit("qemu_ref: %s is missing: run make guest" % f)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        sys.exit("qemu_ref: /dev/kvm is not usable here")

    mode = "rootfs (virtio-blk root=/dev/vda)" if args.rootfs else "initramfs, amber.test=" + args.test
    print("qemu_ref: QEMU microvm,acpi=on, %s kernel, %s, %d vCPU, %d MiB, %d runs"
          % ("vmlinux (PVH)" if args.pvh else "vmlinuz", mode, args.vcpus, args.mem_mib, args.runs),
          flush=True)
    ready, exits, rss, failures = [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="amber-qemu-ref-", dir="/tmp") as scratch:
        argv = qemu_argv(args, scratch)
        for i in range(args.runs):
            r, e, peak_kib, lines, rc = one_run(argv, harness.scaled(args.timeout), args.show and i == 0)
            ok = r is not None and rc == 0
            if args.rootfs:
                ok = ok and any(re.match(r"amber-rootfs: /dev/vda / ext4 ", l) for l in lines)
            for l in lines:
                if l.startswith(("amber-nproc:", "amber-memtotal-kb:", "amber-rootfs:")) and i == 0:
                    print("  guest says: " + l)
            print("  run %d: ready %s, exit %.2f s (status %d), peak RSS %d KiB%s"
                  % (i + 1, "%.2f s" % r if r is not None else "never", e, rc, peak_kib,
                     "" if ok else "  FAILED"), flush=True)
            if not ok:
                failures += 1
                print("\n".join("    | " + l for l in lines[-30:]))
                continue
            ready.append(r)
            exits.append(e)
            rss.append(peak_kib / 1024.0)
    if ready:
        print("qemu_ref: " + summary("start->ready", ready, "s"))
        print("qemu_ref: " + summary("start->exit", exits, "s"))
        print("qemu_ref: " + summary("peak RSS", rss, "MiB", "%.1f"))
    print("qemu_ref: %d of %d runs ok" % (len(ready), args.runs))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
