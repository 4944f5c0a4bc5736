"""Autograd for the fastnn kernels, and which path each call takes.

- Eager, CPU tensors, the C++ backend selected: the C++ autograd nodes of _native
  (csrc/torch/native.cpp: DenseFn, ActFn, LossFn), with or without grad. They serve the
  common calls and return None for the rest (class weights, pos_weight, a target that
  requires grad, softmax across a non-last axis, values the public API must refuse),
  which then take the next path.
- Eager otherwise, some input requires grad: a Python ``torch.autograd.Function``
  (the same kernels, through _kernels' fast path or the public API).
- Under torch.compile / torch.export (``torch.compiler.is_compiling()``): the custom ops
  of ``_library`` (fastnn::dense, ...), which the compiler sees as one opaque op each,
  forward and backward, with fake (meta) implementations: no graph break.
- Nothing requires grad, or grad mode is off: the kernel directly, no autograd node.

Why not the custom ops in eager mode too: their dispatcher and autograd registration
cost more per call. Measured per call (us, best of 7 runs of 4000 calls, one torch
thread, 2-core EPYC VM: python examples/torch_overhead.py; x (8, 16), w (16, 16), bce
on (8, 1)); "kernel alone" is the public numpy API, which validates its arguments:

    case                      eager C++  eager Python  custom op   torch  kernel alone
    linear+relu fwd, no grad      7.7       10.7          27.0       6.2       8.6
    linear+relu fwd, grad         7.1       16.2          52.0       6.7
    linear+relu fwd+bwd          41.4       68.3         165.9      55.9
    relu fwd, no grad             6.5        7.5          18.9       3.1       4.3
    relu fwd+bwd                 27.4       44.4         102.1      19.8
    bce fwd, no grad              8.1       15.9          31.7       7.9      17.8
    bce fwd+bwd                  34.7       74.6         179.0      36.0

Of the Python path's ~68 us for a linear+relu fwd+bwd, ~35 are torch's own cost of a
Python autograd.Function with three inputs and their gradients (an empty one costs that
much); the C++ nodes remove that and the tensor <-> numpy conversions. What remains of
a C++ call is this module's Python (spec lookup, backend selection: ~3 us) and torch's
node bookkeeping. Once-differentiability is checked only where a backward runs with
grad mode on (create_graph), which saves once_differentiable's no_grad block on every
other backward; the C++ nodes do the same with torch's DelayedError.

Backward saves only what the kernel needs: x and w, plus y or the pre-activation z for
Dense (whichever dense_forward returns); y or x for activations (saved_for_backward).
The specs (resolved activation / loss) are resolved before apply, once per distinct
name + params (_kernels.act_spec); forward also keeps on ctx the checked arrays it handed
the kernel when they are views of its inputs (``ctx.kept``, dropped by backward), and
backward still unpacks the saved tensors first, so an input modified in place in between
raises as usual. Backward is once-differentiable: double backward raises instead of
returning zeros.
"""
import functools

import torch
from torch.autograd.function import once_differentiable

from fastnn._backends import cpp as _cpp
from fastnn._dispatch import select

from . import _kernels as K
from . import _library
from . import _native as N
from ._bridge import encode

FORCE_LIBRARY = False  # tests set it to run the custom-op path in eager mode


def _library_path():
    return FORCE_LIBRARY or torch.compiler.is_compiling()


def _native(t):
    """The C++ autograd nodes (_native) for a call on t, or None: t is on the CPU, they
    were built, and the CPU backend selected for this call is the C++ one (use_backend,
    set_backend and FASTNN_BACKEND are honoured per call)."""
    if not t.is_cpu:
        return None
    mod = N.module()
    if mod is None:
        return None
    try:
        return mod if select("cpu") is _cpp else None
    except RuntimeError:  # a GPU backend forced: the Python path raises the dispatcher's error
        return None


def _once(backward):
    """once_differentiable (double backward raises instead of returning zeros), without
    its cost where it does nothing: in a backward without create_graph grad mode is off,
    and once_differentiable then only runs the function under no_grad."""
    guarded = once_differentiable(backward)

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            return guarded(ctx, *grads)
        return backward(ctx, *grads)
    return wrapper


# ---- Dense ------------------------------------------------------------------------------

