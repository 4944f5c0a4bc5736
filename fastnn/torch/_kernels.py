"""The fastnn kernel calls on tensors: every autograd path (autograd.Function in eager,
torch.library custom ops under torch.compile) goes through these functions.

Inputs are tensors of one kernel dtype (float32/float64) on one device; ``spec`` is the
resolved activation or loss (``act_spec`` / ``loss_spec``: fastnn._checks' specs, each
distinct name + params resolved once); weight / pos_weight are the loss's tensor params
(or None). Outputs are fresh tensors (the kernels never return views of their inputs).

CPU fast path: a call whose tensors are what the wrapper always passes (CPU, one kernel
dtype, matching shapes) skips the public API's validation and dispatch (10-20 us per call
at small sizes) and hands the backend that fastnn._dispatch.select("cpu") picks (so
use_backend / set_backend / FASTNN_BACKEND are honoured per call) the very C-contiguous
arrays the public API would, so results are identical bit for bit. Anything else (CUDA
tensors, a shape or dtype the public API must refuse, a bce probability outside [0, 1],
pos_weight) takes the public API, which runs the same kernels or raises its error. On
CUDA every DLPack exchange happens inside scope(), on torch's current stream.
"""
import math

import numpy as np
import torch

import fastnn
from fastnn import _checks as C
from fastnn import _registry as R
from fastnn._dispatch import select
from fastnn._kernels import _from_last, _to_last
from fastnn._losses import _class_denominator, _class_target, _divide

from ._bridge import scope, to_array as A, to_tensor as T

_F32, _F64 = torch.float32, torch.float64
_contig = np.ascontiguousarray
_tensor = torch.from_numpy


def act_spec(func, name, params):
    """The resolved activation (ActSpec) for name + params; raises as the kernels would."""
    return C.activation_spec_cached(func, name, params)


def loss_spec(func, name, reduction, params):
    """The resolved loss (LossSpec) for name + scalar params, after checking reduction."""
    spec = C.loss_spec_cached(func, name, params)
    C.reduction_of(func, spec.name, reduction)
    return spec


def _cpu(t):
    """t is a CPU tensor of a kernel dtype."""
    return t.is_cpu and (t.dtype is _F32 or t.dtype is _F64)


def _np(t):
    """The numpy view of a CPU tensor of a real dtype (same memory and strides; force=True
    is detach() without building the detached tensor in Python, ~0.25 us less)."""
    return t.numpy(force=True) if t.requires_grad else t.numpy()


def _axis(spec, ndim):
    """spec's axis normalized for ndim dimensions; None without one; False if out of range."""
    if spec.axis is None:
        return None
    nd = max(ndim, 1)
    return spec.axis % nd if -nd <= spec.axis < nd else False


# ---- dense: y = act(x @ w.T + b), x (..., in), w (out, in), b (out,) ----------------------
# dense_forward also returns `kept`: the arrays it handed the kernel when they are views of
# x and w (no copy: nothing more is held), for dense_backward(kept=) to reuse. Autograd's
# saved tensors still guard them: unpacking those raises if x or w changed in place.

def _dense_arrays(x, w, spec):
    """(x as (m, in), w C-contiguous, w_oi, flipped, out, views) as fastnn._kernels._dense_args
    makes them (views: both are views, not copies), or None where the public API must check
    (or refuse) the shapes."""
    xa, wa = _np(x), _np(w)
    if xa.ndim < 1 or wa.ndim != 2 or wa.shape[1] != xa.shape[-1]:
        return None
    if spec.axis is not None:
        axis = _axis(spec, xa.ndim)
        if axis is False or axis != xa.ndim - 1:  # (False == 0: test it first)
            return None
    n, k = wa.shape
    w_oi, flipped, views = True, False, xa.flags.c_contiguous
    if not wa.flags.c_contiguous:
        if wa.T.flags.c_contiguous:  # Fortran order: use w.T, the other layout
            wa, w_oi, flipped = wa.T, False, True
        else:
            views = False
    x2 = xa if xa.ndim == 2 else xa.reshape(math.prod(xa.shape[:-1]), k)
    return _contig(x2), _contig(wa), w_oi, flipped, n, views


