#!/usr/bin/python3
"""`make run`: a short transcript of amber's main job through the Python SDK.

Creates a sandbox, writes a file and starts a background counter, pauses (showing the state
from GET / and the pause record), waits, resumes, shows that the file and the counter process
survived (with the gap in its timestamps), and deletes the sandbox. Exits non-zero on failure.
"""
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))

from amber import Sandbox, SandboxError, runtime_root, timeout_scale  # noqa: E402

PAUSE_S = 3.0
# One line per tick: count, wall clock (s), uptime (s; busybox date has no %N).
COUNTER = """echo $$ > /tmp/counter.pid
i=0
while true; do
    i=$((i+1))
    echo $i $(date +%s) $(cut -d' ' -f1 /proc/uptime) >> /tmp/counter
    sleep 0.2
done
"""


def say(msg=""):
    print(msg, flush=True)


def step(msg):
    say("==> " + msg)


def counter_lines(sbx):
    rows = []
    for line in sbx.download("/tmp/counter").decode().splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append((int(parts[0]), int(parts[1]), float(parts[2])))
    return rows


def clock_skew(sbx):
    """Guest wall clock minus the host's, in seconds (1 s resolution: busybox date)."""
    t0 = time.time()
    guest = int(sbx.execute("date +%s").stdout.strip() or 0)
    return guest + 0.5 - (t0 + time.time()) / 2


def wait_for_ticks(sbx, n, limit_s):
    deadline = time.monotonic() + limit_s
    while True:
        rows = counter_lines(sbx) if sbx.execute("test -s /tmp/counter").returncode == 0 else []
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def main():
    scale = timeout_scale()
    where = "hardware virtualization" if scale == 1 else "software-emulated CPU (timeouts x%g)" % scale
    say("amber demo: one sandbox, paused and resumed, on %s" % where)
    say("runtime directory: %s" % runtime_root())
    say()

    step("create a sandbox (1 vCPU, 256 MiB)")
    t0 = time.monotonic()
    sbx = Sandbox.create(vcpus=1, mem_mib=256)
    say("    %s is up after %.1f s (amber pid %s)" % (sbx.id, time.monotonic() - t0, sbx.pid))
    ok = False
    try:
        r = sbx.execute("uname -sr")
        say("    guest kernel: %s" % r.stdout.strip())

        step("write a file and start a background counter")
        sbx.upload("/tmp/hello.txt", "written before the pause\n")
        sbx.upload("/tmp/counter.sh", COUNTER, mode=0o755)
        sbx.execute("setsid sh /tmp/counter.sh >/dev/null 2>&1 </dev/null &")
        rows = wait_for_ticks(sbx, 3, 30 * scale)
        pid = sbx.download("/tmp/counter.pid").decode().strip()
        say("    /tmp/hello.txt written; counter pid %s, %d ticks so far" % (pid, len(rows)))

        skew_before = clock_skew(sbx)
        step("pause")
        rec = sbx.pause()
        say("    pause() -> %s" % rec)
        info = sbx.info()
        shown = {k: info[k] for k in ("id", "state", "paused_at", "pause_latency_us_last") if k in info}
        say("    GET /   -> %s" % shown)
        say("    the guest is frozen; the host waits %.0f s" % PAUSE_S)
        time.sleep(PAUSE_S)

        step("resume")
        rec = sbx.resume()
        say("    resume() -> %s" % rec)
        say("    guest wall clock minus host: %+.1f s before the pause, %+.1f s after it"
            % (skew_before, clock_skew(sbx)))

        before = len(rows)
        rows = wait_for_ticks(sbx, before + 5, 30 * scale)
        step("after resume")
        say("    /tmp/hello.txt: %s" % sbx.download("/tmp/hello.txt").decode().strip())
        alive = sbx.execute("kill -0 %s && cat /proc/%s/cmdline | tr '\\0' ' '" % (pid, pid))
        if alive.returncode != 0:
            raise SystemExit("demo: the counter process %s did not survive the pause" % pid)
        say("    counter pid %s is still running (%s...)" % (pid, alive.stdout.strip()[:40]))
        gaps = [(b[2] - a[2], a, b) for a, b in zip(rows, rows[1:])]
        if not gaps:
            raise SystemExit("demo: the counter wrote too few ticks (%d)" % len(rows))
        gap, a, b = max(gaps)
        say("    counter ticks: %d; the largest gap is between tick %d and tick %d:" % (len(rows), a[0], b[0]))
        for t in (a, b):
            say("      tick %-4d at guest uptime %8.2f s" % (t[0], t[2]))
        say("    a %.2f s gap (ticks are 0.2 s apart otherwise): the pause; then the counter carried on" % gap)
        ok = True
    finally:
        step("delete")
        t0 = time.monotonic()
        pid = sbx.pid
        d = sbx.dir
        sbx.delete()
        left = os.path.exists("/proc/%s" % pid) if pid else False
        say("    deleted in %.1f s; runtime directory %s; amber process %s"
            % (time.monotonic() - t0, "removed" if not os.path.exists(d) else "STILL THERE",
               "gone" if not left else "STILL RUNNING"))
    say()
    say("demo: %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SandboxError as e:
        print("demo: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
