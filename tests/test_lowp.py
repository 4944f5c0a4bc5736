"""float16 and bfloat16 through the public API, on every backend (issue 18).

Contract (docs/lowp.md): inputs widened to float32, products and reductions accumulated in
float32 (or wider), every output rounded once, round-to-nearest-even, to the input's
dtype; float16 overflow gives inf, as torch.

Every reference is float64, computed from the SAME ROUNDED 16-bit inputs (a 16-bit value
is exactly a float64), so the difference measures only the kernel's float32 arithmetic and
its one rounding. Tolerances are torch's own for these dtypes (torch.testing): float16
rtol 1e-3 (unit roundoff 2^-11 = 4.9e-4: one rounding plus float32 error fits, a second
rounding of an intermediate or a wrong term does not), bfloat16 rtol 1.6e-2 (2^-8 = 3.9e-3
per rounding). Where operands cancel, the band is relative to the operands (the scales of
tests/_ref.py). A backward that reads the saved output y (or a Dense layer's z) is
checked against the derivative at that rounded saved value: it is an input of the
backward.

Suite time: every op on the C++ backend in both dtypes; on the other backends (numba, the
CUDA kernels on the CPU emulator) a rotating third of the op x dtype cross in the quick
tier and the rest marked slow (--full runs it all).
"""
import math

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastnn
from _ref import activation_bands, activation_ref, dense_ref, loss_ref, loss_scale
from conftest import BACKENDS, K, Tol, assert_close, call_unmodified, param_id
from test_activations import CASES as ACT_CASES
from test_dense_ce import extras_ref
from test_losses import cases as loss_cases, make_inputs

F16, BF16 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
LOWP = [F16, BF16]
LOWP_IDS = {F16: "f16", BF16: "bf16"}
# torch.testing's defaults for these dtypes (rtol, atol)
TOL16 = {F16: Tol(rtol=1e-3, atol=1e-5), BF16: Tol(rtol=1.6e-2, atol=1e-5)}
# the smallest magnitude that rounds to inf: (2 - 2^-(p)) 2^emax, p = fraction bits + 1
OVERFLOW = {F16: (2 - 2.0 ** -11) * 2.0 ** 15, BF16: (2 - 2.0 ** -8) * 2.0 ** 127}


def cross(items, ids):
    """pytest params (backend, dtype, *item): every item x dtype on cpp; on the other
    backends a rotating third of them in the quick tier, the rest marked slow."""
    out = []
    for bi, be in enumerate(BACKENDS):
        for di, dt in enumerate(LOWP):
            for i, (item, iid) in enumerate(zip(items, ids)):
                quick = be == "cpp" or (i + di + bi) % 3 == 0
                out.append(pytest.param(be, dt, *item, id=f"{be}-{LOWP_IDS[dt]}-{iid}",
                                        marks=() if quick else (pytest.mark.slow,)))
    return out


def in_range(ref, dtype):
    """The float64 reference with what overflows dtype made +-inf (as the kernel's, and
    torch's, rounding does)."""
    ref = np.asarray(ref, np.float64)
    big = np.abs(ref) >= OVERFLOW[dtype]
    if not big.any():
        return ref
    with np.errstate(invalid="ignore"):
        return np.where(big, np.sign(ref) * np.inf, ref)


def rounded(a, dtype):
    return np.asarray(a, np.float64).astype(dtype)


# the smallest subnormal: below it no result can be closer than one rounding
TINY = {F16: 2.0 ** -24, BF16: 2.0 ** -133}


def check(got, ref, dtype, what, normwise=False, **bands):
    """assert_close at TOL16; normwise: atol relative to the largest |ref| (gradients of
    losses and products); atol never below one subnormal step of the dtype."""
    assert isinstance(got, np.ndarray) and got.dtype == dtype, f"{what}: got {getattr(got, 'dtype', type(got))}"
    ref = in_range(ref, dtype)
    tol = TOL16[dtype]
    atol = tol.atol
    finite = np.isfinite(ref)
    if normwise and finite.any():
        atol = tol.atol * float(np.max(np.abs(ref[finite])))
    assert_close(got, ref, dtype, tol=Tol(tol.rtol, max(atol, TINY[dtype])), what=what, **bands)


