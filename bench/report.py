#!/usr/bin/env python3
"""Turns bench.py's JSON samples into the benchmark tables (metric | amber | reference | ratio |
target), prints them and writes them as Markdown.

usage: report.py --out build/bench/results.md [--direct FILE] [--guest FILE]
  --direct: samples taken directly on this host (the tiny-guest figure)
  --guest:  samples taken where Linux guests boot (the test host, or this host if it has vmx/svm)
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

NOISY = 0.3  # (max - min) / median above this marks a figure noisy
NOTE_NOISY = "~ marks a noisy figure: (max − min) / median above 30 %, or p99 above 3× the median."


def noisy(xs, tail=False):
    if isinstance(xs, dict):
        return tail and xs["p99"] > 3 * xs["median"]
    if not xs or len(xs) < 2:
        return False
    if tail:
        return lib.p99(xs) > 3 * lib.median(xs)
    return lib.spread(xs) > NOISY


def cell_range(xs, fmt="%.2f"):
    return lib.fmt_range(xs, fmt) + (" ~" if noisy(xs) else "") if xs else "—"


def cell_p99(xs, fmt="%.2f"):
    return lib.fmt_p99(xs, fmt) + (" ~" if noisy(xs, tail=True) else "") if xs else "—"


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r):
    return "—" if r is None else "%.2f×" % r


def verdict(target, ok):
    if ok is None:
        return target
    return "%s (%s)" % (target, "met" if ok else "missed")


def med(xs):
    return lib.median(xs) if xs else None


class Table:
    def __init__(self, title, note=""):
        self.title, self.note, self.rows = title, note, []

    def add(self, metric, amber, ref, ratio_txt, target):
        self.rows.append((metric, amber, ref, ratio_txt, target))

    def render(self):
        out = ["### " + self.title, ""]
        if self.note:
            out += [self.note, ""]
        out.append("| metric | amber | reference | ratio | target |")
        out.append("|---|---|---|---|---|")
        for r in self.rows:
            out.append("| " + " | ".join(str(c) for c in r) + " |")
        return "\n".join(out) + "\n"


def table_boot(g):
    b = g.get("boot")
    t = Table("Boot to init marker and VMM memory (issue 2)",
              "Measured in: %s. Same vmlinuz + initramfs, amber.test=poweroff, 1 vCPU, %d MiB; QEMU "
              "`-M microvm,acpi=on -enable-kvm -cpu host` (SeaBIOS). median (min–max) over %d runs. "
              "Guest RAM touched = resident size of the guest-RAM mapping in /proc/PID/smaps when the "
              "marker appears, the same way for both; overhead = peak RSS (wait4 ru_maxrss) minus it."
              % (g["place"], g["settings"]["mem_mib"], g["settings"]["boot_runs"]))
    if not b:
        t.add("boot", "not measured", "", "", "")
        return t
    a, q = b["amber"], b["qemu"]
    r = ratio(med(a["ready_s"]), med(q["ready_s"]))
    t.add("start → `amber-guest: ready` (s)", cell_range(a["ready_s"]), cell_range(q["ready_s"]), fmt_ratio(r) + " amber/ref",
          verdict("≤ 0.5×", None if r is None else r <= 0.5))
    t.add("VMM peak RSS (MiB)", cell_range(a["peak_mib"], "%.1f"), cell_range(q["peak_mib"], "%.1f"),
          fmt_ratio(ratio(med(a["peak_mib"]), med(q["peak_mib"]))) + " amber/ref", "—")
    t.add("guest RAM touched (MiB)", cell_range(a["guest_mib"], "%.1f"), cell_range(q["guest_mib"], "%.1f"),
          fmt_ratio(ratio(med(a["guest_mib"]), med(q["guest_mib"]))) + " amber/ref", "—")
    r = ratio(med(a["overhead_mib"]), med(q["overhead_mib"]))
    t.add("RSS overhead = peak RSS − guest RAM touched (MiB)", cell_range(a["overhead_mib"], "%.1f"),
          cell_range(q["overhead_mib"], "%.1f"), fmt_ratio(r) + " amber/ref",
          verdict("≤ 0.25×", None if r is None else r <= 0.25))
    if a["failed"] or q["failed"]:
        t.note += " Failed boots (left out): amber %d, QEMU %d." % (a["failed"], q["failed"])
    return t


def block_fs_label(gu):
    """Where the run's drives lived, as the report says it (runs before BENCH_BLOCK_FS: tmpfs)."""
    fs = gu.get("block_fs") or "tmpfs (page-cached)"
    if fs.startswith("ext4"):
        return fs + ": amber opens it O_DIRECT, QEMU cache=none"
    return fs + ": amber's page-cached fallback, QEMU cache=writeback"


