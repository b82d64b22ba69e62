"""Issues 3, 4 and 5 in a booted guest, driven through the agent, for amber and QEMU alike.

amber's and QEMU's guests boot side by side (1 vCPU, a TAP each, vsock and a control socket)
and take turns, round by round, for idle RSS, exec round trips, TCP both ways, vsock throughput,
and pause / resume (CPU per cycle with the guest idle, latency with the vCPU spinning). A second
pair with 4 vCPUs gives pause / resume again. Block dd runs last, in an amber guest and one QEMU
guest per aio= setting, booted side by side and measured in turns, with each VMM's CPU per MiB.
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


def bench_exec(vm, res, n):
    """One round: n exec round trips (amberctl for amber, then the Python client for both)."""
    if vm.kind == "amber":
        argv = [lib.AMBERCTL, "exec", "--vsock", vm.vsock_path, "--", "true"]
        res.setdefault("exec_ctl_ms", []).extend(
            timed_ms(lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL), n))
    client = vm.agent()

    def one():
        r = client.exec(["true"], timeout=60.0)
        if r.returncode != 0:
            raise RuntimeError("true exited %s" % r.returncode)
    res.setdefault("exec_py_ms", []).extend(timed_ms(one, n))


def make_drive(settings, folder, kind):
    """A preallocated raw drive file of settings.block_mib in folder."""
    drive = os.path.join(folder, "%s-drive.img" % kind)
    with open(drive, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, settings.block_mib * lib.MIB)
    return drive


class DriveFolder:
    """Where the block drives live (settings.block_fs): an ext4 file system on a loop device
    over a tmpfs file, which both VMMs open O_DIRECT (the copy into the page cache falls to
    the loop device's kernel thread, outside both VMMs, so their CPU per MiB is their own
    work), or tmpfs itself (page-cached for both: Linux 6.1's tmpfs refuses O_DIRECT). ext4
    needs root, mkfs.ext4 and a loop device; without them it falls back to tmpfs and says so.
    Attributes: path, direct (True on ext4) and label (for the report)."""

    def __init__(self, settings, session, n):
        self.session, self.image, self.mnt = session, None, None
        self.path, self.direct, self.label = tmpfs_dir(session), False, "tmpfs (page-cached)"
        if settings.block_fs != "ext4":
            return
        image = os.path.join(tmpfs_dir(session), "blockfs.img")
        mnt = session.path("blockfs")
        try:
            with open(image, "wb") as f:
                f.truncate((n * settings.block_mib + 128) * lib.MIB)
            self.image = image
            subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            os.makedirs(mnt, exist_ok=True)
            subprocess.run(["mount", "-o", "loop", image, mnt], check=True, stderr=subprocess.PIPE)
        except (OSError, subprocess.CalledProcessError) as e:
            why = getattr(e, "stderr", b"") or b""
            lib.log("block: no ext4 on a loop device (%s %s): the drives go on tmpfs"
                    % (e, why.decode(errors="replace").strip()))
            self.close()
            return
        self.mnt, self.path, self.direct = mnt, mnt, True
        self.label = "ext4 on a loop device over tmpfs (O_DIRECT)"

    def close(self):
        if self.mnt:
            subprocess.run(["umount", self.mnt], stderr=subprocess.DEVNULL)
            self.mnt = None
        if self.image:
            os.unlink(self.image)
            self.image = None


def turns(kinds, i):
    """The order the VMMs take in round i: rotated each round, so none always goes first."""
    k = i % len(kinds)
    return kinds[k:] + kinds[:k]


def bench_block_paired(settings, session, out):
    """Guest dd on /dev/vda, amber and QEMU booted side by side and run in turns (who goes first
    rotates), so that all see the same test-host conditions: the test host drifts by tens of
    percent over a bench, which one-VMM-after-the-other runs turn into noise in the ratio. QEMU
    runs twice when its build has aio=io_uring: aio=threads and aio=io_uring. Each run also
    records the VMM's own CPU time (lib.CpuMeter) per MiB moved."""
    n = settings.block_mib
    cmds = (("blk_write", ["dd", "if=/dev/zero", "of=/dev/vda", "bs=1M", "count=%d" % n, "oflag=direct"]),
            ("blk_read", ["dd", "if=/dev/vda", "of=/dev/null", "bs=1M", "count=%d" % n, "iflag=direct"]))
    kinds = ["amber"]
    if out.get("qemu_vhost_vsock"):  # the agent needs vsock
        kinds.append("qemu")
        if out.get("qemu_io_uring"):
            kinds.append("qemu_uring")
    for kind in kinds:
        out.setdefault(kind, {"errors": []})
    drives, vms_ = {}, {}
    folder = DriveFolder(settings, session, len(kinds))
    out["block_fs"] = folder.label
    try:
        for j, kind in enumerate(kinds):
            drives[kind] = make_drive(settings, folder.path, kind)
            vms_[kind] = vms.GuestVm(session, "amber" if kind == "amber" else "qemu", vcpus=1,
                                     mem_mib=settings.mem_mib, drive=drives[kind], vsock=True, name=kind,
                                     cid=lib.QEMU_CID + j, direct=folder.direct,
                                     aio="io_uring" if kind == "qemu_uring" else "threads").start()
        for kind in kinds:
            vms_[kind].wait_ready(settings.boot_timeout_s)
            vms_[kind].wait_agent()
        for name, cmd in cmds:
            for kind in kinds:
                out[kind][name] = []
                out[kind][name + "_cpu_ms_per_mib"] = []
                out[kind][name + "_own_cpu_ms_per_mib"] = []
            for i in range(settings.io_runs):
                for kind in turns(kinds, i):
                    meter = lib.CpuMeter(vms_[kind].pid).start()
                    r = vms_[kind].agent().exec(cmd, timeout=600.0)
                    total, own = meter.stop()
                    if r.returncode != 0 or ("%d+0 records out" % n) not in r.stderr:
                        raise RuntimeError("%s %s: status %s: %s" % (kind, " ".join(cmd), r.returncode,
                                                                     r.stderr[-300:]))
                    out[kind][name].append(n / (r.duration_ms / 1000.0))
                    out[kind][name + "_cpu_ms_per_mib"].append(total * 1000.0 / n)
                    out[kind][name + "_own_cpu_ms_per_mib"].append(own * 1000.0 / n)
            for kind in kinds:
                lib.log("%s %s MiB/s: %s; VMM CPU ms/MiB (all, without guest time): %s" % (
                    kind, name, ", ".join("%.1f" % x for x in out[kind][name]),
                    ", ".join("%.2f/%.2f" % xy for xy in zip(out[kind][name + "_cpu_ms_per_mib"],
                                                             out[kind][name + "_own_cpu_ms_per_mib"]))))
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
        folder.close()


def tcp_setup(vm, tap):
    vm.sh("ip addr add %s/24 dev eth0 && ip link set eth0 up && ping -c 1 -W 10 %s >/dev/null"
          % (tap.guest_ip, tap.host_ip))


def bench_tcp(settings, vm, tap, res):
    """One round: the TCP stream guest -> host, then host -> guest."""
    n = settings.tcp_mib * lib.MIB
    res.setdefault("tcp_g2h", [])
    res.setdefault("tcp_h2g", [])
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


def bench_vsock(settings, vm, res):
    """One round: the agent streams vsock_mib MiB of stdout to the host."""
    n = settings.vsock_mib
    got, dt, rc = vms.stream_exec_count(vm, ["dd", "if=/dev/zero", "bs=1M", "count=%d" % n])
    if got != n * lib.MIB or rc != 0:
        raise RuntimeError("vsock stream: %d of %d bytes, status %s" % (got, n * lib.MIB, rc))
    res.setdefault("vsock", []).append(n / dt)


def bench_pause(vm, res, suffix, n):
    """One round of n cycles with the guest's vCPUs spinning (start them with SPIN first): times
    pause and resume at the client. Each cycle also times a no-op round trip after the same idle
    gap (GET / or QMP query-status): the floor any control call pays here. For amber, GET / also
    reports its server-side pause / resume time."""
    p, r, floor, sp, sr = [], [], [], [], []
    for i in range(n):
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
    for key, xs in (("pause%s_ms", p), ("resume%s_ms", r), ("noop%s_ms", floor),
                    ("pause%s_server_ms", sp), ("resume%s_server_ms", sr)):
        if xs:
            res.setdefault(key % suffix, []).extend(xs)


def bench_pause_cpu(vm, res, suffix, n):
    """One round: the VMM's own CPU time per pause/resume cycle, the guest idle. CPU over n
    back-to-back cycles (5 ms apart, as bench_pause) minus what the VMM burns idle over the same
    wall time (sampled for 1 s just before), divided by n; recorded in ms, total (user + system,
    all threads) and without guest time."""
    meter = lib.CpuMeter(vm.pid).start()
    t0 = time.monotonic()
    time.sleep(1.0)
    idle_total, idle_own = meter.stop()
    idle_s = time.monotonic() - t0
    meter.start()
    t0 = time.monotonic()
    for _ in range(n):
        vm.pause()
        time.sleep(0.005)
        vm.resume()
        time.sleep(0.005)
    total, own = meter.stop()
    wall = time.monotonic() - t0
    res.setdefault("pause%s_cpu_ms" % suffix, []).append(
        max(0.0, total - idle_total * wall / idle_s) * 1000.0 / n)
    res.setdefault("pause%s_own_cpu_ms" % suffix, []).append(
        max(0.0, own - idle_own * wall / idle_s) * 1000.0 / n)


def log_pause(kind, res, suffix):
    p, r, fl = res.get("pause%s_ms" % suffix), res.get("resume%s_ms" % suffix), res.get("noop%s_ms" % suffix)
    if p:
        lib.log("%s %s vCPU pause ms median %.2f p99 %.2f; resume median %.2f p99 %.2f; no-op median %.2f"
                % (kind, suffix, lib.median(p), lib.p99(p), lib.median(r), lib.p99(r), lib.median(fl)))
    c = res.get("pause%s_cpu_ms" % suffix)
    if c:
        lib.log("%s %s vCPU CPU per pause/resume cycle ms: %s (without guest time: %s)" % (
            kind, suffix, ", ".join("%.2f" % x for x in c),
            ", ".join("%.2f" % x for x in res["pause%s_own_cpu_ms" % suffix])))


def idle_rss(vm, res):
    time.sleep(2.0)
    o = lib.rss_overhead_kib(vm.pid, vm.mem_mib)
    if o is None:
        raise RuntimeError("cannot read /proc/%d" % vm.pid)
    res["idle_rss_mib"], res["idle_guest_mib"], res["idle_overhead_mib"] = (x / 1024.0 for x in o)
    lib.log("%s idle: RSS %.1f MiB, guest RAM %.1f MiB, overhead %.1f MiB"
            % (vm.kind, res["idle_rss_mib"], res["idle_guest_mib"], res["idle_overhead_mib"]))


def rounds(total, per_round):
    """Splits total cycles into rounds of per_round (the last may be shorter)."""
    return [min(per_round, total - k) for k in range(0, total, per_round)]


def alternate(kinds, vms_, outs, name, n_rounds, fn):
    """Runs fn(kind, vm, res, round) for every VMM in turns, round by round (who goes first
    rotates): both VMMs see the same test-host drift. A failure stops that VMM's rounds only."""
    failed = set()
    for i in range(n_rounds):
        for kind in turns(kinds, i):
            if kind in failed:
                continue
            before = len(outs[kind]["errors"])
            step(outs[kind], name, lambda: fn(kind, vms_[kind], outs[kind], i))
            if len(outs[kind]["errors"]) > before:
                failed.add(kind)


def boot_side_by_side(settings, session, kinds, outs, vcpus, taps=None):
    """Boots one guest per VMM at once; returns {kind: GuestVm} of those whose agent answered."""
    started = {}
    for kind in kinds:
        tap = taps.get(kind) if taps else None
        started[kind] = vms.GuestVm(session, kind, vcpus=vcpus, mem_mib=settings.mem_mib,
                                    tap=tap.name if tap else None, vsock=True, control=True,
                                    name="%s-%d" % (kind, vcpus)).start()
    up = {}
    for kind, vm in started.items():
        try:
            ready = vm.wait_ready(settings.boot_timeout_s)
            vm.wait_agent()
            lib.log("%s %d-vCPU guest ready in %.1f s" % (kind, vcpus, ready))
            if vcpus == 1:
                outs[kind]["ready_s"] = ready
            up[kind] = vm
        except Exception as e:  # noqa: BLE001
            outs[kind]["errors"].append("%d-vCPU boot: %s" % (vcpus, e))
            lib.log("%s %d-vCPU guest FAILED: %s\n%s" % (kind, vcpus, e, vm.tail()))
            vm.stop()
    return up


def run_pairs(settings, session, kinds, outs, taps):
    """The 1-vCPU figures (idle RSS, exec, TCP, vsock, pause) and the 4-vCPU pause, with amber's
    and QEMU's guests booted side by side and measured in alternating rounds."""
    up = boot_side_by_side(settings, session, kinds, outs, 1, taps)
    kinds1 = [k for k in kinds if k in up]
    try:
        for kind in kinds1:
            step(outs[kind], "idle RSS", lambda: idle_rss(up[kind], outs[kind]))
        if settings.wants("exec"):
            chunks = rounds(settings.exec_cycles, max(1, settings.exec_cycles // 10))
            alternate(kinds1, up, outs, "exec", len(chunks),
                      lambda k, vm, res, i: bench_exec(vm, res, chunks[i]))
        if settings.wants("tcp") and all(taps.get(k) for k in kinds1):
            for kind in kinds1:
                step(outs[kind], "tcp setup", lambda: tcp_setup(up[kind], taps[kind]))
            alternate(kinds1, up, outs, "tcp", settings.io_runs,
                      lambda k, vm, res, i: bench_tcp(settings, vm, taps[k], res))
        if settings.wants("vsock"):
            alternate(kinds1, up, outs, "vsock", settings.vsock_runs,
                      lambda k, vm, res, i: bench_vsock(settings, vm, res))
        if settings.wants("pause"):
            pause_pairs(settings, kinds1, up, outs, "1")
    finally:
        for vm in up.values():
            vm.stop()
    for kind in kinds1:
        res = outs[kind]
        for key in ("exec_ctl_ms", "exec_py_ms"):
            if res.get(key):
                lib.log("%s %s median %.2f p99 %.2f" % (kind, key, lib.median(res[key]), lib.p99(res[key])))
        if res.get("tcp_g2h"):
            lib.log("%s TCP MiB/s guest->host %s, host->guest %s" % (
                kind, ", ".join("%.1f" % x for x in res["tcp_g2h"]),
                ", ".join("%.1f" % x for x in res.get("tcp_h2g", []))))
        if res.get("vsock"):
            lib.log("%s vsock MiB/s: %s" % (kind, ", ".join("%.1f" % x for x in res["vsock"])))
    if settings.wants("pause"):
        up = boot_side_by_side(settings, session, kinds, outs, 4)
        try:
            pause_pairs(settings, [k for k in kinds if k in up], up, outs, "4")
        finally:
            for vm in up.values():
                vm.stop()


def pause_pairs(settings, kinds, up, outs, suffix):
    """CPU per cycle with the guests idle, then latency with every vCPU spinning, in turns."""
    cpu_chunks = rounds(settings.pause_cycles, max(1, settings.pause_cycles // 4))
    alternate(kinds, up, outs, "pause CPU %s vCPU" % suffix, len(cpu_chunks),
              lambda k, vm, res, i: bench_pause_cpu(vm, res, suffix, cpu_chunks[i]))
    for kind in kinds:
        step(outs[kind], "spin", lambda: up[kind].sh(SPIN % up[kind].vcpus))
    time.sleep(1.0)
    chunks = rounds(settings.pause_cycles, max(1, settings.pause_cycles // 10))
    alternate(kinds, up, outs, "pause %s vCPU" % suffix, len(chunks),
              lambda k, vm, res, i: bench_pause(vm, res, suffix, chunks[i]))
    for kind in kinds:
        log_pause(kind, outs[kind], suffix)


def run(settings, session):
    out = {"host_exec_ms": host_exec_ref_ms(settings) if settings.wants("exec") else []}
    if not vms.qemu_has_vhost_vsock():
        subprocess.run(["modprobe", "vhost_vsock"], stderr=subprocess.DEVNULL)
    out["qemu_vhost_vsock"] = vms.qemu_has_vhost_vsock()
    out["qemu_io_uring"] = vms.qemu_has_io_uring(session.path("aio-probe.img"))
    kinds = ["amber", "qemu"]
    for kind in kinds:
        out[kind] = {"errors": []}
    if not out["qemu_vhost_vsock"]:
        out["qemu"]["errors"].append("no /dev/vhost-vsock: QEMU's guest agent is unreachable")
        kinds = ["amber"]
    taps = {}
    try:
        if settings.wants("tcp"):
            try:
                for j, kind in enumerate(kinds):
                    taps[kind] = lib.Tap("ambbench%d" % j, subnet=j)
            except (OSError, subprocess.CalledProcessError) as e:
                out["tap_error"] = str(e)
                lib.log("no TAP (%s): TCP figures skipped" % e)
                taps = {}
        if any(settings.wants(x) for x in ("exec", "tcp", "vsock", "pause")):
            run_pairs(settings, session, kinds, out, taps)
        if settings.wants("block"):
            bench_block_paired(settings, session, out)
    finally:
        for tap in taps.values():
            tap.delete()
    return out
