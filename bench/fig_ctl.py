"""Issue 5's control-plane figures: process start to API socket ready (amber vs QEMU's QMP),
and pause / resume of the tiny spinning guest (build/guests/spin, no Linux) at the API client.
"""
import os
import socket
import subprocess
import time

import lib

SPIN_GUEST = os.path.join(lib.harness.BUILD, "guests", "spin")
POLL_S = 0.0005


def _ready_http(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)  # a listener that accepted but does not answer yet is "not ready"
    try:
        s.connect(path)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        return s.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


def _ready_qmp(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(path)
        return b"QMP" in s.recv(4096)
    except OSError:
        return False
    finally:
        s.close()


def time_to_socket(argv, path, ready, timeout_s=60.0):
    """ms from spawning argv until ready(path) holds; the process is then ended."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if os.path.exists(path) and ready(path):
                return (time.perf_counter() - t0) * 1000.0
            if proc.poll() is not None:
                raise RuntimeError("%s exited with %s: %s" % (argv[0], proc.returncode, proc.stderr.read()[-300:]))
            if time.perf_counter() - t0 > timeout_s:
                raise RuntimeError("%s: no socket after %.0f s" % (argv[0], timeout_s))
            time.sleep(POLL_S)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def configured_argvs(settings, session, api, qmp):
    """The like-with-like startup pair: each VMM given the same VM (vmlinuz + initramfs, 1 vCPU,
    settings.mem_mib) before its guest runs. amber reads it from --config-file and answers GET /
    once the VM is built (memory, kernel and initramfs loaded, devices, vCPUs created); QEMU -S
    greets on QMP once it has built the same, its vCPUs held stopped."""
    import json  # noqa: PLC0415

    cfg = session.path("startup-config.json")
    with open(cfg, "w") as f:
        json.dump({"boot-source": {"kernel_image_path": lib.harness.VMLINUZ,
                                   "initrd_path": lib.harness.INITRAMFS, "boot_args": lib.CMDLINE},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": settings.mem_mib}}, f)
    amber = [lib.AMBER, "--config-file", cfg, "--api-sock", api]
    qemu = [lib.QEMU, "-M", "microvm,acpi=on", "-enable-kvm", "-cpu", "host", "-m", str(settings.mem_mib),
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-S",
            "-kernel", lib.harness.VMLINUZ, "-initrd", lib.harness.INITRAMFS, "-append", lib.CMDLINE,
            "-qmp", "unix:%s,server=on,wait=off" % qmp]
    return amber, qemu


def run_startup(settings, session):
    """Startup to API ready, two pairs, each run in turns (who goes first alternates):
    - empty: amber --api-sock alone (no VM yet: it waits for InstanceStart) vs QEMU -S with QMP
      (ready = greeting read), QEMU given only the machine and RAM;
    - configured (needs /dev/kvm and the guest images): the same VM for both, see
      configured_argvs.
    Also the spawn floor: /bin/true spawned and waited for. The empty pair needs no /dev/kvm
    (without one, QEMU runs with TCG instead)."""
    kvm = lib.kvm_usable()
    out = {"amber": [], "qemu": [], "spawn_floor": [], "errors": [], "qemu_accel": "kvm" if kvm else "tcg",
           "amber_configured": [], "qemu_configured": []}
    api = session.path("startup-api.sock")
    qmp = session.path("startup-qmp.sock")
    accel = ["-enable-kvm", "-cpu", "host"] if kvm else ["-accel", "tcg"]
    qemu = [lib.QEMU, "-M", "microvm,acpi=on"] + accel + ["-m", str(settings.mem_mib), "-nodefaults",
                                                          "-no-user-config", "-display", "none", "-S",
                                                          "-qmp", "unix:%s,server=on,wait=off" % qmp]
    pairs = [("amber", [lib.AMBER, "--api-sock", api], api, _ready_http), ("qemu", qemu, qmp, _ready_qmp)]
    configured = []
    if kvm and all(os.path.exists(p) for p in (lib.harness.VMLINUZ, lib.harness.INITRAMFS)):
        amber_c, qemu_c = configured_argvs(settings, session, api, qmp)
        configured = [("amber_configured", amber_c, api, _ready_http),
                      ("qemu_configured", qemu_c, qmp, _ready_qmp)]
    for i in range(settings.startup_runs):
        for group in (pairs, configured):
            for kind, argv, path, ready in (group if i % 2 == 0 else group[::-1]):
                try:
                    out[kind].append(time_to_socket(argv, path, ready))
                except (OSError, RuntimeError) as e:
                    out["errors"].append("%s startup: %s" % (kind, e))
                    lib.log("%s startup FAILED: %s" % (kind, e))
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"])
        out["spawn_floor"].append((time.perf_counter() - t0) * 1000.0)
    for suffix in ("", "_configured"):
        a, q = out["amber" + suffix], out["qemu" + suffix]
        if a:
            lib.log("startup%s to API ready: amber median %.2f ms, QEMU QMP median %s ms" % (
                suffix.replace("_", " "), lib.median(a), "%.2f" % lib.median(q) if q else "—"))
    return out


def tiny_vcpu_counts():
    return sorted({1, os.cpu_count() or 1, 4})


def run_tiny(settings, session):
    """Pause / resume of build/guests/spin (64 MiB) with 1, host-core-count and 4 vCPUs."""
    import vms  # noqa: PLC0415 - only here: the direct run needs no guest images

    out = {}
    if not lib.kvm_usable():
        return {"unavailable": "no /dev/kvm on this host"}
    for n in tiny_vcpu_counts():
        res = {"errors": []}
        vm = vms.GuestVm(session, "amber", vcpus=n, mem_mib=64, control=True, kernel=SPIN_GUEST,
                         initrd=None, cmdline=lib.CMDLINE)
        vm.start()
        try:
            vm.wait_ready(120.0)
            p, r = [], []
            for _ in range(settings.pause_cycles):
                t0 = time.perf_counter()
                vm.pause()
                t1 = time.perf_counter()
                time.sleep(0.002)
                t2 = time.perf_counter()
                vm.resume()
                t3 = time.perf_counter()
                time.sleep(0.002)
                p.append((t1 - t0) * 1000.0)
                r.append((t3 - t2) * 1000.0)
            res["pause_ms"], res["resume_ms"] = p, r
            lib.log("tiny guest %d vCPU: pause median %.3f p99 %.3f ms; resume median %.3f p99 %.3f ms"
                    % (n, lib.median(p), lib.p99(p), lib.median(r), lib.p99(r)))
        except Exception as e:  # noqa: BLE001
            res["errors"].append(str(e))
            lib.log("tiny guest %d vCPU FAILED: %s\n%s" % (n, e, vm.tail()))
        finally:
            vm.stop()
        out[str(n)] = res
    return out
