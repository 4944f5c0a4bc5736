"""Losses: the prepared call (a loss with its parameters and reduction resolved once) and
the public loss_forward / loss_backward built on it.

The reductions are done here, identically for every backend; backends compute sums and
per-element (per-row) values. Denominators of "mean": the element count (elementwise
losses; kl_div's "batchmean" uses shape[0]); for cross_entropy / nll with class indices,
the sum of the weights of the non-ignored targets (their count without weights); with
probability targets, the number of rows. An empty or all-ignored "mean" is NaN (0 / 0)
with a zero gradient.
"""
from typing import Any, Dict

import numpy as np

from . import _checks as C
from . import _registry as R
from ._dispatch import backend_for, select

_min, _max = np.minimum.reduce, np.maximum.reduce  # a.min() / a.max() without their Python wrapper


class PreparedLoss:
    """A loss with its parameters and reduction resolved once (``fastnn.prepare_loss``):
    ``forward(pred, target)`` and ``backward(pred, target, grad=None)``.

    Attributes:
        spec: the resolved loss (name, code, params, numeric params).
        reduction: "mean", "sum", "none" (or "batchmean" for kl_div).
    """

    __slots__ = ("spec", "reduction", "is_class", "_plain_ok")

    def __init__(self, spec, reduction):
        self.spec, self.reduction = spec, reduction
        self.is_class = spec.name in R.CLASS_LOSSES
        p = spec.params
        self._plain_ok = p.get("weight") is None and p.get("pos_weight") is None

    def _plain(self, pred, target):
        """What _prepare returns, for plain numpy arguments that pass every check (None
        otherwise: the general route then runs, and raises where it must)."""
        if not (self._plain_ok and type(pred) is np.ndarray and type(target) is np.ndarray and pred.ndim
                and pred.dtype in C.FLOAT_DTYPES):
            return None
        spec = self.spec
        info = {"shape": pred.shape}
        if self.is_class:
            if target.dtype not in C.INDEX_DTYPES or target.shape != pred.shape[:-1]:
                return None
            t = np.ascontiguousarray(target.reshape(-1), dtype=np.int64)
            ii, ncls = spec.params["ignore_index"], pred.shape[-1]
            keep = t != ii
            if t.size and not (bool(_min(t, where=keep, initial=0) >= 0)
                               and bool(_max(t, where=keep, initial=0) < ncls)):
                return None
            info.update(index=True, none_shape=pred.shape[:-1], denom=int(keep.sum()))
            return spec, np.ascontiguousarray(pred.reshape(-1, ncls)), t, info
        if target.dtype != pred.dtype or target.shape != pred.shape:
            return None
        if spec.name == "bce" and pred.size and not (
                bool(_min(pred, None) >= 0) and bool(_max(pred, None) <= 1)
                and bool(_min(target, None) >= 0) and bool(_max(target, None) <= 1)):
            return None
        info.update(none_shape=pred.shape, denom=pred.shape[0] if self.reduction == "batchmean" else pred.size)
        return spec, np.ascontiguousarray(pred), np.ascontiguousarray(target), info

    def __repr__(self):
        return f"PreparedLoss({self.spec.name!r}, reduction={self.reduction!r})"

    def _prepare(self, F, pred, target):
        """(backend, xp, spec with array params checked, pred, target, info) for both directions."""
        plain = self._plain(pred, target)
        if plain is not None:
            return (select("cpu"), np) + plain
        spec, p = self.spec, dict(self.spec.params)
        be, xp = backend_for(F, pred=pred, target=target, weight=p.get("weight"), pos_weight=p.get("pos_weight"))
        pred = C.float_array(F, "pred", pred, xp)
        info = {"shape": pred.shape}
        if self.is_class:
            if pred.ndim < 1:
                raise ValueError(f"{F}: {spec.name} pred must have a class axis (..., C), got a 0-d array")
            t, info["index"] = C.class_target(F, spec, pred, target, xp)
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
            p["pos_weight"] = C.pos_weight_array(F, p["pos_weight"], pred, xp)
        C.same_dtype(F, pred=pred, target=t)
        if spec.name == "bce":
            C.unit_interval(F, "input (pred)", pred)
            C.unit_interval(F, "target", t)
        info["none_shape"] = pred.shape
        info["denom"] = pred.shape[0] if self.reduction == "batchmean" and pred.ndim else pred.size
        return be, xp, spec._replace(params=p), xp.ascontiguousarray(pred), xp.ascontiguousarray(t), info

    def check(self, pred, target):
        """pred and target checked and converted once, for forward and backward on the same
        arrays (pass the result as ``checked=``; the caller guarantees they do not change
        in between, as autograd's saved tensors do for fastnn.torch)."""
        return self._prepare("loss_forward", pred, target)

    def forward(self, pred, target, *, checked=None):
        """The loss: a 0-d array for "mean" / "sum" / "batchmean", per element (per row
        for cross_entropy / nll) for "none"."""
        be, xp, spec, pred, t, info = checked or self._prepare("loss_forward", pred, target)
        red = self.reduction
        fn = be.class_loss_forward if self.is_class else be.loss_forward
        total, per = fn(pred, t, spec, red == "none")
        if red == "none":
            return per.reshape(info["none_shape"])
        value = total if red == "sum" else divide(total, info["denom"])
        return xp.asarray(value, dtype=pred.dtype)

    def backward(self, pred, target, grad=None, need_target_grad=False, *, checked=None):
        """d(loss)/d(pred) of pred's shape, times the upstream `grad` (a scalar, or for
        "none" an array of the loss's shape); with need_target_grad=True, (dpred, dtarget)."""
        F = "loss_backward"
        be, xp, spec, pred_c, t, info = checked or self._prepare(F, pred, target)
        if need_target_grad and (spec.name not in R.TARGET_GRAD_LOSSES or info.get("index")):
            why = "integer class targets have no gradient" if info.get("index") else "torch does not differentiate it"
            raise ValueError(f"{F}: need_target_grad=True is not supported for {spec.name} ({why})")
        garr, gs = C.upstream_grad(F, grad, self.reduction, info["none_shape"], pred_c.dtype, xp)
        if self.reduction in ("mean", "batchmean"):
            gs = float(divide(gs, info["denom"]))
        fn = be.class_loss_backward if self.is_class else be.loss_backward
        dpred, dtarget = fn(pred_c, t, spec, garr, gs, bool(need_target_grad))
        dpred = dpred.reshape(info["shape"])
        if need_target_grad:
            return dpred, dtarget.reshape(info["shape"])
        return dpred


