"""JAX bridge: fastnn kernels inside jax.grad and jax.jit (Keras' fit jits its step).

Each op is one ``jax.custom_vjp`` graph; each kernel call in it takes one of two routes
(the same kernels, the same bits):

- XLA FFI custom calls (``ffi=True``): csrc/jax/ffi.cpp is compiled on first use against
  the installed jaxlib's FFI headers (``jax.ffi.include_dir()``; g++ or $CXX, ~5 s once,
  cached under $FASTNN_CACHE_DIR), its handlers are registered for the CPU platform and
  called with ``jax.ffi.ffi_call``. The step Keras' fit compiles never leaves XLA: no
  Python callback, no copy (the kernels write into XLA's buffers, through fastnn._C's front
  end). Used on a CPU jax for every Dense, the activations along their last axis, and the
  losses with integer class labels or elementwise targets.
- ``jax.pure_callback`` into _numpy.py (``ffi=False``): anything else (a GPU jax, no
  compiler: one warning, FASTNN_JAX_FFI=0, calls the handlers do not take). The callbacks
  receive host arrays that np.asarray views without a copy. pure_callback is pure: XLA
  removes a call whose result is unused (the first layer's dx), as it does an FFI call.

Both use ``vmap_method="sequential"``: under vmap the kernel runs once per batch element,
since a batched weight is not a Dense kernel. ``status()`` says which route runs and why.
"""
import ctypes
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fastnn import _extbuild

from . import _kernel_args as A, _numpy as N

_VMAP = "sequential"
# op -> the attributes its handler takes: those of the activation, of the loss, or none
_OPS = {"dense_fwd": "act", "dense_bwd_w": "act", "dense_bwd_x": None, "act_fwd": "act", "act_bwd": "act",
        "loss_fwd": "loss", "loss_bwd": "loss"}


def _build():
    import jaxlib

    csrc, src, deps = A.sources("jax", "ffi.cpp")

    def command(out, cxx):
        return [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-w",  # the handler symbols are exported
                "-I" + jax.ffi.include_dir(), "-I" + csrc, "-I" + csrc + "/include", src, "-o", out]

    return _extbuild.build("_fastnn_jax_ffi", deps, command, f"{jaxlib.__version__}|{sys.version}", "jax_ffi")


def _load():
    lib = ctypes.CDLL(_build())
    _extbuild.init_ctypes(lib, "fastnn_jax_init")
    for op in _OPS:
        jax.ffi.register_ffi_target("fastnn_" + op, jax.ffi.pycapsule(getattr(lib, "fastnn_" + op)), platform="cpu")
    return lib


_ext = _extbuild.Lazy(_load, "FASTNN_JAX_FFI", "fastnn.keras: XLA FFI kernels", "jax.pure_callback")


def status():
    """"ok" if the FFI route is in use on this (CPU) jax, else why not."""
    if jax.default_backend() != "cpu":
        return f"jax runs on {jax.default_backend()}: the pure_callback route is used"
    return "ok" if _ext.get() is not None else _ext.why


def ffi_usable():
    """True where the FFI route serves this process's computations (a CPU jax)."""
    return jax.default_backend() == "cpu" and _ext.get() is not None


@functools.lru_cache(maxsize=512)
def _attrs(kind, name, params):
    """The handler attributes of an activation (act, p) or a loss (kind, p): 64-bit code, 8 doubles."""
    if kind is None:
        return {}
    spec = A.activation(name, params) if kind == "act" else A.loss(name, params)
    return {kind if kind == "act" else "kind": np.int64(spec.code), "p": np.asarray(spec.numeric, np.float64)}


def _call(ffi, op, shapes, name, params, *args, **flags):
    """Kernel call `op` (see _numpy.py) on `args`, with results of `shapes`, on either route."""
    if ffi:
        return jax.ffi.ffi_call("fastnn_" + op, shapes, vmap_method=_VMAP)(*args, **_attrs(_OPS[op], name, params),
                                                                           **flags)
    fn = getattr(N, op)
    if _OPS[op] is not None:
        fn = functools.partial(fn, name=name, params=params, **flags)
    return jax.pure_callback(fn, shapes, *args, vmap_method=_VMAP)


