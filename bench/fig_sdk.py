"""Issue 6's figures through the Python SDK: create-to-first-exec latency and create+delete
throughput, one sandbox at a time (each a separate amber process with its own rootfs copy).

When the SDK cannot be imported or cannot create a sandbox, the same cycle is timed with
amber + amberctl directly (amber booted as the SDK boots it, amberctl exec, amberctl delete),
and the result says so.
"""
import os
import subprocess
import time
import traceback

import lib


def _sdk_cycle(Sandbox, root):
    t0 = time.monotonic()
    sbx = Sandbox.create(vcpus=1, mem_mib=256, runtime_dir=root)
    t1 = time.monotonic()
    r = sbx.execute("true")
    t2 = time.monotonic()
    if r.returncode != 0:
        raise RuntimeError("first exec returned %s" % r.returncode)
    sbx.delete()
    t3 = time.monotonic()
    return t1 - t0, t2 - t0, t3 - t2


def _direct_cycle(session, i):
    """amber launched with the SDK's flags; amberctl exec over the hybrid vsock; SIGTERM delete."""
    d = session.path("direct-%d" % i)
    os.makedirs(d)
    rootfs = lib.harness.sparse_copy(lib.harness.ROOTFS, os.path.join(d, "rootfs.ext4"))
    vsock = os.path.join(d, "vsock.sock")
    argv = [lib.AMBER, "--kernel", lib.harness.VMLINUZ, "--initrd", lib.harness.INITRAMFS,
            "--drive", "path=%s,root" % rootfs, "--vsock", "cid=3,uds=%s" % vsock,
            "--api-sock", os.path.join(d, "api.sock"), "--mem-mib", "256",
            "--console", os.path.join(d, "console.log")]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            r = subprocess.run([lib.AMBERCTL, "ping", "--vsock", vsock], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() - t0 > 300:
                raise RuntimeError("amber did not come up (status %s)" % proc.poll())
            time.sleep(0.05)
        t1 = time.monotonic()
        subprocess.run([lib.AMBERCTL, "exec", "--vsock", vsock, "--", "true"], check=True)
        t2 = time.monotonic()
    finally:
        proc.terminate()
        proc.wait(60)
    subprocess.run(["rm", "-rf", d])
    t3 = time.monotonic()
    return t1 - t0, t2 - t0, t3 - t2


def run(settings, session):
    out = {"create_s": [], "first_exec_s": [], "delete_s": [], "via": "sdk", "errors": []}
    try:
        from amber import Sandbox  # noqa: PLC0415
    except Exception as e:  # noqa: BLE001
        Sandbox = None
        out["errors"].append("SDK import failed: %s" % e)
    root = session.path("sdk-runtime")
    for i in range(settings.sdk_runs):
        try:
            if out["via"] == "sdk" and Sandbox is not None:
                c, f, d = _sdk_cycle(Sandbox, root)
            else:
                out["via"] = "amber+amberctl"
                c, f, d = _direct_cycle(session, i)
        except Exception as e:  # noqa: BLE001
            out["errors"].append("sandbox %d via %s: %s" % (i + 1, out["via"], e))
            lib.log("sandbox %d FAILED: %s\n%s" % (i + 1, e, traceback.format_exc(limit=4)))
            if out["via"] == "sdk" and not out["create_s"]:
                out["via"] = "amber+amberctl"  # the SDK is not usable yet: measure directly
            continue
        out["create_s"].append(c)
        out["first_exec_s"].append(f)
        out["delete_s"].append(d)
        lib.log("sandbox %d (%s): create %.2f s, create->first exec %.2f s, delete %.2f s"
                % (i + 1, out["via"], c, f, d))
    return out
