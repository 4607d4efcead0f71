#!/usr/bin/env bash
# Side by side: our C# binding vs PyTorch eager (Debian's python3-torch, same libtorch, same thread count), in one run.
# Prints a table of medians and ratios (ours / PyTorch time; for GFLOP/s, PyTorch / ours, so < 1 is better everywhere).
set -euo pipefail
cd "$(dirname "$0")/.."
LOWRANK_WITH_PYTORCH=1 bash eng/setup.sh
threads="${LOWRANK_NUM_THREADS:-$(nproc)}"
dotnet build bench/TorchBench -c Release -v q -nologo >/dev/null
# Alternate the two implementations for several rounds (this machine's timings drift), then take medians per metric.
rounds="${LOWRANK_BENCH_ROUNDS:-5}"
cs=""; py=""
for ((r = 0; r < rounds; r++)); do
  cs+="$(LOWRANK_NUM_THREADS=$threads dotnet bench/TorchBench/bin/Release/net10.0/TorchBench.dll)"$'\n'
  py+="$(/usr/bin/python3 bench/torch_bench.py "$threads")"$'\n'
done
/usr/bin/python3 - "$cs" "$py" <<'PY'
import json, statistics, sys
def med(lines):
    rows = [json.loads(l) for l in lines.strip().splitlines()]
    out = dict(rows[0])
    for k in ("add_us", "matmul_gflops", "mlp_ms"):
        out[k] = statistics.median(r[k] for r in rows)
    out["mlp_min_ms"] = min(r["mlp_min_ms"] for r in rows)
    out["rounds"] = len(rows)
    return out
cs, py = med(sys.argv[1]), med(sys.argv[2])
print(f"medians over {cs['rounds']} alternating rounds (each round itself a median of repeated timings)")
print(f"libtorch {cs['torch']} (C#) / {py['torch']} (PyTorch), threads {cs['threads']}/{py['threads']}")
print(f"{'benchmark':<34}{'ours':>12}{'pytorch':>12}{'ratio':>9}  goal")
rows = [("(a) 16-elt add+free, us/op", "add_us", False, 0.8),
        ("(b) 1024^3 matmul, GFLOP/s", "matmul_gflops", True, 1.0),
        ("(c) 4x1024 MLP fwd+bwd b64, ms", "mlp_ms", False, 1.0)]
for name, key, higher_better, goal in rows:
    ratio = py[key] / cs[key] if higher_better else cs[key] / py[key]
    print(f"{name:<34}{cs[key]:>12.3f}{py[key]:>12.3f}{ratio:>9.3f}  <= {goal} {'ok' if ratio <= goal else 'MISSED'}")
print(f"{'(c) fastest step, ms':<34}{cs['mlp_min_ms']:>12.3f}{py['mlp_min_ms']:>12.3f}{cs['mlp_min_ms'] / py['mlp_min_ms']:>9.3f}  (this VM's step times are bimodal; see README)")
PY