# ---- the Numba backend's own conversions, exhaustively ----------------------------------

def test_numba_conversions_match_numpy_and_ml_dtypes():
    """fastnn/_backends/_numba_half.py against numpy's float16 and ml_dtypes' bfloat16:
    every 16-bit pattern widened, and float32 patterns (random, specials, ties, the
    overflow and subnormal boundaries) and float64 values rounded."""
    pytest.importorskip("numba")
    from fastnn._backends import _numba_half as H

    rng = np.random.default_rng(18)
    pats = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    f32 = np.concatenate([rng.integers(0, 1 << 32, 400_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                          np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.996, 65520, 2 ** -24,
                                    2 ** -25, -(2 ** -25) * 1.5, 3 * 2 ** -26, 1 + 2 ** -11, 1 + 3 * 2 ** -11,
                                    1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.3895314e38, 1e-45], np.float32)])
    f64 = rng.standard_normal(100_000) * 10.0 ** rng.integers(-45, 40, 100_000)
    for dt in LOWP:
        widened = np.empty((1, pats.size), np.float32)
        H.widen_into(H.bits(pats.view(dt)).reshape(1, -1), widened)
        want = pats.view(dt).astype(np.float32)
        np.testing.assert_array_equal(widened[0].view(np.uint32)[~np.isnan(want)],
                                      want.view(np.uint32)[~np.isnan(want)], err_msg=f"{dt} widen")
        assert np.isnan(widened[0][np.isnan(want)]).all()
        for src in (f32, f64):
            got = np.empty(src.size, dt)
            H.narrow_into(src.reshape(1, -1), H.bits(got).reshape(1, -1))
            with np.errstate(over="ignore", invalid="ignore"):
                want = src.astype(dt)
            nan = np.isnan(src)
            np.testing.assert_array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan],
                                          err_msg=f"{dt} narrow from {src.dtype}")
            assert np.isnan(got[nan].astype(np.float32)).all()


# ---- activations ----------------------------------------------------------------------

def _act_input(name, params, dtype, rng):
    shape = (3, 5, 7) if "axis" in params else (1031,)
    x = rng.uniform(-6, 6, shape)
    if name == "exponential" and dtype == F16:
        x = x * 2.0  # up to e^12: past 65504, overflows to inf like torch
    return rounded(x, dtype)


def _saved_grad_ref(name, params, y, dy):
    """d(loss)/dx of the activations whose backward reads y, from the rounded saved y (the
    math, in float64): relu (torch defaults) y > 0, sigmoid y (1 - y), tanh 1 - y^2,
    exponential y; softmax y (dy - sum dy y), log_softmax dy - e^y sum dy."""
    y, dy = np.asarray(y, np.float64), np.asarray(dy, np.float64)
    ax = params.get("axis", -1)
    if name == "relu":
        return np.where(y > 0, dy, 0.0)
    if name == "sigmoid":
        return dy * y * (1 - y)
    if name == "tanh":
        return dy * (1 - y * y)
    if name == "exponential":
        return dy * y
    if name == "softmax":
        return y * (dy - np.sum(dy * y, ax, keepdims=True))
    if name == "log_softmax":
        return dy - np.exp(y) * np.sum(dy, ax, keepdims=True)
    raise KeyError(name)


ACT_ITEMS = [c.values for c in ACT_CASES]
ACT_IDS = [c.id for c in ACT_CASES]


