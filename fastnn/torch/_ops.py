"""fastnn.torch's routes to the kernels, one chosen per call, and the two Python routes.

    dense / activation / loss (below) decide, in this order (route selection lives in
    these three functions and _library_route / _native only):
    1. tracing under torch.compile / torch.export (torch.compiler.is_compiling()): the
       torch.library custom ops fastnn::* defined here, which the compiler sees as one
       opaque op each, forward and backward, with fake (meta) implementations. What runs
       them later: on CPU tensors the C++ kernels fastnn.torch's extension registers for
       them (csrc/torch/native.cpp, the functions the C++ nodes of route 2 call, on
       torch's intra-op pool), else the Python kernels here (route 3's calls). The
       C++ kernels run the C++ backend whatever use_backend / set_backend say at run time
       (the compiled graph holds no Python to ask); FASTNN_TORCH_NATIVE=0 leaves the
       Python kernels, which honour them;
    2. CPU tensors, the C++ backend selected for this call, fastnn.torch's C++ autograd
       nodes built (_native): the C++ node, which returns None for a call it does not
       serve (class weights, pos_weight, a target that requires grad, softmax across a
       non-last axis, values the public API must refuse) -> route 3;
    3. otherwise a Python torch.autograd.Function (or, when nothing needs a gradient, the
       kernel call alone) over fastnn's prepared call (fastnn.prepare_dense, ...), which
       validates and dispatches as the numpy API does.

Tensors reach the kernels as numpy views (CPU) or CuPy arrays through DLPack (CUDA, on
torch's current stream); results come back without a copy. bfloat16, which numpy has no
dtype of its own for, crosses as its bits (an int16 view) and is viewed as
ml_dtypes.bfloat16 on the other side, still without a copy; float16 crosses as itself.
16-bit tensors stay 16-bit all the way to the kernels, and what backward saves keeps the
input's dtype. Backward saves only what the
kernel needs: x and w plus y or the pre-activation z for Dense, y or x for activations.
Backward is once-differentiable: double backward raises instead of returning zeros.
Custom-op params travel as one canonical string (encode), a fixed schema that dynamo
traces without a graph break.
"""
import ast
import contextlib
import functools
import sys
from typing import Optional

import ml_dtypes
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

import fastnn

from . import _native as N

_BF16 = np.dtype(ml_dtypes.bfloat16)
FORCE_LIBRARY = False  # tests set it to run the custom-op route in eager mode
_CPU_SCOPE = contextlib.nullcontext()


# ---- tensors <-> the kernels' arrays ---------------------------------------------------------

def to_array(t):
    """The kernels' view of tensor t: numpy for CPU, CuPy (DLPack) for CUDA; None stays None.
    bfloat16 becomes an ml_dtypes.bfloat16 view of the same memory."""
    if t is None:
        return None
    t = t.detach()
    if not t.is_cuda:
        # DLPack, not Tensor.numpy(): numpy() marks the storage non-resizable, and FSDP2
        # frees an unsharded parameter by resizing its storage to 0 after the step.
        if t.dtype is torch.bfloat16:
            return np.from_dlpack(t.view(torch.int16)).view(_BF16)
        return np.from_dlpack(t)
    cp = _cupy()
    if t.dtype is torch.bfloat16:
        try:  # CuPy >= 14 has a bfloat16 dtype and takes it through DLPack
            return cp.from_dlpack(t)
        except Exception:  # noqa: BLE001 - older CuPy: the bits, viewed as ml_dtypes.bfloat16
            return cp.from_dlpack(t.view(torch.int16)).view(_BF16)
    return cp.from_dlpack(t)


