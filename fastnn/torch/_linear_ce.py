"""Linear + cross-entropy without the (N, classes) logits: fastnn.dense_cross_entropy
as a torch autograd op, its functional form and the LinearCrossEntropyLoss module.

For "mean"/"sum" the forward already computes all three gradients (one chunked pass)
and the backward only scales them by the upstream scalar; for "none" the backward runs
the kernel again with the per-row upstream gradient.
"""
import math

import torch
from torch import nn

import fastnn

from ._ops import scope, to_array, to_tensor


def _kernel(x, weight, bias, target, ignore_index, label_smoothing, reduction, chunk_size, need_grads, grad=None):
    with scope(x):
        loss, grads = fastnn.dense_cross_entropy(
            to_array(x), to_array(weight), to_array(bias), to_array(target), reduction=reduction,
            ignore_index=ignore_index, label_smoothing=label_smoothing, chunk_size=chunk_size,
            need_grads=need_grads, grad=None if grad is None else to_array(grad))
    return to_tensor(loss), tuple(to_tensor(g) for g in grads)


class LinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, target, ignore_index, label_smoothing, reduction, chunk_size):
        need = any(ctx.needs_input_grad[:3])
        ctx.args = (ignore_index, label_smoothing, reduction, chunk_size)
        ctx.has_bias = bias is not None
        loss, grads = _kernel(x, weight, bias, target, ignore_index, label_smoothing, reduction, chunk_size,
                              need and reduction != "none")
        if reduction == "none":
            ctx.save_for_backward(x, weight, bias, target)
        else:
            ctx.save_for_backward(*(g if need else None for g in grads))
        return loss

    @staticmethod
    def backward(ctx, grad):
        ignore_index, label_smoothing, reduction, chunk_size = ctx.args
        if reduction == "none":
            x, weight, bias, target = ctx.saved_tensors
            _, (dx, dw, db) = _kernel(x, weight, bias, target, ignore_index, label_smoothing, reduction,
                                      chunk_size, True, grad=grad.contiguous())
        else:
            dx, dw, db = (None if g is None else g * grad for g in ctx.saved_tensors)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dw if need[1] else None,
                db if need[2] and ctx.has_bias else None, None, None, None, None, None)


def linear_cross_entropy(x, weight, bias, target, ignore_index=-100, label_smoothing=0.0, reduction="mean",
                         chunk_size=None):
    """F.cross_entropy(F.linear(x, weight, bias), target, ...) with the last axis of x as
    features and target of shape x.shape[:-1], never holding the logits. weight is
    (classes, in) as nn.Linear's. float32/float64 (x and weight are promoted as torch does)."""
    dtype = torch.promote_types(x.dtype, weight.dtype)
    if bias is not None:
        dtype = torch.promote_types(dtype, bias.dtype)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"linear_cross_entropy: dtype {dtype} is not supported; expected float32 or float64")
    x, weight = x.to(dtype).contiguous(), weight.to(dtype).contiguous()
    bias = None if bias is None else bias.to(dtype).contiguous()
    if target.dtype == torch.uint8:
        target = target.long()
    return LinearCrossEntropyFunction.apply(x, weight, bias, target.contiguous(), ignore_index, label_smoothing,
                                            reduction, chunk_size)


class LinearCrossEntropyLoss(nn.Module):
    """Linear(in_features, num_classes) followed by CrossEntropyLoss, fused: owns the
    classifier weight (num_classes, in_features) and bias like nn.Linear (same init,
    same state_dict keys), takes (input, target) and returns the loss.

    Shape: input (..., in_features), target (...) class indices; output () or (...).

    Examples::

        >>> import torch, fastnn.torch as fnn
        >>> loss = fnn.LinearCrossEntropyLoss(64, 1000)(torch.randn(8, 64), torch.randint(0, 1000, (8,)))
    """

    def __init__(self, in_features, num_classes, bias=True, ignore_index=-100, label_smoothing=0.0,
                 reduction="mean", chunk_size=None, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.in_features, self.num_classes = in_features, num_classes
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing
        self.reduction, self.chunk_size = reduction, chunk_size
        self.weight = nn.Parameter(torch.empty((num_classes, in_features), **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(num_classes, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """nn.Linear's initialization."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input, target):
        return linear_cross_entropy(input, self.weight, self.bias, target, self.ignore_index,
                                    self.label_smoothing, self.reduction, self.chunk_size)

    def extra_repr(self):
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, bias={self.bias is not None}, "
                f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing}")
