#!/usr/bin/env bash
# Builds everything and runs the whole test suite, then the checks CI runs, and
# prints one line "N passed, N failed" last, counting:
#   - the GoogleTest cases of `bazel test //...` (g++, optimised),
#   - the GoogleTest cases of the sanitizer passes: SANITIZER_TESTS under
#     --config=asan (ASan + UBSan, a finding aborts the test), and, with
#     QUANTLAB_UBSAN_ALL=1, the whole test suite (//tests/...) under --config=ubsan
#     (UBSan, optimised, no recovery),
#   - one per fuzz target of scripts/fuzz.sh (libFuzzer, QUANTLAB_FUZZ_SECONDS each),
#   - one for the format check of the changed lines (scripts/format_check.sh).
# A test target that failed to build or crashed without a report counts as one
# failed. Exit status is non-zero when anything failed. Run scripts/setup.sh first
# (as root). QUANTLAB_CHECKS=0 runs only `bazel test //...`.
set -uo pipefail
cd "$(dirname "$0")/.."

# The ASan pass covers the code that reads files from outside (configs and the
# ParamReader, IDX, checkpoints, QuantizedModels, the executor on loaded models)
# and core: the whole suite again under ASan (-O1, debug) would double the build
# of a cold CI, which must stay under 40 minutes on 2 cores. The whole suite under
# UBSan (optimised; its cold build and run took 9 min 30 s on one machine of this
# kind, over 20 min on a slower one, where the full CI then passed 60 min) runs
# when QUANTLAB_UBSAN_ALL=1.
SANITIZER_TESTS=(
  //tests/core/...
  //tests/data/...
  //tests/experiments:config_loader_test
  //tests/backends:quantized_model_test
  //tests/backends:reference_backend_test
  //tests/nn:models_test
  //tests/onnx:onnx_runner_test
  //tests/onnx:conformance_test
)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0
failed=0
rc_all=0

# Adds the GoogleTest counts of the `bazel test` output in $log to the totals;
# $1 is that run's bazel-testlogs directory.
count_tests() {
  local testlogs=$1 target status path xml head t f e
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
        f=1  # crashed (e.g. a sanitizer finding) or timed out after reporting
      fi
      passed=$((passed + t - f - e))
      failed=$((failed + f + e))
    else
      failed=$((failed + 1))  # failed to build, no status, timeout
    fi
  done < <(grep -E '^//[^ ]+ +(\(cached\) )?(PASSED|FAILED|FAILED TO BUILD|NO STATUS|TIMEOUT)' "$log" \
             | sed -E 's/\(cached\) //' | awk '{print $1, $2}')
}

# run_tests <config flags or ""> <targets...>: runs `bazel test` and counts it; a
# bazel failure outside any test counts once.
run_tests() {
  local config=$1 before=$failed rc
  shift
  # Test results are not taken from the cache: CI must run every test.
  bazel test $config "$@" --cache_test_results=no 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  count_tests "$(bazel info $config bazel-testlogs 2>/dev/null)"
  if [ "$rc" -ne 0 ] && [ "$failed" -eq "$before" ]; then
    failed=$((failed + 1))  # bazel itself failed (e.g. a build error outside any test)
  fi
  [ "$rc" -eq 0 ] || rc_all=1
}

# Adds the last "N passed, N failed" line of a check's output to the totals.
count_check() {
  local line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  p=${line%% passed*}
  f=${line#*, }
  f=${f%% failed}
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-1}))
}

run_tests "" //...
if [ "${QUANTLAB_CHECKS:-1}" != 0 ]; then
  echo "== sanitizer pass (--config=asan): ${SANITIZER_TESTS[*]}"
  run_tests --config=asan "${SANITIZER_TESTS[@]}"
  if [ "${QUANTLAB_UBSAN_ALL:-0}" = 1 ]; then
    echo "== UBSan pass of the whole suite (--config=ubsan): //tests/..."
    run_tests --config=ubsan //tests/...
  fi
  bazel shutdown >/dev/null 2>&1 || true

  echo "== fuzzing (scripts/fuzz.sh, ${QUANTLAB_FUZZ_SECONDS:-60} s per target)"
  # Its "N passed, N failed" line counts fuzz targets only; the summary is the last line.
  bash scripts/fuzz.sh 2>&1 | tee "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc_all=1
  count_check
  echo "== Slurm (scripts/slurm_test.sh: a single-node Slurm on localhost, a sweep as a job array)"
  # Its "N passed, N failed" line counts its checks.
  bash scripts/slurm_test.sh 2>&1 | tee "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc_all=1
  count_check
  echo "== format check (scripts/format_check.sh)"
  if bash scripts/format_check.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); rc_all=1; fi
fi
bazel shutdown >/dev/null 2>&1 || true
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$rc_all" -eq 0 ]
