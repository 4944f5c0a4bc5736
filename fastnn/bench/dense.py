"""Dense + relu benchmark: y = relu(x @ w.T + b), and its backward.

Shapes: x is (B, I), w is (O, I) (weight_layout "oi", torch's nn.Linear),
b is (O,), y and dy are (B, O).
FLOPs: forward 2*B*I*O (the matrix product; bias and relu are O(B*O));
forward+backward 6*B*I*O (dx = dz @ w and dw = dz.T @ x add 2*B*I*O each).
"""

import numpy as np

from .timing import Case, Impl

OP = "dense_relu"
MODES = ("forward", "forward+backward")
# Issue 6's targets: the seed-size layer (10,20,10) through the kernel API vs the
# numpy composition (call overhead: validation and dispatch), a small layer
# (64,256,256) vs torch, and four layers where the matrix products dominate.
SHAPES = [(10, 20, 10), (64, 256, 256), (256, 1024, 1024), (1024, 1024, 1024),
          (4096, 1024, 1024), (2048, 4096, 4096)]
QUICK_SHAPES = SHAPES[:3]


def specs(quick):
    """[(op, mode, shape)] this family runs; --quick: the forward alone only at 256x1024x1024
    (the small ones' forward says little that forward+backward does not)."""
    if quick:
        return [(OP, "forward+backward", s) for s in QUICK_SHAPES] + [(OP, "forward", QUICK_SHAPES[-1])]
    return [(OP, mode, shape) for shape in SHAPES for mode in MODES]


def flops(mode, shape):
    b, i, o = shape
    return (2 if mode == "forward" else 6) * b * i * o


def make_inputs(shape, dtype, seed):
    """x, w, b, dy with values on a 1/16 grid, so every product and sum is exact.

    Entries are k/4 (|k| <= 2) and the bias is offset by 1/32, so z = x @ w.T + b
    is never 0: every implementation agrees on which side of relu's kink each
    element is, and the float32 results equal the float64 reference exactly
    (|z| <= I/4 + 1 stays far below 2^24 grid steps). With random normal data,
    an element with |z| ~ 1e-7 flips between implementations and moves a whole
    dw entry. Matrix-product speed does not depend on the values.
    """
    bsz, fin, fout = shape
    rng = np.random.default_rng(seed)
    x = (rng.integers(-2, 3, (bsz, fin)) / 4).astype(dtype)
    w = (rng.integers(-2, 3, (fout, fin)) / 4).astype(dtype)
    b = (rng.integers(-4, 5, fout) / 16 + 1 / 32).astype(dtype)
    dy = (rng.integers(-2, 3, (bsz, fout)) / 4).astype(dtype)
    return x, w, b, dy


def numpy_forward(x, w, b):
    return np.maximum(x @ w.T + b, 0)


def numpy_forward_backward(x, w, b, dy):
    """(y, dx, dw, db); relu'(z) = [y > 0] (0 at the kink, as torch)."""
    y = numpy_forward(x, w, b)
    dz = dy * (y > 0)
    return y, dz @ w, dz.T @ x, dz.sum(axis=0)


def _fastnn_impls(fw, mode, x, w, b, dy):
    fn = fw.fastnn
    if mode == "forward":
        def run():
            return fn.dense_forward(x, w, b, "relu", weight_layout="oi")[0]
    else:
        def run():
            y, z = fn.dense_forward(x, w, b, "relu", weight_layout="oi")
            dx, dw, db = fn.dense_backward(dy, x, w, y, z, "relu", weight_layout="oi")
            return y, dx, dw, db
    return [Impl(name, run, context) for name, context in fw.fastnn_impls()]


def _torch_impl(fw, mode, x, w, b, dy):
    torch, F = fw.torch, fw.F
    grad = mode != "forward"
    xt, wt, bt = (torch.from_numpy(a).requires_grad_(grad) for a in (x, w, b))
    dyt = torch.from_numpy(dy)
    if mode == "forward":
        def run():
            return F.relu(F.linear(xt, wt, bt))
    else:
        def run():
            y = F.relu(F.linear(xt, wt, bt))
            dx, dw, db = torch.autograd.grad(y, (xt, wt, bt), dyt)
            return y, dx, dw, db
    return Impl("torch", run)


def make_case(spec, dtype, fw, seed=0):
    """The Case for one (op, mode, shape) spec, with its reference and impls."""
    op, mode, shape = spec
    x, w, b, dy = make_inputs(shape, dtype, seed)

    def reference():
        x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, w, b, dy))
        if mode == "forward":
            return (numpy_forward(x64, w64, b64),)
        return numpy_forward_backward(x64, w64, b64, dy64)
    if mode == "forward":
        numpy_run = lambda: numpy_forward(x, w, b)  # noqa: E731
    else:
        numpy_run = lambda: numpy_forward_backward(x, w, b, dy)  # noqa: E731
    impls = []
    if fw.fastnn is not None:
        impls += _fastnn_impls(fw, mode, x, w, b, dy)
    if fw.torch is not None:
        impls.append(_torch_impl(fw, mode, x, w, b, dy))
    impls.append(Impl("numpy", numpy_run))
    return Case(op=op, mode=mode, shape=shape, dtype=dtype, unit="GFLOP/s",
                work=flops(mode, shape), ceiling="gemm", reference=reference,
                impls=impls)
