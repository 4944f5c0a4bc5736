"""What the compiled bridges (_jax_ffi.py, _tf_ops.py) pass their handlers / ops besides
arrays: a resolved activation or loss as plain numbers (the C++ enum code and the
parameters the kernels take), and which calls the handlers serve. Each bridge encodes
them in its framework's attribute types."""
import functools

from fastnn import _checks as C, _registry as R


@functools.lru_cache(maxsize=256)
def activation(name, params):
    """(code, the 7 numeric parameters, approximate, spec) of activation `name`."""
    spec = C.activation_spec_cached("fastnn.keras." + name, name, dict(params))
    num = spec.numeric
    return spec.code, tuple(float(v) for v in num[:7]), int(num[7]), spec


def last_axis(name, params, ndim):
    """True if the activation is elementwise or runs along the last axis (what the
    handlers do)."""
    axis = activation(name, params)[3].axis
    return axis is None or (ndim is not None and ndim > 0 and axis % ndim == ndim - 1)


@functools.lru_cache(maxsize=256)
def loss(name, params):
    """The loss as csrc/host/ops.h's LossAttrs: kind (an elementwise code, -1
    cross_entropy, -2 nll) and the C++ backend's own parameter defaults."""
    from fastnn._backends import cpp

    p = dict(params)
    e = cpp._loss_params(C.loss_spec_cached("fastnn.keras." + name, name, p))
    kind = {"cross_entropy": -1, "nll": -2}.get(name)
    return {"kind": R.ELEMENTWISE_LOSSES.index(name) if kind is None else kind,
            "delta": float(e["delta"]), "beta": float(e["beta"]), "eps": float(e["eps"]),
            "log_target": bool(e["log_target"]), "log_input": bool(e["log_input"]), "full": bool(e["full"]),
            "ignore_index": int(p.get("ignore_index", -100)), "label_smoothing": float(p.get("label_smoothing", 0.0))}


def loss_serves(name, pred_shape, target_shape, same_dtype, int_labels):
    """True for the calls the handlers take: elementwise losses with a target of pred's
    dtype and shape, class losses with int32 / int64 labels of shape pred.shape[:-1]
    (shapes as lists; None where unknown)."""
    if pred_shape is None or target_shape is None:
        return False
    if name in R.CLASS_LOSSES:
        return int_labels and list(target_shape) == list(pred_shape)[:-1]
    return name in R.ELEMENTWISE_LOSSES and same_dtype and list(target_shape) == list(pred_shape)
