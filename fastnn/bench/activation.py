"""Elementwise activations, forward and backward: relu, gelu, sigmoid, silu, tanh,
softplus (torch's definitions and defaults).

    relu      y = max(x, 0)                     dy/dx = [x > 0] (0 at 0, as torch)
    gelu      y = x * Phi(x) = x/2 (1 + erf(x / sqrt(2)))   (exact, approximate="none")
              dy/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
    sigmoid   y = s(x) = 1 / (1 + exp(-x))      dy/dx = y (1 - y)
    silu      y = x s(x)                        dy/dx = s(x) (1 + x (1 - s(x)))
    tanh      y = tanh(x)                       dy/dx = 1 - y^2
    softplus  y = log(1 + exp(x)), y = x where x > 20 (beta 1, threshold 20)
              dy/dx = s(x), 1 where x > 20
Bytes moved per call (what GB/s counts): forward reads x and writes y, 2*n*itemsize;
backward reads dy and x (or y) and writes dx, 3*n*itemsize.
Outputs are fresh, as a user's call allocates them: torch and numpy map new pages for
each output > 32 MB; fastnn's C++ backend reuses cached buffers, and the row
"fastnn[cpp] no cache" shows it with that cache off (see impls.py).
"""

import math

import numpy as np

from .timing import Case, Impl

MODES = ("forward", "backward")
SIZES = [2 ** 20, 2 ** 24]
QUICK_SIZES = [2 ** 24]  # the targets' size: 64 MB outputs, past the mmap threshold
COMPILE_MIN_SIZE = 2 ** 24
NAMES = ("relu", "gelu", "sigmoid", "silu", "tanh", "softplus")
QUICK_NAMES = ("relu", "gelu")  # memory bound; compute bound (its kernel is in the header)

SQRT1_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
SOFTPLUS_THRESHOLD = 20.0  # torch's default: linear where x > 20

try:
    from scipy.special import erf as _erf
except ImportError:  # numpy has no erf; without scipy only the reference can have one
    _erf = None


def _erf64(x):
    """erf of a float64 array: scipy's, else math.erf per element (slow)."""
    if _erf is not None:
        return _erf(x)
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# numpy compositions: (forward(x), backward(dy, x)); `erf` lets the float64
# reference use scipy's or math's erf.
def gelu_forward(x, erf=_erf):
    return 0.5 * x * (1.0 + erf(x * SQRT1_2))


def gelu_backward(dy, x, erf=_erf):
    cdf = 0.5 * (1.0 + erf(x * SQRT1_2))
    return dy * (cdf + x * (INV_SQRT_2PI * np.exp(-0.5 * x * x)))


def softplus_forward(x, erf=None):
    return np.where(x > SOFTPLUS_THRESHOLD, x, np.log1p(np.exp(x)))


def softplus_backward(dy, x, erf=None):
    return dy * np.where(x > SOFTPLUS_THRESHOLD, 1.0, _sigmoid(x)).astype(x.dtype)


def silu_backward(dy, x, erf=None):
    s = _sigmoid(x)
    return dy * (s * (1.0 + x * (1.0 - s)))


NUMPY = {
    "relu": (lambda x, erf=None: np.maximum(x, 0), lambda dy, x, erf=None: dy * (x > 0)),
    "gelu": (gelu_forward, gelu_backward),
    "sigmoid": (lambda x, erf=None: _sigmoid(x),
                lambda dy, x, erf=None: dy * (_sigmoid(x) * (1.0 - _sigmoid(x)))),
    "silu": (lambda x, erf=None: x * _sigmoid(x), silu_backward),
    "tanh": (lambda x, erf=None: np.tanh(x),
             lambda dy, x, erf=None: dy * (1.0 - np.tanh(x) ** 2)),
    "softplus": (softplus_forward, softplus_backward),
}


def torch_fn(fw, name):
    """torch's own function of activation `name`."""
    return {"relu": fw.F.relu, "gelu": fw.F.gelu, "sigmoid": fw.torch.sigmoid,
            "silu": fw.F.silu, "tanh": fw.torch.tanh, "softplus": fw.F.softplus}[name]


def numpy_note(names):
    """A header line on how the numpy gelu rows are made, or None."""
    if "gelu" not in names:
        return None
    if _erf is None:
        return "numpy gelu rows skipped: numpy has no erf and scipy is not installed"
    return "numpy gelu uses scipy.special.erf (numpy has no erf)"


