"""Independent float64 references for the fastnn kernels.

Torch twins are evaluated with torch.nn.functional in float64 (values, and gradients
through torch.autograd). Keras-only formulas (relu's max_value/threshold params,
exponential, softplus with threshold=inf, hinge, squared_hinge, log_cosh) are written
out in float64 numpy together with their analytic derivative and wrapped as a torch op,
so every reference is one differentiable torch callable.

Every function here takes and returns numpy arrays; inputs are cast to float64, which is
exact for float32 inputs, so a comparison measures only the kernel's own rounding.
"""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)


def t64(a, grad=False):
    """A float64 torch copy of a (any layout), optionally requiring grad."""
    return torch.tensor(np.array(a, dtype=np.float64)).requires_grad_(grad)


def _np(t):
    return None if t is None else t.detach().numpy().copy()


class _NumpyOp(torch.autograd.Function):
    """y = f(x) with dy/dx = df(x), both float64 numpy, elementwise."""

    @staticmethod
    def forward(ctx, x, f, df):
        ctx.save_for_backward(x)
        ctx.df = df
        return torch.from_numpy(np.asarray(f(x.detach().numpy()), dtype=np.float64))

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        d = np.asarray(ctx.df(x.detach().numpy()), dtype=np.float64)
        return torch.from_numpy(d) * dy, None, None


def _numpy_op(f, df):
    return lambda x: _NumpyOp.apply(x, f, df)


def _sigmoid_np(x):
    return np.exp(-np.logaddexp(0.0, -x))


# --------------------------------------------------------------------------- activations
def _keras_relu(negative_slope=0.0, max_value=None, threshold=0.0):
    # Keras 3 relu: x > threshold ? min(x, max_value) : negative_slope * (x - threshold)
    hi = np.inf if max_value is None else max_value
    # (slope 0: exactly 0 below the threshold, -inf included, as Keras' clip does; NaN stays)
    f = lambda x: np.where(x > threshold, np.minimum(x, hi), np.where(
        np.isnan(x), x, 0.0 if negative_slope == 0 else negative_slope * (x - threshold)))
    # at NaN: 1, the convention of torch's relu (threshold_backward passes dy there)
    df = lambda x: np.where(x > threshold, (x < hi).astype(np.float64), np.where(np.isnan(x), 1.0, negative_slope))
    return _numpy_op(f, df)


def _keras_softplus(beta=1.0, threshold=20.0):
    # threshold=inf: never linear, log(1 + exp(beta x)) / beta evaluated stably.
    assert math.isinf(threshold)
    return _numpy_op(lambda x: np.logaddexp(beta * x, 0.0) / beta,
                     lambda x: _sigmoid_np(beta * x))


# torch twins: builder(**params) -> callable on a float64 tensor
_TORCH_ACTS = {
    "linear": lambda: (lambda x: x.clone()),
    "relu": lambda negative_slope=0.0, max_value=None, threshold=0.0: F.relu,
    "relu6": lambda: F.relu6,
    "leaky_relu": lambda negative_slope=0.01: (lambda x: F.leaky_relu(x, negative_slope)),
    "elu": lambda alpha=1.0: (lambda x: F.elu(x, alpha)),
    "selu": lambda: F.selu,
    "celu": lambda alpha=1.0: (lambda x: F.celu(x, alpha)),
    "gelu": lambda approximate="none": (lambda x: F.gelu(x, approximate=approximate)),
    "silu": lambda: F.silu,
    "mish": lambda: F.mish,
    "sigmoid": lambda: torch.sigmoid,
    "hard_sigmoid": lambda: F.hardsigmoid,
    "hard_silu": lambda: F.hardswish,
    "tanh": lambda: torch.tanh,
    "softplus": lambda beta=1.0, threshold=20.0: (lambda x: F.softplus(x, beta, threshold)),
    "softsign": lambda: F.softsign,
    "log_sigmoid": lambda: F.logsigmoid,
    "hard_tanh": lambda min_val=-1.0, max_val=1.0: (lambda x: F.hardtanh(x, min_val, max_val)),
    "exponential": lambda: _numpy_op(np.exp, np.exp),  # Keras-only
    "relu_squared": lambda: (lambda x: x * F.relu(x)),
    "softmax": lambda axis=-1: (lambda x: F.softmax(x, dim=axis)),
    "log_softmax": lambda axis=-1: (lambda x: F.log_softmax(x, dim=axis)),
}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu", "l1": "mae"}
_RELU_DEFAULTS = {"negative_slope": 0.0, "max_value": None, "threshold": 0.0}


