"""The numpy side of the tensorflow and jax bridges: what one ``tf.numpy_function`` /
``jax.pure_callback`` runs. Every function takes and returns numpy arrays (C-contiguous
outputs, the inputs' dtype) and calls the public kernel API with Keras' layout: the
kernel w is (in, out) (``weight_layout="io"``, no copy).

Dense, split so that a graph can drop what it does not need (the first layer's dx):

    forward        y, [z] = dense_fwd(x, w, b)             y = act(x @ w + b)
    backward  dpre, dw, db = dense_bwd_w(dy, x, w, r)       dpre = dy * act'(r)
                        dx = dense_bwd_x(dpre, w)           dx = dpre @ w.T

r is what the activation's backward reads: y, or z (the pre-activation), or nothing
for "linear" (``saves``). dense_bwd_x is a separate stateless callback, so tf.function
and XLA prune it where dx is unused, as they prune stock Keras' matmul.
"""
import functools

import numpy as np

import fastnn


@functools.lru_cache(maxsize=256)
def saves(name, params):
    """"none" (linear), "y" or "z": what the backward of Dense + `name` reads."""
    if name == "linear":
        return "none"
    return "y" if "y" in fastnn.saved_for_backward(name, **dict(params)) else "z"


def _c(a):
    return None if a is None else np.ascontiguousarray(a)


def dense_fwd(x, w, b, name, params):
    """[y] or [y, z]: y = act(x @ w + b), x (..., in), w (in, out), b (out,) or None."""
    y, z = fastnn.dense_forward(np.asarray(x), np.asarray(w), None if b is None else np.asarray(b), name,
                                weight_layout="io", keep_z=saves(name, params) == "z", **dict(params))
    return [y] if saves(name, params) != "z" else [y, z]


def dense_bwd_w(dy, x, w, r, has_b, name, params):
    """[dpre, dw] + [db]: dpre = dy * act'(r) (dy itself for linear), dw = x^T dpre, db."""
    dy = np.asarray(dy)
    kind = saves(name, params)
    if kind == "none":
        dpre = dy
    elif kind == "y":
        dpre = fastnn.activation_backward(dy, name, y=np.asarray(r), **dict(params))
    else:
        dpre = fastnn.activation_backward(dy, name, x=np.asarray(r), **dict(params))
    _, dw, db = fastnn.dense_backward(dpre, np.asarray(x), np.asarray(w), None, None, "linear",
                                      weight_layout="io", need_dx=False, need_db=has_b)
    return [_c(dpre), _c(dw)] + ([_c(db)] if has_b else [])


def dense_bwd_x(dpre, w):
    """dx = dpre @ w.T: w (in, out) read as an (out', in') = (in, out) torch-layout weight."""
    return fastnn.dense_forward(np.asarray(dpre), np.asarray(w), None, "linear", weight_layout="oi")[0]


def act_fwd(x, name, params):
    return fastnn.activation_forward(np.asarray(x), name, **dict(params))


def act_bwd(dy, r, name, params):
    """dx from r = y or x, as saves() says."""
    key = "y" if saves(name, params) == "y" else "x"
    return _c(fastnn.activation_backward(np.asarray(dy), name, **{key: np.asarray(r)}, **dict(params)))


# ---- losses: reduction "none", gradient with respect to pred only ---------------------------

def _target(pred, target):
    target = np.asarray(target)
    return target if target.dtype.kind in "iu" else target.astype(pred.dtype, copy=False)


def _bce_outside_kernel(pred, target):
    """Keras' probability BCE takes any float input; the kernel refuses NaN predictions and
    targets outside [0, 1] (torch's rule). Those calls (a loss-scale overflow, odd
    labels) are computed here with the same formula, so they never raise."""
    with np.errstate(all="ignore"):
        ok = not (np.isnan(pred).any() or (pred < 0).any() or (pred > 1).any()
                  or np.isnan(target).any() or (target < 0).any() or (target > 1).any())
    return not ok


def loss_fwd(pred, target, name, params):
    pred = np.asarray(pred)
    target = _target(pred, target)
    if name == "bce" and _bce_outside_kernel(pred, target):
        with np.errstate(all="ignore"):
            return _c(-(target * np.maximum(np.log(pred), -100) + (1 - target) * np.maximum(np.log1p(-pred), -100)))
    return _c(fastnn.loss_forward(pred, target, name, reduction="none", **dict(params)))


def loss_bwd(g, pred, target, name, params):
    pred, g = np.asarray(pred), np.asarray(g)
    target = _target(pred, target)
    if name == "bce" and _bce_outside_kernel(pred, target):
        with np.errstate(all="ignore"):
            return _c(g * (pred - target) / np.maximum(pred * (1 - pred), 1e-12))
    return _c(fastnn.loss_backward(pred, target, name, reduction="none", grad=g, **dict(params)))
