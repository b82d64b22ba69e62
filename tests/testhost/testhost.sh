#!/usr/bin/env bash
# Runs a command inside the test host: a QEMU TCG VM with nested SVM, so /dev/kvm boots stock guests.
# usage: tests/testhost/testhost.sh (or scripts/testhost.sh) [--] CMD [ARGS...]
# The VM sees the whole machine read-only over 9p, the checkout writable, and a tmpfs /tmp and /run.
# Output streams to stdout; the exit status is CMD's. docs/testing.md describes the test host.
# Env: TESTHOST_MEM_MIB (8192), TESTHOST_CPUS (2), TESTHOST_ENV (extra variable names to pass),
#      TESTHOST_KEEP=1 keeps build/testhost/jobs/ID (with the kernel log, console.log),
#      TESTHOST_TIMEOUT_S (0: none) bounds the whole run, TESTHOST_STALL_S (120) the time the
#      test host may go without a heartbeat. A test host killed for either exits with 124.
#      TESTHOST_THP (never): the test host's transparent huge pages, never|madvise|always. Off
#      by default: nested guests backed by huge pages hang now and then under TCG (README's
#      test-host section). make bench turns them on for both VMMs. khugepaged and proactive
#      compaction stay idle either way (see init.sh).
#      TESTHOST_STACK (debian12): the QEMU and Linux pair, debian12 (QEMU 7.2, Linux 6.1, from
#      the system) or backports (QEMU 10.0, Linux 6.12, unpacked by scripts/setup.sh --stack
#      backports into build/testhost/backports/).
#      TESTHOST_HOLD_SVM (1): keep one idle KVM VM open inside, so that the test host's KVM never
#      switches SVM off and on between sandboxes, which hangs it now and then under TCG
#      (tests/testhost/hold_svm.py). 0 is for reproducing that hang only.
#      TESTHOST_EVIDENCE: a file that gets one line saying how the test host died (its heartbeat
#      stopped, its kernel panicked, its QEMU exited), when it did; tests/testhost/run-e2e.sh
#      journals it as the evidence that lets the test it cut off run again.
set -euo pipefail

[ "${1:-}" = "--" ] && shift
if [ $# -eq 0 ]; then
    echo "usage: scripts/testhost.sh [--] CMD [ARGS...]" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
th=$repo/build/testhost
img=$repo/guest/image
mem_mib=${TESTHOST_MEM_MIB:-8192}
cpus=${TESTHOST_CPUS:-2}
timeout_s=${TESTHOST_TIMEOUT_S:-0}
stall_s=${TESTHOST_STALL_S:-120}
thp=${TESTHOST_THP:-never}
tcg_thread=${TESTHOST_TCG_THREAD:-multi}
hold_svm=${TESTHOST_HOLD_SVM:-1}
kernel_args=${TESTHOST_KERNEL_ARGS:-}
stack=${TESTHOST_STACK:-debian12}
evidence=${TESTHOST_EVIDENCE:-/dev/null}
modules=(irqbypass ccp kvm kvm-amd virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev
    virtio_pci netfs fscache 9pnet 9pnet_virtio 9p tun vhost vhost_iotlb vsock vhost_vsock
    crc32c_generic veth nf_tables nf_conntrack nf_nat nft_ct nft_chain_nat nft_nat nft_masq loop ext4)

for v in "$timeout_s" "$stall_s" "$mem_mib" "$cpus"; do
    case "$v" in
    '' | *[!0-9]*)
        echo "testhost: TESTHOST_TIMEOUT_S, TESTHOST_STALL_S, TESTHOST_MEM_MIB and TESTHOST_CPUS take whole numbers, not '$v'" >&2
        exit 2
        ;;
    esac
done

case "$kernel_args" in
*[!A-Za-z0-9_.,=\ -]*)
    echo "testhost: TESTHOST_KERNEL_ARGS takes words of letters, digits and _ . , = -, not '$kernel_args'" >&2
    exit 2
    ;;
esac

case "$hold_svm" in
0 | 1) ;;
*)
    echo "testhost: TESTHOST_HOLD_SVM takes 0 or 1, not '$hold_svm'" >&2
    exit 2
    ;;
esac

case "$tcg_thread" in
multi | single) ;;
*)
    echo "testhost: TESTHOST_TCG_THREAD takes multi or single, not '$tcg_thread'" >&2
    exit 2
    ;;
esac

case "$thp" in
never | madvise | always) ;;
*)
    echo "testhost: TESTHOST_THP takes never, madvise or always, not '$thp'" >&2
    exit 2
    ;;
esac

