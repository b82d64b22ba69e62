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

# Waits (5 s at most) until the console has sent what its tty still holds: stty sets the line
# with TCSADRAIN. Power-off and reboot print through the kernel's console directly, which would
# otherwise cut into a line still queued, such as "amber-guest: ready".
drain() {
    timeout 5 stty -F /dev/console -tostop 2>/dev/null
}

off() {
    sync
    drain
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

# amber.test= takes one action or a comma list (e.g. "nproc,meminfo,reboot"): the report actions
# (nproc, meminfo, cpuflags) print their lines after the ready marker, then the run ends in
# power-off unless reboot or shell was asked for.
if [ -n "$test" ]; then
    known=
    end=off
    IFS=,
    for t in $test; do
        case "$t" in
        poweroff | nproc | meminfo | cpuflags) known=1 ;;
        reboot | shell) known=1 end=$t ;;
        *) echo "init: unknown amber.test=$t, ignored" ;;
        esac
    done
    if [ -n "$known" ]; then
        ready
        for t in $test; do
            case "$t" in
            nproc) echo "amber-nproc: $(grep -c '^processor' /proc/cpuinfo)" ;;
            meminfo) echo "amber-memtotal-kb: $(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)" ;;
            cpuflags) echo "amber-cpu-flags: $(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" ;;
            esac
        done
        unset IFS
        case "$end" in
        reboot)
            sync
            drain
            reboot -f
            sleep 5
            ;;
        shell)
            shell
            off
            ;;
        *) off ;;
        esac
    fi
    unset IFS
fi

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
