#!/usr/bin/env python3
"""PyTorch <-> scratchnet checkpoint interop (safetensors).

Usage: /usr/bin/python3 tests/torch_interop.py BUILD_DIR/scratchnet_tests

PyTorch builds a Linear(2, 3) + BatchNorm1d(3) module (the C++ test mirrors
its state_dict keys), trains its BatchNorm statistics for one step and saves
the state_dict as safetensors. The Catch test "[torch-interop]", given
SCRATCHNET_INTEROP_DIR, loads it strictly into the C++ module, doubles every
float, adds one to num_batches_tracked and saves it back; PyTorch then loads
that file with load_state_dict(strict=True) and checks every value.

The safetensors bytes are written and read here with struct + json (the
`safetensors` package is not a dependency), strictly as the format's
reference implementation checks them: 8-aligned header, tensors packed
back to back covering the whole data section.

Exit codes: 0 pass, 1 fail, 77 skipped (no PyTorch in this Python), for
ctest's SKIP_RETURN_CODE.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from torch import nn
except ImportError as e:  # not a pass: ctest reports it as skipped
    print(f"SKIPPED: PyTorch is not available to {sys.executable} ({e}); "
          "run this script with /usr/bin/python3 or install torch")
    sys.exit(77)

CODES = {torch.float32: "F32", torch.int32: "I32", torch.uint8: "U8", torch.int64: "I64"}
NUMPY = {"F32": np.float32, "I32": np.int32, "U8": np.uint8, "I64": np.int64}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.bn = nn.BatchNorm1d(3)


def save(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().cpu().numpy().astype(NUMPY[CODES[t.dtype]]).tobytes()
        header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, f"header length {n} is not 8-aligned"
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors, end = {}, 0
    for name, e in header.items():  # json keeps the file's order
        b, stop = e["data_offsets"]
        assert b == end, f"{name}: data not packed in header order ({b} != {end})"
        arr = np.frombuffer(data[b:stop], dtype=NUMPY[e["dtype"]]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
        end = stop
    assert end == len(data), f"data section has {len(data) - end} bytes no tensor covers"
    return tensors, metadata


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 1
    binary = sys.argv[1]
    torch.manual_seed(0)
    model = Tiny()
    model.train()
    model.bn(torch.randn(8, 3) * 3 + 1)  # non-trivial running stats, num_batches_tracked = 1
    with tempfile.TemporaryDirectory() as d:
        state = model.state_dict()
        save(os.path.join(d, "torch.safetensors"), state, {"written_by": "torch"})
        run = subprocess.run([binary, "[torch-interop]"], env={**os.environ, "SCRATCHNET_INTEROP_DIR": d},
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stdout, run.stderr)
            print(f"FAIL: {binary} [torch-interop] exited {run.returncode}")
            return 1
        tensors, metadata = load(os.path.join(d, "scratchnet.safetensors"))
        assert metadata.get("written_by") == "scratchnet", metadata
        assert list(tensors) == list(state), f"keys/order differ: {list(tensors)} vs {list(state)}"
        back = Tiny()
        back.load_state_dict(tensors, strict=True)
        for name, want in state.items():
            got = back.state_dict()[name]
            assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
            if want.dtype == torch.float32:
                assert torch.equal(got, want * 2), f"{name}: {got} != 2 * {want}"
            else:
                assert torch.equal(got, want + 1), f"{name}: {got} != {want} + 1"
    print(f"PASS: {len(state)} tensors went torch -> scratchnet -> torch intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
