#!/usr/bin/env bash
# make check-layers: fail when a C #include crosses amber's layers the wrong way, or when files
# depend on each other in a circle that is not on scripts/check-cycles.py's list of known ones.
# The table below is the README's architecture map; a folder may include its own headers and
# those of the folders (or single headers) listed for it. tests/ may include anything.
# usage: scripts/check-layers.sh [RESULTS_DIR]  (writes RESULTS_DIR/layers.txt, "N passed, N failed, N skipped")
set -u
cd "$(dirname "$0")/.."
results=${1:-}

declare -A allowed=(
    [proto]=""
    [config]=""
    [vmm]="config"
    [devices]="vmm config"
    [api]="vmm config"
    [board]="api devices vmm config"
    [ctl]="proto vmm/clock.h"
    [guest]="proto"
)

# Tracked files and new ones not yet added, so an include in a fresh file counts too; outside a
# git checkout, every source file but build/'s.
list_sources() {
    git ls-files --cached --others --exclude-standard -- '*.c' '*.h' '*.S' 2>/dev/null ||
        find . -path ./build -prune -o \( -name '*.c' -o -name '*.h' -o -name '*.S' \) -print |
        sed 's#^\./##'
}

checked=0
bad=0
report=""
while IFS= read -r file; do
    layer=${file%%/*}
    [ "$layer" = tests ] && continue
    if [ -z "${allowed[$layer]+set}" ]; then
        report+="$file: folder '$layer' is not in scripts/check-layers.sh's map"$'\n'
        bad=$((bad + 1))
        continue
    fi
    checked=$((checked + 1))
    while IFS=: read -r line inc; do
        target=${inc%%/*}
        # Same folder, or a header with no folder (generated, e.g. amber_syscall_names.h).
        [ "$target" = "$layer" ] || [ "$target" = "$inc" ] && continue
        ok=0
        for a in ${allowed[$layer]}; do
            if [ "$a" = "$target" ] || [ "$a" = "$inc" ]; then ok=1; break; fi
        done
        if [ "$ok" = 0 ]; then
            report+="$file:$line: includes \"$inc\"; $layer/ may include only: ${allowed[$layer]:-nothing outside itself}"$'\n'
            bad=$((bad + 1))
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
             sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1:\2/')
done < <(list_sources)

# Inside a folder: no new circle between files (#includes and direct calls; scripts/check-cycles.py).
cycles=$(python3 scripts/check-cycles.py 2>&1)
cycles_rc=$?
printf '%s\n' "$cycles" | grep -v '^known circle' >&2
if [ "$cycles_rc" -ne 0 ]; then
    report+=$(printf '%s\n' "$cycles" | grep -v '^known circle')$'\n'
    bad=$((bad + 1))
fi

if [ "$checked" -eq 0 ]; then
    report+="no source files found"$'\n'
    bad=$((bad + 1))
fi
printf '%s' "$report"
if [ "$bad" -eq 0 ]; then
    echo "check-layers: $checked files, every #include points down the layers"
else
    echo "check-layers: $bad problem(s): an include across the layers the wrong way, or a new circle (see README, \"Architecture\")"
fi
if [ -n "$results" ]; then
    mkdir -p "$results"
    echo "$((bad == 0 ? 1 : 0)) passed, $((bad == 0 ? 0 : 1)) failed, 0 skipped" > "$results/layers.txt"
    [ "$bad" -eq 0 ] || printf 'layers: %s' "$report" > "$results/layers-failed.txt"
fi
[ "$bad" -eq 0 ]
