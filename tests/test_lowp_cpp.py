"""The C++ backend's 16-bit machinery at every ISA level this CPU has (csrc/cpu/isa.h):

- the block conversions (csrc/cpu/convert.cpp, reached through _C._convert_block) bit for
  bit against numpy.float16 / ml_dtypes.bfloat16: all 65536 halves widened, ~1.4M float32
  patterns narrowed (specials, subnormals, float16's 65504 / 65520 overflow boundary,
  bfloat16 ties), odd lengths for the vector tails; NaN -> the quiet NaN of half.h (sign
  kept), every level equal to the baseline's bits;
- a few activation and loss kernels on float16 / bfloat16 through fastnn._C against float64
  numpy computed from the same rounded inputs. Each output is the float32 computation
  rounded once, so it lies within half an ulp of the exact value (plus float32's own error,
  ~1e-6 of the inputs' scale): a bound tighter than torch's per-dtype tolerances, which
  catches a double rounding as well as a wrong formula.

The full op x backend x dtype matrix through the public API is tests/test_lowp.py's.
"""
import math

import numpy as np
import pytest

from fastnn import _checks
from fastnn._backends import cpp

ml_dtypes = pytest.importorskip("ml_dtypes")
_C = cpp._C
pytestmark = pytest.mark.skipif(_C is None, reason="the C++ backend is not built")

BF16, F16 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)
ORDER = ["baseline", "avx2", "avx512"]
LEVELS = ORDER[:ORDER.index(_C._cpu_isa()) + 1] if _C is not None else []
# half an ulp relative to the value: 8 significant bits (bfloat16), 11 (float16)
HALF_ULP = {BF16: 2.0 ** -8, F16: 2.0 ** -11}


@pytest.fixture(params=LEVELS)
def level(request):
    prev = _C._isa()
    assert _C._set_isa(request.param) == request.param
    yield request.param
    _C._set_isa(prev)


# ---- conversions ------------------------------------------------------------------------

def _float_patterns():
    rng = np.random.default_rng(18)
    special = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF,
               1, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF,
               0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0xC77FF000,  # 65504, 65520 and around
               0x33000000, 0x33000001, 0x337FFFFF, 0x33800000, 0x387FC000, 0x38800000]  # f16 subnormal edges
    halves = np.arange(1 << 16, dtype=np.uint32) << 16
    parts = [np.array(special, np.uint32),
             rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32),
             # exponents around float16's range, mantissas random
             (rng.integers(0, 1 << 23, 1 << 17).astype(np.uint32)
              | (rng.integers(98, 146, 1 << 17).astype(np.uint32) << 23)
              | (rng.integers(0, 2, 1 << 17).astype(np.uint32) << 31)),
             halves, halves | 0x8000, halves | 0x7FFF, halves | 0x8001, halves | 0x18000]  # bfloat16 ties and near
    return np.concatenate(parts).view(np.float32)


FLOATS = _float_patterns()


def _expected_narrow(f, dt):
    with np.errstate(all="ignore"):
        bits = f.astype(dt).view(np.uint16).copy()
    nan = np.isnan(f)
    u = f.view(np.uint32)[nan]
    # NaN: sign kept, quiet; half.h drops float16's payload and keeps bfloat16's top bits
    bits[nan] = ((u >> 16) & 0x8000) | 0x7E00 if dt == F16 else (u >> 16) | 0x40
    return bits


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
def test_widen_all_halves(level, dt):
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dt)
    want = h.astype(np.float32).view(np.uint32).copy()
    if dt == F16:  # a signaling float16 NaN widens to the quiet NaN (half.h, vcvtph2ps); numpy keeps it signaling
        want[np.isnan(h.astype(np.float32))] |= 0x00400000
    for n in (h.size, 1, 7, 8, 9, 15, 16, 17, 33):
        src = h[-n:].copy()
        out = np.full(n, np.nan, np.float32)
        _C._convert_block(src, out)
        np.testing.assert_array_equal(out.view(np.uint32), want[-n:])
        np.testing.assert_array_equal(src.view(np.uint16), h[-n:].view(np.uint16))  # input untouched


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
def test_narrow_float32_patterns(level, dt):
    want = _expected_narrow(FLOATS, dt)
    for lo, n in ((0, FLOATS.size), (3, 1), (5, 7), (11, 15), (0, 17), (1, 31)):
        src = FLOATS[lo:lo + n].copy()
        out = np.zeros(n, dt)
        _C._convert_block(src, out)
        got = out.view(np.uint16)
        bad = np.nonzero(got != want[lo:lo + n])[0]
        assert bad.size == 0, [(hex(src.view(np.uint32)[i]), hex(got[i]), hex(want[lo + i])) for i in bad[:5]]
        np.testing.assert_array_equal(src.view(np.uint32), FLOATS[lo:lo + n].view(np.uint32))