def _class_denominator(xp, t, p, is_index, ncls):
    if not is_index:
        return t.shape[0]
    keep = t != p["ignore_index"]
    if p["weight"] is None:
        return int(keep.sum())
    return float(p["weight"][t[keep]].astype(xp.float64).sum()) if ncls else 0.0


_prepared: Dict[Any, Any] = {}


def prepared(func, name, reduction, params):
    """The PreparedLoss of (name, reduction, params); scalar params resolved once per
    distinct arguments (array params such as weight are resolved every call)."""
    spec = C.loss_spec_cached(func, name, params)
    reduction = C.reduction_of(func, spec.name, reduction)
    return C.prepared_for(_prepared, spec, PreparedLoss, reduction)


def prepare_loss(name: str, *, reduction: str = "mean", caller: str = "prepare_loss", **params: Any) -> "PreparedLoss":
    """The loss `name` with its reduction and parameters resolved and checked once.

    Parameters
    ----------
    name : str
        A name or alias of ``fastnn.LOSSES`` (:doc:`../ops`).
    reduction : {"mean", "sum", "none", "batchmean"}
        "batchmean": kl_div only.
    caller : str
        The function name errors name (a wrapper passes its own).
    **params
        The loss's parameters; array parameters (weight, pos_weight) are checked at each
        call.

    Returns
    -------
    PreparedLoss
        With ``forward(pred, target)`` and ``backward(pred, target, grad=)``.

    Raises
    ------
    ValueError
        An unknown name, reduction or parameter, naming `caller`.

    Examples
    --------
    >>> op = fastnn.prepare_loss("huber", delta=0.5)
    >>> loss = op.forward(np.zeros(4), np.ones(4))
    """
    return prepared(caller, name, reduction, params)


