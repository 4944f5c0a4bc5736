"""The JAX bridge's fast route: fastnn's C++ kernels as XLA FFI custom calls.

csrc/jax/ffi.cpp is compiled on first use against the installed jaxlib's FFI headers
(``jax.ffi.include_dir()``; g++ or $CXX, ~5 s once, cached under $FASTNN_CACHE_DIR like
fastnn.torch's nodes), its handlers are registered for the CPU platform, and each op is a
``jax.custom_vjp`` whose forward and backward are ``jax.ffi.ffi_call``s. The step that
Keras' fit compiles then never leaves XLA: no Python callback, no copy of the results
(the kernels write into XLA's buffers). The kernels are fastnn._C's own, reached through
its C++ table, so the results are the bits the pure_callback route gives.

Used when the computation runs on the CPU (``jax.default_backend() == "cpu"``), for every
Dense, for the activations along their last axis, and for the losses with integer class
labels or elementwise targets. Anything else, ``FASTNN_JAX_FFI=0``, or a build that fails
(no compiler: one warning) takes the pure_callback route of _jax.py; ``status()`` says
which and why.
"""
import ctypes
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fastnn import _extbuild

from . import _kernel_args as A, _numpy as N

_TARGETS = ("fastnn_dense_fwd", "fastnn_dense_bwd_w", "fastnn_dense_bwd_x", "fastnn_act_fwd", "fastnn_act_bwd",
            "fastnn_loss_fwd", "fastnn_loss_bwd")
_VMAP = "sequential"  # under vmap the kernel runs once per batch element (a batched weight is not a Dense kernel)


def _build():
    import jaxlib

    from fastnn._backends import _cuda_src

    csrc = _cuda_src.csrc_dir()
    src = os.path.join(csrc, "jax", "ffi.cpp")
    headers = [os.path.join(csrc, "cpu", h) for h in ("api.h", "kernels.h", "pool.h", "parallel.h")]
    headers.append(os.path.join(csrc, "host", "ops.h"))

    def command(out, cxx):
        return [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-w",  # the handler symbols are exported
                "-I" + jax.ffi.include_dir(), "-I" + csrc, "-I" + os.path.join(csrc, "include"), src, "-o", out]

    return _extbuild.build("_fastnn_jax_ffi", [src] + headers, command, f"{jaxlib.__version__}|{sys.version}",
                           "jax_ffi")


def _load():
    lib = ctypes.CDLL(_build())
    _extbuild.init_ctypes(lib, "fastnn_jax_init")
    for name in _TARGETS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    return lib


_ext = _extbuild.Lazy(_load, "FASTNN_JAX_FFI", "fastnn.keras: XLA FFI kernels", "jax.pure_callback")


def status():
    """"ok" if the FFI route is in use on this (CPU) jax, else why not."""
    if jax.default_backend() != "cpu":
        return f"jax runs on {jax.default_backend()}: the pure_callback route is used"
    return "ok" if _ext.get() is not None else _ext.why


def usable():
    """True where the FFI route serves this process's computations (a CPU jax)."""
    return jax.default_backend() == "cpu" and _ext.get() is not None


def _call(target, shapes):
    return jax.ffi.ffi_call(target, shapes, vmap_method=_VMAP)


def _sds(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


@functools.lru_cache(maxsize=256)
def _act(name, params):
    """The activation as the handlers' attributes."""
    code, p, approx, _ = A.activation(name, params)
    return {"act": np.int64(code), "p": np.asarray(p, np.float64), "approx": np.int64(approx)}


act_last_axis = A.last_axis


# ---- Dense ------------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _dense(x, w, b, name, params):
    return _dense_fwd(x, w, b, name, params)[0]


def _dense_fwd(x, w, b, name, params):
    attrs = _act(name, params)
    kind = N.saves(name, params)
    y_sds = _sds(x.shape[:-1] + w.shape[-1:], x.dtype)
    has_b = b is not None
    outs = _call("fastnn_dense_fwd", [y_sds] * (2 if kind == "z" else 1))(
        x, w, b if has_b else jnp.zeros((), x.dtype), **attrs, has_b=has_b)
    return outs[0], (x, w, None if kind == "none" else outs[-1], b)


def _dense_bwd(name, params, res, dy):
    x, w, r, b = res
    attrs = _act(name, params)
    kind = N.saves(name, params)
    has_b, linear = b is not None, kind == "none"
    shapes = [_sds(w.shape, w.dtype)] + ([_sds(w.shape[-1:], w.dtype)] if has_b else [])
    shapes += [] if linear else [_sds(dy.shape, dy.dtype)]
    g = _call("fastnn_dense_bwd_w", shapes)(dy, x, w, dy if r is None else r, **attrs, from_y=kind == "y",
                                            has_b=has_b)
    dpre = dy if linear else g[-1]
    dx = _call("fastnn_dense_bwd_x", _sds(x.shape, x.dtype))(dpre, w)  # a separate call: XLA drops it when unused
    return dx, g[0], (g[1] if has_b else None)


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense(x, w, b, name, params):
    return _dense(x, w, b, name, params)


# ---- activations ---------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _activation(x, name, params):
    return _call("fastnn_act_fwd", _sds(x.shape, x.dtype))(x, **_act(name, params))


def _activation_fwd(x, name, params):
    y = _activation(x, name, params)
    return y, (y if N.saves(name, params) == "y" else x)


def _activation_bwd(name, params, r, dy):
    from_y = N.saves(name, params) == "y"
    return (_call("fastnn_act_bwd", _sds(dy.shape, dy.dtype))(dy, r, **_act(name, params), from_y=from_y),)


_activation.defvjp(_activation_fwd, _activation_bwd)


def activation(x, name, params):
    return _activation(x, name, params)


# ---- losses -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _loss_attrs(name, params):
    """The loss as the handlers' attributes (64-bit integers and doubles)."""
    return {k: (v if isinstance(v, bool) else np.int64(v) if isinstance(v, int) else np.float64(v))
            for k, v in A.loss(name, params).items()}


def loss_serves(name, pred, target):
    return A.loss_serves(name, pred.shape, target.shape, target.dtype == pred.dtype,
                         target.dtype in (jnp.int32, jnp.int64))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _loss(pred, target, name, params, none_shape):
    return _call("fastnn_loss_fwd", _sds(none_shape, pred.dtype))(pred, target, **_loss_attrs(name, params))


def _loss_fwd(pred, target, name, params, none_shape):
    return _loss(pred, target, name, params, none_shape), (pred, target)


def _loss_bwd(name, params, none_shape, res, g):
    pred, target = res
    dpred = _call("fastnn_loss_bwd", _sds(pred.shape, pred.dtype))(g, pred, target,
                                                                    **_loss_attrs(name, params))
    if jnp.issubdtype(target.dtype, jnp.floating):  # labels are constants: a zero cotangent
        return dpred, jnp.zeros_like(target)
    return dpred, np.zeros(target.shape, jax.dtypes.float0)


_loss.defvjp(_loss_fwd, _loss_bwd)


def loss(pred, target, name, params, none_shape):
    return _loss(pred, target, name, params, tuple(none_shape))
