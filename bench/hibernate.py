"""Issue 16's figures through the SDK: create from a template to first exec against a cold
create, fork time per child (n=1 and n=8), PSS of idle children against a cold-booted sandbox,
hibernate time and bytes and resume to first exec, and how many idle sandboxes 8 GiB would hold.
`make bench` runs it as section "hibernate" (run()); alone it prints the table, where /dev/kvm
works (inside scripts/testhost.sh here):

    scripts/testhost.sh -- /usr/bin/python3 bench/hibernate.py

Env: BENCH_HIB_RUNS (default 10) runs per figure, BENCH_HIB_COLD (default the same) cold
creates, BENCH_HIB_FORK8 (default the same) rounds of fork(n=8). With --qemu-ref it prints
instead the reference: amber's raw snapshot and restore next to QEMU's migrate and -incoming,
BENCH_HIB_RUNS alternating pairs (qemu_reference()).
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "sdk", "python"))

from amber import Sandbox  # noqa: E402

GIB = 1 << 30


def pss_kib(pid):
    """{"Pss", "Rss", "Private"} in KiB from /proc/PID/smaps_rollup."""
    out = {"Pss": 0, "Rss": 0, "Private": 0}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":"):
                k = parts[0][:-1]
                if k in ("Pss", "Rss"):
                    out[k] = int(parts[1])
                elif k in ("Private_Clean", "Private_Dirty"):
                    out["Private"] += int(parts[1])
    return out


def first_exec(sbx):
    r = sbx.execute("true")
    if r.exit_code != 0:
        raise RuntimeError("%s: true exited %d" % (sbx.id, r.exit_code))


def timed_create(make):
    t0 = time.monotonic()
    sbx = make()
    first_exec(sbx)
    return sbx, time.monotonic() - t0


def idle_pss(sbxs, settle_s=3.0):
    """Median PSS/private KiB of sbxs's amber processes after settle_s idle, all alive at once."""
    time.sleep(settle_s)
    rows = [pss_kib(s.pid) for s in sbxs]
    return {k: statistics.median(r[k] for r in rows) for k in ("Pss", "Rss", "Private")}


def note(res, key):
    """Prints one finished figure to stderr at once, so a run cut off by its time limit keeps it."""
    print("hibernate-bench: %s = %r" % (key, res[key]), file=sys.stderr, flush=True)