def activation_fn(name, params):
    """The reference activation as a differentiable callable on float64 tensors."""
    name = ALIASES.get(name, name)
    if name not in _TORCH_ACTS:
        pytest.fail(f"no reference mapping for activation {name!r}: add it to tests/_ref.py")
    if name == "relu" and any(params.get(k, d) != d for k, d in _RELU_DEFAULTS.items()):
        return _keras_relu(**params)
    if name == "softplus" and math.isinf(params.get("threshold", 20.0)):
        return _keras_softplus(**params)
    return _TORCH_ACTS[name](**params)


def activation_ref(name, params, x, dy=None):
    """(y, dx) in float64 numpy; dx is None when dy is None."""
    X = t64(x, grad=dy is not None)
    Y = activation_fn(name, params)(X)
    if dy is None:
        return _np(Y), None
    Y.backward(t64(dy))
    return _np(Y), _np(X.grad)


def _axis(name, params):
    return params.get("axis", -1)


def activation_scale(name, params, x, y, dy=None):
    """Magnitude of the operands that round into each output, for the tolerance band.

    Only softmax/log_softmax need one: log_softmax = x - max - log(sum) and its
    gradient dy - softmax * sum(dy) cancel; elementwise results are compared relative to
    themselves (None)."""
    if name not in ("softmax", "log_softmax") or x.size == 0:
        return None
    ax = _axis(name, params)
    x = np.asarray(x, np.float64)
    if dy is None:
        return None if name == "softmax" else np.abs(x) + np.max(np.abs(x), ax, keepdims=True)
    dy = np.asarray(dy, np.float64)
    s = y if name == "softmax" else np.exp(y)
    if name == "softmax":
        return s * (np.abs(dy) + np.sum(np.abs(s * dy), ax, keepdims=True))
    return np.abs(dy) + s * np.sum(np.abs(dy), ax, keepdims=True)


def activation_bands(name, params, x, y, dy=None):
    """Keyword arguments for assert_close: scale (softmax rows, see activation_scale) and
    opscale, the size of the terms that cancel in gelu: x * Phi(x) and its derivative
    Phi + x phi lose |x| (resp. |dy| (1 + |x| u'(x)) for tanh-gelu, whose
    0.5 x (1 - tanh(u)^2) u' term rounds like tanh near +-1) roundoffs; torch's own float32
    gelu has those errors. Beyond |u| = 20 tanh is exactly +-1 and the term vanishes."""
    bands = dict(scale=activation_scale(name, params, x, y, dy))
    if name == "gelu" and np.size(x):
        ax = np.abs(np.asarray(x, np.float64))
        if dy is None:
            bands["opscale"] = ax
        elif params.get("approximate", "none") == "tanh":
            k, c = math.sqrt(2.0 / math.pi), 0.044715
            u = k * (ax + c * ax ** 3)
            du = k * (1.0 + 3.0 * c * ax ** 2)
            bands["opscale"] = np.abs(dy) * (1.0 + np.where(u < 20.0, ax * du, 0.0))
        else:
            bands["opscale"] = np.abs(dy) * (1.0 + ax)
    return bands


