"""The public kernel API of shared/API.md: validate once (fastnn._checks), pick the
backend (fastnn._dispatch), hand it C-contiguous arrays, shape the result.

Reductions ("mean" / "batchmean" denominators) and the scaling of the upstream grad
are done here, identically for every backend; backends compute sums and per-element
values.
"""
import math

import numpy as np

from . import _checks as C
from . import _registry as R
from ._dispatch import select


def _xp(device):
    if device == "cpu":
        return np
    import cupy  # noqa: PLC0415 - only where CUDA inputs exist

    return cupy


def _setup(func, **arrays):
    """(backend, array module) for these inputs, after the device check."""
    dev = C.same_device(func, **arrays)
    return select(dev), _xp(dev)


# ---- activations ------------------------------------------------------------------------

def saved_for_backward(name, **params):
    """What activation_backward needs for `name`: frozenset of "x" and/or "y"."""
    spec = C.activation_spec_cached("saved_for_backward", name, params)
    if spec.name == "linear":
        return frozenset()
    return frozenset({"y"} if spec.from_y else {"x"})


def _to_last(xp, a, axis):
    """a with `axis` moved last, C-contiguous (a 0-d input becomes shape (1,))."""
    if a.ndim == 0:
        return xp.ascontiguousarray(a.reshape(1))
    return xp.ascontiguousarray(xp.moveaxis(a, axis, -1) if axis is not None else a)


def _from_last(xp, a, axis, shape):
    if len(shape) == 0:
        return a.reshape(())
    if axis is None or axis == len(shape) - 1:
        return a
    return xp.ascontiguousarray(xp.moveaxis(a, -1, axis))


def activation_forward(x, name="relu", **params):
    """y = f(x), elementwise (softmax / log_softmax along `axis`). Any shape."""
    F = "activation_forward"
    spec = C.activation_spec_cached(F, name, params)
    be, xp = _setup(F, x=x)
    x = C.float_array(F, "x", x, xp)
    axis = C.normalize_axis(F, spec.axis, x.ndim) if spec.axis is not None else None
    xc = _to_last(xp, x, axis)
    y = be.activation_forward(xc, spec, xc.shape[-1])
    return _from_last(xp, y, axis, x.shape)


def activation_backward(dy, name="relu", x=None, y=None, **params):
    """dx = dy * f'(x), from x or y as saved_for_backward(name) says (given both, the
    cheaper one is used; given x where y is preferred, x works too)."""
    F = "activation_backward"
    spec = C.activation_spec_cached(F, name, params)
    be, xp = _setup(F, dy=dy, x=x, y=y)
    dy = C.float_array(F, "dy", dy, xp)
    x = None if x is None else C.float_array(F, "x", x, xp)
    y = None if y is None else C.float_array(F, "y", y, xp)
    C.same_dtype(F, dy=dy, x=x, y=y)
    for arg, a in (("x", x), ("y", y)):
        if a is not None:
            C.expect_shape(F, arg, a, dy.shape, " (dy's shape)")
    if spec.from_y and y is not None:
        src, from_y = y, True
    elif x is not None:
        src, from_y = x, False
    elif spec.name == "linear":
        return dy.copy()
    elif y is not None:
        raise ValueError(f"{F}: {spec.name} needs x (saved_for_backward({spec.name!r}) is {{'x'}}), got only y")
    else:
        need = "y" if spec.from_y else "x"
        raise ValueError(f"{F}: {spec.name} needs {need}; pass {need}=")
    axis = C.normalize_axis(F, spec.axis, dy.ndim) if spec.axis is not None else None
    srcc, dyc = _to_last(xp, src, axis), _to_last(xp, dy, axis)
    dx = be.activation_backward(srcc, dyc, spec, from_y, dyc.shape[-1])
    return _from_last(xp, dx, axis, dy.shape)


# ---- dense ------------------------------------------------------------------------------

