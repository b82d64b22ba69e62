#!/usr/bin/env bash
# Fetches and unpacks (never installs) the Debian kernel package a meta-package currently depends on.
# Usage: kernel-pkg.sh META-PACKAGE DEST-DIR   -> prints the unpacked tree's path (DEST-DIR/pkg-NAME_VERSION).
# The unpacked tree is cached: nothing is downloaded when it is already there.
set -euo pipefail
meta=$1
dest=$2

resolve() {
    apt-cache depends "$meta" 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

mkdir -p "$dest"
# Concurrent callers (two test hosts starting at once) wait for each other here.
exec 9>"$dest/.kernel-pkg.lock"
flock 9

# Resolving through apt-cache takes seconds; reuse the answer while the apt lists are unchanged.
cache="$dest/.resolved-$meta"
lists_sig=$(ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null | cksum | cut -d' ' -f1)
if [ -f "$cache" ]; then
    read -r sig tree_cached <"$cache" || true
    if [ "${sig:-}" = "$lists_sig" ] && [ -f "${tree_cached:-/nonexistent}/.unpacked" ]; then
        echo "$tree_cached"
        exit 0
    fi
fi

pkg=$(resolve || true)
if [ -z "$pkg" ]; then
    echo "kernel-pkg: apt lists do not know $meta; running apt-get update" >&2
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >&2
    pkg=$(resolve || true)
fi
[ -n "$pkg" ] || { echo "kernel-pkg: cannot resolve $meta" >&2; exit 1; }
ver=$(apt-cache show --no-all-versions "$pkg" | awk '$1 == "Version:" { print $2; exit }')
[ -n "$ver" ] || { echo "kernel-pkg: no version for $pkg" >&2; exit 1; }

tree="$dest/pkg-${pkg}_${ver}"
if [ ! -f "$tree/.unpacked" ]; then
    mkdir -p "$dest/deb"
    deb=$(ls "$dest/deb/${pkg}_"*"${ver##*:}"*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        echo "kernel-pkg: downloading $pkg $ver" >&2
        (cd "$dest/deb" && apt-get download -q "$pkg=$ver" >&2)
        deb=$(ls "$dest/deb/${pkg}_"*.deb | head -n1)
    fi
    rm -rf "$tree"
    mkdir -p "$tree"
    dpkg -x "$deb" "$tree"
    touch "$tree/.unpacked"
fi
lists_sig=$(ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null | cksum | cut -d' ' -f1)
echo "$lists_sig $tree" >"$cache"
echo "$tree"
