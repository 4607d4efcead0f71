#!/usr/bin/env bash
# Builds the native shim (liblowrank_native.so) into $1 (default: src/Native/build).
# libtorch is found through $LIBTORCH, then Debian's libtorch-dev, then an installed PyTorch.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/build}"
prefix=""
if [[ -n "${LIBTORCH:-}" ]]; then
  prefix="$LIBTORCH"
elif [[ -f /usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake || -f /usr/lib/aarch64-linux-gnu/cmake/Torch/TorchConfig.cmake ]]; then
  prefix=""
elif command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
  prefix="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')"
else
  echo "lowrank: libtorch not found. Install Debian's libtorch-dev (apt-get install libtorch-dev libopenblas0-pthread)," >&2
  echo "         set LIBTORCH to a libtorch folder, or install PyTorch for python3." >&2
  exit 1
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [[ ! -f "$out/CMakeCache.txt" ]]; then
  cmake -S "$here" -B "$out" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release ${prefix:+-DCMAKE_PREFIX_PATH="$prefix"} >/dev/null
fi
cmake --build "$out" -j "$(nproc)"
