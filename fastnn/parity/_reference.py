"""The float64 reference of every op: torch float64 autograd when torch imports, else
fastnn's own float64 path on the Numba backend (an implementation independent of the C++
and CUDA kernels, so a bug shared by those two still shows).

Contract: each function takes numpy arrays (cast here to float64, which is exact for
float32 inputs, so a comparison measures only the kernel's own rounding) and returns
float64 numpy arrays. Keras-only formulas (relu with Keras' params, exponential, softplus
with threshold=inf, hinge, squared_hinge, log_cosh) are written in numpy with their
derivative and wrapped as one differentiable torch op, the conventions fastnn documents
(relu's derivative 0 at the threshold, 1 at NaN).
"""
import math
import warnings

import numpy as np

from .. import _registry as R

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the Numba fallback below
    torch = None  # type: ignore[assignment]


def name():
    """Which reference is in use, for the report."""
    return f"torch {torch.__version__} float64 autograd" if torch is not None else \
        "fastnn float64 on the numba backend (torch not installed)"


def _t(a, grad=False):
    return torch.tensor(np.array(a, dtype=np.float64)).requires_grad_(grad)


def _np(t):
    return None if t is None else t.detach().numpy().copy()


if torch is not None:
    class _NumpyOp(torch.autograd.Function):
        """y = f(x), dy/dx = df(x), both float64 numpy, elementwise."""

        @staticmethod
        def forward(ctx, x, f, df):
            ctx.save_for_backward(x)
            ctx.df = df
            with np.errstate(over="ignore", invalid="ignore"):  # e^1000 = inf is the value
                return torch.from_numpy(np.asarray(f(x.detach().numpy()), dtype=np.float64))

        @staticmethod
        def backward(ctx, dy):
            (x,) = ctx.saved_tensors
            with np.errstate(over="ignore", invalid="ignore"):
                return torch.from_numpy(np.asarray(ctx.df(x.detach().numpy()), dtype=np.float64)) * dy, None, None


def _op(f, df):
    return lambda x: _NumpyOp.apply(x, f, df)


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def _keras_relu(negative_slope=0.0, max_value=None, threshold=0.0):
    hi = math.inf if max_value is None else max_value
    f = lambda x: np.where(x > threshold, np.minimum(x, hi), np.where(  # noqa: E731
        np.isnan(x), x, 0.0 if negative_slope == 0 else negative_slope * (x - threshold)))
    df = lambda x: np.where(x > threshold, (x < hi).astype(np.float64),  # noqa: E731
                            np.where(np.isnan(x), 1.0, negative_slope))
    return _op(f, df)


def _activation_fn(op, p):
    """The torch twin of an activation with params p, as a callable on float64 tensors."""
    if op == "relu" and any(p.get(k, d) != d for k, d in R.ACTIVATION_PARAMS["relu"].items()):
        return _keras_relu(**p)
    if op == "softplus" and math.isinf(p.get("threshold", 20.0)):
        beta = p.get("beta", 1.0)
        return _op(lambda x: np.logaddexp(beta * x, 0.0) / beta, lambda x: _sigmoid(beta * x))
    g = lambda k, d=None: p.get(k, R.ACTIVATION_PARAMS.get(op, {}).get(k, d))  # noqa: E731
    table = {
        "linear": lambda x: x.clone(), "relu": F.relu, "relu6": F.relu6,
        "leaky_relu": lambda x: F.leaky_relu(x, g("negative_slope")), "elu": lambda x: F.elu(x, g("alpha")),
        "selu": F.selu, "celu": lambda x: F.celu(x, g("alpha")),
        "gelu": lambda x: F.gelu(x, approximate=g("approximate")), "silu": F.silu, "mish": F.mish,
        "sigmoid": torch.sigmoid, "hard_sigmoid": F.hardsigmoid, "hard_silu": F.hardswish, "tanh": torch.tanh,
        "softplus": lambda x: F.softplus(x, g("beta"), g("threshold")), "softsign": F.softsign,
        "log_sigmoid": F.logsigmoid, "hard_tanh": lambda x: F.hardtanh(x, g("min_val"), g("max_val")),
        "exponential": _op(np.exp, np.exp), "relu_squared": lambda x: x * F.relu(x),
        "softmax": lambda x: F.softmax(x, dim=g("axis", -1)),
        "log_softmax": lambda x: F.log_softmax(x, dim=g("axis", -1)),
    }
    return table[op]


def _numba(fn, *args, **kwargs):
    """fastnn.fn on float64 copies of the array arguments, on the numba backend."""
    import fastnn  # noqa: PLC0415 - the package imports this module
    from .._checks import FLOAT_DTYPES  # noqa: PLC0415 - bfloat16's dtype kind is not "f"
    cast = lambda a: a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype in FLOAT_DTYPES else a  # noqa: E731
    with fastnn.use_backend("numba"):
        return getattr(fastnn, fn)(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()})