def to_tensor(a):
    """A kernel output as a tensor, zero-copy; None stays None."""
    if a is None:
        return None
    if isinstance(a, np.ndarray):
        if a.dtype == _BF16:
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)
    if a.dtype.name == "bfloat16":
        try:
            return torch.from_dlpack(a)
        except Exception:  # noqa: BLE001 - a CuPy without DLPack bfloat16: the bits
            return torch.from_dlpack(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_dlpack(a)


def scope(t):
    """Where kernels on t's device run: nothing to set on CPU; on CUDA, t's device and
    torch's current stream made CuPy's current ones (no synchronisation needed), and
    TF32 for float32 products where torch.backends.cuda.matmul.allow_tf32 allows it."""
    if not t.is_cuda:
        return _CPU_SCOPE
    cp = _cupy()
    ts = torch.cuda.current_stream(t.device)
    try:  # CuPy >= 14: the CUDA stream protocol
        stream = cp.cuda.Stream.from_external(ts)
    except Exception:  # noqa: BLE001 - older CuPy: the stream by its handle
        stream = cp.cuda.ExternalStream(ts.cuda_stream, t.device.index)
    s = contextlib.ExitStack()
    s.enter_context(cp.cuda.Device(t.device.index))
    s.enter_context(stream)
    if torch.backends.cuda.matmul.allow_tf32:  # float32 products on TF32 tensor cores, as torch's
        from fastnn._backends import cupy as cupy_backend  # noqa: PLC0415 - CUDA only
        s.enter_context(cupy_backend.allow_tf32(True))
    return s


def _cupy():
    try:
        import cupy  # noqa: PLC0415 - only for CUDA tensors
    except ImportError as e:
        raise RuntimeError("fastnn.torch: CUDA tensors need CuPy (the fastnn 'cupy' backend); "
                           f"it is not importable: {e}") from None
    return cupy


A, T = to_array, to_tensor


def encode(params):
    """Canonical string of a params dict of scalars ("k=repr(v);..." sorted); numpy and
    0-d torch scalars become Python numbers first."""
    return ";".join([f"{k}={(v.item() if isinstance(v, (np.generic, Tensor)) else v)!r}"
                     for k, v in sorted(params.items())])


@functools.lru_cache(maxsize=1024)
def decode(key):
    """The params dict back from encode()'s string."""
    out = {}
    for item in key.split(";") if key else ():
        k, _, v = item.partition("=")
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = float(v)  # inf, -inf, nan
    return out


def _library_route():
    return FORCE_LIBRARY or torch.compiler.is_compiling()


# ---- DTensor hook (the sharding rules live in fastnn/torch/_distributed.py) -----------------
_PLAIN = frozenset((Tensor, torch.nn.Parameter, type(None)))


def _dtensor_route(a, b=None):
    """True if a or b is a DTensor: the call takes the custom-op route, on which DTensor
    runs the sharding rules _distributed registers (imported here once, on first use). No
    DTensor exists before torch.distributed.tensor is imported (it costs seconds: not
    imported here)."""
    if type(a) in _PLAIN and type(b) in _PLAIN:  # the common case, without isinstance's cost
        return False
    mod = sys.modules.get("torch.distributed.tensor")
    if mod is None or not (isinstance(a, mod.DTensor) or isinstance(b, mod.DTensor)):
        return False
    from . import _distributed  # noqa: F401,PLC0415 - registers the rules
    return True
# ---- end of the DTensor hook -------------------------------------------------------------


def _native(t):
    """The C++ nodes for a call on t, or None: t on the CPU, the nodes built, and the C++
    backend the one selected for this call (use_backend / set_backend / FASTNN_BACKEND are
    honoured per call)."""
    if not t.is_cpu:
        return None
    mod = N.module()
    if mod is None:
        return None
    return mod if fastnn.get_backend() in (None, "cpp") else None


def _once(backward):
    """once_differentiable without its cost where it does nothing (grad mode off)."""
    guarded = once_differentiable(backward)

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        return guarded(ctx, *grads) if torch.is_grad_enabled() else backward(ctx, *grads)
    return wrapper


def _dense_prepared(activation, params):
    return fastnn.prepare_dense(activation, caller="fastnn.torch.linear", **params)


def _act_prepared(name, params):
    return fastnn.prepare_activation(name, caller="fastnn.torch." + name, **params)


def _loss_prepared(name, reduction, params):
    return fastnn.prepare_loss(name, reduction=reduction, caller="fastnn.torch." + name, **params)


# ---- Dense: y = act(x @ w.T + b), x (..., in), w (out, in), b (out,) or None ----------------

def _dense_fwd(op, x, w, b):
    with scope(x):
        y, z = op.forward(A(x), A(w), A(b))
        return T(y), T(z)


def _dense_bwd(op, dy, x, w, y, z, need_dx, need_dw, need_db):
    with scope(dy):
        return tuple(T(g) for g in op.backward(A(dy), A(x), A(w), A(y), A(z), need_dx=need_dx,
                                               need_dw=need_dw, need_db=need_db))


class DenseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, op):
        y, z = _dense_fwd(op, x, w, b)
        ctx.op, ctx.has_b = op, b is not None
        ctx.save_for_backward(x, w, y if z is None and op.spec.name != "linear" else None, z)
        return y

    @staticmethod
    @_once
    def backward(ctx, dy):
        x, w, y, z = ctx.saved_tensors  # raises if any of them changed in place since forward
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        return _dense_bwd(ctx.op, dy, x, w, y, z, need_dx, need_dw, ctx.has_b and need_db) + (None,)