def loss_forward(pred: Any, target: Any, name: str = "mse", *, reduction: str = "mean", **params: Any) -> Any:
    """The loss `name` of `pred` against `target`.

    Parameters
    ----------
    pred : numpy.ndarray or cupy.ndarray
        float16, bfloat16, float32 or float64 (16-bit: computed in float32, the
        reduction accumulated in float32 or wider and rounded once, :doc:`../lowp`).
        cross_entropy / nll: shape (..., C), the class axis last.
    target : array
        Elementwise losses: pred's shape and dtype. cross_entropy / nll: int32 / int64
        class indices of shape ``pred.shape[:-1]`` (or, cross_entropy only, float class
        probabilities of pred's shape).
    name : str
        A name or alias of ``fastnn.LOSSES`` (:doc:`../ops`); default ``"mse"``.
    reduction : {"mean", "sum", "none", "batchmean"}
        "none": per element (per row for cross_entropy / nll); "batchmean": kl_div.
    **params
        The loss's parameters as torch's: ``weight`` (C,), ``ignore_index``,
        ``label_smoothing``, ``delta``, ``beta``, ``pos_weight``, ...

    Returns
    -------
    array
        0-d for mean / sum, else the "none" shape; pred's dtype and kind.

    Raises
    ------
    ValueError
        Shapes that do not fit, a bad target (class index out of range, a bce target
        outside [0, 1]), a bad reduction or parameter.
    TypeError
        Mixed or non-float dtypes, a non-integer class target.

    Examples
    --------
    >>> fastnn.loss_forward(np.array([0.5, 2.0]), np.array([1.0, 1.0]), "mse")
    array(0.625)
    """
    return prepared("loss_forward", name, reduction, params).forward(pred, target)


def loss_backward(pred: Any, target: Any, name: str = "mse", *, reduction: str = "mean", grad: Any = None,
                  need_target_grad: bool = False, **params: Any) -> Any:
    """d(loss)/d(pred) of :func:`loss_forward`.

    Parameters
    ----------
    pred, target : array
        As given to :func:`loss_forward`.
    name : str
        A name or alias of ``fastnn.LOSSES``.
    reduction : {"mean", "sum", "none", "batchmean"}
    grad : scalar or array, optional
        The upstream gradient: a scalar, or for "none" an array of the loss's shape;
        default 1.
    need_target_grad : bool
        Also return d(loss)/d(target), for the losses whose torch twin differentiates
        the target (column "target grad" of :doc:`../ops`).
    **params
        The loss's parameters.

    Returns
    -------
    dpred : array of pred's shape
        Or ``(dpred, dtarget)`` with `need_target_grad`.

    Raises
    ------
    ValueError
        As :func:`loss_forward`; a `grad` of the wrong shape; `need_target_grad` for a
        loss without a target gradient.
    TypeError
        Mixed or non-float dtypes.

    Examples
    --------
    >>> fastnn.loss_backward(np.array([0.5, 2.0]), np.array([1.0, 1.0]), "mse")
    array([-0.5,  1. ])
    """
    return prepared("loss_backward", name, reduction, params).backward(pred, target, grad, need_target_grad)


def divide(total, denom):
    """total / denom in float64: NaN for 0 / 0 (an empty or all-ignored "mean"), without
    numpy's warning; a device scalar stays on its device."""
    if not isinstance(total, (int, float, np.generic, np.ndarray)):
        return total / denom
    if denom:  # the same IEEE division as numpy's float64, without entering np.errstate
        return np.float64(float(total) / float(denom))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(total) / np.float64(denom)
