"""TensorFlow bridge: fastnn kernels inside TF autodiff and tf.function.

Each op is one ``tf.custom_gradient`` graph; each kernel call in it takes one of two
routes (the same kernels, the same bits):

- TensorFlow ops (``ops`` given): csrc/tf/ops.cc is compiled on first use against the
  installed TensorFlow (``tf.sysconfig``'s flags; g++ or $CXX, ~7 s once, cached under
  $FASTNN_CACHE_DIR) and loaded with ``tf.load_op_library``. No Python runs inside the
  step; the ops carry their own shape functions and reach the kernels through fastnn._C's
  front end. Used for every Dense, the activations along their last axis, and the losses
  with elementwise targets or integer class labels.
- ``tf.numpy_function(..., stateful=False)`` into _numpy.py: anything else (no compiler:
  one warning, FASTNN_TF_OPS=0, calls the ops do not take). numpy_function loses static
  shapes; they are restored with set_shape. This route costs a Python round trip per
  call (examples/keras_mlp.py --overhead; docs/performance.md), the ops about nothing.

Both are stateless, so a graph that does not use a result prunes its call (the first
layer's dx). XLA compiles neither, so the layers keep ``supports_jit = False``.
"""
import ctypes
import functools
import struct
import sys

import tensorflow as tf

from fastnn import _extbuild

from . import _kernel_args as A, _numpy as N


def _build():
    csrc, src, deps = A.sources("tf", "ops.cc")
    libdir = tf.sysconfig.get_lib()

    def command(out, cxx):
        return ([cxx, "-O2", "-shared", "-fPIC", "-w"] + tf.sysconfig.get_compile_flags()
                + ["-I" + csrc, "-I" + csrc + "/include", src, "-o", out]
                + tf.sysconfig.get_link_flags() + ["-Wl,-rpath," + libdir])

    return _extbuild.build("_fastnn_tf_ops", deps, command, f"{tf.__version__}|{sys.version}", "tf_ops")


def _load():
    path = _build()
    ops = tf.load_op_library(path)  # first: it lists the ops the library registers as it loads
    lib = ctypes.CDLL(path)  # the same library instance, for its init entry point
    _extbuild.init_ctypes(lib, "fastnn_tf_init")
    ops._ctypes_lib = lib  # kept alive with the ops
    return ops


_ext = _extbuild.Lazy(_load, "FASTNN_TF_OPS", "fastnn.keras: TensorFlow ops", "tf.numpy_function")


def status():
    """"ok" if the op route is in use, else why not."""
    return "ok" if _ext.get() is not None else _ext.why


def _bits(values):
    """float64 values as their 64-bit patterns (the ops' int-list attributes)."""
    return [struct.unpack("<q", struct.pack("<d", float(v)))[0] for v in values]


@functools.lru_cache(maxsize=512)
def _attrs(op, name, params):
    """The op attributes of an activation (act, p) or a loss (kind, p)."""
    if op == "dense_bwd_x":
        return {}
    if op.startswith("loss"):
        spec = A.loss(name, params)
        return {"kind": spec.code, "p": _bits(spec.numeric)}
    spec = A.activation(name, params)
    return {"act": spec.code, "p": _bits(spec.numeric)}


def _flat(out):
    """An op's outputs as one list (list-valued outputs such as `db: nb * T` spliced in)."""
    if isinstance(out, tf.Tensor):
        return [out]
    return [t for o in out for t in (o if isinstance(o, (list, tuple)) else [o])]


def _call(ops, op, inputs, shapes, name, params, flags=(), op_flags=(), np_flags=()):
    """Kernel call `op` (see _numpy.py): TF op `ops.fastnn_<op>` when ops is not None,
    else the numpy function; `flags` go to both, `op_flags` (the op's output counts) to the
    op only, `np_flags` to the numpy function only."""
    if ops is not None:
        return _flat(getattr(ops, "fastnn_" + op)(*inputs, **_attrs(op, name, params), **dict(flags), **dict(op_flags)))
    fn = getattr(N, op)
    if op != "dense_bwd_x":
        fn = functools.partial(fn, name=name, params=params, **dict(flags), **dict(np_flags))
    outs = tf.numpy_function(fn, inputs, [inputs[0].dtype] * len(shapes), stateful=False)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    for o, s in zip(outs, shapes):
        o.set_shape(s)
    return outs