def dense(x, w, b, activation, params):
    """y = act(x @ w.T + b) on this call's route."""
    if _dtensor_route(x, w) or _library_route():
        return dense_op(x, w, b, activation, encode(params))[0]
    op = _dense_prepared(activation, params)
    nat = _native(x)
    if nat is not None:
        y = nat.dense(x, w, b, N.act_id(op.spec))
        if y is not None:
            return y
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
        return DenseFunction.apply(x, w, b, op)
    return _dense_fwd(op, x, w, b)[0]


# ---- activations: y = f(x), any shape ----------------------------------------------------------

class ActivationFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, op):
        with scope(x):
            y = T(op.forward(A(x)))
        ctx.op = op
        ctx.save_for_backward(y if op.spec.from_y else x)
        return y

    @staticmethod
    @_once
    def backward(ctx, dy):
        (src,) = ctx.saved_tensors
        key = "y" if ctx.op.spec.from_y else "x"
        with scope(dy):
            return T(ctx.op.backward(A(dy), **{key: A(src)})), None


def saves_y(name, params):
    """True if the activation's backward reads its output y (else its input x)."""
    return _act_prepared(name, params).spec.from_y


def activation(x, name, params):
    if _dtensor_route(x) or _library_route():
        return activation_op(x, name, encode(params))
    op = _act_prepared(name, params)
    nat = _native(x)
    if nat is not None:
        y = nat.activation(x, N.act_id(op.spec))
        if y is not None:
            return y
    if torch.is_grad_enabled() and x.requires_grad:
        return ActivationFunction.apply(x, op)
    with scope(x):
        return T(op.forward(A(x)))


# ---- losses: pred (..., C) for the class losses (class axis last), else target's shape -------

def _loss_op(name, reduction, params, weight, pos_weight):
    """The prepared loss; class weight / pos_weight tensors join the params as arrays."""
    if weight is None and pos_weight is None:
        return _loss_prepared(name, reduction, params)
    p = dict(params)
    if weight is not None:
        p["weight"] = A(weight)
    if pos_weight is not None:
        p["pos_weight"] = A(pos_weight)
    return _loss_prepared(name, reduction, p)


