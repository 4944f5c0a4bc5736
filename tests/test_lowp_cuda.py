"""The CuPy backend's 16-bit path (float16, bfloat16) on the CPU emulator (tests/cuda_emu):
the CUDA kernels on __half / __nv_bfloat16 storage and the emulated cuBLAS GemmEx, called
through fastnn._backends.cupy's own functions (the emulator's copy of the module), checked
against float64 numpy computed from the same rounded 16-bit inputs.

Tolerances are torch's per dtype (relative 1.6e-2 bfloat16, 1e-3 float16) with an absolute
part scaled to the values that were summed; the elementwise kernels are held tighter, to
one unit in the last place of the storage type (float math, one rounding). A few ops per
family: the formulas are the float path's (scalar_math.h), tested on every backend by the
main suite; what is new here is the load-widen / compute-in-float / store-narrow path,
the float32 reductions, the fused epilogue's single rounding and the GemmEx products.
"""
import math
import sys

import ml_dtypes
import numpy as np
import pytest

import fastnn
from fastnn._backends import _cuda_src as S

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALF = [pytest.param(BF16, id="bf16"), pytest.param(F16, id="f16")]
RTOL = {BF16: 1.6e-2, F16: 1e-3}  # torch's (torch.testing) per-dtype relative tolerances
F64 = np.float64


@pytest.fixture(scope="module")
def be():
    mod = sys.modules.get("fastnn._backends._cupy_emu")  # registered by conftest
    if mod is None or not hasattr(mod, "activation_forward"):
        why = mod.unavailable() if mod is not None and hasattr(mod, "unavailable") else "not registered"
        pytest.skip(f"CUDA emulator unavailable: {why}")
    return mod


def rnd(rng, shape, dtype, lo=-3.0, hi=3.0):
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def w64(a):
    return np.asarray(a).astype(F64)


def ulp(ref, dtype):
    """One unit in the last place of the storage type at |ref| (subnormals: the smallest)."""
    fi = ml_dtypes.finfo(dtype)
    a = np.abs(ref)
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    return np.maximum(np.exp2(e) * float(fi.eps), float(fi.smallest_subnormal))


def assert_one_ulp(out, ref, dtype, atol=0.0):
    """out (16-bit) is the float64 reference rounded once: within half an ulp of the
    storage type (the rounding) + 1e-6 |ref| (float32 math) + atol (float32 cancellation
    or accumulation, where the caller allows for it). A truncating or twice-rounding
    store fails this."""
    assert out.dtype == dtype
    o = w64(out)
    fin = np.isfinite(ref)
    assert np.array_equal(np.isnan(o), np.isnan(ref)), "NaN positions differ"
    assert np.array_equal(o[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)]), "infinities differ"
    with np.errstate(invalid="ignore"):
        bad = fin & ~(np.abs(o - ref) <= 0.5 * ulp(ref, dtype) + 1e-6 * np.abs(ref) + atol)
    assert not bad.any(), f"{bad.sum()} values off by more than 1 ulp, e.g. {o[bad][:4]} vs {ref[bad][:4]}"


def assert_close(out, ref, dtype, scale):
    """|out - ref| <= rtol |ref| + rtol * 0.1 * scale (scale = what the value summed,
    |a| @ |b|) + the smallest subnormal (the output's own rounding where it is subnormal)."""
    assert out.dtype == dtype
    rt = RTOL[dtype]
    o = w64(out)
    err = np.abs(o - ref)
    lim = rt * np.abs(ref) + 0.1 * rt * np.asarray(scale) + float(ml_dtypes.finfo(dtype).smallest_subnormal)
    bad = ~(err <= lim)
    assert not bad.any(), f"{bad.sum()} values outside tolerance, worst {float(np.max(err - lim)):.3g}"


def act_spec(name, **p):
    return fastnn.prepare_activation(name, **p).spec


def loss_spec(name, **p):
    return fastnn.prepare_loss(name, **p).spec


# ---- float64 references ------------------------------------------------------------------

