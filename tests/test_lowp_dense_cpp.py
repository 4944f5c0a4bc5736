"""16-bit (bfloat16, float16) Dense and fused Dense + cross-entropy in the C++ backend,
through fastnn._C, at every ISA level this CPU has (avx512, avx2, baseline: _C._set_isa).

The reference is float64 (numpy products, torch float64 autograd for the activations and
the loss) computed FROM THE SAME ROUNDED 16-bit inputs, and from the 16-bit saved z / y
for the backward, as torch's contract says (csrc/cpu/dense_lp.cpp): products of the
16-bit values summed in float32, bias and activation in float32, each output rounded once.
So every output must be its float64 value rounded once, up to float32's sums:

    |got - ref| <= u |ref| + slack,   u = 2^-8 (bfloat16), 2^-11 (float16): half an ulp,

slack = float32's error of the sums, (terms + 16) 2^-22 times the sum of |terms| (plus
2^-25, float16's smallest half-subnormal). That band is far inside torch's tolerances
(bfloat16 1.6e-2, float16 1e-3 relative): rounding twice, or rounding g = dy act'(z) to
16 bits before the products (the contract keeps it float32), fails it in many entries.
The public-API matrix over backends is tests/test_lowp.py.
"""
import numpy as np
import pytest
import torch

from fastnn import _checks
from fastnn._backends import cpp
from _ref import activation_ref

ml_dtypes = pytest.importorskip("ml_dtypes")
_C = cpp._C
pytestmark = pytest.mark.skipif(_C is None, reason="the C++ backend is not built")

BF16, F16 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)
U = {BF16: 2.0 ** -8, F16: 2.0 ** -11}  # half an ulp, relative
ORDER = ["baseline", "avx2", "avx512"]
LEVELS = ORDER[:ORDER.index(_C._cpu_isa()) + 1] if _C is not None else []
DTYPES = [pytest.param(BF16, id="bf16"), pytest.param(F16, id="f16")]


def at_levels(fn):
    """fn() at each ISA level (the kernels and the products dispatch on it), then the
    level restored."""
    prev = _C._isa()
    try:
        for level in LEVELS:
            assert _C._set_isa(level) == level
            fn(level)
    finally:
        _C._set_isa(prev)


def check(got, ref, dtype, slack, what):
    """got is ref rounded once to dtype, up to slack (float32's sums)."""
    assert isinstance(got, np.ndarray) and got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    g = got.astype(np.float64)
    band = U[dtype] * np.abs(ref) + slack + 2.0 ** -25
    bad = ~(np.abs(g - ref) <= band)
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} entries off, worst (got, ref, band) "
                           f"{[(g[i], ref[i], band[i]) for i in zip(*np.nonzero(bad))][:3]}")


def sums_slack(terms, scale):
    return (terms + 16) * 2.0 ** -22 * scale


def f64(a):
    return np.asarray(a, np.float64)


# ---- Dense ---------------------------------------------------------------------------------

def make(m, k, n, dtype, rng):
    x = rng.standard_normal((m, k)).astype(dtype)
    w_oi = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    dy = rng.standard_normal((m, n)).astype(dtype)
    return x, w_oi, b, dy


def act_grad_ref(name, zy, dy, from_y):
    """g = dy act'(.) in float64 from the 16-bit z (torch autograd) or y (the formulas)."""
    if not from_y:
        return activation_ref(name, {}, f64(zy), f64(dy))[1]
    y, d = f64(zy), f64(dy)
    return {"relu": d * (y > 0), "sigmoid": d * y * (1 - y), "tanh": d * (1 - y * y)}[name]


ALL_WANTS = ((1, 1, 1), (0, 1, 1), (1, 0, 0), (0, 0, 1))  # (dx, dw, db) asked for


