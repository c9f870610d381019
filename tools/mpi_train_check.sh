#!/usr/bin/env bash
# Data-parallel training (train/distributed.h) trains like one process: a
# short LeNet run on the real data, once as one process and once as 2 MPI
# ranks on the CPU, same seed and the same global batch.
#
# What must hold, and the tolerances:
#   - the 2-rank run passes --check-ranks: after every step both ranks hold
#     bitwise the same weights (else it stops with an error);
#   - per epoch, train and test loss agree within 1e-4 * max(1, |loss|), and
#     the test accuracy within one test image: the ranks sum each batch's
#     gradient in two halves (and in float), so the weights differ from the
#     single process's in the last bits, and the difference grows slowly;
#   - the final weights (model.safetensors) agree within 1e-4 in every
#     element; a wrong split or a missing average moves them by ~1e-2;
#   - a 2-rank run stopped after epoch 1 and resumed by 2 ranks ends with
#     bitwise the weights of the uninterrupted 2-rank run;
#   - one rank under mpirun (the data-parallel path, all-reducing over one
#     rank) ends with bitwise one process's weights;
#   - a failure on the ranks (here: the divergence bound) ends the job with
#     the rank's message and a non-zero exit, without hanging.
#   - batch norm (ResNet-18 at 32x32, one step of 24 images at lr 1e-3): with
#     --sync-bn the ranks normalise with the whole batch's statistics, so the
#     step's loss (the forward pass at the initial weights) agrees with one
#     process within 1e-5 * max(1, |loss|), and the test loss after the step
#     within 1e-4; without it each rank normalises with its half, and the
#     step's loss must differ by more than 1e-3 relative (else this check
#     could not tell the two apart). Only one small step: at this size some
#     pre-activations sit within 1e-6 of a ReLU's kink, where any rounding
#     difference (another GEMM variant, another sum order) flips one
#     element's gradient, and training amplifies that; the backward's
#     arithmetic is checked exactly in tests/test_distributed.cpp instead.
# The batch (63) does not split evenly: the ranks take 31 and 32 examples,
# and the last, partial batch (59) 29 and 30.
#
# Usage: tools/mpi_train_check.sh [path/to/scratchnet]   (a build with MPI)
set -euo pipefail
bin=${1:-build/scratchnet}
command -v mpirun >/dev/null ||
  { echo "mpirun not found: install openmpi-bin (tools/setup.sh does)"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mpirun=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
args=(train --model lenet --device cpu --train-limit 500 --test-limit 300 --batch-size 63
      --lr 0.3 --momentum 0.5 --seed 7)
run() {  # name, then the command; its output goes to $out/name.log
  local name=$1
  shift
  if ! timeout 300 "$@" >"$out/$name.log" 2>&1; then
    echo "FAILED: $*"
    cat "$out/$name.log"
    exit 1
  fi
}
run single "$bin" "${args[@]}" --epochs 2 --threads 1 --out "$out/single"
run ranks "${mpirun[@]}" -np 2 "$bin" "${args[@]}" --epochs 2 --check-ranks --out "$out/ranks"
run one_rank "${mpirun[@]}" -np 1 "$bin" "${args[@]}" --epochs 2 --threads 1 --out "$out/one_rank"
run ranks_e1 "${mpirun[@]}" -np 2 "$bin" "${args[@]}" --epochs 1 --out "$out/resumed"
run ranks_e2 "${mpirun[@]}" -np 2 "$bin" train --resume "$out/resumed" --epochs 2 --check-ranks
grep -q "data parallel: 2 ranks" "$out/ranks.log" ||
  { echo "the 2-rank run did not report 2 ranks:"; cat "$out/ranks.log"; exit 1; }
grep -q "data parallel: 1 rank " "$out/one_rank.log" ||
  { echo "the 1-rank run did not take the data-parallel path:"; cat "$out/one_rank.log"; exit 1; }

# A failure: the divergence bound trips on every rank at the first step.
set +e
timeout 120 "${mpirun[@]}" -np 2 "$bin" "${args[@]}" --epochs 1 --max-loss 0.01 --out "$out/fail" \
  >"$out/fail.log" 2>&1
rc=$?
set -e
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || ! grep -q "error (rank [01] of 2): training diverged" \
  "$out/fail.log"; then
  echo "expected the failing 2-rank run to stop with the rank's error (exit $rc):"
  cat "$out/fail.log"
  exit 1
fi
echo "failing run: exit $rc, $(grep -m1 -o 'error (rank [01] of 2): training diverged' "$out/fail.log")"

bn=(train --model resnet18 --device cpu --resize 32 --train-limit 24 --test-limit 32
    --batch-size 24 --epochs 1 --lr 0.001 --seed 3)
run bn_single "$bin" "${bn[@]}" --threads 1 --out "$out/bn_single"
run bn_sync "${mpirun[@]}" -np 2 "$bin" "${bn[@]}" --sync-bn --check-ranks --out "$out/bn_sync"
run bn_ranks "${mpirun[@]}" -np 2 "$bin" "${bn[@]}" --check-ranks --out "$out/bn_ranks"

python3 - "$out" <<'EOF'
import csv, json, struct, sys
out = sys.argv[1]

def rows(run):
    with open(f"{out}/{run}/metrics.csv") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))

