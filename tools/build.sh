#!/usr/bin/env bash
# Configures and builds scratchnet into ${BUILD_DIR:-build}.
#   SCRATCHNET_CUDA=AUTO|ON|OFF (default AUTO: CUDA when nvcc is found)
#   CUDA_ARCH  the GPU architectures to compile for. Default: "native" (the
#              GPUs of this machine) when nvidia-smi sees one, else 90
#              (H100/H200). Others: 75 (T4, RTX 20xx), 80 (A100), 86 (RTX 30xx,
#              A10), 89 (RTX 40xx, L4), 90 (H100/H200), or a list: "80;86;89;90".
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
arch=${CUDA_ARCH:-}
if [ -z "$arch" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    arch=native
  else
    arch=90
  fi
fi
if [[ "${SCRATCHNET_CUDA:-AUTO}" == AUTO || "${SCRATCHNET_CUDA:-AUTO}" == ON ]] && command -v nvcc >/dev/null 2>&1; then
  echo "build.sh: CUDA architectures: $arch (set CUDA_ARCH to change)" >&2
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSCRATCHNET_CUDA="${SCRATCHNET_CUDA:-AUTO}" \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
