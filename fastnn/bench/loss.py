"""cross_entropy benchmark: logits pred (N, C), int64 class targets (N,), mean.

    loss = mean_i [ logsumexp(pred_i) - pred_i[t_i] ]
    dloss/dpred_i = (softmax(pred_i) - onehot(t_i)) / N
Bytes moved per call (what GB/s counts): forward reads pred, N*C*itemsize;
forward+backward also writes dpred, 2*N*C*itemsize. The targets (N int64s) are
left out, as are second reads of pred that an implementation chooses to make.
"""

import numpy as np

from .timing import Case, Impl

OP = "cross_entropy"
MODES = ("forward", "forward+backward")
SHAPES = [(8192, 1000)]
QUICK_SHAPES = [(1024, 1000)]


def specs(quick):
    """[(op, mode, shape)] this family runs."""
    return [(OP, mode, shape) for shape in (QUICK_SHAPES if quick else SHAPES)
            for mode in MODES]


def bytes_moved(mode, shape, itemsize):
    n, c = shape
    return (1 if mode == "forward" else 2) * n * c * itemsize


def _softmax_parts(pred):
    """(exp(pred - max), row sums, row max): the pieces of a stable logsumexp."""
    m = pred.max(axis=1, keepdims=True)
    e = np.exp(pred - m)
    return e, e.sum(axis=1, keepdims=True), m


def numpy_forward(pred, target):
    e, s, m = _softmax_parts(pred)
    lse = np.log(s[:, 0]) + m[:, 0]
    return np.mean(lse - pred[np.arange(len(target)), target])


def numpy_forward_backward(pred, target):
    e, s, m = _softmax_parts(pred)
    rows = np.arange(len(target))
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - pred[rows, target])
    dpred = e / s
    dpred[rows, target] -= 1
    dpred /= len(target)
    return loss, dpred


def _fastnn_impls(fw, mode, pred, target):
    fn = fw.fastnn
    if mode == "forward":
        def run():
            return fn.loss_forward(pred, target, OP)
    else:
        def run():
            loss = fn.loss_forward(pred, target, OP)
            return loss, fn.loss_backward(pred, target, OP)
    return [Impl(name, run, ctx) for name, ctx in fw.fastnn_impls()]


def _torch_impl(fw, mode, pred, target):
    torch, F = fw.torch, fw.F
    tt = torch.from_numpy(target)
    if mode == "forward":
        pt = torch.from_numpy(pred)
        return Impl("torch", lambda: F.cross_entropy(pt, tt))
    pt = torch.from_numpy(pred).requires_grad_(True)

    def run():
        loss = F.cross_entropy(pt, tt)
        return loss, torch.autograd.grad(loss, pt)[0]
    return Impl("torch", run)


def make_case(spec, dtype, fw, seed=0):
    """The Case for one (op, mode, shape) spec, with its reference and impls."""
    op, mode, shape = spec
    rng = np.random.default_rng(seed)
    pred = (2.0 * rng.standard_normal(shape)).astype(dtype)
    target = rng.integers(0, shape[1], shape[0], dtype=np.int64)
    pred64 = pred.astype(np.float64)
    if mode == "forward":
        reference = (np.asarray(numpy_forward(pred64, target)),)
        numpy_run = lambda: numpy_forward(pred, target)  # noqa: E731
    else:
        loss, dpred = numpy_forward_backward(pred64, target)
        reference = (np.asarray(loss), dpred)
        numpy_run = lambda: numpy_forward_backward(pred, target)  # noqa: E731
    impls = []
    if fw.fastnn is not None:
        impls += _fastnn_impls(fw, mode, pred, target)
    if fw.torch is not None:
        impls.append(_torch_impl(fw, mode, pred, target))
    impls.append(Impl("numpy", numpy_run))
    return Case(op=op, mode=mode, shape=shape, dtype=dtype, unit="GB/s",
                work=bytes_moved(mode, shape, np.dtype(dtype).itemsize),
                ceiling="bandwidth", reference=reference, impls=impls)
