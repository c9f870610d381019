"""PyTorch definitions of every scratchnet architecture, with exactly the
state_dict keys scratchnet's checkpoints use, so its weights load here:

    import scratchnet_models as sm
    net = sm.load("runs/lenet-20261130-101500/model.safetensors")  # nn.Module, eval mode

(`load` reads the model name and width divisor that scratchnet records in
the file, builds the module and loads the weights with strict=True.) Or by
hand, with the `safetensors` package:
    net = sm.build("lenet"); net.load_state_dict(safetensors.torch.load_file(path))

The other way, `sm.save(net, "lenet", path)` writes a state_dict that
`scratchnet eval/predict --weights path` reads. Weights of d2l's
nn.Sequential models ("0.weight", "net.3.weight", ...) can be saved with
`sm.save_state_dict(net.state_dict(), path)`: scratchnet maps those keys onto
its own by position when the architecture is the same.

Where the architectures come from: the course notebook, as scratchnet trains
them (these definitions are those of the project's reference,
../shared/reference/torch_models.py, made self-contained here):
  * LeNet: as d2l's (sigmoid, average pooling, 28x28); keys "net.0.weight".
  * AlexNet: the notebook's, which differs from d2l's: conv1 has no padding,
    conv5 has 384 output channels (d2l: 256), so the flattened feature is
    384*5*5 = 9600 (d2l: 6400) and the FC layers are 9600-4096-4096-10; and
    no dropout (d2l has two). Named children: conv1 ... conv5, linear1..3.
  * VGG-11/13/16/19: d2l's blocks and classifier (with dropout 0.5), named
    vgg_block<i>.conv<j> and last.<k>; `width_divisor` divides every
    convolution's channels (the course's small VGG uses 4).
  * ResNet-18/34: d2l's (7x7 stem, BN, residual blocks with an optional 1x1
    conv, global average pooling); one nn.Sequential, keys "0.0.weight",
    "1.0.conv1.weight", ... as d2l's.
Input: one channel (Fashion-MNIST), 10 classes. Sizes: lenet 28, alexnet
224, vgg 224, resnet any >= 32 (the course trains it at 96).

Requires only PyTorch (and numpy, which PyTorch uses).
"""
import json
import struct

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["LeNet", "AlexNet", "VGG", "ResNet", "build", "NAMES", "load", "save",
           "save_state_dict", "load_state_dict"]


class LeNet(nn.Module):
    """LeNet-5 as in the course: sigmoid activations, average pooling, 28x28 input."""

    def __init__(self, num_outputs=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, num_outputs))

    def forward(self, x):
        return self.net(x)


class AlexNet(nn.Module):
    """AlexNet as the course notebook writes it: conv5 has 384 channels, so the
    flattened feature is 384*5*5 = 9600 at 224x224; no dropout."""

    def __init__(self, num_outputs=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 96, 11, stride=4)
        self.rl1 = nn.ReLU()
        self.max1 = nn.MaxPool2d(3, stride=2)
        self.conv2 = nn.Conv2d(96, 256, 5, stride=1, padding=2)
        self.rl2 = nn.ReLU()
        self.max2 = nn.MaxPool2d(3, stride=2)
        self.conv3 = nn.Conv2d(256, 384, 3, 1, padding=1)
        self.rl3 = nn.ReLU()
        self.conv4 = nn.Conv2d(384, 384, 3, 1, padding=1)
        self.rl4 = nn.ReLU()
        self.conv5 = nn.Conv2d(384, 384, 3, 1, padding=1)
        self.rl5 = nn.ReLU()
        self.max3 = nn.MaxPool2d(3, stride=2)
        self.fl = nn.Flatten()
        self.linear1 = nn.Linear(9600, 4096)
        self.rl6 = nn.ReLU()
        self.linear2 = nn.Linear(4096, 4096)
        self.rl7 = nn.ReLU()
        self.linear3 = nn.Linear(4096, num_outputs)

    def forward(self, x):
        out = self.max1(self.rl1(self.conv1(x)))
        out = self.max2(self.rl2(self.conv2(out)))
        out = self.rl3(self.conv3(out))
        out = self.rl4(self.conv4(out))
        out = self.max3(self.rl5(self.conv5(out)))
        out = self.fl(out)
        out = self.rl6(self.linear1(out))
        out = self.rl7(self.linear2(out))
        return self.linear3(out)


class VGGBlock(nn.Module):
    def __init__(self, num_convs, input_channels, output_channels):
        super().__init__()
        self.num_convs = num_convs
        for i in range(num_convs):
            self.add_module(f"conv{i}", nn.Conv2d(input_channels, output_channels,
                                                  kernel_size=3, padding=1))
            input_channels = output_channels
            self.add_module(f"relu{i}", nn.ReLU())
        self.max_pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        for i in range(self.num_convs):
            x = self._modules[f"relu{i}"](self._modules[f"conv{i}"](x))
        return self.max_pool(x)


VGG_ARCHS = {
    "vgg11": ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),
    "vgg13": ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),
    "vgg16": ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    "vgg19": ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}


