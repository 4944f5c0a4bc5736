"""fastnn's kernels as torch.library custom ops, for torch.compile and torch.export.

Each op is opaque to the compiler: a fake implementation gives its output shapes, and
register_autograd makes its backward another opaque op, so a compiled model calls
exactly the kernels eager mode calls. Params travel as one string (_bridge.encode).

    fastnn::dense(x, w, b?, activation, params) -> (y, z)      z: (0,) unless kept
    fastnn::dense_backward(dy, x, w, y?, z?, activation, params, need_dx, need_dw, need_db)
        -> (dx, dw, db)                                          (0,) where not needed
    fastnn::activation(x, name, params) -> y
    fastnn::activation_backward(dy, src, from_y, name, params) -> dx
    fastnn::loss(pred, target, weight?, pos_weight?, name, reduction, params) -> loss
    fastnn::loss_backward(grad, pred, target, weight?, pos_weight?, name, reduction,
                          params, need_target_grad) -> (dpred, dtarget)

Outputs are C-contiguous (the fakes say so; a kernel result that is not, such as dw for
a Fortran-ordered w, is made so).
"""
from typing import Optional

import torch
from torch import Tensor

from . import _kernels as K
from ._bridge import decode, dense_keeps_z, saves_y


def _act(name, params):
    """The resolved activation of an op's (name, params string)."""
    return K.act_spec("fastnn.torch." + name, name, decode(params))


def _loss(name, reduction, params):
    """The resolved loss of an op's (name, reduction, params string)."""
    return K.loss_spec("fastnn.torch." + name, name, reduction, decode(params))


CLASS_LOSSES = ("cross_entropy", "nll")  # "none" gives one value per row (class axis last)


def _empty(like, shape):
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _out(t, like):
    """A kernel result as the op's output: contiguous, or an empty (0,) placeholder."""
    return _empty(like, (0,)) if t is None else t.contiguous()


# ---- dense ------------------------------------------------------------------------------

@torch.library.custom_op("fastnn::dense", mutates_args=())
def dense(x: Tensor, w: Tensor, b: Optional[Tensor], activation: str, params: str) -> tuple[Tensor, Tensor]:
    y, z, _ = K.dense_forward(x, w, b, _act(activation, params))
    return _out(y, x), _out(z, x)


@dense.register_fake
def _(x, w, b, activation, params):
    shape = x.shape[:-1] + w.shape[:1]
    return _empty(x, shape), _empty(x, shape if dense_keeps_z(activation, params) else (0,))


@torch.library.custom_op("fastnn::dense_backward", mutates_args=())
def dense_backward(dy: Tensor, x: Tensor, w: Tensor, y: Optional[Tensor], z: Optional[Tensor], activation: str,
                   params: str, need_dx: bool, need_dw: bool, need_db: bool) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = K.dense_backward(dy, x, w, y, z, _act(activation, params), need_dx, need_dw, need_db)
    return _out(dx, x), _out(dw, x), _out(db, x)


@dense_backward.register_fake
def _(dy, x, w, y, z, activation, params, need_dx, need_dw, need_db):
    return (_empty(x, x.shape if need_dx else (0,)), _empty(x, w.shape if need_dw else (0,)),
            _empty(x, w.shape[:1] if need_db else (0,)))


def _dense_setup(ctx, inputs, output):
    x, w, b, activation, params = inputs
    y, z = output
    ctx.mark_non_differentiable(z)
    keeps_z = dense_keeps_z(activation, params)
    keeps_y = not keeps_z and activation != "linear"
    ctx.save_for_backward(x, w, y if keeps_y else None, z if keeps_z else None)
    ctx.activation, ctx.params, ctx.has_b = activation, params, b is not None


def _dense_backward(ctx, dy, _dz):
    x, w, y, z = ctx.saved_tensors
    need = ctx.needs_input_grad
    need_db = ctx.has_b and need[2]
    dx, dw, db = dense_backward(dy, x, w, y, z, ctx.activation, ctx.params, need[0], need[1], need_db)
    return (dx if need[0] else None), (dw if need[1] else None), (db if need_db else None), None, None


dense.register_autograd(_dense_backward, setup_context=_dense_setup)


# ---- activations --------------------------------------------------------------------------

@torch.library.custom_op("fastnn::activation", mutates_args=())
def activation(x: Tensor, name: str, params: str) -> Tensor:
    return K.activation_forward(x, _act(name, params)).contiguous()


@activation.register_fake
def _(x, name, params):
    return _empty(x, x.shape)


@torch.library.custom_op("fastnn::activation_backward", mutates_args=())
def activation_backward(dy: Tensor, src: Tensor, from_y: bool, name: str, params: str) -> Tensor:
    return K.activation_backward(dy, src, from_y, _act(name, params)).contiguous()


@activation_backward.register_fake
def _(dy, src, from_y, name, params):
    return _empty(dy, dy.shape)


def _activation_setup(ctx, inputs, output):
    x, name, params = inputs
    ctx.from_y = saves_y(name, params)
    ctx.save_for_backward(output if ctx.from_y else x)
    ctx.name, ctx.params = name, params


def _activation_backward(ctx, dy):
    (src,) = ctx.saved_tensors
    return activation_backward(dy, src, ctx.from_y, ctx.name, ctx.params), None, None


activation.register_autograd(_activation_backward, setup_context=_activation_setup)


# ---- losses -----------------------------------------------------------------------------

@torch.library.custom_op("fastnn::loss", mutates_args=())
def loss(pred: Tensor, target: Tensor, weight: Optional[Tensor], pos_weight: Optional[Tensor], name: str,
         reduction: str, params: str) -> Tensor:
    return K.loss_forward(pred, target, _loss(name, reduction, params), reduction, weight, pos_weight)[0].contiguous()


@loss.register_fake
def _(pred, target, weight, pos_weight, name, reduction, params):
    if reduction != "none":
        return _empty(pred, ())
    return _empty(pred, pred.shape[:-1] if name in CLASS_LOSSES else pred.shape)


@torch.library.custom_op("fastnn::loss_backward", mutates_args=())
def loss_backward(grad: Tensor, pred: Tensor, target: Tensor, weight: Optional[Tensor], pos_weight: Optional[Tensor],
                  name: str, reduction: str, params: str, need_target_grad: bool) -> tuple[Tensor, Tensor]:
    dpred, dtarget = K.loss_backward(grad, pred, target, _loss(name, reduction, params), reduction, weight,
                                     pos_weight, need_target_grad)
    return dpred.contiguous(), _out(dtarget, pred)


@loss_backward.register_fake
def _(grad, pred, target, weight, pos_weight, name, reduction, params, need_target_grad):
    return _empty(pred, pred.shape), _empty(pred, target.shape if need_target_grad else (0,))


def _loss_setup(ctx, inputs, output):
    pred, target, weight, pos_weight, name, reduction, params = inputs
    ctx.save_for_backward(pred, target, weight, pos_weight)
    ctx.name, ctx.reduction, ctx.params = name, reduction, params


def _loss_backward(ctx, grad):
    pred, target, weight, pos_weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    dpred, dtarget = loss_backward(grad, pred, target, weight, pos_weight, ctx.name, ctx.reduction, ctx.params,
                                   need[1])
    return (dpred if need[0] else None), (dtarget if need[1] else None), None, None, None, None, None


loss.register_autograd(_loss_backward, setup_context=_loss_setup)