def test_convert_rejects_bad_arguments():
    with pytest.raises(TypeError, match="float32 -> float16 / bfloat16"):
        _C._convert_block(np.zeros(4, np.float64), np.zeros(4, np.float16))
    with pytest.raises(ValueError, match="one size"):
        _C._convert_block(np.zeros(4, np.float32), np.zeros(3, BF16))


# ---- kernels ----------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def _sig(v):
    return 0.5 * (1 + np.tanh(0.5 * v))


def _phi(v):  # standard normal cdf and pdf
    return 0.5 * (1 + _erf(v / math.sqrt(2))), np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)


ACTS = {  # name: (forward, derivative) in float64
    "relu": (lambda v: np.maximum(v, 0), lambda v: (v > 0).astype(float)),
    "tanh": (np.tanh, lambda v: 1 - np.tanh(v) ** 2),
    "silu": (lambda v: v * _sig(v), lambda v: _sig(v) * (1 + v * (1 - _sig(v)))),
    "gelu": (lambda v: v * _phi(v)[0], lambda v: _phi(v)[0] + v * _phi(v)[1]),
    "elu": (lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))), lambda v: np.where(v > 0, 1.0, np.exp(np.minimum(v, 0)))),
}


def _assert_rounded_once(got, ref, dt, scale=1.0):
    """got (16-bit) is ref (float64) rounded, to half an ulp plus float32's error."""
    g = got.astype(np.float64)
    tol = HALF_ULP[dt] * np.abs(ref) * 1.02 + 1e-6 * scale + (2.0 ** -25 if dt == F16 else 0.0)
    bad = np.nonzero(~(np.abs(g - ref) <= tol))
    assert bad[0].size == 0, (g[bad][:5], ref[bad][:5])


