#!/usr/bin/env bash
# Checks that the C++ lines changed since a fixed base commit follow .clang-format
# (Google style, 120 columns). Only changed lines are checked: when .clang-format
# was added, 214 of the 304 C++ files did not conform in some line (2272 places,
# mostly wrapping), and reformatting the whole tree at once would bury history; so
# new and edited code conforms, and old code conforms as it is touched.
# Usage: scripts/format_check.sh [base]   (default: the commit before .clang-format)
# Prints the diff that would fix it and exits non-zero when a line does not conform.
set -uo pipefail
cd "$(dirname "$0")/.."

base=${1:-baded3ed23f7d398e8be6390bf7618a6c8a6837c}
if ! command -v clang-format-diff-14 >/dev/null; then
  echo "format check: clang-format-diff-14 is missing (Debian's clang-format-14: scripts/setup.sh)"
  exit 1
fi
if ! git rev-parse -q --verify "$base^{commit}" >/dev/null; then
  echo "format check: base commit $base is not in this clone (a shallow clone?)"
  exit 1
fi
# Committed and uncommitted changes alike (the working tree against the base).
out=$(git diff -U0 --no-color "$base" -- '*.cc' '*.h' | clang-format-diff-14 -p1 -binary clang-format-14)
if [ -n "$out" ]; then
  printf '%s\n' "$out"
  echo "format check: FAILED: the lines above differ from .clang-format (fix: git diff -U0 $base | clang-format-diff-14 -p1 -i)"
  exit 1
fi
echo "format check: PASSED (C++ lines changed since $base)"
