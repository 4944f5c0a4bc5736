"""Argument validation shared by every backend: names, parameters, dtypes, devices,
shapes and labels are checked here, once, before any backend runs. Messages name the
function, the argument, what it was and what was expected.
"""
import math
import operator
import types
from typing import Any, Dict, NamedTuple, Optional

import ml_dtypes
import numpy as np

from . import _registry as R

# The float dtypes every kernel takes. The 16-bit ones are storage formats: kernels widen
# them to float32, compute and accumulate in float32 and round each output once
# (round-to-nearest-even) back to the input's dtype (docs/lowp.md). bfloat16 is ml_dtypes'
# numpy dtype, the one jax, TensorFlow and CuPy use.
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
FLOAT16 = np.dtype(np.float16)
LOWP_DTYPES = (FLOAT16, BFLOAT16)
FLOAT_DTYPES = (FLOAT16, BFLOAT16, np.dtype(np.float32), np.dtype(np.float64))
FLOAT_NAMES = "float16, bfloat16, float32 or float64"
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def shape_str(shape):
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# ---- arrays ----------------------------------------------------------------------------

def device_of(a):
    """'cpu' or 'cuda' for an array-like, without importing cupy or torch: CuPy arrays and
    anything with a __cuda_array_interface__ or a CUDA __dlpack_device__ are on 'cuda'."""
    if type(a) is np.ndarray:
        return "cpu"
    mod = type(a).__module__ or ""
    if mod.startswith("cupy") or hasattr(a, "__cuda_array_interface__"):
        return "cuda"
    dev = getattr(a, "__dlpack_device__", None)
    if dev is not None and not isinstance(a, np.ndarray):
        try:
            kind = int(dev()[0])
        except Exception:  # noqa: BLE001 - a broken protocol is the caller's problem below
            return "cpu"
        return "cuda" if kind in (2, 3, 13) else "cpu"  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged
    return "cpu"


def to_numpy(func, argname, a):
    """An ndarray view of a CPU array-like (numpy, DLPack, array interface), zero-copy
    where the producer allows it."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "__dlpack__"):
        try:
            return np.from_dlpack(a)
        except (BufferError, RuntimeError, TypeError):
            pass
    if hasattr(a, "__array_interface__") or hasattr(a, "__array__") or np.isscalar(a) or isinstance(a, (list, tuple)):
        return np.asarray(a)
    raise TypeError(f"{func}: {argname} must be an array (numpy, cupy or a DLPack / array-interface object), "
                    f"got {type(a).__name__}")


def float_array(func, argname, a, xp=np):
    """The argument as an array of one of FLOAT_DTYPES (no conversion of other dtypes)."""
    if xp is np:
        a = to_numpy(func, argname, a)
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{func}: {argname} has dtype {a.dtype}; expected {FLOAT_NAMES}")
    return a


def same_dtype(func, **arrays):
    """All given float arrays share one dtype; returns it."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    dt = items[0][1].dtype
    for k, v in items[1:]:
        if v.dtype != dt:
            names = ", ".join(f"{n} is {a.dtype}" for n, a in items)
            raise TypeError(f"{func}: all float inputs must share one dtype, but {names} "
                            f"(fastnn kernels do not promote; cast first)")
    return dt


def same_device(func, **arrays):
    """All given array-likes live on one device; returns it ('cpu' or 'cuda')."""
    devs = {k: device_of(v) for k, v in arrays.items() if v is not None}
    if len(set(devs.values())) > 1:
        names = ", ".join(f"{k} on {d}" for k, d in devs.items())
        raise ValueError(f"{func}: all inputs must be on one device, but {names}")
    return next(iter(devs.values()), "cpu")


def expect_shape(func, argname, a, shape, what=""):
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{func}: {argname} has shape {shape_str(a.shape)}; expected {shape_str(shape)}{what}")


# ---- parameters -------------------------------------------------------------------------

