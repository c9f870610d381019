"""Helper of tools/bench_vs_torch_cpu.sh (read that script's header first).

Three subcommands, each small:

  torch   time PyTorch's training step on the CPU for one configuration and
          print one JSON line (run as its own process by the shell script, once
          per round, so that it never shares caches or a warm allocator with
          our binary's run);
          with --profile FILE also run a few steps under torch.profiler and
          write the per-op self CPU time, grouped by op type and phase, to FILE;
  report  read the result files of all rounds and print the table of medians
          and ratios, and the memory table;
  layers  print the per-layer (per-op-type) table: our `bench --mode step`
          profile beside torch.profiler's.

Only the `torch` subcommand imports torch; `report` and `layers` run on any
python3.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys
import time

# --------------------------------------------------------------------------------
# op types: one name per row of the per-layer table, for both sides
# --------------------------------------------------------------------------------
CATEGORIES = ["conv", "batch norm", "relu", "sigmoid", "pool", "linear", "add (residual)",
              "dropout", "loss", "optimizer", "other"]


def category(name):
    """The op type of an op or layer name, ours ('4.1.conv1 conv2d (..)',
    'batch_norm (..)') or PyTorch's ('aten::mkldnn_convolution',
    'autograd::engine::evaluate_function: ConvolutionBackward0'); None when the
    name says nothing (then the caller looks at the enclosing op)."""
    n = name.lower()
    n = n.replace("autograd::engine::evaluate_function: ", "")
    n = re.sub(r"\s*\([\d, ]*\)\s*$", "", n)   # drop our shapes, keep '1.0(add) add'
    if "conv" in n:
        return "conv"
    if "batch_norm" in n or "batchnorm" in n or re.search(r"\bbn\b", n):
        return "batch norm"
    if "relu" in n or "threshold" in n:
        return "relu"
    if "sigmoid" in n:
        return "sigmoid"
    if "pool" in n or re.search(r"\bgap\b", n) or "meanbackward" in n:
        return "pool"
    if "dropout" in n or "bernoulli" in n or "fused_dropout" in n:
        return "dropout"
    if ("cross_entropy" in n or "log_softmax" in n or "logsoftmax" in n or "nll_loss" in n
            or "nllloss" in n or re.search(r"\bce\b", n)):
        return "loss"
    if re.search(r"\blinear\b", n) or "addmm" in n or re.search(r"aten::mm\b", n) or "tbackward" in n:
        return "linear"
    if re.search(r"\badd\b", n) or "addbackward" in n or n.strip() == "aten::add":
        return "add (residual)"
    if "sgd" in n or "optimizer" in n or "_foreach" in n:
        return "optimizer"
    return None


# --------------------------------------------------------------------------------
# memory: the resident set as the kernel counts it, the same way on both sides
# (our binary does the same in tools/bench_rss.cpp)
# --------------------------------------------------------------------------------
def proc_status_mib(field):
    """VmRSS / VmHWM of this process in MiB (0 without /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def rss_watch_start():
    """Resets the peak (VmHWM) to the current RSS where the kernel lets us
    (Linux 4.0+: 5 into /proc/self/clear_refs); returns (RSS MiB, reset done)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    return proc_status_mib("VmRSS"), reset


# --------------------------------------------------------------------------------
# torch: one timed configuration in this process
# --------------------------------------------------------------------------------
def cmd_torch(a):
    try:
        import torch
        from torch import nn
    except ImportError as ex:
        sys.exit(f"bench_vs_torch_cpu: {sys.executable} cannot import torch ({ex}); "
                 "give a python that has it: PYTHON=/path/to/venv/bin/python3")
    sys.path.insert(0, a.reference)
    from torch_models import MODELS, init_weights

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    make = MODELS[a.model][0]
    net = make()
    net.apply(init_weights)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    X = torch.rand(a.batch, 1, a.input, a.input)
    Y = torch.randint(0, 10, (a.batch,))

    def step(mark=False):
        # the loop of torch_bench.py's time_steps(), on the CPU in fp32
        rf = torch.profiler.record_function if mark else None
        if not mark:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(X), Y)
            loss.backward()
            opt.step()
            return
        with rf("phase:optimizer"):
            opt.zero_grad(set_to_none=True)
        with rf("phase:forward"):
            out = net(X)
        with rf("phase:loss"):
            loss = loss_fn(out, Y)
        with rf("phase:backward"):
            loss.backward()
        with rf("phase:optimizer"):
            opt.step()

    # model, optimizer and batch are in place: the steps' growth from here
    # (warm-up included: the first steps are where the memory is taken)
    rss_start, rss_reset = rss_watch_start()
    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1000)
    rss_peak = proc_status_mib("VmHWM")
    ms = statistics.median(times)
    print(json.dumps({
        "side": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "model": a.model, "input": a.input, "batch": a.batch, "steps": a.steps,
        "warmup": a.warmup, "ms_per_step": round(ms, 3),
        "min_ms": round(min(times), 3), "max_ms": round(max(times), 3),
        "img_per_s": round(a.batch / ms * 1000, 1),
        "rss_setup_MiB": round(rss_start, 1), "rss_growth_MiB": round(max(0.0, rss_peak - rss_start), 1),
        "rss_hwm_reset": rss_reset}), flush=True)

    if a.profile:
        profile_torch(torch, step, a)


def profile_torch(torch, step, a, steps=5):
    """Self CPU time per op, grouped by (phase, op type), mean per step.
    An op's type is that of its outermost named enclosing op (so the aten::mm
    inside AddmmBackward0 counts as linear, the aten::add_ inside SGD as
    optimizer); its phase is the record_function label around it."""
    from torch.profiler import profile, ProfilerActivity
    wall = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            t = time.perf_counter()
            step(mark=True)
            wall.append((time.perf_counter() - t) * 1000)
    groups = {}
    for ev in prof.events():
        if ev.name.startswith("phase:") or ev.name.startswith("ProfilerStep"):
            continue
        chain = []
        p = ev
        while p is not None:
            chain.append(p.name)
            p = p.cpu_parent
        chain.reverse()          # outermost first
        phase = next((c[6:] for c in chain if c.startswith("phase:")), "other")
        cat = "optimizer" if phase == "optimizer" else None
        if cat is None:
            for c in chain:
                if c.startswith("phase:"):
                    continue
                cat = category(c)
                if cat:
                    break
        if cat is None:
            cat = "other"
        if phase == "loss":
            phase = "forward"
        key = f"{phase}|{cat}"
        g = groups.setdefault(key, {"ms": 0.0, "ops": {}})
        self_ms = ev.self_cpu_time_total / 1000.0 / steps
        g["ms"] += self_ms
        g["ops"][ev.name] = g["ops"].get(ev.name, 0.0) + self_ms
    out = {"torch": torch.__version__, "model": a.model, "input": a.input, "batch": a.batch,
           "threads": torch.get_num_threads(), "profiled_steps": steps,
           "profiled_wall_ms_mean": round(sum(wall) / steps, 3), "groups": groups}
    with open(a.profile, "w") as f:
        json.dump(out, f, indent=1)


# --------------------------------------------------------------------------------
# report: the table over rounds
# --------------------------------------------------------------------------------
def load(path):
    try:
        with open(path) as f:
            text = f.read()
        start = text.find("{")
        if start < 0:
            return {"error": text.strip()[-200:] or "empty"}
        try:
            return json.loads(text[start:])   # one document (a profile)
        except ValueError:
            pass
        d = {}
        for line in text.splitlines():   # JSON lines (the run's, then rss's), merged
            line = line.strip()
            if line.startswith("{"):
                d.update(json.loads(line))
        return d or {"error": text.strip()[-200:] or "empty"}
    except (OSError, ValueError) as ex:
        return {"error": str(ex)}


def cmd_report(a):
    # file names: r<round>.<side>.<model>-<input>-<batch>.json, side = ours | torch<k>
    runs = {}
    versions = {}
    for path in sorted(glob.glob(os.path.join(a.out_dir, "r*.*.json"))):
        base = os.path.basename(path)[:-5]
        rnd, side, cfg = base.split(".", 2)
        d = load(path)
        if side.startswith("torch") and "torch" in d:
            versions[side] = d["torch"]
        runs.setdefault((cfg, side), []).append(d)
    loads = []
    lp = os.path.join(a.out_dir, "loads.tsv")
    if os.path.exists(lp):
        for line in open(lp):
            parts = line.split()
            if len(parts) >= 4:
                loads.append(float(parts[3]))
    sides = ["ours"] + sorted({s for (_, s) in runs if s != "ours"})

    def label(s):
        if s == "ours":
            return "scratchnet"
        return f"PyTorch {versions.get(s, '?')}"

    head = ["model (input, batch)"]
    for s in sides:
        head.append(label(s) + " ms")
    for s in sides[1:]:
        head.append(f"ratio {versions.get(s, '?')}")
    rows = [head]
    for cfg in a.configs:
        rows.append(compare_row(runs, sides, cfg, "ms_per_step")[1])
    n_rounds = max((len(v) for v in runs.values()), default=0)
    print(f"median ms per training step over {n_rounds} round(s) "
          f"[min-max of the rounds' medians]; each round's figure is the median of "
          f"its timed steps; ratio = PyTorch ms / scratchnet ms (>= 1.0: scratchnet "
          f"at least as fast)")
    if loads:
        print(f"1-min load average at the start of the runs: min {min(loads):.2f}, "
              f"median {statistics.median(loads):.2f}, max {max(loads):.2f}")
    print_table(rows)
    print()
    print_memory_table(runs, sides, label, a.configs)


def median_cell(results, field):
    """(median or None, 'median [min-max]' text) of one field over the rounds."""
    vals = [d[field] for d in results if field in d]
    errs = [d["error"] for d in results if "error" in d]
    if not vals:
        return None, ("ERROR: " + errs[0][:40] if errs else "-")
    m = statistics.median(vals)
    spread = f" [{min(vals):.1f}-{max(vals):.1f}]" if len(vals) > 1 and min(vals) != max(vals) else ""
    return m, f"{m:.1f}{spread}"


def ratio_cell(theirs, ours):
    return f"{theirs / ours:.2f}" if theirs is not None and ours else "-"


def compare_row(runs, sides, cfg, field):
    """(result key, [config, each side's median cell, each PyTorch / ours ratio])."""
    model, hw, bs = cfg.split(":")
    key = f"{model}-{hw}-{bs}"
    row = [f"{model} ({hw}, {bs})"]
    med = {}
    for s in sides:
        med[s], text = median_cell(runs.get((key, s), []), field)
        row.append(text)
    for s in sides[1:]:
        row.append(ratio_cell(med[s], med["ours"]))
    return key, row


def print_memory_table(runs, sides, label, configs):
    """Resident-set growth over the steps, each side measuring itself: RSS once
    model, optimizer and batch are built -> peak (VmHWM) over warm-up + timed
    steps. Beside it PyTorch's RSS at that starting point (python, libtorch,
    model) and our caching allocator's peak bytes in use over the timed steps."""
    head = ["model (input, batch)"]
    for s in sides:
        head.append(f"{label(s)} growth MiB")
    for s in sides[1:]:
        head.append("ratio")
    for s in sides[1:]:
        head.append(f"{label(s)} RSS at start MiB")
    head.append("ours allocator peak MiB")
    rows = [head]
    for cfg in configs:
        key, row = compare_row(runs, sides, cfg, "rss_growth_MiB")
        for s in sides[1:]:
            row.append(median_cell(runs.get((key, s), []), "rss_setup_MiB")[1])
        row.append(median_cell(runs.get((key, "ours"), []), "peak_mem_MiB")[1])
        rows.append(row)
    print("memory: resident-set growth during the steps, MiB = peak RSS over the warm-up and "
          "timed steps - RSS once model, optimizer and batch are built (each side reads its "
          "own /proc/self/status; the peak is reset at the start through clear_refs); "
          "ratio = PyTorch / scratchnet (>= 1.0: our growth at most PyTorch's); median over "
          "the rounds")
    print_table(rows)


def print_table(rows, markdown=True):
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        cells = [c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)]
        print("| " + " | ".join(cells) + " |")
        if k == 0:
            print("|" + "|".join("-" * (x + 2) for x in w) + "|")


# --------------------------------------------------------------------------------
# layers: the per-op-type table
# --------------------------------------------------------------------------------
def cmd_layers(a):
    ours = load(a.ours)
    tp = load(a.torch_profile)
    if "error" in ours or "error" in tp:
        sys.exit(f"bench_vs_torch_cpu layers: {ours.get('error') or tp.get('error')}")
    mine = {}
    for l in ours.get("forward_layers", []):
        c = category(l["name"]) or "other"
        mine[("forward", c)] = mine.get(("forward", c), 0.0) + l["ms"]
    for l in ours.get("backward_layers", []):
        c = category(l["name"]) or "other"
        mine[("backward", c)] = mine.get(("backward", c), 0.0) + l["ms"]
    prof = ours.get("profile", {})
    mine[("optimizer", "optimizer")] = prof.get("optimizer_ms", 0.0)
    theirs = {}
    for key, g in tp["groups"].items():
        phase, c = key.split("|")
        if phase not in ("forward", "backward", "optimizer"):
            phase, c = "backward", "other"     # outside the labelled phases
        theirs[(phase, c)] = theirs.get((phase, c), 0.0) + g["ms"]

    head = ["op type", "ours fwd", "torch fwd", "ours bwd", "torch bwd", "ours total",
            "torch total", "ratio"]
    rows = [head]
    tot = [0.0] * 6
    for c in CATEGORIES:
        vals = [mine.get(("forward", c), 0.0), theirs.get(("forward", c), 0.0),
                mine.get(("backward", c), 0.0), theirs.get(("backward", c), 0.0)]
        if c == "optimizer":
            vals[2] += mine.get(("optimizer", c), 0.0)
            vals[3] += theirs.get(("optimizer", c), 0.0)
        o, t = vals[0] + vals[2], vals[1] + vals[3]
        if o < 0.05 and t < 0.05:
            continue
        for i, v in enumerate(vals + [o, t]):
            tot[i] += v
        rows.append([c] + [f"{v:.1f}" for v in vals] + [f"{o:.1f}", f"{t:.1f}",
                     f"{t / o:.2f}" if o > 0.05 else "-"])
    rows.append(["sum"] + [f"{v:.1f}" for v in tot] + [f"{tot[5] / tot[4]:.2f}" if tot[4] else "-"])
    print(f"per-op-type time, ms per step: {ours['model']} (input {ours.get('input')}, batch "
          f"{ours.get('batch')}); ours: `scratchnet bench --mode step` profile (forward: each "
          f"layer run alone, median of 3; backward: per autograd node of one profiled step; "
          f"optimizer: the step's SGD); PyTorch {tp['torch']}: torch.profiler self CPU time, "
          f"mean of {tp['profiled_steps']} steps (optimizer row includes zero_grad; "
          f"AccumulateGrad and views under 'other'); ratio = torch / ours "
          f"(< 1: PyTorch faster on that op type)")
    print(f"step medians of these profiled runs: ours {ours.get('ms_per_step', 0):.1f} ms "
          f"(phases: forward {prof.get('forward_ms', 0):.1f}, backward "
          f"{prof.get('backward_ms', 0):.1f}, optimizer {prof.get('optimizer_ms', 0):.1f}); "
          f"PyTorch's profiled steps took {tp.get('profiled_wall_ms_mean', 0):.1f} ms each "
          f"(wall, profiler on)")
    print_table(rows)
    if a.top:
        print(f"\nPyTorch's {a.top} largest ops (self CPU ms per step, phase|type):")
        ops = []
        for key, g in tp["groups"].items():
            for name, ms in g["ops"].items():
                ops.append((ms, key, name))
        for ms, key, name in sorted(ops, reverse=True)[:a.top]:
            print(f"  {ms:8.2f}  {key:28s} {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("torch")
    t.add_argument("--model", required=True)
    t.add_argument("--input", type=int, required=True)
    t.add_argument("--batch", type=int, required=True)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--reference", required=True, help="folder of torch_models.py")
    t.add_argument("--profile", help="also write torch.profiler's per-op-type times here")
    r = sub.add_parser("report")
    r.add_argument("out_dir")
    r.add_argument("configs", nargs="+")
    la = sub.add_parser("layers")
    la.add_argument("ours")
    la.add_argument("torch_profile")
    la.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    {"torch": cmd_torch, "report": cmd_report, "layers": cmd_layers}[a.cmd](a)


if __name__ == "__main__":
    main()
