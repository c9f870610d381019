#!/usr/bin/env bash
# The engine against PyTorch on the same GPU, in one run (same card, clocks
# and software for both). On a GPU machine, from the repository root:
#
#   bash tools/bench_vs_torch.sh              # build (or reuse) build-gpu, bench, print the table
#   STEPS=30 CONFIGS="alexnet:224:256" bash tools/bench_vs_torch.sh
#
# What it does:
#   1. configures and builds like tools/gpu_check.sh: Ninja, sm_90, the
#      dependencies under .device-deps (CMAKE_PREFIX_PATH), into build-gpu;
#      an existing build is reused (the build step is then incremental);
#   2. `scratchnet bench --mode step --format json` for every configuration;
#   3. .device-deps/reference/torch_bench.py (copied from shared/reference)
#      for the same models and batches, in its three modes (fp32, default
#      TF32, bf16 + channels_last); sizes that differ from the reference's
#      input go through its time_steps() with the input patched;
#   4. optionally (GEMM=1, the default) the kernel-mode GEMM table: our SGEMM
#      against cuBLAS at 4096^3 and on the AlexNet / VGG-11 FC shapes;
#   5. prints one table: model, batch, input, our ms/step and img/s, PyTorch
#      fp32 / default / bf16cl ms/step, our speed relative to each
#      (torch ms / our ms: 1.0 = as fast, the target is >= 0.5 against fp32),
#      our peak memory beside PyTorch fp32's.
# Raw results stay in $OUT_DIR (default bench-out/): ours.jsonl, torch.jsonl,
# gemm.txt, table.txt.
#
# Environment: BUILD_DIR (build-gpu), STEPS (20), WARMUP (5),
#   CONFIGS ("model:input:batch ..."), GEMM (1), OUT_DIR (bench-out),
#   PYTHON (python3: one with torch), DEVICE (cuda; cpu for a dry run of the
#   script on a machine without a GPU: PyTorch then runs fp32 only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-build-gpu}
DEPS=$ROOT/.device-deps
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-5}
GEMM=${GEMM:-1}
OUT_DIR=${OUT_DIR:-bench-out}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
# The reference sizes (shared/reference/torch_models.py MODELS), plus ResNet-18
# at 96 px, the input the course trains it at.
CONFIGS=${CONFIGS:-"lenet:28:256 alexnet:224:256 vgg11:224:128 resnet18:224:256 resnet18:96:256"}

TORCH_BENCH=$DEPS/reference/torch_bench.py
[ -f "$TORCH_BENCH" ] || TORCH_BENCH=$ROOT/../shared/reference/torch_bench.py
if [ ! -f "$TORCH_BENCH" ]; then
  echo "bench_vs_torch: torch_bench.py not found in .device-deps/reference or ../shared/reference" >&2
  exit 1
fi
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
mkdir -p "$OUT_DIR"

# --- 1. build ---------------------------------------------------------------------
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSCRATCHNET_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$DEPS" >"$OUT_DIR/configure.log"
fi
cmake --build "$BUILD" --target scratchnet -j "$(nproc)" >"$OUT_DIR/build.log" \
  || { tail -40 "$OUT_DIR/build.log" >&2; exit 1; }
BIN=$BUILD/scratchnet

# --- 2. the engine ---------------------------------------------------------------
: >"$OUT_DIR/ours.jsonl"
for cfg in $CONFIGS; do
  IFS=: read -r model input batch <<<"$cfg"
  echo "scratchnet: $model input $input batch $batch" >&2
  if ! "$BIN" bench --mode step --device "$DEVICE" --model "$model" --image-size "$input" \
        --batch-size "$batch" --steps "$STEPS" --warmup "$WARMUP" --format json \
        >>"$OUT_DIR/ours.jsonl" 2>"$OUT_DIR/err.txt"; then
    python3 -c 'import json,sys; print(json.dumps({"model":sys.argv[1],"input":int(sys.argv[2]),"batch":int(sys.argv[3]),"error":open(sys.argv[4]).read().strip()}))' \
      "$model" "$input" "$batch" "$OUT_DIR/err.txt" >>"$OUT_DIR/ours.jsonl"
  fi
done

