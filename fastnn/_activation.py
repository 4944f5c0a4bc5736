"""Activations: the prepared call (an activation with its parameters resolved once) and
the public functions built on it.

Every caller of fastnn's activation kernels comes through here: the public functions
below, fastnn.torch's Python autograd Functions and custom ops, fastnn.keras' callback
route. A call validates its arrays (fastnn._checks), picks the backend for their device
(fastnn._dispatch) and hands the backend C-contiguous arrays with the activation axis last.
"""
from typing import Any, Dict

import numpy as np

from . import _checks as C
from ._dispatch import backend_for, select



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


class PreparedActivation:
    """An activation with its parameters resolved and checked once
    (``fastnn.prepare_activation``): ``forward(x)``, ``backward(dy, x=, y=)``.

    Attributes:
        spec: the resolved activation (name, code, params, numeric params, from_y, axis).
        saved: what ``backward`` needs, a frozenset of "x" and/or "y" (empty for linear).
    """

    __slots__ = ("spec", "saved")

    def __init__(self, spec):
        self.spec = spec
        self.saved = frozenset() if spec.name == "linear" else frozenset({"y"} if spec.from_y else {"x"})

    def __repr__(self):
        return f"PreparedActivation({self.spec.name!r}, {dict(self.spec.params)!r})"

    def forward(self, x):
        """y = f(x), elementwise (softmax / log_softmax along the spec's axis); x's shape."""
        spec = self.spec
        if type(x) is np.ndarray and spec.axis is None and x.ndim and x.dtype in C.FLOAT_DTYPES:
            # plain numpy: what the general route below hands the backend, without its checks
            xc = x if x.flags.c_contiguous else np.ascontiguousarray(x)
            return select("cpu").activation_forward(xc, spec, xc.shape[-1])
        F = "activation_forward"
        be, xp = backend_for(F, x=x)
        x = C.float_array(F, "x", x, xp)
        axis = C.normalize_axis(F, spec.axis, x.ndim) if spec.axis is not None else None
        xc = _to_last(xp, x, axis)
        y = be.activation_forward(xc, spec, xc.shape[-1])
        return _from_last(xp, y, axis, x.shape)

    def backward(self, dy, x=None, y=None):
        """dx = dy * f'(x), from x or y as ``saved`` says (given both, the cheaper one;
        given x where y is preferred, x works too)."""
        spec = self.spec
        src, from_y = (y, True) if spec.from_y and y is not None else (x, False)
        if (type(dy) is np.ndarray and type(src) is np.ndarray and spec.axis is None and dy.ndim
                and dy.dtype in C.FLOAT_DTYPES and src.dtype == dy.dtype and src.shape == dy.shape
                and (x is None or type(x) is np.ndarray and x.dtype == dy.dtype and x.shape == dy.shape)
                and (y is None or type(y) is np.ndarray and y.dtype == dy.dtype and y.shape == dy.shape)):
            # plain numpy (and every given array fits): the general route's arrays, without its checks
            dyc = dy if dy.flags.c_contiguous else np.ascontiguousarray(dy)
            srcc = src if src.flags.c_contiguous else np.ascontiguousarray(src)
            return select("cpu").activation_backward(srcc, dyc, spec, from_y, dyc.shape[-1])
        F = "activation_backward"
        be, xp = backend_for(F, dy=dy, x=x, y=y)
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


_prepared: Dict[Any, Any] = {}


def prepared(func, name, params):
    """The PreparedActivation of (name, params), resolved once per distinct arguments;
    errors are raised (every time) naming `func`."""
    return C.prepared_for(_prepared, C.activation_spec_cached(func, name, params), PreparedActivation)


def prepare_activation(name, *, caller="prepare_activation", **params):
    """The activation `name` with `params` resolved and checked once, for repeated calls:
    ``op = fastnn.prepare_activation("gelu", approximate="tanh"); y = op.forward(x)``.
    Raises what activation_forward raises for a bad name or parameter, naming `caller`
    (a wrapper passes its own function's name)."""
    return prepared(caller, name, params)


def saved_for_backward(name, **params):
    """What activation_backward needs for `name`: a frozenset of "x" and/or "y" (empty for
    "linear"). Dense layers keep the pre-activation z where this says "x"."""
    return prepared("saved_for_backward", name, params).saved


def activation_forward(x, name="relu", **params):
    """y = f(x) for the activation `name` (``fastnn.ACTIVATIONS``, its parameters as
    keywords), elementwise; softmax / log_softmax along ``axis`` (default -1).

    x: any shape, float32 or float64, numpy (C++ or Numba backend) or cupy (CuPy backend).
    Returns a new array of x's shape and dtype; x is not modified.
    Raises ValueError / TypeError naming the argument for an unknown name or parameter, a
    parameter out of range, or an input of another dtype.

        >>> y = fastnn.activation_forward(np.linspace(-2, 2, 5, dtype=np.float32), "relu")
    """
    return prepared("activation_forward", name, params).forward(x)


def activation_backward(dy, name="relu", x=None, y=None, **params):
    """dx = dy * f'(x) for the activation `name`: pass x or y as
    ``saved_for_backward(name, **params)`` says (dy, x, y share one shape and dtype).
    Derivatives at kinks are torch's. Returns a new array of dy's shape."""
    return prepared("activation_backward", name, params).backward(dy, x, y)

