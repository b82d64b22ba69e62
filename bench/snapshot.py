#!/usr/bin/env python3
"""Snapshot and restore figures for amber (issue 15); run it where /dev/kvm boots guests.

usage: scripts/testhost.sh -- python3 bench/snapshot.py [--runs N] [--mem 256,2048] [--qemu | --qemu-only]

For each guest RAM size and run: a cold boot (process start to the first exec answered over
vsock), then pause, PUT /snapshot/create (time, bytes the memory file really holds), kill -9,
and a restore in a new amber: process start to PUT /snapshot/load answered (the guest is
running then), and to the first exec answered. Prints median and min-max per figure, and the
RSS of the idle restored amber next to the cold-booted one's. --qemu adds QEMU microvm with the
same guest: QMP migrate to a file (exec:cat) while stopped, then -incoming from it (QEMU's
"snapshot" writes every page of RAM; amber's skips untouched and zero pages).
"""
import argparse
import os
import re
import signal
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402
import util_amber as U  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_exec(vsock, deadline_s=120.0):
    """Until `true` runs in the guest; returns when it did."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            if U.ctl_exec(vsock, ["true"], timeout=30).returncode == 0:
                return
        except Exception:  # noqa: BLE001 - the agent is not up yet
            pass
        if time.monotonic() > end:
            raise RuntimeError("no exec answer within %.0f s" % deadline_s)
        time.sleep(0.02)


def restore_log_ms(vm, timeout_s=10.0):
    """amber's "restore: ... in N us" log line (on its stderr), in ms."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for line in list(vm.stderr_lines):
            m = re.search(r"restore: .* in (\d+) us", line)
            if m:
                return int(m.group(1)) / 1000.0
        time.sleep(0.01)
    raise RuntimeError("no 'restore: ... in N us' line from amber within %.0f s" % timeout_s)


def one_run(session, mem_mib, i):
    vsock = session.path("v%d-%d.sock" % (mem_mib, i))
    api_path = session.path("a%d-%d.sock" % (mem_mib, i))
    t0 = time.monotonic()
    vm = session.amber(initrd=True, vcpus=1, mem_mib=mem_mib, vsock=(3, vsock), api_sock=api_path)
    wait_exec(vsock)
    cold_exec = time.monotonic() - t0
    time.sleep(1.0)
    cold_rss = rss_kib(vm.pid)
    api = U.Api(api_path)
    snap, mem = session.path("s%d-%d.snap" % (mem_mib, i)), session.path("s%d-%d.mem" % (mem_mib, i))
    api.call("POST", "/pause")
    t1 = time.monotonic()
    status, reply = api.call("PUT", "/snapshot/create", {"snapshot_path": snap, "mem_file_path": mem})
    create_s = time.monotonic() - t1
    if status != 204:
        raise RuntimeError("snapshot/create: %s %r" % (status, reply))
    written = os.stat(mem).st_blocks * 512
    api.close()
    vm.signal(signal.SIGKILL)
    vm.wait_exit()

    vsock2 = session.path("r%d-%d.sock" % (mem_mib, i))
    api2_path = session.path("ra%d-%d.sock" % (mem_mib, i))
    t2 = time.monotonic()
    vm2 = session.start(harness.amber_argv(kernel=None, api_sock=api2_path))
    U.wait_for_path(api2_path, vm=vm2)
    api2 = U.Api(api2_path)
    status, reply = api2.call("PUT", "/snapshot/load", {
        "snapshot_path": snap, "mem_backend": {"backend_type": "File", "backend_path": mem},
        "resume_vm": True, "vsock_override": {"uds_path": vsock2}})
    running_s = time.monotonic() - t2
    if status != 204:
        raise RuntimeError("snapshot/load: %s %r" % (status, reply))
    # amber's own account: from reading the state file to the vCPUs started (its log line).
    inside_ms = restore_log_ms(vm2)
    wait_exec(vsock2)
    exec_s = time.monotonic() - t2
    # When the guest handled the vsock transport reset (amber logs it since it holds host
    # connections until then); None from an amber that does not.
    ack = [re.search(r"handled the transport reset (\d+) ms", line) for line in list(vm2.stderr_lines)]
    ack = [int(m.group(1)) for m in ack if m]
    time.sleep(1.0)
    restored_rss = rss_kib(vm2.pid)
    api2.close()
    vm2.kill()
    for p in (snap, mem):
        os.unlink(p)
    r = {"cold_exec_s": cold_exec, "create_s": create_s, "written": written,
         "restore_running_s": running_s, "restore_exec_s": exec_s, "restore_inside_ms": inside_ms,
         "reset_ack_ms": ack[0] if ack else None,
         "cold_rss_kib": cold_rss, "restored_rss_kib": restored_rss}
    print("amber %d MiB run %d: %r" % (mem_mib, i, r), file=sys.stderr, flush=True)
    return r


