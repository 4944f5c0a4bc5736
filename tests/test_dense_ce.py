"""dense_cross_entropy (fused Dense + softmax cross-entropy) against float64 torch:
F.cross_entropy(F.linear(x, W, b), target) and its three gradients, on every backend.

Chunk sizes smaller than N (and not dividing it) exercise the chunked accumulation of
dW and db; C = 1, ignored rows and empty batches check the edges.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastnn
from conftest import K, assert_close

SHAPES = [(7, 5, 3), (300, 17, 11), (257, 33, 1), (64, 8, 130), (0, 4, 5)]
SHAPE_IDS = [f"n{n}-h{h}-c{c}" for n, h, c in SHAPES]


def make(n, h, c, layout, dtype, rng, bias=True, ignore=-100):
    x = rng.standard_normal((n, h)).astype(dtype)
    w_oi = (rng.standard_normal((c, h)) / np.sqrt(max(h, 1))).astype(dtype)
    b = rng.standard_normal(c).astype(dtype) if bias else None
    t = rng.integers(0, c, n)
    if n > 3:
        t[1] = ignore
        t[-1] = ignore
    w = w_oi if layout == "oi" else np.ascontiguousarray(w_oi.T)
    return x, w, w_oi, b, t


def torch_ref(x, w_oi, b, t, reduction, ls, grad, ignore=-100):
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w_oi.astype(np.float64), requires_grad=True)
    bt = None if b is None else torch.tensor(b.astype(np.float64), requires_grad=True)
    loss = F.cross_entropy(F.linear(xt, wt, bt), torch.tensor(t), reduction=reduction,
                           label_smoothing=ls, ignore_index=ignore)
    loss.backward(torch.tensor(np.asarray(grad, dtype=np.float64)))
    return (loss.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(),
            None if bt is None else bt.grad.numpy())


@pytest.mark.parametrize("layout", ["oi", "io"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ls", [0.0, 0.2], ids=["ls0", "ls0.2"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_matches_torch(backend, dtype, rng, shape, ls, reduction, layout):
    n, h, c = shape
    x, w, w_oi, b, t = make(n, h, c, layout, dtype, rng)
    grad = rng.standard_normal(n).astype(dtype) if reduction == "none" else 0.7
    loss, (dx, dw, db) = K.dense_cross_entropy(x, w, b, t, weight_layout=layout, reduction=reduction,
                                               label_smoothing=ls, chunk_size=64, grad=grad)
    rl, rdx, rdw, rdb = torch_ref(x, w_oi, b, t, reduction, ls, grad)
    assert_close(loss, rl, dtype, normwise=True, what="loss")
    assert_close(dx, rdx, dtype, normwise=True, what="dx")
    assert_close(dw, rdw if layout == "oi" else rdw.T, dtype, normwise=True, what="dw")
    assert_close(db, rdb, dtype, normwise=True, what="db")


@pytest.mark.parametrize("chunk", [None, 1, 5, 1000])
def test_chunk_size_does_not_change_results(backend, dtype, rng, chunk):
    x, w, _, b, t = make(37, 9, 6, "oi", dtype, rng)
    ref = K.dense_cross_entropy(x, w, b, t, chunk_size=37)
    got = K.dense_cross_entropy(x, w, b, t, chunk_size=chunk)
    assert_close(got[0], ref[0], dtype, normwise=True, what="loss")
    for g, r, name in zip(got[1], ref[1], ("dx", "dw", "db")):
        assert_close(g, r, dtype, normwise=True, what=name)


def test_no_bias_and_no_grads(backend, dtype, rng):
    x, w, w_oi, _, t = make(50, 7, 4, "oi", dtype, rng, bias=False)
    loss, grads = K.dense_cross_entropy(x, w, None, t, need_grads=False)
    assert grads == (None, None, None)
    rl, rdx, rdw, _ = torch_ref(x, w_oi, None, t, "mean", 0.0, 1.0)
    assert_close(loss, rl, dtype, what="loss")
    _, (dx, dw, db) = K.dense_cross_entropy(x, w, None, t)
    assert_close(dx, rdx, dtype, normwise=True, what="dx")
    assert_close(dw, rdw, dtype, normwise=True, what="dw")
    # without a bias, db is still the gradient a zero bias would get: the logits' column sums
    _, _, _, rdb = torch_ref(x, w_oi, np.zeros(4, dtype), t, "mean", 0.0, 1.0)
    assert_close(db, rdb, dtype, normwise=True, what="db")


def test_nd_input_and_custom_ignore(backend, dtype, rng):
    x = rng.standard_normal((3, 4, 6)).astype(dtype)
    w = rng.standard_normal((5, 6)).astype(dtype)
    t = rng.integers(0, 5, (3, 4))
    t[0, 0] = 7
    loss, (dx, dw, db) = K.dense_cross_entropy(x, w, None, t, ignore_index=7, reduction="none")
    rl, rdx, rdw, _ = torch_ref(x.reshape(12, 6), w, None, t.reshape(12), "none", 0.0, np.ones(12), ignore=7)
    assert loss.shape == (3, 4) and dx.shape == x.shape
    assert_close(loss, rl.reshape(3, 4), dtype, normwise=True, what="loss")
    assert_close(dx, rdx.reshape(3, 4, 6), dtype, normwise=True, what="dx")
    assert_close(dw, rdw, dtype, normwise=True, what="dw")


def test_all_ignored_mean_is_nan_with_zero_grads(backend, dtype, rng):
    x, w, _, b, _ = make(9, 4, 3, "oi", dtype, rng)
    t = np.full(9, -100)
    loss, (dx, dw, db) = K.dense_cross_entropy(x, w, b, t)
    assert np.isnan(loss)
    for g in (dx, dw, db):
        assert not np.any(g), "gradients of an all-ignored batch must be zero"


@pytest.mark.parametrize("bad, err, match", [
    (dict(target=np.array([0, 3])), ValueError, "class index 3"),
    (dict(reduction="batchmean"), ValueError, "reduction"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    (dict(chunk_size=0), ValueError, "chunk_size"),
    (dict(weight_layout="xy"), ValueError, "weight_layout"),
    (dict(target=np.array([0.0, 1.0])), TypeError, "target"),
    (dict(w=np.zeros((3, 5))), ValueError, "w has shape"),
    (dict(b=np.zeros(4)), ValueError, "b has shape"),
])
def test_errors(backend, bad, err, match):
    bad = dict(bad)  # the parameter dict is shared by every backend's run
    args = dict(x=np.zeros((2, 4)), w=np.zeros((3, 4)), b=np.zeros(3), target=np.array([0, 2]))
    kwargs = {k: bad.pop(k) for k in list(bad) if k not in args}
    args.update(bad)
    with pytest.raises(err, match=match):
        K.dense_cross_entropy(args["x"], args["w"], args["b"], args["target"], **kwargs)


# ---- the options beyond torch: class / row weights, soft cap, z-loss, lse ------------------

def extras_ref(x, w_oi, b, t, reduction, ls, grad, cw, rw, cap, z, ignore=-100):
    """float64 torch written out: logits, soft cap, torch's weighted / smoothed
    cross_entropy per row, + z * lse^2 on kept rows, times the row weights; "mean" over
    torch's denominator (the class-weight sum of the kept rows)."""
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w_oi.astype(np.float64), requires_grad=True)
    bt = torch.tensor(b.astype(np.float64), requires_grad=True)
    tt = torch.tensor(t)
    L = xt @ wt.T + bt
    if cap:
        L = cap * torch.tanh(L / cap)
    lse = torch.logsumexp(L, 1)
    cwt = None if cw is None else torch.tensor(cw.astype(np.float64))
    ce = F.cross_entropy(L, tt, weight=cwt, label_smoothing=ls, ignore_index=ignore, reduction="none")
    kept = tt != ignore
    row = (ce + z * lse ** 2 * kept) * (1.0 if rw is None else torch.tensor(rw.astype(np.float64)))
    if reduction == "none":
        out = row
    elif reduction == "sum":
        out = row.sum()
    else:
        out = row.sum() / (kept.sum() if cwt is None else cwt[tt[kept]].sum())
    out.backward(torch.tensor(np.asarray(grad, dtype=np.float64)))
    return (out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy(),
            lse.detach().numpy())


