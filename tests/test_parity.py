"""Backend parity: the C++ backend ("cpp") against every other available backend (the
Numba backend "numba", the CuPy backend "cupy" on a GPU, and its CPU emulation
"cupy_emu"), independent implementations of the same formulas, on the same random inputs, for every
kernel: each activation forward and backward (from x, and from y where that exists),
each loss forward and backward with its target gradient and parameters, dense forward
and backward (several activations, both weight layouts), and the fused
dense_cross_entropy. Here "cpp" is the reference; no torch is involved.

Inputs are large enough for both backends to split the work over threads (numba:
from 2 x 2^15 elements, or rows of that many, for kernels calling exp/erfc/tanh) and
include the kinks, +-60, +-1000, NaN and +-inf, so the threaded paths, the chunked sums
and torch's NaN/inf conventions are compared too.
"""
import math
import zlib
from collections import namedtuple

import numpy as np
import pytest

import fastnn

from conftest import DEVICE_OF

OTHERS = [b for b in fastnn.available_backends() if b != "cpp"]
pytestmark = pytest.mark.skipif(
    "cpp" not in fastnn.available_backends() or not OTHERS,
    reason=f"needs the cpp backend and another one; fastnn.backends() = {fastnn.backends()}")
_other = [None]


@pytest.fixture(params=OTHERS, autouse=True)
def other(request):
    """The backend compared with cpp in this test."""
    _other[0] = request.param
    yield request.param
    _other[0] = None

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]

# ---------------------------------------------------------------------------- tolerances
# Each backend is checked against float64 torch elsewhere (tests/conftest.py: rtol 1e-12
# in float64, 1e-5 in float32), so the two are within twice that of each other. The
# bands below are tighter where that holds:
#   float64: rtol 1e-12. Measured on this file's inputs: at most 0.12 of the band
#            (1.2e-13, tanh-gelu forward), 0.01 or less elsewhere.
#   float32: rtol 2e-5 (= 2 x the suite's per-backend float32 band). Measured: at most
#            0.39 of the band (7.7e-6, tanh-gelu forward: sigmoid(2u) for x << 0 loses
#            |2u| roundoffs of u, and the backends' float32 exp (C++: its own vectorized
#            expf; numba: libm) round differently), 0.07 or less elsewhere.
#   tiny:    the smallest normal number: below it (subnormal results, e.g. gelu(-13) in
#            float32) only absolute agreement is meaningful.
# Results that are small only through cancellation of larger terms (a derivative's
# zero crossing, 1 - tanh^2 near +-1, log_softmax of the top class, loss sums and
# products of both signs) get a band relative to those terms instead: `scale` below,
# defined per kernel family.
Tol = namedtuple("Tol", "rtol tiny")
TOL = {F32: Tol(2e-5, float(np.finfo(np.float32).tiny)), F64: Tol(1e-12, float(np.finfo(np.float64).tiny))}


def run(backend, fn, *args, **kwargs):
    with fastnn.use_backend(backend):
        return fn(*args, **kwargs)


def _map(f, v):
    if isinstance(v, (tuple, list)):
        return type(v)(_map(f, e) for e in v)
    return f(v)


def both(fn, *args, **kwargs):
    """(cpp's result, the other backend's result) of fastnn.fn(*args, **kwargs); a device
    backend gets device copies of the arrays and its results come back as numpy."""
    ref = run("cpp", fn, *args, **kwargs)
    name = _other[0]
    if DEVICE_OF.get(name) != "cuda":
        return ref, run(name, fn, *args, **kwargs)
    cp = pytest.importorskip("cupy")
    dev = lambda a: cp.asarray(a) if isinstance(a, np.ndarray) else a  # noqa: E731
    host = lambda a: cp.asnumpy(a) if isinstance(a, cp.ndarray) else a  # noqa: E731
    got = run(name, fn, *_map(dev, args), **{k: _map(dev, v) for k, v in kwargs.items()})
    return ref, _map(host, got)


