#!/usr/bin/env bash
# LoRA training step (r = 16 on every block linear, AdamW on the adapters, causal-LM loss) on a LLaMA-style model with
# random weights: our library against the same model and adapter in PyTorch eager (bench/lora/lora_step.py, Debian's
# python3-torch: the same libtorch, the same thread count), side by side in ONE run. The implementations alternate for
# LOWRANK_BENCH_ROUNDS rounds (each run: one warm-up step, then STEPS timed steps, median) and the tables show the median
# of the per-run medians.
#
# Default size (what the committed results use): hidden 512, 8 layers, 8 heads, seq 256, batch 4, rank 16 (vocab 32000,
# MLP 1536; 1024 tokens per step), STEPS = 3, 3 rounds. About 6 minutes on the 2-core build machine when it is otherwise
# idle (roughly 2.5 s per fp32 step; bf16 and checkpointing steps are slower on this CPU).
#
# Table 1, tokens/s: ours unfused fp32, ours fused fp32, ours bf16 + chunked cross-entropy (fused), the same with
# gradient checkpointing, and the fused fp32 / bf16 rows again with the library's runtime choices turned off
# (LOWRANK_BLAS=system LOWRANK_CPU_CACHE=0: the pthread OpenBLAS the system selects, no caching allocator); PyTorch eager
# fp32 and bf16 as installed, and again with the same runtime choices given to it by environment (the OpenMP OpenBLAS
# through LD_LIBRARY_PATH, glibc's malloc told by GLIBC_TUNABLES to keep freed memory instead of unmapping it, the
# closest a plain process gets to a caching allocator). Ratios: to PyTorch eager fp32 as installed, to PyTorch eager in
# the same type as installed, and to PyTorch eager in the same type with the same runtime (the like-for-like kernel
# comparison); and % of the matmul peak measured in this run (model FLOPs per token × tokens/s / peak of a 2048³ matmul
# in the variant's type).
# Table 2, memory (bf16 base, chunked CE unless noted; one measured step each): bytes the forward leaves alive for
# backward (the shim's CPU allocator counter) and the step's peak, for LoRA, LoRA-FA and LoRA with checkpointing.
# LOWRANK_BENCH_AB=1 adds an in-process A/B of the fused LoRA paths (sequential/merged order, shared projections).
#
# Output: the tables on stdout and in bench/lora/results/<UTC date>.md (LOWRANK_BENCH_RESULTS overrides the file).
# Usage: bench/lora/run.sh [STEPS [HIDDEN LAYERS HEADS SEQ BATCH RANK]]
# Environment: LOWRANK_BENCH_ROUNDS (3), LOWRANK_NUM_THREADS (nproc), LOWRANK_NATIVE_DIR (use a prebuilt shim there
# instead of building src/Native), LOWRANK_BENCH_RESULTS, LOWRANK_BENCH_AB.
set -euo pipefail
cd "$(dirname "$0")/../.."
LOWRANK_WITH_PYTORCH=1 bash eng/setup.sh
threads="${LOWRANK_NUM_THREADS:-$(nproc)}"
rounds="${LOWRANK_BENCH_ROUNDS:-3}"
steps="${1:-3}"; shift || true
dims=("$@")
if ((${#dims[@]} == 0)); then dims=(512 8 8 256 4 16); fi
((${#dims[@]} == 6)) || { echo "usage: bench/lora/run.sh [STEPS [HIDDEN LAYERS HEADS SEQ BATCH RANK]]" >&2; exit 2; }
results="${LOWRANK_BENCH_RESULTS:-bench/lora/results/$(date -u +%Y-%m-%d).md}"
# Both sides let idle OpenMP threads sleep (the library's default; PyTorch's spinning threads fight OpenBLAS's here).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
skip=(); [[ -n "${LOWRANK_NATIVE_DIR:-}" ]] && skip=(-p:LowRankSkipNative=true)
dotnet build bench/LoraBench -c Release -v q -nologo "${skip[@]}" >/dev/null
out="$(mktemp -d)"
start=$SECONDS
ours() { LOWRANK_NUM_THREADS=$threads dotnet bench/LoraBench/bin/Release/net10.0/LoraBench.dll "$steps" "${dims[@]}" "$@"; }
memrun() { LOWRANK_NUM_THREADS=$threads dotnet bench/LoraBench/bin/Release/net10.0/LoraBench.dll 1 "${dims[@]}" "$@"; }
theirs() { /usr/bin/python3 bench/lora/lora_step.py "$threads" "$steps" "${dims[@]}" "$@"; }
# PyTorch given the library's runtime choices: the OpenMP OpenBLAS (when installed) and malloc keeping freed memory.
ompblas=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/openblas-openmp
theirs_rt() { LD_LIBRARY_PATH="$ompblas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=17179869184 theirs "$@"; }
declare -A variants=(
  [ours_fp32_unfused]="--unfused"
  [ours_fp32_fused]=""
  [ours_bf16_chunked]="--dtype bf16 --chunked-ce"
  [ours_bf16_chunked_ckpt]="--dtype bf16 --chunked-ce --checkpoint"
)
for ((r = 0; r < rounds; r++)); do
  peak=""; [[ $r -eq 0 ]] && peak="--peak"
  for v in ours_fp32_unfused ours_fp32_fused ours_bf16_chunked ours_bf16_chunked_ckpt; do
    # shellcheck disable=SC2086
    ours ${variants[$v]} $peak >> "$out/$v.jsonl"; peak=""
  done
  LOWRANK_BLAS=system LOWRANK_CPU_CACHE=0 ours >> "$out/ours_fp32_fused_sysrt.jsonl"
  LOWRANK_BLAS=system LOWRANK_CPU_CACHE=0 ours --dtype bf16 --chunked-ce >> "$out/ours_bf16_chunked_sysrt.jsonl"
  theirs >> "$out/pytorch_fp32.jsonl"
  theirs --bf16 >> "$out/pytorch_bf16.jsonl"
  theirs_rt >> "$out/pytorch_fp32_rt.jsonl"
  theirs_rt --bf16 >> "$out/pytorch_bf16_rt.jsonl"
  echo "round $((r + 1))/$rounds done ($((SECONDS - start)) s)" >&2
done
# Activation memory: one measured step each (deterministic, no rounds needed).
memrun --dtype fp32 --memory --unfused > "$out/mem_fp32_unfused.json"
memrun --dtype bf16 --chunked-ce --memory > "$out/mem_lora.json"
memrun --dtype bf16 --chunked-ce --memory --lora-fa > "$out/mem_lorafa.json"
memrun --dtype bf16 --chunked-ce --memory --checkpoint > "$out/mem_ckpt.json"
if [[ "${LOWRANK_BENCH_AB:-0}" == "1" ]]; then
  # Ablation of the fused LoRA paths in one process (alternating step by step on one model; robust to load drift).
  ours --ab > "$out/ab_fp32.json"
  ours --ab --dtype bf16 --chunked-ce > "$out/ab_bf16.json"
fi
mkdir -p "$(dirname "$results")"
/usr/bin/python3 - "$out" "$results" "$((SECONDS - start))" "$steps" "$(nproc)" "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)" <<'PY'
import datetime, json, os, statistics, sys
d, results, wall, steps, cores, cpu = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
def rows(name):
    with open(os.path.join(d, name + ".jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]
def med(name, key="tokens_per_s"):
    return statistics.median(r[key] for r in rows(name))
labels = {
    "ours_fp32_unfused": ("ours, fp32, unfused LoRA layers", "fp32", "lib"),
    "ours_fp32_fused": ("ours, fp32, fused LoRA", "fp32", "lib"),
    "ours_bf16_chunked": ("ours, bf16 + chunked CE (fused)", "bf16", "lib"),
    "ours_bf16_chunked_ckpt": ("ours, bf16 + chunked CE + checkpointing", "bf16", "lib"),
    "ours_fp32_fused_sysrt": ("ours, fp32, fused LoRA", "fp32", "sys"),
    "ours_bf16_chunked_sysrt": ("ours, bf16 + chunked CE (fused)", "bf16", "sys"),
    "pytorch_fp32": ("PyTorch eager, fp32", "fp32", "sys"),
    "pytorch_bf16": ("PyTorch eager, bf16", "bf16", "sys"),
    "pytorch_fp32_rt": ("PyTorch eager, fp32", "fp32", "lib"),
    "pytorch_bf16_rt": ("PyTorch eager, bf16", "bf16", "lib"),
}
runtime = {"lib": "OpenMP OpenBLAS + cached allocations", "sys": "system (pthread OpenBLAS, plain malloc)"}
tps = {n: med(n) for n in labels}
first = rows("ours_fp32_fused")[0]
cfg = rows("pytorch_fp32")[0]["config"]
peaks = [r for r in rows("ours_fp32_unfused") if r.get("peak_fp32_gflops", 0) > 0]
peak = {"fp32": peaks[0]["peak_fp32_gflops"] if peaks else float("nan"), "bf16": peaks[0]["peak_bf16_gflops"] if peaks else float("nan")}
fpt = first["flops_per_token"]
base = tps["pytorch_fp32"]
lines = []
p = lines.append
p(f"# LoRA training step: ours vs PyTorch eager ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)")
p("")
p(f"Model: LLaMA-style, hidden {cfg['hidden']}, {cfg['layers']} layers, {cfg['heads']} heads, MLP {cfg['intermediate']}, vocab {cfg['vocab']}, "
  f"random weights; LoRA r={cfg['rank']} (alpha {2 * cfg['rank']}) on every block linear, AdamW on the adapters; "
  f"seq {cfg['seq']}, batch {cfg['batch']} ({cfg['seq'] * cfg['batch']} tokens per step).")
p(f"Machine: {cpu or 'unknown CPU'}, {cores} cores, {first['threads']} threads, libtorch {first['torch']} (both sides); "
  f"{len(rows('pytorch_fp32'))} alternating rounds of {steps} timed steps after one warm-up step, "
  f"medians of the per-run medians; load average at the end {os.getloadavg()[0]:.1f}; wall time {wall} s.")
blas_of = lambda n: rows(n)[0].get("blas", "?")
p(f"OpenBLAS build loaded (from /proc/self/maps): ours {blas_of('ours_fp32_fused')}, ours with LOWRANK_BLAS=system "
  f"{blas_of('ours_fp32_fused_sysrt')}, PyTorch {blas_of('pytorch_fp32')}, PyTorch with the library's runtime {blas_of('pytorch_fp32_rt')}.")
p(f"Matmul peak measured in this run (2048³): fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s. "
  f"Model FLOPs per token {fpt / 1e6:.1f} M (forward + backward of the frozen base without weight gradients, attention, LoRA).")
p("")
p("Runtime: *library* = what Microsoft.ML.LowRank sets up when it loads (the OpenMP build of OpenBLAS, the caching CPU "
  "allocator); for PyTorch the same given by environment (LD_LIBRARY_PATH to the OpenMP OpenBLAS, GLIBC_TUNABLES keeping freed "
  "memory). *system* = the machine's defaults (pthread OpenBLAS, plain malloc): what `python3` gets as installed.")
p("")
p("| variant | runtime | tokens/s (median) | vs PyTorch fp32, system | vs PyTorch same type, system | vs PyTorch same type, same runtime | % of measured matmul peak |")
p("|---|---|---:|---:|---:|---:|---:|")
for n, (label, dt, rt) in labels.items():
    ach = fpt * tps[n] / 1e9
    same_sys = tps[n] / tps[f"pytorch_{dt}"]
    same_rt = tps[n] / tps[f"pytorch_{dt}" + ("_rt" if rt == "lib" else "")]
    p(f"| {label} | {'library' if rt == 'lib' else 'system'} | {tps[n]:.1f} | {tps[n] / base:.2f} | {same_sys:.2f} | {same_rt:.2f} | {100 * ach / peak[dt]:.1f}% of {dt} |")
p("")
p("Activation memory (one measured step each; CPU allocator counter; bf16 base weights, float32 adapters):")
p("")
p("| configuration | saved for backward (MiB) | step peak (MiB) |")
p("|---|---:|---:|")
for name, label in [("mem_fp32_unfused", "fp32, unfused LoRA, full logits (reference)"), ("mem_lora", "LoRA, chunked CE"),
                    ("mem_lorafa", "LoRA-FA (A frozen), chunked CE"), ("mem_ckpt", "LoRA, chunked CE, checkpointing")]:
    r = json.load(open(os.path.join(d, name + ".json")))
    p(f"| {label} | {r['held_after_forward'] / 2**20:.1f} | {r['step_peak_bytes'] / 2**20:.1f} |")
for name in ("ab_fp32", "ab_bf16"):
    path = os.path.join(d, name + ".json")
    if os.path.exists(path):
        r = json.load(open(path))
        p("")
        p(f"A/B in one process ({r['dtype']}, {r['rounds']} alternating rounds), median step s and speed-up vs unfused: " +
          ", ".join(f"{k} {v['step_s']:.3f} ({v['speedup_vs_unfused']:.3f}x)" for k, v in r.items() if isinstance(v, dict)))
text = "\n".join(lines) + "\n"
print(text, end="")
with open(results, "w") as f:
    f.write(text)
print(f"\nwritten to {results}")
PY
echo "raw results: $out"