def activation(op, params, x, dy):
    """(y, dx) of the activation."""
    if torch is None:
        y = _numba("activation_forward", x, op, **params)
        return y, _numba("activation_backward", dy, op, x=x.astype(np.float64), y=y, **params)
    X = _t(x, True)
    Y = _activation_fn(op, params)(X)
    Y.backward(_t(dy))
    dx = _np(X.grad)
    if op not in R.ROW_ACTIVATIONS:
        # torch's derivative at a NaN input differs between its vectorized loop (NaN) and
        # its scalar tail (dy passes, the convention fastnn documents and its tests pin on
        # short arrays): evaluate each NaN position alone, on the scalar path.
        for i in np.flatnonzero(np.isnan(np.asarray(x, np.float64)).reshape(-1)):
            one = _t(np.asarray(x).reshape(-1)[i:i + 1], True)
            _activation_fn(op, params)(one).backward(_t(np.asarray(dy).reshape(-1)[i:i + 1]))
            dx.reshape(-1)[i] = _np(one.grad)[0]
    return _np(Y), dx


def _keras_terms(op, P, t):
    t = t.detach().numpy()
    if op == "hinge":
        f, df = lambda p: np.maximum(0.0, 1.0 - t * p), lambda p: np.where(1.0 - t * p > 0, -t, 0.0)
    elif op == "squared_hinge":
        f, df = lambda p: np.maximum(0.0, 1.0 - t * p) ** 2, lambda p: -2.0 * t * np.maximum(0.0, 1.0 - t * p)
    else:  # log_cosh(d) = d + softplus(-2 d) - log 2, d = p - t
        f, df = lambda p: (p - t) + np.logaddexp(0.0, -2.0 * (p - t)) - math.log(2.0), lambda p: np.tanh(p - t)
    return _NumpyOp.apply(P, f, df)


def _torch_loss(op, P, T, reduction, p):
    p = {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    simple = {"mse": F.mse_loss, "mae": F.l1_loss, "bce": F.binary_cross_entropy}
    if op in simple:
        return simple[op](P, T, reduction=reduction)
    if op == "huber":
        return F.huber_loss(P, T, reduction=reduction, delta=p.get("delta", 1.0))
    if op == "smooth_l1":
        return F.smooth_l1_loss(P, T, reduction=reduction, beta=p.get("beta", 1.0))
    if op == "bce_with_logits":
        return F.binary_cross_entropy_with_logits(P, T, reduction=reduction, pos_weight=p.get("pos_weight"))
    if op in ("cross_entropy", "nll"):
        mv = (lambda a: a.movedim(-1, 1)) if P.dim() > 2 else (lambda a: a)
        kw = dict(weight=p.get("weight"), ignore_index=p.get("ignore_index", -100), reduction=reduction)
        if op == "nll":
            return F.nll_loss(mv(P), T, **kw)
        T = mv(T) if T.is_floating_point() else T  # probabilities: their class axis too
        return F.cross_entropy(mv(P), T, label_smoothing=p.get("label_smoothing", 0.0), **kw)
    if op == "kl_div":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return F.kl_div(P, T, reduction=reduction, log_target=p.get("log_target", False))
    if op == "poisson_nll":
        return F.poisson_nll_loss(P, T, log_input=p.get("log_input", True), full=p.get("full", False),
                                  eps=p.get("eps", 1e-8), reduction=reduction)
    terms = _keras_terms(op, P, T)
    if reduction == "none":
        return terms
    return terms.sum() if reduction == "sum" else terms.sum() / terms.numel() if terms.numel() \
        else terms.sum() * math.nan


def loss(op, params, pred, target, reduction, grad):
    """(loss, dpred) of the loss; grad: the upstream gradient (None: 1)."""
    if torch is None:
        kw = dict(reduction=reduction, **params)
        return (_numba("loss_forward", pred, target, op, **kw),
                _numba("loss_backward", pred, target, op, grad=grad, **kw))
    P = _t(pred, True)
    T = torch.from_numpy(np.array(target, np.int64)) if target.dtype.kind in "iu" else _t(target)
    L = _torch_loss(op, P, T, reduction, params)
    L.backward(torch.ones_like(L) if grad is None else _t(np.broadcast_to(grad, L.shape)))
    return _np(L), _np(P.grad)


def dense(x, w, b, layout, act, params, dy):
    """dict(y, dx, dw, db) of y = act(x W^T + b) (W in "oi" layout; "io" is its transpose)."""
    if torch is None:
        y, z = _numba("dense_forward", x, w, b, act, weight_layout=layout, keep_z=True, **params)
        dx, dw, db = _numba("dense_backward", dy, x, w, y, z, act, weight_layout=layout, **params)
        return dict(y=y, dx=dx, dw=dw, db=db)
    X, W, B = _t(x, True), _t(w, True), _t(b, True)
    Y = _activation_fn(act, params)(F.linear(X, W if layout == "oi" else W.t(), B))
    Y.backward(_t(dy))
    return dict(y=_np(Y), dx=_np(X.grad), dw=_np(W.grad), db=_np(B.grad))


def dense_cross_entropy(x, w, b, target, reduction):
    """(loss, dx, dw, db) of cross_entropy(x W^T + b, target) (W "oi")."""
    if torch is None:
        loss_, grads = _numba("dense_cross_entropy", x, w, b, target, reduction=reduction)
        return (loss_,) + tuple(grads)
    X, W, B = _t(x, True), _t(w, True), _t(b, True)
    L = F.cross_entropy(F.linear(X, W, B), torch.from_numpy(target), reduction=reduction)
    L.backward(torch.ones_like(L))
    return _np(L), _np(X.grad), _np(W.grad), _np(B.grad)
