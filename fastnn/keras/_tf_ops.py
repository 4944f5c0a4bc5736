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
import threading
import warnings

import tensorflow as tf

from fastnn import _checks as C, _extbuild

from . import _numpy as N

_lock = threading.Lock()
_state = {"ops": None, "why": None, "tried": False}


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
    from fastnn._backends import cpp

    if cpp.unavailable():
        raise RuntimeError(f"the C++ backend is unavailable ({cpp.unavailable()})")
    path = _build()
    ops = tf.load_op_library(path)  # first: it lists the ops the library registers as it loads
    lib = ctypes.CDLL(path)  # the same library instance, for its init entry point
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    lib.fastnn_tf_init.argtypes, lib.fastnn_tf_init.restype = [ctypes.c_void_p], ctypes.c_int
    if lib.fastnn_tf_init(get(cpp._C._cpu_api, b"fastnn._C.cpu_api")) != 0:
        raise RuntimeError("fastnn._C's kernel table does not match csrc/tf/ops.cc (rebuild fastnn)")
    ops._ctypes_lib = lib  # kept alive with the ops
    return ops


def _ops():
    if _state["tried"]:
        return _state["ops"]
    with _lock:
        if not _state["tried"]:
            if os.environ.get("FASTNN_TF_OPS", "1") == "0":
                _state["why"] = "disabled by FASTNN_TF_OPS=0"
            else:
                try:
                    _state["ops"] = _load()
                except Exception as e:  # noqa: BLE001 - reported, then the numpy_function route runs
                    _state["why"] = f"{type(e).__name__}: {e}"
                    warnings.warn(f"fastnn.keras: TensorFlow ops unavailable, using tf.numpy_function "
                                  f"({_state['why'][:300]})", RuntimeWarning, stacklevel=4)
            _state["tried"] = True
    return _state["ops"]


def status():
    """"ok" if the op route is in use, else why not."""
    return "ok" if _ops() is not None else _state["why"]


def usable():
    return _ops() is not None


def _bits(values):
    """float64 values as their 64-bit patterns (the ops' int-list attributes)."""
    return [struct.unpack("<q", struct.pack("<d", float(v)))[0] for v in values]


@functools.lru_cache(maxsize=256)
def _act(name, params):
    spec = C.activation_spec_cached("fastnn.keras." + name, name, dict(params))
    num = spec.numeric
    return {"act": spec.code, "p": _bits(num[:7]), "approx": int(num[7])}, spec


def act_last_axis(name, params, ndim):
    """True if the activation is elementwise or runs along the last axis (what the ops do)."""
    axis = _act(name, params)[1].axis
    return axis is None or (ndim is not None and ndim > 0 and axis % ndim == ndim - 1)


# ---- Dense ------------------------------------------------------------------------------

def dense(x, w, b, name, params):
    """act(x @ w + b): x (..., in), w (in, out), b (out,) or None; one float dtype."""
    ops = _ops()
    x, w = tf.convert_to_tensor(x), tf.convert_to_tensor(w)  # tensors, not variables (see _tf.py)
    b = None if b is None else tf.convert_to_tensor(b)
    attrs = _act(name, params)[0]
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
    ops = _ops()
    attrs = _act(name, params)[0]
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

_ELEMENTWISE = ("mse", "mae", "huber", "smooth_l1", "bce", "bce_with_logits", "kl_div", "poisson_nll", "hinge",
                "squared_hinge", "log_cosh")  # csrc/cpu/kernels.h, Loss


@functools.lru_cache(maxsize=256)
def _loss_attrs(name, params):
    from fastnn._backends import cpp

    p = dict(params)
    spec = C.loss_spec_cached("fastnn.keras." + name, name, p)
    e = cpp._loss_params(spec)  # the C++ backend's own defaults
    kind = {"cross_entropy": -1, "nll": -2}.get(name)
    return {"kind": _ELEMENTWISE.index(name) if kind is None else kind,
            "d": _bits([e["delta"], e["beta"], e["eps"], p.get("label_smoothing", 0.0)]),
            "log_target": bool(e["log_target"]), "log_input": bool(e["log_input"]), "full": bool(e["full"]),
            "ignore_index": int(p.get("ignore_index", -100))}


def _same_shape(a, b):
    return a.shape.rank is not None and a.shape.as_list() == b.shape.as_list()


def loss_serves(name, pred, target):
    """True for the calls the ops take: elementwise losses (target of pred's dtype and
    shape) and the class losses with integer labels of shape pred.shape[:-1]."""
    if pred.shape.rank is None or target.shape.rank is None:
        return False
    if name in ("cross_entropy", "nll"):
        return target.dtype.is_integer and target.shape.as_list() == pred.shape.as_list()[:-1]
    return name in _ELEMENTWISE and target.dtype == pred.dtype and _same_shape(target, pred)


def loss(pred, target, name, params, none_shape):  # noqa: ARG001 - the op infers the shape
    """The "none" loss (per element, or per row for cross_entropy); d/d pred only."""
    ops = _ops()
    attrs = _loss_attrs(name, params)
    pred, target = tf.convert_to_tensor(pred), tf.stop_gradient(target)
    if target.dtype.is_integer and target.dtype not in (tf.int32, tf.int64):
        target = tf.cast(target, tf.int32)

    @tf.custom_gradient
    def op(pred):
        out = ops.fastnn_loss_fwd(pred, target, **attrs)

        def grad(g):
            return ops.fastnn_loss_bwd(g, pred, target, **attrs)

        return out, grad

    return op(pred)