def table_io(g):
    s = g["settings"]
    gu = g.get("guest") or {}
    a, q, qu = gu.get("amber", {}), gu.get("qemu", {}), gu.get("qemu_uring", {})
    uring = gu.get("qemu_io_uring")
    t = Table("Block and network throughput (issue 3), and the VMM's CPU per MiB (issue 14)",
              "Measured in: %s, 1 vCPU guests booted side by side, run in turns (who goes first rotates). "
              "Block: guest `dd bs=1M count=%d` with oflag=direct / iflag=direct on /dev/vda, a raw file on "
              "%s (QEMU with aio=threads%s); the ratio "
              "is the median of the per-run ratios; time = the agent's duration of the dd process. VMM CPU = "
              "user + system of every thread of the VMM process (/proc/PID/stat) over the dd, per MiB; "
              "\"own\" subtracts guest_time (vCPU threads running guest code), leaving the VMM's own work "
              "(QEMU's vhost-vsock kernel thread is not in its process; amber's vsock, carrying the agent's "
              "few frames, is). TCP: busybox nc over a TAP each (QEMU: userspace virtio-net, no vhost-net), "
              "%d MiB per run, timed on the host. MiB/s, median (min–max) over %d runs."
              % (g["place"], s["block_mib"], block_fs_label(gu),
                 ", and a second QEMU guest with aio=io_uring" if uring else
                 " (this QEMU build has no aio=io_uring)" if uring is False else "",
                 s["tcp_mib"], s["io_runs"]))
    refs = [(q, "")] + ([(qu, " (QEMU aio=io_uring)")] if qu.get("blk_write") else [])
    for name, key in (("sequential write, dd O_DIRECT (MiB/s)", "blk_write"),
                      ("sequential read, dd O_DIRECT (MiB/s)", "blk_read")):
        for ref, label in refs:
            r, how = per_run_ratio(a.get(key), ref.get(key))
            t.add(name + label, cell_range(a.get(key), "%.1f"), cell_range(ref.get(key), "%.1f"),
                  fmt_ratio(r) + how, verdict("≥ 1.5× (hardware virtualization)", None))
    for name, key in (("VMM CPU per MiB written (ms)", "blk_write_cpu_ms_per_mib"),
                      ("VMM own CPU per MiB written, guest time excluded (ms)", "blk_write_own_cpu_ms_per_mib"),
                      ("VMM CPU per MiB read (ms)", "blk_read_cpu_ms_per_mib"),
                      ("VMM own CPU per MiB read, guest time excluded (ms)", "blk_read_own_cpu_ms_per_mib")):
        for ref, label in refs:
            if not (a.get(key) or ref.get(key)):
                continue
            r, how = per_run_ratio(a.get(key), ref.get(key))
            target = "≤ 0.5×" if "written" in name else "—"
            t.add(name + label, cell_range(a.get(key), "%.3f"), cell_range(ref.get(key), "%.3f"),
                  fmt_ratio(r) + how, verdict(target, None if r is None or target == "—" else r <= 0.5))
    for name, key in (("TCP guest → host (MiB/s)", "tcp_g2h"), ("TCP host → guest (MiB/s)", "tcp_h2g")):
        r, how = per_run_ratio(a.get(key), q.get(key))
        t.add(name, cell_range(a.get(key), "%.1f"), cell_range(q.get(key), "%.1f"), fmt_ratio(r) + how, "—")
    return t