@pytest.mark.parametrize("backend, dtype, name, params", cross(ACT_ITEMS, ACT_IDS))
def test_activation(backend, dtype, name, params):
    rng = np.random.default_rng(abs(hash((name, param_id(params), LOWP_IDS[dtype]))) % 2 ** 32)
    x = _act_input(name, params, dtype, rng)
    dy = rounded(rng.standard_normal(x.shape), dtype)
    with fastnn.use_backend(backend):
        y = K.activation_forward(x, name, **params)
        y_ref, dx_ref = activation_ref(name, params, x, dy)
        check(y, y_ref, dtype, f"{name}{params} forward", **activation_bands(name, params, x, y_ref))
        saved = fastnn.saved_for_backward(name, **params)
        dx = K.activation_backward(dy, name, x=x, **params)  # from x (also allowed where y is saved)
        bands = activation_bands(name, params, x, y_ref, dy)
        check(dx, dx_ref, dtype, f"{name}{params} backward from x", **bands)
        if "y" in saved:
            dxy = K.activation_backward(dy, name, y=y, **params)
            ref = _saved_grad_ref(name, params, y, dy)
            scale = None
            if name in ("softmax", "log_softmax"):
                s = np.asarray(y, np.float64) if name == "softmax" else np.exp(np.asarray(y, np.float64))
                a = np.abs(np.asarray(dy, np.float64))
                scale = a * (1 + s) + s * np.sum(a * (1 + s), params.get("axis", -1), keepdims=True)
            check(dxy, ref, dtype, f"{name}{params} backward from the saved y", scale=scale)


# ---- losses -----------------------------------------------------------------------------

LOSS_CASES = loss_cases()
LOSS_ITEMS = [c.values for c in LOSS_CASES]
LOSS_IDS = [c.id for c in LOSS_CASES]
REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("backend, dtype, name, params, kind", cross(LOSS_ITEMS, LOSS_IDS))
def test_loss(backend, dtype, name, params, kind):
    """Forward (every reduction) and backward (the default grad for one reduction, a
    16-bit upstream array for "none"), and d/dtarget where torch has it, from the same
    rounded pred, target, weights."""
    rng = np.random.default_rng(abs(hash((name, param_id(params), kind, LOWP_IDS[dtype]))) % 2 ** 32)
    shape = (33, 7) if name in ("cross_entropy", "nll") else (257,)
    pred, target, p = make_inputs(name, params, kind, shape, dtype, rng)
    with fastnn.use_backend(backend):
        for red in REDUCTIONS:
            ref = loss_ref(name, pred, target, red, p)[0]
            got = K.loss_forward(pred, target, name, reduction=red, **p)
            check(got, ref, dtype, f"{name}{params} {red}", scale=loss_scale(name, pred, target, red, p))
        red = REDUCTIONS[len(name) % 2]  # mean or sum, by name
        _, dref, _ = loss_ref(name, pred, target, red, p)
        check(K.loss_backward(pred, target, name, reduction=red, **p), dref, dtype,
              f"{name}{params} {red} d/dpred", normwise=True)
        none_shape = pred.shape[:-1] if name in ("cross_entropy", "nll") else pred.shape
        g = rounded(rng.standard_normal(none_shape), dtype)
        want_t = kind in ("float", "prob") and name not in ("hinge", "squared_hinge", "log_cosh", "nll")
        _, dref, tref = loss_ref(name, pred, target, "none", p, grad=g, target_grad=want_t)
        out = K.loss_backward(pred, target, name, reduction="none", grad=g, need_target_grad=want_t, **p)
        dpred = out[0] if want_t else out
        check(dpred, dref, dtype, f"{name}{params} none d/dpred", normwise=True)
        if want_t:
            check(out[1], tref, dtype, f"{name}{params} none d/dtarget", normwise=True)


# ---- Dense --------------------------------------------------------------------------------

DENSE_ITEMS = [(act, lay, bias) for act, lay, bias in
               [("linear", "oi", True), ("relu", "io", True), ("gelu", "oi", False), ("sigmoid", "io", True),
                ("tanh", "oi", True), ("softmax", "io", False), ("silu", "oi", True), ("log_softmax", "oi", True)]]
