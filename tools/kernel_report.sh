#!/usr/bin/env bash
# Static evidence for the CUDA kernels while no GPU is at hand: for every
# kernel in kernels/cuda/*.cu, compiled for sm_90 as the build does, the
# registers per thread, spills, static shared memory and the theoretical
# occupancy on an H100/H200 SM at the block size the launcher uses.
#
# Occupancy (per SM of sm_90): at most 2048 threads (64 warps), 32 blocks,
# 65536 registers allocated per warp in units of 256, and 228 KiB of shared
# memory (1 KiB reserved per block, 128-byte units). Blocks per SM is the
# least of those limits; occupancy = resident warps / 64.
#
# Exits 1 when any kernel spills registers to local memory. A kernel under
# 50% occupancy is flagged with the limit that holds it there.
# Usage: tools/kernel_report.sh [ARCH]   (default 90; needs nvcc, no GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$nvcc" ] || { echo "kernel_report: nvcc not found" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for f in kernels/cuda/*.cu; do
  "$nvcc" -std=c++17 -arch=sm_"$arch" -I. -DSCRATCHNET_WITH_CUDA=1 --expt-relaxed-constexpr -Xptxas -v -c "$f" \
    -o /dev/null 2>>"$log" || { cat "$log" >&2; exit 2; }
done
# Block sizes the launchers use (SN_LAUNCH calls): kThreads = 256 unless named here.
python3 - "$log" <<'PY'
import re, subprocess, sys
text = subprocess.run(["c++filt"], input=open(sys.argv[1]).read(), capture_output=True,
                      text=True).stdout
block = {"softmax_ce_forward_kernel": 1024, "column_sum_kernel": 32 * 8}
rows, spills = [], 0
name = None
for line in text.splitlines():
    m = re.search(r"Function properties for (.*)$", line)
    if m:
        name = m.group(1).replace("(anonymous namespace)::", "")
        depth, cut = 0, len(name)
        for i, c in enumerate(name):  # the parameter list starts at the first '(' outside <>
            depth += (c == "<") - (c == ">")
            if c == "(" and depth == 0:
                cut = i
                break
        sig = name[:cut]
        base = sig.split("<")[0].split("::")[-1]
        tmpl = re.sub(r"[\w]+::", "", sig[len(sig.split("<")[0]):])
        cur = {"kernel": base + tmpl, "base": base}
        continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m and name:
        cur["stack"], cur["st"], cur["ld"] = map(int, m.groups())
        continue
    m = re.search(r"Used (\d+) registers.*?(?:(\d+) bytes smem)?$", line)
    if m and name:
        cur["regs"] = int(m.group(1))
        cur["smem"] = int(m.group(2) or 0)
        rows.append(cur)
        name = None
def occupancy(threads, regs, smem):
    warps = -(-threads // 32)
    regs_per_warp = -(-regs * 32 // 256) * 256
    limits = {"threads": 2048 // (warps * 32), "blocks": 32,
              "registers": (65536 // regs_per_warp) // warps if regs_per_warp else 32}
    per_block = -(-(smem + 1024) // 128) * 128
    limits["shared memory"] = (228 * 1024) // per_block
    blocks = min(limits.values())
    return blocks * warps / 64, min(limits, key=limits.get)
print(f"{'kernel':<44} {'block':>5} {'regs':>4} {'spill st/ld':>11} {'smem B':>7} {'occupancy':>9}  note")
for r in sorted(rows, key=lambda r: r["kernel"]):
    t = block.get(r["base"], 256)
    m = re.match(r"<(\d+), (\d+),", r["kernel"][len(r["base"]):])
    if r["base"] == "conv2d_igemm_kernel" and m:  # BM x BN tile: BM * BN / 64 threads
        t = int(m.group(1)) * int(m.group(2)) // 64
    occ, limit = occupancy(t, r["regs"], r["smem"])
    spill = r["st"] + r["ld"]
    spills += spill > 0
    note = ("SPILLS" if spill else "") + (f" under 50%: held by {limit}" if occ < 0.5 else "")
    print(f"{r['kernel'][:44]:<44} {t:>5} {r['regs']:>4} {str(r['st'])+'/'+str(r['ld']):>11} "
          f"{r['smem']:>7} {occ:>8.0%}  {note.strip()}")
print(f"{len(rows)} kernels, {spills} with spills")
sys.exit(1 if spills else 0)
PY
