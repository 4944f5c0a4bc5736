"""torch.nn.functional's names and signatures on fastnn kernels: linear (with a fused
activation), the activations and the losses.

    >>> import torch, fastnn.torch.functional as F
    >>> x, w, b = torch.randn(32, 64), torch.randn(16, 64), torch.zeros(16)
    >>> y = F.linear(x, w, b, activation="gelu", approximate="tanh")   # gelu(x @ w.T + b)

dtypes: float32 and float64 run on the kernels; float16 and bfloat16 are computed in
float32 and rounded back to the input dtype; other dtypes raise TypeError (sigmoid,
tanh and softsign first promote integers to the default float dtype, as torch does).

``inplace=True`` is honoured: the result is written into the input, which is returned,
as in torch (the kernels compute out of place, so it saves no memory; when autograd
needs the input for the backward of that activation it is copied first).
"""
import torch

from . import _ops
from ._bridge import KERNEL_DTYPES, cast, compute_dtype
from ._functional_losses import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                                 huber_loss, kl_div, l1_loss, mse_loss, nll_loss, poisson_nll_loss,
                                 smooth_l1_loss)

# torch's functional names of activations whose fastnn name differs; accepted as
# linear(activation=...) too.
TORCH_NAMES = {"hardsigmoid": "hard_sigmoid", "hardswish": "hard_silu", "logsigmoid": "log_sigmoid",
               "hardtanh": "hard_tanh"}
_INT_TO_FLOAT = ("sigmoid", "tanh", "softsign")  # torch promotes integer inputs of these


def _activation(x, name, params, inplace=False):
    """The fastnn activation `name` on x with torch's dtype rules and inplace semantics."""
    if not x.is_floating_point() and name in _INT_TO_FLOAT and not x.is_complex():
        x = x.to(torch.get_default_dtype())
    dt = x.dtype
    if inplace:
        # autograd may need x itself in backward: run on a copy, then overwrite x (under
        # torch.compile always: functionalization removes the copy)
        keep = torch.is_grad_enabled() and x.requires_grad and (torch.compiler.is_compiling()
                                                                 or not _ops.saves_y(name, params))
        return x.copy_(_activation(x.clone() if keep else x, name, params))
    if dt in KERNEL_DTYPES:
        return _ops.activation(x, name, params)
    return _ops.activation(cast(x, compute_dtype(f"fastnn.torch.{name}", dt)), name, params).to(dt)


# ---- linear -----------------------------------------------------------------------------

def dense_activation(activation, params):
    """(fastnn name, params) for linear(activation=..., **params): None is the identity
    ("linear"); torch's functional names (hardswish, ...) map to fastnn's; softmax and
    log_softmax take torch's ``dim`` as fastnn's ``axis``."""
    if activation is None:
        return "linear", params
    if not isinstance(activation, str):
        raise TypeError(f"fastnn.torch.linear: activation must be None or a name (str), got {activation!r}")
    name = TORCH_NAMES.get(activation, activation)
    if "dim" in params and name in ("softmax", "log_softmax"):
        params = dict(params)
        params["axis"] = params.pop("dim")
    return name, params


def linear(input, weight, bias=None, activation=None, **params):
    """act(input @ weight.T + bias), fused in one pass over the output.

    input (..., in), weight (out, in), bias (out,) or None -> (..., out). activation: a
    fastnn name (fastnn.ACTIVATIONS, e.g. "relu", "gelu", "softmax") or torch's
    functional name, with its params (``negative_slope=``, ``approximate=``, ...;
    softmax/log_softmax take ``dim=-1`` or ``axis=-1``: the last axis only). All tensors
    share one dtype, as torch.nn.functional.linear requires."""
    name, params = dense_activation(activation, params)
    dt = input.dtype
    if weight.dtype != dt or (bias is not None and bias.dtype != dt):
        arg, t = ("weight", weight) if weight.dtype != dt else ("bias", bias)
        raise RuntimeError(f"fastnn.torch.linear: input is {dt} but {arg} is {t.dtype}; expected "
                           f"one dtype (as torch.nn.functional.linear)")
    if dt in KERNEL_DTYPES:
        return _ops.dense(input, weight, bias, name, params)
    cd = compute_dtype("fastnn.torch.linear", dt)
    return _ops.dense(cast(input, cd), cast(weight, cd), cast(bias, cd), name, params).to(dt)


# ---- activations, with torch.nn.functional's signatures -------------------------------------

def relu(input, inplace=False):
    return _activation(input, "relu", {}, inplace)


def relu6(input, inplace=False):
    return _activation(input, "relu6", {}, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _activation(input, "leaky_relu", {"negative_slope": float(negative_slope)}, inplace)


def elu(input, alpha=1.0, inplace=False):
    return _activation(input, "elu", {"alpha": float(alpha)}, inplace)


def selu(input, inplace=False):
    return _activation(input, "selu", {}, inplace)


def celu(input, alpha=1.0, inplace=False):
    return _activation(input, "celu", {"alpha": float(alpha)}, inplace)


def gelu(input, approximate="none"):
    return _activation(input, "gelu", {"approximate": approximate})


def silu(input, inplace=False):
    return _activation(input, "silu", {}, inplace)


def mish(input, inplace=False):
    return _activation(input, "mish", {}, inplace)


def sigmoid(input):
    return _activation(input, "sigmoid", {})


def hardsigmoid(input, inplace=False):
    return _activation(input, "hard_sigmoid", {}, inplace)


def hardswish(input, inplace=False):
    return _activation(input, "hard_silu", {}, inplace)


def tanh(input):
    return _activation(input, "tanh", {})


def softplus(input, beta=1.0, threshold=20.0):
    return _activation(input, "softplus", {"beta": float(beta), "threshold": float(threshold)})


def softsign(input):
    return _activation(input, "softsign", {})


def logsigmoid(input):
    return _activation(input, "log_sigmoid", {})


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    return _activation(input, "hard_tanh", {"min_val": float(min_val), "max_val": float(max_val)}, inplace)


def relu_(input):
    return relu(input, inplace=True)


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, inplace=True)


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)


def _softmax(name, input, dim, stacklevel, dtype):
    if dim is None:  # torch's implicit-dim rule and its deprecation warning
        dim = torch.nn.functional._get_softmax_dim(name, input.dim(), stacklevel + 1)
    if dtype is not None:
        input = input.to(dtype)
    return _activation(input, name, {"axis": int(dim)})


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    return _softmax("softmax", input, dim, _stacklevel, dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    return _softmax("log_softmax", input, dim, _stacklevel, dtype)


__all__ = [
    "linear_cross_entropy",
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid",
    "hardsigmoid", "hardswish", "tanh", "softplus", "softsign", "logsigmoid", "hardtanh", "softmax",
    "log_softmax", "relu_", "leaky_relu_", "elu_", "hardtanh_",
    "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "kl_div", "poisson_nll_loss",
]

from ._linear_ce import linear_cross_entropy  # noqa: E402,F401 - fused Linear + cross_entropy
