"""The losses of torch.nn.functional on fastnn kernels, with torch's conventions on top of
the kernels' (shared/API.md, "Framework wrappers"):

- broadcasting: mse, l1, huber and smooth_l1 broadcast input against target with torch's
  UserWarning; kl_div and poisson_nll broadcast silently, as torch does; bce and
  bce_with_logits need one size (ValueError, as torch).
- dtypes: torch's promotion of input and target (float32 with float64 -> float64;
  huber keeps the input's dtype, bce_with_logits the target's, bce refuses a mix);
  float16 / bfloat16 are computed in float32. Class targets: int64 or uint8 as torch,
  and int32 too.
- class axis: torch's axis 1 for N-D inputs of cross_entropy / nll_loss is moved last
  for the kernels (and the gradient moved back by autograd).
- weights: the per-element ``weight`` of mse/l1/huber/bce/bce_with_logits is applied to
  the kernel's "none" loss in torch (so it may require grad); the class ``weight`` of
  cross_entropy / nll_loss and bce_with_logits' ``pos_weight`` go to the kernels and must
  not require grad (TypeError: fastnn computes no gradient for them).
- legacy ``size_average`` / ``reduce`` arguments map to ``reduction`` as in torch.
"""
import warnings

import torch
from torch.nn import _reduction as _Reduction

from . import _ops
from ._bridge import cast, compute_dtype, result_float_dtype

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


def _pointwise(func, name, input, target, reduction, params, out_dtype=None, pos_weight=None):
    """An elementwise loss after torch's promotion and broadcasting; result in out_dtype
    (default: the promoted dtype)."""
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
    and l1 (sum_of_weights), mean(w * l) for huber."""
    if weight.size() != input.size():
        raise ValueError("Weights and input must have the same size.")
    loss = _pointwise(func, name, input, target, "none", params, out_dtype) * weight
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
