"""The numpy side of the tensorflow and jax bridges: what one ``tf.numpy_function`` /
``jax.pure_callback`` runs where the compiled route (TF ops, XLA FFI handlers) does not.
Every function takes and returns numpy arrays (C-contiguous outputs, the inputs' dtype),
calls the public kernel API with Keras' layout (the kernel w is (in, out),
``weight_layout="io"``, no copy) and returns what the compiled op of the same name
returns, in the same order, so one graph serves both routes:

    dense_fwd      x, w, b             -> [y] or [y, z]        y = act(x @ w + b)
    dense_bwd_w    dy, x, w, r         -> [dw] + [db] + [dpre] dpre = dy * act'(r) (not for linear)
    dense_bwd_x    dpre, w             -> dx                   dx = dpre @ w.T
    act_fwd / act_bwd, loss_fwd / loss_bwd (reduction "none", d/d pred)

r is what the activation's backward reads: y, or z (the pre-activation), or nothing
for "linear" (``saves``). dense_bwd_x is a separate stateless call, so tf.function and
XLA prune it where dx is unused, as they prune stock Keras' matmul.
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


def dense_fwd(x, w, b, name, params, has_b):
    """[y] or [y, z]: y = act(x @ w + b), x (..., in), w (in, out), b (out,) (unused unless has_b)."""
    keep_z = saves(name, params) == "z"
    y, z = fastnn.dense_forward(np.asarray(x), np.asarray(w), np.asarray(b) if has_b else None, name,
                                weight_layout="io", keep_z=keep_z, **dict(params))
    return [y, z] if keep_z else [y]


def dense_bwd_w(dy, x, w, r, name, params, from_y, has_b):  # noqa: ARG001 - from_y: saves() says it
    """[dw] + [db] + [dpre]: dpre = dy * act'(r) (not returned for linear: it is dy), dw = x^T dpre, db."""
    dy = np.asarray(dy)
    kind = saves(name, params)
    if kind == "none":
        dpre = dy
    else:
        dpre = fastnn.activation_backward(dy, name, **{"y" if kind == "y" else "x": np.asarray(r)}, **dict(params))
    _, dw, db = fastnn.dense_backward(dpre, np.asarray(x), np.asarray(w), None, None, "linear",
                                      weight_layout="io", need_dx=False, need_db=has_b)
    return [_c(dw)] + ([_c(db)] if has_b else []) + ([] if kind == "none" else [_c(dpre)])


def dense_bwd_x(dpre, w):
    """dx = dpre @ w.T: w (in, out) read as an (out', in') = (in, out) torch-layout weight."""
    return fastnn.dense_forward(np.asarray(dpre), np.asarray(w), None, "linear", weight_layout="oi")[0]


def act_fwd(x, name, params):
    return fastnn.activation_forward(np.asarray(x), name, **dict(params))


def act_bwd(dy, r, name, params, from_y):
    """dx from r = y (from_y) or x."""
    return _c(fastnn.activation_backward(np.asarray(dy), name, **{"y" if from_y else "x": np.asarray(r)},
                                         **dict(params)))


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