# -------------------------------------------------------------------------------- losses
def _keras_loss_terms(name, p, t):
    """Per-element Keras-only loss as a torch op in p (target is a constant)."""
    t = t.detach().numpy()
    if name == "hinge":
        f = lambda p: np.maximum(0.0, 1.0 - t * p)
        df = lambda p: np.where(1.0 - t * p > 0, -t, 0.0)
    elif name == "squared_hinge":
        f = lambda p: np.maximum(0.0, 1.0 - t * p) ** 2
        df = lambda p: -2.0 * t * np.maximum(0.0, 1.0 - t * p)
    elif name == "log_cosh":  # log(cosh(x)) = x + softplus(-2x) - log 2, x = p - t
        f = lambda p: (p - t) + np.logaddexp(0.0, -2.0 * (p - t)) - LOG2
        df = lambda p: np.tanh(p - t)
    else:
        raise KeyError(name)
    return _NumpyOp.apply(p, f, df)


def _reduce(terms, reduction):
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    assert reduction == "mean", reduction
    return terms.sum() / terms.numel() if terms.numel() else terms.sum() * float("nan")


def _class_last(t, ndim):
    """Move the class axis from last (fastnn) to 1 (torch) for >2-D inputs."""
    return t.movedim(-1, 1) if ndim > 2 else t


def _torch_loss(name, P, T, reduction, params):
    p = {k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in params.items()}
    if name == "mse":
        return F.mse_loss(P, T, reduction=reduction)
    if name == "mae":
        return F.l1_loss(P, T, reduction=reduction)
    if name == "huber":
        return F.huber_loss(P, T, reduction=reduction, delta=p.get("delta", 1.0))
    if name == "smooth_l1":
        return F.smooth_l1_loss(P, T, reduction=reduction, beta=p.get("beta", 1.0))
    if name == "bce":
        return F.binary_cross_entropy(P, T, reduction=reduction)
    if name == "bce_with_logits":
        return F.binary_cross_entropy_with_logits(P, T, reduction=reduction,
                                                  pos_weight=p.get("pos_weight"))
    if name in ("cross_entropy", "nll"):
        nd = P.dim()
        Pm = _class_last(P, nd)
        Tm = _class_last(T, nd) if T.is_floating_point() else T
        kw = dict(weight=p.get("weight"), ignore_index=p.get("ignore_index", -100),
                  reduction=reduction)
        if name == "nll":
            return F.nll_loss(Pm, Tm, **kw)
        return F.cross_entropy(Pm, Tm, label_smoothing=p.get("label_smoothing", 0.0), **kw)
    if name == "kl_div":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on reduction="mean"
            return F.kl_div(P, T, reduction=reduction, log_target=p.get("log_target", False))
    if name == "poisson_nll":
        return F.poisson_nll_loss(P, T, log_input=p.get("log_input", True),
                                  full=p.get("full", False), eps=p.get("eps", 1e-8),
                                  reduction=reduction)
    if name in ("hinge", "squared_hinge", "log_cosh"):
        return _reduce(_keras_loss_terms(name, P, T), reduction)
    pytest.fail(f"no reference mapping for loss {name!r}: add it to tests/_ref.py")


def loss_ref(name, pred, target, reduction, params, grad=None, target_grad=False):
    """(loss, dpred, dtarget) in float64 numpy. grad: None (=1), scalar or array."""
    name = ALIASES.get(name, name)
    P = t64(pred, grad=True)
    if np.issubdtype(np.asarray(target).dtype, np.integer):
        T = torch.from_numpy(np.array(target, dtype=np.int64))
    else:
        T = t64(target, grad=target_grad)
    L = _torch_loss(name, P, T, reduction, params)
    g = torch.ones_like(L) if grad is None else t64(np.broadcast_to(grad, L.shape))
    L.backward(g)
    return _np(L), _np(P.grad), (_np(T.grad) if target_grad else None)


