"""The C++ CPU backend: fastnn._C (pybind11, OpenBLAS, fused epilogues, own threads).

Every function receives C-contiguous numpy arrays of one float dtype from
fastnn._kernels (validated there) and returns freshly allocated outputs.
"""
import ctypes
import os

import numpy as np

DEVICE = "cpu"
_C = None
_why = None


def _load_openblas():
    # fastnn._C links libscipy_openblas.so. Loading it first (RTLD_GLOBAL) lets the
    # dynamic loader resolve the extension's dependency by soname, wherever pip put
    # the scipy-openblas32 wheel (an editable install has no relative rpath to it).
    #
    # OPENBLAS_THREAD_TIMEOUT=16 (unless the user set it): OpenBLAS's worker threads spin
    # 2^16 cycles (~20 us) after a product, then sleep, instead of the default 2^28 (~0.1 s),
    # during which they took half of this 2-core machine from whatever ran next: fastnn's
    # own elementwise kernels after a GEMM ran 2x slower (gelu on 4M floats 4.5 ms vs 2.35),
    # and so would torch's or TensorFlow's ops. 2^16 still covers the gaps between the
    # products of one small layer (64x256x256 fwd+bwd 0.18-0.23 ms, as with the default;
    # at 2^4 they slept between products: 0.30 ms); 2^18 already lets the spin reach the
    # next kernel (gelu after a GEMM 4.1 ms).
    # OpenBLAS reads it once, when this copy of the library loads (importing
    # scipy_openblas32 loads it; numpy's own OpenBLAS is a different copy, unaffected);
    # the process environment is restored after.
    had = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")
    try:
        import scipy_openblas32 as ob

        ctypes.CDLL(os.path.join(ob.get_lib_dir(), ob.get_library(fullname=True)), mode=ctypes.RTLD_GLOBAL)
    finally:
        if had is None:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]


try:
    _load_openblas()
    from .. import _C
except Exception as e:  # noqa: BLE001 - reported by fastnn.backends()
    _why = f"extension not importable: {type(e).__name__}: {e}"


def unavailable():
    return _why


_MIN_POOLED = 1 << 20  # fastnn._C.cache_min_bytes(): smaller outputs come from numpy


def _like(a):
    """An uninitialized array like C-contiguous a: from the C++ backend's buffer cache
    (csrc/cpu/pool.h: reused memory, no first-touch page faults) when large."""
    return _C.empty(a.shape, a.dtype) if a.nbytes >= _MIN_POOLED else np.empty_like(a)


def _empty(shape, dtype):
    n = dtype.itemsize
    for d in shape:
        n *= d
    return _C.empty(shape, dtype) if n >= _MIN_POOLED else np.empty(shape, dtype)


def activation_forward(x, spec, cols):
    y = _like(x)
    _C.act_forward(x, y, spec.code, spec.numeric, cols)
    return y


def activation_backward(xy, dy, spec, from_y, cols):
    dx = _like(dy)
    _C.act_backward(xy, dy, dx, spec.code, spec.numeric, cols, from_y)
    return dx


# fastnn._kernels offers plain numpy Dense calls to these first (csrc/bindings.cpp:
# checked and allocated in C++; None when the arguments are not plain)
dense_forward_plain = _C.dense_forward_plain
dense_backward_plain = _C.dense_backward_plain


def dense_forward(x, w, w_oi, b, spec, keep_z):
    n = w.shape[0] if w_oi else w.shape[1]
    y = _empty((x.shape[0], n), x.dtype)
    z = _like(y) if keep_z else None
    _C.dense_forward(x, w, w_oi, b, y, z, spec.code, spec.numeric)
    return y, z


def dense_backward(dy, x, w, w_oi, zy, from_y, spec, need_dx, need_dw, need_db):
    dx = _like(x) if need_dx else None
    dw = _like(w) if need_dw else None
    db = _empty((dy.shape[1],), dy.dtype) if need_db else None
    _C.dense_backward(dy, x, w, w_oi, zy, from_y, dx, dw, db, spec.code, spec.numeric)
    return dx, dw, db


def loss_forward(pred, target, spec, want_none):
    out = _like(pred) if want_none else None
    s = _C.loss_forward(spec.code, spec.numeric, pred, target, spec.params.get("pos_weight"), out)
    return s, out


def loss_backward(pred, target, spec, grad, grad_scalar, need_target_grad):
    dpred = _like(pred)
    dtarget = _like(target) if need_target_grad else None
    _C.loss_backward(spec.code, spec.numeric, pred, target, spec.params.get("pos_weight"), grad, grad_scalar, dpred,
                     dtarget)
    return dpred, dtarget


def class_loss_forward(pred, target, spec, want_none):
    out = _empty((pred.shape[0],), pred.dtype) if want_none else None
    s = _C.loss_forward(spec.code, spec.numeric, pred, target, spec.params.get("weight"), out)
    return s, out


def class_loss_backward(pred, target, spec, grad, grad_scalar, need_target_grad):
    dpred = _like(pred)
    dtarget = _like(target) if need_target_grad else None
    _C.loss_backward(spec.code, spec.numeric, pred, target, spec.params.get("weight"), grad, grad_scalar, dpred,
                     dtarget)
    return dpred, dtarget


def dense_cross_entropy(x, w, w_oi, b, target, ignore_index, label_smoothing, grad, grad_scalar, want_none,
                        need_grads, chunk_size):
    n, c = x.shape[0], (w.shape[0] if w_oi else w.shape[1])
    rows = _empty((n,), x.dtype) if want_none else None
    dx = _like(x) if need_grads else None
    dw = _like(w) if need_grads else None
    db = _empty((c,), x.dtype) if need_grads else None
    total = _C.dense_cross_entropy(x, w, w_oi, b, target, ignore_index, label_smoothing, grad, grad_scalar, rows,
                                   dx, dw, db, chunk_size or 0)
    return total, rows, dx, dw, db