class DenseFunction(torch.autograd.Function):
    """y = act(x @ w.T + b): x (..., in), w (out, in), b (out,) or None; spec: the
    resolved activation (K.act_spec)."""

    @staticmethod
    def forward(ctx, x, w, b, spec):
        y, z, ctx.kept = K.dense_forward(x, w, b, spec)
        ctx.spec, ctx.has_b = spec, b is not None
        ctx.save_for_backward(x, w, y if z is None and spec.name != "linear" else None, z)
        return y

    @staticmethod
    @_once
    def backward(ctx, dy):
        x, w, y, z = ctx.saved_tensors  # raises if any of them changed in place since forward
        kept, ctx.kept = ctx.kept, None  # held no longer than the saved tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dx, dw, db = K.dense_backward(dy, x, w, y, z, ctx.spec, need_dx, need_dw, ctx.has_b and need_db, kept)
        return dx, dw, db, None


def dense(x, w, b, activation, params):
    """y = act(x @ w.T + b) on the path this call needs (see the module docstring)."""
    if _library_path():
        return _library.dense(x, w, b, activation, encode(params))[0]
    spec = K.act_spec("fastnn.torch.linear", activation, params)
    nat = _native(x)
    if nat is not None:
        y = nat.dense(x, w, b, N.act_id(spec))
        if y is not None:
            return y
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
        return DenseFunction.apply(x, w, b, spec)
    return K.dense_forward(x, w, b, spec)[0]


# ---- activations --------------------------------------------------------------------------

class ActivationFunction(torch.autograd.Function):
    """y = f(x), elementwise (softmax / log_softmax along the spec's axis)."""

    @staticmethod
    def forward(ctx, x, spec):
        y = K.activation_forward(x, spec)
        ctx.spec = spec
        ctx.save_for_backward(y if spec.from_y else x)
        return y

    @staticmethod
    @_once
    def backward(ctx, dy):
        (src,) = ctx.saved_tensors
        return K.activation_backward(dy, src, ctx.spec.from_y, ctx.spec), None


def saves_y(name, params):
    """True if the activation's backward reads its output y (else its input x)."""
    return K.act_spec("fastnn.torch." + name, name, params).from_y


def activation(x, name, params):
    if _library_path():
        return _library.activation(x, name, encode(params))
    spec = K.act_spec("fastnn.torch." + name, name, params)
    nat = _native(x)
    if nat is not None:
        y = nat.activation(x, N.act_id(spec))
        if y is not None:
            return y
    if torch.is_grad_enabled() and x.requires_grad:
        return ActivationFunction.apply(x, spec)
    return K.activation_forward(x, spec)


# ---- losses ---------------------------------------------------------------------------

class LossFunction(torch.autograd.Function):
    """loss(pred, target) with fastnn's conventions (class axis last); weight and
    pos_weight are constants here (the functional refuses ones that require grad)."""

    @staticmethod
    def forward(ctx, pred, target, weight, pos_weight, spec, reduction):
        ctx.spec, ctx.reduction = spec, reduction
        ctx.save_for_backward(pred, target, weight, pos_weight)
        out, ctx.kept = K.loss_forward(pred, target, spec, reduction, weight, pos_weight)
        return out

    @staticmethod
    @_once
    def backward(ctx, grad):
        pred, target, weight, pos_weight = ctx.saved_tensors  # raises if any changed in place
        kept, ctx.kept = ctx.kept, None  # held no longer than the saved tensors
        need_pred, need_target = ctx.needs_input_grad[:2]
        dpred, dtarget = K.loss_backward(grad, pred, target, ctx.spec, ctx.reduction, weight, pos_weight,
                                         need_target, kept)
        return (dpred if need_pred else None), dtarget, None, None, None, None


def loss(pred, target, name, reduction, params, weight=None, pos_weight=None):
    if _library_path():
        return _library.loss(pred, target, weight, pos_weight, name, reduction, encode(params))
    spec = K.loss_spec("fastnn.torch." + name, name, reduction, params)
    if weight is None and pos_weight is None:
        nat = _native(pred)
        if nat is not None:
            lid = N.loss_id(spec)
            out = None if lid is None else nat.loss(pred, target, lid, N.reduction_code(reduction))
            if out is not None:
                return out
    if torch.is_grad_enabled() and (pred.requires_grad or target.requires_grad):
        return LossFunction.apply(pred, target, weight, pos_weight, spec, reduction)
    return K.loss_forward(pred, target, spec, reduction, weight, pos_weight)[0]
