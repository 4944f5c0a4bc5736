"""loss_forward / loss_backward against float64 torch (numpy for hinge, squared_hinge,
log_cosh). Cases walk fastnn.LOSSES, so a new name fails until tests/_ref.py knows it.
Class axis is the LAST axis of pred; the reference moves it to torch's axis 1."""
import numpy as np
import pytest

import fastnn
from _ref import ALIASES, loss_ref, loss_scale
from conftest import K, assert_close, param_id, shape_id

API_LOSSES = ("mse", "mae", "huber", "smooth_l1", "bce", "bce_with_logits", "cross_entropy",
              "nll", "kl_div", "poisson_nll", "hinge", "squared_hinge", "log_cosh")
CLASS_LOSSES = {"cross_entropy", "nll"}
# losses where torch differentiates the target (with probability targets for cross_entropy)
TARGET_GRAD = {"mse", "mae", "huber", "smooth_l1", "bce", "bce_with_logits", "cross_entropy",
               "kl_div", "poisson_nll"}
# "C" stands for a positive float array of shape (C,) = (pred.shape[-1],)
PARAMS = {
    "huber": [{}, {"delta": 0.5}, {"delta": 2.5}],
    "smooth_l1": [{}, {"beta": 0.5}, {"beta": 0.0}],
    "bce_with_logits": [{}, {"pos_weight": "C"}],
    "cross_entropy": [{}, {"weight": "C"}, {"ignore_index": 1}, {"label_smoothing": 0.1},
                      {"weight": "C", "label_smoothing": 0.2},
                      {"weight": "C", "ignore_index": 1, "label_smoothing": 0.2}],
    "nll": [{}, {"weight": "C"}, {"ignore_index": 1}, {"weight": "C", "ignore_index": 1}],
    "kl_div": [{}, {"log_target": True}],
    "poisson_nll": [{}, {"log_input": False}, {"full": True},
                    {"log_input": False, "full": True, "eps": 1e-4}],
}
ELEM_SHAPES = [(1,), (7,), (33,), (1031,), (7, 33), (3, 5, 7), (0,), (0, 7)]
CLASS_SHAPES = [(5,), (1, 1), (7, 5), (33, 257), (1031, 3), (3, 5, 7), (0, 5)]


def target_kinds(name, params):
    if name not in CLASS_LOSSES:
        return ["float"]
    probs = name == "cross_entropy" and "ignore_index" not in params
    return ["i64", "i32"] + (["prob"] if probs else [])


def cases(names=None, kinds=None):
    out = []
    for n in fastnn.LOSSES:
        if names is None or n in names:
            for p in PARAMS.get(n, [{}]):
                for k in target_kinds(n, p):
                    if kinds is None or k in kinds:
                        out.append(pytest.param(n, p, k, id=f"{n}-{param_id(p)}-{k}"))
    return out


def shapes_for(name):
    return CLASS_SHAPES if name in CLASS_LOSSES else ELEM_SHAPES


def _log_softmax(a):
    if a.size == 0:
        return a
    m = np.max(a, -1, keepdims=True)
    return a - m - np.log(np.sum(np.exp(a - m), -1, keepdims=True))


def make_inputs(name, params, kind, shape, dtype, rng):
    """(pred, target, params) with array params ("C") materialized in dtype."""
    name = ALIASES.get(name, name)
    C = shape[-1] if shape else 1
    p = {k: (rng.uniform(0.2, 2.0, C).astype(dtype) if isinstance(v, str) and v == "C" else v)
         for k, v in params.items()}
    normal = lambda s=1.0: s * rng.standard_normal(shape)
    if name in CLASS_LOSSES:
        logits = normal(2.0)
        pred = logits if name == "cross_entropy" else _log_softmax(logits)
        if kind == "prob":
            target = np.exp(_log_softmax(normal(2.0)))
        else:
            t = np.asarray(rng.integers(0, C, size=shape[:-1]))
            t = np.where(rng.random(shape[:-1]) < 0.2, p.get("ignore_index", -100), t)
            return pred.astype(dtype), t.astype(np.int64 if kind == "i64" else np.int32), p
    elif name == "bce":
        pred = rng.uniform(0.02, 0.98, shape)
        target = rng.uniform(0.0, 1.0, shape)
        target = np.where(rng.random(shape) < 0.3, rng.integers(0, 2, shape), target)
    elif name == "bce_with_logits":
        pred, target = normal(3.0), rng.uniform(0.0, 1.0, shape)
    elif name == "kl_div":
        pred = _log_softmax(normal())
        if p.get("log_target", False):
            target = _log_softmax(normal())
        else:  # exact zeros: a zero target contributes 0
            target = np.where(rng.random(shape) < 0.2, 0.0, np.exp(_log_softmax(normal())))
    elif name == "poisson_nll":
        if p.get("log_input", True):
            pred = normal()
        else:
            pred = np.where(rng.random(shape) < 0.1, 0.0, rng.uniform(0.0, 3.0, shape))
        target = rng.poisson(2.0, shape).astype(np.float64)
    elif name in ("hinge", "squared_hinge"):
        pred, target = normal(2.0), rng.choice([-1.0, 1.0], shape)
    else:
        pred, target = normal(2.0), normal(2.0)
    return pred.astype(dtype), target.astype(dtype), p


