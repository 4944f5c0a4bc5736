"""Autograd for the fastnn kernels, and which path each call takes.

- Eager, some input requires grad: a ``torch.autograd.Function``.
- Under torch.compile / torch.export (``torch.compiler.is_compiling()``): the custom ops
  of ``_library`` (fastnn::dense, ...), which the compiler sees as one opaque op each,
  forward and backward, with fake (meta) implementations: no graph break.
- Nothing requires grad, or grad mode is off: the kernel directly, no autograd node.

Why not the custom ops in eager mode too: their dispatcher and autograd registration
cost more per call. Measured per call (us, best of 7 runs of 4000 calls; one torch thread,
2-core EPYC VM; x (8, 16), w (16, 16); loss on (8, 1)):

    case                      this eager path   custom op   torch   fastnn kernel alone
    linear+relu fwd, no grad        24              51        4.3          16
    linear+relu fwd, grad           41              91        6.7
    linear+relu fwd+bwd            190             293       69
    relu fwd, no grad               12              25        1.2           8
    relu fwd+bwd                   119             186       29
    bce fwd, no grad                30              56        6.0          23
    bce fwd+bwd                    166             264       37

Of the ~120 us of a relu fwd+bwd, ~40 are torch's own cost of a Python autograd.Function
(an empty one costs that much), ~20 the two kernel calls (fastnn's argument checks),
~5 once_differentiable and the rest the conversions and this module's bookkeeping.

Backward saves only what the kernel needs: x and w, plus y or the pre-activation z for
Dense (whichever dense_forward returns); y or x for activations (saved_for_backward).
Backward is once-differentiable: double backward raises instead of returning zeros.
"""
import torch
from torch.autograd.function import once_differentiable

from . import _kernels as K
from . import _library
from ._bridge import encode, saves_y

FORCE_LIBRARY = False  # tests set it to run the custom-op path in eager mode


def _library_path():
    return FORCE_LIBRARY or torch.compiler.is_compiling()


def _recording(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# ---- Dense ------------------------------------------------------------------------------

class DenseFunction(torch.autograd.Function):
    """y = act(x @ w.T + b): x (..., in), w (out, in), b (out,) or None."""

    @staticmethod
    def forward(ctx, x, w, b, activation, params):
        y, z = K.dense_forward(x, w, b, activation, params)
        ctx.activation, ctx.params, ctx.has_b = activation, params, b is not None
        ctx.save_for_backward(x, w, y if z is None and activation != "linear" else None, z)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, w, y, z = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, dw, db = K.dense_backward(dy, x, w, y, z, ctx.activation, ctx.params, need[0], need[1],
                                      ctx.has_b and need[2])
        return dx, dw, db, None, None


def dense(x, w, b, activation, params):
    """y = act(x @ w.T + b) on the path this call needs (see the module docstring)."""
    if _library_path():
        return _library.dense(x, w, b, activation, encode(params))[0]
    if _recording(x, w, b):
        return DenseFunction.apply(x, w, b, activation, params)
    return K.dense_forward(x, w, b, activation, params)[0]


# ---- activations --------------------------------------------------------------------------

class ActivationFunction(torch.autograd.Function):
    """y = f(x), elementwise (softmax / log_softmax along params["axis"])."""

    @staticmethod
    def forward(ctx, x, name, params, from_y):
        y = K.activation_forward(x, name, params)
        ctx.name, ctx.params, ctx.from_y = name, params, from_y
        ctx.save_for_backward(y if from_y else x)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (src,) = ctx.saved_tensors
        return K.activation_backward(dy, src, ctx.from_y, ctx.name, ctx.params), None, None, None


def activation(x, name, params):
    if _library_path():
        return _library.activation(x, name, encode(params))
    if _recording(x):
        return ActivationFunction.apply(x, name, params, saves_y(name, encode(params)))
    return K.activation_forward(x, name, params)


# ---- losses ---------------------------------------------------------------------------

class LossFunction(torch.autograd.Function):
    """loss(pred, target) with fastnn's conventions (class axis last); weight and
    pos_weight are constants here (the functional refuses ones that require grad)."""

    @staticmethod
    def forward(ctx, pred, target, weight, pos_weight, name, reduction, params):
        ctx.name, ctx.reduction, ctx.params = name, reduction, params
        ctx.save_for_backward(pred, target, weight, pos_weight)
        return K.loss_forward(pred, target, name, reduction, params, weight, pos_weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        pred, target, weight, pos_weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        dpred, dtarget = K.loss_backward(grad, pred, target, ctx.name, ctx.reduction, ctx.params, weight,
                                         pos_weight, need[1])
        return (dpred if need[0] else None), dtarget, None, None, None, None, None


def loss(pred, target, name, reduction, params, weight=None, pos_weight=None):
    if _library_path():
        return _library.loss(pred, target, weight, pos_weight, name, reduction, encode(params))
    if _recording(pred, target):
        return LossFunction.apply(pred, target, weight, pos_weight, name, reduction, params)
    return K.loss_forward(pred, target, name, reduction, params, weight, pos_weight)