def _inputs(dt, shape, seed, scale=3.0):
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dt)
    return x, x.astype(np.float64)


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_rounded_once(level, dt, name):
    fwd, der = ACTS[name]
    x, x64 = _inputs(dt, (7, 1031), 1)
    dy, dy64 = _inputs(dt, x.shape, 2, 1.0)
    x0, dy0 = x.copy(), dy.copy()
    s = _checks.activation_spec("test", name, {})
    y = np.empty_like(x)
    _C.act_forward(x, y, s.code, s.numeric, x.shape[-1])
    assert y.dtype == dt
    _assert_rounded_once(y, fwd(x64), dt, 3.0)
    dx = np.empty_like(x)
    _C.act_backward(x, dy, dx, s.code, s.numeric, x.shape[-1], False)
    _assert_rounded_once(dx, dy64 * der(x64), dt, 3.0)
    if name in ("relu", "tanh"):  # backward from the (rounded) output
        y64 = y.astype(np.float64)
        _C.act_backward(y, dy, dx, s.code, s.numeric, x.shape[-1], True)
        _assert_rounded_once(dx, dy64 * ((y64 > 0) if name == "relu" else 1 - y64 ** 2), dt, 3.0)
    assert (x.view(np.uint16) == x0.view(np.uint16)).all() and (dy.view(np.uint16) == dy0.view(np.uint16)).all()


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("cols", [1, 33, 2500])  # 2500: one row is more than a block
def test_softmax_rows_rounded_once(level, dt, cols):
    x, x64 = _inputs(dt, (5, cols), 3)
    dy, dy64 = _inputs(dt, x.shape, 4, 1.0)
    lse = np.log(np.exp(x64 - x64.max(-1, keepdims=True)).sum(-1, keepdims=True)) + x64.max(-1, keepdims=True)
    for name, ref in (("softmax", np.exp(x64 - lse)), ("log_softmax", x64 - lse)):
        s = _checks.activation_spec("test", name, {})
        y = np.empty_like(x)
        _C.act_forward(x, y, s.code, s.numeric, cols)
        _assert_rounded_once(y, ref, dt, 1.0 if name == "softmax" else 10.0)
        dx = np.empty_like(x)
        _C.act_backward(y, dy, dx, s.code, s.numeric, cols, True)  # from the rounded output
        y64 = y.astype(np.float64)
        if name == "softmax":
            want = y64 * (dy64 - (dy64 * y64).sum(-1, keepdims=True))
        else:
            want = dy64 - np.exp(y64) * dy64.sum(-1, keepdims=True)
        _assert_rounded_once(dx, want, dt, np.abs(dy64).sum(-1, keepdims=True).max())


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
def test_elementwise_losses_rounded_once(level, dt):
    pred, p64 = _inputs(dt, (9, 2053), 5)
    target, t64 = _inputs(dt, pred.shape, 6, 1.0)
    t01 = np.abs(target) / (1 + np.abs(target))
    t01 = t01.astype(dt)
    u64 = t01.astype(np.float64)
    pw = np.linspace(0.5, 2, pred.shape[-1]).astype(dt)
    pw64 = pw.astype(np.float64)
    grad, g64 = _inputs(dt, pred.shape, 7, 1.0)
    cases = [  # name, params, target, value, d/dpred, d/dtarget
        ("mse", {}, target, (p64 - t64) ** 2, 2 * (p64 - t64), -2 * (p64 - t64)),
        ("bce_with_logits", {"pos_weight": pw}, t01,
         -(pw64 * u64 * np.log(_sig(p64)) + (1 - u64) * np.log(_sig(-p64))),
         _sig(p64) * (pw64 * u64 + 1 - u64) - pw64 * u64, None),
    ]
    for name, params, t, val, dp, dt_ in cases:
        s = _checks.loss_spec("test", name, params)
        w = params.get("pos_weight")
        out = np.empty_like(pred)
        total = _C.loss_forward(s.code, s.numeric, pred, t, w, out)
        _assert_rounded_once(out, val, dt, 10.0)
        assert total == pytest.approx(val.sum(), rel=1e-5)
        dpred, dtarget = np.empty_like(pred), (np.empty_like(pred) if dt_ is not None else None)
        _C.loss_backward(s.code, s.numeric, pred, t, w, grad, 0.0, dpred, dtarget)
        _assert_rounded_once(dpred, g64 * dp, dt, 10.0)
        if dt_ is not None:
            _assert_rounded_once(dtarget, g64 * dt_, dt, 10.0)
        _C.loss_backward(s.code, s.numeric, pred, t, w, None, 0.25, dpred, None)
        _assert_rounded_once(dpred, 0.25 * dp, dt, 10.0)


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("cols", [3, 1000, 3001])
def test_class_losses_rounded_once(level, dt, cols):
    rows = 37
    pred, x64 = _inputs(dt, (rows, cols), 8)
    rng = np.random.default_rng(9)
    idx = rng.integers(0, cols, rows)
    idx[3] = -100  # ignored
    weight = rng.uniform(0.5, 2, cols).astype(dt)
    w64 = weight.astype(np.float64)
    pred0 = pred.copy()
    ls = 0.1
    lse = np.log(np.exp(x64 - x64.max(-1, keepdims=True)).sum(-1)) + x64.max(-1)
    keep = idx != -100
    yi = np.where(keep, idx, 0)
    r = np.arange(rows)
    # cross_entropy, index targets, class weights, label smoothing
    val = (1 - ls) * w64[yi] * (lse - x64[r, yi]) + ls / cols * (w64 * (lse[:, None] - x64)).sum(-1)
    val = np.where(keep, val, 0.0)
    s = _checks.loss_spec("test", "cross_entropy", {"label_smoothing": ls})
    out = np.empty(rows, dt)
    total = _C.loss_forward(s.code, s.numeric, pred, idx, weight, out)
    _assert_rounded_once(out, val, dt, 10.0)
    assert total == pytest.approx(val.sum(), rel=1e-5)
    p = np.exp(x64 - lse[:, None])
    grad = np.random.default_rng(10).uniform(0.5, 1.5, rows).astype(dt)
    g64 = grad.astype(np.float64)[:, None]
    k1 = g64 * (1 - ls) * w64[yi][:, None]
    want = k1 * p + g64 * ls / cols * (w64.sum() * p - w64)
    want[r, yi] -= k1[:, 0]
    want[~keep] = 0
    dpred = np.empty_like(pred)
    _C.loss_backward(s.code, s.numeric, pred, idx, weight, grad, 0.0, dpred, None)
    _assert_rounded_once(dpred, want, dt, 1.0)
    # nll on the same values as log-probabilities
    s = _checks.loss_spec("test", "nll", {})
    total = _C.loss_forward(s.code, s.numeric, pred, idx, None, out)
    _assert_rounded_once(out, np.where(keep, -x64[r, yi], 0.0), dt, 1.0)
    # probability targets, with the target's gradient
    t = rng.uniform(0, 1, (rows, cols))
    t = (t / t.sum(-1, keepdims=True)).astype(dt)
    t64 = t.astype(np.float64)
    s = _checks.loss_spec("test", "cross_entropy", {})
    total = _C.loss_forward(s.code, s.numeric, pred, t, None, out)
    val = -(t64 * (x64 - lse[:, None])).sum(-1)
    _assert_rounded_once(out, val, dt, 10.0)
    assert total == pytest.approx(val.sum(), rel=1e-5)
    dtarget = np.empty_like(pred)
    _C.loss_backward(s.code, s.numeric, pred, t, None, None, 0.5, dpred, dtarget)
    _assert_rounded_once(dpred, 0.5 * (p * t64.sum(-1, keepdims=True) - t64), dt, 1.0)
    _assert_rounded_once(dtarget, -0.5 * (x64 - lse[:, None]), dt, 10.0)
    assert (pred.view(np.uint16) == pred0.view(np.uint16)).all()


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
def test_float16_overflow_and_specials(dt):
    with np.errstate(over="ignore"):  # -70000 is -inf in float16
        x = np.array([60000, 65504, -70000, np.inf, -np.inf, np.nan, -0.0, 0.0], np.float32).astype(dt)
    s = _checks.activation_spec("test", "relu", {})
    y = np.empty_like(x)
    _C.act_forward(x, y, s.code, s.numeric, x.size)
    want = np.maximum(x.astype(np.float32), 0).astype(dt)
    np.testing.assert_array_equal(y.view(np.uint16)[:5], want.view(np.uint16)[:5])
    assert np.isnan(y[5].astype(np.float32))
    # mse of 300 squared: 90000 overflows float16 to inf, not bfloat16
    p = np.array([300.0], np.float32).astype(dt)
    out = np.empty_like(p)
    s = _checks.loss_spec("test", "mse", {})
    total = _C.loss_forward(s.code, s.numeric, p, np.zeros_like(p), None, out)
    assert total == 90000.0
    assert (out.astype(np.float32)[0] == np.inf) == (dt == F16)


