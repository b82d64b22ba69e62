#!/usr/bin/env bash
# Runs a Python unittest discovery and records "N passed, N failed, N skipped" as RESULTS/<suite>.txt;
# each skipped test is listed with its reason in RESULTS/<suite>-skipped.txt.
# usage: tests/run-pyunit.sh RESULTS SUITE START_DIR
set -u
results=$1; suite=$2; start=$3
mkdir -p "$results"
log=$(mktemp)
/usr/bin/python3 -m unittest discover -v -s "$start" -t "$start" 2>&1 | tee "$log"
total=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} .*/\1/p' "$log" | tail -1)
fails=$(sed -n 's/.*failures=\([0-9]*\).*/\1/p' "$log" | tail -1)
errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' "$log" | tail -1)
skips=$(sed -n 's/.*skipped=\([0-9]*\).*/\1/p' "$log" | tail -1)
total=${total:-0}; fails=${fails:-0}; errors=${errors:-0}; skips=${skips:-0}
failed=$((fails + errors))
passed=$((total - failed - skips))
# "test_x (module.Class.test_x) ... skipped 'reason'"
sed -n "s/^\([^ ]*\) (\([^)]*\)) \.\.\. skipped '\(.*\)'\$/$suite: SKIPPED \2: \3/p" "$log" >"$results/$suite-skipped.txt"
if [ $((passed + failed)) -eq 0 ]; then
    echo "$suite: no test ran"
    failed=$((failed + 1))
fi
rm -f "$log"
cat "$results/$suite-skipped.txt"
echo "$suite: $passed passed, $failed failed, $skips skipped"
echo "$passed passed, $failed failed, $skips skipped" >"$results/$suite.txt"
[ "$failed" -eq 0 ]
