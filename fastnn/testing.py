"""Helpers for parity tests of code built on fastnn: tolerances in units of the dtype's
precision, a decorator that runs one test body on every available backend, and the
hard-case inputs fastnn's own parity run (``python -m fastnn.parity``) uses.

    >>> import numpy as np, fastnn
    >>> from fastnn.testing import assert_close, hard_inputs, on_every_backend
    >>> x = hard_inputs("gelu", (64,), np.float32, seed=0)["x"]
    >>> y = fastnn.activation_forward(x, "gelu")
    >>> assert_close(y, fastnn.activation_forward(x.astype(np.float64), "gelu"), ulps=64)

Error unit: one "ulp" here is eps(dtype) times the magnitude of the desired value (or of
`scale`), eps = 2^-10 for float16, 2^-7 for bfloat16, 2^-23 for float32, 2^-52 for float64
(PRECISION). It is a relative error expressed in units of the format's
precision, not the spacing-based count of ``ulp_error``, so bounds carry over between
values of different binades.
"""
import functools
import inspect
import math
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _registry as R
from ._dispatch import _load, array_module, available_backends, use_backend

__all__ = ["PRECISION", "Precision", "assert_close", "hard_inputs", "on_every_backend", "precision",
           "ulp_error", "xp_of"]


class Precision(NamedTuple):
    """A floating-point format: eps (the spacing of 1.0 to the next value) and tiny (the
    smallest normal number)."""
    eps: float
    tiny: float


# One entry per dtype fastnn computes in (fastnn.parity checks each of them). The 16-bit
# formats are storage formats: fastnn computes them in float32 and rounds each output once,
# so their errors are about half an ulp of the format (docs/lowp.md).
PRECISION: Dict[str, Precision] = {
    "float16": Precision(2.0 ** -10, 2.0 ** -14),
    "bfloat16": Precision(2.0 ** -7, 2.0 ** -126),
    "float32": Precision(2.0 ** -23, 2.0 ** -126),
    "float64": Precision(2.0 ** -52, 2.0 ** -1022),
}