def test_dtype_errors():
    s = _checks.activation_spec("test", "relu", {})
    with pytest.raises(TypeError, match="expected float16, bfloat16, float32 or float64 data, got int32"):
        _C.act_forward(np.zeros(3, np.int32), np.zeros(3, np.int32), s.code, s.numeric, 3)
    with pytest.raises(TypeError, match="y has dtype float16, expected bfloat16"):
        _C.act_forward(np.zeros(3, BF16), np.zeros(3, F16), s.code, s.numeric, 3)


# ---- the contract, bit for bit: a 16-bit kernel is the float32 kernel rounded once --------

def _with_specials(x):
    sp = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-42, 7e4, -7e4, 88.0, -100.0],
                  np.float32)
    x = x.copy()
    x[:: max(1, x.size // sp.size)][:sp.size] = sp[: len(x[:: max(1, x.size // sp.size)])]
    return x


def _assert_rounded_bits(got, f32, dt, what):
    """got (16-bit) has the bits of f32 narrowed once; NaN only as NaN (its sign is not a
    result: x86 propagates the first operand's NaN, and the compiler may swap the operands
    of a commutative operation between two copies of a kernel)."""
    want = _expected_narrow(np.ascontiguousarray(f32, np.float32).ravel(), dt).reshape(f32.shape)
    nan = np.isnan(f32)
    np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), nan, err_msg=what)
    np.testing.assert_array_equal(got.view(np.uint16)[~nan], want[~nan], err_msg=what)


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
def test_every_activation_is_the_float32_kernel_rounded_once(level, dt):
    """Every elementwise activation, forward and backward (from x; from y where it has one),
    at this ISA level: the 16-bit result's bits are those of the float32 kernel on the
    widened inputs, narrowed once (the fused register path and the block path alike)."""
    from fastnn import _registry as R
    rng = np.random.default_rng(11)
    with np.errstate(over="ignore"):  # +-7e4 is +-inf in float16
        x = _with_specials((rng.standard_normal(1031) * 4).astype(np.float32)).astype(dt)
    dy = (rng.standard_normal(x.size)).astype(np.float32).astype(dt)
    xw, dyw = x.astype(np.float32), dy.astype(np.float32)
    n = x.size
    specs = [_checks.activation_spec("t", a, {}) for a in R.ELEMENTWISE_ACTIVATIONS]
    specs += [_checks.activation_spec("t", "gelu", {"approximate": "tanh"}),
              _checks.activation_spec("t", "softplus", {"beta": 2.0})]
    with np.errstate(all="ignore"):
        for s in specs:
            y, y32 = np.empty_like(x), np.empty_like(xw)
            _C.act_forward(x, y, s.code, s.numeric, n)
            _C.act_forward(xw, y32, s.code, s.numeric, n)
            _assert_rounded_bits(y, y32, dt, f"{s.name} forward")
            dx, dx32 = np.empty_like(x), np.empty_like(xw)
            _C.act_backward(x, dy, dx, s.code, s.numeric, n, False)
            _C.act_backward(xw, dyw, dx32, s.code, s.numeric, n, False)
            _assert_rounded_bits(dx, dx32, dt, f"{s.name} backward")
            if s.from_y:
                yw = y.astype(np.float32)
                _C.act_backward(y, dy, dx, s.code, s.numeric, n, True)
                _C.act_backward(yw, dyw, dx32, s.code, s.numeric, n, True)
                _assert_rounded_bits(dx, dx32, dt, f"{s.name} from y")