def per_run_ratio(xs, ys):
    """(ratio, how): the median of per-run ratios when the runs pair up (taken in turns, so
    the test host's drift cancels), else the ratio of medians."""
    if paired(xs, ys):
        return med([x / y for x, y in zip(xs, ys)]), " amber/ref (median of run pairs)"
    return ratio(med(xs), med(ys)), " amber/ref"


def paired(xs, ys):
    """True when xs and ys are raw runs of equal count, all positive (block runs in turns)."""
    return (isinstance(xs, list) and isinstance(ys, list) and xs and len(xs) == len(ys)
            and all(y > 0 for y in ys))


def table_exec(g):
    s = g["settings"]
    gu = g.get("guest") or {}
    a, q = gu.get("amber", {}), gu.get("qemu", {})
    host = gu.get("host_exec_ms", [])
    vs_ref = "QEMU vhost-vsock-device" if gu.get("qemu_vhost_vsock") else "QEMU TCP over virtio-net (no vhost_vsock)"
    t = Table("Exec round trip and vsock throughput (issue 4)",
              "Measured in: %s, 1 vCPU guests side by side, amber-agent as init, taken in turns. Exec: `true`, median / p99 (ms) over %d runs, "
              "each timed around a spawned client process: `amberctl exec --vsock ... -- true` vs the reference "
              "`sh -c true` spawned and waited for on the same host. The second row drives the same guest agent "
              "from Python for both VMMs (amber hybrid vsock vs QEMU vhost-vsock, AF_VSOCK). vsock: the agent "
              "streams `dd if=/dev/zero bs=1M count=%d` stdout guest → host, counted on the host; MiB/s, "
              "median (min–max) over %d run(s); reference: %s."
              % (g["place"], s["exec_cycles"], s["vsock_mib"], s.get("vsock_runs", s["io_runs"]), vs_ref))
    t.add("exec `true` via amberctl (ms, median / p99)", cell_p99(a.get("exec_ctl_ms")),
          cell_p99(host) + " (host `sh -c true`)",
          fmt_ratio(ratio(med(a.get("exec_ctl_ms")), med(host))) + " amber/ref", "— (none set)")
    t.add("exec `true` via the agent, Python client (ms, median / p99)", cell_p99(a.get("exec_py_ms")),
          cell_p99(q.get("exec_py_ms")) + " (QEMU vhost-vsock)",
          fmt_ratio(ratio(med(a.get("exec_py_ms")), med(q.get("exec_py_ms")))) + " amber/ref", "—")
    ref = q.get("vsock") if gu.get("qemu_vhost_vsock") else q.get("tcp_g2h")
    t.add("vsock throughput guest → host (MiB/s)", cell_range(a.get("vsock"), "%.1f"), cell_range(ref, "%.1f"),
          fmt_ratio(ratio(med(a.get("vsock")), med(ref))) + " amber/ref", "— (none set)")
    return t


def _pause_pair(t, label, a_p, a_r, q_p, q_r):
    for what, av, qv, qname in (("pause", a_p, q_p, "QMP stop"), ("resume", a_r, q_r, "QMP cont")):
        rm, rp = ratio(med(av), med(qv)), ratio(lib.p99(av) if av else None, lib.p99(qv) if qv else None)
        ok = None if rm is None or rp is None else (rm <= 0.5 and rp <= 0.5)
        t.add("%s, %s (ms, median / p99)" % (what, label), cell_p99(av), cell_p99(qv) + " (%s)" % qname,
              "%s / %s amber/ref" % (fmt_ratio(rm), fmt_ratio(rp)), verdict("≤ 0.5×", ok))