DENSE_IDS = [f"{a}-{lay}-{'b' if b else 'nob'}" for a, lay, b in DENSE_ITEMS]


def _dz_from_saved(act, z, y, dy):
    """dL/dz from the saved rounded z (or y where the activation's backward reads y)."""
    if "y" in fastnn.saved_for_backward(act):
        return _saved_grad_ref(act, {}, y, dy)
    if act == "linear":
        return np.asarray(dy, np.float64)
    return activation_ref(act, {}, z, dy)[1]


@pytest.mark.parametrize("backend, dtype, act, layout, bias", cross(DENSE_ITEMS, DENSE_IDS))
def test_dense(backend, dtype, act, layout, bias):
    rng = np.random.default_rng(abs(hash((act, layout, bias, LOWP_IDS[dtype]))) % 2 ** 32)
    m, k, n = 37, 300, 45
    x = rounded(rng.standard_normal((m, k)), dtype)
    w = rounded(rng.standard_normal((n, k) if layout == "oi" else (k, n)) / math.sqrt(k), dtype)
    b = rounded(rng.standard_normal(n), dtype) if bias else None
    dy = rounded(rng.standard_normal((m, n)), dtype)
    ref = dense_ref(x, w, b, layout, act, {})
    w_oi = np.asarray(w, np.float64) if layout == "oi" else np.asarray(w, np.float64).T
    opscale = np.abs(np.asarray(x, np.float64)) @ np.abs(w_oi).T  # what float32 sums round
    with fastnn.use_backend(backend):
        y, z = K.dense_forward(x, w, b, act, weight_layout=layout, keep_z=True)
        check(z, ref["z"], dtype, f"dense {act} z", opscale=opscale)
        bands = activation_bands(act, {}, ref["z"], ref["y"])
        bands["opscale"] = bands.get("opscale", 0) + opscale
        check(y, ref["y"], dtype, f"dense {act} y", **bands)
        dx, dw, db = K.dense_backward(dy, x, w, y, z, act, weight_layout=layout)
    dz = _dz_from_saved(act, z, y, dy)
    adz = np.abs(dz)
    check(dx, dz @ w_oi, dtype, f"dense {act} dx", scale=adz @ np.abs(w_oi))
    dw_ref, dw_scale = dz.T @ np.asarray(x, np.float64), adz.T @ np.abs(np.asarray(x, np.float64))
    if layout == "io":
        dw_ref, dw_scale = dw_ref.T, dw_scale.T
    check(dw, dw_ref, dtype, f"dense {act} dw", scale=dw_scale)
    check(db, dz.sum(0), dtype, f"dense {act} db", scale=adz.sum(0))


# ---- dense_cross_entropy --------------------------------------------------------------------

CE_ITEMS = [  # (layout, reduction, class weights, row weights, softcap, z-loss, smoothing, chunk)
    ("oi", "mean", False, False, None, 0.0, 0.0, None), ("io", "none", False, False, None, 0.0, 0.1, 7),
    ("oi", "sum", True, True, 3.0, 1e-3, 0.2, 16), ("io", "mean", True, False, None, 1e-2, 0.0, 5),
]
CE_IDS = [f"{c[0]}-{c[1]}-cw{int(c[2])}-rw{int(c[3])}-cap{c[4]}-z{c[5]}-ls{c[6]}-chunk{c[7]}" for c in CE_ITEMS]


