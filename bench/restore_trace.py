#!/usr/bin/env python3
"""Where a restore's time goes, from process start to the first exec answered (issue 15).

usage: scripts/testhost.sh -- python3 bench/restore_trace.py [--mem 256,2048] [--restores 3]
                              [--default-only] [--variant NAME=BINARY[:ENV=VALUE]...]

One cold boot per RAM size, one Full snapshot of it, then several restores of that snapshot in
new amber processes, one after the other. For each restore it prints a timeline (process start,
API socket there, PUT /snapshot/load answered, amber's own restore steps from its log, the vsock
CONNECT answered, the first exec's EXIT), the KVM counters of vCPU 0 (SIGUSR2 report) spent up to
that first exec, and the same for warm execs afterwards, next to the cold-booted VM's warm execs.
Variants: "clock kept" (clock_realtime false), "idle 2 s" (the first exec 2 s after the load),
and --variant NAME=BINARY[:ENV=VALUE] for another amber binary. Prints numbers; asserts nothing.
"""
import argparse
import json
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

COUNTERS = ("exits", "pf_taken", "halt_exits", "io_exits", "mmio_exits", "irq_injections")


class TimedVm(harness.Vm):
    """A Vm that also notes when each stderr line arrived (monotonic seconds)."""

    def __init__(self, *a, **kw):
        self.timed = []
        super().__init__(*a, **kw)

    def _read(self, pipe, sink, prefix):
        for raw in iter(pipe.readline, b""):
            line = harness.clean_line(raw)
            with self._cond:
                sink.append(line)
                if prefix:
                    self.timed.append((time.monotonic(), line))
                self._log.write(prefix + line + "\n")
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()


def counters(vm):
    """vCPU 0's KVM counters from amber's SIGUSR2 report, {name: int}."""
    rep = vm.state_report()
    m = re.search(r"state: vcpu0 kvm: (.*)", rep)
    if not m:
        return {}
    toks = m.group(1).split()
    return {toks[i]: int(toks[i + 1]) for i in range(0, len(toks) - 1, 2) if toks[i + 1].isdigit()}


def diff(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in COUNTERS if k in a and k in b}


def raw_exec(vsock, timeout=60.0):
    """One exec of `true` over the agent protocol, timed by stage: (connect+OK s, OK to EXIT s)."""
    t0 = time.monotonic()
    conn = U.VsockConn(vsock, timeout=timeout, handshake=False)
    try:
        conn.handshake()
        t1 = time.monotonic()
        conn.send(U.exec_request(argv=["true"]))
        res = U.read_exec_result(conn)
        t2 = time.monotonic()
    finally:
        conn.close()
    if res["code"] != 0:
        raise RuntimeError("exec true: %r" % res)
    return t1 - t0, t2 - t1


def first_exec(vsock, t_ref, deadline_s=60.0):
    """Tries raw_exec until one works; returns (attempts, t_ok, t_exit) relative to t_ref."""
    attempts = []
    end = time.monotonic() + deadline_s
    while True:
        ta = time.monotonic()
        try:
            ok_s, exit_s = raw_exec(vsock)
            attempts.append((ta - t_ref, "ok"))
            return attempts, ta - t_ref + ok_s, ta - t_ref + ok_s + exit_s
        except (OSError, EOFError, AssertionError, RuntimeError) as e:
            attempts.append((ta - t_ref, "%s after %.0f ms" % (str(e)[:80], (time.monotonic() - ta) * 1000)))
        if time.monotonic() > end:
            raise RuntimeError("no exec within %.0f s: %r" % (deadline_s, attempts))
        time.sleep(0.005)


def ctl_ms(vsock):
    t = time.monotonic()
    r = U.ctl_exec(vsock, ["true"], timeout=60)
    if r.returncode != 0:
        raise RuntimeError("amberctl exec: %r" % r.stderr)
    return (time.monotonic() - t) * 1000