def table_pause(g, direct):
    s = g["settings"]
    gu = g.get("guest") or {}
    a, q = gu.get("amber", {}), gu.get("qemu", {})
    t = Table("Pause / resume, startup and idle memory (issue 5)",
              "Pause and resume timed at the API client on a kept-alive connection (amber: `POST /pause`, "
              "`POST /resume`; QEMU: QMP `stop` / `cont`), %d cycles, one busy loop per vCPU started through "
              "the agent; amber's and QEMU's guests run side by side and take turns in rounds of a tenth of "
              "the cycles. CPU per cycle: the VMM's user + system time over all threads (/proc/PID/stat) "
              "across back-to-back cycles with the guest idle, minus its idle rate over the same time, in "
              "four rounds per VMM taken in turns. Linux rows: %s, %d MiB guest. Tiny rows: "
              "build/guests/spin, 64 MiB, no reference."
              % (s["pause_cycles"], g["place"], s["mem_mib"]))
    for n in ("1", "4"):
        label = "Linux, %s vCPU%s spinning, %s" % (n, "" if n == "1" else "s", g["place"])
        _pause_pair(t, label, a.get("pause%s_ms" % n), a.get("resume%s_ms" % n), q.get("pause%s_ms" % n),
                    q.get("resume%s_ms" % n))
        # Context, no target: what any control call costs here, and amber's own share.
        an, qn = a.get("noop%s_ms" % n), q.get("noop%s_ms" % n)
        if an or qn:
            t.add("no-op round trip after the same idle gap, %s (ms, median / p99)" % label,
                  cell_p99(an) + " (GET /)" if an else "—", cell_p99(qn) + " (QMP query-status)" if qn else "—",
                  fmt_ratio(ratio(med(an), med(qn))) + " amber/ref", "— (the floor of every call)")
        for key, what in (("pause%s_cpu_ms", "VMM CPU per pause/resume cycle, idle guest"),
                          ("pause%s_own_cpu_ms", "VMM own CPU per pause/resume cycle, guest time excluded")):
            av, qv = a.get(key % n), q.get(key % n)
            if av or qv:
                r, how = per_run_ratio(av, qv)
                t.add("%s, %s vCPU%s (ms, median (min–max) of rounds)" % (what, n, "" if n == "1" else "s"),
                      cell_range(av, "%.3f"), cell_range(qv, "%.3f"), fmt_ratio(r) + how,
                      verdict("≤ 0.5×", None if r is None else r <= 0.5))
        for what in ("pause", "resume"):
            xs = a.get("%s%s_server_ms" % (what, n))
            if xs:
                t.add("%s inside amber (server-side, from GET /), %s (ms, median / p99)" % (what, label),
                      cell_p99(xs), "—", "—", "— (amber's share of the client figure)")
    for src in (direct, g):
        if src is None:
            continue
        tiny = src.get("tiny")
        where = src["place"]
        if tiny is None:
            continue
        if "unavailable" in tiny:
            t.add("pause / resume, tiny guest, %s" % where, "n/a: %s" % tiny["unavailable"], "—", "—",
                  "pause p99 < 1 ms with %s vCPUs" % (src.get("cpus") or "host-core"))
            continue
        for n, res in sorted(tiny.items(), key=lambda kv: int(kv[0])):
            for what in ("pause", "resume"):
                xs = res.get("%s_ms" % what)
                target = "—"
                if what == "pause":
                    target = "p99 < 1 ms"
                    if xs:
                        target = verdict(target, lib.p99(xs) < 1.0)
                t.add("%s, tiny guest, %s vCPU, %s (ms, median / p99)" % (what, n, where),
                      cell_p99(xs, "%.3f") if xs else "failed: %s" % "; ".join(res.get("errors", [])),
                      "—", "—", target)
    for src in (direct, g):
        st = (src or {}).get("startup")
        if not st:
            continue
        if st.get("amber_configured") or st.get("qemu_configured"):
            r = ratio(med(st.get("amber_configured")), med(st.get("qemu_configured")))
            t.add("configured VM: process start → API answers, %s (ms, median (min–max))" % src["place"],
                  cell_range(st.get("amber_configured")) + " (--config-file: VM built, kernel loaded)",
                  cell_range(st.get("qemu_configured")) + " (QEMU -S, same kernel/initramfs/RAM → QMP greeting)",
                  fmt_ratio(r) + " amber/ref", "like with like")
        r = ratio(med(st.get("amber")), med(st.get("qemu")))
        t.add("empty VMM: process start → API socket answers, %s (ms, median (min–max))" % src["place"],
              cell_range(st.get("amber")) + " (--api-sock alone, no VM yet)",
              cell_range(st.get("qemu")) + " (QEMU -S, machine + RAM only, %s → QMP greeting)"
              % st.get("qemu_accel", "kvm"),
              fmt_ratio(r) + " amber/ref",
              verdict("≤ 5 ms", None if not st.get("amber") else med(st["amber"]) <= 5.0))
        if st.get("spawn_floor"):
            t.add("… spawn floor there: `/bin/true` spawned + waited (ms)", cell_range(st["spawn_floor"]), "", "",
                  "context")
    ao, qo = a.get("idle_overhead_mib"), q.get("idle_overhead_mib")
    t.add("RSS overhead, idle 1-vCPU VM (MiB): VmRSS − guest RAM resident",
          "%.1f (RSS %.1f, guest %.1f)" % (ao, a["idle_rss_mib"], a["idle_guest_mib"]) if ao is not None else "—",
          "%.1f (RSS %.1f, guest %.1f)" % (qo, q["idle_rss_mib"], q["idle_guest_mib"]) if qo is not None else "—",
          fmt_ratio(ratio(ao, qo)) + " amber/ref", verdict("≤ 3 MiB", None if ao is None else ao <= 3.0))
    return t