case "$repo" in
*[[:space:]]*)
    echo "testhost: the checkout path must not contain spaces: $repo" >&2
    exit 2
    ;;
esac

# The generic kernel (it has 9p and kvm-amd) and a busybox initramfs, both cached per stack.
mkdir -p "$th"
case "$stack" in
debian12)
    tree=$(bash "$img/kernel-pkg.sh" linux-image-amd64 "$th")
    qemu_bin=(qemu-system-x86_64)
    ;;
backports)
    th=$th/backports
    if [ ! -f "$th/.ready" ]; then
        echo "testhost: the backports stack is not unpacked: run scripts/setup.sh --stack backports" >&2
        exit 2
    fi
    tree=$th/kernel
    # Unpacked, not installed: its firmware and option ROMs come from its own data directory.
    qemu_bin=("$th/qemu/usr/bin/qemu-system-x86_64" -L "$th/qemu/usr/share/qemu" -L "$th/qemu/usr/share/seabios")
    ;;
*)
    echo "testhost: TESTHOST_STACK takes debian12 or backports, not '$stack'" >&2
    exit 2
    ;;
esac
kernel=$(ls "$tree"/boot/vmlinuz-* | head -n1)
fingerprint=$(
    {
        echo "$tree ${modules[*]}"
        cat "$here/init.sh" "$img/modules.py" "$img/mkcpio.py"
        sha256sum "$(command -v busybox)"
    } | sha256sum | cut -d' ' -f1
)
if [ ! -f "$th/initramfs.cpio.gz" ] || [ "$(cat "$th/.fingerprint" 2>/dev/null)" != "$fingerprint" ]; then
    stage=$th/initramfs-root.$$
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,host,tmp}
    install -m 0755 "$(command -v busybox)" "$stage/bin/busybox"
    for applet in $(busybox --list-full); do
        [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
    done
    install -m 0755 "$here/init.sh" "$stage/init"
    python3 "$img/modules.py" "$tree" "$stage" "${modules[@]}" 2>/dev/null
    python3 "$img/mkcpio.py" "$stage" "$th/initramfs.cpio.gz" --dev dev/console:c:5:1
    rm -rf "$stage"
    echo "$fingerprint" >"$th/.fingerprint"
fi

# The job directory is on the writable share: the guest reads cmd.sh there and writes rc back.
job=$th/jobs/$$-$RANDOM
rm -rf "$job"
mkdir -p "$job"
tty=0
[ -t 0 ] && [ -t 1 ] && tty=1

{
    echo "# generated by tests/testhost/testhost.sh"
    while IFS= read -r name; do
        case "$name" in
        PATH | HOME | LANG | LC_ALL | TZ | USER | LOGNAME | CI | AMBER_* | TEST_*) ;;
        TERM) [ "$tty" = 1 ] || continue ;;
        *) [[ " ${TESTHOST_ENV:-} " == *" $name "* ]] || continue ;;
        esac
        printf 'export %s=%q\n' "$name" "${!name}"
    done < <(compgen -e)
    printf 'export TESTHOST_STACK=%q\n' "$stack"
    if [ "$tty" = 1 ]; then
        read -r rows cols < <(stty size 2>/dev/null || echo "24 80")
        echo "stty rows $rows cols $cols 2>/dev/null"
    else
        echo "export TERM=dumb"
    fi
    # The checkout is always visible at its own path; other folders under /tmp, /run,
    # /var/tmp or /root are scratch tmpfs inside the test host.
    case "$PWD/" in
    "$repo"/*) printf 'cd -- %q || exit 125\n' "$PWD" ;;
    /tmp/* | /run/* | /var/tmp/* | /root/*)
        echo "echo 'testhost: $PWD is not shared (tmpfs inside); running in /' >&2; cd /"
        ;;
    *) printf 'cd -- %q || exit 125\n' "$PWD" ;;
    esac
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
} >"$job/cmd.sh"

# EPYC minus what TCG cannot emulate (QEMU warns about each of these otherwise).
tcg_missing=-rdseed,-sha-ni,-fxsr-opt,-misalignsse,-3dnowprefetch,-osvw,-topoext,-nrip-save,-xsavec
qemu=("${qemu_bin[@]}" -accel "tcg,thread=$tcg_thread" -M q35 -cpu "EPYC,+svm,+npt,$tcg_missing"
    -smp "$cpus" -m "$mem_mib" -nodefaults -no-user-config -display none -no-reboot
    -kernel "$kernel" -initrd "$th/initramfs.cpio.gz"
    -append "console=ttyS0 reboot=t panic=-1 quiet transparent_hugepage=$thp $kernel_args amber.repo=$repo amber.job=$job amber.tty=$tty amber.hold_svm=$hold_svm"
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$repo,mount_tag=repo,security_model=none,multidevs=remap"
    -serial "file:$job/console.log" -pidfile "$job/qemu.pid")

start=$EPOCHREALTIME
# The watchdog reports the boot time once the guest has written its "started" file, and kills
# QEMU when the test host stops its heartbeat (a hung kernel under nested TCG) or overruns
# TESTHOST_TIMEOUT_S; the reason goes to $job/killed.
(
    booted=0
    late=0
    while [ -d "$job" ]; do
        sleep 1
        now=$EPOCHREALTIME
        if [ "$booted" = 0 ] && [ -s "$job/started" ]; then
            booted=1
            awk -v a="$start" -v b="$now" -v up="$(cat "$job/started")" \
                'BEGIN { printf "testhost: booted in %.1f s (guest uptime %s s)\n", b - a, up }' >&2
        fi
        elapsed=$(( ${now%[.,]*} - ${start%[.,]*} ))
        reason=
        if [ "$timeout_s" -gt 0 ] && [ "$elapsed" -ge "$timeout_s" ]; then
            reason="it ran past TESTHOST_TIMEOUT_S=$timeout_s s"
        elif [ -s "$job/broken" ]; then
            reason="the command found its kernel broken: $(head -c 300 "$job/broken" | tr -d '\n')"
        elif [ "$booted" = 1 ] && [ -e "$job/alive" ]; then
            quiet=$(( ${now%[.,]*} - $(stat -c %Y "$job/alive") ))
            [ "$quiet" -ge "$stall_s" ] && reason="its heartbeat stopped $quiet s ago (hung kernel?)"
            # A late heartbeat is said once (5 s is its period): a test host starved for a
            # while but alive tells itself apart from a hung one in the log.
            if [ "$quiet" -ge 20 ] && [ "$late" = 0 ]; then
                late=1
                echo "testhost: heartbeat late: none for $quiet s" >&2
            elif [ "$quiet" -lt 20 ] && [ "$late" = 1 ]; then
                late=0
                echo "testhost: heartbeat back" >&2
            fi
        elif [ "$booted" = 0 ] && [ "$elapsed" -ge "$stall_s" ]; then
            reason="it did not start the command within $stall_s s"
        fi
        if [ -n "$reason" ] && [ -s "$job/qemu.pid" ]; then
            echo "$reason" >"$job/killed"
            echo "testhost: killing the test host: $reason" >&2
            pid=$(cat "$job/qemu.pid")
            kill -TERM "$pid" 2>/dev/null
            sleep 5
            kill -KILL "$pid" 2>/dev/null
            exit 0
        fi
    done
) &
poller=$!

cleanup() {
    kill "$poller" 2>/dev/null || true
    wait "$poller" 2>/dev/null || true
    [ "${TESTHOST_KEEP:-0}" = 1 ] || rm -rf "$job"
}
trap cleanup EXIT

set +e
if [ "$tty" = 1 ]; then
    # The terminal is the command's terminal; Ctrl-A X leaves QEMU.
    "${qemu[@]}" -serial mon:stdio
else
    # With stdin closed QEMU's stdio chardev refuses to start, so it gets /dev/null.
    "${qemu[@]}" -serial stdio </dev/null
fi
qemu_rc=$?
set -e

# The test host's own kernel log says whether it panicked: the strongest evidence of all.
panic=$(grep -m1 -aE 'Kernel panic|BUG:|general protection fault|Oops' "$job/console.log" 2>/dev/null | tr -d '\r' | cut -c1-200 || true)
if [ -s "$job/rc" ]; then
    rc=$(cat "$job/rc")
elif [ -s "$job/killed" ]; then
    echo "testhost: the command was cut off: $(cat "$job/killed"); kernel log tail:" >&2
    tail -n 30 "$job/console.log" >&2 || true
    # Running out of TESTHOST_TIMEOUT_S is the caller's budget, not the test host breaking.
    grep -q TESTHOST_TIMEOUT_S "$job/killed" && [ -z "$panic" ] ||
        echo "test host ($stack) killed: $(cat "$job/killed")${panic:+; its kernel log: $panic}" >"$evidence"
    rc=124
else
    echo "testhost: the command did not report an exit status (QEMU exited with $qemu_rc); kernel log tail:" >&2
    tail -n 30 "$job/console.log" >&2 || true
    echo "test host ($stack) died: QEMU exited with $qemu_rc before the command ended${panic:+; its kernel log: $panic}" >"$evidence"
    rc=125
fi
awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "testhost: done in %.1f s\n", b - a }' >&2
exit "$rc"
