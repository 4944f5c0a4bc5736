"""loss_forward / loss_backward of shared/API.md: validation, the backend call, and
the reductions, the same for every backend.

Denominators of "mean": the element count (elementwise losses; kl_div "batchmean"
uses shape[0]); for cross_entropy / nll with class indices, the sum of the weights
of the non-ignored targets (their count without weights); with probability targets,
the number of rows. An empty or all-ignored "mean" is NaN (0 / 0) with a zero gradient.
"""
import numpy as np

from . import _checks as C
from . import _registry as R
from ._kernels import _setup


def _pos_weight(F, pw, pred, xp):
    """pos_weight (a float array) as a 1-D C-contiguous array whose element i % len applies
    to element i."""
    if pred.size == 0:
        return None
    shape = tuple(pw.shape)
    while shape and shape[0] == 1 and len(shape) > 1:
        shape = shape[1:]
    last = pred.shape[-1] if pred.ndim else 1
    if shape in ((), (1,), (last,)):
        return xp.ascontiguousarray(pw.reshape(-1))
    try:
        return xp.ascontiguousarray(xp.broadcast_to(pw, pred.shape).reshape(-1))
    except ValueError:
        raise ValueError(f"{F}: pos_weight has shape {C.shape_str(pw.shape)}, which does not broadcast to pred's "
                         f"shape {C.shape_str(pred.shape)}; expected ({last},)") from None


def _check_unit_interval(F, argname, a, xp):
    ok = (a >= 0) & (a <= 1)  # False for NaN
    if a.size and not bool(ok.all()):
        bad = a[~ok].reshape(-1)[0]
        raise ValueError(f"{F}: bce {argname} must be probabilities in [0, 1]; found {float(bad)!r}")


def _class_target(F, spec, pred, target, xp):
    """(target as int64 index array or float prob array, is_index)."""
    rows = pred.shape[:-1]
    t = target if xp is not np else C.to_numpy(F, "target", target)
    if t.dtype.kind in "iu" and t.dtype in C.INDEX_DTYPES:
        C.expect_shape(F, "target", t, rows, " (pred.shape[:-1]: one class index per row)")
        t = xp.ascontiguousarray(t.reshape(-1), dtype=xp.int64)
        ncls, ii = pred.shape[-1], spec.params["ignore_index"]
        bad = ((t < 0) | (t >= ncls)) & (t != ii)
        if bool(bad.any()):
            v = int(t[bad][0])
            raise ValueError(f"{F}: target contains class index {v}, outside [0, {ncls}) and not "
                             f"ignore_index ({ii})")
        return t, True
    if spec.name == "nll" or t.dtype not in C.FLOAT_DTYPES:
        raise TypeError(f"{F}: {spec.name} target has dtype {t.dtype}; expected int32/int64 class indices"
                        + (" or float class probabilities of pred's shape" if spec.name == "cross_entropy" else ""))
    C.expect_shape(F, "target", t, pred.shape, " (class probabilities have pred's shape)")
    if spec.params["ignore_index"] != -100:
        raise ValueError(f"{F}: ignore_index ({spec.params['ignore_index']}) is not allowed with probability "
                         f"targets")
    return xp.ascontiguousarray(t.reshape(-1, pred.shape[-1]) if pred.ndim else t.reshape(1, 1)), False


def _prepare(F, pred, target, name, reduction, params):
    """Validated (backend, xp, spec, pred, target, info) for both directions."""
    spec = C.loss_spec(F, name, params)
    reduction = C.reduction_of(F, spec.name, reduction)
    p = dict(spec.params)
    be, xp = _setup(F, pred=pred, target=target, weight=p.get("weight"), pos_weight=p.get("pos_weight"))
    pred = C.float_array(F, "pred", pred, xp)
    info = {"reduction": reduction, "shape": pred.shape}
    if spec.name in R.CLASS_LOSSES:
        if pred.ndim < 1:
            raise ValueError(f"{F}: {spec.name} pred must have a class axis (..., C), got a 0-d array")
        t, info["index"] = _class_target(F, spec, pred, target, xp)
        if p["weight"] is not None:
            p["weight"] = C.float_array(F, "weight", p["weight"], xp)
            C.expect_shape(F, "weight", p["weight"], (pred.shape[-1],), " (one weight per class)")
            p["weight"] = xp.ascontiguousarray(p["weight"])
        C.same_dtype(F, pred=pred, target=None if info["index"] else t, weight=p["weight"])
        info["none_shape"] = pred.shape[:-1]
        info["denom"] = _class_denominator(xp, t, p, info["index"], pred.shape[-1])
        pc = xp.ascontiguousarray(pred.reshape(-1, pred.shape[-1]))
        return be, xp, spec._replace(params=p), pc, t, info
    t = C.float_array(F, "target", target, xp)
    C.expect_shape(F, "target", t, pred.shape, " (pred's shape; kernels do not broadcast)")
    if p.get("pos_weight") is not None:
        p["pos_weight"] = C.float_array(F, "pos_weight", p["pos_weight"], xp)
        C.same_dtype(F, pred=pred, target=t, pos_weight=p["pos_weight"])
        p["pos_weight"] = _pos_weight(F, p["pos_weight"], pred, xp)
    C.same_dtype(F, pred=pred, target=t)
    if spec.name == "bce":
        _check_unit_interval(F, "input (pred)", pred, xp)
        _check_unit_interval(F, "target", t, xp)
    info["none_shape"] = pred.shape
    info["denom"] = pred.shape[0] if reduction == "batchmean" and pred.ndim else pred.size
    return be, xp, spec._replace(params=p), xp.ascontiguousarray(pred), xp.ascontiguousarray(t), info


