#!/usr/bin/env bash
# Runs each cmocka unit-test binary and records "N passed, N failed, N skipped" in
# RESULTS/$UNIT_SUITE.txt (UNIT_SUITE defaults to "unit"; the sanitizer run uses "unit-san");
# each skipped test is listed, with the message it printed before skip(), in RESULTS/$UNIT_SUITE-skipped.txt.
# UNIT_JOBS (4) binaries run at once: most of a binary's time is spent waiting (threads, timers,
# child processes), not on a CPU. Their outputs are printed whole, in the order given.
set -u
results=$1; shift
mkdir -p "$results"
suite=${UNIT_SUITE:-unit}
jobs=${UNIT_JOBS:-4}
case "$jobs" in '' | *[!0-9]* | 0) echo "$suite: UNIT_JOBS takes a whole number above 0, not '$jobs'" >&2; exit 2 ;; esac
passed=0; failed=0; skipped=0
: >"$results/$suite-skipped.txt"
outs=$(mktemp -d)
trap 'rm -rf "$outs"' EXIT
i=0
for t in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    (timeout 300 "$t" >"$outs/$i.out" 2>&1 </dev/null; echo $? >"$outs/$i.rc") &
    i=$((i + 1))
done
wait
i=0
for t in "$@"; do
    out=$(cat "$outs/$i.out"); rc=$(cat "$outs/$i.rc")
    i=$((i + 1))
    [ "$rc" -eq 124 ] && echo "$suite: $t timed out after 300 s"
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -1)
    p=${p:-0}; f=${f:-0}; s=${s:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$suite: $t exited with status $rc outside any test"
        f=1
    fi
    # A skipped test's reason is what it printed between its RUN and SKIPPED lines.
    printf '%s\n' "$out" | awk -v bin="$(basename "$t")" -v suite="$suite" '
        /^\[ RUN      \] / { name = $4; why = ""; next }
        /^\[  SKIPPED \] / && $4 == name { print suite ": SKIPPED " bin "." name ": " (why == "" ? "no reason printed" : why); name = ""; next }
        name != "" { why = why (why == "" ? "" : " ") $0 }' >>"$results/$suite-skipped.txt"
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done
if [ $((passed + failed)) -eq 0 ]; then
    echo "$suite: no test ran"
    failed=1
fi
cat "$results/$suite-skipped.txt"
echo "$suite: $passed passed, $failed failed, $skipped skipped"
echo "$passed passed, $failed failed, $skipped skipped" >"$results/$suite.txt"
[ "$failed" -eq 0 ]