def none_shape(name, pred):
    return pred.shape[:-1] if ALIASES.get(name, name) in CLASS_LOSSES else pred.shape


def reductions(name):
    return ["mean", "sum", "none"] + (["batchmean"] if name == "kl_div" else [])


def test_names_cover_api():
    assert isinstance(fastnn.LOSSES, tuple)
    missing = set(API_LOSSES) - set(fastnn.LOSSES)
    assert not missing, f"LOSSES lacks {sorted(missing)}"


def _forward_ids():
    for c in cases():
        name = c.values[0]
        for shape in shapes_for(name):
            for r in reductions(name):
                yield pytest.param(*c.values, shape, r, id=f"{c.id}-{shape_id(shape)}-{r}")


@pytest.mark.parametrize("name, params, kind, shape, reduction", list(_forward_ids()))
def test_forward(backend, dtype, name, params, kind, shape, reduction, rng):
    pred, target, p = make_inputs(name, params, kind, shape, dtype, rng)
    ref = loss_ref(name, pred, target, reduction, p)[0]
    loss = K.loss_forward(pred, target, name, reduction=reduction, **p)
    if reduction != "none":
        assert loss.shape == (), f"{reduction} must give a 0-d array, got {loss.shape}"
    assert_close(loss, ref, dtype, scale=loss_scale(name, pred, target, reduction, p),
                 what=f"{name}{params} {reduction}")


# (reduction, upstream grad): default 1, a Python scalar, or a "none"-shaped array
GRADS = [("mean", None), ("sum", "scalar"), ("none", "scalar"), ("none", "array")]


def _backward_ids(names=None, kinds=None):
    for c in cases(names, kinds):
        name = c.values[0]
        grads = GRADS + ([("batchmean", None)] if name == "kl_div" else [])
        for shape in shapes_for(name):
            for r, g in grads:
                yield pytest.param(*c.values, shape, r, g,
                                   id=f"{c.id}-{shape_id(shape)}-{r}-{g or 'one'}")


def upstream(grad, name, pred, dtype, rng):
    if grad is None:
        return None
    if grad == "scalar":
        return 0.7
    return rng.standard_normal(none_shape(name, pred)).astype(dtype)


@pytest.mark.parametrize("name, params, kind, shape, reduction, grad", list(_backward_ids()))
def test_backward(backend, dtype, name, params, kind, shape, reduction, grad, rng):
    pred, target, p = make_inputs(name, params, kind, shape, dtype, rng)
    g = upstream(grad, name, pred, dtype, rng)
    _, dpred_ref, _ = loss_ref(name, pred, target, reduction, p, grad=g)
    kw = dict(reduction=reduction, **p)
    if g is not None:
        kw["grad"] = g
    dpred = K.loss_backward(pred, target, name, **kw)
    assert_close(dpred, dpred_ref, dtype, normwise=True, what=f"{name}{params} d/dpred")


TG_SHAPES = {"cross_entropy": [(7, 5), (3, 5, 7)]}


def _target_grad_ids():
    for c in cases(TARGET_GRAD, kinds={"float", "prob"}):
        name = c.values[0]
        for shape in TG_SHAPES.get(name, [(7,), (7, 33), (3, 5, 7)]):
            for r, g in [("mean", None), ("sum", "scalar"), ("none", "array")]:
                yield pytest.param(*c.values, shape, r, g,
                                   id=f"{c.id}-{shape_id(shape)}-{r}-{g or 'one'}")


@pytest.mark.parametrize("name, params, kind, shape, reduction, grad", list(_target_grad_ids()))
def test_target_grad(backend, dtype, name, params, kind, shape, reduction, grad, rng):
    pred, target, p = make_inputs(name, params, kind, shape, dtype, rng)
    g = upstream(grad, name, pred, dtype, rng)
    _, dpred_ref, dtarget_ref = loss_ref(name, pred, target, reduction, p, grad=g,
                                         target_grad=True)
    kw = dict(reduction=reduction, need_target_grad=True, **p)
    if g is not None:
        kw["grad"] = g
    out = K.loss_backward(pred, target, name, **kw)
    assert isinstance(out, tuple) and len(out) == 2, f"expected (dpred, dtarget), got {out!r}"
    assert_close(out[0], dpred_ref, dtype, normwise=True, what=f"{name} d/dpred")
    assert_close(out[1], dtarget_ref, dtype, normwise=True, what=f"{name} d/dtarget")


