#!/usr/bin/env bash
# LoRA (r=16, all block linears) training step on a LLaMA-style model (hidden 768, 12 layers, 12 heads, seq 256,
# batch 8): tokens/s of our library vs the same model and adapter in PyTorch eager (Debian's python3-torch, same
# libtorch, same threads), side by side in one run: the implementations alternate for several rounds and the table
# shows medians of the per-run medians, ratios, and the fraction of the machine's measured matmul peak. Then the
# activation memory (bytes the forward keeps alive for backward, counted by the shim's allocator counter) and the step
# peak for LoRA, LoRA-FA and checkpointing.
# Usage: bench/lora/run.sh [STEPS [HIDDEN LAYERS HEADS SEQ BATCH RANK]]; LOWRANK_BENCH_ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
LOWRANK_WITH_PYTORCH=1 bash eng/setup.sh
threads="${LOWRANK_NUM_THREADS:-$(nproc)}"
rounds="${LOWRANK_BENCH_ROUNDS:-3}"
steps="${1:-3}"; shift || true
dims=("$@")
# Both sides let idle OpenMP threads sleep (the library's default; PyTorch's spinning threads fight OpenBLAS's here).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
dotnet build bench/LoraBench -c Release -v q -nologo >/dev/null
out="$(mktemp -d)"
ours() { LOWRANK_NUM_THREADS=$threads dotnet bench/LoraBench/bin/Release/net10.0/LoraBench.dll "$steps" "${dims[@]}" "$@"; }
memrun() { LOWRANK_NUM_THREADS=$threads dotnet bench/LoraBench/bin/Release/net10.0/LoraBench.dll 1 "${dims[@]}" "$@"; }
theirs() { /usr/bin/python3 bench/lora/lora_step.py "$threads" "$steps" "${dims[@]}" "$@"; }
declare -A variants=(
  [ours_fp32_unfused]="--unfused"
  [ours_fp32_fused]=""
  [ours_bf16_all]="--dtype bf16 --chunked-ce"
)
for ((r = 0; r < rounds; r++)); do
  peak=""; [[ $r -eq 0 ]] && peak="--peak"
  for v in ours_fp32_unfused ours_fp32_fused ours_bf16_all; do
    # shellcheck disable=SC2086
    ours ${variants[$v]} $peak >> "$out/$v.jsonl"; peak=""
  done
  theirs >> "$out/pytorch_fp32.jsonl"
  theirs --bf16 >> "$out/pytorch_bf16.jsonl"
done
# Activation memory: one measured step each (deterministic, no need for rounds).
memrun --dtype bf16 --chunked-ce --memory > "$out/mem_lora.json"
memrun --dtype bf16 --chunked-ce --memory --lora-fa > "$out/mem_lorafa.json"
memrun --dtype bf16 --chunked-ce --memory --checkpoint > "$out/mem_ckpt.json"
memrun --dtype bf16 --memory > "$out/mem_lora_fulllogits.json"
memrun --dtype fp32 --memory --unfused > "$out/mem_fp32_unfused.json"
/usr/bin/python3 - "$out" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
def rows(name):
    with open(os.path.join(d, name + ".jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]
def med(name, key="tokens_per_s"):
    return statistics.median(r[key] for r in rows(name))
names = ["ours_fp32_unfused", "ours_fp32_fused", "ours_bf16_all", "pytorch_fp32", "pytorch_bf16"]
tps = {n: med(n) for n in names}
best = {n: max(r["tokens_per_s"] for r in rows(n)) for n in names}
first = rows("ours_fp32_fused")[0]
cfg = rows("pytorch_fp32")[0]["config"]
peaks = [r for r in rows("ours_fp32_unfused") if r.get("peak_fp32_gflops", 0) > 0]
p32 = peaks[0]["peak_fp32_gflops"] if peaks else float("nan")
p16 = peaks[0]["peak_bf16_gflops"] if peaks else float("nan")
fpt = first["flops_per_token"]
print(f"config {cfg}, threads {first['threads']}, libtorch {first['torch']}, rounds {len(rows('pytorch_fp32'))}, load {os.getloadavg()[0]:.1f}")
print(f"matmul peak (2048^3, measured in this run): fp32 {p32:.1f} GFLOP/s, bf16 {p16:.1f} GFLOP/s; model FLOPs/token {fpt/1e6:.1f} M")
print(f"{'variant':<22}{'tokens/s':>10}{'best':>10}{'vs PT fp32':>12}{'vs PT bf16':>12}{'% fp32 peak':>13}{'% own-dtype peak':>18}")
for n in names:
    own = p16 if "bf16" in n else p32
    ach = fpt * tps[n] / 1e9
    print(f"{n:<22}{tps[n]:>10.1f}{best[n]:>10.1f}{tps[n]/tps['pytorch_fp32']:>12.3f}{tps[n]/tps['pytorch_bf16']:>12.3f}{100*ach/p32:>12.1f}%{100*ach/own:>17.1f}%")
print(f"goal: ours (all speed features) / PyTorch eager fp32 >= 1.3: {tps['ours_bf16_all']/tps['pytorch_fp32']:.2f} "
      f"({'met' if tps['ours_bf16_all']/tps['pytorch_fp32'] >= 1.3 else 'MISSED'}); same precision, ours bf16 / PyTorch bf16: {tps['ours_bf16_all']/tps['pytorch_bf16']:.2f}; "
      f"same precision fp32, fused / PyTorch: {tps['ours_fp32_fused']/tps['pytorch_fp32']:.2f}")
print()
print(f"{'memory (bf16 base unless noted)':<40}{'held fwd->bwd MB':>18}{'step peak MB':>14}{'tokens/s':>10}")
for name, label in [("mem_fp32_unfused", "fp32, unfused LoRA, full logits"), ("mem_lora_fulllogits", "LoRA, full logits"), ("mem_lora", "LoRA, chunked CE"),
                    ("mem_lorafa", "LoRA-FA, chunked CE"), ("mem_ckpt", "LoRA, chunked CE, checkpointing")]:
    r = json.load(open(os.path.join(d, name + ".json")))
    print(f"{label:<40}{r['held_after_forward']/2**20:>18.1f}{r['step_peak_bytes']/2**20:>14.1f}{r['tokens_per_s']:>10.1f}")
PY
echo "raw results: $out"
