#!/usr/bin/env bash
# scratchnet against PyTorch on the CPU: one training step, same shapes, same
# thread count, the two interleaved over several rounds. From the repository
# root, with a CPU build already there (this script builds nothing and installs
# nothing; it is never needed by CI):
#
#   bash tools/bench_vs_torch_cpu.sh
#   PYTHON=/work/venv-torch/bin/python3 PYTHON_EXTRA=/usr/bin/python3 ROUNDS=3 \
#     bash tools/bench_vs_torch_cpu.sh
#   PROFILE=1 PROFILE_CONFIG=resnet18:96:64 bash tools/bench_vs_torch_cpu.sh
#
# What is timed, on each side, is one training step on a batch that is already
# in memory (random input of the model's shape, random labels):
#   ours:    `$BIN bench --mode step --device cpu --threads $THREADS` (zero the
#            gradients, forward, cross-entropy, backward, SGD);
#   PyTorch: zero_grad(set_to_none=True), forward, cross_entropy, backward,
#            SGD step (lr 0.01), fp32, torch.set_num_threads($THREADS), the
#            models of shared/reference/torch_models.py in train mode.
# Every round runs every configuration, ours first and then each PyTorch, each
# as its own process (so neither inherits the other's warm caches or
# allocator), after WARMUP untimed steps; a run's figure is the median of its
# STEPS timed steps.
#
# The numbers printed:
#   <side> ms   median over the ROUNDS runs of each run's median ms per step,
#               with [min-max] of the runs' medians (the spread is the noise);
#   ratio       PyTorch ms / scratchnet ms: >= 1.0 means scratchnet is at least
#               as fast as that PyTorch, 0.5 means PyTorch takes half the time;
#   load        the 1-min load average read before every run (other work on a
#               shared machine shows here; quote it with the table).
# Versions (scratchnet --version, torch.__version__), date, CPU model and the
# thread count are printed above the table.
#
# Memory, per run, each side measuring itself from /proc/self/status (ours:
# tools/bench_rss.cpp inside `bench --mode step`; PyTorch: the helper): the
# resident set once model, optimizer and batch are built, the peak (VmHWM,
# reset there through /proc/self/clear_refs) over the warm-up and timed steps,
# and their difference, "growth" (issue 11: a step's peak memory <= PyTorch's).
# (Not the process's ru_maxrss: PyTorch's rises by ~90 MiB in the interpreter's
# teardown, after the steps.) The memory table prints medians over rounds.
#
# LOAD=N runs N busy-loop processes (plain shell loops, started here, killed on
# exit) during every run of both sides: the "under load" condition of issue 11
# with a known, steady competitor instead of whatever else the machine does.
#
# PROFILE=1 adds a per-op-type table for PROFILE_CONFIG (default: the last of
# CONFIGS): our `bench --mode step` per-layer / per-node profile against
# torch.profiler's self CPU time per op, both grouped into conv, batch norm,
# relu, sigmoid, pool, linear, add, dropout, loss, optimizer, forward and
# backward apart, so each row compares like with like.
#
# Environment:
#   BIN           our binary (build-cpu/scratchnet); must exist
#   PYTHON        a python that can `import torch` (python3)
#   PYTHON_EXTRA  optional second python with another torch (e.g. Debian's
#                 /usr/bin/python3 with 1.13): an extra column
#   THREADS (2)  ROUNDS (3)  STEPS (10)  WARMUP (3)
#   CONFIGS       "model:input:batch ..." ("lenet:28:256 alexnet:224:32 vgg11:224:8 resnet18:96:64")
#   LOAD (0)      busy-loop processes running beside every run
#   PROFILE (0)   PROFILE_CONFIG (last of CONFIGS)
#   REFERENCE     folder of torch_models.py (.device-deps/reference, else ../shared/reference)
#   OUT_DIR       raw results (bench-out/cpu, git-ignored): r<round>.<side>.<cfg>.json, loads.tsv,
#                 profile.*.json, table.txt
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-build-cpu/scratchnet}
PYTHON=${PYTHON:-python3}
PYTHON_EXTRA=${PYTHON_EXTRA:-}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
CONFIGS=${CONFIGS:-"lenet:28:256 alexnet:224:32 vgg11:224:8 resnet18:96:64"}
PROFILE=${PROFILE:-0}
LOAD=${LOAD:-0}
OUT_DIR=${OUT_DIR:-bench-out/cpu}
HELPER=$ROOT/tools/bench_vs_torch_cpu.py

die() { echo "bench_vs_torch_cpu: $*" >&2; exit 1; }

# --- checks: everything is given, nothing is built or installed ------------------
if [ ! -x "$BIN" ]; then
  die "no binary at BIN=$BIN; build the CPU engine first (e.g. bash tools/build.sh, or cmake -B build-cpu && cmake --build build-cpu --target scratchnet) or point BIN at one"
fi
REFERENCE=${REFERENCE:-}
if [ -z "$REFERENCE" ]; then
  for d in "$ROOT/.device-deps/reference" "$ROOT/../shared/reference"; do
    [ -f "$d/torch_models.py" ] && { REFERENCE=$d; break; }
  done
fi
if [ -z "$REFERENCE" ] || [ ! -f "$REFERENCE/torch_models.py" ]; then
  die "torch_models.py not found in .device-deps/reference or ../shared/reference; set REFERENCE=DIR"
