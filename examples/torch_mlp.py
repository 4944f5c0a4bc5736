"""The small MLP users start from, trained on stock torch and on fastnn.torch.

Three twins of one model, with the same initial weights and the same data: stock torch;
fastnn with only the layers swapped (fastnn.torch.Linear, relu, sigmoid, BCELoss); and
fastnn with each activation fused into its Linear. Each trains for --steps Adam steps on
a deterministic synthetic binary dataset (20 features); the script prints the last loss
of each curve, the largest difference between the curves, and the median time per step.

    python examples/torch_mlp.py [--steps 100] [--batch 64] [--layer-bench]

--layer-bench also times Linear(1024, 1024) + ReLU forward + backward on a (256, 1024)
batch: fastnn's fused layer against nn.Linear + nn.ReLU.
"""
import argparse
import statistics
import time

import torch
from torch import nn, optim

import fastnn
import fastnn.torch as fnn
import fastnn.torch.functional as FF
from fastnn.bench.machine import LoadWatch


class Net(nn.Module):
    """The stock torch model."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 10)
        self.fc2 = nn.Linear(10, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))


class FastNet(nn.Module):
    """Net with only the layers swapped for fastnn's."""

    def __init__(self):
        super().__init__()
        self.fc1 = fnn.Linear(20, 10)
        self.fc2 = fnn.Linear(10, 1)

    def forward(self, x):
        return FF.sigmoid(self.fc2(FF.relu(self.fc1(x))))


class FusedNet(nn.Module):
    """Net with each activation fused into its Linear (same parameters and state_dict)."""

    def __init__(self):
        super().__init__()
        self.fc1 = fnn.Linear(20, 10, activation="relu")
        self.fc2 = fnn.Linear(10, 1, activation="sigmoid")

    def forward(self, x):
        return self.fc2(self.fc1(x))


def dataset(n=1024, features=20, seed=0):
    """x ~ N(0, 1); y = 1 where a fixed random linear score plus noise is positive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    score = x @ torch.randn(features, generator=g) + 0.5 * torch.randn(n, generator=g)
    return x, (score > 0).float().unsqueeze(1)


def train(net, criterion, x, y, steps, batch):
    """Losses of each step and the seconds each step took (forward, backward, Adam)."""
    optimizer = optim.Adam(net.parameters())
    losses, times = [], []
    for step in range(steps):
        rows = slice(step * batch % len(x), step * batch % len(x) + batch)
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = criterion(net(x[rows]), y[rows])
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    return losses, times


def compare_training(steps, batch):
    x, y = dataset()
    torch.manual_seed(0)
    stock = Net()
    runs = {"torch": (stock, nn.BCELoss())}
    for name, cls in (("fastnn", FastNet), ("fastnn fused", FusedNet)):
        net = cls()
        net.load_state_dict(stock.state_dict())  # the same initial weights
        runs[name] = (net, fnn.BCELoss())
    results = {name: train(net, crit, x, y, steps, batch) for name, (net, crit) in runs.items()}
    ref = results["torch"][0]
    print(f"{steps} Adam steps, batch {batch}, float32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'model':<14}{'first loss':>12}{'last loss':>14}{'max |diff| vs torch':>22}{'time/step':>12}")
    for name, (losses, times) in results.items():
        diff = max(abs(a - b) for a, b in zip(losses, ref))
        print(f"{name:<14}{losses[0]:>12.7f}{losses[-1]:>14.9f}{diff:>22.2e}"
              f"{statistics.median(times) * 1e6:>10.1f}us")
    return results


def layer_bench(rounds=6, block=8, batch=256, features=1024):
    """Median seconds of forward + backward of Linear + ReLU, fastnn fused vs torch.

    Alternating blocks of `block` timed iterations, `rounds` times, so both see the same
    machine load. Each block starts with 0.3 s of untimed iterations: torch's OpenMP
    threads and the BLAS threads under fastnn busy-wait for a while after their last work
    (OpenBLAS for ~0.1 s), slowing the other library right after a switch. Gradients are
    set to None between steps, as zero_grad() does."""
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(features, features), nn.ReLU())
    mine = fnn.Linear(features, features, activation="relu")
    mine.load_state_dict(ref[0].state_dict())
    x = torch.randn(batch, features, requires_grad=True)
    dy = torch.randn(batch, features)
    assert torch.allclose(mine(x), ref(x), rtol=1e-4, atol=1e-4), "fastnn and torch disagree"
    layers = {"torch": ref, "fastnn": mine}
    times = {name: [] for name in layers}
    def step(layer):
        x.grad = None
        layer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        layer(x).backward(dy)
        return time.perf_counter() - t0

    for _ in range(rounds):
        for name, layer in layers.items():
            warm_until = time.perf_counter() + 0.3
            while time.perf_counter() < warm_until:
                step(layer)
            times[name] += [step(layer) for _ in range(block)]
    flops = 3 * 2 * batch * features * features
    print(f"Linear({features}, {features}) + ReLU, forward + backward, batch {batch}, float32, "
          f"{torch.get_num_threads()} torch threads, {fastnn.num_threads()} fastnn threads (median of "
          f"{rounds * block}):")
    out = {name: statistics.median(t) for name, t in times.items()}
    for name, t in out.items():
        print(f"  {name:<7}{t * 1e3:8.2f} ms  {flops / t / 1e9:6.1f} GFLOP/s")
    print(f"  fastnn vs torch: {out['torch'] / out['fastnn']:.2f}x")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--layer-bench", action="store_true")
    args = ap.parse_args()
    watch = LoadWatch()  # timings on a busy machine say little: say so, as fastnn.bench does
    compare_training(args.steps, args.batch)
    if args.layer_bench:
        layer_bench()
    print("both libraries ran in this one process; `python -m fastnn.bench` times each alone")
    print(*watch.lines(), sep="\n")


if __name__ == "__main__":
    main()
