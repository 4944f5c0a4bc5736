"""The TensorFlow bridge's fast route: fastnn's C++ kernels as TensorFlow ops.

csrc/tf/ops.cc is compiled on first use against the installed TensorFlow
(``tf.sysconfig``'s compile and link flags; g++ or $CXX, ~7 s once, cached under
$FASTNN_CACHE_DIR like fastnn.torch's nodes), loaded with ``tf.load_op_library``, and each
op is a ``tf.custom_gradient`` over those ops: no Python runs inside the step, and the
ops carry their own shape functions. They are stateless, so a graph that does not use a
result prunes its op (the first layer's dx). The kernels are fastnn._C's own, reached
through its C++ table: the bits of the numpy_function route.

Used for every Dense, for the activations along their last axis, and for the losses
with elementwise targets or integer class labels; anything else, ``FASTNN_TF_OPS=0``, or a
build that fails (no compiler: one warning) takes the numpy_function route of _tf.py.
``status()`` says which and why. XLA has no kernel for these ops either, so the layers
keep ``supports_jit = False``.
"""
import ctypes
import functools
import os
import struct
import sys

import tensorflow as tf

from fastnn import _extbuild

from . import _kernel_args as A, _numpy as N

def _build():
    from fastnn._backends import _cuda_src

    csrc = _cuda_src.csrc_dir()
    src = os.path.join(csrc, "tf", "ops.cc")
    headers = [os.path.join(csrc, "cpu", h) for h in ("api.h", "kernels.h", "pool.h", "parallel.h")]
    headers.append(os.path.join(csrc, "host", "ops.h"))
    libdir = tf.sysconfig.get_lib()

    def command(out, cxx):
        return ([cxx, "-O2", "-shared", "-fPIC", "-w"] + tf.sysconfig.get_compile_flags()
                + ["-I" + csrc, "-I" + os.path.join(csrc, "include"), src, "-o", out]
                + tf.sysconfig.get_link_flags() + ["-Wl,-rpath," + libdir])

    return _extbuild.build("_fastnn_tf_ops", [src] + headers, command, f"{tf.__version__}|{sys.version}", "tf_ops")


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


def usable():
    return _ext.get() is not None


def _bits(values):
    """float64 values as their 64-bit patterns (the ops' int-list attributes)."""
    return [struct.unpack("<q", struct.pack("<d", float(v)))[0] for v in values]


@functools.lru_cache(maxsize=256)
def _act(name, params):
    """The activation as the ops' attributes (parameters as float64 bit patterns)."""
    code, p, approx, _ = A.activation(name, params)
    return {"act": code, "p": _bits(p), "approx": approx}


act_last_axis = A.last_axis


# ---- Dense ------------------------------------------------------------------------------

def dense(x, w, b, name, params):
    """act(x @ w + b): x (..., in), w (in, out), b (out,) or None; one float dtype."""
    ops = _ext.get()
    x, w = tf.convert_to_tensor(x), tf.convert_to_tensor(w)  # tensors, not variables (see _tf.py)
    b = None if b is None else tf.convert_to_tensor(b)
    attrs = _act(name, params)
    kind = N.saves(name, params)
    has_b = b is not None

    @tf.custom_gradient
    def op(x, w, *bb):
        y, z = ops.fastnn_dense_fwd(x, w, bb[0] if bb else tf.zeros([0], x.dtype), has_b=has_b,
                                    nz=1 if kind == "z" else 0, **attrs)
        r = {"none": y, "y": y, "z": z[0] if z else y}[kind]

        def grad(dy):
            dw, db, dpre = ops.fastnn_dense_bwd_w(dy, x, w, r, from_y=kind == "y", nb=int(has_b),
                                                  nd=0 if kind == "none" else 1, **attrs)
            dx = ops.fastnn_dense_bwd_x(dpre[0] if dpre else dy, w)
            return [dx, dw] + list(db)

        return y, grad

    return op(x, w, *([b] if has_b else []))


# ---- activations ---------------------------------------------------------------------------

def activation(x, name, params):
    ops = _ext.get()
    attrs = _act(name, params)
    from_y = N.saves(name, params) == "y"
    x = tf.convert_to_tensor(x)

    @tf.custom_gradient
    def op(x):
        y = ops.fastnn_act_fwd(x, **attrs)

        def grad(dy):
            return ops.fastnn_act_bwd(dy, y if from_y else x, from_y=from_y, **attrs)

        return y, grad

    return op(x)


# ---- losses -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _loss_attrs(name, params):
    """The loss as the ops' attributes (its four doubles as bit patterns in `d`)."""
    a = dict(A.loss(name, params))
    a["d"] = _bits([a.pop("delta"), a.pop("beta"), a.pop("eps"), a.pop("label_smoothing")])
    return a


def loss_serves(name, pred, target):
    def shape(t):
        return None if t.shape.rank is None else t.shape.as_list()

    return A.loss_serves(name, shape(pred), shape(target), target.dtype == pred.dtype,
                         target.dtype in (tf.int32, tf.int64))


def loss(pred, target, name, params, none_shape):  # noqa: ARG001 - the op infers the shape
    """The "none" loss (per element, or per row for cross_entropy); d/d pred only."""
    ops = _ext.get()
    attrs = _loss_attrs(name, params)
    pred, target = tf.convert_to_tensor(pred), tf.stop_gradient(target)

    @tf.custom_gradient
    def op(pred):
        out = ops.fastnn_loss_fwd(pred, target, **attrs)

        def grad(g):
            return ops.fastnn_loss_bwd(g, pred, target, **attrs)

        return out, grad

    return op(pred)