def dense_case(dtype, name, from_y, m, k, n, layout, bias, rng, wants=ALL_WANTS):
    spec = _checks.activation_spec("test", name, {})
    x, w_oi, b, dy = make(m, k, n, dtype, rng)
    w = w_oi if layout == "oi" else np.ascontiguousarray(w_oi.T)
    b = b if bias else None
    inputs = [a.copy() for a in (x, w, dy) + ((b,) if bias else ())]
    y, z = np.empty((m, n), dtype), np.empty((m, n), dtype)
    _C.dense_forward(x, w, layout == "oi", b, y, z, spec.code, spec.numeric)
    # forward: z = acc + b, y = act(acc + b), each rounded once from float32
    zr = f64(x) @ f64(w_oi).T + (f64(b) if bias else 0.0)
    scale = np.abs(f64(x)) @ np.abs(f64(w_oi)).T + (np.abs(f64(b)) if bias else 0.0)
    yr = activation_ref(name, {}, zr)[0]
    check(z, zr, dtype, sums_slack(k, scale), f"{name} z")
    check(y, yr, dtype, sums_slack(k, scale) + 2.0 ** -20 * np.abs(yr), f"{name} y")
    # backward from the 16-bit z (or y): g in float32, never rounded, into the products
    zy = y if from_y else z
    g = act_grad_ref(name, zy, dy, from_y)
    gs = np.abs(f64(dy)) * (1 + np.abs(f64(zy)))  # |g|'s bound, and float32's error of it
    slack_g = 2.0 ** -20 * gs
    dwr, dws, dwg = g.T @ f64(x), gs.T @ np.abs(f64(x)), slack_g.T @ np.abs(f64(x))
    if layout == "io":
        dwr, dws, dwg = dwr.T, dws.T, dwg.T
    # all three (dW summed over the row blocks of dx's pass), dW alone (one product whose
    # packing makes g), dx alone, db alone
    for want in wants:
        dx, dw, db = [np.empty(s, dtype) if on else None for on, s in zip(want, (x.shape, w.shape, (n,)))]
        _C.dense_backward(dy, x, w, layout == "oi", zy, from_y, dx, dw, db, spec.code, spec.numeric)
        if dx is not None:
            check(dx, g @ f64(w_oi), dtype, sums_slack(n, gs @ np.abs(f64(w_oi))) + slack_g @ np.abs(f64(w_oi)),
                  f"dx {want}")
        if dw is not None:
            check(dw, dwr, dtype, sums_slack(m, dws) + dwg, f"dw {want}")
        if db is not None:
            check(db, g.sum(0), dtype, sums_slack(m, gs.sum(0)), f"db {want}")
    for a, a0 in zip((x, w, dy) + ((b,) if bias else ()), inputs):
        assert a.tobytes() == a0.tobytes(), "an input was modified"


ACTS = [("linear", False), ("relu", False), ("relu", True), ("gelu", False), ("sigmoid", True), ("tanh", False)]