def warm(vm, vsock, n=3):
    """n raw execs and n amberctl execs on a running guest: their ms and the counters they cost."""
    c0 = counters(vm)
    raw = [sum(raw_exec(vsock)) * 1000 for _ in range(n)]
    c1 = counters(vm)
    ctl = [ctl_ms(vsock) for _ in range(n)]
    return {"raw_ms": raw, "ctl_ms": ctl, "per_raw_exec": {k: v / n for k, v in diff(c0, c1).items()}}


def wait_ctl(vsock, deadline_s=120.0):
    end = time.monotonic() + deadline_s
    while True:
        try:
            if U.ctl_exec(vsock, ["true"], timeout=30).returncode == 0:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > end:
            raise RuntimeError("no exec within %.0f s" % deadline_s)
        time.sleep(0.02)


def cold(session, mem_mib):
    vsock, api_path = session.path("cv%d.sock" % mem_mib), session.path("ca%d.sock" % mem_mib)
    t0 = time.monotonic()
    vm = session.amber(initrd=True, vcpus=1, mem_mib=mem_mib, vsock=(3, vsock), api_sock=api_path)
    wait_ctl(vsock)
    out = {"cold_exec_ms": (time.monotonic() - t0) * 1000}
    time.sleep(1.0)
    out["warm"] = warm(vm, vsock)
    api = U.Api(api_path)
    snap, mem = session.path("s%d.snap" % mem_mib), session.path("s%d.mem" % mem_mib)
    api.call("POST", "/pause")
    t1 = time.monotonic()
    status, reply = api.call("PUT", "/snapshot/create", {"snapshot_path": snap, "mem_file_path": mem})
    out["create_ms"] = (time.monotonic() - t1) * 1000
    if status != 204:
        raise RuntimeError("snapshot/create: %s %r" % (status, reply))
    out["mem_data_mib"] = os.stat(mem).st_blocks * 512 / 1048576.0
    api.close()
    vm.signal(signal.SIGKILL)
    vm.wait_exit()
    return out, snap, mem


def restore(session, snap, mem, tag, binary, env, body, idle_s, dmesg=False):
    vsock, api_path = session.path("rv-%s.sock" % tag), session.path("ra-%s.sock" % tag)
    argv = harness.amber_argv(kernel=None, api_sock=api_path, binary=binary)
    full_env = dict(os.environ, **env) if env else None
    t0 = time.monotonic()
    vm = TimedVm(argv, session.log_path, env=full_env)
    session.vms.append(vm)
    U.wait_for_path(api_path, vm=vm)
    t_sock = time.monotonic() - t0
    api = U.Api(api_path)
    req = {"snapshot_path": snap, "mem_backend": {"backend_type": "File", "backend_path": mem},
           "resume_vm": True, "vsock_override": {"uds_path": vsock}}
    req.update(body)
    status, reply = api.call("PUT", "/snapshot/load", req)
    t_loaded = time.monotonic() - t0
    if status != 204:
        raise RuntimeError("snapshot/load: %s %r" % (status, reply))
    if idle_s:
        time.sleep(idle_s)
    attempts, t_ok, t_exit = first_exec(vsock, t0)
    c_first = counters(vm)
    log = {}
    for t, line in list(vm.timed):
        if "restore steps:" in line:
            log["steps"] = line.split("restore steps: ", 1)[1]
            log["steps_at_ms"] = (t - t0) * 1000
        m = re.search(r"restore: .* in (\d+) us", line)
        if m:
            log["inside_ms"] = int(m.group(1)) / 1000.0
    out = {"tag": tag, "sock_ms": t_sock * 1000, "loaded_ms": t_loaded * 1000,
           "first_ok_ms": t_ok * 1000, "first_exit_ms": t_exit * 1000,
           "attempts": attempts, "to_first_exec": {k: c_first.get(k) for k in COUNTERS}, **log}
    out["warm"] = warm(vm, vsock)
    if dmesg:
        out["dmesg_tail"] = U.guest_sh(vsock, "dmesg | tail -n 15; cat /proc/uptime", timeout=60)
    api.close()
    vm.kill()
    print("restore %s: %s" % (tag, json.dumps(out)), file=sys.stderr, flush=True)
    return out