class LossFunction(torch.autograd.Function):
    """weight and pos_weight are constants here (the functional refuses ones that require
    grad). Forward keeps the arrays it checked when they are views of pred and target (no
    copy held): backward reuses them after autograd's unpacking of the saved tensors has
    checked that neither changed in place."""

    @staticmethod
    def forward(ctx, pred, target, weight, pos_weight, op):
        ctx.op = op
        ctx.save_for_backward(pred, target, weight, pos_weight)
        with scope(pred):
            pa, ta = A(pred), A(target)
            checked = op.check(pa, ta)
            ctx.checked = checked if checked[1].may_share_memory(checked[3], pa) else None
            return T(op.forward(pa, ta, checked=checked))

    @staticmethod
    @_once
    def backward(ctx, grad):
        pred, target, _, _ = ctx.saved_tensors  # raises if any changed in place
        checked, ctx.checked = ctx.checked, None  # held no longer than the saved tensors
        need_pred, need_target = ctx.needs_input_grad[:2]
        with scope(pred):
            pa, ta = (None, None) if checked else (A(pred), A(target))
            out = ctx.op.backward(pa, ta, A(grad), need_target, checked=checked)
        dpred, dtarget = (T(out[0]), T(out[1])) if need_target else (T(out), None)
        return (dpred if need_pred else None), dtarget, None, None, None


def loss(pred, target, name, reduction, params, weight=None, pos_weight=None):
    if _dtensor_route(pred) or _library_route():
        return loss_op(pred, target, weight, pos_weight, name, reduction, encode(params))
    if weight is None and pos_weight is None:
        nat = _native(pred)
        if nat is not None:
            lid = N.loss_id(_loss_prepared(name, reduction, params).spec)
            out = None if lid is None else nat.loss(pred, target, lid, N.reduction_code(reduction))
            if out is not None:
                return out
    op = _loss_op(name, reduction, params, weight, pos_weight)
    if torch.is_grad_enabled() and (pred.requires_grad or target.requires_grad):
        return LossFunction.apply(pred, target, weight, pos_weight, op)
    with scope(pred):
        return T(op.forward(A(pred), A(target)))


# ---- the torch.library custom ops (route 1) ------------------------------------------------
#   fastnn::dense(x, w, b?, activation, params) -> (y, z)          z: (0,) unless kept
#   fastnn::dense_backward(dy, x, w, y?, z?, activation, params, need_dx, need_dw, need_db) -> (dx, dw, db)
#   fastnn::activation(x, name, params) -> y;  fastnn::activation_backward(dy, src, name, params) -> dx
#   fastnn::loss(pred, target, weight?, pos_weight?, name, reduction, params) -> loss
#   fastnn::loss_backward(grad, pred, target, weight?, pos_weight?, name, reduction, params,
#                         need_target_grad) -> (dpred, dtarget)
# The one declaration of each op: its schema (from the signature), its fake implementation
# (shapes from symbolic sizes: one graph for dynamic batch sizes) and its autograd formula.
# No op mutates or aliases an input (mutates_args=(), fresh outputs); outputs are
# C-contiguous (the fakes say so), (0,) placeholders where not needed.
#
# Kernels: the Python implementations below serve every device (registered as
# CompositeExplicitAutograd). Where fastnn.torch's extension is built (_native), it
# registers C++ kernels for the CPU dispatch key over them (csrc/torch/native.cpp): a
# compiled, exported or AOTInductor-packaged graph then calls the kernels directly on
# torch's intra-op pool. Those C++ kernels call back into the _*_py functions for a call
# they do not serve. The extension is loaded by the first CPU call of any fastnn op
# (then redispatched to it), so `import fastnn.torch` is all a fresh process needs to
# run a package that contains these ops.

def _empty(like, shape):
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _out(t, like):
    return _empty(like, (0,)) if t is None else t.contiguous()


def _loads_native(t):
    """True for a CPU call that has just loaded the C++ kernels (then redispatch to them);
    False once they are loaded (a CPU call then never reaches the Python kernel) or where
    they cannot be built."""
    return t.is_cpu and not N.tried() and N.module() is not None


def native_spec(kind: str, name: str, reduction: str, params: str) -> tuple[int, int]:
    """For the C++ kernels: (spec id, reduction code) of an op's strings, (-1, 0) if they do
    not serve it (a name or parameters the public API refuses: the Python kernel raises).
    kind: "d" dense, "a" activation, "l" loss."""
    try:
        if kind == "l":
            lid = N.loss_id(_loss_prepared(name, reduction, decode(params)).spec)
            return (-1, 0) if lid is None else (lid, N.reduction_code(reduction))
        prepared = (_dense_prepared if kind == "d" else _act_prepared)(name, decode(params))
        return N.act_id(prepared.spec), 0
    except (ValueError, TypeError, KeyError):
        return -1, 0