def table_sdk(g):
    sd = g.get("sdk")
    t = Table("Sandboxes (issue 6)")
    if not sd:
        t.add("sandboxes", "not measured", "", "", "")
        return t
    via = "the Python SDK (Sandbox.create / execute / delete)" if sd["via"] == "sdk" else \
        "amber + amberctl directly (the SDK was not usable)"
    t.note = ("Measured in: %s through %s, one sandbox at a time: 1 vCPU, 256 MiB, rootfs copy, agent. "
              "%d sandboxes. Throughput = 60 / mean(create + delete time), the exec excluded." % (
                  g["place"], via, len(sd["create_s"])))
    t.add("create → first exec `true` done (s, median (min–max))", cell_range(sd["first_exec_s"]), "—", "—", "—")
    t.add("create (returns when the agent answers ping) (s)", cell_range(sd["create_s"]), "—", "—", "—")
    t.add("delete (s)", cell_range(sd["delete_s"]), "—", "—", "—")
    cd = [c + d for c, d in zip(sd["create_s"], sd["delete_s"])]
    t.add("create + delete throughput (sandboxes/min)", "%.1f" % (60.0 * len(cd) / sum(cd)) if cd else "—",
          "—", "—", "—")
    return t


def table_sdk_more(g):
    sm = g.get("sdkmore")
    t = Table("SDK streaming and files (issue 18)")
    if not sm or "ttfb_s" not in sm:
        t.add("SDK streaming and files", "not measured", "", "", "")
        return t
    t.note = ("Measured in: %s through the Python SDK on one sandbox, %d runs per command figure; "
              "files: one %d MiB file each way, against `amberctl cp` (the reference column)." % (
                  g["place"], sm["runs"], sm["mib"]))
    ms = lambda xs: [x * 1000.0 for x in xs]  # noqa: E731
    t.add("first streamed byte of `commands.run('echo x')` (ms)", cell_range(ms(sm["ttfb_s"])), "—", "—", "—")
    t.add("empty `commands.run('true')` vs `execute('true')` (ms)", cell_range(ms(sm["run_s"])),
          cell_range(ms(sm["exec_s"])), "—", "—")
    mb = sm["mbps"]
    t.add("upload MiB/s: files.write vs amberctl cp", "%.1f" % mb["sdk up"], "%.1f" % mb["amberctl up"],
          "%.2f" % (mb["sdk up"] / mb["amberctl up"]), "—")
    t.add("download MiB/s: files.read stream vs amberctl cp", "%.1f" % mb["sdk down"], "%.1f" % mb["amberctl down"],
          "%.2f" % (mb["sdk down"] / mb["amberctl down"]), "—")
    return t


