"""gemm_lp (csrc/cpu/kernels.h): the 16-bit products, float32 accumulation, on every path.

Every operand-type combination x transposes x odd sizes x ISA level (forced with
_C._set_isa) x path (csrc/cpu/gemm_lp.h) against float64 numpy computed from the same
16-bit values. A product of two bf16 (or two f16, or a 16-bit value and a float32 one) is
exact in float64 and the only error is float32 summation, so each element is held to
3e-5 of sum_p |a_ip b_pj| (one missing or doubled product is ~1/k of that sum). The
vdpbf16ps and AMX paths, asked for a product with a float32 operand, round it to bf16
while packing (gemm_lp.cpp; gemm_lp itself widens instead): they are held to the same
bound against the reference from the rounded operand.
Also: b_rows (op(B) produced in groups of rows) and rows_done cover every row once, each
group on one thread in order; beta == 0 never reads C (NaN there); leading dimensions
larger than the rows (views into wider arrays).
"""
import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")
from fastnn._backends.cpp import _C  # noqa: E402

if _C is None or not hasattr(_C, "_gemm_lp"):
    pytest.skip("fastnn._C without _gemm_lp", allow_module_level=True)

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
COMBOS = [(BF16, BF16), (BF16, F32), (F32, BF16), (F16, F16), (F16, F32), (F32, F16)]
CPU = _C._cpu_isa()
LEVELS = [lv for lv in ("avx512", "avx2", "baseline") if ["baseline", "avx2", "avx512"].index(lv) <= ["baseline", "avx2", "avx512"].index(CPU)]
# (m, n, k): edges of every tile and block (6 x 64 / 6 x 16 tiles, k blocks 256 / 512 / 1024 and pairs)
SHAPES = [(1, 1, 1), (7, 33, 5), (33, 70, 257), (13, 65, 1031)]


@pytest.fixture(params=LEVELS)
def level(request):
    prev = _C._isa()
    assert _C._set_isa(request.param) == request.param
    try:
        yield request.param
    finally:
        _C._set_isa(prev)


def paths(level, ta, tb):
    if level == "baseline":
        return ["best", "blas", "reference"]
    out = ["best", "widen"]
    if _C._gemm_lp_has_bf16dot() and ta in (BF16, F32) and tb in (BF16, F32):
        out.append("bf16dot")
    if _C._gemm_lp_has_amx() and ta in (BF16, F32) and tb in (BF16, F32):
        out.append("amx")
        if F32 in (ta, tb):
            out.append("amx_split")
    return out


def operand(rng, shape, dt, ld_extra=0):
    """A (rows, cols) array of dt, a view into a wider one when ld_extra > 0."""
    full = rng.standard_normal((shape[0], shape[1] + ld_extra)).astype(dt)
    return full[:, : shape[1]]


def rounded_for(path, x):
    """The operand as the path multiplies it: vdpbf16ps and AMX round float32 to bf16."""
    if path in ("bf16dot", "amx") and x.dtype == F32:
        return x.astype(BF16)
    return x


def check(ta, tb, at, bt, m, n, k, path, rng, alpha=1.0, beta=0.0, ld_extra=0, group=0):
    a = operand(rng, (k, m) if at else (m, k), ta, ld_extra)
    b = operand(rng, (n, k) if bt else (k, n), tb, ld_extra)
    c0 = rng.standard_normal((m, n + ld_extra)).astype(F32)
    c = c0.copy()[:, :n]
    if beta == 0.0:
        c[...] = np.nan  # beta == 0: C is not read
    taken = _C._gemm_lp(a, b, at, bt, 1.0, 0.0, np.zeros((m, n), F32), path=path)[3]
    if path == "best":
        expected = {"avx512": ("amx", "amx_split", "bf16dot", "widen"), "avx2": ("widen",), "baseline": ("blas", "reference")}
        assert taken in expected[_C._isa()], taken
    opa = rounded_for(taken, a).astype(np.float64)
    opb = rounded_for(taken, b).astype(np.float64)
    opa = opa.T if at else opa
    opb = opb.T if bt else opb
    ref = alpha * (opa @ opb) + (beta * c0[:, :n].astype(np.float64) if beta else 0.0)
    bound = 3e-5 * (np.abs(alpha) * (np.abs(opa) @ np.abs(opb)) + np.abs(beta * c0[:, :n])) + 1e-30
    a_in, b_in = a.copy(), b.copy()
    done, made, split, _ = _C._gemm_lp(a, b, at, bt, alpha, beta, c, path=path, b_rows_group=group)
    err = np.abs(c - ref)
    where = f"{ta}x{tb} at={at} bt={bt} {m}x{n}x{k} {path} alpha={alpha} beta={beta} ld+{ld_extra} group={group}"
    assert np.all(np.isfinite(c)), where
    assert np.all(err <= bound), f"{where}: worst {np.max(err / bound):.3g} of the bound"
    np.testing.assert_array_equal(a.view(np.uint8) if a.dtype != F32 else a, a_in.view(np.uint8) if a.dtype != F32 else a_in)
    assert b.tobytes() == b_in.tobytes() and a.tobytes() == a_in.tobytes(), f"{where}: an input changed"
    # rows_done: every row of C once
    rows = sorted(done)
    assert sum(r1 - r0 for r0, r1 in rows) == m and all(rows[i][1] == rows[i + 1][0] for i in range(len(rows) - 1)), where
    assert not rows or (rows[0][0] == 0 and rows[-1][1] == m), where
    if group:  # b_rows: every row of op(B) once, groups whole on one thread and never crossed
        covered = sorted(made)
        assert covered[0][0] == 0 and covered[-1][1] == k, where
        assert all(covered[i][1] == covered[i + 1][0] for i in range(len(covered) - 1)), where
        assert not split, f"{where}: a b_rows group split across threads or a call crossed a group"


