#!/usr/bin/env bash
# Installs what scratchnet needs from Debian's packages, only those missing
# (idempotent; needs root or sudo when something is missing). The CUDA toolkit
# is optional: without nvcc the CPU engine is built.
set -euo pipefail
# libboost-context-dev: the fibers of the emulated CUDA target (SCRATCHNET_CUDA=EMULATE).
# libopenmpi-dev, openmpi-bin: data-parallel training under mpirun (optional:
# SCRATCHNET_NO_MPI=1 leaves them out, and scratchnet then trains in one process).
pkgs=(build-essential cmake catch2 libstb-dev zlib1g-dev libcli11-dev nlohmann-json3-dev
      libboost-context-dev dataset-fashion-mnist fonts-dejavu-core)
[ -z "${SCRATCHNET_NO_MPI:-}" ] && pkgs+=(libopenmpi-dev openmpi-bin)
need=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found; the CUDA kernels will be built"
else
  echo "setup: no nvcc; building the CPU engine only"
fi