@pytest.mark.parametrize("name", fastnn.LOSSES)
def test_empty_batch(backend, dtype, name, rng):
    """0 rows: mean/batchmean NaN, sum 0, none empty; gradients empty (API.md)."""
    shape = (0, 5)
    kind = target_kinds(name, {})[0]
    pred, target, p = make_inputs(name, {}, kind, shape, dtype, rng)
    for r in reductions(name):
        loss = K.loss_forward(pred, target, name, reduction=r, **p)
        if r in ("mean", "batchmean"):
            assert loss.shape == () and np.isnan(loss), f"{r}: {loss}"
        elif r == "sum":
            assert loss.shape == () and loss == 0, f"sum: {loss}"
        else:
            assert loss.shape == none_shape(name, pred) and loss.dtype == dtype
        d = K.loss_backward(pred, target, name, reduction=r, **p)
        assert d.shape == pred.shape and d.dtype == dtype


@pytest.mark.parametrize("ignore_index", [-100, 1])
@pytest.mark.parametrize("name", sorted(CLASS_LOSSES & set(fastnn.LOSSES)))
def test_all_ignored(backend, dtype, name, ignore_index, rng):
    """Every target ignored: "mean" is NaN with an all-zero gradient; sum 0; none zeros."""
    pred = rng.standard_normal((4, 3)).astype(dtype)
    target = np.full(4, ignore_index, dtype=np.int64)
    kw = dict(ignore_index=ignore_index)
    loss = K.loss_forward(pred, target, name, reduction="mean", **kw)
    assert loss.shape == () and np.isnan(loss), loss
    d = K.loss_backward(pred, target, name, reduction="mean", **kw)
    np.testing.assert_array_equal(d, np.zeros_like(pred))
    np.testing.assert_array_equal(K.loss_forward(pred, target, name, reduction="sum", **kw), 0)
    np.testing.assert_array_equal(K.loss_forward(pred, target, name, reduction="none", **kw),
                                  np.zeros(4))
    np.testing.assert_array_equal(loss_ref(name, pred, target, "mean", kw)[1], d)  # torch agrees


KINKS = [("mae", {}), ("huber", {}), ("huber", {"delta": 0.5}), ("smooth_l1", {}),
         ("smooth_l1", {"beta": 0.0})]


@pytest.mark.parametrize("name, params", [pytest.param(n, p, id=f"{n}-{param_id(p)}")
                                          for n, p in KINKS])
def test_kink_pred_equals_target(backend, dtype, name, params):
    """d/dpred and d/dtarget are 0 where pred == target (API.md table, torch's)."""
    pred = np.array([-1.5, 0.0, 0.25, 2.0, 3.0], dtype=dtype)
    target = np.array([-1.5, 0.0, 0.75, 2.0, -3.0], dtype=dtype)
    tie = pred == target
    dp, dt = K.loss_backward(pred, target, name, reduction="sum", need_target_grad=True,
                                  **params)
    _, dp_ref, dt_ref = loss_ref(name, pred, target, "sum", params, target_grad=True)
    assert np.all(dp[tie] == 0) and np.all(dt[tie] == 0), (dp, dt)
    assert_close(dp, dp_ref, dtype, what="d/dpred")
    assert_close(dt, dt_ref, dtype, what="d/dtarget")


EXTREMES = {
    "cross_entropy": ([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0], [60.0, -60.0, 0.0],
                       [-60.0, 60.0, 60.0]], [1, 2, 1, 0]),
    "nll": ([[-1000.0, 0.0, -60.0], [0.0, -1000.0, -60.0]], [0, 2]),
    "bce_with_logits": ([60.0, -60.0, 1000.0, -1000.0, 1000.0, -1000.0],
                        [0.0, 1.0, 0.3, 0.7, 1.0, 0.0]),
    "bce": ([0.0, 0.0, 1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0, 0.3, 0.6]),
    "poisson_nll": ([60.0, -60.0, 30.0, -30.0], [3.0, 0.0, 100.0, 1.0]),
    "log_cosh": ([1000.0, -1000.0, 60.0, -60.0], [0.0, 0.0, -0.5, 1.0]),
    "kl_div": ([-1000.0, -60.0, -1000.0, 0.0], [0.25, 0.0, 0.0, 0.75]),
    "hinge": ([60.0, -60.0, 1000.0, -1000.0], [1.0, 1.0, -1.0, -1.0]),
    "squared_hinge": ([60.0, -60.0, 1000.0, -1000.0], [1.0, 1.0, -1.0, -1.0]),
}


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", sorted(set(EXTREMES) & set(fastnn.LOSSES)))
def test_extreme_inputs(backend, dtype, name, reduction):
    """Logits at +-60 / +-1000 (bce at p in {0, 1}): finite, and torch's values/grads."""
    pred, target = EXTREMES[name]
    pred = np.array(pred, dtype=dtype)
    target = np.array(target, dtype=np.int64 if name in CLASS_LOSSES else dtype)
    ref, dref, _ = loss_ref(name, pred, target, reduction, {})
    loss = K.loss_forward(pred, target, name, reduction=reduction)
    d = K.loss_backward(pred, target, name, reduction=reduction)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(d)), (loss, d)
    assert_close(loss, ref, dtype, scale=loss_scale(name, pred, target, reduction, {}),
                 what="loss")
    assert_close(d, dref, dtype, normwise=True, what="d/dpred")