def weights(run):
    with open(f"{out}/{run}/model.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    w = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        w[name] = struct.unpack(f"<{(b - a) // 4}f", data[a:b])
    return w

bad = False
single, ranks = rows("single"), rows("ranks")
if len(single) != 2 or len(ranks) != 2:
    sys.exit(f"expected 2 epochs, got {len(single)} and {len(ranks)}")
for s, r in zip(single, ranks):
    for col in ("train_loss", "test_loss"):
        a, b = float(s[col]), float(r[col])
        ok = abs(a - b) <= 1e-4 * max(1.0, abs(a))
        bad |= not ok
        print(f"epoch {s['epoch']} {col}: 1 process {a}, 2 ranks {b} {'ok' if ok else 'MISMATCH'}")
    a, b = float(s["test_acc"]), float(r["test_acc"])
    ok = abs(a - b) <= 1.0 / 300 + 1e-9
    bad |= not ok
    print(f"epoch {s['epoch']} test_acc: 1 process {a}, 2 ranks {b} {'ok' if ok else 'MISMATCH'}")

one, sync, per_rank = rows("bn_single")[0], rows("bn_sync")[0], rows("bn_ranks")[0]
for col, tol in (("train_loss", 1e-5), ("test_loss", 1e-4)):
    a, b, c = float(one[col]), float(sync[col]), float(per_rank[col])
    ok = abs(a - b) <= tol * max(1.0, abs(a))
    apart = abs(a - c) > 1e-3 * max(1.0, abs(a))
    bad |= not ok or (col == "train_loss" and not apart)
    print(f"resnet18 {col}: 1 process {a}, 2 ranks --sync-bn {b} {'ok' if ok else 'MISMATCH'}, "
          f"2 ranks per-rank statistics {c}"
          f"{(' (differs, as it must)' if apart else ' SAME?') if col == 'train_loss' else ''}")

ws, wr, wres = weights("single"), weights("ranks"), weights("resumed")
if ws.keys() != wr.keys() or not ws:
    sys.exit("the two runs saved different tensors")
diff = max(abs(x - y) for k in ws for x, y in zip(ws[k], wr[k]))
ok = diff <= 1e-4
bad |= not ok
print(f"final weights: max |1 process - 2 ranks| = {diff:.3g} {'ok' if ok else 'MISMATCH'}")
one = weights("one_rank") == ws
bad |= not one
print(f"1 rank under mpirun: weights {'bitwise equal' if one else 'DIFFER'} to one process's")
same = wres == wr
bad |= not same
print(f"resumed 2-rank run: weights {'bitwise equal' if same else 'DIFFER'} to the uninterrupted one's")
sys.exit(1 if bad else 0)
EOF
