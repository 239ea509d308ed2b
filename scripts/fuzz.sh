#!/usr/bin/env bash
# Builds the libFuzzer targets of //fuzz with clang-14 (bazel --config=fuzz, in an
# output base of its own: switching the C++ compiler re-configures the toolchain,
# which would otherwise throw away the g++ build) and runs each one for
# QUANTLAB_FUZZ_SECONDS seconds (default 60) on its committed seed corpus
# fuzz/corpus/<target>. New inputs go to a scratch corpus, never into the repo.
# Prints one line per target, "fuzz <target>: PASSED|FAILED ...", and, last,
# "N passed, N failed" counting targets. A crash, leak, UB, timeout (-timeout) or
# an allocation over -rss_limit_mb fails the target; its input is kept in
# $QUANTLAB_FUZZ_ARTIFACTS (default /tmp/quantlab-fuzz-artifacts) to reproduce:
#   <fuzzer binary> <artifact>
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${QUANTLAB_FUZZ_SECONDS:-60}
artifacts=${QUANTLAB_FUZZ_ARTIFACTS:-/tmp/quantlab-fuzz-artifacts}
# QUANTLAB_FUZZ_TARGETS (space-separated) runs a subset.
read -r -a targets <<<"${QUANTLAB_FUZZ_TARGETS:-config_loader idx checkpoint quantized_model onnx}"

# One output base per checkout (as Bazel's own are), next to Bazel's in ~/.cache.
fuzz_base="${QUANTLAB_FUZZ_OUTPUT_BASE:-$HOME/.cache/quantlab-bazel-fuzz/$(pwd -P | md5sum | cut -c1-32)}"
fuzz_bazel() { bazel --output_base="$fuzz_base" "$@"; }

build_log=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$build_log" "$work"; fuzz_bazel shutdown >/dev/null 2>&1 || true' EXIT

labels=()
for t in "${targets[@]}"; do labels+=("//fuzz:${t}_fuzzer"); done
if ! fuzz_bazel build --config=fuzz "${labels[@]}" >"$build_log" 2>&1; then
  tail -n 40 "$build_log"
  echo "fuzz: the fuzz targets failed to build"
  echo "0 passed, ${#targets[@]} failed"
  exit 1
fi
bin=$(fuzz_bazel info --config=fuzz bazel-bin 2>/dev/null)

mkdir -p "$artifacts"
passed=0
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  log="$work/$t.log"
  # The config loader resolves a sweep's `base:` against the working directory as
  # well, so it runs in configs/ where the seeds' bases are.
  (cd configs && "$bin/fuzz/${t}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
     -max_len=4096 -artifact_prefix="$artifacts/$t-" "$work/$t" "../fuzz/corpus/$t") >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log")
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: PASSED (${runs:-?})"
  else
    failed=$((failed + 1))
    grep -E -m1 -A30 'ERROR: |runtime error' "$log" | head -n 40
    echo "fuzz $t: FAILED (exit $rc; input in $artifacts/$t-*)"
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
