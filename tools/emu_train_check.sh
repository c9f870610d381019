#!/usr/bin/env bash
# The CUDA kernels, run by the emulated target, train like the CPU reference:
# a short LeNet run on the real data with --device cpu and --device cuda, same
# seed, and the per-epoch mean training losses must agree.
#
# Tolerance: |cuda - cpu| <= 1e-4 * max(1, |cpu|). The two backends sum in
# different orders (GEMM tiles, block reductions), so each step's loss differs
# in the last float bits and the difference grows slowly over the steps; a
# wrong kernel moves the loss by far more (1e-2 and up within one epoch).
#
# The cuda run replays a CUDA graph of the step after warm-up (the default);
# a third run with --no-cuda-graph must give its metrics exactly (the same
# kernels on the same data), and the graph run must say it captured.
#
# Usage: tools/emu_train_check.sh [path/to/scratchnet]   (an EMULATE build)
set -euo pipefail
bin=${1:-build-emu/scratchnet}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(train --model lenet --epochs 2 --train-limit 512 --test-limit 256 --batch-size 128
      --lr 0.1 --seed 7)
"$bin" "${args[@]}" --device cpu --out "$out/cpu" >"$out/cpu.log" 2>&1 ||
  { cat "$out/cpu.log"; exit 1; }
"$bin" "${args[@]}" --device cuda --out "$out/cuda" >"$out/cuda.log" 2>&1 ||
  { cat "$out/cuda.log"; exit 1; }
grep -q "CUDA graph of the step" "$out/cuda.log" || { cat "$out/cuda.log"; exit 1; }
if grep -q "CUDA graph off" "$out/cuda.log"; then cat "$out/cuda.log"; exit 1; fi
"$bin" "${args[@]}" --device cuda --no-cuda-graph --out "$out/eager" >"$out/eager.log" 2>&1 ||
  { cat "$out/eager.log"; exit 1; }
# Every column but the timings (seconds, img/s) equal, graph vs eager.
metrics() {
  awk -F, '/^#/ {next} !hdr {hdr = 1; for (i = 1; i <= NF; i++) keep[i] = $i !~ /second|img|_s$/;
           next} {line = ""; for (i = 1; i <= NF; i++) if (keep[i]) line = line $i ","; print line}' "$1"
}
if [ "$(metrics "$out/cuda/metrics.csv")" != "$(metrics "$out/eager/metrics.csv")" ]; then
  echo "graph and eager runs differ:"; cat "$out/cuda/metrics.csv" "$out/eager/metrics.csv"; exit 1
fi
echo "graph replay == eager steps: $(metrics "$out/cuda/metrics.csv" | wc -l) epochs identical"
# train_loss by its column name (metrics.csv may gain columns; '#' lines are comments).
loss() {
  awk -F, '/^#/ {next} !col {for (i = 1; i <= NF; i++) if ($i == "train_loss") col = i; next}
           {print $col}' "$1"
}
paste -d' ' <(loss "$out/cpu/metrics.csv") <(loss "$out/cuda/metrics.csv") | awk '
  { n++; d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1; if (m < 1) m = 1
    ok = d <= 1e-4 * m && $2 != ""
    printf "epoch %d: cpu %s cuda %s |diff| %.3g %s\n", n, $1, $2, d, ok ? "ok" : "MISMATCH"
    if (!ok) bad = 1 }
  END { if (n < 2) { print "expected 2 epochs of losses"; exit 1 } exit bad }'
