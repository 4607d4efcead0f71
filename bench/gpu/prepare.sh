#!/usr/bin/env bash
# On the build machine: publish our side of the GPU benchmark (LoraBench, self-contained and trimmed: the GPU machine has
# no .NET SDK; about 26 MB) into bench/out/gpu-publish, which the GPU machine receives as a carried path (see README.md).
# No native shim goes with it: bench/gpu/run.sh builds src/Native there against the CUDA libtorch of its PyTorch.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf bench/out/gpu-publish
dotnet publish bench/LoraBench -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -p:LowRankSkipNative=true \
  -o bench/out/gpu-publish -v q -nologo
rm -f bench/out/gpu-publish/liblowrank_native.so bench/out/gpu-publish/*.pdb bench/out/gpu-publish/*.xml
du -sh bench/out/gpu-publish