def precision(dtype: Any) -> Precision:
    """The Precision of a dtype (anything np.dtype accepts, or its name)."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in PRECISION:
        raise ValueError(f"precision: dtype {name!r} has no entry; expected one of {', '.join(PRECISION)}")
    return PRECISION[name]


def _host(a: Any) -> np.ndarray:
    """a as a float64 numpy array (cupy arrays are copied to the host)."""
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        a = a.get()
    return np.asarray(a, dtype=np.float64)


def ulp_error(actual: Any, desired: Any, dtype: Any) -> np.ndarray:
    """``|actual - desired|`` in units of the spacing of `dtype` at `desired`.

    The spacing at d is 2^(exponent(d) - mantissa bits), floored at the subnormal spacing;
    entries equal in value (inf included, NaN with NaN) are 0, other non-finite
    disagreements inf.

    Parameters
    ----------
    actual, desired : array_like (numpy or cupy)
        Any shapes that broadcast together; any real dtype.
    dtype : numpy dtype
        The precision the error is counted in (float16, float32, float64, bfloat16).

    Returns
    -------
    numpy.ndarray
        float64, of the broadcast shape.

    Raises
    ------
    ValueError
        `dtype` is not a float dtype :func:`precision` knows.

    Examples
    --------
    >>> float(ulp_error(np.float32(1) + 2 ** -23 * 3, 1.0, np.float32))
    3.0
    """
    a, d = np.broadcast_arrays(_host(actual), _host(desired))
    p = precision(dtype)
    mag = np.abs(np.where(np.isfinite(d), d, 0.0))
    spacing = np.maximum(np.exp2(np.floor(np.log2(np.maximum(mag, p.tiny)))) * p.eps, p.tiny * p.eps)
    with np.errstate(invalid="ignore"):
        err = np.abs(a - d) / spacing
    same = (a == d) | (np.isnan(a) & np.isnan(d))
    return np.where(same, 0.0, np.where(np.isnan(err), np.inf, err))


def _error_units(a: Any, d: Any, unit: Any) -> Any:
    """|a - d| / unit, with 0 where a and d agree exactly (inf, NaN with NaN) and inf where
    only one is NaN or they are different infinities."""
    same = (a == d) | (np.isnan(a) & np.isnan(d))
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(a - d) / unit
    return np.where(same, 0.0, np.where(np.isnan(err), np.inf, err))


def assert_close(actual: Any, desired: Any, *, dtype: Any = None, ulps: float = 16.0,
                 rtol: Optional[float] = None, atol: Optional[float] = None,
                 scale: Union[None, float, np.ndarray] = None, err_msg: str = "") -> None:
    """Assert ``|actual - desired| <= rtol * max(|desired|, scale) + atol`` elementwise.

    NaN and +-inf must sit where `desired` has them.

    Parameters
    ----------
    actual : array_like (numpy or cupy)
        The result under test.
    desired : array_like
        The reference, of `actual`'s shape (no broadcasting of `actual`).
    dtype : numpy dtype, optional
        The precision the tolerance is counted in; default `actual`'s dtype when it is a
        float type (float16, bfloat16, float32, float64), else float64.
    ulps : float, default 16
        The tolerance in units of eps(dtype).
    rtol : float, optional
        Default ``ulps * eps(dtype)``.
    atol : float, optional
        Default ``ulps * eps * tiny`` (only subnormal results need it).
    scale : float or array_like, optional
        The magnitude of the operands each result was computed from (broadcast to the
        shape): a result small only by cancellation (a sum of terms of both signs, a matrix
        product entry) gets a band relative to its operands.
    err_msg : str
        Prefix of the error message.

    Raises
    ------
    AssertionError
        Naming the worst element (index, actual, desired, error in ulps of desired and
        relative to the scale) and how many elements broke the bound; or the shapes differ.

    Examples
    --------
    >>> assert_close(np.float32([1, 2]), [1, 2 + 1e-7], ulps=4)
    """
    a_arr = actual.get() if hasattr(actual, "get") and not isinstance(actual, np.ndarray) else np.asarray(actual)
    if dtype is None:
        dtype = a_arr.dtype if a_arr.dtype.name in PRECISION else np.float64
    p = precision(dtype)
    a, d = _host(a_arr), _host(desired)
    if a.shape != d.shape:
        raise AssertionError(f"{err_msg}: shapes differ: actual {a.shape}, desired {d.shape}".lstrip(": "))
    rtol = ulps * p.eps if rtol is None else rtol
    atol = ulps * p.eps * p.tiny if atol is None else atol
    s = np.abs(d) if scale is None else np.maximum(np.abs(d), np.broadcast_to(_host(scale), d.shape))
    s = np.where(np.isfinite(s), s, 0.0)
    over = _error_units(a, d, rtol * s + atol)
    bad = ~(over <= 1.0)
    if not bad.any():
        return
    i = int(np.argmax(np.where(np.isnan(over), np.inf, over)))
    idx = np.unravel_index(i, d.shape) if d.shape else ()
    ai, di, si = a.flat[i], d.flat[i], s.flat[i]
    in_ulps = _error_units(np.float64(ai), np.float64(di), np.float64(p.eps * max(abs(di) if math.isfinite(di) else 0,
                                                                                   p.tiny)))
    rel = abs(ai - di) / si if si > 0 and not math.isnan(ai - di) else math.inf
    raise AssertionError(
        f"{err_msg + ': ' if err_msg else ''}{int(bad.sum())} of {d.size} elements beyond the bound "
        f"(rtol {rtol:.3g} = {rtol / p.eps:.3g} ulps of {np.dtype(dtype).name}, atol {atol:.3g}); worst at index "
        f"{tuple(int(k) for k in idx)}: actual {float(ai)!r}, desired {float(di)!r}, error {float(in_ulps):.4g} ulps of desired, "
        f"{rel:.4g} relative to the scale {si:.4g}")


# ---- every backend ----------------------------------------------------------------------

def xp_of(backend: str) -> Any:
    """The array module a backend takes and returns: numpy on CPU backends, cupy on CUDA ones."""
    mod = _load(backend)
    if isinstance(mod, str):
        raise ValueError(f"xp_of: backend {backend!r} is unavailable: {mod}")
    return array_module(mod)


def _to_numpy(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return type(out)(_to_numpy(o) for o in out)
    if out is None or isinstance(out, (int, float, str)):
        return out
    return out.get() if hasattr(out, "get") and not isinstance(out, np.ndarray) else np.asarray(out)


def on_every_backend(backends: Optional[Sequence[str]] = None, *, ulps: float = 64.0,
                     scale: Optional[float] = None, compare: bool = True) -> Callable:
    """Decorator: run the test body once per backend and compare the results.

    The body takes keyword arguments ``xp`` (numpy, or cupy on a CUDA backend: build its
    inputs with ``xp.asarray``) and ``backend`` (the name; the body runs inside
    ``fastnn.use_backend(backend)``) and returns an array or a tuple of arrays (None
    entries allowed). Every backend's results are brought to numpy and compared with the
    first backend's by assert_close(ulps=ulps, scale=scale); the error names the backend.
    backends: default fastnn.available_backends(). Other parameters of the body stay
    visible to pytest (fixtures, parametrize). With compare=False only the runs happen.

    Examples
    --------
    ::

        @fastnn.testing.on_every_backend(ulps=32)
        def test_my_layer(xp, backend):
            x = xp.asarray(np.linspace(-5, 5, 101, dtype=np.float32))
            return fastnn.activation_forward(x, "gelu")
    """
    def wrap(body: Callable) -> Callable:
        sig = inspect.signature(body)
        rest = [v for k, v in sig.parameters.items() if k not in ("xp", "backend")]

        @functools.wraps(body)
        def run(*args: Any, **kwargs: Any) -> None:
            names = list(available_backends() if backends is None else backends)
            results = []
            for name in names:
                with use_backend(name):
                    results.append((name, _to_numpy(body(*args, xp=xp_of(name), backend=name, **kwargs))))
            if not compare or len(results) < 2:
                return
            first, ref = results[0]
            for name, got in results[1:]:
                pairs = list(zip(got, ref)) if isinstance(ref, (tuple, list)) else [(got, ref)]
                for k, (g, r) in enumerate(pairs):
                    if g is None or r is None:
                        assert g is None and r is None, f"result #{k}: {name} gave {g!r}, {first} gave {r!r}"
                        continue
                    assert_close(g, r, ulps=ulps, scale=scale, err_msg=f"result #{k}: backend {name} vs {first}")

        setattr(run, "__signature__", sig.replace(parameters=rest))
        return run
    return wrap


# ---- hard-case inputs -----------------------------------------------------------------

# Kinks fixed by an activation's formula; parameter-dependent ones come from the op table.
_FORMULA_KINKS = {"relu6": (0.0, 6.0), "hard_sigmoid": (-3.0, 3.0), "hard_silu": (-3.0, 3.0),
                  "gelu": (-0.75, 0.0), "relu_squared": (0.0,)}
_KINK_PARAMS = ("threshold", "max_value", "min_val", "max_val")


def _big(dtype: np.dtype) -> float:
    """The large ordinary input of the hard cases: 60 (e^60 = 1e26, the tails of sigmoid,
    softplus, tanh), 8 for float16, whose range ends at 65504 < e^11.1 (a larger input makes
    the exponential's saved output inf, and its gradient with it)."""
    return 8.0 if precision(dtype).tiny > 2.0 ** -20 else 60.0


def _activation_values(name: str, params: Dict[str, Any], dtype: np.dtype) -> list:
    """The special inputs of an activation: zeros, +-1e-3, the kinks (each with its
    neighbours one ulp away), +-60 (+-8 in float16) and +-1000, subnormals, +-inf and NaN."""
    p = precision(dtype)
    full = dict(R.ACTIVATION_PARAMS.get(name, {}), **params)
    kinks = list(_FORMULA_KINKS.get(name, (0.0,)))
    kinks += [float(v) for k, v in full.items() if k in _KINK_PARAMS and isinstance(v, (int, float))
              and math.isfinite(v) and abs(v) < 1e6]
    if name == "softplus":  # beta x = threshold switches to the linear branch
        kinks.append(full["threshold"] / full["beta"] if math.isfinite(full["threshold"]) else 0.0)
    big = _big(dtype)
    out = [0.0, -0.0, 1e-3, -1e-3, big, -big, 1000.0, -1000.0, p.tiny / 4, -p.tiny / 4, p.tiny, -p.tiny,
           math.inf, -math.inf, math.nan]
    for k in kinks:
        k = float(np.asarray(k, dtype))
        out += [k, float(np.nextafter(np.asarray(k, dtype), np.asarray(math.inf, dtype))),
                float(np.nextafter(np.asarray(k, dtype), np.asarray(-math.inf, dtype)))]
    return out


def _fill(shape: Tuple[int, ...], specials: list, rng: np.random.Generator, dtype: np.dtype,
          spread: float = 3.0) -> np.ndarray:
    """An array of `shape`: the specials first (cycled when fewer elements), the rest normal *
    spread, within +-_big(dtype) (float16: e^x stays finite)."""
    n = int(np.prod(shape))
    a = np.clip(rng.standard_normal(n) * spread, -_big(dtype), _big(dtype))
    k = min(n, len(specials))
    a[:k] = specials[:k]
    return a.reshape(shape).astype(dtype)


def hard_inputs(op_name: str, shape: Sequence[int], dtype: Any = np.float32, seed: int = 0,
                **params: Any) -> Dict[str, np.ndarray]:
    """Deterministic inputs of one op that include its hard cases.

    Activations get 0, +-1e-3, +-60, +-1000, subnormals, +-inf, NaN and each kink with its
    one-ulp neighbours, then normal(0, 3) values. Losses get finite values in their domain
    (bce: probabilities; hinge: +-1 labels; kl_div: log-probabilities) with
    ``|pred - target| = delta / beta`` kinks, +-60 and exact matches.

    Parameters
    ----------
    op_name : str
        An activation or loss name (or alias), ``"dense"`` or ``"dense_cross_entropy"``.
    shape : sequence of int
        The input's shape; ``(batch, in, out)`` for ``"dense"``, ``(batch, in, classes)``
        for ``"dense_cross_entropy"``. A 0 batch gives empty arrays.
    dtype : float16, bfloat16, float32 or float64
        The dtype of the float arrays (bfloat16: ``ml_dtypes.bfloat16`` or its name).
    seed : int
        Seed of the random part.
    **params
        The op's parameters, so that their kinks are included (relu's threshold,
        hard_tanh's min_val / max_val, ...).

    Returns
    -------
    dict of str to numpy.ndarray
        An activation: ``{"x", "dy"}``; a loss: ``{"pred", "target", "grad"}`` (class
        losses' target: int64 class indices of ``shape[:-1]``, about one row in 8 set to
        ignore_index); ``"dense"``: ``{"x", "w", "b", "dy"}``; ``"dense_cross_entropy"``:
        ``{"x", "w", "b", "target"}``.

    Raises
    ------
    ValueError
        An unknown op name or a shape of the wrong rank.

    Examples
    --------
    >>> hard_inputs("relu6", (20,), np.float32)["x"][:4]
    array([ 0.   , -0.   ,  0.001, -0.001], dtype=float32)
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    name = R.ACTIVATION_ALIASES.get(op_name, R.LOSS_ALIASES.get(op_name, op_name))
    if name in R.ACTIVATIONS:
        specials = _activation_values(name, params, dtype)
        if name in R.ROW_ACTIVATIONS:  # keep rows finite: one NaN / inf fills a whole row
            specials = [v for v in specials if math.isfinite(v)]
        return {"x": _fill(shape, specials, rng, dtype), "dy": _fill(shape, [], rng, dtype, 1.0)}
    if name in R.LOSSES:
        from ._parity_inputs import loss_inputs  # noqa: PLC0415 - the loss domains live there
        return loss_inputs(name, shape, dtype, rng, params)
    if name in ("dense", "dense_cross_entropy"):
        batch, fin, fout = shape
        x = _fill((batch, fin), [_big(dtype), -_big(dtype), 0.0, 1e-3], rng, dtype, 1.0)
        w = (rng.standard_normal((fout, fin)) / math.sqrt(max(fin, 1))).astype(dtype)
        b = rng.standard_normal(fout).astype(dtype)
        if name == "dense":
            return {"x": x, "w": w, "b": b, "dy": _fill((batch, fout), [], rng, dtype, 1.0)}
        t = rng.integers(0, max(fout, 1), batch).astype(np.int64)
        t[::8] = -100
        return {"x": x, "w": w, "b": b, "target": t}
    raise ValueError(f"hard_inputs: op_name {op_name!r} is not an activation, a loss, 'dense' or "
                     f"'dense_cross_entropy'")
