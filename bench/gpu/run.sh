#!/usr/bin/env bash
# The GPU machine's side of the GPU benchmark (see bench/gpu/README.md), run from the repository root with
# bench/out/gpu-publish carried from the build machine (bench/gpu/prepare.sh):
#   1. builds src/Native with CMake against the CUDA libtorch inside the machine's PyTorch (bench/out/gpu-native; kept
#      while the machine stays warm, so a second call skips it), unless LOWRANK_NATIVE_DIR already holds a shim;
#   2. correctness: the same adapter step on the device in float32 and bfloat16 against a float64 CPU reference
#      (LoraBench --verify, a 2-layer GQA LLaMA), per method;
#   3. speed and memory side by side: a LLaMA-style ~1.1B model (random weights, bench/gpu/llama-1b.json) in bfloat16 with
#      LoRA, DoRA and QLoRA on every linear (r, alpha = 2r), with and without gradient checkpointing: our tokens/s and peak
#      CUDA memory (medians of STEPS timed steps after a warm-up step) beside transformers + peft, and the ratios.
# Writes results.md (the tables), results.jsonl (every raw result), and on failure build.log / errors.log, into $OUT
# when set (the device tool's result folder), else bench/out/gpu.
#
# Options: --device cuda|cpu (cpu: the plumbing smoke test on the build machine), --config FILE, --steps N (10),
#   --batch N (4), --seq N (1024), --rank N (16), --methods "lora dora qlora", --no-checkpoint, --build-only.
set -euo pipefail
cd "$(dirname "$0")/../.."
device=cuda; cfg=bench/gpu/llama-1b.json; steps=10; batch=4; seq=1024; rank=16; methods="lora dora qlora"; ckpts=("" "--checkpoint"); build_only=0
while (($#)); do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --config) cfg="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --seq) seq="$2"; shift 2 ;;
    --rank) rank="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --no-checkpoint) ckpts=(""); shift ;;
    --build-only) build_only=1; shift ;;
    *) echo "bench/gpu/run.sh: unknown option $1 (see the header)" >&2; exit 2 ;;
  esac
done
out="${OUT:-bench/out/gpu}"
mkdir -p "$out"
app=bench/out/gpu-publish
python="${PYTHON:-python3}"
[[ -x "$app/LoraBench" ]] || { echo "missing $app/LoraBench: run bench/gpu/prepare.sh on the build machine and carry bench/out/gpu-publish" >&2; exit 1; }
start=$SECONDS

# 1. The native shim against this machine's libtorch.
if [[ -n "${LOWRANK_NATIVE_DIR:-}" && -f "${LOWRANK_NATIVE_DIR}/liblowrank_native.so" ]]; then
  echo "== native shim: using $LOWRANK_NATIVE_DIR"
else
  prefix="$("$python" -c 'import torch;print(torch.utils.cmake_prefix_path)')"
  echo "== building the native shim against $prefix"
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"   # Hopper; skips torch's GPU-architecture detection
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  if ! { cmake -S src/Native -B bench/out/gpu-native "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" &&
         cmake --build bench/out/gpu-native -j "$(nproc)"; } > "$out/build.log" 2>&1; then
    grep -E "error|Error|CMake Error" -A3 "$out/build.log" | head -80
    echo "native build failed ($((SECONDS - start)) s); full log: build.log" >&2
    exit 1
  fi
  rm -f "$out/build.log"
  export LOWRANK_NATIVE_DIR="$PWD/bench/out/gpu-native"
  echo "   built in $((SECONDS - start)) s"