def dense_forward(x, w, b, spec):
    """(y, z, kept): z is the pre-activation when the activation's backward needs it, else
    None; kept: for dense_backward (None: nothing kept)."""
    if _cpu(x) and w.dtype is x.dtype and w.is_cpu and (b is None or (b.dtype is x.dtype and b.is_cpu)):
        args = _dense_arrays(x, w, spec)
        ba = None if b is None else _np(b)
        if args is not None and (ba is None or ba.shape == (args[4],)):
            x2, wc, w_oi, _, n, views = args
            need_z = spec.name != "linear" and not spec.from_y
            y, z = select("cpu").dense_forward(x2, wc, w_oi, None if ba is None else _contig(ba), spec, need_z)
            if x.dim() != 2:
                shape = x.shape[:-1] + (n,)
                y, z = y.reshape(shape), (None if z is None else z.reshape(shape))
            return _tensor(y), (None if z is None else _tensor(z)), (args if views else None)
    with scope(x):
        y, z = fastnn.dense_forward(A(x), A(w), A(b), spec.name, **spec.params)
        return T(y), T(z), None


def dense_backward(dy, x, w, y, z, spec, need_dx, need_dw, need_db, kept=None):
    """(dx, dw, db); entries not asked for are None. y or z: what dense_forward kept;
    kept: dense_forward's (x and w as the kernel took them) or None."""
    zy = y if spec.from_y else z
    if (_cpu(dy) and x.dtype is dy.dtype and w.dtype is dy.dtype and x.is_cpu and w.is_cpu
            and (spec.name == "linear" or (zy is not None and zy.dtype is dy.dtype and zy.is_cpu))):
        args = kept or _dense_arrays(x, w, spec)
        out_shape = x.shape[:-1] + (w.shape[0],)
        if args is not None and dy.shape == out_shape and (zy is None or zy.shape == out_shape):
            x2, wc, w_oi, flipped, n, _ = args
            m = x2.shape[0]
            zyc = None if spec.name == "linear" else _contig(_np(zy).reshape(m, n))
            dx, dw, db = select("cpu").dense_backward(_contig(_np(dy).reshape(m, n)), x2, wc, w_oi, zyc,
                                                      spec.from_y, spec, need_dx, need_dw, need_db)
            return (None if dx is None else _tensor(dx.reshape(x.shape)),
                    None if dw is None else _tensor(dw.T if flipped else dw), None if db is None else _tensor(db))
    with scope(dy):
        dx, dw, db = fastnn.dense_backward(A(dy), A(x), A(w), A(y), A(z), spec.name, need_dx=need_dx,
                                           need_dw=need_dw, need_db=need_db, **spec.params)
        return T(dx), T(dw), T(db)


# ---- activations: y = f(x), any shape --------------------------------------------------

def activation_forward(x, spec):
    if _cpu(x):
        xa = _np(x)
        axis = _axis(spec, xa.ndim)
        if axis is not False:
            xc = _to_last(np, xa, axis)
            y = select("cpu").activation_forward(xc, spec, xc.shape[-1])
            return _tensor(_from_last(np, y, axis, xa.shape))
    with scope(x):
        return T(fastnn.activation_forward(A(x), spec.name, **spec.params))


def activation_backward(dy, src, from_y, spec):
    """dx from the saved x (from_y False) or y (from_y True)."""
    if _cpu(dy) and src.dtype is dy.dtype and src.is_cpu and src.shape == dy.shape:
        dya, sa = _np(dy), _np(src)
        axis = _axis(spec, dya.ndim)
        if axis is not False:
            srcc, dyc = _to_last(np, sa, axis), _to_last(np, dya, axis)
            dx = select("cpu").activation_backward(srcc, dyc, spec, from_y, dyc.shape[-1])
            return _tensor(_from_last(np, dx, axis, dya.shape))
    with scope(dy):
        if from_y:
            return T(fastnn.activation_backward(A(dy), spec.name, y=A(src), **spec.params))
        return T(fastnn.activation_backward(A(dy), spec.name, x=A(src), **spec.params))


# ---- losses: pred (..., C) for the class losses (class axis last), else target's shape ---

_min, _max = np.minimum.reduce, np.maximum.reduce  # a.min() / a.max() without their Python wrapper


def _unit(a):
    """Every entry of a is in [0, 1] (False for NaN)."""
    return a.size == 0 or bool(_min(a, None) >= 0) and bool(_max(a, None) <= 1)