def _phi(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


_erf = np.vectorize(math.erf)
_sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
ACT_FWD = {
    "relu": lambda x: np.maximum(x, 0),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "silu": lambda x: x * _sig(x),
    "tanh": np.tanh,
    "softplus": lambda x: np.log1p(np.exp(x)),
    "exponential": np.exp,
}
ACT_BWD_X = {  # dy * f'(x)
    "gelu": lambda x, d: d * (0.5 * (1 + _erf(x / math.sqrt(2))) + x * _phi(x)),
    "silu": lambda x, d: d * (_sig(x) * (1 + x * (1 - _sig(x)))),
    "elu": lambda x, d: d * np.where(x > 0, 1.0, np.exp(x)),
}
ACT_BWD_Y = {  # dy * f'(x) from y
    "sigmoid": lambda y, d: d * y * (1 - y),
    "tanh": lambda y, d: d * (1 - y * y),
    "relu": lambda y, d: d * (y > 0),
}


# ---- elementwise activations -----------------------------------------------------------

@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", sorted(ACT_FWD))
def test_activation_forward(be, dtype, name):
    rng = np.random.default_rng(1)
    x = rnd(rng, (7, 37), dtype)  # 259 elements: packed loop and tail
    y = be.activation_forward(x, act_spec(name), 37)
    with np.errstate(over="ignore"):
        assert_one_ulp(y, ACT_FWD[name](w64(x)), dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", sorted(ACT_BWD_X))
def test_activation_backward_from_x(be, dtype, name):
    rng = np.random.default_rng(2)
    x, dy = rnd(rng, (5, 41), dtype), rnd(rng, (5, 41), dtype)
    dx = be.activation_backward(x, dy, act_spec(name), False, 41)
    assert_one_ulp(dx, ACT_BWD_X[name](w64(x), w64(dy)), dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", sorted(ACT_BWD_Y))
def test_activation_backward_from_y(be, dtype, name):
    rng = np.random.default_rng(3)
    y = be.activation_forward(rnd(rng, (3, 50), dtype), act_spec(name), 50)  # a real y, rounded
    dy = rnd(rng, (3, 50), dtype)
    dx = be.activation_backward(y, dy, act_spec(name), True, 50)
    assert_one_ulp(dx, ACT_BWD_Y[name](w64(y), w64(dy)), dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_special_values(be, dtype):
    """inf / NaN pass through; float16 overflows to inf as torch's does (e^12 > 65504),
    bfloat16 keeps float32's range."""
    x = np.array([12.0, -np.inf, np.inf, np.nan, 0.0, -1.0, 88.0, -0.0], dtype=dtype)
    y = be.activation_forward(x, act_spec("exponential"), x.size)
    with np.errstate(over="ignore"):
        ref = np.exp(w64(x))
    if dtype == F16:
        ref = np.where(ref > 65504, np.inf, ref)  # float16 overflow: inf, like torch
        assert np.isinf(w64(y)[[0, 6]]).all()
    else:
        assert np.isfinite(w64(y)[[0, 6]]).all()
    assert np.array_equal(np.isinf(w64(y)), np.isinf(ref))
    assert_one_ulp(y, ref, dtype)
    r = be.activation_forward(x, act_spec("relu"), x.size)
    assert np.isnan(w64(r)[3]) and w64(r)[2] == np.inf and w64(r)[1] == 0


# ---- softmax rows ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_rows(be, dtype, log):
    rng = np.random.default_rng(4)
    x = rnd(rng, (6, 70), dtype, -6, 6)
    name = "log_softmax" if log else "softmax"
    y = be.activation_forward(x, act_spec(name), 70)
    x64 = w64(x)
    lse = np.log(np.exp(x64 - x64.max(1, keepdims=True)).sum(1, keepdims=True)) + x64.max(1, keepdims=True)
    ref = x64 - lse if log else np.exp(x64 - lse)
    assert_one_ulp(y, ref, dtype)
    dy = rnd(rng, (6, 70), dtype)
    dx = be.activation_backward(y, dy, act_spec(name), True, 70)  # from the (rounded) y
    y64, d64 = w64(y), w64(dy)
    if log:
        ref_dx = d64 - np.exp(y64) * d64.sum(1, keepdims=True)
    else:
        ref_dx = y64 * (d64 - (d64 * y64).sum(1, keepdims=True))
    assert_close(dx, ref_dx, dtype, np.abs(d64).sum(1, keepdims=True) * np.abs(y64))


# ---- losses -------------------------------------------------------------------------------

LOSSES = {
    "mse": (lambda p, t: (p - t) ** 2, lambda p, t: 2 * (p - t), {}),
    "huber": (lambda p, t: np.where(np.abs(p - t) < 0.5, 0.5 * (p - t) ** 2, 0.5 * (np.abs(p - t) - 0.25)),
              lambda p, t: np.clip(p - t, -0.5, 0.5), {"delta": 0.5}),
    "bce_with_logits": (lambda x, t: np.logaddexp(0, x) - t * x, lambda x, t: _sig(x) - t, {}),
}


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_elementwise_loss(be, dtype, name):
    rng = np.random.default_rng(5)
    val, dval, params = LOSSES[name]
    spec = loss_spec(name, **params)
    p = rnd(rng, (9, 23), dtype)
    t = rnd(rng, (9, 23), dtype, 0, 1) if name == "bce_with_logits" else rnd(rng, (9, 23), dtype)
    total, out = be.loss_forward(p, t, spec, True)
    ref = val(w64(p), w64(t))
    assert_one_ulp(out, ref, dtype)
    # the sum adds the unrounded float32 values in double: far tighter than the dtype
    np.testing.assert_allclose(float(total), ref.sum(), rtol=1e-5, atol=1e-5 * np.abs(ref).sum())
    g = rnd(rng, (9, 23), dtype)
    dp, _ = be.loss_backward(p, t, spec, g, 1.0, False)
    assert_one_ulp(dp, w64(g) * dval(w64(p), w64(t)), dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_cross_entropy_rows(be, dtype, ls):
    rng = np.random.default_rng(6)
    n, c = 11, 45
    x = rnd(rng, (n, c), dtype, -5, 5)
    t = rng.integers(0, c, size=n).astype(np.int64)
    t[3] = -100  # ignored
    spec = loss_spec("cross_entropy", label_smoothing=ls)
    total, rows = be.class_loss_forward(x, t, spec, True)
    x64 = w64(x)
    m = x64.max(1, keepdims=True)
    lse = (np.log(np.exp(x64 - m).sum(1, keepdims=True)) + m)[:, 0]
    keep = t != -100
    nll = np.where(keep, lse - x64[np.arange(n), np.where(keep, t, 0)], 0)
    ref = np.where(keep, (1 - ls) * nll + ls / c * (c * lse - x64.sum(1)), 0)
    assert_one_ulp(rows, ref, dtype)
    np.testing.assert_allclose(float(total), w64(rows).sum(), rtol=1e-6)  # the sum of the rounded rows
    g = rnd(rng, (n,), dtype, 0.5, 2)
    dx, _ = be.class_loss_backward(x, t, spec, g, 1.0, False)
    p = np.exp(x64 - lse[:, None])
    onehot = np.zeros((n, c))
    onehot[np.arange(n)[keep], t[keep]] = 1
    ref_dx = np.where(keep[:, None], w64(g)[:, None] * ((1 - ls) * (p - onehot) + ls / c * (c * p - 1)), 0)
    assert_close(dx, ref_dx, dtype, np.abs(w64(g))[:, None] * 0.01)


# ---- Dense: GemmEx products, fused epilogue ------------------------------------------------

def _dense_ref(x, w, b, act):
    z = w64(x) @ w64(w).T + (0 if b is None else w64(b))
    return z, ACT_FWD[act](z) if act in ACT_FWD else z


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("act, scratch", [("relu", None), ("gelu", None), ("gelu", 4 * 70 * 16)],
                         ids=["relu", "gelu", "gelu-chunked"])
def test_dense_forward_backward(be, dtype, act, scratch, monkeypatch):
    if scratch:  # float32 scratch for 16 rows: the forward, dx and dw all loop over chunks
        monkeypatch.setattr(be, "_ACC_CHUNK_BYTES", scratch)
    rng = np.random.default_rng(7)
    m, k, n = 101, 70, 19  # > 4 x the emulated grid rows (24): the 4-row unrolled loops run
    x, w, b = rnd(rng, (m, k), dtype, -1, 1), rnd(rng, (n, k), dtype, -1, 1), rnd(rng, (n,), dtype)
    spec = act_spec(act)
    y, z = be.dense_forward(x, w, True, b, spec, True)
    z_ref, y_ref = _dense_ref(x, w, b, act)
    # one rounding at the output: within one ulp of the float64 value (float32 accumulation
    # of 70 products adds far less than an ulp)
    # atol: float32 accumulation of 70 products where z cancels to near 0 (~sqrt(k) 2^-24
    # of what was summed), and gelu's own float32 cancellation far left (0.5 z (1 + erf))
    acc = 2e-6 * (np.abs(w64(x)) @ np.abs(w64(w)).T + np.abs(w64(b)))
    assert_one_ulp(y, y_ref, dtype, atol=1.2 * acc + 2e-7 * np.abs(z_ref))
    assert_one_ulp(z, z_ref, dtype, atol=acc)
    dy = rnd(rng, (m, n), dtype)
    dx, dw, db = be.dense_backward(dy, x, w, True, z, False, spec, True, True, True)
    if act == "relu":
        g = w64(dy) * (w64(z) > 0)  # exact in 16 bits
    else:
        g = ACT_BWD_X[act](w64(z), w64(dy))  # an intermediate: reaches the products unrounded (hi + lo)
    e = (2.0 ** -16 if dtype == BF16 else 2.0 ** -21) + 2e-6
    assert_one_ulp(dx, g @ w64(w), dtype, atol=e * (np.abs(g) @ np.abs(w64(w))))
    assert_one_ulp(dw, g.T @ w64(x), dtype, atol=e * (np.abs(g).T @ np.abs(w64(x))))
    assert_one_ulp(db, g.sum(0), dtype, atol=e * np.abs(g).sum(0))


@pytest.mark.parametrize("dtype", HALF)
def test_dense_linear_io_layout(be, dtype):
    """No epilogue: the product goes straight to the storage dtype (w as (k, n), "io")."""
    rng = np.random.default_rng(8)
    x, w = rnd(rng, (5, 40), dtype, -1, 1), rnd(rng, (40, 9), dtype, -1, 1)
    y, _ = be.dense_forward(x, w, False, None, act_spec("linear"), False)
    assert_one_ulp(y, w64(x) @ w64(w), dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("grad", ["mean", "rows"])
def test_dense_cross_entropy_chunks(be, dtype, grad):
    """The fused op rounds once, at its outputs: the logits stay float32, their gradient
    reaches the products unrounded (hi + lo parts), the scalar gradient as the products'
    alpha; dw accumulates in float32 over several chunks. rows, dx, dw, db are the float64
    values rounded once."""
    rng = np.random.default_rng(9)
    n, h, c = 20, 24, 13
    x, w, b = rnd(rng, (n, h), dtype, -1, 1), rnd(rng, (c, h), dtype, -1, 1), rnd(rng, (c,), dtype, -1, 1)
    t = rng.integers(0, c, size=n).astype(np.int64)
    t[5] = -100
    g = rnd(rng, (n,), dtype, 0.5, 2) if grad == "rows" else None
    gs = 1.0 / 4096  # a mean over a large batch: G * gs would sink into float16's subnormals
    total, rows, dx, dw, db, _ = be.dense_cross_entropy(x, w, True, b, t, -100, 0.0, g, gs, True, True, 6)
    logits = w64(x) @ w64(w).T + w64(b)  # not rounded: an intermediate of the fused op
    m = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(1, keepdims=True)) + m
    keep = t != -100
    ref_rows = np.where(keep, lse[:, 0] - logits[np.arange(n), np.where(keep, t, 0)], 0)
    assert_one_ulp(rows, ref_rows, dtype, atol=1e-6 * (np.abs(lse[:, 0]) + np.abs(logits).max()))
    p = np.exp(logits - lse)
    p[np.arange(n)[keep], t[keep]] -= 1
    p[~keep] = 0
    p *= w64(g)[:, None] if g is not None else gs
    # hi + lo carries G to 2^-16 (bfloat16) / 2^-21 (float16, with its subnormal lo parts)
    # of each term; float32 accumulation adds ~1e-6 of what was summed
    e = (2.0 ** -16 if dtype == BF16 else 2.0 ** -21) + 1e-6
    assert_one_ulp(dx, p @ w64(w), dtype, atol=e * (np.abs(p) @ np.abs(w64(w))))
    assert_one_ulp(dw, p.T @ w64(x), dtype, atol=e * (np.abs(p).T @ np.abs(w64(x))))
    assert_one_ulp(db, p.sum(0), dtype, atol=1e-6 * np.abs(p).sum(0))


def test_tf32_only_when_asked(be):
    """float32 products are exact float32 by default; allow_tf32() rounds the operands to
    10 mantissa bits (the emulated CUBLAS_COMPUTE_32F_FAST_TF32)."""
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((8, 64)).astype(np.float32), rng.standard_normal((16, 64)).astype(np.float32)
    spec = act_spec("linear")
    y, _ = be.dense_forward(x, w, True, None, spec, False)
    np.testing.assert_allclose(y, w64(x) @ w64(w).T, rtol=1e-5, atol=1e-5)
    with be.allow_tf32(True):
        yt, _ = be.dense_forward(x, w, True, None, spec, False)
    y2, _ = be.dense_forward(x, w, True, None, spec, False)  # off again after the block
    assert np.array_equal(y, y2)
    err = np.abs(w64(yt) - w64(x) @ w64(w).T).max()
    assert 1e-5 < err < 2e-2, err  # TF32's error, not float32's and not a wrong product


@pytest.mark.parametrize("dtype", HALF)
def test_narrowing_matches_numpy(be, dtype):
    """The kernels' store (__float2half_rn / __float2bfloat16_rn, emulated) rounds as
    numpy / ml_dtypes do: nearest-even, float16 overflow to inf, NaN kept."""
    rng = np.random.default_rng(11)
    a = np.concatenate([rng.standard_normal(4000).astype(np.float32) * np.float32(1e4),
                        np.array([65504, 65519.99, 65520, 1e-8, -0.0, np.inf, -np.inf, np.nan, 3.4e38],
                                 dtype=np.float32)])
    out = np.empty(a.size, dtype=dtype)
    with np.errstate(over="ignore"):
        expect = a.astype(dtype)
    be._elementwise(dtype, "from_f32", a.size, a, out, a.size)
    assert np.array_equal(out.view(np.uint16)[~np.isnan(a)], expect.view(np.uint16)[~np.isnan(a)])
    assert np.isnan(w64(out)[np.isnan(a)]).all()


def test_instances_cover_16bit():
    """nvcc's instance file and the NVRTC programs name every kernel for both 16-bit types."""
    inst = S.nvcc_instances()
    assert "#define FASTNN_CUDA_16BIT 1" in inst.splitlines()[0]
    for k in S.KERNELS:
        for ct in ("float", "double", "__half", "__nv_bfloat16"):
            assert f"fk::{k}<{ct}>(" in inst, (k, ct)
    for dt, ct in (("float16", "__half"), ("bfloat16", "__nv_bfloat16")):
        _, opts, names = S.program(dt) if S.cuda_include_dir() else (None, None, None)
        if names is not None:
            assert S.HALF_DEFINE in opts and any(o.startswith("-I") for o in opts)
            assert set(names) == {f"fk::{k}<{ct}>" for k in S.KERNELS}
    assert S.HALF_DEFINE not in S.options("float32")


# ---- the CuPy runtime's GemmEx call, against a column-major GemmEx model ---------------------

class _Dev:
    """A numpy array dressed as a cupy one for CupyRuntime.gemm (.data.ptr, flags, fill)."""

    def __init__(self, a):
        self.a = a
        self.data = type("Mem", (), {"ptr": a.ctypes.data})()
        self.shape, self.dtype, self.flags, self.strides = a.shape, a.dtype, a.flags, a.strides

    def fill(self, v):
        self.a.fill(v)


class _FakeCublas:
    """cublasGemmEx's contract, column-major: C = alpha op(A) op(B) + beta C, op = N / T,
    each matrix read at its pointer with its leading dimension (float32 compute)."""
    CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT = 68, 77, -1
    TYPES = {0: np.dtype(np.float32), 2: F16, 14: BF16}

    def __init__(self):
        self.calls = []

    @staticmethod
    def _mat(ptr, dtype, rows, cols, ld):
        import ctypes
        buf = (ctypes.c_char * (ld * cols * dtype.itemsize)).from_address(ptr)
        return np.frombuffer(buf, dtype=dtype).reshape(cols, ld)[:, :rows].T  # a column-major view

    def gemmEx(self, handle, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, compute, algo):
        import ctypes
        self.calls.append((ta, tb, m, n, k, lda, ldb, ldc, compute))
        al = ctypes.c_float.from_address(alpha).value
        be = ctypes.c_float.from_address(beta).value
        a = self._mat(A, self.TYPES[at], *((m, k) if ta == 0 else (k, m)), lda).astype(np.float32)
        b = self._mat(B, self.TYPES[bt], *((k, n) if tb == 0 else (n, k)), ldb).astype(np.float32)
        c = self._mat(C, self.TYPES[ct], m, n, ldc)
        r = al * ((a if ta == 0 else a.T) @ (b if tb == 0 else b.T)) + be * c.astype(np.float32)
        c.flags.writeable = True
        c[...] = r.astype(c.dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_cupy_runtime_gemm_operands(dtype):
    """CupyRuntime.gemm (the GPU path, not runnable here) hands cuBLAS the right ops and
    leading dimensions for every layout the backend passes: C-contiguous arrays and
    transposed views (w.T, g.T, x.T), into the storage dtype or a float32 accumulator."""
    from fastnn._backends import cupy as cb
    rt = cb.CupyRuntime.__new__(cb.CupyRuntime)
    fake = _FakeCublas()
    rt.xp = type("XP", (), {"ascontiguousarray": staticmethod(lambda d: _Dev(np.ascontiguousarray(d.a)))})
    rt._cublas = lambda: (fake, 0)
    rng = np.random.default_rng(12)
    m, k, n = 7, 11, 5
    for a_t in (False, True):
        for b_t in (False, True):
            a = rnd(rng, (k, m) if a_t else (m, k), dtype)
            b = rnd(rng, (n, k) if b_t else (k, n), dtype)
            av, bv = (a.T if a_t else a), (b.T if b_t else b)
            ref = w64(av) @ w64(bv)
            for out_dt, beta in ((dtype, 0.0), (np.dtype(np.float32), 0.0), (np.dtype(np.float32), 1.0)):
                out = np.full((m, n), 0.5, dtype=out_dt)
                rt.gemm(_Dev(av), _Dev(bv), _Dev(out), 1.0, beta, False)
                exp = ref + (0.5 if beta else 0.0)
                np.testing.assert_allclose(w64(out), exp, rtol=RTOL[dtype] if out_dt == dtype else 1e-6, atol=1e-5)
    # column blocks of wider arrays (dense_backward's dw chunks): leading dimension > width
    av = rnd(rng, (m, k + 3), dtype)[:, 2:2 + k]
    bv = rnd(rng, (n, k + 5), dtype)[:, 1:1 + k].T
    out = np.empty((m, n), dtype=np.float32)
    rt.gemm(_Dev(av), _Dev(bv), _Dev(out), 1.0, 0.0, False)
    np.testing.assert_allclose(w64(out), w64(av) @ w64(bv), rtol=1e-6, atol=1e-5)
    assert fake.calls[-1][5:7] == (k + 5, k + 3)  # ldb of b^T (op T), lda of a (op N): cuBLAS order
    assert {c[:2] for c in fake.calls} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(c[-1] == fake.CUBLAS_COMPUTE_32F for c in fake.calls)
    x32 = rng.standard_normal((4, 6)).astype(np.float32)
    rt.gemm(_Dev(x32), _Dev(x32.T), _Dev(np.empty((4, 4), np.float32)), 1.0, 0.0, True)
    assert fake.calls[-1][-1] == fake.CUBLAS_COMPUTE_32F_FAST_TF32


@pytest.mark.parametrize("dtype", HALF)
def test_dense_softmax_rounds_once(be, dtype, monkeypatch):
    """Dense + softmax: the softmax of the float32 z + b (by row chunks), rounded once."""
    monkeypatch.setattr(be, "_ACC_CHUNK_BYTES", 4 * 21 * 8)  # 8 rows at a time
    rng = np.random.default_rng(13)
    x, w, b = rnd(rng, (30, 40), dtype, -1, 1), rnd(rng, (21, 40), dtype, -1, 1), rnd(rng, (21,), dtype)
    y, z = be.dense_forward(x, w, True, b, act_spec("softmax"), True)
    z_ref = w64(x) @ w64(w).T + w64(b)
    e = np.exp(z_ref - z_ref.max(1, keepdims=True))
    acc = 2e-6 * (np.abs(w64(x)) @ np.abs(w64(w)).T + np.abs(w64(b)))
    assert_one_ulp(z, z_ref, dtype, atol=acc)
    assert_one_ulp(y, e / e.sum(1, keepdims=True), dtype, atol=2e-6)
