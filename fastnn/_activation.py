"""Activations: the prepared call (an activation with its parameters resolved once) and
the public functions built on it.

Every caller of fastnn's activation kernels comes through here: the public functions
below, fastnn.torch's Python autograd Functions and custom ops, fastnn.keras' callback
route. A call validates its arrays (fastnn._checks), picks the backend for their device
(fastnn._dispatch) and hands the backend C-contiguous arrays with the activation axis last.
"""
from typing import Any, Dict, FrozenSet, Optional

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


def prepare_activation(name: str, *, caller: str = "prepare_activation", **params: Any) -> "PreparedActivation":
    """The activation `name` with `params` resolved and checked once, for repeated calls.

    Parameters
    ----------
    name : str
        A name or alias of ``fastnn.ACTIVATIONS`` (:doc:`../ops`).
    caller : str
        The function name errors name (a wrapper passes its own).
    **params
        The activation's parameters (``negative_slope=``, ``approximate=``, ``axis=``, ...).

    Returns
    -------
    PreparedActivation
        With ``forward(x)`` and ``backward(dy, x=, y=)``; cached per distinct arguments.

    Raises
    ------
    ValueError
        An unknown name or parameter, or a parameter out of range, naming `caller`.

    Examples
    --------
    >>> op = fastnn.prepare_activation("gelu", approximate="tanh")
    >>> y = op.forward(np.linspace(-3, 3, 7, dtype=np.float32))
    """
    return prepared(caller, name, params)


def saved_for_backward(name: str, **params: Any) -> FrozenSet[str]:
    """What :func:`activation_backward` (and :func:`dense_backward`) needs for `name`.

    Parameters
    ----------
    name : str
        A name or alias of ``fastnn.ACTIVATIONS``.
    **params
        The activation's parameters (they can change the answer: relu with Keras'
        ``max_value`` reads x).

    Returns
    -------
    frozenset of str
        ``{"x"}`` or ``{"y"}``; empty for ``"linear"``. A Dense layer keeps the
        pre-activation z where this says ``"x"``.

    Raises
    ------
    ValueError
        An unknown name or parameter.

    Examples
    --------
    >>> fastnn.saved_for_backward("sigmoid")
    frozenset({'y'})
    """
    return prepared("saved_for_backward", name, params).saved


def activation_forward(x: Any, name: str = "relu", **params: Any) -> Any:
    """``y = f(x)`` for the activation `name`, elementwise; softmax / log_softmax along ``axis``.

    Parameters
    ----------
    x : numpy.ndarray or cupy.ndarray, any shape
        float16, bfloat16 (``ml_dtypes.bfloat16``), float32 or float64, any layout
        (strided, read-only); numpy runs on the C++ (or Numba) backend, cupy on the CuPy
        backend. 16-bit inputs are computed in float32 and rounded once
        (:doc:`../lowp`). Not modified.
    name : str
        A name or alias of ``fastnn.ACTIVATIONS`` (:doc:`../ops`); default ``"relu"``.
    **params
        The activation's parameters, e.g. ``negative_slope=0.1``, ``approximate="tanh"``,
        ``axis=-1`` (softmax / log_softmax).

    Returns
    -------
    numpy.ndarray or cupy.ndarray
        A new array of x's shape, dtype and kind.

    Raises
    ------
    ValueError
        An unknown name or parameter, a parameter out of range, an axis out of range.
    TypeError
        x is not a float16 / bfloat16 / float32 / float64 array.

    Examples
    --------
    >>> fastnn.activation_forward(np.array([-1.0, 0.0, 2.0], np.float32), "relu")
    array([0., 0., 2.], dtype=float32)
    """
    return prepared("activation_forward", name, params).forward(x)


def activation_backward(dy: Any, name: str = "relu", x: Any = None, y: Any = None, **params: Any) -> Any:
    """``dx = dy * f'(x)`` for the activation `name` (softmax: the Jacobian-vector product).

    Derivatives at kinks are torch's (:doc:`../contract`).

    Parameters
    ----------
    dy : numpy.ndarray or cupy.ndarray
        The upstream gradient, float16, bfloat16, float32 or float64.
    name : str
        A name or alias of ``fastnn.ACTIVATIONS``.
    x, y : array, optional
        The forward input / output, of dy's shape and dtype: pass what
        ``saved_for_backward(name, **params)`` says (given both, the cheaper one is read).
    **params
        The activation's parameters, as given to :func:`activation_forward`.

    Returns
    -------
    numpy.ndarray or cupy.ndarray
        dx, a new array of dy's shape and dtype.

    Raises
    ------
    ValueError
        The array the backward needs is missing; shapes differ; a bad name or parameter.
    TypeError
        Mixed dtypes or a non-float input.

    Examples
    --------
    >>> x = np.array([-1.0, 2.0], np.float32)
    >>> fastnn.activation_backward(np.ones_like(x), "relu", x=x)
    array([0., 1.], dtype=float32)
    """
    return prepared("activation_backward", name, params).backward(dy, x, y)

