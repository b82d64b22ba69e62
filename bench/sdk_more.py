"""Issue 18's SDK figures on one real sandbox: time to the first streamed byte, an empty
commands.run against execute, and file upload/download MiB/s through sbx.files against
`amberctl cp`. `make bench` runs it as section "sdkmore" (run()); alone it prints a table, where
/dev/kvm works (inside scripts/testhost.sh here):

    scripts/testhost.sh -- /usr/bin/python3 bench/sdk_more.py

Env (alone): BENCH_SDK_RUNS (default 20) command runs per figure, BENCH_SDK_MIB (default 256).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))

from amber import Sandbox  # noqa: E402

AMBERCTL = os.path.join(REPO, "build", "amberctl")


def med(xs):
    return statistics.median(xs)


def first_byte(sbx, runs):
    """Seconds from calling commands.run("echo x") to its first on_stdout chunk."""
    out = []
    for _ in range(runs):
        first = []
        t0 = time.monotonic()
        sbx.commands.run("echo x", on_stdout=lambda s: first or first.append(time.monotonic()))
        out.append(first[0] - t0)
    return out


def timed(fn, runs):
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        fn()
        out.append(time.monotonic() - t0)
    return out


def transfer(sbx, mib, tmp):
    """MiB/s: (files.write, files.read stream, amberctl cp up, amberctl cp down)."""
    src = os.path.join(tmp, "src.bin")
    with open(src, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(mib):
            f.write(block[i % 7:] + block[:i % 7])
    res = {}
    t0 = time.monotonic()
    with open(src, "rb") as f:
        sbx.files.write("/tmp/sdk.bin", f)
    res["sdk up"] = mib / (time.monotonic() - t0)
    t0 = time.monotonic()
    with open(os.path.join(tmp, "sdk-down.bin"), "wb") as f:
        for chunk in sbx.files.read("/tmp/sdk.bin", format="stream"):
            f.write(chunk)
    res["sdk down"] = mib / (time.monotonic() - t0)
    sbx.files.remove("/tmp/sdk.bin")
    ctl = [AMBERCTL, "cp", "--vsock", sbx.vsock_sock]
    t0 = time.monotonic()
    subprocess.run(ctl + [src, "guest:/tmp/ctl.bin"], check=True)
    res["amberctl up"] = mib / (time.monotonic() - t0)
    t0 = time.monotonic()
    subprocess.run(ctl + ["guest:/tmp/ctl.bin", os.path.join(tmp, "ctl-down.bin")], check=True)
    res["amberctl down"] = mib / (time.monotonic() - t0)
    sbx.files.remove("/tmp/ctl.bin")
    for name in ("sdk-down.bin", "ctl-down.bin"):
        if os.path.getsize(os.path.join(tmp, name)) != mib << 20:
            raise RuntimeError("%s: wrong size" % name)
    return res


def measure(runs, mib):
    """{"runs", "mib", "ttfb_s", "run_s", "exec_s", "mbps": {name: MiB/s}} on a fresh sandbox."""
    tmp = tempfile.mkdtemp(prefix="amber-bench-sdk-", dir="/tmp")
    sbx = Sandbox.create(mem_mib=max(512, 2 * mib + 256), runtime_dir=os.path.join(tmp, "amber"))
    try:
        sbx.execute("true")  # warm
        ttfb = first_byte(sbx, runs)
        run_s = timed(lambda: sbx.commands.run("true"), runs)
        exe_s = timed(lambda: sbx.execute("true"), runs)
        mbps = transfer(sbx, mib, tmp)
    finally:
        sbx.delete()
        subprocess.run(["rm", "-rf", tmp])
    return {"runs": runs, "mib": mib, "ttfb_s": ttfb, "run_s": run_s, "exec_s": exe_s, "mbps": mbps}


def run(settings, session):
    """bench.py's section: settings.sdk_runs runs, a settings.vsock_mib MiB file."""
    try:
        return measure(settings.sdk_runs, settings.vsock_mib)
    except Exception as e:  # noqa: BLE001 - the report lists it
        return {"errors": ["%s: %s" % (type(e).__name__, e)]}


def main():
    res = measure(int(os.environ.get("BENCH_SDK_RUNS", "20")), int(os.environ.get("BENCH_SDK_MIB", "256")))
    runs, mib, ttfb, run_s, exe_s, mbps = (res[k] for k in ("runs", "mib", "ttfb_s", "run_s", "exec_s", "mbps"))
    print("| figure (%d runs, %d MiB file) | median | min | max |" % (runs, mib))
    print("|---|---|---|---|")
    for name, xs in (("first streamed byte, commands.run('echo x') (ms)", ttfb),
                     ("empty commands.run('true') (ms)", run_s), ("empty execute('true') (ms)", exe_s)):
        print("| %s | %.1f | %.1f | %.1f |" % (name, med(xs) * 1e3, min(xs) * 1e3, max(xs) * 1e3))
    print("| commands.run overhead over execute (ms) | %.1f | | |" % ((med(run_s) - med(exe_s)) * 1e3))
    for name, v in mbps.items():
        print("| %s (MiB/s) | %.1f | | |" % (name, v))


if __name__ == "__main__":
    main()
