"""fastnn.keras under Keras' mixed precision (mixed_bfloat16, mixed_float16): the layers
and losses compute natively in the 16-bit compute dtype and behave as their stock twins.

References:
- the forward of Dense + activation against float64 numpy computed FROM THE SAME ROUNDED
  16-bit inputs and weights (what the kernels promise: float32 math, one rounding per
  output), to one rounding of the dtype;
- stock Keras on the same inputs and weights (its dtype rules, its values): output and
  variable dtypes equal, values to torch's per-dtype tolerances (stock rounds after its
  product, its bias add and its activation, fastnn once, so the two differ by a few
  roundings: bfloat16 rtol 1.6e-2, float16 1e-3, atol of the same order scaled to the
  values);
- a training step (gradients through the 16-bit kernels into float32 variables) and a few
  fit steps with Keras' LossScaleOptimizer under mixed_float16, against stock.
"""
import keras
import ml_dtypes
import numpy as np
import pytest
from _util import np_
from test_losses import CASES, IDS, C, N, OUT_ACT, _pred, _target

import fastnn.keras as fk

POLICIES = ["mixed_bfloat16", "mixed_float16"]
NP16 = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
# torch's per-dtype tolerances (rtol, atol relative to the largest value)
TOL16 = {"bfloat16": (1.6e-2, 1.6e-2), "float16": (1e-3, 1e-3)}
# one rounding of the dtype (half an ulp at 1: 2^-8, 2^-11) plus float32 summation noise
ONE_ROUNDING = {"bfloat16": 2.0 ** -8 + 1e-5, "float16": 2.0 ** -11 + 1e-5}


def _cd(policy):
    return policy.split("_")[1]


def _dt(t):
    return keras.backend.standardize_dtype(t.dtype)


def close16(got, ref, dtype, what="", scale=1.0):
    # through float32 (exact for 16-bit values): TF cannot hand a 0-d bfloat16 tensor to numpy
    got, ref = (np_(keras.ops.cast(t, "float32")).astype(np.float64) for t in (got, ref))
    rtol, atol = TOL16[dtype]
    band = atol * scale * max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(got, ref, rtol=rtol * scale, atol=band, err_msg=what)


def _ref_act(z, name):
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "softmax":
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    assert name == "linear"
    return z


@pytest.mark.parametrize("act", ["relu", "sigmoid", "softmax", None])
@pytest.mark.parametrize("policy", POLICIES)
def test_dense_mixed_matches_stock(policy, act, rng):
    """Dense with a mixed ``dtype=`` policy: 16-bit output, float32 variables, the value
    of float64 math on the rounded operands (one rounding), stock's value at the
    dtype's tolerance; a training step moves the float32 weights as stock's does."""
    cd = _cd(policy)
    x = rng.uniform(-2, 2, (7, 12)).astype("float32")
    y = rng.standard_normal((7, 5)).astype("float32")

    def build(mod):
        return keras.Sequential([keras.Input((12,)), mod.Dense(5, activation=act, dtype=policy)])

    fast, stock = build(fk), build(keras.layers)
    before = fast.get_weights()
    stock.set_weights(before)
    out_f, out_s = fast(x), stock(x)
    assert _dt(out_f) == _dt(out_s) == cd
    assert [_dt(v) for v in fast.weights] == [_dt(v) for v in stock.weights] == ["float32", "float32"]
    # the kernel's contract: float64 math on the 16-bit operands, rounded once
    r16, tol = NP16[cd], ONE_ROUNDING[cd]
    xr, wr, br = (np.asarray(a).astype(r16).astype(np.float64) for a in (x, *before))
    z = xr @ wr + br
    if keras.backend.backend() == "tensorflow" and act in ("sigmoid", "softmax"):
        z = z.astype(r16).astype(np.float64)  # TF: fastnn's linear part, then Keras' op (its logits),
        # which is stock's 16-bit sigmoid / softmax: TF's bf16 sigmoid measured up to ~2.2
        # roundings off float64 (0.0085 relative), so allow 3 (the kernel's part is exact above)
        tol = 3 * ONE_ROUNDING[cd]
    ref = _ref_act(z, act or "linear")
    np.testing.assert_allclose(np_(out_f).astype(np.float64), ref, rtol=tol, atol=tol * 1e-3, err_msg="vs float64")
    close16(out_f, out_s, cd, "vs stock")
    # gradients: one SGD step through the 16-bit kernels into the float32 variables
    for m in (fast, stock):
        m.compile(loss="mse", optimizer=keras.optimizers.SGD(0.1))
    lf, ls = fast.train_on_batch(x, y), stock.train_on_batch(x, y)
    close16(lf, ls, cd, "loss")
    for i, (a, b, w0) in enumerate(zip(fast.get_weights(), stock.get_weights(), before)):
        assert a.dtype == np.float32
        close16(a - w0, b - w0, cd, f"update of weight #{i}", scale=2.0)
        assert np.abs(a - w0).max() > 0


