"""Elementwise activation benchmark (gelu by default, or relu), forward and backward.

gelu (exact, torch's approximate="none"):
    y = x * Phi(x) = x/2 * (1 + erf(x / sqrt(2)))
    dy/dx = Phi(x) + x * phi(x),  phi(x) = exp(-x^2/2) / sqrt(2*pi)
relu: y = max(x, 0); dy/dx = [x > 0] (0 at 0, as torch).
Bytes moved per call (what GB/s counts): forward reads x and writes y, 2*n*itemsize;
backward reads dy and x (or y) and writes dx, 3*n*itemsize.
"""

import math

import numpy as np

from .timing import Case, Impl

MODES = ("forward", "backward")
SIZES = [2 ** 20, 2 ** 24]
QUICK_SIZES = [2 ** 20, 2 ** 22]
NAMES = ("gelu", "relu")

SQRT1_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

try:
    from scipy.special import erf as _erf
except ImportError:  # numpy has no erf; without scipy only the reference can have one
    _erf = None


def _erf64(x):
    """erf of a float64 array: scipy's, else math.erf per element (slow)."""
    if _erf is not None:
        return _erf(x)
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def gelu_forward(x, erf=_erf):
    return 0.5 * x * (1.0 + erf(x * SQRT1_2))


def gelu_backward(dy, x, erf=_erf):
    cdf = 0.5 * (1.0 + erf(x * SQRT1_2))
    return dy * (cdf + x * (INV_SQRT_2PI * np.exp(-0.5 * x * x)))


def relu_forward(x, erf=None):
    return np.maximum(x, 0)


def relu_backward(dy, x, erf=None):
    return dy * (x > 0)


NUMPY = {"gelu": (gelu_forward, gelu_backward), "relu": (relu_forward, relu_backward)}


def numpy_note(name):
    """A header line on how the numpy rows of activation `name` are made, or None."""
    if name != "gelu":
        return None
    if _erf is None:
        return "numpy gelu rows skipped: numpy has no erf and scipy is not installed"
    return "numpy gelu uses scipy.special.erf (numpy has no erf)"


def specs(quick, name="gelu"):
    """[(op, mode, shape)] this family runs."""
    return [(name, mode, (n,)) for n in (QUICK_SIZES if quick else SIZES)
            for mode in MODES]


def bytes_moved(mode, shape, itemsize):
    n = math.prod(shape)
    return (2 if mode == "forward" else 3) * n * itemsize


def _fastnn_impls(fw, name, mode, x, dy):
    fn = fw.fastnn
    if mode == "forward":
        def run():
            return fn.activation_forward(x, name)
        return [Impl(impl, run, ctx) for impl, ctx in fw.fastnn_impls()]
    impls = []
    for impl_name, ctx in fw.fastnn_impls():
        try:
            with ctx():  # what backward needs could differ per backend: ask each
                saved = fn.saved_for_backward(name)
                y = fn.activation_forward(x, name) if "y" in saved else None
        except Exception as exc:
            impls.append(Impl(impl_name, None, ctx, error=f"setup raised {exc!r}"))
            continue
        kwargs = {"x": x if "x" in saved else None, "y": y}

        def run(kwargs=kwargs):
            return fn.activation_backward(dy, name, **kwargs)
        impls.append(Impl(impl_name, run, ctx))
    return impls


def _torch_impl(fw, name, mode, x, dy):
    """torch's F.gelu / F.relu; backward through autograd.grad with retain_graph."""
    torch, F = fw.torch, fw.F
    act = getattr(F, name)
    if mode == "forward":
        xt = torch.from_numpy(x)
        return Impl("torch", lambda: act(xt))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt, dyt = act(xt), torch.from_numpy(dy)

    def run():
        return torch.autograd.grad(yt, xt, dyt, retain_graph=True)[0]
    return Impl("torch", run)


def _numpy_impl(name, mode, x, dy):
    if name == "gelu" and _erf is None:
        return None
    fwd, bwd = NUMPY[name]
    run = (lambda: fwd(x)) if mode == "forward" else (lambda: bwd(dy, x))
    return Impl("numpy", run)


def make_case(spec, dtype, fw, seed=0):
    """The Case for one (name, mode, shape) spec, with its reference and impls."""
    name, mode, shape = spec
    rng = np.random.default_rng(seed)
    # Spread over [-6, 6]: gelu's tails, its curved middle and its kink all show up.
    x = (2.0 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    fwd, bwd = NUMPY[name]
    x64 = x.astype(np.float64)
    if mode == "forward":
        reference = (fwd(x64, erf=_erf64),)
    else:
        reference = (bwd(dy.astype(np.float64), x64, erf=_erf64),)
    impls = []
    if fw.fastnn is not None:
        impls += _fastnn_impls(fw, name, mode, x, dy)
    if fw.torch is not None:
        impls.append(_torch_impl(fw, name, mode, x, dy))
    numpy_impl = _numpy_impl(name, mode, x, dy)
    if numpy_impl is not None:
        impls.append(numpy_impl)
    return Case(op=name, mode=mode, shape=shape, dtype=dtype, unit="GB/s",
                work=bytes_moved(mode, shape, np.dtype(dtype).itemsize),
                ceiling="bandwidth", reference=reference, impls=impls)
