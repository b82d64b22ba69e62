#!/bin/sh
# Test host /init: mounts the outer machine's root over 9p (read-only) and the checkout (writable),
# then runs the job's command in a chroot with the serial line ttyS1 as its terminal or output.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
set -o pipefail

mount -t devtmpfs -o mode=0755 devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
exec </dev/console >/dev/console 2>&1

# A module's parameters come from the kernel command line's MODULE.PARAM=VALUE words
# (TESTHOST_KERNEL_ARGS), as modprobe would pass them; busybox insmod does not look there.
modparams() {
    for arg in $(cat /proc/cmdline); do
        case "$arg" in
        "$1".*=*) echo "${arg#"$1".}" ;;
        esac
    done
}
while read -r mod; do
    [ -n "$mod" ] || continue
    name=$(echo "${mod%.ko}" | tr - _)
    # shellcheck disable=SC2046 # one word per parameter
    insmod "/lib/modules/$mod" $(modparams "$name") 2>/dev/null
done </etc/amber-modules

job=
repo=
tty=0
hold_svm=1
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    amber.job=*) job=${arg#amber.job=} ;;
    amber.repo=*) repo=${arg#amber.repo=} ;;
    amber.tty=*) tty=${arg#amber.tty=} ;;
    amber.hold_svm=*) hold_svm=${arg#amber.hold_svm=} ;;
    esac
done

fail() {
    echo "testhost-init: $*"
    sync
    poweroff -f
}

opts=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /host
mount -t 9p -o "$opts,ro,cache=loose" hostroot /host || fail "cannot mount the host root"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
# KVM's per-VM counters (debugfs kvm/<pid>-<fd>/exits, ...): the e2e stall report reads them
# to tell a guest that stopped running from one that runs but waits.
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
mount -t devtmpfs -o mode=0755 devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /host/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
for d in /tmp /run /var/tmp; do
    mount -t tmpfs -o mode=1777 tmpfs "/host$d"
done
# Programs that write under $HOME (caches, histories) get a scratch home.
mount -t tmpfs -o mode=0700 tmpfs /host/root
# The checkout goes on last, so that it stays visible even when it lives under one of the
# scratch tmpfs mounts above (a clone in /tmp or /root, as CI may make).
mkdir -p "/host$repo" 2>/dev/null
mount -t 9p -o "$opts" repo "/host$repo" || fail "cannot mount the checkout at $repo"
ip link set lo up
hostname testhost
# Huge pages stay where they are once mapped: khugepaged's collapses and proactive compaction
# move pages under running nested guests, which nested SVM under TCG does not always survive.
t=/sys/kernel/mm/transparent_hugepage
echo 4294967295 >$t/khugepaged/scan_sleep_millisecs
echo 4294967295 >$t/khugepaged/alloc_sleep_millisecs
echo 0 >/proc/sys/vm/compaction_proactiveness
[ -d "/host$job" ] || fail "job directory $job is missing"
# KVM's shutdown exits (a nested guest's triple fault) with the guest's RIP at that moment: on
# AMD, KVM resets the vCPU before amber hears of it, so this trace is the only record of where
# the guest was. It goes to the job folder, where it outlives a test host that dies, and
# tests/testhost/leak.py reads it through /run (SVM_EXIT_SHUTDOWN is exit reason 127).
tr=/host/sys/kernel/tracing
if mount -t tracefs tracefs $tr 2>/dev/null && [ -d $tr/events/kvm/kvm_exit ]; then
    echo 64 >$tr/buffer_size_kb
    echo 'exit_reason == 127' >$tr/events/kvm/kvm_exit/filter
    echo 1 >$tr/events/kvm/kvm_exit/enable
    cat $tr/trace_pipe >"/host$job/kvm-shutdowns.log" &
    ln -s "$job/kvm-shutdowns.log" /host/run/amber-kvm-shutdowns.log
fi
# The e2e runner writes here when it finds this kernel broken (a SIGKILLed process that never
# leaves it, tests/testhost/e2e.py); testhost.sh's watchdog then ends the test host.
ln -s "$job/broken" /host/run/amber-testhost-broken
# The test host's own kernel text and KVM modules, to place a traced RIP after the test host is gone.
{ grep -wE '_stext|_etext|__svm_vcpu_run' /proc/kallsyms; grep '^kvm' /proc/modules; } >"/host$job/testhost-layout.txt"

# Linux 6.1's KVM switches SVM on in every CPU when its first VM is created and off when its last
# one is closed. Under this TCG, the switch hangs the test host now and then: a loop creating and
# closing VMs hung it in three of three tries (twice before the fifth VM), and created 2,700 in
# three tries without a hang while one VM stayed open. One idle VM, held while the test host lives,
# keeps SVM on (docs/testing.md, "SVM switched off and on"; TESTHOST_HOLD_SVM=0 turns this off).
if [ "$hold_svm" = 1 ]; then
    chroot /host /usr/bin/python3 "$repo/tests/testhost/hold_svm.py" &
    # Its VM shows in debugfs once created: the command's first VM must not be the first one.
    i=0
    holder=$!
    while [ $i -lt 100 ] && kill -0 $holder 2>/dev/null && ! ls -d "/host/sys/kernel/debug/kvm/$holder"-* >/dev/null 2>&1; do
        sleep 0.1
        i=$((i + 1))
    done
fi

echo "$(cut -d' ' -f1 /proc/uptime)" >"/host$job/started"
# A heartbeat for tests/testhost/testhost.sh: it stops if this kernel or the 9p share stops. It runs at
# the highest priority, so that a test host busy to its last cycle (a TAP test's softirqs, two
# spinning vCPUs) does not pass for a hung one.
(
    while :; do
        cut -d' ' -f1 /proc/uptime >"/host$job/alive.tmp" && mv "/host$job/alive.tmp" "/host$job/alive"
        sleep 5
    done
) &
renice -n -20 -p $! >/dev/null 2>&1
if [ "$tty" = 1 ]; then
    stty -F /dev/ttyS1 sane
    chroot /host /usr/bin/setsid -w -c /bin/bash "$job/cmd.sh" </dev/ttyS1 >/dev/ttyS1 2>&1
    rc=$?
else
    stty -F /dev/ttyS1 raw -echo
    chroot /host /bin/bash "$job/cmd.sh" </dev/null 2>&1 | cat >/dev/ttyS1
    rc=$?
fi
# stty sets the line with TCSADRAIN: it returns once the command's output has left the UART.
stty -F /dev/ttyS1 sane
echo "$rc" >"/host$job/rc"
sync
poweroff -f