def check(got, ref, dtype, scale=0.0, what=""):
    """the other backend's `got` against cpp's `ref`: same type, dtype and shape; NaN and +-inf at
    the same places; elsewhere |got - ref| <= rtol * max(|ref|, scale) + tiny."""
    assert isinstance(got, np.ndarray) and isinstance(ref, np.ndarray), what
    assert got.dtype == ref.dtype == dtype, f"{what}: dtypes {got.dtype} (other), {ref.dtype} (cpp)"
    assert got.shape == ref.shape, f"{what}: shapes {got.shape} (other), {ref.shape} (cpp)"
    g, r = got.astype(np.float64), ref.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=f"{what}: NaN positions")
    inf = np.isinf(r) | np.isinf(g)
    np.testing.assert_array_equal(g[inf], r[inf], err_msg=f"{what}: inf entries")
    tol = TOL[dtype]
    tiny = tol.tiny
    if DEVICE_OF.get(_other[0]) == "cuda" and dtype == F32:
        # CUDA's float32 exp flushes subnormal results to 0 (its ex2.approx.ftz core), so
        # a result made from one (tanh-gelu(-13) = -13 * exp(-88.6) = -7e-38) is 0 there.
        tiny = 2.0 ** -120
    scale = np.nan_to_num(np.broadcast_to(np.asarray(scale, np.float64), r.shape), nan=0.0)
    band = tol.rtol * np.maximum(np.abs(r), scale) + tiny
    fin = np.isfinite(r)
    err = np.abs(g[fin] - r[fin]) / band[fin]
    if err.size and not err.max() <= 1.0:
        i = np.flatnonzero(fin)[np.argmax(err)]
        raise AssertionError(f"{what}: |other - cpp| is {err.max():.3g} x the band at flat index {i}: "
                             f"other {g.flat[i]!r}, cpp {r.flat[i]!r}, band {band.flat[i]:.3g}")


# ---------------------------------------------------------------------------- activations
ACT_PARAMS = {
    "relu": [{}, {"negative_slope": 0.1}, {"negative_slope": 0.2, "max_value": 2.5, "threshold": 0.5}],
    "leaky_relu": [{}, {"negative_slope": 0.2}],
    "elu": [{}, {"alpha": 0.5}],
    "celu": [{}, {"alpha": 2.0}],
    "gelu": [{}, {"approximate": "tanh"}],
    "softplus": [{}, {"beta": 2.0}, {"beta": 0.5, "threshold": 5.0}, {"beta": 2.0, "threshold": math.inf}],
    "hard_tanh": [{}, {"min_val": -2.0, "max_val": 0.5}],
}
ACT_CASES = [pytest.param(n, p, id=n + "".join(f"-{k}={v}" for k, v in p.items()))
             for n in fastnn.ACTIVATIONS for p in ACT_PARAMS.get(n, [{}])]
# kinks of every activation (API.md's table), the params' kinks, tails and non-finite values
SPECIALS = [0.0, -3.0, 3.0, 6.0, -1.0, 1.0, 0.5, 2.5, -2.0, 2.5, 10.0, 40.0, -13.5, -60.0, 60.0, -1000.0,
            1000.0, np.nan, np.inf, -np.inf]


def act_inputs(name, dtype, rng):
    """x (130, 1031): 3 N(0,1) with the specials in row 0; dy N(0,1) with +-inf in it."""
    x = 3.0 * rng.standard_normal((130, 1031))
    x[0, :len(SPECIALS)] = SPECIALS
    x[1, :200] = rng.uniform(-60.0, 60.0, 200)
    dy = rng.standard_normal(x.shape)
    if name not in ("softmax", "log_softmax"):  # a row of softmax with dy = inf is all NaN
        dy[2, :3] = [np.inf, -np.inf, np.nan]
    return x.astype(dtype), dy.astype(dtype)


