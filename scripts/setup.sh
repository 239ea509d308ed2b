#!/usr/bin/env bash
# Installs every Debian package quantlab needs to build, test and run.
# Idempotent: quiet when everything is present; safe to re-run. Needs root.
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap bazel-rules-java g++ protobuf-compiler pkg-config
  # libraries (see third_party/system_libs.BUILD)
  libabsl-dev libyaml-cpp-dev libprotobuf-dev
  libxnnpack-dev libpthreadpool-dev libcpuinfo-dev libfp16-dev libdnnl-dev
  libgemmlowp-dev libopenblas-dev libeigen3-dev zlib1g-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # the ILP solver of mixed-precision bit allocation (quant/analysis)
  libglpk-dev
  # the results database (experiments/results_db.h) and the report's plots (//experiments:report)
  libsqlite3-dev python3-matplotlib
  # ONNX import/export (quant/onnx) and ONNX's own conformance data (tests/onnx)
  libonnx-dev libonnx-testdata
  # CI checks (scripts/test.sh): libFuzzer targets built with clang (scripts/fuzz.sh), the
  # format check of changed lines (scripts/format_check.sh)
  clang-14 libclang-rt-14-dev clang-format-14
  # real data: Fashion-MNIST in /usr/share/datasets/fashion-mnist
  dataset-fashion-mnist
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "quantlab setup: these Debian packages are missing: ${missing[*]}" >&2
  echo "quantlab setup: run this script as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "quantlab setup: installing ${#missing[@]} Debian package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "quantlab setup: done"
