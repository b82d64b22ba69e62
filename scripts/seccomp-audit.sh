#!/usr/bin/env bash
# Audit amber's seccomp allowlists against what a real run calls: a guest boot, agent execs with
# block, rng and vsock traffic, pause/resume, a Full and a Diff snapshot, API status, then
# SIGTERM; then a second amber restored from that snapshot (--restore), an exec, a Full snapshot
# of the restored VM, SIGTERM. All under strace -ff. Prints, per filter (both processes' threads
# together), the syscalls used after the filter went on but not allowed, and those allowed but
# never used, and the ioctl requests seen. Exit 1 if anything used is not allowed.
# usage: scripts/seccomp-audit.sh [--inside]   (re-runs itself in the test host without /dev/kvm)
# Uses build/test-hooks/amber, whose --id seccomp-audit makes the filters log instead of trap.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)
if [ "${1:-}" != "--inside" ] && ! [ -w /dev/kvm ]; then
    exec "$repo/scripts/testhost.sh" -- /bin/bash "$repo/scripts/seccomp-audit.sh" --inside
fi

amber=$repo/build/test-hooks/amber
ctl=$repo/build/amberctl
guest=$repo/build/guest
for f in "$amber" "$ctl" "$guest/vmlinuz" "$guest/initramfs.cpio.gz" "$guest/rootfs.ext4"; do
    [ -e "$f" ] || { echo "seccomp-audit: missing $f (make build/test-hooks/amber guest)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/seccomp-audit.XXXXXX)
trap 'kill $spid 2>/dev/null || true; rm -rf "$work"' EXIT
cp --sparse=always "$guest/rootfs.ext4" "$work/root.ext4"
truncate -s 64M "$work/data.img"

say() { echo "seccomp-audit: $(date +%T) $*" >&2; }
say "starting amber under strace in $work"
# A --config-file boot (the same VM as the flags --vcpus 2 --mem-mib 256, two drives, vsock,
# --entropy) so that dirty page tracking is on and a Diff snapshot can be taken.
cat >"$work/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$guest/vmlinuz", "initrd_path": "$guest/initramfs.cpio.gz",
                 "boot_args": "console=ttyS0 reboot=k panic=-1 quiet root=/dev/vda"},
 "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false, "track_dirty_pages": true},
 "drives": [{"drive_id": "rootfs", "path_on_host": "$work/root.ext4", "is_root_device": true,
             "is_read_only": false},
            {"drive_id": "data", "path_on_host": "$work/data.img", "is_root_device": false,
             "is_read_only": false}],
 "vsock": {"guest_cid": 3, "uds_path": "$work/v.sock"},
 "entropy": {}}
JSON
timeout 900 strace -ff -qq -o "$work/tr1" -- "$amber" --id seccomp-audit --config-file "$work/vm.json" \
    --api-sock "$work/api.sock" \
    --console "$work/console.log" --exit-file "$work/exit.json" --pid-file "$work/amber.pid" \
    2>"$work/stderr.log" &
spid=$!

for _ in $(seq 1 240); do
    grep -q '^amber-guest: ready' "$work/console.log" 2>/dev/null && break
    kill -0 $spid 2>/dev/null || { cat "$work/stderr.log" >&2; exit 1; }
    sleep 0.5
done
grep -q '^amber-guest: ready' "$work/console.log" || {
    say "no boot; console tail:"; tail -n 20 "$work/console.log" >&2; cat "$work/stderr.log" >&2; exit 1; }
say "guest ready"

exec_guest() {
    say "exec: $1"
    timeout 120 "$ctl" exec --vsock "$work/v.sock" --timeout 60 --shell -- "$@" || say "(guest command exited $?)"
}
exec_guest 'echo hello; head -c 64 /dev/hwrng | wc -c'
exec_guest 'dd if=/dev/zero of=/dev/vdb bs=64k count=16 2>/dev/null; sync;
            dd if=/dev/vdb of=/dev/null bs=64k count=16 2>/dev/null; blkdiscard /dev/vdb || true'
say "status, pause, resume"
timeout 60 "$ctl" status --api "$work/api.sock" >/dev/null || say "status failed"
timeout 60 "$ctl" pause --api "$work/api.sock" >/dev/null || say "pause failed"
say "snapshot (docs/snapshot.md), while paused"
timeout 120 "$ctl" snapshot --api "$work/api.sock" "$work/snap" >/dev/null || say "snapshot failed"
sleep 1
timeout 60 "$ctl" resume --api "$work/api.sock" >/dev/null || say "resume failed"
exec_guest 'echo after resume; head -c 1048576 /dev/urandom > /tmp/dirty' >/dev/null
say "Diff snapshot (dirty page tracking is on)"
timeout 120 "$ctl" snapshot --diff --api "$work/api.sock" "$work/diff" >/dev/null || say "Diff snapshot failed"
timeout 60 "$ctl" resume --api "$work/api.sock" >/dev/null || say "resume failed"
exec_guest 'echo after the Diff' >/dev/null
# SIGTERM amber itself (strace's child), not strace.
apid=$(cat "$work/amber.pid" 2>/dev/null || true)
say "SIGTERM to amber ($apid)"
[ -n "$apid" ] && kill -TERM "$apid"
wait $spid || true
say "amber ended: $(cat "$work/exit.json" 2>/dev/null)"
tail -n 3 "$work/stderr.log" >&2

