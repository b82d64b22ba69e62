#!/usr/bin/env bash
# Adds up every suite's "N passed, N failed, N skipped" record and ends with exactly one line,
# "N passed, N failed, N skipped". A suite with no record, or one that executed no test, fails.
# Above that line: every skipped test with its reason, the failures' reasons, and the e2e
# retries (and resumed test hosts) with their evidence.
set -u
results=$1
passed=0; failed=0; skipped=0
for suite in layers unit unit-san agent-host sdk-unit e2e-runner fuzz e2e; do
    f="$results/$suite.txt"
    if [ ! -f "$f" ]; then
        echo "summary: suite '$suite' recorded no result (it did not run or crashed)"
        failed=$((failed + 1))
        continue
    fi
    read -r p _ fl _ s _ <"$f"
    p=${p:-0}; fl=${fl:-0}; s=${s:-0}
    echo "summary: $suite: $p passed, $fl failed, $s skipped"
    if [ $((p + fl)) -eq 0 ]; then
        echo "summary: suite '$suite' executed no test"
        fl=1
    fi
    passed=$((passed + p)); failed=$((failed + fl)); skipped=$((skipped + s))
done
# Repeated here, where a log's tail shows them.
cat "$results"/*-skipped.txt "$results"/*-failed.txt "$results"/*-retried.txt 2>/dev/null
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