def _dense_py(x, w, b, activation, params):
    y, z = _dense_fwd(_dense_prepared(activation, decode(params)), x, w, b)
    return _out(y, x), _out(z, x)


@torch.library.custom_op("fastnn::dense", mutates_args=())
def dense_op(x: Tensor, w: Tensor, b: Optional[Tensor], activation: str, params: str) -> tuple[Tensor, Tensor]:
    if _loads_native(x):
        return torch.ops.fastnn.dense.default(x, w, b, activation, params)
    return _dense_py(x, w, b, activation, params)


@dense_op.register_fake
def _(x, w, b, activation, params):
    shape = x.shape[:-1] + w.shape[:1]
    return _empty(x, shape), _empty(x, shape if _dense_prepared(activation, decode(params)).keeps_z else (0,))


def _dense_backward_py(dy, x, w, y, z, activation, params, need_dx, need_dw, need_db):
    op = _dense_prepared(activation, decode(params))
    dx, dw, db = _dense_bwd(op, dy, x, w, y, z, need_dx, need_dw, need_db)
    return _out(dx, x), _out(dw, x), _out(db, x)


@torch.library.custom_op("fastnn::dense_backward", mutates_args=())
def dense_backward_op(dy: Tensor, x: Tensor, w: Tensor, y: Optional[Tensor], z: Optional[Tensor], activation: str,
                      params: str, need_dx: bool, need_dw: bool, need_db: bool) -> tuple[Tensor, Tensor, Tensor]:
    if _loads_native(x):
        return torch.ops.fastnn.dense_backward.default(dy, x, w, y, z, activation, params, need_dx, need_dw, need_db)
    return _dense_backward_py(dy, x, w, y, z, activation, params, need_dx, need_dw, need_db)


@dense_backward_op.register_fake
def _(dy, x, w, y, z, activation, params, need_dx, need_dw, need_db):
    return (_empty(x, x.shape if need_dx else (0,)), _empty(x, w.shape if need_dw else (0,)),
            _empty(x, w.shape[:1] if need_db else (0,)))


def _dense_setup(ctx, inputs, output):
    x, w, b, activation, params = inputs
    y, z = output
    ctx.mark_non_differentiable(z)
    keeps_z = _dense_prepared(activation, decode(params)).keeps_z
    ctx.save_for_backward(x, w, y if not keeps_z and activation != "linear" else None, z if keeps_z else None)
    ctx.activation, ctx.params, ctx.has_b = activation, params, b is not None


def _dense_autograd(ctx, dy, _dz):
    x, w, y, z = ctx.saved_tensors
    need = ctx.needs_input_grad
    need_db = ctx.has_b and need[2]
    dx, dw, db = dense_backward_op(dy, x, w, y, z, ctx.activation, ctx.params, need[0], need[1], need_db)
    return (dx if need[0] else None), (dw if need[1] else None), (db if need_db else None), None, None


dense_op.register_autograd(_dense_autograd, setup_context=_dense_setup)


def _activation_py(x, name, params):
    with scope(x):
        return T(_act_prepared(name, decode(params)).forward(A(x))).contiguous()


@torch.library.custom_op("fastnn::activation", mutates_args=())
def activation_op(x: Tensor, name: str, params: str) -> Tensor:
    if _loads_native(x):
        return torch.ops.fastnn.activation.default(x, name, params)
    return _activation_py(x, name, params)


@activation_op.register_fake
def _(x, name, params):
    return _empty(x, x.shape)


def _activation_backward_py(dy, src, name, params):
    op = _act_prepared(name, decode(params))
    with scope(dy):
        return T(op.backward(A(dy), **{"y" if op.spec.from_y else "x": A(src)})).contiguous()