@pytest.mark.parametrize("layer,args", [("Activation", ("gelu",)), ("ReLU", ()), ("ELU", ()),
                                        ("Activation", ("tanh",))])
@pytest.mark.parametrize("policy", POLICIES)
def test_activation_layers_mixed(policy, layer, args, rng):
    """The activation layers under the global policy: a 16-bit output equal to stock's
    dtype; values of the rounded input's activation; the gradient (dx) like stock's."""
    keras.config.set_dtype_policy(policy)
    cd = _cd(policy)
    x = rng.uniform(-3, 3, (6, 9)).astype("float32")
    fast, stock = getattr(fk, layer)(*args), getattr(keras.layers, layer)(*args)
    out_f, out_s = fast(x), stock(x)
    assert _dt(out_f) == _dt(out_s) == cd
    close16(out_f, out_s, cd, "vs stock")
    model = {}
    for name, mod in (("fast", fk), ("stock", keras.layers)):  # dx through a Dense before it
        keras.utils.set_random_seed(3)
        model[name] = keras.Sequential([keras.Input((9,)), keras.layers.Dense(9), getattr(mod, layer)(*args)])
    model["stock"].set_weights(before := model["fast"].get_weights())
    t = rng.standard_normal((6, 9)).astype("float32")
    for m in model.values():
        m.compile(loss="mse", optimizer=keras.optimizers.SGD(0.1))
        m.train_on_batch(x, t)
    for i, (a, b, w0) in enumerate(zip(model["fast"].get_weights(), model["stock"].get_weights(), before)):
        close16(a - w0, b - w0, cd, f"update of weight #{i}", scale=2.0)