def loss_scale(name, pred, target, reduction, params):
    """Sum of the magnitudes of what rounds into each loss term (then reduced like the
    loss), so terms that cancel (kl_div, poisson_nll, cross_entropy's lse - x_y, log_cosh)
    get a band relative to their operands instead of to their tiny result."""
    name = ALIASES.get(name, name)
    p = np.asarray(pred, np.float64)
    terms = np.abs(loss_ref(name, pred, target, "none", params)[0])
    if name in ("cross_entropy", "nll"):
        if name == "cross_entropy" and p.size:
            terms = terms + np.max(np.abs(p), -1)
        w = params.get("weight")
        if isinstance(w, np.ndarray):
            terms = terms * np.max(w)
        if reduction == "mean":
            return np.max(terms) if terms.size else np.float64(0.0)
    else:
        t = np.asarray(target, np.float64)
        if name == "kl_div":
            if params.get("log_target", False):
                terms = terms + np.exp(t) * (np.abs(t) + np.abs(p))
            else:
                terms = terms + np.abs(t * np.log(np.where(t > 0, t, 1.0))) + np.abs(t * p)
        elif name == "poisson_nll":
            if params.get("log_input", True):
                terms = terms + np.exp(p) + np.abs(t * p)
            else:
                terms = terms + np.abs(p) + np.abs(t * np.log(p + params.get("eps", 1e-8)))
            if params.get("full", False):
                tt = np.where(t > 1, t, 1.0)
                terms = terms + np.abs(tt * np.log(tt)) + tt + np.abs(0.5 * np.log(2 * np.pi * tt))
        elif name == "bce_with_logits":
            pw = params.get("pos_weight")
            terms = terms + 2 * np.abs(p) * (np.max(pw) if isinstance(pw, np.ndarray) and pw.size else 1.0)
        elif name == "log_cosh":
            terms = terms + 2 * np.abs(p - t) + LOG2
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if reduction == "batchmean":
        return terms.sum() / max(p.shape[0] if p.ndim else 1, 1)
    return terms.sum() / max(terms.size, 1)


# --------------------------------------------------------------------------------- dense
def dense_ref(x, w, b, weight_layout, activation, params, dy=None):
    """dict(z, y, dz, dx, dw, db) in float64 numpy via F.linear + activation + autograd."""
    need = dy is not None
    X, W = t64(x, need), t64(w, need)
    B = None if b is None else t64(b, need)
    Woi = W if weight_layout == "oi" else W.t()
    Z = F.linear(X, Woi, B)
    if need:
        Z.retain_grad()
    Y = activation_fn(activation, params)(Z)
    out = dict(z=_np(Z), y=_np(Y))
    if need:
        Y.backward(t64(dy))
        dz = _np(Z.grad)
        out.update(dz=dz, dx=_np(X.grad), dw=_np(W.grad),
                   db=_np(B.grad) if b is not None else dz.reshape(-1, dz.shape[-1]).sum(0))
    return out


def dense_scales(x, w, weight_layout, activation, params, ref, dy):
    """Magnitude bands for dx, dw, db: |dz|-like magnitudes pushed through |W| and |x|
    (the sums a matrix product rounds)."""
    b = activation_bands(activation, params, ref["z"], ref["y"], dy)
    dz_s = np.abs(ref["dz"]) if b["scale"] is None else b["scale"]
    if "opscale" in b:  # dz rounds like atol * opscale = rtol * (atol / rtol) * opscale
        dz_s = dz_s + 0.1 * b["opscale"]
    x2 = np.abs(np.asarray(x, np.float64)).reshape(-1, np.shape(x)[-1])
    dz2 = dz_s.reshape(-1, dz_s.shape[-1])
    w_oi = np.abs(np.asarray(w, np.float64))
    w_oi = w_oi if weight_layout == "oi" else w_oi.T
    dw = dz2.T @ x2
    return dict(dx=(dz2 @ w_oi).reshape(np.shape(x)),
                dw=dw if weight_layout == "oi" else dw.T, db=dz2.sum(0))
