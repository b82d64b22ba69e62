#!/usr/bin/env bash
# A longer fuzzing campaign, by hand: each target in turn, niced, new inputs kept under build/.
# usage: tests/fuzz/campaign.sh SECONDS_PER_TARGET [TARGET...]   (default: every build/fuzz/fuzz_*)
# Appends "name seconds execs result" to build/fuzz/campaign/summary.txt; crashes are left in
# build/fuzz/campaign/<name>-crash-* (copy them to tests/fuzz/corpus/<name>/ as regressions).
set -u
seconds=${1:?usage: campaign.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/../.."
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(build/fuzz/fuzz_*)
out=build/fuzz/campaign
mkdir -p "$out"
for t in "${targets[@]}"; do
    [ -x "$t" ] || continue
    case "$t" in *.log | *-crash-* | *-leak-* | *-timeout-* | *-oom-*) continue ;; esac
    name=$(basename "$t")
    work=$out/corpus-$name
    mkdir -p "$work"
    log=$out/$name.log
    start=$(date +%s)
    nice -n 19 "$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/$name-" "$work" "tests/fuzz/corpus/$name" \
        >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    result=ok
    [ "$rc" -ne 0 ] && result="FAILED(rc=$rc)"
    echo "$name ${took}s ${execs:-?} $result $(date -u +%FT%TZ)" | tee -a "$out/summary.txt"
done
