"""The Numba CPU backend: @njit(cache=True) kernels (_numba_act.py: activations and the
dense layer's fused passes; _numba_loss.py: losses) and numpy's BLAS for the products
(_numba_dense.py: dense layer, fused dense + cross-entropy).

The same functions, arguments and results as fastnn._backends.cpp: every function gets
C-contiguous numpy arrays of one float dtype, validated by the prepared
calls (fastnn/_activation.py, _dense.py, _loss.py), and returns freshly allocated outputs; inputs are
never written.

Nothing compiles at import: each kernel compiles on its first call, once per dtype, and
is cached on disk (numba's cache, in __pycache__ next to these files, or numba's
user-wide cache directory where that is not writable), so later processes load it.
Array arguments are always writeable, C-contiguous arrays: numba compiles one
specialization per array type, and a read-only array is another type, so a read-only
input is copied rather than every kernel compiled a second time.

Threads: the kernels are serial and release the GIL; the work is cut into at most
NUMBA_NUM_THREADS parts (elements, rows, or whole reduction chunks) run by a small
thread pool (_numba_act.parallel_for, which says why not numba's prange).
"""
from typing import Optional

import numpy as np

from .. import _registry as R
from .._checks import NO_CE_EXTRAS

DEVICE = "cpu"
_why: Optional[str] = None  # why the backend is unavailable, or None

try:
    import numba  # noqa: F401 - the backend exists only where numba imports
except Exception as e:  # noqa: BLE001 - reported by fastnn.backends()
    _why = f"numba not importable: {type(e).__name__}: {e}"
else:
    from . import _numba_act as A
    from . import _numba_dense as D
    from . import _numba_half as H
    from . import _numba_loss as L

    # The kernels hard-code the registry's codes (compiled code freezes them).
    if tuple(R.ACTIVATIONS) != A.NAMES or tuple(R.ELEMENTWISE_LOSSES) != L.NAMES:
        _why = ("its activation / loss codes do not match fastnn._registry (update NAMES and the codes in "
                "fastnn/_backends/_numba_act.py, _numba_loss.py)")


def unavailable():
    return _why


def _w(a):
    """a, or a writeable copy of a read-only a (see the module docstring); a 16-bit array
    as its bit view (fastnn/_backends/_numba_half.py)."""
    return H.bits(a if a is None or a.flags.writeable else a.copy())


def _w16(a):
    """_w without the bit view (the dense functions take 16-bit arrays as they are and
    view them themselves)."""
    return a if a is None or a.flags.writeable else a.copy()


def _p(spec):
    """The activation params as one float64 tuple (one numba type for every call)."""
    return tuple(float(v) for v in spec.numeric)


def _grain(code):
    return A.GRAIN_CHEAP if code in A.CHEAP else A.GRAIN