def _dense_args(F, x, w, layout, spec):
    """Checks x (..., in) and w; returns (x as (m, in), w C-contiguous, w_oi, flipped, out)."""
    C.weight_layout(F, layout)
    if x.ndim < 1:
        raise ValueError(f"{F}: x must have at least 1 dimension (..., in), got a 0-d array")
    if w.ndim != 2:
        raise ValueError(f"{F}: w must be 2-D ({'(out, in)' if layout == 'oi' else '(in, out)'}), "
                         f"got shape {C.shape_str(w.shape)}")
    k = x.shape[-1]
    if layout == "oi" and w.shape[1] != k:
        raise ValueError(f"{F}: w has shape {C.shape_str(w.shape)} but x has {k} features; expected (out, {k})")
    if layout == "io" and w.shape[0] != k:
        raise ValueError(f"{F}: w has shape {C.shape_str(w.shape)} but x has {k} features; expected ({k}, out)")
    if spec.axis is not None and C.normalize_axis(F, spec.axis, x.ndim) != x.ndim - 1:
        raise ValueError(f"{F}: a Dense {spec.name} works along the last axis; got axis={spec.axis}")
    n = w.shape[0] if layout == "oi" else w.shape[1]
    w_oi, flipped = layout == "oi", False
    if not w.flags.c_contiguous and w.T.flags.c_contiguous:  # Fortran order: use w.T, other layout
        w, w_oi, flipped = w.T, not w_oi, True
    xp = np if isinstance(w, np.ndarray) else _xp("cuda")
    m = math.prod(x.shape[:-1])
    x2 = xp.ascontiguousarray(x.reshape(m, k))
    return x2, xp.ascontiguousarray(w), w_oi, flipped, n


# ---- the common small call without the general checks --------------------------------
# Where every array is what the backend takes as it is (numpy, C-contiguous, one kernel
# dtype, 2-D x, w as (out, in), the shapes fitting) the Dense calls hand them over
# directly: the general checks below cost ~7 us per call, more than a (10, 20) x (20, 10)
# layer itself (fastnn.bench's seed-size row). The C++ backend does these checks itself
# (its dense_forward_plain / dense_backward_plain, tried first); the Python ones below
# serve the other CPU backends. Anything else, including every call that must raise,
# takes the general path, so results and errors are the same either way.
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _plain(a, dtype, shape):
    return type(a) is np.ndarray and a.dtype == dtype and a.shape == shape and a.flags.c_contiguous


def _plain_dense(x, w, layout, spec):
    """(m, k, n) when x and w can go to the backend as they are, else None."""
    if (layout != "oi" or type(x) is not np.ndarray or x.ndim != 2 or x.dtype not in _KERNEL_DTYPES
            or spec.axis not in (None, -1, 1) or not x.flags.c_contiguous):
        return None
    m, k = x.shape
    if type(w) is not np.ndarray or w.ndim != 2 or w.shape[1] != k or not _plain(w, x.dtype, w.shape):
        return None
    return m, k, w.shape[0]