@torch.library.custom_op("fastnn::activation_backward", mutates_args=())
def activation_backward_op(dy: Tensor, src: Tensor, name: str, params: str) -> Tensor:
    if _loads_native(src):
        return torch.ops.fastnn.activation_backward.default(dy, src, name, params)
    return _activation_backward_py(dy, src, name, params)


@activation_backward_op.register_fake
def _(dy, src, name, params):
    return _empty(dy, dy.shape)


def _activation_setup(ctx, inputs, output):
    x, name, params = inputs
    ctx.save_for_backward(output if saves_y(name, decode(params)) else x)
    ctx.name, ctx.params = name, params


def _activation_autograd(ctx, dy):
    (src,) = ctx.saved_tensors
    return activation_backward_op(dy, src, ctx.name, ctx.params), None, None


activation_op.register_autograd(_activation_autograd, setup_context=_activation_setup)

_CLASS_LOSSES = ("cross_entropy", "nll")  # "none" gives one value per row (class axis last)


def _loss_py(pred, target, weight, pos_weight, name, reduction, params):
    op = _loss_op(name, reduction, decode(params), weight, pos_weight)
    with scope(pred):
        return T(op.forward(A(pred), A(target))).contiguous()


@torch.library.custom_op("fastnn::loss", mutates_args=())
def loss_op(pred: Tensor, target: Tensor, weight: Optional[Tensor], pos_weight: Optional[Tensor], name: str,
            reduction: str, params: str) -> Tensor:
    if _loads_native(pred):
        return torch.ops.fastnn.loss.default(pred, target, weight, pos_weight, name, reduction, params)
    return _loss_py(pred, target, weight, pos_weight, name, reduction, params)


@loss_op.register_fake
def _(pred, target, weight, pos_weight, name, reduction, params):
    if reduction != "none":
        return _empty(pred, ())
    return _empty(pred, pred.shape[:-1] if name in _CLASS_LOSSES else pred.shape)


def _loss_backward_py(grad, pred, target, weight, pos_weight, name, reduction, params, need_target_grad):
    op = _loss_op(name, reduction, decode(params), weight, pos_weight)
    with scope(pred):
        out = op.backward(A(pred), A(target), A(grad), need_target_grad)
    if need_target_grad:
        return T(out[0]).contiguous(), T(out[1]).contiguous()
    return T(out).contiguous(), _empty(pred, (0,))


@torch.library.custom_op("fastnn::loss_backward", mutates_args=())
def loss_backward_op(grad: Tensor, pred: Tensor, target: Tensor, weight: Optional[Tensor],
                     pos_weight: Optional[Tensor], name: str, reduction: str, params: str,
                     need_target_grad: bool) -> tuple[Tensor, Tensor]:
    if _loads_native(pred):
        return torch.ops.fastnn.loss_backward.default(grad, pred, target, weight, pos_weight, name, reduction,
                                                      params, need_target_grad)
    return _loss_backward_py(grad, pred, target, weight, pos_weight, name, reduction, params, need_target_grad)


@loss_backward_op.register_fake
def _(grad, pred, target, weight, pos_weight, name, reduction, params, need_target_grad):
    return _empty(pred, pred.shape), _empty(pred, target.shape if need_target_grad else (0,))


def _loss_setup(ctx, inputs, output):
    pred, target, weight, pos_weight, name, reduction, params = inputs
    ctx.save_for_backward(pred, target, weight, pos_weight)
    ctx.name, ctx.reduction, ctx.params = name, reduction, params


def _loss_autograd(ctx, grad):
    pred, target, weight, pos_weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    dpred, dtarget = loss_backward_op(grad, pred, target, weight, pos_weight, ctx.name, ctx.reduction, ctx.params,
                                      need[1])
    return (dpred if need[0] else None), (dtarget if need[1] else None), None, None, None, None, None


loss_op.register_autograd(_loss_autograd, setup_context=_loss_setup)
