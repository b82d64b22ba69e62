#!/usr/bin/env bash
# Builds the test guest in build/guest/: the Debian cloud kernel (vmlinuz, and vmlinux for PVH),
# a busybox initramfs with the virtio modules, and an ext4 rootfs. Incremental: the kernel is
# downloaded once, and the images are rebuilt only when their inputs (scripts, agent) change.
#
# usage: build-guest.sh [generic]
# "generic" builds build/guest/generic/ instead: Debian's generic amd64 kernel (the cloud kernel
# has no CONFIG_VMGENID) and an initramfs with the same modules and agent; no vmlinux or rootfs.
# Only the VM generation ID e2e test (docs/vmgenid.md) boots it.
set -euo pipefail
cd "$(dirname "$0")/.."

flavour=${1:-cloud}
case $flavour in
cloud) meta=linux-image-cloud-amd64 out=build/guest ;;
generic) meta=linux-image-amd64 out=build/guest/generic ;;
*)
    echo "usage: $0 [generic]" >&2
    exit 2
    ;;
esac
img=guest/image
agent=build/amber-agent
modules=(virtio_ring virtio virtio_mmio virtio_blk virtio_net virtio-rng vsock
    vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport)
mkdir -p "$out"

# Both flavours' packages are cached side by side in build/guest/.
tree=$(bash "$img/kernel-pkg.sh" "$meta" build/guest)
kimage=$(ls "$tree"/boot/vmlinuz-* | head -n1)

if ! cmp -s "$kimage" "$out/vmlinuz"; then
    cp "$kimage" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
    echo "guest: $flavour vmlinuz <- $(basename "$kimage")"
fi
if [ "$flavour" = cloud ] && { [ ! -f "$out/vmlinux" ] || [ "$out/vmlinuz" -nt "$out/vmlinux" ]; }; then
    python3 "$img/extract-vmlinux.py" "$out/vmlinuz" "$out/vmlinux"
fi

# Everything the initramfs and rootfs are made from; a change in any of it rebuilds both.
fingerprint=$(
    {
        echo "$tree ${modules[*]}"
        cat scripts/build-guest.sh "$img"/*.sh "$img"/*.py
        sha256sum "$(command -v busybox)"
        [ ! -f "$agent" ] || sha256sum "$agent"
    } | sha256sum | cut -d' ' -f1
)
if [ -f "$out/initramfs.cpio.gz" ] && { [ "$flavour" != cloud ] || [ -f "$out/rootfs.ext4" ]; } &&
    [ "$(cat "$out/.images-fingerprint" 2>/dev/null)" = "$fingerprint" ]; then
    echo "guest: images up to date"
    exit 0
fi

# install_bin SRC DEST-ROOT PATH: copies an executable and, if it is dynamic, its libraries.
install_bin() {
    local src=$1 root=$2 dst=$3 lib
    install -D -m 0755 "$src" "$root/$dst"
    if readelf -l "$src" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
            [ -e "$root/$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root/$lib"
        done
    fi
}

# populate DIR: the busybox userland and /sbin/init shared by the initramfs and the rootfs.
populate() {
    local root=$1 applet
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root,mnt,var/log}
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    install -m 0755 "$(command -v busybox)" "$root/bin/busybox"
    for applet in $(busybox --list-full); do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
    install -m 0755 "$img/init.sh" "$root/sbin/init"
    if [ -f "$agent" ]; then
        install_bin "$agent" "$root" sbin/amber-agent
    fi
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$root/etc/group"
    echo amber >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
    printf 'export PS1="amber# "\nexport PATH=/sbin:/bin:/usr/sbin:/usr/bin\n' >"$root/etc/profile"
}

stage="$out/initramfs-root"
rm -rf "$stage"
populate "$stage"
install -m 0755 "$img/init-initramfs.sh" "$stage/init"
python3 "$img/modules.py" "$tree" "$stage" "${modules[@]}"
python3 "$img/mkcpio.py" "$stage" "$out/initramfs.cpio.gz" \
    --dev dev/console:c:5:1 --dev dev/null:c:1:3
echo "guest: $out/initramfs.cpio.gz ($(du -k "$out/initramfs.cpio.gz" | cut -f1) KiB)$([ -f "$agent" ] && echo ', with amber-agent')"

if [ "$flavour" != cloud ]; then
    rm -rf "$stage"
    echo "$fingerprint" >"$out/.images-fingerprint"
    exit 0
fi

stage="$out/rootfs-root"
rm -rf "$stage"
populate "$stage"
rm -f "$out/rootfs.ext4.tmp"
truncate -s 256M "$out/rootfs.ext4.tmp"
mke2fs -q -F -t ext4 -L amber-root -E root_owner=0:0 -d "$stage" "$out/rootfs.ext4.tmp"
mv "$out/rootfs.ext4.tmp" "$out/rootfs.ext4"
echo "guest: rootfs.ext4 (256 MiB sparse, $(du -k "$out/rootfs.ext4" | cut -f1) KiB used)"

echo "$fingerprint" >"$out/.images-fingerprint"
