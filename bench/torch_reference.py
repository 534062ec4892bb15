"""The `fast` preset's recipe transcribed to PyTorch: what these JPEG-decoded CIFAR-10 images allow, on a GPU.

The lent GPU machines have PyTorch but no TensorFlow (and TensorFlow's CUDA build, with its CUDA 12 libraries,
is over 1 GB, against the 64 MiB that may travel there per call), so the preset itself cannot run there. This
script is a measuring instrument, not a second implementation to maintain: it transcribes ml/models/fast.py and
the parts of ml/train.py that the preset uses, to learn how accuracy on this data grows with width, depth and
epochs far beyond what ten CPU minutes buy. It keeps the preset's parts: frozen 2x2 patch whitening
(relative eps), conv-pool-BN-act-conv-BN-act groups with partial-identity init, BN without scale (momentum
0.4 in Keras terms, shift x8), global max pool, logits /9, label smoothing 0.2, Nesterov SGD lr 0.75 /
momentum 0.85 / decoupled decay 0.0089 (Keras semantics), warm-up 23% then linear decay, lookahead (every 5,
decay 0.95**5 * progress**3, BN statistics included), alternating flip, 2-px reflect translation, TTA level 2
on probabilities. It trains on all 50,000 images (the preset holds out 2%) for a fixed number of epochs, the
schedule following steps instead of the wall clock. `convs` 3 adds a third conv to each group, with a
residual path around the second and third.

    python bench/torch_reference.py ../shared/datasets/cifar-10-batches-bin \\
        --runs "64-128-256/relu/9/0;64-256-256/gelu/10/0"

prints one JSON line per run. bench/pack_cifar.py shrinks the dataset losslessly (184 MB to 96 MB) for the
GPU machine's transfer limit. Figures measured on an H100 are in docs/benchmarks.md.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(folder: Path):
    def read(names):
        raw = np.concatenate([np.fromfile(folder / n, np.uint8).reshape(-1, 3073) for n in names])
        return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)
    xtr, ytr = read([f"data_batch_{i}.bin" for i in range(1, 6) if (folder / f"data_batch_{i}.bin").exists()])
    xte, yte = read(["test_batch.bin"])
    return xtr, ytr, xte, yte


def whitening(x: np.ndarray, eps: float = 5e-4, n: int = 5000):
    rng = np.random.default_rng(0)
    s = x[rng.choice(len(x), min(n, len(x)), replace=False)].astype(np.float32).transpose(0, 2, 3, 1) / 255.0
    p = np.lib.stride_tricks.sliding_window_view(s, (2, 2, 3), axis=(1, 2, 3)).reshape(-1, 12)
    mean = p.mean(0)
    cov = np.cov(p - mean, rowvar=False)
    val, vec = np.linalg.eigh(cov)
    f = vec / np.sqrt(val + eps * np.trace(cov) / 12)
    f = np.concatenate([f, -f], axis=1)  # (12, 24), rows in (h, w, c) order
    w = f.reshape(2, 2, 3, 24).transpose(3, 2, 0, 1)  # (out, in, kh, kw)
    return torch.tensor(w.copy(), dtype=torch.float32), torch.tensor(-(mean @ f), dtype=torch.float32)


class BN(nn.BatchNorm2d):
    def __init__(self, c, bias_scale=8.0):
        super().__init__(c, momentum=0.6, eps=1e-5, affine=False)  # torch momentum = 1 - Keras momentum
        self.beta = nn.Parameter(torch.zeros(c))
        self.bias_scale = bias_scale

    def forward(self, x):
        return super().forward(x) + (self.beta * self.bias_scale).view(1, -1, 1, 1).to(x.dtype)


def partial_identity(conv: nn.Conv2d):
    nn.init.xavier_uniform_(conv.weight)
    with torch.no_grad():
        o, i = conv.weight.shape[:2]
        n = min(o, i)
        conv.weight[:n] = 0
        conv.weight[torch.arange(n), torch.arange(n), 1, 1] = 1


class Net(nn.Module):
    def __init__(self, widths, act, convs=2):
        super().__init__()
        self.convs = convs
        self.act = {"relu": F.relu, "gelu": F.gelu}[act]
        self.whiten = nn.Conv2d(3, 24, 2)
        self.whiten.requires_grad_(False)
        blocks, cin = [], 24
        for w in widths:
            cs = [nn.Conv2d(cin, w, 3, padding=1, bias=False)]
            cs += [nn.Conv2d(w, w, 3, padding=1, bias=False) for _ in range(convs - 1)]
            mods = []
            for c in cs:
                partial_identity(c)
                mods += [c, BN(w)]
            blocks.append(nn.ModuleList(mods))
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(cin, 10, bias=False)

    def forward(self, x):
        x = self.act(self.whiten(x))
        for mods in self.blocks:
            x = self.act(mods[1](F.max_pool2d(mods[0](x), 2)))
            r = x
            for i in range(2, len(mods), 2):
                x = self.act(mods[i + 1](mods[i](x)))
            if self.convs > 2:  # deeper groups get a residual path around their extra convs
                x = x + r
        x = torch.amax(x, dim=(2, 3)) / 9
        return self.head(x)


def batches(n, bs, epoch, seed, dev):
    g = torch.Generator(device=dev).manual_seed(seed * 1000 + epoch)
    order = torch.randperm(n, device=dev, generator=g)
    return [order[i:i + bs] for i in range(0, n, bs)]


def augment(x, idx, epoch, first_flip, gen, translate=2, cutout=0):
    """Alternating flip, a random shift of up to `translate` px (reflected borders), a zeroed cutout square."""
    b = x[idx]
    flip = (first_flip[idx] ^ (epoch % 2)).bool()
    b = torch.where(flip.view(-1, 1, 1, 1), b.flip(3), b)
    t, n, side = translate, len(b), x.shape[-1]
    pad = F.pad(b, (t, t, t, t), mode="reflect")
    dx = torch.randint(0, 2 * t + 1, (n,), device=b.device, generator=gen)
    dy = torch.randint(0, 2 * t + 1, (n,), device=b.device, generator=gen)
    ar = torch.arange(side, device=b.device)
    rows = (dy.view(-1, 1) + ar).view(n, 1, side, 1).expand(n, 3, side, side + 2 * t)
    cols = (dx.view(-1, 1) + ar).view(n, 1, 1, side).expand(n, 3, side, side)
    b = torch.gather(torch.gather(pad, 2, rows), 3, cols)
    if cutout:
        cy = torch.randint(0, side - cutout + 1, (n, 1), device=b.device, generator=gen)
        cx = torch.randint(0, side - cutout + 1, (n, 1), device=b.device, generator=gen)
        inside_y = ((ar >= cy) & (ar < cy + cutout)).view(n, 1, side, 1)
        inside_x = ((ar >= cx) & (ar < cx + cutout)).view(n, 1, 1, side)
        b = b.masked_fill(inside_y & inside_x, 0.0)
    return b


@torch.no_grad()
def predict(model, x, tta):
    out = []
    for i in range(0, len(x), 2000):
        b = x[i:i + 2000]

        def mirrored(v):
            p = model(v).float().softmax(1)
            return (p + model(v.flip(3)).float().softmax(1)) / 2 if tta >= 1 else p
        p = mirrored(b)
        if tta >= 2:
            pad = F.pad(b, (1, 1, 1, 1), mode="reflect")
            p = (p + (mirrored(pad[:, :, :32, :32]) + mirrored(pad[:, :, 2:, 2:])) / 2) / 2
        out.append(p)
    return torch.cat(out)


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def run(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor,
        whiten: tuple[torch.Tensor, torch.Tensor], widths: tuple[int, ...], act: str, epochs: int, seed: int,
        convs: int = 2, bs: int = 512, dev: str = "cuda", translate: int = 2, cutout: int = 0) -> dict:
    """Trains one model for `epochs` on all of xtr and returns its test accuracy at TTA levels 0, 1 and 2."""
    torch.manual_seed(seed)
    model = Net(widths, act, convs).to(dev).to(memory_format=torch.channels_last)
    w, b = whiten
    model.whiten.weight.data.copy_(w)
    model.whiten.bias.data.copy_(b)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0, momentum=0.85, nesterov=True)
    floats = [t for t in list(model.parameters()) + list(model.buffers()) if t.dtype.is_floating_point]
    avg = [t.detach().clone() for t in floats]
    n = len(xtr)
    steps_per_epoch = -(-n // bs)
    total = epochs * steps_per_epoch
    first_flip = torch.randint(0, 2, (n,), device=dev, generator=torch.Generator(device=dev).manual_seed(seed))
    gen = torch.Generator(device=dev).manual_seed(seed + 3)
    step = 0
    sync(dev)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        for idx in batches(n, bs, epoch, seed, dev):
            p = step / total
            lr = 0.75 * max(0.0, min(p / 0.23, (1 - p) / 0.77))
            for g in opt.param_groups:
                g["lr"] = lr
            xb = augment(xtr, idx, epoch, first_flip, gen, translate, cutout)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(xb).float(), ytr[idx], label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # Keras' decoupled decay: w -= lr * wd * w after the gradient step
                torch._foreach_mul_(params, 1 - lr * 0.0089)
            step += 1
            if step % 5 == 0:
                d = 0.95 ** 5 * (step / total) ** 3
                with torch.no_grad():
                    torch._foreach_lerp_(avg, floats, 1 - d)
                    torch._foreach_copy_(floats, avg)
    with torch.no_grad():
        torch._foreach_copy_(floats, avg)
    sync(dev)
    train_s = time.perf_counter() - t0
    model.eval()
    res = {"widths": list(widths), "convs": convs, "act": act, "epochs": epochs, "seed": seed,
           "translate": translate, "cutout": cutout,
           "train_s": round(train_s, 1)}
    with torch.autocast(dev, dtype=torch.bfloat16):
        for tta in (0, 1, 2):
            acc = (predict(model, xte.contiguous(memory_format=torch.channels_last), tta).argmax(1) == yte)
            res[f"acc_tta{tta}"] = round(acc.float().mean().item(), 4)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a cifar-10-batches-bin folder")
    ap.add_argument("--runs", required=True,
                    help="semicolon list of widths/act/epochs/seed[/convs per group], e.g. 64-128-256/relu/9/0")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--translate", type=int, default=2, help="largest random shift, px (the preset's 2)")
    ap.add_argument("--cutout", type=int, default=0, help="side of a random zeroed square, px (the preset: none)")
    ap.add_argument("--subset", type=int, default=0, help="train on this many images, test on a quarter (a smoke test)")
    a = ap.parse_args()
    xtr_np, ytr_np, xte_np, yte_np = load(a.data)
    dev = a.device
    if a.subset:
        xtr_np, ytr_np = xtr_np[:a.subset], ytr_np[:a.subset]
        keep = np.random.default_rng(0).permutation(len(xte_np))[:a.subset // 4]
        xte_np, yte_np = xte_np[keep], yte_np[keep]
    whiten = whitening(xtr_np)
    xtr = torch.tensor(xtr_np, device=dev).float() / 255
    xte = torch.tensor(xte_np, device=dev).float() / 255
    ytr, yte = torch.tensor(ytr_np, device=dev), torch.tensor(yte_np, device=dev)
    for spec in a.runs.split(";"):
        widths, act, epochs, seed, *convs = spec.split("/")
        r = run(xtr, ytr, xte, yte, whiten, tuple(int(v) for v in widths.split("-")), act, int(epochs), int(seed),
                convs=int(convs[0]) if convs else 2, dev=dev, translate=a.translate, cutout=a.cutout)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
