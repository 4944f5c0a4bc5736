"""Fused Dense + cross-entropy benchmark: loss = cross_entropy(x @ w.T + b, t), mean, and
its three gradients, fastnn.dense_cross_entropy vs torch's F.linear + F.cross_entropy.

Shapes (N, H, C): x (N, H), w (C, H) ("oi"), b (C,), t (N,) int64.
FLOPs of forward+backward: 6*N*H*C (logits, dx, dW products). Time and peak memory at
LM-head sizes are in bench/dense_ce_memory.py (separate processes, RSS).
"""

import numpy as np

from .timing import Case, Impl

OP = "dense_cross_entropy"
MODES = ("forward+backward",)
# An LM head's vocabulary at a size the full run can afford (~0.6 s a call here);
# bench/dense_ce_memory.py times the larger ones, each in its own process.
SHAPES = [(1024, 512, 32000)]
QUICK_SHAPES = [(512, 256, 8000)]


def specs(quick):
    return [(OP, mode, shape) for shape in (QUICK_SHAPES if quick else SHAPES) for mode in MODES]


def mean_cross_entropy(z, t):
    """numpy: (mean cross-entropy of logits z (n, c) with class indices t, d loss / d z)."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    s = p.sum(axis=1, keepdims=True)
    rows = np.arange(len(t))
    loss = np.mean(np.log(s[:, 0]) - z[rows, t])
    g = p / s
    g[rows, t] -= 1
    g /= len(t)
    return loss, g


def reference(x, w, b, t):
    """float64 numpy: (loss, dx, dw, db) of the mean cross-entropy of x @ w.T + b."""
    loss, g = mean_cross_entropy(x @ w.T + b, t)
    return loss, g @ w, g.T @ x, g.sum(axis=0)


def make_case(spec, dtype, fw, seed=0):
    op, mode, shape = spec
    n, h, c = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h)).astype(dtype)
    w = (rng.standard_normal((c, h)) / np.sqrt(h)).astype(dtype)
    b = (0.1 * rng.standard_normal(c)).astype(dtype)
    t = rng.integers(0, c, n, dtype=np.int64)
    impls = []
    if fw.fastnn is not None:
        def run():
            loss, grads = fw.fastnn.dense_cross_entropy(x, w, b, t)
            return (loss, *grads)
        impls += [Impl(name, run, ctx) for name, ctx in fw.fastnn_impls()]
    if fw.torch is not None:
        torch, F = fw.torch, fw.F
        xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
        tt = torch.from_numpy(t)

        def run_torch():
            loss = F.cross_entropy(F.linear(xt, wt, bt), tt)
            return (loss, *torch.autograd.grad(loss, (xt, wt, bt)))
        impls.append(Impl("torch", run_torch))
    return Case(op=op, mode=mode, shape=shape, dtype=dtype, unit="GFLOP/s", work=6 * n * h * c,
                ceiling="gemm", reference=lambda: tuple(np.asarray(r) for r in reference(
                    *(a.astype(np.float64) for a in (x, w, b)), t)), impls=impls)