def _loss_arrays(pred, target, spec, reduction, weight, pos_weight):
    """(spec, pred, target, info, views) as fastnn._losses._prepare makes them (views: the
    float arrays are views of the tensors, not copies), or None where the public API must
    check (or refuse) the arguments. Raises the public API's error for class indices out
    of range."""
    if not (_cpu(pred) and target.is_cpu and pos_weight is None):
        return None
    p = _np(pred)
    info = {"reduction": reduction, "shape": p.shape}
    if spec.name in R.CLASS_LOSSES:
        if p.ndim < 1 or (weight is not None and not (weight.dtype is pred.dtype and weight.is_cpu
                                                      and weight.shape == (p.shape[-1],))):
            return None
        probs = target.is_floating_point()
        if probs and target.dtype is not pred.dtype:
            return None
        ta = _np(target)
        t, info["index"] = _class_target("fastnn.torch." + spec.name, spec, p, ta, np)
        if weight is not None:
            spec = spec._replace(params=dict(spec.params, weight=_contig(_np(weight))))
        info["none_shape"] = p.shape[:-1]
        info["denom"] = _class_denominator(np, t, spec.params, info["index"], p.shape[-1])
        views = p.flags.c_contiguous and (not probs or ta.flags.c_contiguous)
        return spec, _contig(p.reshape(-1, p.shape[-1])), t, info, views
    if weight is not None or target.dtype is not pred.dtype or target.shape != pred.shape:
        return None
    t = _np(target)
    if spec.name == "bce" and not (_unit(p) and _unit(t)):
        return None
    info["none_shape"] = p.shape
    info["denom"] = p.shape[0] if reduction == "batchmean" and p.ndim else p.size
    return spec, _contig(p), _contig(t), info, p.flags.c_contiguous and t.flags.c_contiguous


def _mean(total, denom):
    """total / denom in float64 (NaN for 0 / 0, as fastnn._losses._divide)."""
    return total / denom if denom else float(_divide(total, denom))


def _tensor_params(params, weight, pos_weight):
    p = dict(params)
    if weight is not None:
        p["weight"] = A(weight)
    if pos_weight is not None:
        p["pos_weight"] = A(pos_weight)
    return p


# loss_forward also returns `kept`: the checked arrays it handed the kernel, when they are
# views of pred and target (or the class-index target it converted), for loss_backward(kept=).

def loss_forward(pred, target, spec, reduction, weight=None, pos_weight=None):
    """(loss, kept); kept: for loss_backward (None: nothing kept)."""
    args = _loss_arrays(pred, target, spec, reduction, weight, pos_weight)
    if args is not None:
        spec, pc, t, info, views = args
        be = select("cpu")
        fn = be.class_loss_forward if spec.name in R.CLASS_LOSSES else be.loss_forward
        total, per = fn(pc, t, spec, reduction == "none")
        if reduction == "none":
            out = _tensor(per.reshape(info["none_shape"]))
        else:
            value = total if reduction == "sum" else _mean(total, info["denom"])
            out = _tensor(np.asarray(value, dtype=pc.dtype))
        return out, (args if views else None)
    with scope(pred):
        out = fastnn.loss_forward(A(pred), A(target), spec.name, reduction=reduction,
                                  **_tensor_params(spec.params, weight, pos_weight))
        return T(out), None


def _grad_args(grad, info, dtype):
    """(grad array or None, scalar factor) as fastnn._losses._grad makes them, or None
    where the public API must check the upstream gradient."""
    if grad.ndim == 0 or (info["reduction"] != "none" and grad.numel() == 1):
        return None, float(grad)
    if info["reduction"] != "none" or grad.dtype is not dtype or grad.shape != info["none_shape"]:
        return None
    return _contig(_np(grad).reshape(-1)), 1.0


def loss_backward(grad, pred, target, spec, reduction, weight, pos_weight, need_target_grad, kept=None):
    """(dpred, dtarget); dtarget is None unless need_target_grad. kept: loss_forward's."""
    args = None
    if grad.is_cpu:
        args = kept or _loss_arrays(pred, target, spec, reduction, weight, pos_weight)
    if args is not None:
        spec, pc, t, info, _ = args
        gargs = _grad_args(grad, info, pred.dtype)
        if gargs is not None and not (need_target_grad and (spec.name not in R.TARGET_GRAD_LOSSES
                                                            or info.get("index"))):
            garr, gs = gargs
            if reduction in ("mean", "batchmean"):
                gs = _mean(gs, info["denom"])
            be = select("cpu")
            fn = be.class_loss_backward if spec.name in R.CLASS_LOSSES else be.loss_backward
            dpred, dtarget = fn(pc, t, spec, garr, gs, need_target_grad)
            return (_tensor(dpred.reshape(info["shape"])),
                    _tensor(dtarget.reshape(info["shape"])) if need_target_grad else None)
    with scope(pred):
        out = fastnn.loss_backward(A(pred), A(target), spec.name, reduction=reduction, grad=A(grad),
                                   need_target_grad=need_target_grad,
                                   **_tensor_params(spec.params, weight, pos_weight))
        if need_target_grad:
            return T(out[0]), T(out[1])
        return T(out), None
