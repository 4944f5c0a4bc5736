"""The MLP train step of issue 18 under torch.autocast bf16: fastnn.torch against stock torch.

Model 784-1024-1024-10 (Linear + ReLU, Linear + ReLU, Linear), cross-entropy loss, SGD,
batch 256, float32 parameters. Four setups, the same initial weights and data:

- torch autocast:  nn.Linear / nn.ReLU / nn.CrossEntropyLoss under torch.autocast(bf16)
- fastnn autocast: fastnn.torch.Linear(activation="relu") / CrossEntropyLoss under the
  same autocast (the products run on fastnn's bf16 kernels)
- torch float32, fastnn float32: no autocast

Each number is the median seconds of one step (zero_grad, forward, backward, SGD step)
over alternating blocks, so every setup sees the same machine load; the losses of the
first step are checked against each other first.

    python examples/torch_autocast_mlp.py [--rounds 5] [--block 5] [--dtype bfloat16]
"""
import argparse
import statistics
import time

import torch
from torch import nn

import fastnn.torch as fnn
from fastnn.bench.machine import LoadWatch, cpu_model, isa_level

SIZES = (784, 1024, 1024, 10)


def model(mod):
    torch.manual_seed(0)
    if mod is fnn:
        return nn.Sequential(fnn.Linear(784, 1024, activation="relu"), fnn.Linear(1024, 1024, activation="relu"),
                             fnn.Linear(1024, 10))
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


def stepper(mod, dtype, batch):
    net = model(mod)
    loss_fn = mod.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(batch, 784, generator=g), torch.randint(0, 10, (batch,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = loss_fn(net(x), t)
        loss.backward()
        opt.step()
        return loss
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    args = ap.parse_args()
    dt = getattr(torch, args.dtype)
    setups = {f"torch autocast {args.dtype}": stepper(nn, dt, args.batch),
              f"fastnn autocast {args.dtype}": stepper(fnn, dt, args.batch),
              "torch float32": stepper(nn, None, args.batch),
              "fastnn float32": stepper(fnn, None, args.batch)}
    first = {name: float(s().detach()) for name, s in setups.items()}
    print("first-step losses:", ", ".join(f"{k} {v:.5f}" for k, v in first.items()))
    watch = LoadWatch()
    times = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, s in setups.items():
            t_end = time.perf_counter() + 0.3
            while time.perf_counter() < t_end:  # warm: the other library's threads settle
                s()
            for _ in range(args.block):
                t0 = time.perf_counter()
                s()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {cpu_model()}, ISA level {isa_level()}")
    for k, v in med.items():
        print(f"  {k:<26}{v * 1e3:9.2f} ms/step")
    ta, fa = med[f"torch autocast {args.dtype}"], med[f"fastnn autocast {args.dtype}"]
    print(f"  fastnn autocast vs torch autocast: {ta / fa:.2f}x; vs fastnn float32: {med['fastnn float32'] / fa:.2f}x")
    print(*watch.lines(), sep="\n")


if __name__ == "__main__":
    main()