def dense_forward(x, w, b=None, activation="linear", *, weight_layout="oi", keep_z=False, **act_params):
    """y = act(x @ W + b) with x (..., in), w (out, in) ("oi") or (in, out) ("io").
    Returns (y, z); z is the pre-activation when backward needs it or keep_z=True."""
    F = "dense_forward"
    spec = C.activation_spec_cached(F, activation, act_params)
    if weight_layout == "oi" and spec.axis in (None, -1, 1):
        plain = getattr(select("cpu"), "dense_forward_plain", None)  # the C++ backend: checks in C++
        if plain is not None:
            out = plain(x, w, b, spec.code, spec.numeric,
                        bool(keep_z) or (spec.name != "linear" and not spec.from_y))
            if out is not None:
                return out
    dims = _plain_dense(x, w, weight_layout, spec)
    if dims is not None and (b is None or _plain(b, x.dtype, (dims[2],))):
        need_z = bool(keep_z) or (spec.name != "linear" and not spec.from_y)
        return select("cpu").dense_forward(x, w, True, b, spec, need_z)
    be, xp = _setup(F, x=x, w=w, b=b)
    x, w = C.float_array(F, "x", x, xp), C.float_array(F, "w", w, xp)
    b = None if b is None else C.float_array(F, "b", b, xp)
    C.same_dtype(F, x=x, w=w, b=b)
    x2, wc, w_oi, _, n = _dense_args(F, x, w, weight_layout, spec)
    if b is not None:
        C.expect_shape(F, "b", b, (n,), " (out,)")
        b = xp.ascontiguousarray(b)
    need_z = bool(keep_z) or (spec.name != "linear" and not spec.from_y)
    y, z = be.dense_forward(x2, wc, w_oi, b, spec, need_z)
    shape = x.shape[:-1] + (n,)
    return y.reshape(shape), (None if z is None else z.reshape(shape))


def dense_backward(dy, x, w, y, z=None, activation="linear", *, weight_layout="oi", need_dx=True, need_dw=True,
                   need_db=True, **act_params):
    """(dx, dw, db) of dense_forward; entries not asked for are None."""
    F = "dense_backward"
    spec = C.activation_spec_cached(F, activation, act_params)
    if weight_layout == "oi" and spec.axis in (None, -1, 1):
        plain = getattr(select("cpu"), "dense_backward_plain", None)
        if plain is not None:
            out = plain(dy, x, w, y, z, bool(spec.from_y and y is not None), bool(need_dx), bool(need_dw),
                        bool(need_db), spec.code, spec.numeric)
            if out is not None:
                return out
    dims = _plain_dense(x, w, weight_layout, spec)
    if dims is not None:
        out = (dims[0], dims[2])
        dt = x.dtype
        if _plain(dy, dt, out) and (y is None or _plain(y, dt, out)) and (z is None or _plain(z, dt, out)):
            zy, from_y = None, False
            if spec.name != "linear":
                zy, from_y = (y, True) if spec.from_y and y is not None else (z, False)
            if spec.name == "linear" or zy is not None:
                return select("cpu").dense_backward(dy, x, w, True, zy, from_y, spec, bool(need_dx), bool(need_dw),
                                                    bool(need_db))
    be, xp = _setup(F, dy=dy, x=x, w=w, y=y, z=z)
    dy, x, w = (C.float_array(F, n, a, xp) for n, a in (("dy", dy), ("x", x), ("w", w)))
    y = None if y is None else C.float_array(F, "y", y, xp)
    z = None if z is None else C.float_array(F, "z", z, xp)
    C.same_dtype(F, dy=dy, x=x, w=w, y=y, z=z)
    x2, wc, w_oi, flipped, n = _dense_args(F, x, w, weight_layout, spec)
    out_shape = x.shape[:-1] + (n,)
    for arg, a in (("dy", dy), ("y", y), ("z", z)):
        if a is not None:
            C.expect_shape(F, arg, a, out_shape, " (x's batch dims + (out,))")
    zy, from_y = None, False
    if spec.name != "linear":
        if spec.from_y and y is not None:
            zy, from_y = y, True
        elif z is not None:
            zy = z
        else:
            what = "y or z" if spec.from_y else "z, the pre-activation (dense_forward returns it)"
            raise ValueError(f"{F}: activation {spec.name!r} needs {what}; got None")
        zy = xp.ascontiguousarray(zy.reshape(x2.shape[0], n))
    dy2 = xp.ascontiguousarray(dy.reshape(x2.shape[0], n))
    dx, dw, db = be.dense_backward(dy2, x2, wc, w_oi, zy, from_y, spec, bool(need_dx), bool(need_dw), bool(need_db))
    if dx is not None:
        dx = dx.reshape(x.shape)
    if dw is not None and flipped:
        dw = dw.T
    return dx, dw, db
