"""Tensors <-> the arrays fastnn's kernels take, zero-copy, and the dtype rules of the
torch wrapper.

CPU tensors become numpy views (``t.detach().numpy()``: same memory and strides; the
kernels copy only what is not C-contiguous). CUDA tensors become CuPy arrays through
DLPack and the kernels run on torch's current stream of that device, so no
synchronisation is needed and the results come back through DLPack without a copy.

Kernel params travel as one canonical string (``encode``) so that a torch.library
custom op (fastnn.torch._library) has a fixed schema and torch.compile / export see
the values in the graph; the string is plain ``key=repr(value)`` pairs, which dynamo
traces without a graph break.
"""
import ast
import contextlib
import functools

import numpy as np
import torch

import fastnn

# float16 / bfloat16 are computed in float32 and the results rounded back to the input
# dtype: the same values torch's CPU kernels give up to one rounding of the low-precision
# result (torch also accumulates those dtypes in float32 internally).
KERNEL_DTYPES = (torch.float32, torch.float64)
LOW_PRECISION = (torch.float16, torch.bfloat16)
FLOAT_DTYPES = KERNEL_DTYPES + LOW_PRECISION

_CPU_SCOPE = contextlib.nullcontext()


# ---- arrays ------------------------------------------------------------------------------

def to_array(t):
    """The kernel's view of tensor t: numpy for CPU, CuPy (DLPack) for CUDA; None stays None."""
    if t is None:
        return None
    if t.requires_grad:
        t = t.detach()
    if not t.is_cuda:
        return t.numpy()
    return _cupy().from_dlpack(t)


def to_tensor(a):
    """A kernel output back as a tensor, zero-copy; None stays None."""
    if a is None:
        return None
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    return torch.from_dlpack(a)


def scope(t):
    """Context under which kernels on t's device run: nothing on CPU; on CUDA, the
    tensor's device and torch's current stream made CuPy's current ones."""
    if not t.is_cuda:
        return _CPU_SCOPE
    cp = _cupy()
    ts = torch.cuda.current_stream(t.device)
    try:  # CuPy >= 14: the CUDA stream protocol; ExternalStream is deprecated there
        stream = cp.cuda.Stream.from_external(ts)
    except Exception:  # noqa: BLE001 - older CuPy / torch: the stream by its handle
        stream = cp.cuda.ExternalStream(ts.cuda_stream, t.device.index)
    scope_ = contextlib.ExitStack()
    scope_.enter_context(cp.cuda.Device(t.device.index))
    scope_.enter_context(stream)
    return scope_


def _cupy():
    try:
        import cupy  # noqa: PLC0415 - only for CUDA tensors
    except ImportError as e:
        raise RuntimeError("fastnn.torch: CUDA tensors need CuPy (the fastnn 'cupy' backend); "
                           f"it is not importable: {e}") from None
    return cupy


# ---- dtypes ------------------------------------------------------------------------------

def compute_dtype(func, dtype):
    """The dtype the kernels run in for a result of `dtype` (float32 for half types)."""
    if dtype in KERNEL_DTYPES:
        return dtype
    if dtype in LOW_PRECISION:
        return torch.float32
    raise TypeError(f"{func}: got dtype {dtype}; fastnn computes float32 and float64 (float16 and "
                    f"bfloat16 are computed in float32 and rounded back)")


def result_float_dtype(func, *tensors):
    """torch's promoted dtype of the tensors, which must be a floating dtype."""
    dt = tensors[0].dtype
    for t in tensors[1:]:
        dt = torch.promote_types(dt, t.dtype)
    if dt not in FLOAT_DTYPES:
        names = ", ".join(str(t.dtype) for t in tensors)
        raise TypeError(f"{func}: inputs of dtype {names} promote to {dt}; expected a floating dtype "
                        f"(float32, float64, or float16/bfloat16 computed in float32)")
    return dt


def cast(t, dtype):
    """t as dtype (differentiable; no copy when it already is); None stays None."""
    return t if t is None or t.dtype == dtype else t.to(dtype)


# ---- params ------------------------------------------------------------------------------

def encode(params):
    """Canonical string of a params dict of scalars ("k=repr(v);..." sorted); numpy and
    0-d torch scalars become Python numbers first."""
    return ";".join([f"{k}={_python_scalar(v)!r}" for k, v in sorted(params.items())])


def _python_scalar(v):
    return v.item() if isinstance(v, (np.generic, torch.Tensor)) else v


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


@functools.lru_cache(maxsize=1024)
def saves_y(name, key):
    """True if the activation's backward reads its output y, False if its input x (or
    nothing: the identity). key: encode(params)."""
    return "y" in fastnn.saved_for_backward(name, **decode(key))


@functools.lru_cache(maxsize=1024)
def dense_keeps_z(name, key):
    """True if dense_forward returns the pre-activation z for this activation (its
    backward reads the input of the activation). key: encode(params)."""
    return "x" in fastnn.saved_for_backward(name, **decode(key))