# --- 3. PyTorch ------------------------------------------------------------------
echo "pytorch: $CONFIGS" >&2
"$PYTHON" - "$TORCH_BENCH" "$DEVICE" "$STEPS" $CONFIGS >"$OUT_DIR/torch.jsonl" <<'PY'
# time_steps() of torch_bench.py for each configuration; the input side is
# patched into its MODELS table where it differs from the reference's.
import importlib.util, json, sys
path, device, steps, configs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
spec = importlib.util.spec_from_file_location("torch_bench", path)
tb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tb)
import os, torch
if device == "cpu":
    torch.set_num_threads(os.cpu_count())  # as torch_bench.py's main does
gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
print(json.dumps({"torch": torch.__version__, "gpu": gpu}), flush=True)
reference = dict(tb.MODELS)
for cfg in configs:
    name, hw, bs = cfg.split(":")
    make, _, default_bs = reference[name]
    tb.MODELS = dict(reference)
    tb.MODELS[name] = (make, int(hw), default_bs)
    for mode in ("fp32", "default", "bf16cl") if device == "cuda" else ("fp32",):
        try:
            print(json.dumps(tb.time_steps(name, mode, device, steps, int(bs))), flush=True)
        except Exception as ex:  # report and go on, as torch_bench.py does
            print(json.dumps({"model": name, "mode": mode, "input": int(hw), "batch": int(bs),
                              "error": str(ex)}), flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
PY

# --- 4. GEMM against cuBLAS --------------------------------------------------------
if [ "$GEMM" = 1 ]; then
  echo "scratchnet: GEMM kernels vs cuBLAS" >&2
  "$BIN" bench --device "$DEVICE" --op gemm --model alexnet,vgg11 --format table \
    >"$OUT_DIR/gemm.txt" 2>&1 || true
fi

# --- 5. one table -------------------------------------------------------------------
python3 - "$OUT_DIR/ours.jsonl" "$OUT_DIR/torch.jsonl" <<'PY' | tee "$OUT_DIR/table.txt"
import json, sys

def lines(path):
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out

ours, torch = lines(sys.argv[1]), lines(sys.argv[2])
info = next((t for t in torch if "gpu" in t), {})
ref = {}
for t in torch:
    if "mode" in t:
        ref[(t["model"], t.get("input"), t.get("batch"), t["mode"])] = t

def f(x, spec="%.2f"):
    return "-" if x is None else spec % x

head = ["model", "batch", "input", "ours ms", "ours img/s", "torch fp32", "default", "bf16cl",
        "vs fp32", "vs default", "vs bf16cl", "ours MiB", "torch MiB", "target"]
rows = [head]
for o in ours:
    key = (o["model"], o.get("input"), o.get("batch"))
    tm = {m: ref.get(key + (m,), {}) for m in ("fp32", "default", "bf16cl")}
    ms = o.get("ms_per_step")
    def speed(m):
        t = tm[m].get("ms_per_step")
        return None if not ms or t is None else t / ms
    fp32_peak = tm["fp32"].get("peak_mem_MiB")
    ok = []
    if speed("fp32") is not None:
        ok.append("speed " + ("ok" if speed("fp32") >= 0.5 else "MISS"))
    if ms and fp32_peak is not None:
        ok.append("mem " + ("ok" if o["peak_mem_MiB"] <= fp32_peak else "MISS"))
    if "error" in o:
        ok = ["ERROR: " + o["error"][:60]]
    rows.append([o["model"], str(o.get("batch")), str(o.get("input")), f(ms), f(o.get("img_per_s"), "%.0f"),
                 f(tm["fp32"].get("ms_per_step")), f(tm["default"].get("ms_per_step")),
                 f(tm["bf16cl"].get("ms_per_step")), f(speed("fp32")), f(speed("default")),
                 f(speed("bf16cl")), f(o.get("peak_mem_MiB"), "%.0f"), f(fp32_peak, "%.0f"),
                 ", ".join(ok)])
dev = ours[0].get("device_name", "?") if ours else "?"
print(f"scratchnet vs PyTorch {info.get('torch', '?')} on {info.get('gpu', dev)}: training step "
      "(zero_grad, forward, cross-entropy, backward, SGD), ms/step medians;")
print("vs X = PyTorch ms / our ms (1.0 = as fast; target >= 0.5 vs fp32); "
      "MiB = peak allocated during the timed steps (target: ours <= torch fp32)")
w = [max(len(r[i]) for r in rows) for i in range(len(head))]
for k, r in enumerate(rows):
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    if k == 0:
        print("-" * (sum(w) + 2 * (len(w) - 1)))
PY
if [ "$GEMM" = 1 ]; then
  echo
  cat "$OUT_DIR/gemm.txt"
fi
