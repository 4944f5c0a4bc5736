"""dense_cross_entropy of shared/API.md: Dense layer + softmax cross-entropy, forward and
all gradients in one chunked pass, never holding the full (N, classes) logits.
"""
import numpy as np

from . import _checks as C
from ._kernels import _dense_args, _setup
from ._losses import _divide, _grad


def dense_cross_entropy(x, w, b, target, *, weight_layout="oi", reduction="mean", ignore_index=-100,
                        label_smoothing=0.0, chunk_size=None, need_grads=True, grad=None):
    """loss, (dx, dw, db) of cross_entropy(act=None Dense(x; w, b), target).

    x (..., in); w (classes, in) ("oi") or (in, classes) ("io"); b (classes,) or None;
    target int class indices of shape x.shape[:-1]. The gradients are those of the
    reduced loss times `grad` (a scalar, or for reduction "none" a per-row array; default
    1). need_grads=False computes the loss only and returns (None, None, None).
    chunk_size: rows per chunk (default: about 256 MiB of logits, at least 512 rows).
    """
    F = "dense_cross_entropy"
    spec = C.loss_spec(F, "cross_entropy", {"ignore_index": ignore_index, "label_smoothing": label_smoothing})
    reduction = C.reduction_of(F, "cross_entropy", reduction)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ValueError(f"{F}: chunk_size must be a positive integer or None, got {chunk_size!r}")
    be, xp = _setup(F, x=x, w=w, b=b, target=target)
    x, w = C.float_array(F, "x", x, xp), C.float_array(F, "w", w, xp)
    b = None if b is None else C.float_array(F, "b", b, xp)
    C.same_dtype(F, x=x, w=w, b=b)
    lin = C.activation_spec(F, "linear", {})
    x2, wc, w_oi, flipped, ncls = _dense_args(F, x, w, weight_layout, lin)
    if b is not None:
        C.expect_shape(F, "b", b, (ncls,), " (classes,)")
        b = xp.ascontiguousarray(b)
    if ncls == 0 and x2.shape[0] > 0:
        raise ValueError(f"{F}: w has shape {C.shape_str(w.shape)}: 0 classes; expected at least one")
    t = _targets(F, target, x.shape[:-1], ncls, spec.params["ignore_index"], xp)
    count = int((t != spec.params["ignore_index"]).sum())
    garr, gs = _grad(F, grad, {"reduction": reduction, "none_shape": x.shape[:-1]}, x.dtype, xp)
    if reduction == "mean":
        gs = float(_divide(gs, count))
    total, rows, dx, dw, db = be.dense_cross_entropy(
        x2, wc, w_oi, b, t, spec.params["ignore_index"], spec.params["label_smoothing"], garr, gs,
        reduction == "none", bool(need_grads), None if chunk_size is None else int(chunk_size))
    if reduction == "none":
        loss = rows.reshape(x.shape[:-1])
    else:
        loss = xp.asarray(total if reduction == "sum" else _divide(total, count), dtype=x.dtype)
    if not need_grads:
        return loss, (None, None, None)
    return loss, (dx.reshape(x.shape), dw.T if flipped else dw, db)


def _targets(F, target, shape, ncls, ignore_index, xp):
    t = target if xp is not np else C.to_numpy(F, "target", target)
    if t.dtype not in C.INDEX_DTYPES:
        raise TypeError(f"{F}: target has dtype {t.dtype}; expected int32/int64 class indices")
    C.expect_shape(F, "target", t, shape, " (x.shape[:-1]: one class index per row)")
    t = xp.ascontiguousarray(t.reshape(-1), dtype=xp.int64)
    bad = ((t < 0) | (t >= ncls)) & (t != ignore_index)
    if bool(bad.any()):
        raise ValueError(f"{F}: target contains class index {int(t[bad][0])}, outside [0, {ncls}) and not "
                         f"ignore_index ({ignore_index})")
    return t