def _row_grain(cols, unit=1):
    """Rows per thread's part, at least: ~GRAIN elements, a multiple of `unit` rows."""
    rows = max(1, A.GRAIN // max(1, cols))
    return -(-rows // unit) * unit


# ---- activations ------------------------------------------------------------------------

def activation_forward(x, spec, cols):
    out = np.empty_like(x)
    if x.size == 0:
        return out
    x, y = _w(x), H.bits(out)
    if spec.code in (A.SOFTMAX, A.LOG_SOFTMAX):
        x2, y2, lg = x.reshape(-1, cols), y.reshape(-1, cols), spec.code == A.LOG_SOFTMAX
        A.parallel_for(x2.shape[0], _row_grain(cols), lambda lo, hi: A.softmax_forward(lg, x2[lo:hi], y2[lo:hi]))
    else:
        x1, y1, p = x.reshape(-1), y.reshape(-1), _p(spec)
        A.parallel_for(x.size, _grain(spec.code), lambda lo, hi: A.fwd_span(spec.code, x1[lo:hi], y1[lo:hi], p))
    return out


def activation_backward(xy, dy, spec, from_y, cols):
    out = np.empty_like(dy)
    if dy.size == 0:
        return out
    xy, dy, dx = _w(xy), _w(dy), H.bits(out)
    if spec.code in (A.SOFTMAX, A.LOG_SOFTMAX):
        a, d, o = xy.reshape(-1, cols), dy.reshape(-1, cols), dx.reshape(-1, cols)
        lg = spec.code == A.LOG_SOFTMAX
        A.parallel_for(a.shape[0], _row_grain(cols),
                       lambda lo, hi: A.softmax_backward(lg, from_y, a[lo:hi], d[lo:hi], o[lo:hi]))
        return out
    a, d, o, p = xy.reshape(-1), dy.reshape(-1), dx.reshape(-1), _p(spec)
    span = A.bwd_y_span if from_y else A.bwd_span  # from y: arithmetic only
    A.parallel_for(a.size, A.GRAIN_CHEAP if from_y else _grain(spec.code),
                   lambda lo, hi: span(spec.code, a[lo:hi], d[lo:hi], o[lo:hi], p))
    return out


# ---- dense ------------------------------------------------------------------------------

def dense_forward(x, w, w_oi, b, spec, keep_z):
    if x.dtype.itemsize == 2:
        return D.forward_lp(_w16(x), _w16(w), w_oi, _w16(b), spec.code, _p(spec), keep_z)
    return D.forward(_w(x), _w(w), w_oi, _w(b), spec.code, _p(spec), keep_z)


def dense_backward(dy, x, w, w_oi, zy, from_y, spec, need_dx, need_dw, need_db):
    if x.dtype.itemsize == 2:
        return D.backward_lp(_w16(dy), _w16(x), _w16(w), w_oi, _w16(zy), from_y, spec.code, _p(spec), need_dx,
                             need_dw, need_db)
    return D.backward(_w(dy), _w(x), _w(w), w_oi, _w(zy), from_y, spec.code, _p(spec), need_dx, need_dw,
                      need_db)


def dense_cross_entropy(x, w, w_oi, b, target, ignore_index, label_smoothing, grad, grad_scalar, want_none,
                        need_grads, chunk_size, extras=NO_CE_EXTRAS):
    e = extras._replace(class_weight=_w16(extras.class_weight), row_weight=_w16(extras.row_weight))
    return D.cross_entropy(_w16(x), _w16(w), w_oi, _w16(b), _w16(target), np.int64(ignore_index), label_smoothing,
                           _w16(grad), grad_scalar, want_none, need_grads, chunk_size, e)


# ---- elementwise losses -----------------------------------------------------------------

def _ctype(dtype):
    """The scalar type the kernels compute in for data of `dtype`: float32 for 16-bit."""
    return np.float32 if dtype.itemsize == 2 else dtype.type


def _loss_args(spec, dtype):
    """(code, pos_weight array (ones(1) without one), (delta, beta, eps) in the compute
    type, flags)."""
    p = spec.params
    T = _ctype(dtype)
    pw = p.get("pos_weight")
    pw = np.ones(1, dtype=T) if pw is None else _w(pw)
    prm = (T(p.get("delta", 1.0)), T(p.get("beta", 1.0)), T(p.get("eps", 1e-8)))
    flags = (bool(p.get("log_target", False)), bool(p.get("log_input", True)), bool(p.get("full", False)))
    return L.NAMES.index(spec.name), pw, prm, flags


def _loss_grain(code):
    # arithmetic-only losses are memory-bound like the CHEAP activations
    return A.GRAIN_CHEAP if code in (L.MSE, L.MAE, L.HUBER, L.SMOOTH_L1, L.HINGE, L.SQUARED_HINGE) else A.GRAIN


def loss_forward(pred, target, spec, want_none):
    code, pw, prm, flags = _loss_args(spec, pred.dtype)
    p, t = _w(pred).reshape(-1), _w(target).reshape(-1)
    res = np.empty(pred.size if want_none else 0, dtype=pred.dtype)
    out = H.bits(res)
    parts = np.zeros(-(-p.size // L.CHUNK))  # float64 sum of each CHUNK elements

    def run(lo, hi):
        L.loss_forward(code, p[lo:hi], t[lo:hi], out[lo:hi], want_none, pw, lo, prm, flags,
                       parts[lo // L.CHUNK:])
    A.parallel_for(p.size, _loss_grain(code), run)
    return float(parts.sum()), (res.reshape(pred.shape) if want_none else None)


def _grad_arg(grad, grad_scalar, dtype):
    """(grad array, has_grad, scalar in the compute type): an empty array stands for no
    grad array."""
    if grad is None:
        return np.empty(0, dtype=_ctype(dtype)), False, _ctype(dtype)(grad_scalar)
    return _w(grad).reshape(-1), True, _ctype(dtype)(grad_scalar)


def loss_backward(pred, target, spec, grad, grad_scalar, need_target_grad):
    code, pw, prm, flags = _loss_args(spec, pred.dtype)
    g, has_g, gs = _grad_arg(grad, grad_scalar, pred.dtype)
    p, t = _w(pred).reshape(-1), _w(target).reshape(-1)
    dpred = np.empty(pred.size, pred.dtype)
    dtarget = np.empty(target.size if need_target_grad else 0, dtype=pred.dtype)
    dp, dt = H.bits(dpred), H.bits(dtarget)
    A.parallel_for(p.size, _loss_grain(code), lambda lo, hi: L.loss_backward(
        code, p[lo:hi], t[lo:hi], g[lo:hi], has_g, gs, dp[lo:hi], dt[lo:hi], need_target_grad, pw, lo, prm, flags))
    return dpred.reshape(pred.shape), (dtarget.reshape(target.shape) if need_target_grad else None)


# ---- cross_entropy / nll ----------------------------------------------------------------

def _class_args(pred, spec):
    """(weight (ones without one), label_smoothing in the compute type, rows per sum chunk)."""
    p = spec.params
    T = _ctype(pred.dtype)
    w = p.get("weight")
    w = np.ones(pred.shape[1], dtype=T) if w is None else _w(w)
    chunk = max(1, L.CHUNK // max(1, pred.shape[1]))
    return w, T(p.get("label_smoothing", 0.0)), chunk


def class_loss_forward(pred, target, spec, want_none):
    rows = pred.shape[0]
    res = np.empty(rows if want_none else 0, dtype=pred.dtype)
    out = H.bits(res)
    w, ls, chunk = _class_args(pred, spec)
    index = target.dtype.kind in "iu"  # (asked before the bit view: a bfloat16 view is int16)
    pred, target = _w(pred), _w(target)
    parts = np.zeros(-(-rows // chunk))  # float64 sum of each `chunk` rows
    if index:
        t, nll, ii = target.astype(np.int64, copy=False), spec.name == "nll", np.int64(spec.params["ignore_index"])

        def run(lo, hi):
            L.class_forward(pred[lo:hi], t[lo:hi], w, out[lo:hi], want_none, nll, ii, ls, chunk, parts[lo // chunk:])
    else:
        def run(lo, hi):
            L.soft_class_forward(pred[lo:hi], target[lo:hi], w, out[lo:hi], want_none, ls, chunk, parts[lo // chunk:])
    A.parallel_for(rows, _row_grain(pred.shape[1], chunk), run)
    return float(parts.sum()), (res if want_none else None)


def class_loss_backward(pred, target, spec, grad, grad_scalar, need_target_grad):
    res = np.empty_like(pred)
    dpred = H.bits(res)
    w, ls, _ = _class_args(pred, spec)
    g, has_g, gs = _grad_arg(grad, grad_scalar, pred.dtype)
    index = target.dtype.kind in "iu"
    pred, target = _w(pred), _w(target)
    grain = _row_grain(pred.shape[1])
    if index:
        t, nll, ii = target.astype(np.int64, copy=False), spec.name == "nll", np.int64(spec.params["ignore_index"])
        A.parallel_for(pred.shape[0], grain, lambda lo, hi: L.class_backward(
            pred[lo:hi], t[lo:hi], w, g[lo:hi], has_g, gs, dpred[lo:hi], nll, ii, ls))
        return res, None
    tres = np.empty(target.shape if need_target_grad else (0, 0), dtype=res.dtype)
    dtarget = H.bits(tres)
    A.parallel_for(pred.shape[0], grain, lambda lo, hi: L.soft_class_backward(
        pred[lo:hi], target[lo:hi], w, g[lo:hi], has_g, gs, dpred[lo:hi], dtarget[lo:hi], need_target_grad, ls))
    return res, (tres if need_target_grad else None)