def _sds(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _act_ffi(name, params, ndim):
    return ffi_usable() and A.last_axis(name, params, ndim)


# ---- Dense ------------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _dense(x, w, b, name, params, ffi):
    return _dense_fwd(x, w, b, name, params, ffi)[0]


def _dense_fwd(x, w, b, name, params, ffi):
    kind = N.saves(name, params)
    y_sds = _sds(x.shape[:-1] + w.shape[-1:], x.dtype)
    has_b = b is not None  # None cannot cross a call: a 0-d placeholder stands for it
    outs = _call(ffi, "dense_fwd", [y_sds] * (2 if kind == "z" else 1), name, params, x, w,
                 b if has_b else jnp.zeros((), x.dtype), has_b=has_b)
    return outs[0], (x, w, None if kind == "none" else outs[-1], b)


def _dense_bwd(name, params, ffi, res, dy):
    x, w, r, b = res
    kind = N.saves(name, params)
    has_b, linear = b is not None, kind == "none"
    shapes = [_sds(w.shape, w.dtype)] + ([_sds(w.shape[-1:], w.dtype)] if has_b else [])
    shapes += [] if linear else [_sds(dy.shape, dy.dtype)]
    g = _call(ffi, "dense_bwd_w", shapes, name, params, dy, x, w, dy if r is None else r, from_y=kind == "y",
              has_b=has_b)
    dpre = dy if linear else g[-1]
    dx = _call(ffi, "dense_bwd_x", _sds(x.shape, x.dtype), name, params, dpre, w)  # XLA drops it when unused
    return dx, g[0], (g[1] if has_b else None)


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense(x, w, b, name, params):
    """act(x @ w + b): x (..., in), w (in, out), b (out,) or None; one float dtype."""
    return _dense(x, w, b, name, params, _act_ffi(name, params, len(x.shape)))


# ---- activations ---------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _activation(x, name, params, ffi):
    return _call(ffi, "act_fwd", _sds(x.shape, x.dtype), name, params, x)


def _activation_fwd(x, name, params, ffi):
    y = _activation(x, name, params, ffi)
    return y, (y if N.saves(name, params) == "y" else x)


def _activation_bwd(name, params, ffi, r, dy):
    from_y = N.saves(name, params) == "y"
    return (_call(ffi, "act_bwd", _sds(dy.shape, dy.dtype), name, params, dy, r, from_y=from_y),)


_activation.defvjp(_activation_fwd, _activation_bwd)


def activation(x, name, params):
    return _activation(x, name, params, _act_ffi(name, params, len(x.shape)))


# ---- losses -----------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _loss(pred, target, name, params, none_shape, ffi):
    return _call(ffi, "loss_fwd", _sds(none_shape, pred.dtype), name, params, pred, target)


def _loss_fwd(pred, target, name, params, none_shape, ffi):
    return _loss(pred, target, name, params, none_shape, ffi), (pred, target)


def _loss_bwd(name, params, none_shape, ffi, res, g):
    pred, target = res
    dpred = _call(ffi, "loss_bwd", _sds(pred.shape, pred.dtype), name, params, g, pred, target)
    # targets are constants (Keras' labels): a zero cotangent (float0 for integer labels)
    if jnp.issubdtype(target.dtype, jnp.floating):
        return dpred, jnp.zeros_like(target)
    return dpred, np.zeros(target.shape, jax.dtypes.float0)


_loss.defvjp(_loss_fwd, _loss_bwd)


def loss(pred, target, name, params, none_shape):
    """The "none" loss (per element, or per row for cross_entropy); d/d pred only."""
    ffi = ffi_usable() and A.loss_serves(name, pred.shape, target.shape, target.dtype == pred.dtype,
                                         target.dtype in (jnp.int32, jnp.int64))
    return _loss(pred, target, name, params, tuple(none_shape), ffi)


def logits_of(output, op_type):  # noqa: ARG001 - Keras' jax losses never use the logits
    return None