@pytest.mark.parametrize("backend, dtype, layout, reduction, cw, rw, cap, z, ls, chunk", cross(CE_ITEMS, CE_IDS))
def test_dense_cross_entropy(backend, dtype, layout, reduction, cw, rw, cap, z, ls, chunk):
    rng = np.random.default_rng(abs(hash(CE_IDS[0] + str((layout, reduction, cw, LOWP_IDS[dtype])))) % 2 ** 32)
    n, h, c = 41, 96, 53
    x = rounded(rng.standard_normal((n, h)), dtype)
    w_oi = rounded(rng.standard_normal((c, h)) / math.sqrt(h), dtype)
    w = w_oi if layout == "oi" else np.ascontiguousarray(w_oi.T)
    b = rounded(rng.standard_normal(c) * 0.5, dtype)
    t = rng.integers(0, c, n)
    t[::9] = -100
    cwa = rounded(rng.uniform(0.5, 2.0, c), dtype) if cw else None
    rwa = rounded(rng.uniform(0.0, 2.0, n), dtype) if rw else None
    g = rounded(rng.standard_normal(n), dtype) if reduction == "none" else 1.0
    kw = dict(weight_layout=layout, reduction=reduction, label_smoothing=ls, class_weight=cwa, chunk_size=chunk,
              grad=g if reduction == "none" else None)
    extras = dict(row_weight=rwa, softcap=cap, lse_square_scale=z, return_lse=True)
    cupy = backend in ("cupy", "cupy_emu")  # class weights only there (as tests/test_dense_ce.py)
    with fastnn.use_backend(backend):
        if cupy and (rw or cap or z):
            with pytest.raises(ValueError, match="not available on the cupy backend"):
                K.dense_cross_entropy(x, w, b, t, **kw, **extras)
            return
        if cupy:
            (loss, (dx, dw, db)), lse = K.dense_cross_entropy(x, w, b, t, **kw), None
        else:
            loss, (dx, dw, db), lse = K.dense_cross_entropy(x, w, b, t, **kw, **extras)
    ref = extras_ref(x, w_oi, b, t, reduction, ls, g, cwa, rwa, cap, z)
    L = np.asarray(x, np.float64) @ np.asarray(w_oi, np.float64).T
    lscale = np.max(np.abs(L)) + np.abs(ref[4])  # lse - logit cancels: relative to the logits
    what = f"dense_cross_entropy {layout} {reduction}"
    check(loss, ref[0], dtype, what + " loss",
          scale=lscale * (1 + (np.max(rwa) if rw else 0)) * (1 if reduction != "sum" else n))
    if lse is not None:
        check(lse, ref[4], dtype, what + " lse", scale=np.max(np.abs(L)))
    dw_ref = ref[2] if layout == "oi" else ref[2].T
    for got, r, nm in ((dx, ref[1], "dx"), (dw, dw_ref, "dw"), (db, ref[3], "db")):
        check(got, r, dtype, f"{what} {nm}", normwise=True)


# ---- cpp vs numba ---------------------------------------------------------------------------

