"""16-bit rows (issue 18): bfloat16 / float16 against fastnn's float32 and torch's 16-bit.

    dense_relu bfloat16 / float16   Dense+relu forward+backward, 256x1024x1024 (GFLOP/s):
        fastnn on 16-bit arrays, "fastnn[cpp] float32" (the same values as float32),
        torch on 16-bit tensors
    relu / gelu bfloat16            forward at 16M elements (GB/s of 16-bit traffic):
        fastnn on bfloat16, "fastnn[cpp] float32" on the same values as float32
    mlp_train_step autocast bfloat16   the MLP step of mlp.py (784-1024-1024-10, batch 256)
        under torch.autocast("cpu", torch.bfloat16): stock ("torch autocast") and
        fastnn.torch.patch ("fastnn.torch.patch autocast"); its float32 base is mlp.py's
        "fastnn.torch.patch" row of the same run

Each case's inputs are exact in both 16-bit types (mlp.py's and dense.py's grids), the
reference is float64 from them, and the check uses the 16-bit tolerances of
timing.TOLERANCES. Not in --quick (the 16M activations and three Dense layers would add
seconds to it); the targets (targets.py, group "18") judge the ratios in one run.
"""

import contextlib
import copy

import numpy as np

from . import activation, dense, mlp
from .timing import Case, Impl

FB = "forward+backward"
DENSE_SHAPE = (256, 1024, 1024)
ACT_SIZE = 2 ** 24
DTYPES = ("bfloat16", "float16")
FP32 = "fastnn[cpp] float32"


def np_dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def specs(quick):
    if quick:
        return []
    out = [(f"dense_relu {d}", FB, DENSE_SHAPE) for d in DTYPES]
    out += [(f"{name} bfloat16", "forward", (ACT_SIZE,)) for name in ("relu", "gelu")]
    out.append(("mlp_train_step autocast bfloat16", FB, (mlp.BATCH, *mlp.SIZES)))
    return out


def _cpp_context(fw):
    return dict(fw.fastnn_impls()).get("fastnn[cpp]", contextlib.nullcontext)


def _dense_case(op, dt, fw, seed):
    x32, w32, b32, dy32 = dense.make_inputs(DENSE_SHAPE, np.float32, seed)  # exact in 16 bits
    x, w, b, dy = (a.astype(np_dtype(dt)) for a in (x32, w32, b32, dy32))

    def fastnn_run(x, w, b, dy):
        fn = fw.fastnn
        y, z = fn.dense_forward(x, w, b, "relu", weight_layout="oi")
        dx, dw, db = fn.dense_backward(dy, x, w, y, z, "relu", weight_layout="oi")
        return y, dx, dw, db

    impls = []
    if fw.fastnn is not None:
        impls += [Impl(name, lambda: fastnn_run(x, w, b, dy), ctx) for name, ctx in fw.fastnn_impls()]
        impls.append(Impl(FP32, lambda: fastnn_run(x32, w32, b32, dy32), _cpp_context(fw)))
    if fw.torch is not None:
        torch, F = fw.torch, fw.F
        tdt = getattr(torch, dt)
        xt, wt, bt = (torch.from_numpy(a).to(tdt).requires_grad_(True) for a in (x32, w32, b32))
        dyt = torch.from_numpy(dy32).to(tdt)

        def torch_run():
            y = F.relu(F.linear(xt, wt, bt))
            return (y, *torch.autograd.grad(y, (xt, wt, bt), dyt))
        impls.append(Impl("torch", torch_run))

    def reference():
        return dense.numpy_forward_backward(*(a.astype(np.float64) for a in (x32, w32, b32, dy32)))
    return Case(op=op, mode=FB, shape=DENSE_SHAPE, dtype=dt, unit="GFLOP/s",
                work=dense.flops(FB, DENSE_SHAPE), ceiling="gemm", reference=reference, impls=impls)


