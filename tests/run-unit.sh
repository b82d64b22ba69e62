#!/usr/bin/env bash
# Runs each cmocka unit-test binary and records "N passed, N failed" in RESULTS/$UNIT_SUITE.txt
# (UNIT_SUITE defaults to "unit"; the sanitizer run uses "unit-san").
set -u
results=$1; shift
mkdir -p "$results"
passed=0; failed=0
for t in "$@"; do
    out=$(timeout 300 "$t" 2>&1 </dev/null); rc=$?
    [ "$rc" -eq 124 ] && echo "unit: $t timed out after 300 s"
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "unit: $t exited with status $rc outside any test"
        f=1
    fi
    passed=$((passed + p)); failed=$((failed + f))
done
suite=${UNIT_SUITE:-unit}
echo "$suite: $passed passed, $failed failed"
echo "$passed passed, $failed failed" > "$results/$suite.txt"
[ "$failed" -eq 0 ]
