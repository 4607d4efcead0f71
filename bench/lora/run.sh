#!/usr/bin/env bash
# LoRA (r=16, all block linears) training step on a LLaMA-style model (hidden 768, 12 layers, 12 heads, seq 256,
# batch 8): tokens/s of our library vs the same model and adapter in PyTorch eager (Debian's python3-torch, same
# libtorch, same threads), in one run, medians. Smaller shapes: bench/lora/run.sh STEPS HIDDEN LAYERS HEADS SEQ BATCH RANK.
set -euo pipefail
cd "$(dirname "$0")/../.."
LOWRANK_WITH_PYTORCH=1 bash eng/setup.sh
threads="${LOWRANK_NUM_THREADS:-$(nproc)}"
steps="${1:-5}"; shift || true
dotnet build bench/LoraBench -c Release -v q -nologo >/dev/null
cs=$(LOWRANK_NUM_THREADS=$threads dotnet bench/LoraBench/bin/Release/net10.0/LoraBench.dll "$steps" "$@")
py=$(/usr/bin/python3 bench/lora/lora_step.py "$threads" "$steps" "$@")
/usr/bin/python3 - "$cs" "$py" <<'PY'
import json, sys
cs, py = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"config {py['config']}, threads {cs['threads']}/{py['threads']}")
print(f"trainable parameters: ours {cs['trainable']:,}, pytorch {py['trainable']:,}")
print(f"tokens/s: ours {cs['tokens_per_s']:.1f}, pytorch {py['tokens_per_s']:.1f}, ours/pytorch {cs['tokens_per_s'] / py['tokens_per_s']:.3f} (goal >= 1.0)")
PY