@pytest.mark.parametrize("cls,kwargs,tkind,pkind", CASES, ids=IDS)
@pytest.mark.parametrize("policy", POLICIES)
def test_loss_mixed_matches_stock(policy, cls, kwargs, tkind, pkind, rng):
    """Every loss class as stock under a mixed policy: by default the loss computes in
    floatx (float32: y_pred is cast first, as stock), with ``dtype=policy`` natively in
    the 16-bit dtype (value dtype equal to stock's); a training step of a mixed Dense
    through the 16-bit loss moves the weights as stock's does."""
    keras.config.set_dtype_policy(policy)
    cd = _cd(policy)
    y, p = _target(tkind, rng), _pred(pkind, rng)
    if pkind == "prob":  # stock's 16-bit BCE gives NaN at p = 1 (1 - eps rounds to 1: 0 * log 0), fastnn 0
        p = np.clip(p, 0.01, 0.99)
    p16 = keras.ops.cast(p, cd)
    default_f, default_s = getattr(fk.losses, cls)(**kwargs), getattr(keras.losses, cls)(**kwargs)
    vf, vs = default_f(y, p16), default_s(y, p16)
    assert _dt(vf) == _dt(vs) == "float32"
    close16(vf, vs, "float16")  # float32 math on the same (16-bit valued) input
    fast, stock = getattr(fk.losses, cls)(dtype=policy, **kwargs), getattr(keras.losses, cls)(dtype=policy, **kwargs)
    vf, vs = fast(y, p16), stock(y, p16)
    assert _dt(vf) == _dt(vs) == cd
    close16(vf, vs, cd, "16-bit loss", scale=2.0)
    none_f = getattr(fk.losses, cls)(dtype=policy, reduction="none", **kwargs)(y, p16)
    none_s = getattr(keras.losses, cls)(dtype=policy, reduction="none", **kwargs)(y, p16)
    assert _dt(none_f) == _dt(none_s) == cd
    close16(none_f, none_s, cd, "per sample", scale=2.0)
    # gradient: a mixed Dense (16-bit output) into the 16-bit loss, one SGD step
    x = rng.standard_normal((N, 5)).astype("float32")

    def build():
        return keras.Sequential([keras.Input((5,)), keras.layers.Dense(C, activation=OUT_ACT[pkind])])

    mf, ms = build(), build()
    ms.set_weights(before := mf.get_weights())
    mf.compile(loss=fast, optimizer=keras.optimizers.SGD(0.5))
    ms.compile(loss=stock, optimizer=keras.optimizers.SGD(0.5))
    lf, ls = mf.train_on_batch(x, y), ms.train_on_batch(x, y)
    close16(lf, ls, cd, "loss", scale=2.0)
    for i, (a, b, w0) in enumerate(zip(mf.get_weights(), ms.get_weights(), before)):
        close16(a - w0, b - w0, cd, f"update of weight #{i}", scale=4.0)


def _fit_pair(build, x, y, steps, optimizer):
    """History and weights of `build(mod)` for fastnn and stock, same initial weights."""
    out, w0 = {}, None
    for name, mod in (("fast", fk), ("stock", keras.layers)):
        model = build(mod)
        if w0 is None:
            w0 = model.get_weights()
        model.set_weights(w0)
        model.compile(loss="mse", optimizer=optimizer())
        hist = model.fit(x, y, batch_size=len(x) // steps, epochs=1, shuffle=False, verbose=0)
        out[name] = model
        out[name + "_loss"] = hist.history["loss"]
    return out, w0


def test_loss_scale_optimizer_mixed_float16(rng):
    """mixed_float16 fit: compile wraps the optimizer in a LossScaleOptimizer (as stock);
    a few steps land on stock's weights at float16 tolerance; a loss scale that overflows
    float16 in the backward (inf / nan gradients out of the 16-bit kernels) skips the step
    and halves the scale exactly as stock's."""
    keras.config.set_dtype_policy("mixed_float16")
    x = rng.standard_normal((32, 10)).astype("float32")
    y = (x[:, :1] * 0.5 - x[:, 1:2]).astype("float32")

    def build(mod):
        return keras.Sequential([keras.Input((10,)), mod.Dense(16, activation="relu"), mod.Dense(1)])

    res, w0 = _fit_pair(build, x, y, 4, lambda: keras.optimizers.SGD(0.05))
    for name in ("fast", "stock"):
        assert isinstance(res[name].optimizer, keras.optimizers.LossScaleOptimizer)
        assert _dt(res[name](x[:2])) == "float16"
    close16(res["fast_loss"][0], res["stock_loss"][0], "float16", scale=3.0)
    for i, (a, b, w) in enumerate(zip(res["fast"].get_weights(), res["stock"].get_weights(), w0)):
        close16(a - w, b - w, "float16", f"weight #{i} after 4 steps", scale=5.0)
    # an overflowing scale: 2^40 * dloss overflows float16 in the backward; both skip
    res, w0 = _fit_pair(build, x, y, 1, lambda: keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.05), initial_scale=2.0 ** 40))
    for name in ("fast", "stock"):
        for a, w in zip(res[name].get_weights(), w0):
            np.testing.assert_array_equal(a, w, err_msg=f"{name}: an overflowed step must be skipped")
        assert float(np_(res[name].optimizer.dynamic_scale)) == 2.0 ** 39