@pytest.mark.parametrize("act", ACTS, ids=[f"{a}-from_{'y' if y else 'z'}" for a, y in ACTS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_backward(dtype, act, rng):
    """Each activation, both weight layouts, with and without bias, at every ISA level."""
    name, from_y = act
    at_levels(lambda level: [dense_case(dtype, name, from_y, 37, 33, 20, layout, bias, rng)
                             for layout in ("oi", "io") for bias in (True, False)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_row_blocks(dtype, rng):
    """m = 1300 rows over 1100 outputs: the forward's float32 tiles (953 rows at this width)
    and the backward's row blocks (952 rows) end part way, dW summed over two blocks."""
    at_levels(lambda level: [dense_case(dtype, "relu", False, 1300, 4, 1100, layout, True, rng,
                                        wants=((1, 1, 1), (0, 1, 1))) for layout in ("oi", "io")])


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_edges_and_plain_route(dtype, rng):
    """k = 0 (y = act(b)), m = 0, and the plain route (dense_forward_plain /
    dense_backward_plain) giving the same bits as the general entry points."""
    spec = _checks.activation_spec("test", "gelu", {})
    b = rng.standard_normal(5).astype(dtype)
    y = np.empty((3, 5), dtype)
    _C.dense_forward(np.empty((3, 0), dtype), np.empty((5, 0), dtype), True, b, y, None, spec.code, spec.numeric)
    check(y, np.broadcast_to(activation_ref("gelu", {}, f64(b))[0], (3, 5)), dtype, 0.0, "k = 0")
    y0 = np.empty((0, 5), dtype)
    _C.dense_forward(np.empty((0, 4), dtype), np.ones((5, 4), dtype), True, b, y0, None, spec.code, spec.numeric)
    dw, db = np.full((5, 4), 7, dtype), np.full(5, 7, dtype)
    _C.dense_backward(np.empty((0, 5), dtype), np.empty((0, 4), dtype), np.ones((5, 4), dtype), True,
                      np.empty((0, 5), dtype), False, None, dw, db, spec.code, spec.numeric)
    assert not dw.astype(np.float64).any() and not db.astype(np.float64).any()
    x, w, b, dy = make(29, 13, 7, dtype, rng)
    y1, z1 = np.empty((29, 7), dtype), np.empty((29, 7), dtype)
    _C.dense_forward(x, w, True, b, y1, z1, spec.code, spec.numeric)
    y2, z2 = _C.dense_forward_plain(x, w, b, spec.code, spec.numeric, True)
    assert y2.dtype == dtype and y1.tobytes() == y2.tobytes() and z1.tobytes() == z2.tobytes()
    dx1, dw1, db1 = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    _C.dense_backward(dy, x, w, True, z1, False, dx1, dw1, db1, spec.code, spec.numeric)
    dx2, dw2, db2 = _C.dense_backward_plain(dy, x, w, None, z1, False, True, True, True, spec.code, spec.numeric)
    for a, c in ((dx1, dx2), (dw1, dw2), (db1, db2)):
        assert c.dtype == dtype and a.tobytes() == c.tobytes()
    with pytest.raises(TypeError, match="has dtype float32, expected"):
        _C.dense_forward(x, w.astype(np.float32), True, None, y1, None, spec.code, spec.numeric)


# ---- fused Dense + cross-entropy -------------------------------------------------------------

def ce_ref(x, w_oi, b, t, ls, grad, cw, rw, cap, zs, ignore):
    """float64 torch: per-row loss, lse and the gradients of sum_i grad_i loss_i."""
    xt = torch.tensor(f64(x), requires_grad=True)
    wt = torch.tensor(f64(w_oi), requires_grad=True)
    bt = torch.tensor(f64(b), requires_grad=True)
    tt = torch.tensor(t)
    L = xt @ wt.T + bt
    if cap:
        L = cap * torch.tanh(L / cap)
    lse = torch.logsumexp(L, 1)
    cwt = None if cw is None else torch.tensor(f64(cw))
    ce = torch.nn.functional.cross_entropy(L, tt, weight=cwt, label_smoothing=ls, ignore_index=ignore,
                                           reduction="none")
    row = (ce + zs * lse ** 2 * (tt != ignore)) * (1.0 if rw is None else torch.tensor(f64(rw)))
    row.backward(torch.tensor(np.broadcast_to(f64(grad), row.shape).copy()))
    scale = (L.abs().max(1).values + lse.abs()) * (1 + zs * lse.abs())  # the row's terms
    return (row.detach().numpy(), lse.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy(),
            scale.detach().numpy())


CE = [  # (label smoothing, class weights, row weights, softcap, z-loss, per-row grad, lse, layout, chunk)
    (0.0, False, False, 0.0, 0.0, True, False, "oi", 16),
    (0.1, True, False, 0.0, 0.0, False, True, "io", 7),
    (0.0, False, True, 3.0, 1e-3, True, True, "oi", 1000),
    (0.2, True, True, 2.0, 0.0, False, True, "io", 16),
]


@pytest.mark.parametrize("case", CE, ids=[f"ls{c[0]}-cw{int(c[1])}-rw{int(c[2])}-cap{c[3]}-z{c[4]}-{c[7]}-chunk{c[8]}"
                                          for c in CE])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_cross_entropy(dtype, case, rng):
    """Index targets with ignored rows, label smoothing, class / row weights, soft cap,
    z-loss and lse, chunked (16 and 7 rows of 53) or not, at every ISA level: loss rows,
    lse, dx, dw, db each rounded once from float32; the total a double sum."""
    ls, use_cw, use_rw, cap, zs, row_grad, want_lse, layout, chunk = case
    n, h, c, ignore = 53, 24, 13, -100
    x = (3 * rng.standard_normal((n, h))).astype(dtype)
    w_oi = (rng.standard_normal((c, h)) / np.sqrt(h)).astype(dtype)
    w = w_oi if layout == "oi" else np.ascontiguousarray(w_oi.T)
    b = rng.standard_normal(c).astype(dtype)
    t = rng.integers(0, c, n)
    t[[1, 7, n - 1]] = ignore
    cw = (rng.random(c) + 0.5).astype(dtype) if use_cw else None
    rw = rng.random(n).astype(dtype) if use_rw else None
    grad = rng.standard_normal(n).astype(dtype) if row_grad else None
    gs = 0.7
    inputs = [a.copy() for a in (x, w, b, cw, rw, grad) if a is not None]
    rl, rlse, rdx, rdw, rdb, rs = ce_ref(x, w_oi, b, t, ls, grad if row_grad else gs, cw, rw, cap, zs, ignore)

    def run(level):
        rows, lse = np.empty(n, dtype), np.empty(n, dtype) if want_lse else None
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(c, dtype)
        total = _C.dense_cross_entropy(x, w, layout == "oi", b, t, ignore, ls, grad, gs, rows, dx, dw, db, chunk,
                                       cw, rw, cap, zs, lse)
        wmax = (f64(cw).max() if use_cw else 1.0) * (f64(rw) if use_rw else 1.0)
        slack = 2.0 ** -18 * rs * wmax
        check(rows, rl, dtype, slack, f"{level}: loss rows")
        assert abs(total - rl.sum()) <= 2.0 ** -18 * np.sum(rs * wmax) + 1e-12, f"{level}: total"
        if want_lse:
            check(lse, rlse, dtype, 2.0 ** -18 * rs, f"{level}: lse")
        # G (float32) is |.| <= |g_i| rw_i (A_i + ...) per entry; its products' terms:
        gb = np.abs(f64(grad) if row_grad else gs) * wmax * (1 + 2 * zs * np.abs(rlse)) * 2 * (f64(cw).max() if use_cw else 1)
        G = np.broadcast_to(gb[:, None], (n, c))
        check(dx, rdx, dtype, sums_slack(c, G @ np.abs(f64(w_oi))), f"{level}: dx")
        dws = G.T @ np.abs(f64(x))
        check(dw, rdw if layout == "oi" else rdw.T, dtype, sums_slack(n, dws if layout == "oi" else dws.T),
              f"{level}: dw")
        check(db, rdb, dtype, sums_slack(n, G.sum(0)), f"{level}: db")

    at_levels(run)
    for a, a0 in zip([a for a in (x, w, b, cw, rw, grad) if a is not None], inputs):
        assert a.tobytes() == a0.tobytes(), "an input was modified"