def _ops_for(usable):
    return _ext.get() if usable else None


def dense(x, w, b, name, params):
    """act(x @ w + b): x (..., in), w (in, out), b (out,) or None; one float dtype."""
    # tensors, not tf.Variables: a variable read inside the custom_gradient function would
    # make TF ask grad for a `variables=` argument
    x, w = tf.convert_to_tensor(x), tf.convert_to_tensor(w)
    b = None if b is None else tf.convert_to_tensor(b)
    ops = _ops_for(A.last_axis(name, params, x.shape.rank))
    kind = N.saves(name, params)
    has_b, linear = b is not None, kind == "none"
    y_shape = x.shape[:-1].concatenate(w.shape[-1:])

    @tf.custom_gradient
    def op(x, w, *bb):
        outs = _call(ops, "dense_fwd", [x, w, bb[0] if bb else tf.zeros([0], x.dtype)], [y_shape] * (1 + (kind == "z")),
                     name, params, {"has_b": has_b}, {"nz": int(kind == "z")})
        y = outs[0]
        r = outs[-1] if kind == "z" else y

        def grad(dy):
            shapes = [w.shape] + ([w.shape[-1:]] if has_b else []) + ([] if linear else [y_shape])
            g = _call(ops, "dense_bwd_w", [dy, x, w, r], shapes, name, params, {"from_y": kind == "y"},
                      {"nb": int(has_b), "nd": int(not linear)}, {"has_b": has_b})
            (dx,) = _call(ops, "dense_bwd_x", [dy if linear else g[-1], w], [x.shape], name, params)
            return [dx, g[0]] + ([g[1]] if has_b else [])

        return y, grad

    return op(x, w, *([b] if has_b else []))


def activation(x, name, params):
    x = tf.convert_to_tensor(x)
    ops = _ops_for(A.last_axis(name, params, x.shape.rank))
    from_y = N.saves(name, params) == "y"

    @tf.custom_gradient
    def op(x):
        (y,) = _call(ops, "act_fwd", [x], [x.shape], name, params)

        def grad(dy):
            return _call(ops, "act_bwd", [dy, y if from_y else x], [x.shape], name, params, {"from_y": from_y})[0]

        return y, grad

    return op(x)


def loss(pred, target, name, params, none_shape):
    """The "none" loss (per element, or per row for cross_entropy); d/d pred only."""
    pred, target = tf.convert_to_tensor(pred), tf.stop_gradient(target)

    def shape(t):
        return None if t.shape.rank is None else t.shape.as_list()

    ops = _ops_for(A.loss_serves(name, shape(pred), shape(target), target.dtype == pred.dtype,
                                 target.dtype in (tf.int32, tf.int64)))

    @tf.custom_gradient
    def op(pred):
        (out,) = _call(ops, "loss_fwd", [pred, target], [none_shape], name, params)

        def grad(g):
            return _call(ops, "loss_bwd", [g, pred, target], [pred.shape], name, params)[0]

        return out, grad

    return op(pred)


def logits_of(output, op_type):
    """The logits behind a sigmoid / softmax output, as stock Keras' TF losses find them
    (``_keras_logits`` set by keras.activations, or the graph op's input); else None."""
    if hasattr(output, "_keras_logits"):
        return output._keras_logits
    if (hasattr(output, "op") and not isinstance(output, (tf.__internal__.EagerTensor, tf.Variable))
            and output.op.type == op_type and len(output.op.inputs) == 1):
        return output.op.inputs[0]
    return None