def qemu_run(session, mem_mib, i):
    """QEMU microvm with the same guest: migrate to a file, then -incoming from it."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import lib  # noqa: E402 - bench/lib.py: Qmp, and what vms needs
    import vms  # noqa: E402
    g = vms.GuestVm(session, "qemu", mem_mib=mem_mib, vsock=True)
    qmp_path = session.path("q%d-%d.qmp" % (mem_mib, i))
    g.argv += ["-qmp", "unix:%s,server=on,wait=off" % qmp_path]
    base_argv = list(g.argv)
    t0 = time.monotonic()
    g.start()
    g.wait_agent()
    g.sh("true")
    cold_exec = time.monotonic() - t0
    q = lib.Qmp(qmp_path, timeout_s=60.0)
    state = session.path("q%d-%d.state" % (mem_mib, i))
    q.cmd("stop")
    # No bandwidth cap (QEMU's default would throttle the copy): as fast as it can write.
    try:
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 10 << 30})
    except RuntimeError as e:  # an older QEMU: measure with its default
        print("qemu: max-bandwidth not set: %s" % e, file=sys.stderr, flush=True)
    t1 = time.monotonic()
    q.cmd("migrate", uri="exec:cat > %s" % state)
    while q.cmd("query-migrate").get("status") not in ("completed", "failed"):
        time.sleep(0.005)
    create_s = time.monotonic() - t1
    written = os.stat(state).st_blocks * 512
    q.close()
    g.stop()
    if os.path.exists(qmp_path):  # QEMU removes its own socket when it exits cleanly
        os.unlink(qmp_path)
    g2 = vms.GuestVm(session, "qemu", mem_mib=mem_mib, vsock=True)
    g2.argv = base_argv + ["-incoming", "exec:cat %s" % state]
    t2 = time.monotonic()
    g2.start()
    q2 = lib.Qmp(qmp_path, timeout_s=60.0)
    # The source was stopped, and QEMU carries the run state across a migration: the
    # destination ends "paused", and a "cont" starts it (as resume_vm does for amber).
    deadline = time.monotonic() + 120.0
    while True:
        status = q2.cmd("query-status").get("status")
        if status == "running":
            break
        if status in ("paused", "postmigrate"):
            q2.cmd("cont")
        if time.monotonic() > deadline:
            raise RuntimeError("QEMU -incoming: still %r after 120 s" % status)
        time.sleep(0.002)
    running_s = time.monotonic() - t2
    g2.wait_agent()
    g2.sh("true")
    exec_s = time.monotonic() - t2
    q2.close()
    g2.stop()
    os.unlink(state)
    r = {"cold_exec_s": cold_exec, "create_s": create_s, "written": written,
         "restore_running_s": running_s, "restore_exec_s": exec_s}
    print("qemu %d MiB run %d: %r" % (mem_mib, i, r), file=sys.stderr, flush=True)
    return r


def run(settings, session, mem_sizes=(256, 2048), qemu=True):
    """make bench's "snapshot" section (bench/bench.py): the raw samples per VMM and RAM size,
    {"runs", "amber": {"256": [run dicts]}, "qemu": {...}, "errors": [...]}. A size or VMM that
    fails is listed in errors; the others are still measured."""
    out = {"runs": settings.boot_runs, "amber": {}, "qemu": {}, "errors": []}
    for mem_mib in mem_sizes:
        for kind, fn in (("amber", one_run), ("qemu", qemu_run)):
            if kind == "qemu" and not qemu:
                continue
            try:
                out[kind][str(mem_mib)] = [fn(session, mem_mib, i) for i in range(settings.boot_runs)]
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                out["errors"].append("%s %d MiB: %s" % (kind, mem_mib, e))
    return out


def fmt(values, scale, unit):
    v = [x * scale for x in values]
    return "%.1f %s (%.1f-%.1f)" % (statistics.median(v), unit, min(v), max(v))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mem", default="256,2048")
    ap.add_argument("--qemu", action="store_true", help="also QEMU microvm: migrate to a file, -incoming")
    ap.add_argument("--qemu-only", action="store_true", help="only QEMU microvm (amber measured apart)")
    args = ap.parse_args()
    session = harness.Session("bench-snapshot")
    rows = []
    try:
        for mem_mib in [int(m) for m in args.mem.split(",")]:
            if not args.qemu_only:
                runs = [one_run(session, mem_mib, i) for i in range(args.runs)]
                col = {k: [r[k] for r in runs] for k in runs[0]}
                gib_s = [(mem_mib / 1024.0) / s for s in col["create_s"]]
                rows.append((mem_mib, col, gib_s))
            if args.qemu or args.qemu_only:
                try:
                    qruns = [qemu_run(session, mem_mib, i) for i in range(args.runs)]
                except Exception as e:  # noqa: BLE001 - the reference is optional
                    print("QEMU %d MiB: not measured: %s" % (mem_mib, e), file=sys.stderr)
                    continue
                qcol = {k: [r[k] for r in qruns] for k in qruns[0]}
                qgib = [(mem_mib / 1024.0) / x for x in qcol["create_s"]]
                rows.append(("QEMU %d" % mem_mib, qcol, qgib))
    finally:
        session.close()
    print("\nsnapshot/restore, amber, %d runs each: median (min-max)\n" % args.runs)
    print("| figure | " + " | ".join("amber %d MiB" % r[0] if isinstance(r[0], int) else "%s MiB" % r[0]
                                    for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    lines = [
        ("cold boot to first exec", lambda c, g: fmt(c["cold_exec_s"], 1000, "ms")),
        ("snapshot/create time", lambda c, g: fmt(c["create_s"], 1000, "ms")),
        ("snapshot/create, guest RAM / time", lambda c, g: fmt(g, 1, "GiB/s")),
        ("memory file data written", lambda c, g: fmt(c["written"], 1 / 1048576.0, "MiB")),
        ("restore: start to guest running", lambda c, g: fmt(c["restore_running_s"], 1000, "ms")),
        ("restore: start to first exec", lambda c, g: fmt(c["restore_exec_s"], 1000, "ms")),
        ("restore inside amber (state file read to vCPUs started)", lambda c, g: fmt(c["restore_inside_ms"], 1, "ms")),
        ("restore: guest handled the vsock reset (amber's log, after the restore)",
         lambda c, g: fmt([x for x in c["reset_ack_ms"] if x is not None], 1, "ms")),
        ("restore to exec / cold boot to exec",
         lambda c, g: "%.3f" % (statistics.median(c["restore_exec_s"]) / statistics.median(c["cold_exec_s"]))),
        ("RSS idle, cold-booted", lambda c, g: fmt(c["cold_rss_kib"], 1 / 1024.0, "MiB")),
        ("RSS idle, restored", lambda c, g: fmt(c["restored_rss_kib"], 1 / 1024.0, "MiB")),
    ]
    for name, f in lines:
        cells = []
        for _, c, g in rows:
            try:
                cells.append(f(c, g))
            except (KeyError, ValueError, statistics.StatisticsError):
                cells.append("-")  # QEMU has no RSS figures here
        print("| %s | %s |" % (name, " | ".join(cells)))


if __name__ == "__main__":
    main()
