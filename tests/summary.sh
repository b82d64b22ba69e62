#!/usr/bin/env bash
# Adds up every suite's "N passed, N failed" record and prints the one closing summary line.
set -u
results=$1
passed=0; failed=0
for suite in layers unit unit-san agent-host sdk-unit e2e-runner fuzz e2e; do
    f="$results/$suite.txt"
    if [ ! -f "$f" ]; then
        echo "summary: suite '$suite' recorded no result (it did not run or crashed)"
        failed=$((failed + 1))
        continue
    fi
    read -r p _ fl _ < "$f"
    echo "summary: $suite: $p passed, $fl failed"
    passed=$((passed + p)); failed=$((failed + fl))
done
# Repeat the failures' reasons here, where a log's tail shows them.
cat "$results"/*-failed.txt 2>/dev/null
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