def _class_denominator(xp, t, p, is_index, ncls):
    if not is_index:
        return t.shape[0]
    keep = t != p["ignore_index"]
    if p["weight"] is None:
        return int(keep.sum())
    return float(p["weight"][t[keep]].astype(xp.float64).sum()) if ncls else 0.0


def _divide(total, denom):
    if not isinstance(total, (int, float, np.generic, np.ndarray)):  # a device scalar: stays there
        return total / denom
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(total) / np.float64(denom)


def loss_forward(pred, target, name="mse", *, reduction="mean", **params):
    """The loss: a 0-d array for "mean"/"sum"/"batchmean", per element (or per row
    for cross_entropy / nll) for "none"."""
    F = "loss_forward"
    be, xp, spec, pred, t, info = _prepare(F, pred, target, name, reduction, params)
    red = info["reduction"]
    fn = be.class_loss_forward if spec.name in R.CLASS_LOSSES else be.loss_forward
    total, per = fn(pred, t, spec, red == "none")
    if red == "none":
        return per.reshape(info["none_shape"])
    value = total if red == "sum" else _divide(total, info["denom"])
    return xp.asarray(value, dtype=pred.dtype)


def _grad(F, grad, info, dtype, xp):
    """(grad array of the "none" shape or None, scalar factor)."""
    if grad is None:
        return None, 1.0
    g = grad if xp is not np else C.to_numpy(F, "grad", grad)
    if getattr(g, "ndim", 0) == 0 or (info["reduction"] != "none" and g.size == 1):
        return None, float(g.reshape(()) if hasattr(g, "reshape") else g)
    if info["reduction"] != "none":
        raise ValueError(f"{F}: grad must be a scalar for reduction {info['reduction']!r}, got shape "
                         f"{C.shape_str(g.shape)}")
    g = C.float_array(F, "grad", g, xp)
    if g.dtype != dtype:
        raise TypeError(f"{F}: grad has dtype {g.dtype} but pred is {dtype}; expected one dtype")
    C.expect_shape(F, "grad", g, info["none_shape"], " (the shape of the 'none' loss)")
    return xp.ascontiguousarray(g.reshape(-1)), 1.0


def loss_backward(pred, target, name="mse", *, reduction="mean", grad=None, need_target_grad=False, **params):
    """d(loss)/d(pred), pred's shape; with need_target_grad=True, (dpred, dtarget)."""
    F = "loss_backward"
    be, xp, spec, pred_c, t, info = _prepare(F, pred, target, name, reduction, params)
    if need_target_grad and (spec.name not in R.TARGET_GRAD_LOSSES or info.get("index")):
        why = "integer class targets have no gradient" if info.get("index") else "torch does not differentiate it"
        raise ValueError(f"{F}: need_target_grad=True is not supported for {spec.name} ({why})")
    garr, gs = _grad(F, grad, info, pred_c.dtype, xp)
    if info["reduction"] in ("mean", "batchmean"):
        gs = float(_divide(gs, info["denom"]))
    fn = be.class_loss_backward if spec.name in R.CLASS_LOSSES else be.loss_backward
    dpred, dtarget = fn(pred_c, t, spec, garr, gs, bool(need_target_grad))
    dpred = dpred.reshape(info["shape"])
    if need_target_grad:
        return dpred, dtarget.reshape(info["shape"])
    return dpred