def measure(runs, cold_runs, fork8_runs):
    tmp = tempfile.mkdtemp(prefix="amber-bench-hib-", dir="/var/tmp")
    saved = os.environ.get("AMBER_STATE_DIR")
    os.environ["AMBER_STATE_DIR"] = os.path.join(tmp, "state")
    root = os.path.join(tmp, "run")
    res = {"runs": runs, "cold_runs": cold_runs, "fork8_runs": fork8_runs}
    try:
        cold, cold_pss = [], []
        for i in range(cold_runs):
            sbx, s = timed_create(lambda: Sandbox.create(runtime_dir=root))
            cold.append(s)
            if i < 4:
                cold_pss.append(idle_pss([sbx]))
            sbx.delete()
        res["cold_s"] = cold
        res["cold_pss_kib"] = statistics.median(p["Pss"] for p in cold_pss)
        note(res, "cold_s")
        note(res, "cold_pss_kib")

        parent = Sandbox.create(runtime_dir=root)
        first_exec(parent)
        parent.snapshot_template("bench-tpl")
        tpl, kids = [], []
        for _ in range(runs):
            sbx, s = timed_create(lambda: Sandbox.create(template="bench-tpl", runtime_dir=root))
            tpl.append(s)
            kids.append(sbx)
        res["template_s"] = tpl
        note(res, "template_s")
        p = idle_pss(kids[:8])
        res["child_pss_kib"], res["child_private_kib"], res["children_alive"] = p["Pss"], p["Private"], len(kids[:8])
        note(res, "child_pss_kib")
        note(res, "child_private_kib")
        for k in kids:
            k.delete()
        Sandbox.delete_template("bench-tpl", runtime_dir=root)

        for n, rounds, key in ((1, runs, "fork1_s"), (8, fork8_runs, "fork8_s")):
            per = []
            for _ in range(rounds):
                t0 = time.monotonic()
                made = parent.fork(n)
                per.append((time.monotonic() - t0) / n)
                for k in made:
                    k.delete()
            res[key] = per
            note(res, key)

        hib, hib_bytes, back = [], [], []
        for _ in range(runs):
            t0 = time.monotonic()
            parent.pause(keep_memory=False)
            hib.append(time.monotonic() - t0)
            pd = os.path.join(os.environ["AMBER_STATE_DIR"], parent.id)
            hib_bytes.append(sum(os.stat(os.path.join(pd, f)).st_blocks * 512 for f in ("vm.snap", "vm.mem")))
            t0 = time.monotonic()
            parent.resume()
            first_exec(parent)
            back.append(time.monotonic() - t0)
        res["hibernate_s"], res["hibernate_bytes"], res["resume_s"] = hib, hib_bytes, back
        for key in ("hibernate_s", "hibernate_bytes", "resume_s"):
            note(res, key)
        parent.delete()
        # 8 GiB over each kind's share: cold sandboxes each pay their PSS; template children
        # pay their private pages plus, once, the template's shared pages (PSS x alive - private x alive).
        shared_kib = max(0.0, (res["child_pss_kib"] - res["child_private_kib"]) * res["children_alive"])
        res["fit_cold"] = int(8 * GIB / 1024 // res["cold_pss_kib"])
        res["fit_children"] = int((8 * GIB / 1024 - shared_kib) // max(1.0, res["child_private_kib"]))
    finally:
        for s in Sandbox.list(runtime_dir=root):
            try:
                s.delete()
            except Exception:  # noqa: BLE001
                pass
        for t in Sandbox.list_templates():
            if t["name"] == "bench-tpl":
                try:
                    Sandbox.delete_template("bench-tpl", runtime_dir=root)
                except Exception:  # noqa: BLE001
                    pass
        if saved is None:
            os.environ.pop("AMBER_STATE_DIR", None)
        else:
            os.environ["AMBER_STATE_DIR"] = saved
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def run(settings, session):
    """bench.py's section "hibernate"."""
    runs = 3 if settings.quick else 10
    try:
        return measure(runs, runs, runs)
    except Exception as e:  # noqa: BLE001 - the report lists it
        return {"errors": ["%s: %s" % (type(e).__name__, e)]}


def rng(xs, scale=1000.0):
    return "%.0f (%.0f-%.0f)" % (statistics.median(xs) * scale, min(xs) * scale, max(xs) * scale)


def rows(res):
    """[(figure, value, target)] for the table."""
    ratio = statistics.median(res["template_s"]) / statistics.median(res["cold_s"])
    return [
        ("cold Sandbox.create() to first exec (ms, %d runs)" % res["cold_runs"], rng(res["cold_s"]), ""),
        ("create from a template to first exec (ms, %d runs)" % res["runs"], rng(res["template_s"]), ""),
        ("template / cold", "%.3f" % ratio, "<= 0.1"),
        ("fork n=1, per child (ms, %d runs)" % res["runs"], rng(res["fork1_s"]), "hardware: <= 20"),
        ("fork n=8, per child (ms, %d runs)" % res["fork8_runs"], rng(res["fork8_s"]), "hardware: <= 20"),
        ("PSS of an idle cold-booted sandbox (MiB)", "%.1f" % (res["cold_pss_kib"] / 1024), ""),
        ("PSS of an idle template child, %d alive (MiB)" % res["children_alive"],
         "%.1f" % (res["child_pss_kib"] / 1024), ""),
        ("child PSS / cold PSS", "%.3f" % (res["child_pss_kib"] / res["cold_pss_kib"]), "<= 0.2"),
        ("private memory of an idle child (MiB)", "%.1f" % (res["child_private_kib"] / 1024), ""),
        ("hibernate (ms, %d runs)" % res["runs"], rng(res["hibernate_s"]), ""),
        ("snapshot bytes on disk (MiB)", "%.1f" % (statistics.median(res["hibernate_bytes"]) / 2**20), ""),
        ("resume from disk to first exec (ms)", rng(res["resume_s"]), ""),
        ("idle sandboxes in 8 GiB, cold-booted (from PSS)", str(res["fit_cold"]), ""),
        ("idle sandboxes in 8 GiB, template children (from private + shared once)", str(res["fit_children"]), ""),
    ]


def qemu_reference(runs, mem_mib=256):
    """The reference the hibernate figures stand next to, as issue 16 asks: amber's raw
    snapshot and restore (bench/snapshot.py's one_run: pause, PUT /snapshot/create, kill -9, a
    new amber's PUT /snapshot/load to first exec) and QEMU microvm's migrate to a file and
    -incoming (qemu_run), same initramfs guest, in alternating pairs. Returns the table rows."""
    sys.path.insert(0, HERE)
    import snapshot  # noqa: E402 - bench/snapshot.py (it puts tests/e2e on sys.path)
    session = snapshot.harness.Session("bench-hib-qemu")
    pairs = []
    try:
        for i in range(runs):
            pairs.append((snapshot.one_run(session, mem_mib, i), snapshot.qemu_run(session, mem_mib, i)))
    finally:
        session.close()

    def col(k, who):
        return [p[who][k] for p in pairs]
    out = []
    for name, k, scale, unit in (("snapshot create / QEMU migrate", "create_s", 1000.0, "ms"),
                                 ("bytes written", "written", 1.0 / 2**20, "MiB"),
                                 ("restore / -incoming: start to first exec", "restore_exec_s", 1000.0, "ms"),
                                 ("cold boot to first exec", "cold_exec_s", 1000.0, "ms")):
        a, q = col(k, 0), col(k, 1)
        ratios = [x / y for x, y in zip(a, q) if y]
        out.append((name + " (%s, %d MiB, %d pairs)" % (unit, mem_mib, runs), rng(a, scale), rng(q, scale),
                    "%.3f (%.3f-%.3f)" % (statistics.median(ratios), min(ratios), max(ratios))))
    return out


def main():
    if "--qemu-ref" in sys.argv[1:]:
        print("| figure | amber | QEMU | amber / QEMU, per pair |")
        print("|---|---|---|---|")
        for row in qemu_reference(int(os.environ.get("BENCH_HIB_RUNS", "10"))):
            print("| %s | %s | %s | %s |" % row)
        return
    runs = int(os.environ.get("BENCH_HIB_RUNS", "10"))
    res = measure(runs, int(os.environ.get("BENCH_HIB_COLD", str(runs))),
                  int(os.environ.get("BENCH_HIB_FORK8", str(runs))))
    print("| figure | median (min-max) | target |")
    print("|---|---|---|")
    for name, val, target in rows(res):
        print("| %s | %s | %s |" % (name, val, target))


if __name__ == "__main__":
    main()
