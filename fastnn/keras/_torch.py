"""torch bridge: the fastnn.torch ops, which are autograd Functions already (and custom
ops fastnn::* under torch.compile, so ``jit_compile=True`` works). Keras' kernel is
(in, out): fastnn.torch.linear takes its transpose, an (out, in) Fortran-order view
the kernels read without a copy; the gradient comes back through the same view."""

import torch

from fastnn.torch import functional as F


def dense(x, w, b, name, params):
    """act(x @ w + b): x (..., in), w (in, out), b (out,) or None; one float dtype."""
    return F.linear(x, w.T, b, activation=name, **dict(params))

def activation(x, name, params):
    return F.activation(x, name, **dict(params))

def loss(pred, target, name, params, none_shape):
    """The "none" loss (per element, or per row for cross_entropy); d/d pred only."""
    target = target.detach()
    if target.is_floating_point() and target.dtype != pred.dtype:
        target = target.to(pred.dtype)
    if name == "bce" and not _probabilities(pred, target):
        # the kernel refuses NaN / out-of-range probabilities (torch's rule); Keras' BCE
        # takes them (a loss-scale overflow): torch's formula here, never an exception
        return -(target * torch.log(pred).clamp(min=-100) + (1 - target) * torch.log1p(-pred).clamp(min=-100))
    return F.loss(pred, target, name, "none", **dict(params))


def _probabilities(pred, target):
    return bool(((pred >= 0) & (pred <= 1)).all() and ((target >= 0) & (target <= 1)).all())

def logits_of(output, op_type):  # noqa: ARG001 - Keras' torch losses never use the logits
    return None

