"""torch.nn.functional's names and signatures on fastnn kernels: linear (with a fused
activation), the activations and the losses, with torch's conventions on top of the
kernels'.

    >>> import torch, fastnn.torch.functional as F
    >>> x, w, b = torch.randn(32, 64), torch.randn(16, 64), torch.zeros(16)
    >>> y = F.linear(x, w, b, activation="gelu", approximate="tanh")   # gelu(x @ w.T + b)

dtypes: float32, float64, float16 and bfloat16 run on the kernels, natively (16-bit
inputs are widened to float32 in registers or small blocks, products and reductions
accumulate in float32, each output is rounded once to the input dtype, as torch);
other dtypes raise TypeError (sigmoid, tanh and softsign first promote integers to the
default float dtype, as torch does).

torch.autocast is honoured as for the stock op each function replaces: linear in the
autocast dtype, the losses in float32, the activations in their input's dtype (on CUDA
softplus, softmax and log_softmax in float32); the one declaration of that policy is
fastnn/torch/_autocast.py.

``inplace=True`` is honoured: the result is written into the input, which is returned,
as in torch (the kernels compute out of place, so it saves no memory; when autograd
needs the input for the backward of that activation it is copied first).
"""
import warnings

import torch
from torch.nn import _reduction as _Reduction

from . import _autocast, _ops

# Every floating dtype runs on the kernels in its own dtype (16-bit ones natively: float32
# arithmetic inside, one rounding per output).
LOW_PRECISION = (torch.float16, torch.bfloat16)
KERNEL_DTYPES = (torch.float32, torch.float64) + LOW_PRECISION
FLOAT_DTYPES = KERNEL_DTYPES


def compute_dtype(func, dtype):
    """The dtype the kernels run in for a result of `dtype`: itself, if a kernel dtype."""
    if dtype in KERNEL_DTYPES:
        return dtype
    raise TypeError(f"{func}: got dtype {dtype}; expected float32, float64, float16 or bfloat16")


def result_float_dtype(func, *tensors):
    """torch's promoted dtype of the tensors, which must be a floating dtype."""
    dt = tensors[0].dtype
    for t in tensors[1:]:
        dt = torch.promote_types(dt, t.dtype)
    if dt not in FLOAT_DTYPES:
        names = ", ".join(str(t.dtype) for t in tensors)
        raise TypeError(f"{func}: inputs of dtype {names} promote to {dt}; expected a floating dtype "
                        f"(float32, float64, float16 or bfloat16)")
    return dt


def cast(t, dtype):
    """t as dtype (differentiable; no copy when it already is); None stays None."""
    return t if t is None or t.dtype == dtype else t.to(dtype)

# torch's functional names of activations whose fastnn name differs; accepted as
# linear(activation=...) too.
TORCH_NAMES = {"hardsigmoid": "hard_sigmoid", "hardswish": "hard_silu", "logsigmoid": "log_sigmoid",
               "hardtanh": "hard_tanh"}
_INT_TO_FLOAT = ("sigmoid", "tanh", "softsign")  # torch promotes integer inputs of these


