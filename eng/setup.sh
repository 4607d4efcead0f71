#!/usr/bin/env bash
# Installs what Microsoft.ML.LowRank needs on Debian/Ubuntu, only where missing:
#   libtorch (CPU, Debian's libtorch-dev 1.13) with OpenBLAS (pthread, the system default, and the OpenMP build the
#   library loads in its place: see NativeLibraryLoader.PreloadOpenMpBlas), CMake and g++ for the native shim,
#   Node.js/npm (test assets come from the npm registry), and Debian's python3-torch when LOWRANK_WITH_PYTORCH=1
#   (the side-by-side benchmarks). Skips libtorch when LIBTORCH points at a libtorch folder or PyTorch is installed.
set -euo pipefail
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if [[ -z "${LIBTORCH:-}" ]]; then
  for p in libtorch-dev libopenblas0-pthread libopenblas0-openmp; do have_pkg "$p" || need+=("$p"); done
fi
for p in cmake g++ make; do have_pkg "$p" || need+=("$p"); done
command -v npm >/dev/null || need+=(npm)
if [[ "${LOWRANK_WITH_PYTORCH:-0}" == "1" ]]; then have_pkg python3-torch || need+=(python3-torch); fi
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  sudo_cmd=()
  if [[ "$(id -u)" != "0" ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${need[@]}"
fi
command -v dotnet >/dev/null || { echo "setup: the .NET SDK (10.0) is required: https://dotnet.microsoft.com/download" >&2; exit 1; }