def _ulps(a, b, dtype):
    """|a - b| in units of the dtype's spacing at max(|a|, |b|), floored at 2^-10 of the
    array's largest magnitude (finite entries): results tiny by cancellation (tanh' =
    1 - tanh^2 near +-1) carry float32's error relative to their operands, not to
    themselves."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mant = 10 if dtype == F16 else 7
    fin = np.isfinite(a64)
    floor = max(2.0 ** (-14 if dtype == F16 else -126), 2.0 ** -10 * float(np.max(np.abs(a64[fin]), initial=0)))
    mag = np.maximum(np.maximum(np.abs(a64), np.abs(b64)), floor)
    return np.abs(a64 - b64) / 2.0 ** (np.floor(np.log2(mag)) - mant)


PARITY_ACTS = ["gelu", "silu", "sigmoid", "softplus", "elu", "tanh", "log_sigmoid", "mish", "softmax", "log_softmax"]


@pytest.mark.skipif(not {"cpp", "numba"} <= set(BACKENDS), reason="needs both CPU backends")
@pytest.mark.parametrize("dtype", LOWP, ids=LOWP_IDS.get)
def test_cpp_numba_parity(dtype):
    """The two independent CPU implementations (C++ SIMD + half.h, Numba + its own
    conversions) agree to 1 unit in the last place everywhere (see _ulps) and bit for bit
    almost everywhere (tanh' the least: 90%): both compute in float32 and round once."""
    rng = np.random.default_rng(7)
    x = rounded(rng.uniform(-8, 8, (64, 129)), dtype)
    dy = rounded(rng.standard_normal(x.shape), dtype)
    outs = {}
    for be in ("cpp", "numba"):
        with fastnn.use_backend(be):
            o = {}
            for a in PARITY_ACTS:
                o[a] = fastnn.activation_forward(x, a)
                o[a + "'"] = fastnn.activation_backward(dy, a, x=x)
            o["mse"] = fastnn.loss_forward(x, dy, "mse", reduction="none")
            o["ce"] = fastnn.loss_backward(x, rng.integers(0, 129, 64) * 0 + 3, "cross_entropy")
            o["dense"] = fastnn.dense_forward(x, x[:31], x[0, :31], "gelu")[0]
            outs[be] = o
    for key in outs["cpp"]:
        a, b = outs["cpp"][key], outs["numba"][key]
        assert a.dtype == b.dtype == dtype, key
        assert np.array_equal(np.isnan(a.astype(np.float32)), np.isnan(b.astype(np.float32))), key
        u = _ulps(a, b, dtype)
        assert np.nanmax(u) <= 1.0, f"{key}: cpp and numba differ by {np.nanmax(u)} ulps"
        assert np.mean(u == 0) >= 0.85, f"{key}: only {np.mean(u == 0):.1%} bit-equal"


# ---- special values, float16 overflow -----------------------------------------------------

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.5, -3.0]


def _specials(dtype):
    tiny = 2.0 ** -24 if dtype == F16 else 2.0 ** -133  # the smallest subnormal
    big = 65504.0 if dtype == F16 else 3.3895314e38     # the largest finite
    return rounded(SPECIAL + [tiny, -tiny, 3 * tiny, big, -big], dtype)


