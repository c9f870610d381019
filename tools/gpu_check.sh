#!/usr/bin/env bash
# The one script for the GPU machine (see ../shared/device/README.md): builds
# the project, runs the [cuda] test suite, then the same suite under
# compute-sanitizer memcheck and racecheck (small shapes), optionally the
# benchmarks, and prints a one-screen summary last.
#
#   bash tools/gpu_check.sh            # from the repository root, on the GPU machine
#
# Needs .device-deps/ (bash ../shared/device/bundle.sh) next to the checkout.
# Full logs go to ${OUT:-gpu-logs}/. Exit status: 0 when everything passed,
# 1 when a build step, a test or a sanitizer check failed.
# Designed to finish in under 5 minutes on an H100/H200 with 16 cores:
# the sanitizer runs set SCRATCHNET_TEST_SMALL=1 (the tests shrink their
# shape sweeps) and every step has a timeout within a 290 s budget (a step
# that times out exits 124 and counts as failed).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
LOGS="${OUT:-gpu-logs}"
BUILD=build-gpu
mkdir -p "$LOGS"
START=$(date +%s)
FAILED=0
BUILT=0
SUMMARY=()

note() { SUMMARY+=("$1"); echo "== $1"; }
elapsed() { echo $(($(date +%s) - START)); }
# Seconds a step may take: its cap, or what is left of a 290 s budget.
left() {
  local rest=$((290 - $(elapsed)))
  ((rest < 10)) && rest=10
  ((rest < $1)) && echo "$rest" || echo "$1"
}

# Catch2's console reporter ends with "test cases: N | P passed | F failed"
# (or "All tests passed (A assertions in N test cases)").
test_counts() {
  local log=$1 line
  line=$(grep -E "^(test cases:|All tests passed)" "$log" | tail -1)
  echo "${line:-no Catch2 summary line (crashed or timed out?)}"
}

sanitizer_errors() {
  local n
  n=$(grep -Eo "ERROR SUMMARY: [0-9]+ error" "$1" | tail -1 | grep -Eo "[0-9]+")
  echo "${n:-unknown}"
}

# --- 1. GPU ------------------------------------------------------------------------
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)
nvidia-smi > "$LOGS/nvidia-smi.log" 2>&1
note "GPU: ${GPU}"

# --- 2. configure and build --------------------------------------------------------
if ! cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DSCRATCHNET_CUDA=ON -DCMAKE_PREFIX_PATH="$PWD/.device-deps" > "$LOGS/configure.log" 2>&1; then
  note "configure: FAILED (see $LOGS/configure.log)"
  tail -20 "$LOGS/configure.log"
  FAILED=1
elif ! timeout "$(left 200)" cmake --build "$BUILD" -j "$(nproc)" > "$LOGS/build.log" 2>&1; then
  note "build: FAILED (see $LOGS/build.log)"
  grep -E "error|Error" "$LOGS/build.log" | head -20
  FAILED=1
else
  note "build: ok ($(elapsed) s)"
  BUILT=1
fi

TESTS="$BUILD/scratchnet_tests"
if [[ $BUILT -eq 1 ]]; then
  # --- 3. the [cuda] suite, full size ----------------------------------------------
  timeout "$(left 100)" "$TESTS" --gpu-or-skip "[cuda]" --durations yes > "$LOGS/cuda-tests.log" 2>&1
  rc=$?
  note "[cuda] tests: exit $rc, $(test_counts "$LOGS/cuda-tests.log")"
  [[ $rc -ne 0 ]] && FAILED=1

  # --- 4. memcheck, small shapes ------------------------------------------------------
  if command -v compute-sanitizer > /dev/null; then
    SCRATCHNET_TEST_SMALL=1 timeout "$(left 90)" compute-sanitizer --tool memcheck --leak-check no \
      --error-exitcode 99 "$TESTS" "[cuda]" > "$LOGS/memcheck.log" 2>&1
    rc=$?
    note "memcheck: exit $rc, $(sanitizer_errors "$LOGS/memcheck.log") errors, $(test_counts "$LOGS/memcheck.log")"
    [[ $rc -ne 0 ]] && FAILED=1

    # --- 5. racecheck on the shared-memory kernels (GEMM, conv, reductions) -----------
    RACE_TAGS="[cuda][gemm],[cuda][conv2d],[cuda][batchnorm],[cuda][softmax_ce],[cuda][pool]"
    SCRATCHNET_TEST_SMALL=1 timeout "$(left 60)" compute-sanitizer --tool racecheck --racecheck-report all \
      --error-exitcode 99 "$TESTS" "$RACE_TAGS" > "$LOGS/racecheck.log" 2>&1
    rc=$?
    note "racecheck: exit $rc, $(sanitizer_errors "$LOGS/racecheck.log") hazards, $(test_counts "$LOGS/racecheck.log")"
    [[ $rc -ne 0 ]] && FAILED=1
  else
    note "compute-sanitizer: not found, sanitizer runs SKIPPED"
    FAILED=1
  fi
