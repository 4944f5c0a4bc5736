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


def _ffi(op, shapes, name, params, flags, *args):
    return jax.ffi.ffi_call("fastnn_" + op, shapes, vmap_method=_VMAP)(*args, **_attrs(_OPS[op], name, params),
                                                                       **dict(flags))


def _call(ffi, op, shapes, name, params, *args, **flags):
    """Kernel call `op` (see _numpy.py) on `args`, with results of `shapes`, on either route.
    FFI calls carry their partitioning rule (_sharded): under a sharded jit they run per shard."""
    if ffi:
        single = not isinstance(shapes, (list, tuple))
        shapes = [shapes] if single else list(shapes)
        factors = _factors(op, name, params, [tuple(a.shape) for a in args], len(shapes), flags)
        outs = _sharded(op, tuple(_sds(s.shape, s.dtype) for s in shapes), name, params,
                        tuple(sorted(flags.items())), factors, *args)
        return outs[0] if single else list(outs)
    fn = getattr(N, op)
    if _OPS[op] is not None:
        fn = functools.partial(fn, name=name, params=params, **flags)
    return jax.pure_callback(fn, shapes, *args, vmap_method=_VMAP)


def _sds(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


# ---- partitioning: the FFI calls under jit over a Mesh (data / model parallel) -------------
#
# Each FFI call is wrapped in jax.experimental.custom_partitioning with an einsum-like
# factor rule (Shardy's sharding_rule); the same factors drive the partition callback,
# which keeps every sharded factor sharded and runs the kernel on the local shards:
#
#   dense_fwd    x (B.., i), w (i, o), b (o) | ()       -> y, [z] (B.., o)       i replicated
#                (identity activation: i may stay sharded, a sum over i, then + b: row parallel)
#   dense_bwd_w  dy (B.., o), x (B.., i), w (i, o), r   -> dw (i, o), [db (o)], [dpre (B.., o)]
#   dense_bwd_x  dpre (B.., o), w (i, o)                -> dx (B.., i)
#   act_*        elementwise: every dim passes through; softmax rows: the last dim replicated
#   loss_*       elementwise: every dim; class losses: pred (B.., c), target (B..) -> (B..),
#                c replicated
#
# A result that is a sum over a sharded factor (dw and db over the batch, dx over o) is
# psum-med over the factor's mesh axes, which is what XLA does for a stock dot (the same
# all-reduce, no all-gather); Shardy is told these are reduction factors. A factor marked replicated
# (the contraction i of a forward with an activation, which cannot follow a partial sum; a softmax
# row; the classes of a loss) is gathered by the partitioner before the call, so any
# sharding is correct, at the cost of that all-gather. Under vmap (custom_vmap below) the
# plain FFI call runs, once per example.

def _factors(op, name, params, arg_shapes, n_results, flags):
    """(operand factors, result factors, replicated factors, per result the factors it sums
    over): tuples of factor names."""
    nd = len(arg_shapes[0])
    batch = tuple(f"b{k}" for k in range(nd - 1))
    if op == "dense_fwd":  # the identity activation may sum partial products over a sharded i
        b = ("o",) if len(arg_shapes[2]) else ()
        partial = N.saves(name, params) == "none"
        return ((batch + ("i",), ("i", "o"), b), (batch + ("o",),) * n_results, () if partial else ("i",),
                (("i",),) * n_results)
    if op == "dense_bwd_w":  # dw, [db], [dpre]: dw and db sum over the batch, dpre is elementwise
        rest = (("o",),) if flags["has_b"] else ()
        res = (("i", "o"),) + rest + ((batch + ("o",),) * (n_results - 1 - len(rest)))
        sums = (batch,) * (1 + len(rest)) + ((),) * (n_results - 1 - len(rest))
        return (batch + ("o",), batch + ("i",), ("i", "o"), batch + ("o",)), res, (), sums
    if op == "dense_bwd_x":
        return (batch + ("o",), ("i", "o")), (batch + ("i",),), (), (("o",),)
    every = tuple(f"d{k}" for k in range(nd))
    if op.startswith("act"):
        row = A.activation(name, params).axis is not None and nd > 0
        return (every,) * len(arg_shapes), (every,), ((every[-1],) if row else ()), ((),)
    # losses: loss_fwd (pred, target), loss_bwd (g, pred, target)
    pred = arg_shapes[-2]
    every = tuple(f"d{k}" for k in range(len(pred)))
    tgt = every[:len(arg_shapes[-1])]
    if len(tgt) == len(every):  # elementwise
        ops = (every, every) if op == "loss_fwd" else (every, every, every)
        return ops, (every,), (), ((),)
    row = every[:-1]
    ops = (every, tgt) if op == "loss_fwd" else (row, every, tgt)
    return ops, (row if op == "loss_fwd" else every,), (every[-1],), ((),)


def _rule(*static):
    """Shardy's sharding rule for a call (custom_partitioning passes the static arguments,
    then the mesh and the MLIR types)."""
    operands, results, replicated, sums = static[5]
    # Shardy's reduction factors appear in no result (dense_bwd_w's batch is dpre's too)
    reduced = {f for s in sums for f in s} - {f for r in results for f in r} - set(replicated)
    text = ", ".join(" ".join(o) for o in operands) + " -> " + ", ".join(" ".join(r) for r in results)
    return text, {"reduction_factors": tuple(sorted(reduced)), "need_replication_factors": tuple(replicated)}


def _axes(entry):
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def _partition(op, shapes, name, params, flags, factors, mesh, arg_shapes, result_shape):  # noqa: ARG001
    """The shards each operand and result keeps, and the per-shard computation."""
    from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: PLC0415

    operands, results, replicated, summed = factors
    axes_of, used = {}, set()
    for fs, a in zip(operands, arg_shapes):
        spec = tuple(a.sharding.spec) + (None,) * (len(fs) - len(a.sharding.spec))
        for f, entry in zip(fs, spec):
            ax = _axes(entry)
            if f in axes_of or f in replicated or not ax or used & set(ax):
                continue
            axes_of[f] = ax
            used |= set(ax)

    def spec_of(fs):
        return P(*[(axes_of[f] if len(axes_of[f]) > 1 else axes_of[f][0]) if f in axes_of else None for f in fs])

    arg_shardings = tuple(NamedSharding(mesh, spec_of(fs)) for fs in operands)
    res_shardings = [NamedSharding(mesh, spec_of(fs)) for fs in results]
    sums = [tuple(a for f in fs for a in axes_of.get(f, ())) for fs in summed]

    def lower(*args):
        local = [_sds(sh.shard_shape(s.shape), s.dtype) for sh, s in zip(res_shardings, shapes)]
        bias = None
        if op == "dense_fwd" and sums[0] and dict(flags)["has_b"]:  # row parallel: + b after the sum
            bias, args = args[2], (args[0], args[1], jnp.zeros((), args[0].dtype))
            outs = _ffi(op, local, name, params, (("has_b", False),), *args)
        else:
            outs = _ffi(op, local, name, params, flags, *args)
        outs = tuple(jax.lax.psum(o, ax) if ax else o for o, ax in zip(outs, sums))
        return outs if bias is None else (outs[0] + bias,)

    return mesh, lower, tuple(res_shardings), arg_shardings


def _plain(op, shapes, name, params, flags, factors, *args):
    del factors
    return tuple(_ffi(op, list(shapes), name, params, flags, *args))


def _make_sharded():
    from jax.custom_batching import custom_vmap  # noqa: PLC0415
    from jax.experimental.custom_partitioning import custom_partitioning  # noqa: PLC0415

    part = custom_partitioning(_plain, static_argnums=(0, 1, 2, 3, 4, 5))
    part.def_partition(partition=_partition, sharding_rule=_rule)

    def sharded(op, shapes, name, params, flags, factors, *args):
        @custom_vmap
        def call(*xs):
            return part(op, shapes, name, params, flags, factors, *xs)

        @call.def_vmap
        def _(axis_size, in_batched, *xs):  # noqa: ARG001 - the kernel once per example
            xs = [x if b else jnp.broadcast_to(x, (axis_size,) + x.shape) for x, b in zip(xs, in_batched)]
            outs = jax.vmap(lambda *a: _plain(op, shapes, name, params, flags, factors, *a))(*xs)
            return outs, (True,) * len(outs)

        return call(*args)

    return sharded


_sharded = _make_sharded()


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