def _act_case(op, name, fw, seed):
    x32, _ = activation.make_inputs((ACT_SIZE,), np.float32, seed)
    x = x32.astype(np_dtype("bfloat16"))
    x32 = x.astype(np.float32)  # the same values in both rows
    impls = []
    if fw.fastnn is not None:
        fn = fw.fastnn
        impls += [Impl(n, lambda: fn.activation_forward(x, name), ctx) for n, ctx in fw.fastnn_impls()]
        impls.append(Impl(FP32, lambda: fn.activation_forward(x32, name), _cpp_context(fw)))
    return Case(op=op, mode="forward", shape=(ACT_SIZE,), dtype="bfloat16", unit="GB/s",
                work=activation.bytes_moved("forward", (ACT_SIZE,), 2), ceiling="bandwidth",
                reference=lambda: activation.reference(name, "forward", x32, x32), impls=impls)


def _mlp_case(op, fw, seed):
    shape = (mlp.BATCH, *mlp.SIZES)
    x, t, params = mlp.make_inputs(mlp.BATCH, mlp.SIZES, np.float32, seed)  # exact in bf16
    impls = []
    if fw.torch is not None:
        torch = fw.torch
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        stock = mlp._torch_model(fw, params)

        def under_autocast(impl):
            def run():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return impl.fn()
            return Impl(impl.name + " autocast", run)
        impls.append(under_autocast(mlp._step_impl(fw, "torch", stock, torch.nn.CrossEntropyLoss(), xt, tt)))
        if fw.fastnn is not None:
            try:
                import fastnn.torch as ft
                patched = ft.patch(copy.deepcopy(stock))
                loss_fn = ft.patch(torch.nn.CrossEntropyLoss())
                step = mlp._step_impl(fw, "fastnn.torch.patch", patched, loss_fn, xt, tt)
                impls.append(under_autocast(step))
            except Exception as exc:
                impls.append(Impl("fastnn.torch.patch autocast", None,
                                  error=f"patch raised {type(exc).__name__}: {exc}"))

    return Case(op=op, mode=FB, shape=shape, dtype="bfloat16", unit="GFLOP/s",
                work=mlp.flops(mlp.BATCH, mlp.SIZES), ceiling="gemm",
                reference=lambda: autocast_step(x, t, params), impls=impls)


def _bf16(a):
    """float64 values rounded to bfloat16 (nearest-even), back as float64."""
    return a.astype(np.float32).astype(np_dtype("bfloat16")).astype(np.float64)


def autocast_step(x, t, params):
    """mlp.numpy_step as torch.autocast("cpu", bfloat16) computes it, in float64 with the
    bf16 roundings where autocast puts them: each Linear's inputs and output in bf16 (its
    products and sums in float32 or wider), the loss in float32 from the bf16 logits, every
    gradient flowing into a Linear rounded to bf16 (a bf16 tensor's gradient), dW and db
    rounded to bf16 before they reach the float32 parameters. (The float32 reference of
    mlp.py does not apply: a pre-activation rounded to bf16 moves every later value by up
    to 2^-9 relative, and the gradients by more than the bf16 tolerance.)"""
    hs, h = [x.astype(np.float64)], x.astype(np.float64)
    ws = [(_bf16(w.astype(np.float64)), _bf16(b.astype(np.float64))) for w, b in params]
    for k, (w, b) in enumerate(ws):
        h = _bf16(h @ w.T + b)
        if k < len(ws) - 1:
            h = np.maximum(h, 0)
        hs.append(h)
    loss, g = mlp.mean_cross_entropy(hs[-1], t)
    g = _bf16(g)
    grads = []
    for k in range(len(ws) - 1, -1, -1):
        w, _ = ws[k]
        grads = [_bf16(g.T @ hs[k]), _bf16(g.sum(axis=0))] + grads
        if k > 0:
            g = _bf16(g @ w) * (hs[k] > 0)
    return (np.asarray(loss), *grads)


def make_case(spec, dtype, fw, seed=0):
    """The Case for one spec; `dtype` (the run's float dtype) is not used: each row names its own."""
    op, mode, shape = spec
    if op.startswith("dense_relu "):
        return _dense_case(op, op.split()[1], fw, seed)
    if op.startswith("mlp_train_step"):
        return _mlp_case(op, fw, seed)
    return _act_case(op, op.split()[0], fw, seed)
