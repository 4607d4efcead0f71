#!/usr/bin/env bash
# Runs the test suite: installs missing system packages, builds the native shim and the library, runs all tests
# (GPU tests skip with a reason where CUDA is absent), and prints "tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")"
bash eng/setup.sh
log="$(mktemp)"
set +e
dotnet test LowRank.sln -c Release --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=0; failed=0; skipped=0
while read -r f p s; do passed=$((passed+p)); failed=$((failed+f)); skipped=$((skipped+s)); done < <(
  grep -E "(Passed|Failed)! +- +Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+" "$log" |
  sed -E 's/.*Failed: +([0-9]+), Passed: +([0-9]+), Skipped: +([0-9]+).*/\1 \2 \3/')
rm -f "$log"
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [[ $rc -eq 0 && $passed -eq 0 ]]; then echo "no test ran" >&2; exit 1; fi
exit $rc
