#!/bin/sh
# amber guest /sbin/init (initramfs and rootfs): runs the amber.test= action, /amber-run.sh,
# the amber agent, or an interactive shell. Tests wait for the line "amber-guest: ready".
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=${TERM:-linux}

[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs -o mode=0755 devtmpfs /dev
for d in /tmp /run; do
    grep -q " $d tmpfs " /proc/mounts || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$d"
done
mkdir -p /dev/pts /dev/shm
grep -q " /dev/pts " /proc/mounts || mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
hostname amber 2>/dev/null
ip link set lo up 2>/dev/null

ready() {
    echo "amber-guest: ready"
}

off() {
    sync
    poweroff -f
    sleep 5
}

shell() {
    setsid cttyhack sh
}

test=
set -f
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    amber.test=*) test=${arg#amber.test=} ;;
    esac
done
set +f

case "$test" in
"") ;;
poweroff)
    ready
    off
    ;;
reboot)
    ready
    sync
    reboot -f
    sleep 5
    ;;
nproc)
    ready
    echo "amber-nproc: $(grep -c '^processor' /proc/cpuinfo)"
    off
    ;;
meminfo)
    ready
    echo "amber-memtotal-kb: $(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)"
    off
    ;;
shell)
    ready
    shell
    off
    ;;
*)
    echo "init: unknown amber.test=$test, ignored"
    ;;
esac

if [ -f /amber-run.sh ]; then
    ready
    sh /amber-run.sh
    echo "amber-run: exit $?"
    off
fi

if [ -x /sbin/amber-agent ]; then
    exec /sbin/amber-agent
fi

ready
shell
off
