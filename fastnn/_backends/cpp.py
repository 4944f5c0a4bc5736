"""The C++ CPU backend: fastnn._C (pybind11, OpenBLAS, fused epilogues, own threads).

Every kernel function receives C-contiguous numpy arrays of one float dtype from the
prepared calls (fastnn/_activation.py, _dense.py, _loss.py; validated there) and returns
freshly allocated outputs; fastnn._C checks again what its kernels rely on. The runtime
controls at the end (threads, the output buffer cache, the code paths chosen) are what
fastnn's public functions of the same names call.
"""
import ctypes
import os
from types import ModuleType
from typing import Optional

import numpy as np

from .._checks import NO_CE_EXTRAS as _NO_EXTRAS

DEVICE = "cpu"
_C: Optional[ModuleType] = None
_why: Optional[str] = None


def _load_openblas():
    # fastnn._C links libscipy_openblas.so. Loading it first (RTLD_GLOBAL) lets the
    # dynamic loader resolve the extension's dependency by soname, wherever pip put
    # the scipy-openblas32 wheel (an editable install has no relative rpath to it).
    #
    # OPENBLAS_THREAD_TIMEOUT=16 (unless the user set it): OpenBLAS's worker threads spin
    # 2^16 cycles after a product, then sleep, instead of the default 2^28 (~0.1 s), during
    # which they would hold the cores that whatever runs next needs (fastnn's elementwise
    # kernels, torch's or TensorFlow's ops). 2^16 still covers the gaps between one small
    # layer's products; 2^18 already reaches the next kernel (docs/performance.md,
    # "Threads and pools").
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


# fastnn/_dense.py's plain route offers plain numpy Dense calls to these first
# (csrc/bindings.cpp: checked and allocated in C++; None when the arguments are not plain)
if _C is not None:
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
                        need_grads, chunk_size, extras=None):
    n, c = x.shape[0], (w.shape[0] if w_oi else w.shape[1])
    e = extras or _NO_EXTRAS
    rows = _empty((n,), x.dtype) if want_none else None
    dx = _like(x) if need_grads else None
    dw = _like(w) if need_grads else None
    db = _empty((c,), x.dtype) if need_grads else None
    lse = _empty((n,), x.dtype) if e.want_lse else None
    total = _C.dense_cross_entropy(x, w, w_oi, b, target, ignore_index, label_smoothing, grad, grad_scalar, rows,
                                   dx, dw, db, chunk_size or 0, e.class_weight, e.row_weight, e.softcap or 0.0,
                                   e.z_scale, lse)
    return total, rows, dx, dw, db, lse


# ---- runtime controls (fastnn.num_threads, set_num_threads, empty_cache, cache_info, ...) ----

def num_threads():
    """Threads fastnn's C++ kernels use, the caller included (OpenBLAS keeps its own count)."""
    return _C.num_threads()


def set_num_threads(n):
    _C.set_num_threads(n)


def empty_cache():
    """Frees the cached output buffers; returns the bytes freed."""
    return int(_C.empty_cache())


def cache_info():
    return dict(_C.cache_stats())


def set_cache_limit(nbytes):
    """The output buffer cache's limit in bytes (0: off)."""
    _C.set_cache_limit(int(nbytes))


def front_end_table():
    """The PyCapsule "fastnn._C.cpu_api": the C++ front end's function table
    (csrc/cpu/api.h) that fastnn.torch's nodes, the TF ops and the jax FFI handlers call."""
    return _C._cpu_api


def code_paths():
    """{"gemm": (library, min multiply-adds), "gelu": "avx512" | "portable", "blas": OpenBLAS's
    build and core}: what this CPU runs."""
    return {"gemm": tuple(_C._gemm_path()), "gelu": _C._gelu_path(), "blas": _C.blas_config()}