fi
"$app/LoraBench" --info | tee "$out/results.jsonl"
[[ "$device" == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
((build_only)) && exit 0

errors="$out/errors.log"; : > "$errors"
record() { # record TAG COMMAND...: run it, append its JSON line (or an "unavailable" line with its last error) to results.jsonl
  local tag="$1"; shift
  local line err; err="$(mktemp)"
  if line="$("$@" 2> "$err" | tail -1)" && [[ "$line" == \{* ]]; then
    echo "$line" | "$python" -c 'import json,sys;r=json.loads(sys.stdin.read());r["tag"]=sys.argv[1];r.setdefault("available",True);print(json.dumps(r))' "$tag" >> "$out/results.jsonl"
  else
    local reason; reason="$(grep -v '^\s*at ' "$err" | grep -v '^\s*$' | tail -1)"
    "$python" -c 'import json,sys;print(json.dumps({"tag":sys.argv[1],"available":False,"reason":sys.argv[2][:300]}))' "$tag" "${reason:-no output}" >> "$out/results.jsonl"
  fi
  if [[ -s "$err" ]]; then { echo "== $tag"; tail -40 "$err"; } >> "$errors"; fi
  rm -f "$err"
  tail -1 "$out/results.jsonl"
}

# 2. Correctness first.
for method in $methods; do
  echo "== verify $method ($device vs float64 CPU)"
  record "verify_$method" "$app/LoraBench" --verify --device "$device" --method "$method"
done

# 3. Speed and memory, ours and peft alternately.
for method in $methods; do
  for ck in "${ckpts[@]}"; do
    tag="$method${ck:+_ckpt}"
    echo "== $tag ($((SECONDS - start)) s)"
    # Ours: bf16 base, float32 adapters and AdamW state, fused LoRA/DoRA nodes, chunked cross-entropy, SDPA attention.
    record "ours_$tag" "$app/LoraBench" "$steps" 0 0 0 "$seq" "$batch" "$rank" --config "$cfg" --device "$device" --dtype bf16 --chunked-ce --method "$method" $ck
    record "peft_$tag" "$python" bench/gpu/peft_step.py "$cfg" "$method" "$batch" "$seq" "$rank" "$steps" --device "$device" $ck
  done
done

"$python" - "$out" "$cfg" "$device" "$batch" "$seq" "$rank" "$steps" "$((SECONDS - start))" <<'PY'
import json, os, sys
out, cfg_path, device, batch, seq, rank, steps, wall = sys.argv[1:9]
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip()]
info = rows[0]
by = {r.get("tag"): r for r in rows[1:]}
cfg = json.load(open(cfg_path))
lines = []
p = lines.append
p(f"# Adapter training step on {device}: ours vs transformers + peft")
p("")
p(f"Model: `{cfg_path}` (hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, {cfg['num_attention_heads']} heads / "
  f"{cfg.get('num_key_value_heads', cfg['num_attention_heads'])} KV heads, MLP {cfg['intermediate_size']}, vocab {cfg['vocab_size']}), random weights, "
  f"bfloat16 base, float32 adapters; r={rank}, alpha={2 * int(rank)}, all linear layers; batch {batch} × seq {seq}; "
  f"median of {steps} timed steps after one warm-up step. Ours: libtorch {info.get('torch')}, SDPA fused kernels: {info.get('sdpa_fused')}, "
  f"fused LoRA/DoRA nodes, chunked cross-entropy. Wall time {wall} s.")
peft_any = next((r for r in rows if r.get("impl") == "peft" and r.get("available")), None)
if peft_any:
    p(f"Reference: torch {peft_any['torch']}, transformers {peft_any['transformers']}, peft {peft_any['peft']}, attention {peft_any['attn_implementation']}.")
p("")
p("Correctness (the same step on the device against a float64 CPU reference; relative errors):")
p("")
p("| method | dtype | loss | worst gradient (‖Δ‖/‖g‖) | tolerance (loss / grad) | pass |")
p("|---|---|---:|---:|---|---|")
for tag, r in by.items():
    if not tag.startswith("verify_"):
        continue
    if not r.get("available"):
        p(f"| {tag[7:]} | – | – | – | – | unavailable: {r.get('reason', '')[:120]} |")
        continue
    for dt in ("Float32", "BFloat16"):
        v = r[dt]
        p(f"| {r['method']} | {dt} | {v['loss_rel_err']:.2e} | {v['worst_grad_rel_err']:.2e} | {v['loss_tolerance']:g} / {v['grad_tolerance']:g} | {'yes' if v['pass'] else 'NO'} |")
p("")
def num(r, k, scale=1.0):
    v = r.get(k) if r.get("available") else None
    return None if v in (None, 0) else v / scale
def fmt(v, f):
    return "–" if v is None else format(v, f)
p("| method | checkpointing | ours tokens/s | peft tokens/s | speed ratio | ours peak GiB | peft peak GiB | memory ratio | notes |")
p("|---|---|---:|---:|---:|---:|---:|---:|---|")
for tag in [t[5:] for t in by if t.startswith("ours_")]:
    o, q = by.get("ours_" + tag, {}), by.get("peft_" + tag, {})
    ot, qt = num(o, "tokens_per_s"), num(q, "tokens_per_s")
    om, qm = num(o, "cuda_peak_bytes", 2**30), num(q, "cuda_peak_bytes", 2**30)
    notes = "; ".join(f"{side} unavailable: {r.get('reason', '')[:100]}" for side, r in (("ours", o), ("peft", q)) if not r.get("available"))
    method, ck = (tag[:-5], "yes") if tag.endswith("_ckpt") else (tag, "no")
    p(f"| {method} | {ck} | {fmt(ot, '.0f')} | {fmt(qt, '.0f')} | {fmt(ot / qt if ot and qt else None, '.2f')} | "
      f"{fmt(om, '.2f')} | {fmt(qm, '.2f')} | {fmt(om / qm if om and qm else None, '.2f')} | {notes} |")
text = "\n".join(lines) + "\n"
print(text, end="")
open(os.path.join(out, "results.md"), "w").write(text)
PY
[[ -s "$errors" ]] || rm -f "$errors"
echo "results: $out/results.md, $out/results.jsonl ($((SECONDS - start)) s)"