def specs(quick, names=None):
    """[(op, mode, shape)] this family runs."""
    if quick and not names:  # relu's backward moves memory as its forward does
        return [(name, mode, (n,)) for name in QUICK_NAMES for n in QUICK_SIZES for mode in MODES
                if (name, mode) != ("relu", "backward")]
    names = names or NAMES
    return [(name, mode, (n,)) for name in names
            for n in (QUICK_SIZES if quick else SIZES) for mode in MODES]


def bytes_moved(mode, shape, itemsize):
    n = math.prod(shape)
    return (2 if mode == "forward" else 3) * n * itemsize


def _fastnn_impls(fw, name, mode, x, dy):
    fn = fw.fastnn
    impls = []
    for impl_name, ctx in fw.fastnn_impls(cache_row=True):
        if mode == "forward":
            impls.append(Impl(impl_name, lambda: fn.activation_forward(x, name), ctx))
            continue
        try:
            with ctx():  # what backward needs could differ per backend: ask each
                saved = fn.saved_for_backward(name)
                y = fn.activation_forward(x, name).copy() if "y" in saved else None
        except Exception as exc:
            impls.append(Impl(impl_name, None, ctx, error=f"setup raised {exc!r}"))
            continue
        kwargs = {"x": x if "x" in saved else None, "y": y}

        def run(kwargs=kwargs):
            return fn.activation_backward(dy, name, **kwargs)
        impls.append(Impl(impl_name, run, ctx))
    return impls


def _torch_impls(fw, name, mode, x, dy):
    """torch eager and torch.compile; backward through autograd.grad on a kept graph.
    torch.compile only at the targets' size (16M): each compile takes seconds."""
    torch, act = fw.torch, torch_fn(fw, name)
    compiled = fw.torch_compile(act) if x.size >= COMPILE_MIN_SIZE else None
    impls = []
    for impl_name, f in (("torch", act), ("torch.compile", compiled)):
        if f is None:
            continue
        if mode == "forward":
            xt = torch.from_numpy(x)
            impls.append(Impl(impl_name, lambda f=f, xt=xt: f(xt)))
            continue
        xt = torch.from_numpy(x).requires_grad_(True)
        yt, dyt = f(xt), torch.from_numpy(dy)

        def run(yt=yt, xt=xt):
            return torch.autograd.grad(yt, xt, dyt, retain_graph=True)[0]
        impls.append(Impl(impl_name, run))
    return impls


def _numpy_impl(name, mode, x, dy):
    if name == "gelu" and _erf is None:
        return None
    fwd, bwd = NUMPY[name]
    run = (lambda: fwd(x)) if mode == "forward" else (lambda: bwd(dy, x))
    return Impl("numpy", run)


def make_inputs(shape, dtype, seed):
    """x ~ N(0, 4) spans [-10, 10]: the tails, the curved middle and the kink all
    show up; dy ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=dtype)  # drawn in dtype: no float64 copy of 16M
    x *= 2.0
    dy = rng.standard_normal(shape, dtype=dtype)
    return x, dy


def reference(name, mode, x, dy):
    """float64 numpy result of activation `name` (a 1-tuple)."""
    fwd, bwd = NUMPY[name]
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        if mode == "forward":
            return (fwd(x64, erf=_erf64),)
        return (bwd(dy.astype(np.float64), x64, erf=_erf64),)


def make_case(spec, dtype, fw, seed=0):
    """The Case for one (name, mode, shape) spec, with its reference and impls."""
    name, mode, shape = spec
    x, dy = make_inputs(shape, dtype, seed)
    impls = []
    if fw.fastnn is not None:
        impls += _fastnn_impls(fw, name, mode, x, dy)
    if fw.torch is not None:
        impls += _torch_impls(fw, name, mode, x, dy)
    numpy_impl = _numpy_impl(name, mode, x, dy)
    if numpy_impl is not None:
        impls.append(numpy_impl)
    return Case(op=name, mode=mode, shape=shape, dtype=dtype, unit="GB/s",
                work=bytes_moved(mode, shape, np.dtype(dtype).itemsize),
                ceiling="bandwidth", reference=lambda: reference(name, mode, x, dy),
                impls=impls)