class VGG(nn.Module):
    """VGG as in the notebook; `width_divisor` divides every conv channel count."""

    def __init__(self, conv_arch=VGG_ARCHS["vgg11"], num_outputs=10, width_divisor=1):
        super().__init__()
        conv_arch = tuple((n, c // width_divisor) for n, c in conv_arch)
        self.conv_arch = conv_arch
        in_channels = 1
        for i, (num_convs, out_channels) in enumerate(conv_arch):
            self.add_module(f"vgg_block{i}", VGGBlock(num_convs, in_channels, out_channels))
            in_channels = out_channels
        self.last = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, num_outputs))

    def forward(self, x):
        for i in range(len(self.conv_arch)):
            x = self._modules[f"vgg_block{i}"](x)
        return self.last(x)


class Residual(nn.Module):
    """Two 3x3 convs with batch norm; a 1x1 conv (stride s) on the skip path
    when the shape changes."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1,
                               stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = (nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides)
                      if use_1x1conv else None)
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        return F.relu(y + x)


def _macro_block(input_channels, num_channels, num_residuals, first_block=False):
    blk = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blk.append(Residual(num_channels, num_channels))
    return blk


def ResNet(blocks=(2, 2, 2, 2), num_outputs=10):
    """ResNet-18 for blocks=(2,2,2,2), ResNet-34 for (3,4,6,3)."""
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(*_macro_block(64, 64, blocks[0], first_block=True))
    b3 = nn.Sequential(*_macro_block(64, 128, blocks[1]))
    b4 = nn.Sequential(*_macro_block(128, 256, blocks[2]))
    b5 = nn.Sequential(*_macro_block(256, 512, blocks[3]))
    return nn.Sequential(b1, b2, b3, b4, b5, nn.AdaptiveAvgPool2d((1, 1)),
                         nn.Flatten(), nn.Linear(512, num_outputs))


NAMES = ("lenet", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34")


def build(name, width_divisor=1):
    """The architecture `name` (one of NAMES), freshly initialised by PyTorch."""
    if width_divisor != 1 and not name.startswith("vgg"):
        raise ValueError(f"width_divisor applies to the VGG models only, not to {name}")
    if name == "lenet":
        return LeNet()
    if name == "alexnet":
        return AlexNet()
    if name in VGG_ARCHS:
        return VGG(VGG_ARCHS[name], width_divisor=width_divisor)
    if name == "resnet18":
        return ResNet((2, 2, 2, 2))
    if name == "resnet34":
        return ResNet((3, 4, 6, 3))
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(NAMES)}")


# --- safetensors, read and written with json + struct (no extra package) ------------------

_DTYPES = {"F32": torch.float32, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8,
           "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}
_CODES = {v: k for k, v in _DTYPES.items()}


def load_state_dict(path):
    """(state_dict, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    data = memoryview(raw)[8 + n:]
    state = {}
    for name, e in header.items():
        b, stop = e["data_offsets"]
        dtype = _DTYPES[e["dtype"]]
        t = torch.frombuffer(bytearray(data[b:stop]), dtype=dtype) if stop > b else \
            torch.empty(0, dtype=dtype)
        state[name] = t.reshape(e["shape"])
    return state, metadata


def save_state_dict(state_dict, path, metadata=None):
    """Writes a state_dict as safetensors (little-endian, 8-aligned header)."""
    header, blobs, offset = {"__metadata__": dict(metadata or {"format": "pt"})}, [], 0
    for name, t in state_dict.items():
        t = t.detach().contiguous().cpu()
        blob = t.numpy().tobytes() if t.dtype != torch.bfloat16 else \
            t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load(path, name=None, width_divisor=None):
    """A scratchnet model.safetensors as an nn.Module in eval mode. The model
    name and width divisor come from the file's metadata unless given."""
    state, meta = load_state_dict(path)
    name = name or meta.get("model")
    if not name:
        raise ValueError(f"{path} does not say which model it holds; pass name=...")
    wd = width_divisor or int(meta.get("width_divisor", 1))
    net = build(name, wd)
    net.load_state_dict(state, strict=True)
    return net.eval()


def save(net, name, path, width_divisor=1, image_size=None):
    """Writes `net`'s weights for `scratchnet --model name --weights path`."""
    meta = {"format": "pt", "model": name, "width_divisor": str(width_divisor)}
    if image_size:
        meta["image_size"] = str(image_size)
    save_state_dict(net.state_dict(), path, meta)


if __name__ == "__main__":
    sizes = {"lenet": 28, "alexnet": 224, "resnet18": 96, "resnet34": 96}
    for n in NAMES:
        wd = 4 if n.startswith("vgg") else 1
        net = build(n, wd)
        params = sum(p.numel() for p in net.parameters())
        y = net(torch.rand(2, 1, sizes.get(n, 224), sizes.get(n, 224)))
        print(f"{n:9s} width/{wd}  params {params:,}  output {tuple(y.shape)}")
