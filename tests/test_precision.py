"""float32 results of a kernel agree with its own float64 results on the same values.

The float64 run is itself checked against torch elsewhere to ~1e-12, so this measures how
much precision the float32 path loses (e.g. accumulating a sum or a softmax denominator
in float32, or a float32 constant).
"""
import numpy as np
import pytest

import fastnn
from _ref import activation_bands, activation_ref, dense_ref, dense_scales, loss_scale
from conftest import K, Tol, assert_close, dyadic_dense
from test_losses import make_inputs, target_kinds

# float32-vs-float64 tolerance, per op family (input values are float32-exact):
#   activation: an elementwise formula of a few float32 ops (exp/log/tanh/erf of a few
#       ulps each): rtol 1e-5 (~170 roundoffs); atol 1e-6 for results that are small by
#       cancellation of O(1) terms. softmax rows use the operand band of tests/_ref.py.
#   loss: per-element formulas as above, then reductions of up to ~1e3 terms: rtol 1e-5
#       of the summed magnitudes (loss_scale); gradients: atol 1e-6 of the largest entry.
#   dense: exact (dyadic) products, so y and z carry only the activation's rounding;
#       gradients are products of float32 dz with x or W: rtol 1e-5 of |dz| @ |W| etc.
PREC_TOL = {"activation": Tol(rtol=1e-5, atol=1e-6),
            "loss": Tol(rtol=1e-5, atol=1e-6),
            "dense": Tol(rtol=1e-5, atol=1e-6)}
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def both(fn, *arrays, **kw):
    """fn on float32 arrays and on the same values as float64."""
    lo = fn(*arrays, **kw)
    hi = fn(*[a.astype(F64) if isinstance(a, np.ndarray) and a.dtype == F32 else a
              for a in arrays], **{k: (v.astype(F64) if isinstance(v, np.ndarray)
                                      and v.dtype == F32 else v) for k, v in kw.items()})
    return lo, hi


ACT_CASES = [pytest.param(n, {}, id=n) for n in fastnn.ACTIVATIONS] + [
    pytest.param("gelu", {"approximate": "tanh"}, id="gelu-tanh"),
    pytest.param("softplus", {"beta": 2.0, "threshold": float("inf")}, id="softplus-beta=2-inf"),
    pytest.param("relu", {"negative_slope": 0.1, "max_value": 6.0}, id="relu-keras")]


@pytest.mark.parametrize("name, params", ACT_CASES)
def test_activation(backend, name, params):
    rng = np.random.default_rng(11)
    x = (3.0 * rng.standard_normal((7, 257))).astype(F32)
    dy = rng.standard_normal(x.shape).astype(F32)
    tol = PREC_TOL["activation"]
    y32, y64 = both(K.activation_forward, x, name, **params)
    assert_close(y32, y64, F32, tol=tol, **activation_bands(name, params, x, y64),
                 what="forward")
    saved = set(fastnn.saved_for_backward(name, **params))
    kw = {"x": x} if "x" in saved else {}
    if "y" in saved:  # the same saved output for both dtypes
        kw["y"] = activation_ref(name, params, x)[0].astype(F32)
    d32, d64 = both(K.activation_backward, dy, name, **kw, **params)
    assert_close(d32, d64, F32, tol=tol, **activation_bands(name, params, x, y64, dy),
                 what="backward")


def _loss_inputs(name, rng):
    kind = target_kinds(name, {})[0]
    return make_inputs(name, {}, kind, (33, 7), F32, rng)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", fastnn.LOSSES)
def test_loss(backend, name, reduction):
    rng = np.random.default_rng(12)
    pred, target, p = _loss_inputs(name, rng)
    tol = PREC_TOL["loss"]
    l32, l64 = both(K.loss_forward, pred, target, name, reduction=reduction, **p)
    assert_close(l32, l64, F32, tol=tol, scale=loss_scale(name, pred, target, reduction, p),
                 what="loss")
    g32, g64 = both(K.loss_backward, pred, target, name, reduction=reduction, **p)
    assert_close(g32, g64, F32, tol=tol, normwise=True, what="d/dpred")


DENSE_CASES = [pytest.param(n, {}, id=n) for n in fastnn.ACTIVATIONS]


@pytest.mark.parametrize("wl", ["oi", "io"])
@pytest.mark.parametrize("act, params", DENSE_CASES)
def test_dense(backend, act, params, wl):
    rng = np.random.default_rng(13)
    x, w, b = dyadic_dense((33, 65), 17, wl, True, F32, rng)
    dy = rng.standard_normal((33, 17)).astype(F32)
    tol = PREC_TOL["dense"]
    (y32, z32), (y64, z64) = both(K.dense_forward, x, w, b, activation=act,
                                  weight_layout=wl, keep_z=True, **params)
    assert_close(z32, z64, F32, tol=tol, what="z")
    assert_close(y32, y64, F32, tol=tol, **activation_bands(act, params, z64, y64),
                 what="y")
    ref = dense_ref(x, w, b, wl, act, params, dy)
    ysaved = ref["y"].astype(F32)  # the same saved output for both dtypes
    g32, g64 = both(K.dense_backward, dy, x, w, ysaved, z32, activation=act,
                    weight_layout=wl, **params)
    sc = dense_scales(x, w, wl, act, params, ref, dy)
    for key, lo, hi in zip(("dx", "dw", "db"), g32, g64):
        assert_close(lo, hi, F32, tol=tol, scale=sc[key], what=key)

