#!/usr/bin/env bash
# The main job, end to end: installs missing system packages, builds the native shim and the library, and runs it.
# Until the training pipeline lands this is a smoke run (libtorch version, thread count, one matmul).
set -euo pipefail
cd "$(dirname "$0")"
bash eng/setup.sh
dotnet run --project src/LowRank.Cli -c Release -- "${@:-smoke}"
