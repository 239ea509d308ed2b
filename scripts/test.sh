#!/usr/bin/env bash
# Builds everything and runs the whole test suite, then prints one line
# "N passed, N failed" counting GoogleTest cases (a test target that failed to
# build or crashed without a report counts as one failed). Exit status is
# non-zero when anything failed. Run scripts/setup.sh first (as root).
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Test results are not taken from the cache: CI must run every test.
bazel test //... --cache_test_results=no 2>&1 | tee "$log"
bazel_rc=${PIPESTATUS[0]}

testlogs=$(bazel info bazel-testlogs 2>/dev/null)
passed=0
failed=0
# Summary lines look like: "//tests/core:params_test   (cached) PASSED in 0.2s"
while read -r target status; do
  path=${target#//}
  path=${path/://}
  xml="$testlogs/$path/test.xml"
  if [ -f "$xml" ] && [[ "$status" == PASSED* || "$status" == FAILED* ]]; then
    # The first <testsuites ...> element carries the totals of the target.
    head=$(grep -m1 -o '<testsuites[^>]*>' "$xml")
    t=$(sed -n 's/.* tests="\([0-9]*\)".*/\1/p' <<<"$head")
    f=$(sed -n 's/.* failures="\([0-9]*\)".*/\1/p' <<<"$head")
    e=$(sed -n 's/.* errors="\([0-9]*\)".*/\1/p' <<<"$head")
    t=${t:-0}; f=${f:-0}; e=${e:-0}
    if [[ "$status" == FAILED* && $((f + e)) -eq 0 ]]; then
      f=1  # crashed or timed out after reporting
    fi
    passed=$((passed + t - f - e))
    failed=$((failed + f + e))
  else
    failed=$((failed + 1))  # failed to build, no status, timeout
  fi
done < <(grep -E '^//[^ ]+ +(\(cached\) )?(PASSED|FAILED|FAILED TO BUILD|NO STATUS|TIMEOUT)' "$log" \
           | sed -E 's/\(cached\) //' | awk '{print $1, $2}')

if [ "$bazel_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1  # bazel itself failed (e.g. a build error outside any test)
fi
bazel shutdown >/dev/null 2>&1 || true
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$bazel_rc" -eq 0 ]