def table_snapshot(g):
    sn = g.get("snapshot")
    t = Table("Snapshot and restore (issue 15)")
    if not sn or not sn.get("amber"):
        t.add("snapshot and restore", "not measured", "", "", "")
        return t
    t.note = ("Measured in: %s, %d runs per VMM and size, 1 vCPU, initramfs guest with the agent. "
              "amber: PUT /snapshot/create of the paused VM, then a new amber and PUT /snapshot/load "
              "(resume_vm). Reference: QEMU microvm, QMP migrate to a file while stopped, then a new "
              "QEMU with -incoming from it. \"Running\": the load answered (amber) or query-status "
              "running (QEMU); \"first exec\": `true` answered over vsock." % (g["place"], sn["runs"]))
    ms = lambda rs, k: [r[k] * 1000.0 for r in rs]  # noqa: E731
    mib = lambda rs, k: [r[k] / 1048576.0 for r in rs]  # noqa: E731
    for size, a in sorted(sn["amber"].items(), key=lambda kv: int(kv[0])):
        q = sn.get("qemu", {}).get(size)
        sfx = " (%s MiB)" % size
        r = ratio(med(ms(a, "create_s")), med(ms(q, "create_s")) if q else None)
        t.add("snapshot create (ms)" + sfx, cell_range(ms(a, "create_s"), "%.0f"),
              cell_range(ms(q, "create_s"), "%.0f") if q else "—", fmt_ratio(r),
              verdict("≤ 0.5× QEMU", None if r is None else r <= 0.5))
        gib = [int(size) / 1024.0 / x for x in (r_["create_s"] for r_ in a)]
        qgib = [int(size) / 1024.0 / x for x in (r_["create_s"] for r_ in q)] if q else None
        t.add("create: guest RAM / time (GiB/s)" + sfx, cell_range(gib), cell_range(qgib) if q else "—",
              "—", "—")
        t.add("create: bytes written (MiB)" + sfx, cell_range(mib(a, "written"), "%.1f"),
              cell_range(mib(q, "written"), "%.1f") if q else "—", "—", "≈ resident non-zero pages")
        r = ratio(med(ms(a, "restore_running_s")), med(ms(q, "restore_running_s")) if q else None)
        t.add("restore: start → guest running (ms)" + sfx, cell_range(ms(a, "restore_running_s"), "%.0f"),
              cell_range(ms(q, "restore_running_s"), "%.0f") if q else "—", fmt_ratio(r),
              verdict("≤ 0.25× QEMU", None if r is None else r <= 0.25))
        if "restore_inside_ms" in a[0]:
            hw = g.get("hw_virt")
            t.add("restore inside amber: state file read → vCPUs started (ms)" + sfx,
                  cell_range([r_["restore_inside_ms"] for r_ in a], "%.1f"), "—", "—",
                  verdict("≤ 5 ms with hardware virtualization",
                          med([r_["restore_inside_ms"] for r_ in a]) <= 5.0 if hw else None))
        r = ratio(med(ms(a, "restore_exec_s")), med(ms(a, "cold_exec_s")))
        t.add("restore → first exec vs amber's cold boot → first exec (ms)" + sfx,
              cell_range(ms(a, "restore_exec_s"), "%.0f"), cell_range(ms(a, "cold_exec_s"), "%.0f"),
              fmt_ratio(r), verdict("≤ 0.1×", None if r is None else r <= 0.1))
        if q:
            t.add("QEMU: -incoming → first exec (ms)" + sfx, "—", cell_range(ms(q, "restore_exec_s"), "%.0f"),
                  "—", "(report)")
        t.add("RSS idle: restored vs cold-booted amber (MiB)" + sfx,
              cell_range([r_["restored_rss_kib"] / 1024.0 for r_ in a], "%.1f"),
              cell_range([r_["cold_rss_kib"] / 1024.0 for r_ in a], "%.1f"),
              fmt_ratio(ratio(med([r_["restored_rss_kib"] for r_ in a]), med([r_["cold_rss_kib"] for r_ in a]))),
              "(report)")
    if "256" in sn["amber"] and "2048" in sn["amber"]:
        big, small = sn["amber"]["2048"], sn["amber"]["256"]
        r = ratio(med(ms(big, "restore_running_s")), med(ms(small, "restore_running_s")))
        t.add("restore → running, 2 GiB vs 256 MiB (ms)", cell_range(ms(big, "restore_running_s"), "%.0f"),
              cell_range(ms(small, "restore_running_s"), "%.0f"), fmt_ratio(r),
              verdict("≤ 1.25×", None if r is None else r <= 1.25))
    return t