def med(xs):
    return "%.0f (%.0f-%.0f)" % (statistics.median(xs), min(xs), max(xs)) if xs else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem", default="256,2048")
    ap.add_argument("--restores", type=int, default=3)
    ap.add_argument("--variant", action="append", default=[], help="NAME=BINARY[:ENV=VALUE]")
    ap.add_argument("--default-only", action="store_true", help="no clock kept / idle 2 s restores")
    args = ap.parse_args()
    amber = harness.AMBER
    variants = [("default", amber, {}, {}, 0, args.restores)]
    if not args.default_only:
        variants += [("clock kept", amber, {}, {"clock_realtime": False}, 0, 2),
                     ("idle 2 s", amber, {}, {}, 2.0, 2)]
    for v in args.variant:
        name, rest = v.split("=", 1)
        binary, _, envs = rest.partition(":")
        env = dict(e.split("=", 1) for e in envs.split(",") if e)
        variants.append((name, os.path.abspath(binary), env, {}, 0, args.restores))
    session = harness.Session("restore-trace")
    results = {}
    try:
        for mem_mib in [int(m) for m in args.mem.split(",")]:
            c, snap, mem = cold(session, mem_mib)
            print("cold %d MiB: %s" % (mem_mib, json.dumps(c)), file=sys.stderr, flush=True)
            rs = []
            for name, binary, env, body, idle, n in variants:
                for i in range(n):
                    tag = "%d-%s-%d" % (mem_mib, re.sub(r"\W", "", name), i)
                    try:
                        rs.append((name, restore(session, snap, mem, tag, binary, env, body, idle,
                                                 dmesg=(i == 0 and name == "default"))))
                    except Exception as e:  # noqa: BLE001 - reported, the others still run
                        print("restore %s: FAILED %s" % (tag, e), file=sys.stderr, flush=True)
            results[mem_mib] = (c, rs)
            os.unlink(snap)
            os.unlink(mem)
    finally:
        session.close()
    for mem_mib, (c, rs) in results.items():
        print("\n## %d MiB: cold boot to first exec %.0f ms, create %.0f ms, %.1f MiB data"
              % (mem_mib, c["cold_exec_ms"], c["create_ms"], c["mem_data_mib"]))
        print("cold-booted guest, warm exec: raw %s ms, amberctl %s ms, per raw exec %s"
              % (med(c["warm"]["raw_ms"]), med(c["warm"]["ctl_ms"]), c["warm"]["per_raw_exec"]))
        print("| variant | API socket | load answered | CONNECT OK | first EXIT | attempts | "
              "KVM to first exec | warm raw ms | warm amberctl ms | per warm exec |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, r in rs:
            print("| %s | %.0f | %.0f | %.0f | %.0f | %d | %s | %s | %s | %s |" % (
                name, r["sock_ms"], r["loaded_ms"], r["first_ok_ms"], r["first_exit_ms"],
                len(r["attempts"]), r["to_first_exec"], med(r["warm"]["raw_ms"]),
                med(r["warm"]["ctl_ms"]), r["warm"]["per_raw_exec"]))
        for name, r in rs:
            print("%s: first exec attempts (s after start, outcome): %s" % (name, r["attempts"]))
        for name, r in rs:
            print("%s: inside amber %s ms; steps (at %.0f ms): %s" % (
                name, r.get("inside_ms"), r.get("steps_at_ms", -1), r.get("steps")))
        for name, r in rs:
            if "dmesg_tail" in r:
                print("guest dmesg after restore:\n%s" % r["dmesg_tail"])


if __name__ == "__main__":
    main()