@pytest.mark.parametrize("dt", [BF16, F16], ids=["bfloat16", "float16"])
def test_every_loss_is_the_float32_kernel_rounded_once(level, dt):
    from fastnn import _registry as R
    rng = np.random.default_rng(12)
    p = rng.uniform(0.02, 0.98, (7, 301)).astype(np.float32).astype(dt)
    t = rng.uniform(0.0, 1.0, p.shape).astype(np.float32).astype(dt)
    g = rng.standard_normal(p.shape).astype(np.float32).astype(dt)
    pw, tw, gw = p.astype(np.float32), t.astype(np.float32), g.astype(np.float32)
    for name in R.ELEMENTWISE_LOSSES:
        s = _checks.loss_spec("t", name, {})
        out, out32 = np.empty_like(p), np.empty_like(pw)
        total = _C.loss_forward(s.code, s.numeric, p, t, None, out)
        total32 = _C.loss_forward(s.code, s.numeric, pw, tw, None, out32)
        _assert_rounded_bits(out, out32, dt, name)
        assert total == pytest.approx(total32, rel=1e-6, abs=1e-6), name
        d, dt_, d32, dt32 = np.empty_like(p), np.empty_like(p), np.empty_like(pw), np.empty_like(pw)
        _C.loss_backward(s.code, s.numeric, p, t, None, g, 0.0, d, dt_)
        _C.loss_backward(s.code, s.numeric, pw, tw, None, gw, 0.0, d32, dt32)
        _assert_rounded_bits(d, d32, dt, name)
        _assert_rounded_bits(dt_, dt32, dt, name)
    idx = rng.integers(0, p.shape[1], p.shape[0])
    w = rng.uniform(0.5, 2, p.shape[1]).astype(np.float32).astype(dt)
    for name in ("cross_entropy", "nll"):
        s = _checks.loss_spec("t", name, {"label_smoothing": 0.2} if name == "cross_entropy" else {})
        out, out32 = np.empty(p.shape[0], dt), np.empty(p.shape[0], np.float32)
        _C.loss_forward(s.code, s.numeric, p, idx, w, out)
        _C.loss_forward(s.code, s.numeric, pw, idx, w.astype(np.float32), out32)
        _assert_rounded_bits(out, out32, dt, name)
        d, d32 = np.empty_like(p), np.empty_like(pw)
        _C.loss_backward(s.code, s.numeric, p, idx, w, None, 0.5, d, None)
        _C.loss_backward(s.code, s.numeric, pw, idx, w.astype(np.float32), None, 0.5, d32, None)
        _assert_rounded_bits(d, d32, dt, name)