fi
REFERENCE=$(cd "$REFERENCE" && pwd)
PYTHONS=("$PYTHON")
[ -n "$PYTHON_EXTRA" ] && PYTHONS+=("$PYTHON_EXTRA")
for py in "${PYTHONS[@]}"; do
  command -v "$py" >/dev/null || die "python '$py' not found; set PYTHON (and PYTHON_EXTRA) to a python with torch"
  "$py" -c 'import torch' 2>/dev/null \
    || die "'$py' cannot import torch; give one that can, e.g. PYTHON=/path/to/venv/bin/python3 (this script installs nothing; python3 -m venv V && V/bin/pip install torch makes one)"
done
read -ra CFGS <<<"$CONFIGS"
for cfg in "${CFGS[@]}"; do
  [[ $cfg =~ ^[a-z0-9]+:[0-9]+:[0-9]+$ ]] || die "config '$cfg' is not model:input:batch"
done
[[ $LOAD =~ ^[0-9]+$ ]] || die "LOAD=$LOAD is not a number of busy-loop processes"
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/r*.json "$OUT_DIR"/profile.*.json "$OUT_DIR/loads.tsv"

# --- what, where, when -------------------------------------------------------------
{
  echo "date:       $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine:    $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) logical CPUs ($(uname -m), $(uname -r))"
  echo "scratchnet: $("$BIN" --version 2>&1 | head -1)"
  i=0
  for py in "${PYTHONS[@]}"; do
    echo "torch$i:     $("$py" -c 'import torch, sys; print("PyTorch", torch.__version__, "(python", sys.version.split()[0] + ",", next((l.strip() for l in torch.__config__.parallel_info().splitlines() if "MKL-DNN" in l), "no oneDNN line") + ")")' 2>/dev/null | tail -1)  [$py]"
    i=$((i + 1))
  done
  echo "threads:    $THREADS on both sides; $ROUNDS rounds of $WARMUP warm-up + $STEPS timed steps"
  echo "load:       $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the start"
  if [ "$LOAD" -gt 0 ]; then
    echo "LOAD:       $LOAD busy-loop process(es) started by this script, running beside every run"
  fi
} | tee "$OUT_DIR/info.txt"

# --- LOAD: busy loops beside the runs, ended (by their own pids) on any exit --------
BUSY=()
stop_busy() {
  local p
  for p in "${BUSY[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BUSY[@]}"; do wait "$p" 2>/dev/null || true; done
  BUSY=()
}
trap stop_busy EXIT
trap 'exit 130' INT TERM
for ((i = 0; i < LOAD; i++)); do
  bash -c 'while :; do :; done' &
  BUSY+=($!)
done

note_load() {  # round side config load1 load5 load15
  echo "$1 $2 $3 $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT_DIR/loads.tsv"
}

run_ours() {  # round model input batch [extra args]
  local r=$1 model=$2 input=$3 batch=$4
  shift 4
  "$BIN" bench --mode step --device cpu --model "$model" --resize "$input" \
    --batch-size "$batch" --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP" \
    --format json "$@" 2>"$OUT_DIR/err.txt" || cat "$OUT_DIR/err.txt"
}

run_torch() {  # python model input batch [extra args]
  local py=$1 model=$2 input=$3 batch=$4
  shift 4
  OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS \
    "$py" "$HELPER" torch --model "$model" --input "$input" --batch "$batch" \
    --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP" --reference "$REFERENCE" "$@" \
    2>"$OUT_DIR/err.txt" || tail -3 "$OUT_DIR/err.txt"
}

# --- the rounds, interleaved ----------------------------------------------------------
for ((r = 1; r <= ROUNDS; r++)); do
  for cfg in "${CFGS[@]}"; do
    IFS=: read -r model input batch <<<"$cfg"
    tag=$model-$input-$batch
    echo "round $r/$ROUNDS: $model ($input, $batch): scratchnet" >&2
    note_load "$r" ours "$tag"
    run_ours "$r" "$model" "$input" "$batch" --no-profile >"$OUT_DIR/r$r.ours.$tag.json"
    i=0
    for py in "${PYTHONS[@]}"; do
      echo "round $r/$ROUNDS: $model ($input, $batch): torch$i" >&2
      note_load "$r" "torch$i" "$tag"
      run_torch "$py" "$model" "$input" "$batch" >"$OUT_DIR/r$r.torch$i.$tag.json"
      i=$((i + 1))
    done
  done
done

echo >&2
{ cat "$OUT_DIR/info.txt"; echo; } >"$OUT_DIR/table.txt"
python3 "$HELPER" report "$OUT_DIR" "${CFGS[@]}" | tee -a "$OUT_DIR/table.txt"

# --- per op type ----------------------------------------------------------------------
if [ "$PROFILE" = 1 ]; then
  IFS=: read -r model input batch <<<"${PROFILE_CONFIG:-${CFGS[-1]}}"
  echo >&2
  echo "profile: $model ($input, $batch): scratchnet" >&2
  run_ours p "$model" "$input" "$batch" --top 0 >"$OUT_DIR/profile.ours.json"
  i=0
  for py in "${PYTHONS[@]}"; do
    echo "profile: $model ($input, $batch): torch$i (torch.profiler)" >&2
    run_torch "$py" "$model" "$input" "$batch" --profile "$OUT_DIR/profile.torch$i.json" >/dev/null
    echo | tee -a "$OUT_DIR/table.txt"
    python3 "$HELPER" layers "$OUT_DIR/profile.ours.json" "$OUT_DIR/profile.torch$i.json" \
      | tee -a "$OUT_DIR/table.txt"
    i=$((i + 1))
  done
fi
