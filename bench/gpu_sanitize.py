"""Every CuPy-backend kernel once on small shapes, for compute-sanitizer (racecheck,
memcheck, synccheck) on a GPU machine:

    compute-sanitizer --tool racecheck --error-exitcode 9 python bench/gpu_sanitize.py

Shapes are chosen so that rows are longer than a block, grid-stride loops wrap, and
the vector (16-byte) and scalar paths both run (an odd offset view takes the scalar one).
"""
import cupy as cp
import numpy as np

import fastnn

rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    def arr(*shape):
        return cp.asarray(rng.standard_normal(shape).astype(dt))
    for n in (1031, 70001):
        x, dy = arr(n), arr(n)
        for act in ("relu", "gelu", "sigmoid"):
            y = fastnn.activation_forward(x, act)
            fastnn.activation_backward(dy, act, x=x, y=y)
        xo = arr(n + 1)[1:]  # misaligned: the scalar path
        fastnn.activation_forward(xo, "silu")
    for rows, cols in ((3, 2000), (257, 33)):
        x, dy = arr(rows, cols), arr(rows, cols)
        for act in ("softmax", "log_softmax"):
            y = fastnn.activation_forward(x, act)
            fastnn.activation_backward(dy, act, y=y)
            fastnn.activation_backward(dy, act, x=x)
        t = cp.asarray(rng.integers(0, cols, rows))
        for name, kw in (("cross_entropy", {"label_smoothing": 0.1, "weight": arr(cols) ** 2}), ("nll", {})):
            fastnn.loss_forward(x, t, name, **kw)
            fastnn.loss_backward(x, t, name, **kw)
        p = cp.abs(arr(rows, cols))
        p /= p.sum(axis=1, keepdims=True)
        fastnn.loss_forward(x, p, "cross_entropy")
        fastnn.loss_backward(x, p, "cross_entropy", need_target_grad=True)
        for name in ("mse", "bce_with_logits", "huber"):
            fastnn.loss_forward(x, dy, name, reduction="none")
            fastnn.loss_forward(x, dy, name)
            fastnn.loss_backward(x, dy, name, need_target_grad=name != "huber")
    for m, k, nout in ((300, 40, 70), (5, 8, 1030)):
        x, w, b = arr(m, k), arr(nout, k), arr(nout)
        for act in ("linear", "relu", "gelu", "softmax"):
            y, z = fastnn.dense_forward(x, w, b, act)
            fastnn.dense_backward(arr(m, nout), x, w, y, z, act)
        t = cp.asarray(rng.integers(0, nout, m))
        fastnn.dense_cross_entropy(x, w, b, t, chunk_size=64)
cp.cuda.Device().synchronize()
print("gpu_sanitize: all kernels ran")
