"""Issues 3, 4 and 5 in a booted guest, driven through the agent, for amber and QEMU alike.

One boot per VMM (1 vCPU, a drive file on tmpfs, a TAP, vsock and a control socket) gives:
idle RSS overhead, exec round trips, TCP both ways, vsock throughput, and pause / resume with
the vCPU spinning. A second boot per VMM with 4 vCPUs gives pause / resume again. Block dd runs
last, in one amber and one QEMU guest booted side by side and measured in turns.
Each step records its error and the run goes on, so one broken piece leaves the rest standing.
"""
import os
import socket
import subprocess
import threading
import time
import traceback

import lib
import vms

SPIN = ("for i in $(seq 1 %d); do setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & done")


def tmpfs_dir(session):
    """A tmpfs folder for drive files: the session's (/tmp is tmpfs in the test host) or /dev/shm."""
    with open("/proc/mounts") as f:
        mounts = [l.split() for l in f]
    best = max((m for m in mounts if session.dir.startswith(m[1].rstrip("/") + "/")), key=lambda m: len(m[1]))
    return session.dir if best[2] == "tmpfs" else "/dev/shm"


def step(res, name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the report says what failed and the rest runs on
        res["errors"].append("%s: %s" % (name, e))
        lib.log("%s FAILED: %s\n%s" % (name, e, traceback.format_exc(limit=3)))


def timed_ms(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def host_exec_ref_ms(settings):
    """The exec reference: `sh -c true` spawned and waited for on this host, in ms."""
    return timed_ms(lambda: subprocess.run(["sh", "-c", "true"], check=True), settings.exec_cycles)


def bench_exec(settings, vm, res):
    if vm.kind == "amber":
        argv = [lib.AMBERCTL, "exec", "--vsock", vm.vsock_path, "--", "true"]
        res["exec_ctl_ms"] = timed_ms(lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL),
                                      settings.exec_cycles)
    client = vm.agent()

    def one():
        r = client.exec(["true"], timeout=60.0)
        if r.returncode != 0:
            raise RuntimeError("true exited %s" % r.returncode)
    res["exec_py_ms"] = timed_ms(one, settings.exec_cycles)
    for k in ("exec_ctl_ms", "exec_py_ms"):
        if res.get(k):
            lib.log("%s %s median %.2f p99 %.2f" % (vm.kind, k, lib.median(res[k]), lib.p99(res[k])))


def make_drive(settings, session, kind):
    """A preallocated raw drive file on tmpfs: page-cached for both VMMs (tmpfs refuses O_DIRECT)."""
    drive = os.path.join(tmpfs_dir(session), "%s-drive.img" % kind)
    with open(drive, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, settings.block_mib * lib.MIB)
    return drive


def bench_block_paired(settings, session, out):
    """Guest dd on /dev/vda, amber and QEMU booted side by side and run in turns (who goes first
    alternates), so that both see the same test-host conditions: the test host drifts by tens of
    percent over a bench, which one-VMM-after-the-other runs turn into noise in the ratio."""
    n = settings.block_mib
    cmds = (("blk_write", ["dd", "if=/dev/zero", "of=/dev/vda", "bs=1M", "count=%d" % n, "oflag=direct"]),
            ("blk_read", ["dd", "if=/dev/vda", "of=/dev/null", "bs=1M", "count=%d" % n, "iflag=direct"]))
    kinds = ["amber"] + (["qemu"] if out.get("qemu_vhost_vsock") else [])  # the agent needs vsock
    for kind in kinds:
        out.setdefault(kind, {"errors": []})
    drives, vms_ = {}, {}
    try:
        for kind in kinds:
            drives[kind] = make_drive(settings, session, kind)
            vms_[kind] = vms.GuestVm(session, kind, vcpus=1, mem_mib=settings.mem_mib, drive=drives[kind],
                                     vsock=True).start()
        for kind in kinds:
            vms_[kind].wait_ready(settings.boot_timeout_s)
            vms_[kind].wait_agent()
        for name, cmd in cmds:
            for kind in kinds:
                out[kind][name] = []
            for i in range(settings.io_runs):
                for kind in (kinds if i % 2 == 0 else kinds[::-1]):
                    r = vms_[kind].agent().exec(cmd, timeout=600.0)
                    if r.returncode != 0 or ("%d+0 records out" % n) not in r.stderr:
                        raise RuntimeError("%s %s: status %s: %s" % (kind, " ".join(cmd), r.returncode,
                                                                     r.stderr[-300:]))
                    out[kind][name].append(n / (r.duration_ms / 1000.0))
            for kind in kinds:
                lib.log("%s %s MiB/s: %s" % (kind, name, ", ".join("%.1f" % x for x in out[kind][name])))
    except Exception as e:  # noqa: BLE001 - the report says what failed and the rest runs on
        for kind in kinds:
            out[kind]["errors"].append("block (side by side): %s" % e)
        lib.log("block FAILED: %s\n%s" % (e, traceback.format_exc(limit=3)))
        for kind, vm in vms_.items():
            lib.log("%s: %s" % (kind, vm.tail()))
    finally:
        for vm in vms_.values():
            vm.stop()
        for drive in drives.values():
            os.unlink(drive)


def bench_tcp(settings, vm, tap, res):
    vm.sh("ip addr add %s/24 dev eth0 && ip link set eth0 up && ping -c 1 -W 10 %s >/dev/null"
          % (tap.guest_ip, tap.host_ip))
    n = settings.tcp_mib * lib.MIB
    res["tcp_g2h"], res["tcp_h2g"] = [], []
    for _ in range(settings.io_runs):
        # guest -> host: the host counts n bytes from accept, then closes (nc then exits).
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((tap.host_ip, 5201))
        ls.listen(1)
        t = threading.Thread(target=vm.sh, args=("dd if=/dev/zero bs=1M count=%d 2>/dev/null | nc %s 5201"
                                                 % (settings.tcp_mib, tap.host_ip),), daemon=True)
        t.start()
        ls.settimeout(120)
        c, _ = ls.accept()
        ls.close()
        c.settimeout(300)
        buf = bytearray(1 << 20)
        got, t0 = 0, time.monotonic()
        while got < n:
            k = c.recv_into(buf)
            if k == 0:
                break
            got += k
        dt = time.monotonic() - t0
        c.close()
        t.join(120)
        if got != n:
            raise RuntimeError("guest->host: %d of %d bytes arrived" % (got, n))
        res["tcp_g2h"].append(settings.tcp_mib / dt)
        # host -> guest: the guest's nc exits at EOF, closing its side once all bytes are in.
        t = threading.Thread(target=vm.sh, args=("nc -l -p 5202 </dev/null | dd of=/dev/null bs=1M",),
                             daemon=True)
        t.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                c = socket.create_connection((tap.guest_ip, 5202), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        c.settimeout(300)
        chunk = bytes(1 << 20)
        t0 = time.monotonic()
        for _ in range(settings.tcp_mib):
            c.sendall(chunk)
        c.shutdown(socket.SHUT_WR)
        c.recv(16)
        dt = time.monotonic() - t0
        c.close()
        t.join(120)
        res["tcp_h2g"].append(settings.tcp_mib / dt)
    lib.log("%s TCP MiB/s guest->host %s, host->guest %s" % (
        vm.kind, ", ".join("%.1f" % x for x in res["tcp_g2h"]), ", ".join("%.1f" % x for x in res["tcp_h2g"])))


def bench_vsock(settings, vm, res):
    res["vsock"] = []
    n = settings.vsock_mib
    for _ in range(settings.vsock_runs):
        got, dt, rc = vms.stream_exec_count(vm, ["dd", "if=/dev/zero", "bs=1M", "count=%d" % n])
        if got != n * lib.MIB or rc != 0:
            raise RuntimeError("vsock stream: %d of %d bytes, status %s" % (got, n * lib.MIB, rc))
        res["vsock"].append(n / dt)
    lib.log("%s vsock MiB/s: %s" % (vm.kind, ", ".join("%.1f" % x for x in res["vsock"])))


def bench_pause(settings, vm, res, suffix):
    """Spins one busy loop per vCPU, then times pause and resume at the client. Each cycle also
    times a no-op round trip after the same idle gap (GET / or QMP query-status): the floor any
    control call pays here. For amber, GET / also reports its server-side pause / resume time."""
    vm.sh(SPIN % vm.vcpus)
    time.sleep(1.0)
    p, r, floor, sp, sr = [], [], [], [], []
    for i in range(settings.pause_cycles):
        time.sleep(0.005)
        t0 = time.perf_counter()
        st = vm.noop()
        floor.append((time.perf_counter() - t0) * 1000.0)
        if st is not None and i > 0:  # the latencies of the previous cycle's calls
            sp.append(st["pause_latency_us_last"] / 1000.0)
            sr.append(st["resume_latency_us_last"] / 1000.0)
        time.sleep(0.005)
        t0 = time.perf_counter()
        vm.pause()
        t1 = time.perf_counter()
        time.sleep(0.005)
        t2 = time.perf_counter()
        vm.resume()
        t3 = time.perf_counter()
        p.append((t1 - t0) * 1000.0)
        r.append((t3 - t2) * 1000.0)
    res["pause%s_ms" % suffix], res["resume%s_ms" % suffix] = p, r
    res["noop%s_ms" % suffix] = floor
    if sp:
        res["pause%s_server_ms" % suffix], res["resume%s_server_ms" % suffix] = sp, sr
    lib.log("%s %d vCPU pause ms median %.2f p99 %.2f; resume median %.2f p99 %.2f; no-op round trip "
            "median %.2f%s" % (vm.kind, vm.vcpus, lib.median(p), lib.p99(p), lib.median(r), lib.p99(r),
                               lib.median(floor),
                               "; server-side pause %.2f resume %.2f" % (lib.median(sp), lib.median(sr))
                               if sp else ""))


def idle_rss(vm, res):
    time.sleep(2.0)
    o = lib.rss_overhead_kib(vm.pid, vm.mem_mib)
    if o is None:
        raise RuntimeError("cannot read /proc/%d" % vm.pid)
    res["idle_rss_mib"], res["idle_guest_mib"], res["idle_overhead_mib"] = (x / 1024.0 for x in o)
    lib.log("%s idle: RSS %.1f MiB, guest RAM %.1f MiB, overhead %.1f MiB"
            % (vm.kind, res["idle_rss_mib"], res["idle_guest_mib"], res["idle_overhead_mib"]))


def run_kind(settings, session, kind, tap):
    res = {"errors": []}
    drive = make_drive(settings, session, kind)
    vm = vms.GuestVm(session, kind, vcpus=1, mem_mib=settings.mem_mib, drive=drive,
                     tap=tap.name if tap else None, vsock=True, control=True).start()
    try:
        res["ready_s"] = vm.wait_ready(settings.boot_timeout_s)
        vm.wait_agent()
        lib.log("%s 1-vCPU guest ready in %.1f s" % (kind, res["ready_s"]))
        step(res, "idle RSS", lambda: idle_rss(vm, res))
        if settings.wants("exec"):
            step(res, "exec", lambda: bench_exec(settings, vm, res))
        if settings.wants("tcp") and tap:
            step(res, "tcp", lambda: bench_tcp(settings, vm, tap, res))
        if settings.wants("vsock"):
            step(res, "vsock", lambda: bench_vsock(settings, vm, res))
        if settings.wants("pause"):
            step(res, "pause 1 vCPU", lambda: bench_pause(settings, vm, res, "1"))
    except Exception as e:  # noqa: BLE001
        res["errors"].append("boot: %s" % e)
        lib.log("%s guest FAILED: %s\n%s" % (kind, e, vm.tail()))
    finally:
        vm.stop()
        os.unlink(drive)
    if settings.wants("pause"):
        vm = vms.GuestVm(session, kind, vcpus=4, mem_mib=settings.mem_mib, vsock=True, control=True).start()
        try:
            vm.wait_ready(settings.boot_timeout_s)
            vm.wait_agent()
            step(res, "pause 4 vCPUs", lambda: bench_pause(settings, vm, res, "4"))
        except Exception as e:  # noqa: BLE001
            res["errors"].append("4-vCPU boot: %s" % e)
            lib.log("%s 4-vCPU guest FAILED: %s\n%s" % (kind, e, vm.tail()))
        finally:
            vm.stop()
    return res


def run(settings, session):
    out = {"host_exec_ms": host_exec_ref_ms(settings) if settings.wants("exec") else []}
    if not vms.qemu_has_vhost_vsock():
        subprocess.run(["modprobe", "vhost_vsock"], stderr=subprocess.DEVNULL)
    out["qemu_vhost_vsock"] = vms.qemu_has_vhost_vsock()
    tap = None
    try:
        tap = lib.Tap()
    except (OSError, subprocess.CalledProcessError) as e:
        out["tap_error"] = str(e)
        lib.log("no TAP (%s): TCP figures skipped" % e)
    try:
        for kind in ("amber", "qemu"):
            if kind == "qemu" and not out["qemu_vhost_vsock"]:
                out[kind] = {"errors": ["no /dev/vhost-vsock: QEMU's guest agent is unreachable"]}
                continue
            out[kind] = run_kind(settings, session, kind, tap)
        if settings.wants("block"):
            bench_block_paired(settings, session, out)
    finally:
        if tap:
            tap.delete()
    return out