SPECIAL_ACTS = ["relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softplus", "silu", "elu", "hard_tanh",
                "relu_squared", "exponential", "linear"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", LOWP, ids=LOWP_IDS.get)
def test_special_values_like_torch(backend, dtype):
    """inf, NaN, -0, subnormals and the largest finite values through the activations and
    mse: the float64 reference's values (NaN / inf where torch has them), zeros of the sign
    float32 gives them, mse as torch's own 16-bit op."""
    x = _specials(dtype)
    tdt = torch.float16 if dtype == F16 else torch.bfloat16
    with fastnn.use_backend(backend):
        for a in SPECIAL_ACTS:
            y = K.activation_forward(x, a)
            ref, _ = activation_ref(a, {}, x)
            check(y, ref, dtype, f"{a} specials")
            y32 = fastnn.activation_forward(x.astype(np.float32), a)  # -0 as in float32
            zero = y32 == 0
            np.testing.assert_array_equal(np.signbit(y.astype(np.float32))[zero], np.signbit(y32)[zero],
                                          err_msg=f"{a}: sign of zero (as float32)")
        mse = K.loss_forward(x, np.zeros_like(x), "mse", reduction="none")
        tmse = F.mse_loss(torch.from_numpy(x.astype(np.float32)).to(tdt), torch.zeros(x.size, dtype=tdt),
                          reduction="none").float().numpy()
        np.testing.assert_array_equal(mse.astype(np.float32), tmse, err_msg="mse of specials vs torch")


@pytest.mark.parametrize("backend", BACKENDS)
def test_float16_overflow_gives_inf(backend):
    """Results past 65504 (from 65520 on) are inf in float16, as torch: an activation, a
    Dense product, a loss value and a reduced loss whose terms are finite."""
    with fastnn.use_backend(backend):
        x = np.array([11.0, 11.0859375, 11.1015625, -20.0], np.float16)  # e^x: 59874, 65249 (finite), 66275 (inf)
        y = K.activation_forward(x, "exponential")
        t = torch.exp(torch.tensor(x.astype(np.float32)).half()).float().numpy()
        np.testing.assert_array_equal(y.astype(np.float32), t)
        assert np.isinf(y[2]) and np.isfinite(y[1])
        xd = np.full((2, 4), 200.0, np.float16)
        wd = np.full((3, 4), 100.0, np.float16)  # 4 * 200 * 100 = 80000: inf
        yd, _ = K.dense_forward(xd, wd, None, "relu")
        assert np.isinf(yd).all() and (yd > 0).all()
        p = np.array([256.0, 10.0], np.float16)  # 65536: inf
        none = K.loss_forward(p, np.zeros_like(p), "mse", reduction="none")
        assert np.isinf(none[0]) and none[1] == 100
        p = np.full(4, 200.0, np.float16)  # each 40000 (finite), the sum 160000: inf, the mean 40000
        assert np.isinf(K.loss_forward(p, np.zeros_like(p), "mse", reduction="sum"))
        assert K.loss_forward(p, np.zeros_like(p), "mse", reduction="mean") == 40000


# ---- dtypes in, dtypes out, mixing refused -------------------------------------------------

@pytest.mark.parametrize("dtype", LOWP, ids=LOWP_IDS.get)
def test_outputs_keep_the_dtype_and_inputs_are_unmodified(dtype):
    rng = np.random.default_rng(3)
    x, w, b = (rounded(rng.standard_normal(s), dtype) for s in ((5, 8), (3, 8), (3,)))
    t = rng.integers(0, 3, 5)
    for be in BACKENDS:
        with fastnn.use_backend(be):
            outs = [call_unmodified(fastnn.activation_forward, x, "gelu"),
                    call_unmodified(fastnn.activation_backward, x, "gelu", x=x),
                    call_unmodified(fastnn.loss_forward, x, x, "huber"),
                    call_unmodified(fastnn.loss_forward, x, t, "cross_entropy", reduction="none"),
                    *call_unmodified(fastnn.dense_forward, x, w, b, "tanh")[:1],
                    *call_unmodified(fastnn.dense_backward, x[:, :3], x, w, None, x[:, :3], "gelu"),
                    call_unmodified(fastnn.dense_cross_entropy, x, w, b, t)[0]]
            for o in outs:
                assert o.dtype == dtype, (be, o.dtype)


MIXED = [
    ("activation_backward", lambda a, o: fastnn.activation_backward(a, "gelu", x=o), "x is"),
    ("dense_forward w", lambda a, o: fastnn.dense_forward(a, o[:3], None), "w is"),
    ("dense_forward b", lambda a, o: fastnn.dense_forward(a, a[:3], o[:3, 0]), "b is"),
    ("loss_forward", lambda a, o: fastnn.loss_forward(a, o, "mse"), "target is"),
    ("loss weight", lambda a, o: fastnn.loss_forward(a, np.zeros(4, np.int64), "cross_entropy", weight=o[0]),
     "weight is"),
    ("loss grad", lambda a, o: fastnn.loss_backward(a, a, "mse", reduction="none", grad=o), "grad has dtype"),
    ("ce class_weight", lambda a, o: fastnn.dense_cross_entropy(a, a[:3], None, np.zeros(4, np.int64),
                                                                class_weight=o[0, :3]), "class_weight has dtype"),
]


PAIRS = [(F16, BF16), (BF16, F16), (F16, np.dtype(np.float32)), (BF16, np.dtype(np.float32))]


@pytest.mark.parametrize("case", MIXED, ids=[m[0] for m in MIXED])
@pytest.mark.parametrize("dtype, other", PAIRS, ids=["f16-bf16", "bf16-f16", "f16-f32", "bf16-f32"])
def test_mixed_dtypes_raise_naming_the_argument(dtype, other, case):
    a = rounded(np.ones((4, 4)), dtype)
    o = rounded(np.ones((4, 4)), other)
    with pytest.raises(TypeError, match=case[2]):
        case[1](a, o)
