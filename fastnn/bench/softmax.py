"""softmax and log_softmax over the last axis, forward + backward, x (N, C).

    softmax      y = e^(x - m) / s,  m = max_j x_j,  s = sum_j e^(x_j - m)
                 dx = y * (dy - sum_j dy_j y_j)
    log_softmax  y = x - m - log(s)
                 dx = dy - e^y * sum_j dy_j
Bytes moved per call (what GB/s counts): forward reads x and writes y, backward reads
dy and y and writes dx: 5*N*C*itemsize. fastnn: activation_forward then
activation_backward (two calls, as a framework makes them); torch: F.softmax and
autograd.grad, eager and under torch.compile.
"""

import numpy as np

from .timing import Case, Impl

MODES = ("forward+backward",)
NAMES = ("softmax", "log_softmax")
SHAPES = [(8192, 1000), (1024, 32000)]  # a classifier's outputs; an LM's vocabulary
QUICK_SHAPES = [(8192, 1000)]


def specs(quick):
    return [(name, mode, shape) for name in (NAMES[:1] if quick else NAMES)
            for shape in (QUICK_SHAPES if quick else SHAPES) for mode in MODES]


def bytes_moved(shape, itemsize):
    return 5 * shape[0] * shape[1] * itemsize


def numpy_forward_backward(name, x, dy):
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    if name == "softmax":
        y = e / s
        return y, y * (dy - (dy * y).sum(axis=1, keepdims=True))
    y = x - m - np.log(s)
    return y, dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def _fastnn_impls(fw, name, x, dy):
    fn = fw.fastnn
    impls = []
    for impl_name, ctx in fw.fastnn_impls(cache_row=True):
        try:
            with ctx():
                saved = fn.saved_for_backward(name)
        except Exception as exc:
            impls.append(Impl(impl_name, None, ctx, error=f"setup raised {exc!r}"))
            continue

        def run(saved=saved):
            y = fn.activation_forward(x, name)
            kwargs = {"x": x if "x" in saved else None, "y": y if "y" in saved else None}
            return y, fn.activation_backward(dy, name, **kwargs)
        impls.append(Impl(impl_name, run, ctx))
    return impls


def _torch_impls(fw, name, x, dy):
    torch = fw.torch
    act = getattr(fw.F, name)
    xt = torch.from_numpy(x).requires_grad_(True)
    dyt = torch.from_numpy(dy)
    impls = []
    for impl_name, f in (("torch", lambda t: act(t, dim=-1)),
                         ("torch.compile", fw.torch_compile(lambda t: act(t, dim=-1)))):
        if f is None:
            continue

        def run(f=f):
            y = f(xt)
            return y, torch.autograd.grad(y, xt, dyt)[0]
        impls.append(Impl(impl_name, run))
    return impls


def make_case(spec, dtype, fw, seed=0):
    name, mode, shape = spec
    rng = np.random.default_rng(seed)
    x = (2.0 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    def reference():
        return numpy_forward_backward(name, x.astype(np.float64), dy.astype(np.float64))
    impls = []
    if fw.fastnn is not None:
        impls += _fastnn_impls(fw, name, x, dy)
    if fw.torch is not None:
        impls += _torch_impls(fw, name, x, dy)
    impls.append(Impl("numpy", lambda: numpy_forward_backward(name, x, dy)))
    return Case(op=name, mode=mode, shape=shape, dtype=dtype, unit="GB/s",
                work=bytes_moved(shape, np.dtype(dtype).itemsize), ceiling="bandwidth",
                reference=reference, impls=impls)