def table_hibernate(g):
    hb = g.get("hibernate")
    t = Table("Hibernate, templates and fork (issue 16)")
    if not hb or "cold_s" not in hb:
        t.add("hibernate, templates and fork", "not measured", "", "", "")
        return t
    import hibernate  # noqa: PLC0415 (bench/hibernate.py: its own rows)

    t.note = ("Measured in: %s through the Python SDK; median (min-max). Template and fork children "
              "restore the image's memory file MAP_PRIVATE; 'in 8 GiB' is computed from the PSS and "
              "private figures, not by starting that many." % g["place"])
    for name, val, target in hibernate.rows(hb):
        t.add(name, val, "—", "—", target or "—")
    return t


def errors(*srcs):
    out = []
    for src in srcs:
        if not src:
            continue
        if src.get("unavailable"):
            out.append("%s: %s" % (src["place"], src["unavailable"]))
        gu = src.get("guest") or {}
        for k in ("amber", "qemu", "qemu_uring"):
            out += ["%s, %s: %s" % (src["place"], k, e) for e in (gu.get(k) or {}).get("errors", [])]
        for k in ("amber", "qemu"):
            out += ["%s, %s boot bench: %s" % (src["place"], k, e)
                    for e in ((src.get("boot") or {}).get(k) or {}).get("bad_exit", [])]
        for key in ("startup", "sdk", "sdkmore", "snapshot", "hibernate"):
            out += ["%s, %s: %s" % (src["place"], key, e) for e in (src.get(key) or {}).get("errors", [])]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--direct")
    ap.add_argument("--guest")
    args = ap.parse_args()
    load = lambda p: json.load(open(p)) if p and os.path.exists(p) else None  # noqa: E731
    direct, g = load(args.direct), load(args.guest)
    parts = ["## amber benchmarks", ""]
    if g:
        parts.append("Guest figures measured in: %s (kernel %s, %d CPUs), %s → %s.%s" % (
            g["place"], g["kernel"], g["cpus"], g["started"], g.get("finished", "?"),
            " QUICK MODE (BENCH_QUICK=1): shrunk run counts and sizes, not for citing." if g["quick"] else ""))
        parts.append("")
        for tb in (table_boot(g), table_io(g), table_exec(g), table_pause(g, direct), table_sdk(g),
                   table_sdk_more(g), table_snapshot(g), table_hibernate(g)):
            parts.append(tb.render())
    else:
        parts.append("No guest figures: the guest run produced no results.\n")
    errs = errors(g, direct)
    parts.append(NOTE_NOISY)
    if errs:
        parts += ["", "Not measured / failed:"] + ["- " + e for e in errs]
    text = "\n".join(parts) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