# The restore runs before any filter is installed; what the restored VM does after runs under
# the same filters (the memory file mapped copy-on-write, the vsock transport reset).
say "restoring the Full snapshot in a new amber under strace"
rm -f "$work/v.sock" "$work/api.sock" "$work/exit.json" "$work/amber.pid"
timeout 600 strace -ff -qq -o "$work/tr2" -- "$amber" --id seccomp-audit \
    --restore "$work/snap/vm.snap" --mem-file "$work/snap/vm.mem" --api-sock "$work/api.sock" \
    --console "$work/console2.log" --exit-file "$work/exit.json" --pid-file "$work/amber.pid" \
    2>"$work/stderr2.log" &
spid=$!
for _ in $(seq 1 240); do
    [ -S "$work/v.sock" ] && break
    kill -0 $spid 2>/dev/null || { cat "$work/stderr2.log" >&2; exit 1; }
    sleep 0.5
done
exec_guest 'echo restored; head -c 64 /dev/hwrng | wc -c; dd if=/dev/vdb of=/dev/null bs=64k count=4 2>/dev/null'
timeout 60 "$ctl" pause --api "$work/api.sock" >/dev/null || say "pause failed"
say "snapshot of the restored VM (its RAM is a private map of the old file)"
timeout 120 "$ctl" snapshot --api "$work/api.sock" "$work/snap2" >/dev/null || say "snapshot failed"
timeout 60 "$ctl" resume --api "$work/api.sock" >/dev/null || say "resume failed"
exec_guest 'echo after the second snapshot' >/dev/null
apid=$(cat "$work/amber.pid" 2>/dev/null || true)
say "SIGTERM to the restored amber ($apid)"
[ -n "$apid" ] && kill -TERM "$apid"
wait $spid || true
say "restored amber ended: $(cat "$work/exit.json" 2>/dev/null)"
grep -h "restore\|snapshot" "$work/stderr.log" "$work/stderr2.log" >&2 || true

python3 - "$work" "$repo/vmm/seccomp.c" <<'EOF'
import glob, os, re, sys
work, src = sys.argv[1], sys.argv[2]
text = open(src).read()
def allowlist(kind):
    body = re.search(r"BEGIN %s.*?END %s" % (kind, kind), text, re.S).group(0)
    return set(re.findall(r"ALLOW(?:_IF)?\((\w+)", body))
allowed = {"vmm": allowlist("vmm"), "vcpu": allowlist("vcpu")}
def ioctl_list(kind):
    body = re.search(r"\b%s_ioctls\[\] = \{(.*?)\};" % kind, text, re.S).group(1)
    body = re.sub(r"#\w+[^\n]*|/\*.*?\*/", "", body, flags=re.S)  # #ifdef lines, comments
    return set(re.findall(r"[A-Z][A-Z0-9_]+", body))
# the loop thread's ioctls include snapshot/create's KVM_GET_* (vmm_snapshot_ioctls)
allowed_ioctls = {"vmm": ioctl_list("vmm") | ioctl_list("vmm_snapshot"), "vcpu": ioctl_list("vcpu")}
used = {"vmm": set(), "vcpu": set()}
ioctls = {"vmm": set(), "vcpu": set()}
files, mains = [], set()
for run in ("tr1", "tr2"):  # the booted amber, then the restored one; the lowest tid is main
    fs = sorted(glob.glob(os.path.join(work, run + ".*")), key=lambda p: int(p.rsplit(".", 1)[1]))
    if not fs:
        print("no trace of %s" % run)
        sys.exit(1)
    files += fs
    mains.add(fs[0])
for path in files:
    lines = open(path, errors="replace").read().splitlines()
    # The filter's own load (libseccomp probes with NULL programs first: those fail).
    start = next((i for i, l in enumerate(lines)
                  if re.match(r"seccomp\(SECCOMP_SET_MODE_FILTER, \d+, \{len=\d+.*\) = 0$", l)), None)
    if start is None:
        continue  # a thread that never filtered itself (none expected)
    kind = "vmm" if path in mains else "vcpu"
    for l in lines[start + 1:]:
        m = re.match(r"(\w+)\(", l)
        if m:
            used[kind].add(m.group(1))
            if m.group(1) == "ioctl":
                r = re.match(r"ioctl\(\d+, ([A-Z0-9_]+|0x[0-9a-f]+)", l)
                if r:
                    ioctls[kind].add(r.group(1))
bad = 0
for kind in ("vmm", "vcpu"):
    miss = sorted(used[kind] - allowed[kind])
    bad_ioctls = sorted(ioctls[kind] - allowed_ioctls[kind])
    bad += len(miss) + len(bad_ioctls)
    print("%s filter: %d allowed, %d used after install" % (kind, len(allowed[kind]), len(used[kind])))
    print("  used but NOT allowed: %s" % (" ".join(miss) or "-"))
    print("  allowed, never used:  %s" % (" ".join(sorted(allowed[kind] - used[kind])) or "-"))
    print("  ioctl requests seen:  %s" % (" ".join(sorted(ioctls[kind])) or "-"))
    print("  ioctl requests seen but NOT allowed: %s" % (" ".join(bad_ioctls) or "-"))
    print("  ioctl requests allowed, never seen:  %s"
          % (" ".join(sorted(allowed_ioctls[kind] - ioctls[kind])) or "-"))
sys.exit(1 if bad else 0)
EOF
