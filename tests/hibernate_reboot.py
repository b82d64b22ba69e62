#!/usr/bin/env python3
"""A hibernated sandbox survives a reboot of its host (issue 16): it is hibernated in one
test-host boot and resumed, with its files and a running counter, in a second, fresh boot.

    flock /tmp/amber-testhost-a.lock tests/hibernate_reboot.py     # both boots, on this machine
    tests/hibernate_reboot.py hibernate | resume                    # one phase, where /dev/kvm works

The state directory (AMBER_STATE_DIR, as XDG_STATE_HOME would be for a user) is
build/hibernate-reboot/state on the checkout, the only place that outlives a test-host boot;
the runtime directory (/tmp, a tmpfs there) and every process do not. On a machine with its own
KVM, run `hibernate`, reboot, then `resume`. Prints one line per check and exits 1 on a failure.
"""
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(REPO, "build", "hibernate-reboot")
STATE = os.path.join(WORK, "state")
RECORD = os.path.join(WORK, "record.json")
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))
os.environ["AMBER_STATE_DIR"] = STATE

from amber import Sandbox  # noqa: E402

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done"
failed = []


def check(ok, what):
    print("%s: %s" % ("PASS" if ok else "FAIL", what), flush=True)
    if not ok:
        failed.append(what)
    return ok


def boot_id():
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def sh(sbx, cmd):
    r = sbx.execute(cmd, timeout=120)
    if r.exit_code != 0:
        raise RuntimeError("%r exited %d: %s" % (cmd, r.exit_code, r.stderr))
    return r.stdout


def hibernate():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(STATE)
    t0 = time.monotonic()
    sbx = Sandbox.create()
    print("cold create: %.1f s, sandbox %s in %s" % (time.monotonic() - t0, sbx.id, sbx.dir), flush=True)
    sh(sbx, "echo on-disk > /root/kept; echo in-ram > /tmp/kept")
    h = sbx.commands.run(COUNTER, background=True)
    h.disconnect()
    time.sleep(1)
    count = int(sh(sbx, "cat /tmp/count"))
    t0 = time.monotonic()
    rec = sbx.pause(keep_memory=False)
    took = time.monotonic() - t0
    pd = os.path.join(STATE, sbx.id)
    sizes = {f: os.stat(os.path.join(pd, f)).st_blocks * 512 for f in sorted(os.listdir(pd))}
    print("hibernate: %.1f s into %s: %s" % (took, pd, ", ".join("%s %.1f MiB" % (f, n / 2**20)
                                                                   for f, n in sizes.items())), flush=True)
    check(rec.get("memory") == "disk" and rec.get("paused") is True, "pause(keep_memory=False) -> %r" % rec)
    check(not os.path.exists(sbx.dir), "the runtime directory %s is gone" % sbx.dir)
    with open(RECORD, "w") as f:
        json.dump({"id": sbx.id, "runtime_dir": sbx.dir, "counter_pid": h.pid, "count": count,
                   "boot_id": boot_id(), "hibernated_at": rec.get("paused_at")}, f)
        f.flush()
        os.fsync(f.fileno())


def resume():
    with open(RECORD) as f:
        rec = json.load(f)
    sid = rec["id"]
    check(boot_id() != rec["boot_id"], "this is another boot (boot_id %s, hibernated in %s)"
          % (boot_id(), rec["boot_id"]))
    check(not os.path.exists(rec["runtime_dir"]), "the old runtime directory %s is gone" % rec["runtime_dir"])
    listed = {s.id: s.state() for s in Sandbox.list()}
    check(listed.get(sid) == "Hibernated", "Sandbox.list() shows %s as %r" % (sid, listed.get(sid)))
    t0 = time.monotonic()
    sbx = Sandbox.connect(sid)
    kept = sh(sbx, "cat /root/kept /tmp/kept")
    print("connect (resume from disk) to first exec: %.1f s" % (time.monotonic() - t0), flush=True)
    check(kept == "on-disk\nin-ram\n", "the files in /root and /tmp are intact: %r" % kept)
    pids = [p.pid for p in sbx.commands.list()]
    check(rec["counter_pid"] in pids, "the counter runs on the same pid %d (%r)" % (rec["counter_pid"], pids))
    time.sleep(1)
    count = int(sh(sbx, "cat /tmp/count"))
    check(count > rec["count"], "the counter carried on: %d before, %d now" % (rec["count"], count))
    pd = os.path.join(STATE, sid)
    left = [f for f in ("vm.snap", "vm.mem", "hibernated.json") if os.path.exists(os.path.join(pd, f))]
    check(left == [], "the snapshot files are gone once it runs (left: %r)" % left)
    sbx.delete()
    check(not os.path.exists(pd), "delete() removed %s" % pd)
    shutil.rmtree(WORK, ignore_errors=True)


def both_boots():
    """The two phases, each in its own test-host boot."""
    rcs = []
    for phase in ("hibernate", "resume"):
        print("=== test-host boot for phase %s" % phase, flush=True)
        env = dict(os.environ, TESTHOST_TIMEOUT_S=os.environ.get("TESTHOST_TIMEOUT_S", "900"))
        rcs.append(subprocess.run([os.path.join(REPO, "scripts", "testhost.sh"), "--", "/usr/bin/python3",
                                   os.path.abspath(__file__), phase], stdin=subprocess.DEVNULL,
                                  cwd=REPO, env=env).returncode)
        print("=== phase %s: exit %d" % (phase, rcs[-1]), flush=True)
        if rcs[-1] != 0:
            break
    return 0 if rcs == [0, 0] else 1


def main():
    phase = sys.argv[1] if len(sys.argv) > 1 else None
    if phase is None:
        return both_boots()
    if phase not in ("hibernate", "resume"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        (hibernate if phase == "hibernate" else resume)()
    except Exception as e:  # noqa: BLE001 - reported as the failure it is
        check(False, "%s: %s: %s" % (phase, type(e).__name__, e))
    print("%s: %s" % (phase, "FAILED: %d check(s)" % len(failed) if failed else "all checks passed"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