def _activation(x, name, params, inplace=False):
    """The fastnn activation `name` on x with torch's dtype rules and inplace semantics."""
    if not x.is_floating_point() and name in _INT_TO_FLOAT and not x.is_complex():
        x = x.to(torch.get_default_dtype())
    if not inplace:
        (x,) = _autocast.cast_inputs(name, f"fastnn.torch.{name}", x)
    dt = x.dtype
    if inplace:
        # autograd may need x itself in backward: run on a copy, then overwrite x (under
        # torch.compile always: functionalization removes the copy)
        keep = torch.is_grad_enabled() and x.requires_grad and (torch.compiler.is_compiling()
                                                                 or not _ops.saves_y(name, params))
        return x.copy_(_activation(x.clone() if keep else x, name, params))
    compute_dtype(f"fastnn.torch.{name}", dt)
    return _ops.activation(x, name, params)


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
    share one dtype, as torch.nn.functional.linear requires (under torch.autocast they are
    cast to the autocast dtype first, as torch's linear is)."""
    name, params = dense_activation(activation, params)
    (input, weight, bias), out_dtype = _autocast.linear_inputs(name, input, weight, bias)
    dt = input.dtype
    if weight.dtype != dt or (bias is not None and bias.dtype != dt):
        arg, t = ("weight", weight) if weight.dtype != dt else ("bias", bias)
        raise RuntimeError(f"fastnn.torch.linear: input is {dt} but {arg} is {t.dtype}; expected "
                           f"one dtype (as torch.nn.functional.linear)")
    compute_dtype("fastnn.torch.linear", dt)
    y = _ops.dense(input, weight, bias, name, params)
    return y if out_dtype is None else cast(y, out_dtype)


# ---- activations, with torch.nn.functional's signatures -------------------------------------

def activation(input, name, inplace=False, **params):
    """Any fastnn activation by name (``fastnn.ACTIVATIONS``), its parameters as keywords:
    ``activation(x, "gelu", approximate="tanh")``; softmax / log_softmax take ``axis``."""
    return _activation(input, name, params, inplace)


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


# ---- losses: torch's conventions on top of the kernels' ---------------------------------------
# - broadcasting: mse, l1, huber and smooth_l1 broadcast input against target with torch's
#   UserWarning; kl_div and poisson_nll broadcast silently, as torch does; bce and
#   bce_with_logits need one size (ValueError, as torch).
# - dtypes: torch's promotion of input and target (float32 with float64 -> float64;
#   huber keeps the input's dtype, bce_with_logits the target's, bce refuses a mix);
#   float16 / bfloat16 run natively; under torch.autocast the inputs are cast to float32
#   first, as torch's autocast does for every loss. Class targets: int64 or uint8 as torch,
#   and int32 too.
# - class axis: torch's axis 1 for N-D inputs of cross_entropy / nll_loss is moved last
#   for the kernels (and the gradient moved back by autograd).
# - weights: the per-element ``weight`` of mse/l1/huber/bce/bce_with_logits is applied to
#   the kernel's "none" loss in torch (so it may require grad); the class ``weight`` of
#   cross_entropy / nll_loss and bce_with_logits' ``pos_weight`` go to the kernels and must
#   not require grad (TypeError: fastnn computes no gradient for them).
# - legacy ``size_average`` / ``reduce`` arguments map to ``reduction`` as in torch.

_CLASS_TARGET_DTYPES = (torch.int64, torch.int32, torch.uint8)


def _reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return _Reduction.legacy_get_string(size_average, reduce)
    return reduction


def _warn_size(input, target):
    if target.size() != input.size():
        warnings.warn(f"Using a target size ({target.size()}) that is different to the input size "
                      f"({input.size()}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=3)


def _constant(func, argname, t):
    if t is not None and t.requires_grad and torch.is_grad_enabled():
        raise TypeError(f"{func}: {argname} requires grad, but fastnn computes no gradient for {argname}; "
                        f"pass {argname}.detach()")


def _pointwise(func, name, input, target, reduction, params, out_dtype=None, pos_weight=None, autocast_name=None):
    """An elementwise loss after torch's promotion and broadcasting (and autocast's casts,
    by the policy of autocast_name, default name); result in out_dtype (default: the
    promoted dtype)."""
    cast_in = _autocast.cast_inputs(autocast_name or name, func, input, target, pos_weight)
    if cast_in[0] is not input or cast_in[1] is not target:
        out_dtype = None  # autocast cast them: the stock op's result has the promoted (float32) dtype
    input, target, pos_weight = cast_in
    dt = input.dtype
    if dt is target.dtype and (dt is torch.float32 or dt is torch.float64):  # the common case, no promotion
        cd, x, t = dt, input, target
    else:
        dt = result_float_dtype(func, input, target)
        cd = compute_dtype(func, dt)
        x, t = cast(input, cd), cast(target, cd)
    if x.shape != t.shape:
        x, t = torch.broadcast_tensors(x, t)
    out = _ops.loss(x, t, name, reduction, params, pos_weight=cast(pos_weight, cd))
    return cast(out, out_dtype or dt)


def _reduce(loss, reduction, denominator=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if denominator is None else loss.sum() / denominator
    raise ValueError(f"Invalid reduction mode: {reduction}. Expected one of 'none', 'mean', 'sum'.")


def _weighted(func, name, input, target, weight, reduction, params, sum_of_weights, out_dtype=None):
    """torch's per-element weighted mse / l1 / huber: mean is sum(w * l) / sum(w) for mse
    and l1 (sum_of_weights), mean(w * l) for huber. Under autocast, as torch: huber's
    elementwise loss in float32; weighted mse / l1 are composites of torch ops outside
    autocast's lists (their reductions, torch ops here too, follow autocast's own rules)."""
    if weight.size() != input.size():
        raise ValueError("Weights and input must have the same size.")
    loss = _pointwise(func, name, input, target, "none", params, out_dtype,
                      autocast_name=name + "_weighted" if sum_of_weights else None) * weight
    return _reduce(loss, reduction, weight.sum() if sum_of_weights else None)


# ---- regression losses ------------------------------------------------------------------

def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    _warn_size(input, target)
    reduction = _reduction(size_average, reduce, reduction)
    if weight is not None:
        return _weighted("fastnn.torch.mse_loss", "mse", input, target, weight, reduction, {}, True)
    return _pointwise("fastnn.torch.mse_loss", "mse", input, target, reduction, {})


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    _warn_size(input, target)
    reduction = _reduction(size_average, reduce, reduction)
    if weight is not None:
        return _weighted("fastnn.torch.l1_loss", "mae", input, target, weight, reduction, {}, True)
    return _pointwise("fastnn.torch.l1_loss", "mae", input, target, reduction, {})


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    _warn_size(input, target)
    params = {"delta": float(delta)}
    if weight is not None:
        return _weighted("fastnn.torch.huber_loss", "huber", input, target, weight, reduction, params, False,
                         input.dtype)
    return _pointwise("fastnn.torch.huber_loss", "huber", input, target, reduction, params, input.dtype)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    _warn_size(input, target)
    reduction = _reduction(size_average, reduce, reduction)
    if beta == 0.0:  # torch's l1_loss then
        return _pointwise("fastnn.torch.smooth_l1_loss", "mae", input, target, reduction, {})
    return _pointwise("fastnn.torch.smooth_l1_loss", "smooth_l1", input, target, reduction, {"beta": float(beta)})


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    if size_average is not None or reduce is not None:
        reduction = _Reduction.legacy_get_string(size_average, reduce)
    elif reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    params = {"log_target": bool(log_target)}
    if reduction == "batchmean" and input.dim() != 0 and input.shape != target.shape:
        # torch divides by input.size(0), not by the broadcast batch
        return _pointwise("fastnn.torch.kl_div", "kl_div", input, target, "sum", params) / input.size(0)
    return _pointwise("fastnn.torch.kl_div", "kl_div", input, target, reduction, params)


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    reduction = _reduction(size_average, reduce, reduction)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(reduction + " is not a valid value for reduction")
    params = {"log_input": bool(log_input), "full": bool(full), "eps": float(eps)}
    return _pointwise("fastnn.torch.poisson_nll_loss", "poisson_nll", input, target, reduction, params)


# ---- binary classification ------------------------------------------------------------

def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    F = "fastnn.torch.binary_cross_entropy"
    reduction = _reduction(size_average, reduce, reduction)
    _Reduction.get_enum(reduction)
    if target.size() != input.size():
        raise ValueError(f"Using a target size ({target.size()}) that is different to the input size "
                         f"({input.size()}) is deprecated. Please ensure they have the same size.")
    if target.dtype != input.dtype:
        raise RuntimeError(f"{F}: target has dtype {target.dtype} but input is {input.dtype}; expected one "
                           f"dtype (as torch.nn.functional.binary_cross_entropy)")
    if weight is None:
        return _pointwise(F, "bce", input, target, reduction, {})
    if torch.broadcast_shapes(target.size(), weight.size()) != input.size():
        raise ValueError(f"{F}: weight of size {weight.size()} does not broadcast to the input size {input.size()}")
    loss = _pointwise(F, "bce", input, target, "none", {})
    return _reduce(loss * cast(weight, loss.dtype), reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    F = "fastnn.torch.binary_cross_entropy_with_logits"
    reduction = _reduction(size_average, reduce, reduction)
    _Reduction.get_enum(reduction)
    if target.size() != input.size():
        raise ValueError(f"Target size ({target.size()}) must be the same as input size ({input.size()})")
    if not target.is_floating_point():
        raise RuntimeError(f"{F}: target has dtype {target.dtype}; expected a floating dtype (torch's result has "
                           f"the target's dtype)")
    _constant(F, "pos_weight", pos_weight)
    # under autocast every tensor argument goes to float32 first (torch's float32 op), so
    # the result's dtype (the target's) is float32 too
    input, target, weight, pos_weight = _autocast.cast_inputs("bce_with_logits", F, input, target, weight, pos_weight)
    if weight is None:
        return _pointwise(F, "bce_with_logits", input, target, reduction, {}, target.dtype, pos_weight)
    if torch.broadcast_shapes(input.size(), weight.size()) != input.size():
        raise RuntimeError(f"{F}: weight of size {weight.size()} does not broadcast to the input size "
                           f"{input.size()}")
    loss = _pointwise(F, "bce_with_logits", input, target, "none", {}, None, pos_weight)
    return cast(_reduce(loss * cast(weight, loss.dtype), reduction), target.dtype)


# ---- classification over C classes ------------------------------------------------------

def _class_loss(F, name, input, target, weight, reduction, params):
    """cross_entropy / nll with torch's class axis (1 for N-D input) moved last."""
    _constant(F, "weight", weight)
    input, target, weight = _autocast.cast_inputs(name, F, input, target, weight)
    if weight is not None and weight.dtype != input.dtype:
        raise RuntimeError(f"{F}: weight has dtype {weight.dtype} but input is {input.dtype}; expected one dtype "
                           f"(as torch)")
    probs = target.is_floating_point()
    if probs:
        dt = result_float_dtype(F, input, target)
        params = dict(params, ignore_index=-100)  # torch ignores ignore_index with probability targets
    else:
        dt = result_float_dtype(F, input)
        if target.dtype not in _CLASS_TARGET_DTYPES:
            raise RuntimeError(f"{F}: target has dtype {target.dtype}; expected int64 or uint8 class indices "
                               f"(or int32), or float class probabilities")
        if target.dtype == torch.uint8:
            target = target.long()
    if input.dim() >= 3:
        input = input.movedim(1, -1)
        if probs:
            target = target.movedim(1, -1)
    cd = compute_dtype(F, dt)
    out = _ops.loss(cast(input, cd), cast(target, cd) if probs else target, name, reduction, params,
                    weight=cast(weight, cd))
    return cast(out, dt)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    reduction = _reduction(size_average, reduce, reduction)
    params = {"ignore_index": int(ignore_index), "label_smoothing": float(label_smoothing)}
    return _class_loss("fastnn.torch.cross_entropy", "cross_entropy", input, target, weight, reduction, params)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    reduction = _reduction(size_average, reduce, reduction)
    return _class_loss("fastnn.torch.nll_loss", "nll", input, target, weight, reduction,
                       {"ignore_index": int(ignore_index)})


def loss(input, target, name, reduction="mean", **params):
    """Any fastnn loss by name (``fastnn.LOSSES``) with fastnn's conventions (class axis
    last, no broadcasting), its scalar parameters as keywords."""
    return _ops.loss(input, target, name, reduction, params)


__all__ = [
    "linear_cross_entropy",
    "activation", "loss", "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid",
    "hardsigmoid", "hardswish", "tanh", "softplus", "softsign", "logsigmoid", "hardtanh", "softmax",
    "log_softmax", "relu_", "leaky_relu_", "elu_", "hardtanh_",
    "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "kl_div", "poisson_nll_loss",
]

from ._linear_ce import linear_cross_entropy  # noqa: E402,F401 - fused Linear + cross_entropy
