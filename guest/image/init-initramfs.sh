#!/bin/sh
# amber guest initramfs /init: mounts the basics, loads the virtio modules, then boots root= or /sbin/init.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t devtmpfs -o mode=0755 devtmpfs /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys

# Dependency order was resolved from modules.dep when the image was built.
while read -r mod; do
    [ -n "$mod" ] || continue
    if ! out=$(insmod "/lib/modules/$mod" 2>&1); then
        case "$out" in
        *"File exists"*) ;;
        *) echo "init: insmod $mod: $out" ;;
        esac
    fi
done </etc/amber-modules

root=
rootfstype=ext4
mode=rw
set -f
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    root=*) root=${arg#root=} ;;
    rootfstype=*) rootfstype=${arg#rootfstype=} ;;
    ro) mode=ro ;;
    rw) mode=rw ;;
    esac
done
set +f

if [ -z "$root" ]; then
    exec /sbin/init
fi

case "$root" in
UUID=* | LABEL=*)
    dev=
    tries=0
    while [ -z "$dev" ] && [ $tries -lt 50 ]; do
        dev=$(findfs "$root" 2>/dev/null)
        [ -n "$dev" ] || { sleep 0.1; tries=$((tries + 1)); }
    done
    ;;
*) dev=$root ;;
esac

tries=0
while [ ! -b "$dev" ] && [ $tries -lt 50 ]; do
    sleep 0.1
    tries=$((tries + 1))
done

mkdir -p /newroot
if [ -b "$dev" ] &&
    { mount -t "$rootfstype" -o "$mode" "$dev" /newroot 2>/dev/null ||
        mount -t "$rootfstype" -o ro "$dev" /newroot; }; then
    for fs in dev proc sys; do
        mkdir -p "/newroot/$fs" 2>/dev/null
        mount --move "/$fs" "/newroot/$fs"
    done
    exec switch_root /newroot /sbin/init
fi

echo "init: cannot mount root=$root ($dev, $rootfstype); powering off"
sync
poweroff -f
