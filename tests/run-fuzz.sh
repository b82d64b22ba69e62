#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time on its checked-in corpus; records
# "N passed, N failed, N skipped" in RESULTS/fuzz.txt (a target that cannot run is skipped, listed).
# New inputs go to build/fuzz/corpus-<name>/ (the first corpus directory), crashes to
# build/fuzz/<name>-crash-*; the checked-in tests/fuzz/corpus/<name>/ is only read.
# RESULTS/fuzz-stats.txt gets "name seconds executions" per target.
set -u
results=$1; seconds=$2; shift 2
mkdir -p "$results"
# FUZZ_JOBS (the CPU count) targets run at once; their lines are printed in the order given.
jobs=${FUZZ_JOBS:-$(nproc)}
case "$jobs" in '' | *[!0-9]* | 0) echo "fuzz: FUZZ_JOBS takes a whole number above 0, not '$jobs'" >&2; exit 2 ;; esac
passed=0; failed=0; skipped=0
: >"$results/fuzz-skipped.txt"
mkdir -p build/fuzz
for t in "$@"; do
    name=$(basename "$t")
    rm -f build/fuzz/"$name".rc
    [ -x "$t" ] || continue
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    corpus=tests/fuzz/corpus/$name
    work=build/fuzz/corpus-$name
    mkdir -p "$work" "$corpus"
    ("$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix=build/fuzz/"$name"- "$work" "$corpus" > build/fuzz/"$name".log 2>&1
    echo $? > build/fuzz/"$name".rc) &
done
wait
for t in "$@"; do
    name=$(basename "$t")
    if [ ! -x "$t" ]; then
        echo "fuzz: SKIPPED $name: $t was not built" | tee -a "$results/fuzz-skipped.txt"
        skipped=$((skipped + 1))
        continue
    fi
    if [ "$(cat build/fuzz/"$name".rc 2>/dev/null)" = 0 ]; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' build/fuzz/"$name".log | tail -1)
        echo "$name $seconds ${execs:-?}" >> "$results/fuzz-stats.txt"
        echo "fuzz: $name ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' build/fuzz/"$name".log || tail -1 build/fuzz/"$name".log))"
        passed=$((passed + 1))
    else
        echo "fuzz: $name FAILED, see build/fuzz/$name.log"; tail -20 build/fuzz/"$name".log
        failed=$((failed + 1))
    fi
done
if [ $((passed + failed)) -eq 0 ]; then
    echo "fuzz: no target ran"
    failed=1
fi
echo "fuzz: $passed passed, $failed failed, $skipped skipped"
echo "$passed passed, $failed failed, $skipped skipped" > "$results/fuzz.txt"
[ "$failed" -eq 0 ]
