#!/usr/bin/env bash
# Configures and builds scratchnet into ${BUILD_DIR:-build}.
#   SCRATCHNET_CUDA=AUTO|ON|OFF (default AUTO: CUDA when nvcc is found)
#   CUDA_ARCH (default 90: H100/H200)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSCRATCHNET_CUDA="${SCRATCHNET_CUDA:-AUTO}" \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