@pytest.mark.parametrize("ta,tb", COMBOS, ids=[f"{x.name}-{y.name}" for x, y in COMBOS])
def test_gemm_lp_matches_float64(level, ta, tb):
    rng = np.random.default_rng(18)
    for path in paths(level, ta, tb):
        for at in (False, True):
            for bt in (False, True):
                for m, n, k in SHAPES:
                    check(ta, tb, at, bt, m, n, k, path, rng)
        # alpha, beta, wider leading dimensions
        check(ta, tb, False, True, 20, 70, 41, path, rng, alpha=0.75, beta=0.5, ld_extra=3)
        check(ta, tb, True, False, 20, 70, 41, path, rng, alpha=-2.0, beta=1.0, ld_extra=5)


@pytest.mark.parametrize("ta", [BF16, F16], ids=["bfloat16", "float16"])
def test_gemm_lp_b_rows(level, ta):
    """op(B) produced by b_rows (the Dense backward's dW = x^T g): groups of 1, 3, 64 rows, odd k."""
    rng = np.random.default_rng(7)
    for path in paths(level, ta, F32):
        for group in (1, 3, 64):
            for m, n, k in [(33, 70, 257), (6, 65, 1031), (64, 130, 200)]:
                check(ta, F32, True, False, m, n, k, path, rng, group=group)
                check(ta, F32, False, False, m, n, k, path, rng, beta=0.5, group=group)


def test_gemm_lp_bad_arguments():
    a = np.ones((4, 5), BF16)
    with pytest.raises(ValueError, match="rows"):
        _C._gemm_lp(a, np.ones((4, 3), BF16), False, False, 1.0, 0.0, np.zeros((4, 3), F32))
    with pytest.raises(TypeError, match="dtype"):
        _C._gemm_lp(a, np.ones((5, 3), np.float64), False, False, 1.0, 0.0, np.zeros((4, 3), F32))
    with pytest.raises(TypeError):
        _C._gemm_lp(a, np.ones((5, 3), F16), False, False, 1.0, 0.0, np.zeros((4, 3), F32))
    with pytest.raises(ValueError, match="path"):
        _C._gemm_lp(a, np.ones((5, 3), BF16), False, False, 1.0, 0.0, np.zeros((4, 3), F32), path="fast")


def test_gemm_lp_special_values():
    """inf and NaN propagate as in float32 sums; a float16 product past 65504 stays finite in float32."""
    a = np.array([[60000.0, 60000.0]], F16)
    b = np.array([[2.0], [2.0]], F16)
    c = np.zeros((1, 1), F32)
    _C._gemm_lp(a, b, False, False, 1.0, 0.0, c)
    assert c[0, 0] == 240000.0
    for dt in (BF16, F16):
        a = np.array([[np.inf, 1.0], [np.nan, 1.0], [1.0, 1.0]], dt)
        b = np.array([[1.0, 0.0], [1.0, 1.0]], dt)
        c = np.zeros((3, 2), F32)
        _C._gemm_lp(a, b, False, False, 1.0, 0.0, c)
        assert c[0, 0] == np.inf and np.isnan(c[0, 1]) and np.isnan(c[1]).all() and (c[2] == [2.0, 1.0]).all()
