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
# Sum the runner's per-assembly summaries (verbose form: "Total tests: N" / "Passed: N" / "Failed: N" / "Skipped: N";
# minimal form: "Passed!  - Failed: N, Passed: N, Skipped: N").
read -r passed failed skipped < <(awk '
  /(Passed|Failed)! +- +Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+/ {
    match($0, /Failed: +[0-9]+/); f += substr($0, RSTART + 7, RLENGTH - 7) + 0
    match($0, /Passed: +[0-9]+/); p += substr($0, RSTART + 7, RLENGTH - 7) + 0
    match($0, /Skipped: +[0-9]+/); s += substr($0, RSTART + 8, RLENGTH - 8) + 0
    minimal = 1; next }
  /^Total tests: [0-9]+/ { verbose = 1; next }
  verbose && /^ +Passed: +[0-9]+$/ { vp += $2 }
  verbose && /^ +Failed: +[0-9]+$/ { vf += $2 }
  verbose && /^ +Skipped: +[0-9]+$/ { vs += $2 }
  END { if (minimal) print p + 0, f + 0, s + 0; else print vp + 0, vf + 0, vs + 0 }' "$log")
rm -f "$log"
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [[ $rc -eq 0 && $passed -eq 0 ]]; then echo "no test ran" >&2; exit 1; fi
exit $rc