fi

# --- 5b. data parallel through NCCL: one rank per GPU (1 rank: the NCCL path
# over one GPU). Needs a build with MPI and NCCL, and mpirun on this machine.
if [[ $BUILT -eq 1 ]]; then
  if ! command -v mpirun > /dev/null; then
    note "data parallel (NCCL): SKIPPED: no mpirun on this machine"
  elif ! "$BUILD/scratchnet" --version | grep -q "MPI with NCCL"; then
    note "data parallel (NCCL): SKIPPED: built without MPI+NCCL ($("$BUILD/scratchnet" --version))"
  else
    NGPU=$(nvidia-smi -L | grep -c '^GPU ')
    timeout "$(left 60)" mpirun --oversubscribe -np "$NGPU" $([ "$(id -u)" -eq 0 ] && echo --allow-run-as-root) \
      "$BUILD/scratchnet" train --model lenet --device cuda --epochs 1 --train-limit 4096 \
      --test-limit 1024 --check-ranks --data .device-deps/data/fashion-mnist --out "$LOGS/dp-run" \
      > "$LOGS/data-parallel.log" 2>&1
    rc=$?
    note "data parallel (NCCL, $NGPU rank(s)): exit $rc, $(grep -m1 '^done' "$LOGS/data-parallel.log")"
    [[ $rc -ne 0 ]] && FAILED=1
  fi
fi

# --- 6. OPTIONAL: benchmarks ------------------------------------------------------------
# Runs when the build succeeded (even after a test failure: the timings are
# still worth having) and time is left; its result is reported but never
# changes the exit status. Kept short: the GEMM ceiling rows and one training
# step per course model. The full side-by-side run is tools/bench_vs_torch.sh.
if [[ $BUILT -eq 1 && $(elapsed) -lt 200 && -x "$BUILD/scratchnet" ]]; then
  {
    timeout $((240 - $(elapsed))) "$BUILD/scratchnet" bench --device cuda --shape gemm:4096,4096,4096 \
      --repeats 5
    timeout $((270 - $(elapsed))) "$BUILD/scratchnet" bench --device cuda --mode step \
      --model lenet,alexnet,vgg11,resnet18 --steps 10 --no-profile
  } > "$LOGS/bench.log" 2>&1
  note "bench (optional): exit $?, see $LOGS/bench.log"
  if [[ -f .device-deps/reference/torch_bench.py ]] && [[ $(elapsed) -lt 270 ]]; then
    timeout $((290 - $(elapsed))) python3 .device-deps/reference/torch_bench.py \
      > "$LOGS/torch_bench.log" 2>&1
    note "torch_bench (optional): exit $?, see $LOGS/torch_bench.log"
  fi
else
  note "bench (optional): not run"
fi

# --- summary (last screen) ----------------------------------------------------------------
echo
echo "================ gpu_check summary ($(elapsed) s) ================"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
if [[ -f "$LOGS/cuda-tests.log" ]] && grep -q "FAILED" "$LOGS/cuda-tests.log"; then
  echo "  first failures:"
  grep -E -B1 -A6 "FAILED:" "$LOGS/cuda-tests.log" | head -40 | sed 's/^/    /'
fi
for f in memcheck racecheck; do
  if [[ -f "$LOGS/$f.log" ]] && [[ $(sanitizer_errors "$LOGS/$f.log") != 0 ]]; then
    echo "  first $f reports:"
    grep -E -A4 "^========= (Invalid|Program hit|Race|Error|ERROR|Warning)" "$LOGS/$f.log" \
      | head -16 | sed 's/^/    /'
  fi
done
echo "  logs: $LOGS/"
if [[ $FAILED -eq 0 ]]; then echo "  RESULT: PASS"; else echo "  RESULT: FAIL"; fi
exit $FAILED
