"""JAX bridge: fastnn kernels inside jax.grad and jax.jit (Keras' fit jits its step).

On a CPU jax the ops are XLA FFI custom calls (_jax_ffi.py: the compiled step never
leaves XLA). Otherwise (a GPU jax, no compiler, FASTNN_JAX_FFI=0, calls the handlers do
not take) each op is a ``jax.custom_vjp`` whose forward and backward run the kernels through
``jax.pure_callback`` (``vmap_method="sequential"``: under vmap the kernel runs once
per batch element, since a batched weight is not a Dense kernel). pure_callback is pure:
XLA removes a call whose result is unused (the first layer's dx). The callbacks receive
host arrays that np.asarray views without a copy.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _jax_ffi as F, _numpy as N

_VMAP = "sequential"


def _cb(fn, shapes, *args):
    return jax.pure_callback(fn, shapes, *args, vmap_method=_VMAP)


def _sds(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


# ---- Dense ------------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _dense(x, w, b, name, params):
    return _dense_fwd(x, w, b, name, params)[0]


def _dense_fwd(x, w, b, name, params):
    kind = N.saves(name, params)
    y_sds = _sds(x.shape[:-1] + w.shape[-1:], x.dtype)
    outs = _cb(lambda x, w, b: N.dense_fwd(x, w, None if np.ndim(b) == 0 else b, name, params),
               [y_sds] * (2 if kind == "z" else 1), x, w, _or_empty(b, x.dtype))
    y = outs[0]
    r = None if kind == "none" else outs[-1]
    return y, (x, w, r, b)


def _or_empty(b, dtype):
    """None cannot cross a callback: a 0-d placeholder stands for it."""
    return jnp.zeros((), dtype) if b is None else b


def _dense_bwd(name, params, res, dy):
    x, w, r, b = res
    has_b = b is not None
    shapes = [_sds(dy.shape, dy.dtype), _sds(w.shape, w.dtype)] + ([_sds(w.shape[-1:], w.dtype)] if has_b else [])
    g = _cb(lambda dy, x, w, r: N.dense_bwd_w(dy, x, w, r, has_b, name, params), shapes, dy, x, w,
            dy if r is None else r)
    dx = _cb(N.dense_bwd_x, _sds(x.shape, x.dtype), g[0], w)
    return dx, g[1], (g[2] if has_b else None)


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense(x, w, b, name, params):
    """act(x @ w + b): x (..., in), w (in, out), b (out,) or None; one float dtype."""
    if F.usable() and F.act_last_axis(name, params, len(x.shape)):
        return F.dense(x, w, b, name, params)
    return _dense(x, w, b, name, params)


# ---- activations ---------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _activation(x, name, params):
    return _cb(lambda x: N.act_fwd(x, name, params), _sds(x.shape, x.dtype), x)


def _activation_fwd(x, name, params):
    y = _activation(x, name, params)
    return y, (y if N.saves(name, params) == "y" else x)


def _activation_bwd(name, params, r, dy):
    return (_cb(lambda dy, r: N.act_bwd(dy, r, name, params), _sds(dy.shape, dy.dtype), dy, r),)


_activation.defvjp(_activation_fwd, _activation_bwd)


def activation(x, name, params):
    if F.usable() and F.act_last_axis(name, params, len(x.shape)):
        return F.activation(x, name, params)
    return _activation(x, name, params)


# ---- losses -----------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _loss(pred, target, name, params, none_shape):
    return _cb(lambda p, t: N.loss_fwd(p, t, name, params), _sds(none_shape, pred.dtype), pred, target)


def _loss_fwd(pred, target, name, params, none_shape):
    return _loss(pred, target, name, params, none_shape), (pred, target)


def _loss_bwd(name, params, none_shape, res, g):
    pred, target = res
    dpred = _cb(lambda g, p, t: N.loss_bwd(g, p, t, name, params), _sds(pred.shape, pred.dtype), g, pred, target)
    # targets are constants (Keras' labels): a zero cotangent (float0 for integer labels)
    if jnp.issubdtype(target.dtype, jnp.floating):
        return dpred, jnp.zeros_like(target)
    return dpred, np.zeros(target.shape, jax.dtypes.float0)


_loss.defvjp(_loss_fwd, _loss_bwd)


def loss(pred, target, name, params, none_shape):
    """The "none" loss (per element, or per row for cross_entropy); d/d pred only."""
    if F.usable() and F.loss_serves(name, pred, target):
        return F.loss(pred, target, name, params, none_shape)
    return _loss(pred, target, name, params, tuple(none_shape))


def logits_of(output, op_type):  # noqa: ARG001 - Keras' jax losses never use the logits
    return None
