#!/usr/bin/env python3
"""Runs amber's benchmarks where it is started and writes the raw samples as JSON.

usage: bench.py --place NAME --out FILE [--tiny-only]
  --place     where this runs ("test host", "this host"...), recorded with the samples
  --tiny-only only the tiny-guest pause figure and startup (for a host that cannot boot Linux)
Env: BENCH_QUICK=1, BENCH_RUNS=N, BENCH_CYCLES=N, BENCH_SDK_RUNS=N,
     BENCH_ONLY=boot,exec,block,tcp,vsock,pause,startup,tiny,sdk,sdkmore,snapshot,hibernate (a subset),
     BENCH_BLOCK_FS=ext4|tmpfs (where block drives live; lib.Settings says why).
bench/report.py turns the JSON into the tables.
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--place", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tiny-only", action="store_true")
    args = ap.parse_args()
    settings = lib.Settings()
    # One run per BENCH_TOKEN: a rerun with the same token (bench/run.sh after a test host died,
    # or a wrapper re-executing this command) keeps the sections already measured.
    token = os.environ.get("BENCH_TOKEN", "")
    res = None
    if token and os.path.exists(args.out):
        try:
            with open(args.out) as f:
                old = json.load(f)
            if old.get("token") == token:
                res = old
        except (OSError, ValueError):
            pass
    if res and res.get("complete"):
        lib.log("%s already holds the whole run %s: not running again" % (args.out, token))
        return 0
    if res:
        lib.log("resuming run %s: keeping %s" % (token, ", ".join(
            k for k in ("tiny", "startup", "boot", "guest", "sdk", "snapshot") if k in res) or "nothing"))
    else:
        res = {"token": token, "place": args.place, "quick": settings.quick,
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "kernel": platform.release(),
               "cpus": os.cpu_count(), "hw_virt": lib.cpu_has_hw_virt(),
               "settings": {k: v for k, v in vars(settings).items() if k != "only"}}

    def todo(section):
        return settings.wants(section) and section not in res

    def save():
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
        os.replace(tmp, args.out)

    session = lib.harness.Session("bench")
    try:
        import fig_ctl  # noqa: PLC0415

        if todo("tiny"):
            lib.log("tiny guest pause/resume (%s)" % args.place)
            res["tiny"] = fig_ctl.run_tiny(settings, session)
            save()
        if args.tiny_only:
            # Startup needs no /dev/kvm: amber opens it at InstanceStart, QEMU falls back to TCG.
            if todo("startup"):
                lib.log("start to API socket ready (%s)" % args.place)
                res["startup"] = fig_ctl.run_startup(settings, session)
            res["complete"] = True
            return 0
        if not lib.kvm_usable():
            res["unavailable"] = "no usable /dev/kvm here"
            save()
            return 1
        missing = [p for p in (lib.AMBER, lib.AMBERCTL, lib.harness.VMLINUZ, lib.harness.INITRAMFS,
                               lib.harness.ROOTFS) if not os.path.exists(p)]
        if missing:
            res["unavailable"] = "missing %s: run make all guest" % ", ".join(missing)
            save()
            return 1
        import fig_boot  # noqa: PLC0415
        import fig_guest  # noqa: PLC0415
        import fig_sdk  # noqa: PLC0415

        if todo("boot"):
            lib.log("boot to init marker, %d runs per VMM" % settings.boot_runs)
            res["boot"] = fig_boot.run(settings, session)
            save()
        if "guest" not in res and any(settings.wants(x) for x in ("exec", "block", "tcp", "vsock", "pause")):
            lib.log("guest figures: exec, block, TCP, vsock, pause")
            res["guest"] = fig_guest.run(settings, session)
            save()
        if todo("sdk"):
            lib.log("sandboxes through the SDK, %d runs" % settings.sdk_runs)
            res["sdk"] = fig_sdk.run(settings, session)
            save()
        if todo("sdkmore"):
            import sdk_more  # noqa: PLC0415

            lib.log("SDK: first streamed byte, commands.run vs execute, files vs amberctl cp")
            res["sdkmore"] = sdk_more.run(settings, session)
            save()
        if todo("snapshot"):
            import snapshot  # noqa: PLC0415

            lib.log("snapshot create and restore, amber and QEMU (migrate, -incoming), %d runs"
                    % settings.boot_runs)
            res["snapshot"] = snapshot.run(settings, session)
            save()
        if todo("hibernate"):
            import hibernate  # noqa: PLC0415

            lib.log("hibernate, templates and fork (issue 16)")
            res["hibernate"] = hibernate.run(settings, session)
            save()
        # Last: twenty quick KVM VM creations by QEMU -S once hung the test host's kernel.
        if todo("startup"):
            lib.log("start to API socket ready")
            res["startup"] = fig_ctl.run_startup(settings, session)
            save()
        res["complete"] = True
    finally:
        res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        save()
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
