#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (the README's test command):
#  1. the default build (CUDA compiled when nvcc exists): the CPU suite, the
#     slow end-to-end checks, PyTorch interop; [cuda] runs only on a GPU;
#  2. the emulated CUDA target (SCRATCHNET_CUDA=EMULATE): every [cuda] test,
#     the emulator's own tests, in forward and in reverse thread order, and a
#     short training on the emulated GPU against the CPU's losses;
#  3. the same target under AddressSanitizer + UBSan: the small op sweeps
#     and the emulator's tests.
# SCRATCHNET_TEST_EMULATED=0 skips 2 and 3 (a quicker run while developing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure
[ "${SCRATCHNET_TEST_EMULATED:-1}" = 0 ] && exit 0

echo "== emulated CUDA target: forward thread order =="
BUILD_DIR=build-emu SCRATCHNET_CUDA=EMULATE bash tools/build.sh
SCRATCHNET_EMU_ORDER=forward ctest --test-dir build-emu --output-on-failure -R '^(cuda|emu|emu_train)$'
echo "== emulated CUDA target: reverse thread order =="
SCRATCHNET_EMU_ORDER=reverse ctest --test-dir build-emu --output-on-failure -R '^(cuda|emu)$'

echo "== emulated CUDA target under AddressSanitizer + UBSan (small sweeps) =="
BUILD_DIR=build-asan SCRATCHNET_CUDA=EMULATE CMAKE_ARGS="-DSCRATCHNET_SANITIZE=address,undefined" \
  bash tools/build.sh
# The op-level sweeps, small; whole-model steps ([model], [allocator]) run
# emulated above without sanitizers (under ASan they take many minutes).
export ASAN_OPTIONS=detect_leaks=0
SCRATCHNET_TEST_SMALL=1 build-asan/scratchnet_tests "[cuda]~[heavy]~[model]~[allocator]"
build-asan/scratchnet_emu_tests