def _number(func, name, value, *, integer=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{func}: {name} must be {kind}, got {value!r}")
    if integer:
        return operator.index(value)
    return float(value)


def _flag(func, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{func}: {name} must be True or False, got {value!r}")
    return bool(value)


def resolve_params(func, kind, name, defaults, given):
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise TypeError(f"{func}: unexpected parameter(s) {', '.join(unknown)} for {kind} '{name}' "
                        f"(it takes: {allowed})")
    out = dict(defaults)
    out.update(given)
    return out


class ActSpec(NamedTuple):
    name: str            # canonical name
    code: int            # index in ACTIVATIONS (the C++ enum)
    params: dict         # every parameter, resolved
    numeric: tuple       # (negative_slope, max_value, threshold, alpha, beta, min_val, max_val, approximate)
    from_y: bool         # backward reads the output y
    axis: Optional[int]  # softmax / log_softmax axis, else None


def activation_name(func, name):
    if not isinstance(name, str):
        raise TypeError(f"{func}: activation must be a string, got {name!r}")
    canon = R.ACTIVATION_ALIASES.get(name, name)
    if canon not in R.ACTIVATIONS:
        raise ValueError(f"{func}: unknown activation {name!r}; expected one of {', '.join(R.ACTIVATIONS)} "
                         f"(aliases: {', '.join(R.ACTIVATION_ALIASES)})")
    return canon


def _convert(func, op, param, value):
    """A parameter's value converted to its kind (fastnn._registry.Param.kind) and checked
    against its range; errors name the op, the parameter and the value."""
    kind = param.kind
    if kind == "float":
        value = _number(func, param.name, value)
    elif kind == "float_or_none":
        value = None if value is None else _number(func, param.name, value)
    elif kind == "int":
        value = _number(func, param.name, value, integer=True)
    elif kind == "bool":
        value = _flag(func, param.name, value)
    elif kind == "choice":
        if op == "gelu" and isinstance(value, (bool, np.bool_)):  # Keras spells approximate as a bool
            value = param.range.choices[1] if value else param.range.choices[0]
        try:
            ok = param.range.ok(value)
        except TypeError:  # an unhashable value
            ok = False
        if not ok:
            raise ValueError(f"{func}: {op} {param.name} {param.range.describe()}, got {value!r}")
        return value
    else:  # "array_or_none": checked where the arrays are (the loss's prepared call)
        return value
    problem = None if value is None or param.range.ok(value) else param.range.describe()
    if problem:
        raise ValueError(f"{func}: {op} {param.name} {problem}, got {value!r}")
    return value


def _resolve(func, kind, op, given):
    """Every parameter of op (a table entry), given ones converted and checked, the others
    at their defaults."""
    defaults = {p.name: p.default for p in op.params}
    p = resolve_params(func, kind, op.name, defaults, given)
    for param in op.params:
        if param.name in given:
            p[param.name] = _convert(func, op.name, param, p[param.name])
    return p


def activation_spec(func, name, params):
    """The resolved activation (ActSpec) of name (or an alias) and its params, from the op
    table (fastnn._registry): every parameter converted, range-checked, defaults filled."""
    name = activation_name(func, name)
    op = R.ACTIVATION_TABLE[name]
    p = _resolve(func, "activation", op, params)
    for check, test, message in R.ACT_CONSTRAINTS:
        if check == name and not test(p):
            raise ValueError(f"{func}: {name} {message.format(**p)}")
    axis = p["axis"] if op.shape == "row" else None
    return ActSpec(name, R.ACTIVATIONS.index(name), p, R.act_numeric(name, p), R.act_from_y(name, p), axis)


# ---- resolved specs, cached ----------------------------------------------------------------
# activation_spec / loss_spec re-resolve and re-check the params on every call (a few us);
# the cached forms below resolve each distinct (func, name, params) once. Only results are
# cached (a call that raises raises every time, with its own message), and the key tells
# apart values that compare equal but behave differently (True / 1 / 1.0, 0.0 / -0.0), so a
# cached spec is exactly what the uncached call returns. Cached specs are shared: their
# params are read-only mappings.

_SPEC_CACHE_SIZE = 1024  # distinct (func, name, params) kept; all dropped when full
_act_cache: Dict[Any, Any] = {}
_loss_cache: Dict[Any, Any] = {}
_SCALARS = (type(None), bool, int, float, str, np.generic)


def _exact(v):
    if isinstance(v, (float, np.floating)):
        return float(v).hex()
    if not isinstance(v, _SCALARS):  # arrays, tensors, lists: never part of a cached spec
        raise TypeError(f"not a scalar: {type(v).__name__}")
    return v


def params_key(params):
    """A hashable key of a params dict of scalars that equals another's only for identical
    values (same type and, for floats, the same bits: 0.0 and -0.0 differ); raises
    TypeError for a value that is not a scalar."""
    if not params:
        return ()
    return tuple([(k, v.__class__, _exact(v)) for k, v in params.items()])


def _cached(cache, resolve, func, name, params):
    try:
        key = (func, name, params_key(params))
        spec = cache.get(key)
    except TypeError:  # an unhashable value: resolve (and report) it uncached
        return resolve(func, name, params)
    if spec is None:
        spec = resolve(func, name, params)
        spec = spec._replace(params=types.MappingProxyType(spec.params))
        if len(cache) >= _SPEC_CACHE_SIZE:
            cache.clear()
        cache[key] = spec
    return spec


def activation_spec_cached(func, name, params):
    """activation_spec(func, name, params), resolved once per distinct arguments."""
    return _cached(_act_cache, activation_spec, func, name, params)


def loss_spec_cached(func, name, params):
    """loss_spec(func, name, params), resolved once per distinct arguments (params holding
    arrays, such as weight, are resolved uncached)."""
    return _cached(_loss_cache, loss_spec, func, name, params)


def prepared_for(cache, spec, make, *extra):
    """The prepared call make(spec, *extra), one per resolved spec (and extra): a prepared
    call keeps its spec alive, so the spec's id stays its key; the cache is dropped whole
    when it reaches _SPEC_CACHE_SIZE * 4 entries (specs resolved uncached, with array
    params, each get one)."""
    key = (id(spec),) + extra if extra else id(spec)
    p = cache.get(key)
    if p is None or p.spec is not spec:
        if len(cache) >= 4 * _SPEC_CACHE_SIZE:
            cache.clear()
        p = cache[key] = make(spec, *extra)
    return p


def normalize_axis(func, axis, ndim):
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise ValueError(f"{func}: axis {axis} is out of range for an input with {ndim} dimension(s)")
    return axis % max(ndim, 1)


class LossSpec(NamedTuple):
    name: str
    code: int        # index in LOSSES (elementwise losses, then cross_entropy, nll): the C++ Loss enum
    params: dict     # every parameter, resolved
    numeric: tuple   # (delta, beta, eps, log_target, log_input, full, ignore_index, label_smoothing) as floats


def loss_spec(func, name, params):
    """The resolved loss (LossSpec) of name (or an alias) and its params, from the op table."""
    if not isinstance(name, str):
        raise TypeError(f"{func}: loss name must be a string, got {name!r}")
    canon = R.LOSS_ALIASES.get(name, name)
    if canon not in R.LOSSES:
        raise ValueError(f"{func}: unknown loss {name!r}; expected one of {', '.join(R.LOSSES)} "
                         f"(aliases: {', '.join(R.LOSS_ALIASES)})")
    p = _resolve(func, "loss", R.LOSS_TABLE[canon], params)
    return LossSpec(canon, R.LOSSES.index(canon), p, R.loss_numeric(canon, p))


def reduction_of(func, loss, reduction):
    allowed = R.reductions_of(loss)
    if reduction not in allowed:
        raise ValueError(f"{func}: unknown reduction {reduction!r} for {loss}; expected one of "
                         f"{', '.join(repr(r) for r in allowed)}")
    return reduction


def weight_layout(func, layout):
    if layout not in ("oi", "io"):
        raise ValueError(f"{func}: weight_layout must be 'oi' (w is (out, in), torch) or 'io' "
                         f"(w is (in, out), Keras), got {layout!r}")
    return layout


# ---- Dense and loss arguments ------------------------------------------------------------

def dense_arrays(func, x, w, layout, spec, xp):
    """Checks x (..., in) against w ((out, in) for "oi", (in, out) for "io") and the
    activation's axis; returns (x as a C-contiguous (m, in) matrix, w C-contiguous, w_oi,
    flipped, out). A Fortran-ordered w is read as its transpose in the other layout
    (flipped: dw comes back transposed), never copied."""
    weight_layout(func, layout)
    if x.ndim < 1:
        raise ValueError(f"{func}: x must have at least 1 dimension (..., in), got a 0-d array")
    if w.ndim != 2:
        raise ValueError(f"{func}: w must be 2-D ({'(out, in)' if layout == 'oi' else '(in, out)'}), "
                         f"got shape {shape_str(w.shape)}")
    k = x.shape[-1]
    if layout == "oi" and w.shape[1] != k:
        raise ValueError(f"{func}: w has shape {shape_str(w.shape)} but x has {k} features; expected (out, {k})")
    if layout == "io" and w.shape[0] != k:
        raise ValueError(f"{func}: w has shape {shape_str(w.shape)} but x has {k} features; expected ({k}, out)")
    if spec.axis is not None and normalize_axis(func, spec.axis, x.ndim) != x.ndim - 1:
        raise ValueError(f"{func}: a Dense {spec.name} works along the last axis; got axis={spec.axis}")
    n = w.shape[0] if layout == "oi" else w.shape[1]
    w_oi, flipped = layout == "oi", False
    if not w.flags.c_contiguous and w.T.flags.c_contiguous:
        w, w_oi, flipped = w.T, not w_oi, True
    m = math.prod(x.shape[:-1])
    return xp.ascontiguousarray(x.reshape(m, k)), xp.ascontiguousarray(w), w_oi, flipped, n


def index_target(func, target, rows_shape, ncls, ignore_index, xp, what):
    """Class indices (int32/int64) of shape rows_shape, each in [0, ncls) or ignore_index,
    as a flat C-contiguous int64 array."""
    if target.dtype not in INDEX_DTYPES:
        raise TypeError(f"{func}: target has dtype {target.dtype}; expected int32/int64 class indices")
    expect_shape(func, "target", target, rows_shape, what)
    t = xp.ascontiguousarray(target.reshape(-1), dtype=xp.int64)
    bad = ((t < 0) | (t >= ncls)) & (t != ignore_index)
    if bool(bad.any()):
        raise ValueError(f"{func}: target contains class index {int(t[bad][0])}, outside [0, {ncls}) and not "
                         f"ignore_index ({ignore_index})")
    return t


def class_target(func, spec, pred, target, xp):
    """(target as int64 indices or float probabilities (rows, C), is_index) for
    cross_entropy / nll with pred (..., C)."""
    t = target if xp is not np else to_numpy(func, "target", target)
    if t.dtype.kind in "iu" and t.dtype in INDEX_DTYPES:
        return index_target(func, t, pred.shape[:-1], pred.shape[-1], spec.params["ignore_index"], xp,
                            " (pred.shape[:-1]: one class index per row)"), True
    if spec.name == "nll" or t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{func}: {spec.name} target has dtype {t.dtype}; expected int32/int64 class indices"
                        + (" or float class probabilities of pred's shape" if spec.name == "cross_entropy" else ""))
    expect_shape(func, "target", t, pred.shape, " (class probabilities have pred's shape)")
    if spec.params["ignore_index"] != -100:
        raise ValueError(f"{func}: ignore_index ({spec.params['ignore_index']}) is not allowed with probability "
                         f"targets")
    return xp.ascontiguousarray(t.reshape(-1, pred.shape[-1]) if pred.ndim else t.reshape(1, 1)), False


def pos_weight_array(func, pw, pred, xp):
    """pos_weight as a 1-D C-contiguous array whose element i % len applies to element i."""
    if pred.size == 0:
        return None
    shape = tuple(pw.shape)
    while shape and shape[0] == 1 and len(shape) > 1:
        shape = shape[1:]
    last = pred.shape[-1] if pred.ndim else 1
    if shape in ((), (1,), (last,)):
        return xp.ascontiguousarray(pw.reshape(-1))
    try:
        return xp.ascontiguousarray(xp.broadcast_to(pw, pred.shape).reshape(-1))
    except ValueError:
        raise ValueError(f"{func}: pos_weight has shape {shape_str(pw.shape)}, which does not broadcast to pred's "
                         f"shape {shape_str(pred.shape)}; expected ({last},)") from None


def unit_interval(func, argname, a):
    """bce's probabilities: every entry in [0, 1] (NaN is not)."""
    ok = (a >= 0) & (a <= 1)
    if a.size and not bool(ok.all()):
        bad = a[~ok].reshape(-1)[0]
        raise ValueError(f"{func}: bce {argname} must be probabilities in [0, 1]; found {float(bad)!r}")


def upstream_grad(func, grad, reduction, none_shape, dtype, xp):
    """The upstream gradient of a loss: (array of the "none" shape, flat, or None; scalar
    factor). A scalar (or, for a reduced loss, any one-element array) is the factor."""
    if grad is None:
        return None, 1.0
    g = grad if xp is not np else to_numpy(func, "grad", grad)
    if getattr(g, "ndim", 0) == 0 or (reduction != "none" and g.size == 1):
        return None, float(g.reshape(()) if hasattr(g, "reshape") else g)
    if reduction != "none":
        raise ValueError(f"{func}: grad must be a scalar for reduction {reduction!r}, got shape "
                         f"{shape_str(g.shape)}")
    g = float_array(func, "grad", g, xp)
    if g.dtype != dtype:
        raise TypeError(f"{func}: grad has dtype {g.dtype} but pred is {dtype}; expected one dtype")
    expect_shape(func, "grad", g, none_shape, " (the shape of the 'none' loss)")
    return xp.ascontiguousarray(g.reshape(-1)), 1.0


def chunk_size(func, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"{func}: chunk_size must be a positive integer or None, got {value!r}")
    return None if value is None else int(value)


# ---- the fused Dense + cross-entropy's options beyond torch ------------------------------

class CeExtras(NamedTuple):
    """dense_cross_entropy's options beyond torch's cross_entropy, checked; the defaults
    are off (torch's loss). Arrays are C-contiguous, of x's dtype, on x's device."""
    class_weight: Optional[object] = None  # (C,): torch's weight, row i's loss times w[y_i]
    row_weight: Optional[object] = None    # (N,): row i's loss times row_weight[i]
    softcap: float = 0.0                   # > 0: logits -> softcap * tanh(logits / softcap); 0: off
    z_scale: float = 0.0                   # the z-loss: z_scale * lse_i^2 added to row i's loss
    want_lse: bool = False                 # also return each row's log-sum-exp

    @property
    def beyond_torch(self):
        """True when an option torch's cross_entropy does not have is on."""
        return self.row_weight is not None or self.softcap > 0 or self.z_scale > 0 or self.want_lse


NO_CE_EXTRAS = CeExtras()


def ce_scalars(func, softcap, lse_square_scale):
    """(softcap as a float, 0.0 for None; lse_square_scale as a float), checked: softcap
    None or a positive finite number, lse_square_scale a finite number >= 0."""
    cap = 0.0
    if softcap is not None:
        cap = _number(func, "softcap", softcap)
        if not (0 < cap < math.inf):
            raise ValueError(f"{func}: softcap must be a positive finite number or None (off), got {softcap!r}")
    z = _number(func, "lse_square_scale", lse_square_scale)
    if not (0 <= z < math.inf):
        raise ValueError(f"{func}: lse_square_scale must be a finite number >= 0 (0: off), got {lse_square_scale!r}")
    return cap, z


def ce_extras(func, x, rows_shape, ncls, class_weight, row_weight, softcap, lse_square_scale, return_lse, xp):
    """The CeExtras of dense_cross_entropy's keyword options, each checked: class_weight
    (classes,) and row_weight (x's batch shape) arrays of x's dtype, softcap None or > 0,
    lse_square_scale >= 0, return_lse a bool."""
    arrays = {}
    for name, a, shape, what in (("class_weight", class_weight, (ncls,), " (classes,)"),
                                 ("row_weight", row_weight, rows_shape, " (x.shape[:-1]: one weight per row)")):
        if a is None:
            arrays[name] = None
            continue
        a = float_array(func, name, a, xp)
        if a.dtype != x.dtype:
            raise TypeError(f"{func}: {name} has dtype {a.dtype} but x is {x.dtype}; expected one dtype")
        expect_shape(func, name, a, shape, what)
        arrays[name] = xp.ascontiguousarray(a.reshape(-1))
    cap, z = ce_scalars(func, softcap, lse_square_scale)
    return CeExtras(arrays["class_weight"], arrays["row_weight"], cap, z, _flag(func, "return_lse", return_lse))