def act_scales(name, x, y, dy):
    """(forward scale, backward scale) of the terms that round into each result.
    Elementwise: a derivative is a sum of O(1) and O(|x|) terms (x phi(x) in gelu,
    x s (1 - s) in silu, 1 - tanh^2, ...) times dy, so it is compared with
    rtol |dy| (1 + |x|). Softmax rows: operands of log_softmax are x, max and
    log-sum-exp (|x| + max|x| + log C); of the gradients dy and the row's sum."""
    x, y, dy = (np.abs(np.asarray(a, np.float64)) for a in (x, y, dy))
    with np.errstate(invalid="ignore"):
        if name == "softmax":
            return 0.0, y * (dy + np.nansum(y * dy, -1, keepdims=True))
        if name == "log_softmax":
            fin = np.where(np.isfinite(x), x, 0.0)
            return x + fin.max(-1, keepdims=True) + math.log(x.shape[-1]), dy + np.nansum(dy, -1, keepdims=True)
        return 0.0, dy * (1.0 + x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, params", ACT_CASES)
def test_activation(dtype, name, params):
    rng = np.random.default_rng(zlib.crc32(f"{name}{params}".encode()))
    x, dy = act_inputs(name, dtype, rng)
    yc, yn = both(fastnn.activation_forward, x, name, **params)
    fs, bs = act_scales(name, x, yc, dy)
    check(yn, yc, dtype, fs, what=f"{name}{params} forward")
    dc, dn = both(fastnn.activation_backward, dy, name, x=x, **params)
    check(dn, dc, dtype, bs, what=f"{name}{params} backward from x")
    if "y" in fastnn.saved_for_backward(name, **params):
        dc, dn = both(fastnn.activation_backward, dy, name, y=yc, **params)  # the same saved y
        check(dn, dc, dtype, act_scales(name, yc, yc, dy)[1], what=f"{name}{params} backward from y")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_axis0_and_small(dtype, name):
    """A non-last axis (moved by the Python layer) and rows shorter than a SIMD vector."""
    rng = np.random.default_rng(5)
    for shape, axis in (((257, 3), 0), ((5, 1), -1), ((4, 7), -1)):
        x = (3.0 * rng.standard_normal(shape)).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        yc, yn = both(fastnn.activation_forward, x, name, axis=axis)
        check(yn, yc, dtype, 20.0, what=f"{name} forward {shape} axis={axis}")
        dc, dn = both(fastnn.activation_backward, dy, name, x=x, axis=axis)
        check(dn, dc, dtype, 20.0 * np.abs(dy).max(), what=f"{name} backward {shape} axis={axis}")


# ---------------------------------------------------------------------------- losses
LOSS_PARAMS = {
    "huber": [{}, {"delta": 0.5}, {"delta": 2.5}],
    "smooth_l1": [{}, {"beta": 0.5}, {"beta": 0.0}],
    "bce_with_logits": [{}, {"pos_weight": "C"}, {"pos_weight": "1"}],
    "kl_div": [{}, {"log_target": True}],
    "poisson_nll": [{}, {"log_input": False}, {"full": True}, {"log_input": False, "full": True, "eps": 1e-4}],
}
ELEMENTWISE = [n for n in fastnn.LOSSES if n not in ("cross_entropy", "nll")]
LOSS_CASES = [pytest.param(n, p, id=n + "".join(f"-{k}={v}" for k, v in p.items()))
              for n in ELEMENTWISE for p in LOSS_PARAMS.get(n, [{}])]
LOSS_SHAPE = (130, 1031)  # 134030 elements: 9 reduction chunks of 16384, 2 threads


def loss_inputs(name, params, dtype, rng):
    """(pred, target, params) in each loss's domain, with edge values in row 0."""
    s = LOSS_SHAPE
    n = rng.standard_normal
    if name == "bce":
        p, t = rng.uniform(0.0, 1.0, s), rng.uniform(0.0, 1.0, s)
        p[0, :6], t[0, :6] = [0.0, 1.0, 1e-30, 1.0 - 1e-7, 0.5, 0.5], [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    elif name == "bce_with_logits":
        p, t = 3.0 * n(s), rng.uniform(0.0, 1.0, s)
        p[0, :4] = [-60.0, 60.0, -1000.0, 1000.0]
    elif name == "kl_div":
        p = -np.abs(2.0 * n(s))
        t = np.abs(n(s)) if not params.get("log_target") else -np.abs(n(s))
        t[0, :3] = [0.0, 0.0, np.exp(p[0, 2])] if not params.get("log_target") else t[0, :3]
    elif name == "poisson_nll":
        p = n(s) if params.get("log_input", True) else rng.uniform(0.0, 3.0, s)
        p[0, 0] = 0.0 if not params.get("log_input", True) else p[0, 0]
        t = rng.poisson(2.0, s).astype(np.float64)
        t[0, :4] = [0.0, 0.5, 1.0, 1.5]
    elif name in ("hinge", "squared_hinge"):
        p, t = 2.0 * n(s), rng.choice([-1.0, 1.0], s)
        p[0, :2] = [1.0, -1.0]
    else:
        p, t = 2.0 * n(s), 2.0 * n(s)
        t[0, :3] = p[0, :3]  # the kink pred == target
        p[0, 3:5] = [np.nan, np.inf]
    out = {}
    for k, v in params.items():
        if v == "C":
            v = rng.uniform(0.2, 2.0, s[-1]).astype(dtype)
        elif v == "1":
            v = np.array([1.7], dtype=dtype)
        out[k] = v
    return p.astype(dtype), t.astype(dtype), out


def loss_scale(name, p, t, params):
    """Per element, the size of the terms whose difference is the loss (its value is
    compared with rtol times this; a sum with rtol times its sum)."""
    p, t = p.astype(np.float64), t.astype(np.float64)
    ap, at = np.abs(p), np.abs(t)
    with np.errstate(all="ignore"):
        if name == "bce":  # t log p + (1 - t) log(1 - p), each log clamped at -100
            return 1.0 + np.minimum(np.abs(np.log(p)) + np.abs(np.log1p(-p)), 200.0)
        if name == "kl_div":  # t (log t - x), or e^t (t - x)
            e = np.exp(t) if params.get("log_target") else at
            return e * (1.0 + np.abs(np.log(at)) + at + ap)
        if name == "poisson_nll":  # e^x - t x, or x - t log(x + eps); + Stirling's t log t
            lg = ap if params.get("log_input", True) else np.abs(np.log(ap + params.get("eps", 1e-8)))
            v = np.exp(np.minimum(p, 700.0)) + ap + at * lg
            return v + (at * (np.abs(np.log(at)) + 1.0) + 2.0 if params.get("full") else 0.0)
        # (1 - t) x + lw softplus(-x) (pos_weight <= 2), d^2, |d|, 1 - t p, log cosh d
        return 3.0 * (1.0 + ap) * (1.0 + at)


def finite_sum(a):
    return float(np.nansum(np.where(np.isfinite(a), a, 0.0)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, params", LOSS_CASES)
def test_loss(dtype, name, params):
    rng = np.random.default_rng(zlib.crc32(f"{name}{params}".encode()))
    pred, target, p = loss_inputs(name, params, dtype, rng)
    sc = loss_scale(name, pred, target, p)
    for red in ("none", "sum", "mean"):
        lc, ln = both(fastnn.loss_forward, pred, target, name, reduction=red, **p)
        total = finite_sum(sc) / (pred.size if red == "mean" else 1)
        check(ln, lc, dtype, sc if red == "none" else total, what=f"{name}{params} {red} loss")
        grad = rng.standard_normal(pred.shape).astype(dtype) if red == "none" else 0.7
        tg = name in {"mse", "mae", "huber", "smooth_l1", "bce", "bce_with_logits", "kl_div", "poisson_nll"}
        gc, gn = both(fastnn.loss_backward, pred, target, name, reduction=red, grad=grad, need_target_grad=tg, **p)
        for what, a, b in zip(("d/dpred", "d/dtarget"), gn if tg else (gn,), gc if tg else (gc,)):
            # gradients: elementwise, or relative to the array's largest entry (normwise)
            fin = np.isfinite(b)
            norm = np.abs(b[fin].astype(np.float64)).max() if fin.any() else 0.0
            check(a, b, dtype, norm, what=f"{name}{params} {red} {what}")


CLASS_CASES = [
    ("cross_entropy", {}, "index"), ("cross_entropy", {"weight": "C"}, "index"),
    ("cross_entropy", {"ignore_index": 1}, "index"), ("cross_entropy", {"label_smoothing": 0.1}, "index"),
    ("cross_entropy", {"weight": "C", "ignore_index": 1, "label_smoothing": 0.2}, "index"),
    ("cross_entropy", {}, "prob"), ("cross_entropy", {"weight": "C", "label_smoothing": 0.2}, "prob"),
    ("nll", {}, "index"), ("nll", {"weight": "C", "ignore_index": 1}, "index"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, params, kind", [pytest.param(*c, id=f"{c[0]}-{c[2]}-" + (",".join(c[1]) or "default"))
                                                for c in CLASS_CASES])
@pytest.mark.parametrize("rows, cols", [(2053, 33), (5, 1000), (64, 1)])
def test_class_loss(dtype, name, params, kind, rows, cols):
    rng = np.random.default_rng(rows * cols)
    x = 2.0 * rng.standard_normal((rows, cols))
    x[0, 0] = 60.0
    if name == "nll":
        x = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)
    p = {k: (rng.uniform(0.2, 2.0, cols).astype(dtype) if v == "C" else v) for k, v in params.items()}
    if kind == "index":
        t = rng.integers(0, cols, rows)
        t[rng.random(rows) < 0.2] = p.get("ignore_index", -100)
    else:
        e = np.exp(2.0 * rng.standard_normal((rows, cols)))
        t = (e / e.sum(-1, keepdims=True)).astype(dtype)
    x = x.astype(dtype)
    w = p.get("weight", np.ones(cols))
    # a row's loss is w-weighted differences of x and log-sum-exp
    row_scale = np.abs(w).max() * (np.abs(x).max(-1) + math.log(cols) + 1.0)
    for red in ("none", "sum", "mean"):
        lc, ln = both(fastnn.loss_forward, x, t, name, reduction=red, **p)
        check(ln, lc, dtype, row_scale if red == "none" else row_scale.sum(), what=f"{name}{params} {red} loss")
        grad = rng.standard_normal(rows).astype(dtype) if red == "none" else 1.3
        tg = kind == "prob"
        gc, gn = both(fastnn.loss_backward, x, t, name, reduction=red, grad=grad, need_target_grad=tg, **p)
        for what, a, b in zip(("d/dpred", "d/dtarget"), gn if tg else (gn,), gc if tg else (gc,)):
            check(a, b, dtype, np.abs(b.astype(np.float64)).max(initial=0.0), what=f"{name}{params} {red} {what}")


# ---------------------------------------------------------------------------- dense
DENSE_ACTS = [("linear", {}), ("relu", {}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("sigmoid", {}),
              ("tanh", {}), ("elu", {"alpha": 0.5}), ("hard_silu", {}), ("softmax", {}), ("log_softmax", {})]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["oi", "io"])
@pytest.mark.parametrize("act, params", [pytest.param(a, p, id=a + "".join(f"-{v}" for v in p.values()))
                                         for a, p in DENSE_ACTS])
@pytest.mark.parametrize("m, k, n, bias", [(300, 65, 33, True), (7, 1, 5, False), (1, 130, 257, True),
                                           (2100, 17, 33, True)])
def test_dense(dtype, layout, act, params, m, k, n, bias):
    rng = np.random.default_rng(m * k + n)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = (rng.standard_normal((n, k) if layout == "oi" else (k, n)) / math.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype) if bias else None
    dy = rng.standard_normal((m, n)).astype(dtype)
    (yc, zc), (yn, zn) = both(fastnn.dense_forward, x, w, b, act, weight_layout=layout, keep_z=True, **params)
    wa = np.abs(w.astype(np.float64)) if layout == "io" else np.abs(w.astype(np.float64)).T  # |W| as (k, n)
    # products summed in different orders (two BLAS builds): rtol |x| @ |W| (+ |b|);
    # the activation carries that through its slope (<= 2 for these) or a softmax row's sum
    zs = np.abs(x.astype(np.float64)) @ wa + (0.0 if b is None else np.abs(b.astype(np.float64)))
    check(zn, zc, dtype, zs, what=f"dense {act} z")
    ys = 2.0 * (zs.max(-1, keepdims=True) if act in ("softmax", "log_softmax") else zs)
    check(yn, yc, dtype, ys, what=f"dense {act} y")
    (dxc, dwc, dbc), (dxn, dwn, dbn) = both(fastnn.dense_backward, dy, x, w, yc, zc, act, weight_layout=layout,
                                            **params)
    # g = dy * act' has |g| <= 2 |dy| (softmax rows: <= 2 max|dy|); then two products
    gs = 2.0 * np.abs(dy.astype(np.float64))
    if act in ("softmax", "log_softmax"):
        gs = np.broadcast_to(gs.max(-1, keepdims=True), gs.shape)
    check(dxn, dxc, dtype, gs @ wa.T, what=f"dense {act} dx")
    dws = np.abs(x.astype(np.float64)).T @ gs
    check(dwn, dwc, dtype, dws.T if layout == "oi" else dws, what=f"dense {act} dw")
    check(dbn, dbc, dtype, gs.sum(0), what=f"dense {act} db")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["oi", "io"])
@pytest.mark.parametrize("ls, chunk, reduction", [(0.0, None, "mean"), (0.2, 7, "none"), (0.1, 64, "sum")])
def test_dense_cross_entropy(dtype, layout, ls, chunk, reduction):
    rng = np.random.default_rng(17)
    n, h, c = 1000, 33, 101
    x = rng.standard_normal((n, h)).astype(dtype)
    w = (rng.standard_normal((c, h) if layout == "oi" else (h, c)) / math.sqrt(h)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    t = rng.integers(0, c, n)
    t[::9] = -100
    grad = rng.standard_normal(n).astype(dtype) if reduction == "none" else 0.9
    (lc, gc), (ln, gn) = both(fastnn.dense_cross_entropy, x, w, b, t, weight_layout=layout, reduction=reduction,
                              label_smoothing=ls, chunk_size=chunk, grad=grad)
    wa = np.abs(w.astype(np.float64)) if layout == "io" else np.abs(w.astype(np.float64)).T
    zmax = (np.abs(x.astype(np.float64)) @ wa + np.abs(b)).max(-1)
    row_scale = 2.0 * (zmax + math.log(c) + 1.0)  # |logits| and log-sum-exp
    check(ln, lc, dtype, row_scale if reduction == "none" else row_scale.sum(), what="dense_ce loss")
    for what, a, r in zip(("dx", "dw", "db"), gn, gc):
        check(a, r, dtype, np.abs(r.astype(np.float64)).max(), what=f"dense_ce {what}")