EXTRAS = [  # (class weights, row weights, softcap, z-loss scale, label smoothing)
    (False, False, 3.0, 0.0, 0.0), (False, False, None, 1e-2, 0.0), (False, True, None, 0.0, 0.0),
    (True, False, None, 0.0, 0.1), (True, True, 2.0, 1e-3, 0.2), (False, True, 30.0, 1e-4, 0.1),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("extras", EXTRAS, ids=[f"cw{int(a)}-rw{int(b)}-cap{c}-z{d}-ls{e}" for a, b, c, d, e in EXTRAS])
def test_options_beyond_torch_match_a_float64_composition(backend, dtype, rng, extras, reduction):
    use_cw, use_rw, cap, z, ls = extras
    x, w, w_oi, b, t = make(53, 9, 13, "oi", dtype, rng)
    x *= 3  # logits of a few units: the soft cap bends them
    cw = (rng.random(13) + 0.5).astype(dtype) if use_cw else None
    rw = rng.random(53).astype(dtype) if use_rw else None
    grad = rng.standard_normal(53).astype(dtype) if reduction == "none" else 0.7
    call = lambda: K.dense_cross_entropy(x, w, b, t, reduction=reduction, label_smoothing=ls, class_weight=cw,  # noqa: E731
                                         row_weight=rw, softcap=cap, lse_square_scale=z, return_lse=True,
                                         chunk_size=16, grad=grad)
    if backend in ("cupy", "cupy_emu") and (use_rw or cap or z):  # cupy has class weights only
        with pytest.raises(ValueError, match="not available on the cupy backend"):
            call()
        return
    if backend in ("cupy", "cupy_emu"):
        call = lambda: K.dense_cross_entropy(x, w, b, t, reduction=reduction, label_smoothing=ls,  # noqa: E731
                                             class_weight=cw, chunk_size=16, grad=grad) + (None,)
    loss, (dx, dw, db), lse = call()
    rl, rdx, rdw, rdb, rlse = extras_ref(x, w_oi, b, t, reduction, ls, grad, cw, rw, cap, z)
    assert_close(loss, rl, dtype, normwise=True, what="loss")
    assert_close(dx, rdx, dtype, normwise=True, what="dx")
    assert_close(dw, rdw, dtype, normwise=True, what="dw")
    assert_close(db, rdb, dtype, normwise=True, what="db")
    if lse is not None:
        assert_close(lse, rlse, dtype, normwise=True, what="lse (ignored rows included)")


def test_options_off_are_the_plain_loss_and_cpp_equals_numba(dtype, rng):
    if not {"cpp", "numba"} <= set(fastnn.available_backends()):
        pytest.skip("needs both CPU backends")
    x, w, _, b, t = make(41, 7, 9, "oi", dtype, rng)
    cw, rw = (rng.random(9) + 0.5).astype(dtype), rng.random(41).astype(dtype)
    outs = {}
    for be in ("cpp", "numba"):
        with fastnn.use_backend(be):
            plain = fastnn.dense_cross_entropy(x, w, b, t, chunk_size=10)
            off = fastnn.dense_cross_entropy(x, w, b, t, chunk_size=10, softcap=None, lse_square_scale=0.0,
                                             row_weight=np.ones(41, dtype))
            for a, r in zip((off[0],) + off[1], (plain[0],) + plain[1]):
                np.testing.assert_array_equal(a, r)  # all-ones row weights and options off: the same bits
            outs[be] = fastnn.dense_cross_entropy(x, w, b, t, chunk_size=10, class_weight=cw, row_weight=rw,
                                                  softcap=4.0, lse_square_scale=1e-3, label_smoothing=0.1,
                                                  reduction="none", return_lse=True)
    (lc, gc, ec), (ln, gn, en) = outs["cpp"], outs["numba"]
    for a, r, what in [(lc, ln, "loss"), (ec, en, "lse")] + list(zip(gc, gn, ("dx", "dw", "db"))):
        assert_close(a, r, dtype, normwise=True, what=f"cpp vs numba {what}")


@pytest.mark.parametrize("bad, err, match", [
    (dict(softcap=0.0), ValueError, "softcap"),
    (dict(softcap=-1.0), ValueError, "softcap"),
    (dict(softcap="big"), TypeError, "softcap"),
    (dict(lse_square_scale=-1e-4), ValueError, "lse_square_scale"),
    (dict(lse_square_scale=float("inf")), ValueError, "lse_square_scale"),
    (dict(class_weight=np.ones(4)), ValueError, "class_weight has shape"),
    (dict(class_weight=np.ones(3, np.float32)), TypeError, "class_weight has dtype"),
    (dict(row_weight=np.ones(3)), ValueError, "row_weight has shape"),
    (dict(return_lse=1), TypeError, "return_lse"),
])
def test_option_errors(bad, err, match):
    with pytest.raises(err, match=match):
        fastnn.dense_cross_entropy(np.zeros((2, 4)), np.zeros((3, 4)), np.zeros(3), np.array([0, 2]), **bad)
