"""Per-call cost of fastnn.torch at tiny sizes, where the wrapper's own overhead is all
there is to measure: fastnn.torch's eager path (its C++ autograd nodes, and the Python
autograd.Functions that run without them), its torch.library custom ops (the
torch.compile path, forced in eager mode), stock torch, and the fastnn kernel alone (the
public numpy API, which validates its arguments).

    python examples/torch_overhead.py [--calls 1000] [--runs 5] [--threads 1]

Cases: x (8, 16), w (16, 16) for Linear + ReLU (fused in fastnn, two ops in torch); relu
on (8, 16); binary cross-entropy on (8, 1). Each number is the best of --runs runs of the
median of --calls calls, in microseconds; results are checked against torch first.
"""
import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as TF

import fastnn
import fastnn.torch.functional as F
from fastnn.bench.machine import LoadWatch
from fastnn.torch import _native, _ops


def per_call(fn, calls, runs):
    """Best over runs of the median seconds of one call of fn, in us."""
    for _ in range(200):
        fn()
    best = float("inf")
    for _ in range(runs):
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        best = min(best, statistics.median(times))
    return best * 1e6


def cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 16, generator=g, requires_grad=True)
    w = torch.randn(16, 16, generator=g, requires_grad=True)
    b = torch.randn(16, generator=g, requires_grad=True)
    dy = torch.randn(8, 16, generator=g)
    p = torch.rand(8, 1, generator=g).requires_grad_()
    t = (torch.rand(8, 1, generator=g) > 0.5).float()
    xn, wn, bn, pn, tn = (a.detach().numpy() for a in (x, w, b, p, t))
    lin = {"fastnn": lambda: F.linear(x, w, b, activation="relu"), "torch": lambda: TF.relu(TF.linear(x, w, b))}
    relu = {"fastnn": lambda: F.relu(x), "torch": lambda: TF.relu(x)}
    bce = {"fastnn": lambda: F.binary_cross_entropy(p, t), "torch": lambda: TF.binary_cross_entropy(p, t)}
    for ops in (lin, relu, bce):
        torch.testing.assert_close(ops["fastnn"](), ops["torch"](), rtol=1e-5, atol=1e-6)

    def fwd_bwd(fn, grad=None):
        def run():
            x.grad = w.grad = b.grad = p.grad = None
            fn().backward(grad)
        return run

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    return [
        ("linear+relu fwd, no grad", no_grad(lin["fastnn"]), no_grad(lin["torch"]),
         lambda: fastnn.dense_forward(xn, wn, bn, "relu")),
        ("linear+relu fwd, grad", lin["fastnn"], lin["torch"], None),
        ("linear+relu fwd+bwd", fwd_bwd(lin["fastnn"], dy), fwd_bwd(lin["torch"], dy), None),
        ("relu fwd, no grad", no_grad(relu["fastnn"]), no_grad(relu["torch"]),
         lambda: fastnn.activation_forward(xn, "relu")),
        ("relu fwd+bwd", fwd_bwd(relu["fastnn"], dy), fwd_bwd(relu["torch"], dy), None),
        ("bce fwd, no grad", no_grad(bce["fastnn"]), no_grad(bce["torch"]), lambda: fastnn.loss_forward(pn, tn, "bce")),
        ("bce fwd+bwd", fwd_bwd(bce["fastnn"]), fwd_bwd(bce["torch"]), None),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    watch = LoadWatch()  # timings on a busy machine say little: say so, as fastnn.bench does
    torch.set_num_threads(args.threads)
    print(f"us per call, best of {args.runs} runs of {args.calls} calls; torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s), numpy {np.__version__}")
    print(f"C++ autograd nodes: {_native.status()}")
    print(f"{'case':<26}{'eager C++':>10}{'eager Py':>10}{'custom op':>11}{'torch':>8}{'kernel alone':>14}")
    native = _ops._native
    for name, mine, theirs, kernel in cases():
        eager = per_call(mine, args.calls, args.runs)
        _ops._native = lambda t: None  # the Python autograd.Functions
        try:
            python = per_call(mine, args.calls, args.runs)
            _ops.FORCE_LIBRARY = True
            custom = per_call(mine, args.calls, args.runs)
        finally:
            _ops.FORCE_LIBRARY = False
            _ops._native = native
        ref = per_call(theirs, args.calls, args.runs)
        alone = f"{per_call(kernel, args.calls, args.runs):14.1f}" if kernel else f"{'':14}"
        print(f"{name:<26}{eager:10.1f}{python:10.1f}{custom:11.1f}{ref:8.1f}{alone}")
    print(*watch.lines(), sep="\n")


if __name__ == "__main__":
    main()
