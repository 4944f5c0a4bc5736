"""Losses, forward + backward, reduction "mean":

    cross_entropy    pred (N, C) logits, int64 class targets t (N,)
                     loss = mean_i [ logsumexp(pred_i) - pred_i[t_i] ]
                     dpred_i = (softmax(pred_i) - onehot(t_i)) / N
    mse              pred, target (n,):  loss = mean (p - t)^2,  dpred = 2 (p - t) / n
    bce_with_logits  pred (n,) logits, target (n,) in [0, 1]
                     loss = mean [ max(p, 0) - p t + log(1 + e^-|p|) ]
                     dpred = (s(p) - t) / n,  s = sigmoid
Bytes moved per call (what GB/s counts), the least any implementation must move:
cross_entropy reads pred and writes dpred, 2*N*C*itemsize (the N targets left out);
mse and bce_with_logits read pred and target and write dpred, 3*n*itemsize.
fastnn: loss_forward then loss_backward (two calls, as a framework makes them);
torch: the functional loss and autograd.grad, eager and under torch.compile.
"""

import math

import numpy as np

from .timing import Case, Impl

MODES = ("forward+backward",)
CE_SHAPES = [(8192, 1000), (1024, 32000)]  # a classifier's logits; an LM's vocabulary
ELEMENTWISE_SHAPES = [(2 ** 24,)]
OPS = ("cross_entropy", "mse", "bce_with_logits")


def specs(quick):
    """--quick: cross_entropy at (8192, 1000) only; mse and bce_with_logits at 16M are
    in the full run."""
    ce = CE_SHAPES[:1] if quick else CE_SHAPES
    elementwise = () if quick else OPS[1:]
    return ([("cross_entropy", m, s) for s in ce for m in MODES]
            + [(op, m, s) for op in elementwise for s in ELEMENTWISE_SHAPES for m in MODES])


def bytes_moved(op, shape, itemsize):
    return (2 if op == "cross_entropy" else 3) * math.prod(shape) * itemsize


def numpy_forward_backward(op, pred, target):
    """(loss, dpred) as a plain numpy composition."""
    if op == "mse":
        d = pred - target
        return np.mean(d * d), d * (2.0 / d.size)
    if op == "bce_with_logits":
        loss = np.mean(np.maximum(pred, 0) - pred * target + np.log1p(np.exp(-np.abs(pred))))
        return loss, (1.0 / (1.0 + np.exp(-pred)) - target) / pred.size
    m = pred.max(axis=1, keepdims=True)
    e = np.exp(pred - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(target))
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - pred[rows, target])
    dpred = e / s
    dpred[rows, target] -= 1
    dpred /= len(target)
    return loss, dpred


def make_inputs(op, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    pred = (2.0 * rng.standard_normal(shape)).astype(dtype)
    if op == "cross_entropy":
        target = rng.integers(0, shape[1], shape[0], dtype=np.int64)
    elif op == "mse":
        target = rng.standard_normal(shape).astype(dtype)
    else:
        target = rng.random(shape).astype(dtype)
    return pred, target


def _fastnn_impls(fw, op, pred, target):
    fn = fw.fastnn

    def run():
        return fn.loss_forward(pred, target, op), fn.loss_backward(pred, target, op)
    return [Impl(name, run, ctx) for name, ctx in fw.fastnn_impls(cache_row=True)]


def _torch_impls(fw, op, pred, target):
    torch, F = fw.torch, fw.F
    loss_fn = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss,
               "bce_with_logits": F.binary_cross_entropy_with_logits}[op]
    pt = torch.from_numpy(pred).requires_grad_(True)
    tt = torch.from_numpy(target)
    impls = []
    for name, f in (("torch", loss_fn), ("torch.compile", fw.torch_compile(loss_fn))):
        if f is None:
            continue

        def run(f=f):
            loss = f(pt, tt)
            return loss, torch.autograd.grad(loss, pt)[0]
        impls.append(Impl(name, run))
    return impls


def make_case(spec, dtype, fw, seed=0):
    """The Case for one (op, mode, shape) spec, with its reference and impls."""
    op, mode, shape = spec
    pred, target = make_inputs(op, shape, dtype, seed)
    def reference():
        t64 = target if op == "cross_entropy" else target.astype(np.float64)
        loss, dpred = numpy_forward_backward(op, pred.astype(np.float64), t64)
        return np.asarray(loss), dpred
    impls = []
    if fw.fastnn is not None:
        impls += _fastnn_impls(fw, op, pred, target)
    if fw.torch is not None:
        impls += _torch_impls(fw, op, pred, target)
    impls.append(Impl("numpy", lambda: numpy_forward_backward(op, pred, target)))
    return Case(op=op, mode=mode, shape=shape, dtype=dtype, unit="GB/s",
                work=bytes_moved(op, shape, np.dtype(dtype).itemsize),
                ceiling="bandwidth", reference=reference, impls=impls)