def test_extreme_cross_entropy_prob_targets(backend, dtype):
    pred = np.array([[1000.0, -1000.0, 0.0], [-60.0, 60.0, -1000.0]], dtype=dtype)
    target = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]], dtype=dtype)
    ref, dref, tref = loss_ref("cross_entropy", pred, target, "sum", {}, target_grad=True)
    loss = K.loss_forward(pred, target, "cross_entropy", reduction="sum")
    dp, dt = K.loss_backward(pred, target, "cross_entropy", reduction="sum",
                                  need_target_grad=True)
    assert_close(loss, ref, dtype, scale=loss_scale("cross_entropy", pred, target, "sum", {}))
    assert_close(dp, dref, dtype, normwise=True, what="d/dpred")
    assert_close(dt, tref, dtype, normwise=True, what="d/dtarget")


def test_bce_target_grad_at_edges(backend, dtype):
    """torch's d/dtarget of bce at p in {0, 1} is +-inf (log clamped only in the value)."""
    pred = np.array([0.0, 1.0, 0.0, 1.0, 0.5], dtype=dtype)
    target = np.array([0.0, 1.0, 1.0, 0.3, 0.5], dtype=dtype)
    _, dref, tref = loss_ref("bce", pred, target, "sum", {}, target_grad=True)
    dp, dt = K.loss_backward(pred, target, "bce", reduction="sum", need_target_grad=True)
    assert_close(dp, dref, dtype, what="d/dpred")
    assert_close(dt, tref, dtype, what="d/dtarget")


def test_aliases(backend, dtype, rng):
    pred, target, _ = make_inputs("mae", {}, "float", (7, 5), dtype, rng)
    for r in ("mean", "none"):
        np.testing.assert_array_equal(K.loss_forward(pred, target, "l1", reduction=r),
                                      K.loss_forward(pred, target, "mae", reduction=r))
        np.testing.assert_array_equal(K.loss_backward(pred, target, "l1", reduction=r),
                                      K.loss_backward(pred, target, "mae", reduction=r))


def test_log_cosh_exact_log2(backend):
    """log_cosh(x) = x + softplus(-2x) - log 2 with the exact log 2: 0 at x = 0 and
    ~x^2/2 (not a constant offset) for small x."""
    x = np.array([0.0, 1e-4, -1e-4, 0.5, -3.0], dtype=np.float64)
    got = K.loss_forward(x, np.zeros_like(x), "log_cosh", reduction="none")
    assert abs(got[0]) <= 1e-15, got[0]
    np.testing.assert_allclose(got, np.log(np.cosh(x)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["numpy-scalar", "0-d-array"])
@pytest.mark.parametrize("name", ["mse", "cross_entropy"])
def test_grad_scalar_kinds(backend, dtype, name, kind, rng):
    """grad given as a numpy scalar or a 0-d array of the inputs' dtype."""
    ekind = target_kinds(name, {})[0]
    pred, target, p = make_inputs(name, {}, ekind, (7, 5), dtype, rng)
    g = dtype.type(0.7) if kind == "numpy-scalar" else np.array(0.7, dtype=dtype)
    for r in ("mean", "none"):
        ref = loss_ref(name, pred, target, r, p, grad=float(g))[1]
        assert_close(K.loss_backward(pred, target, name, reduction=r, grad=g, **p), ref, dtype,
                     normwise=True, what=f"grad={kind} {r}")


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", fastnn.LOSSES)
def test_large(backend, dtype, name, reduction, rng):
    """~265k elements (257 x 1031, or 2053 rows x 129 classes): several parallel chunks
    of the reduction and of the gradient."""
    shape = (2053, 129) if name in CLASS_LOSSES else (257, 1031)
    pred, target, p = make_inputs(name, {}, target_kinds(name, {})[0], shape, dtype, rng)
    ref, dref, _ = loss_ref(name, pred, target, reduction, p)
    assert_close(K.loss_forward(pred, target, name, reduction=reduction, **p), ref, dtype,
                 scale=loss_scale(name, pred, target, reduction, p), what="loss")
    assert_close(K.loss_backward(pred, target, name, reduction=reduction, **p), dref, dtype,
                 normwise=True, what="d/dpred")
