"""fastnn.keras.losses against keras.losses: every loss of API.md with its arguments,
every reduction, with and without sample_weight (values), and the weights of a Dense
after one SGD step through the loss (gradients, on the backend's autodiff and jit)."""
import keras
import numpy as np
import pytest
from _util import close, close_updates, one_step

import fastnn.keras as fk

# (class name, kwargs, target kind, prediction kind)
CASES = [
    ("MeanSquaredError", {}, "real", "real"),
    ("MeanAbsoluteError", {}, "real", "real"),
    ("Huber", {"delta": 0.5}, "real", "real"),
    ("LogCosh", {}, "real", "real"),
    ("Hinge", {}, "binary", "real"),
    ("Hinge", {}, "pm1", "real"),
    ("SquaredHinge", {}, "binary", "real"),
    ("Poisson", {}, "count", "positive"),
    ("KLDivergence", {}, "dist", "dist"),
    ("BinaryCrossentropy", {}, "binary", "prob"),
    ("BinaryCrossentropy", {"label_smoothing": 0.1}, "binary", "prob"),
    ("BinaryCrossentropy", {"from_logits": True}, "binary", "real"),
    ("CategoricalCrossentropy", {}, "onehot", "dist"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.2}, "onehot", "real"),
    ("SparseCategoricalCrossentropy", {}, "index", "dist"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "index", "real"),
]
IDS = [f"{c}-{','.join(f'{k}={v}' for k, v in kw.items()) or 'default'}-{t}" for c, kw, t, _ in CASES]
OUT_ACT = {"real": None, "positive": "softplus", "prob": "sigmoid", "dist": "softmax"}
N, C = 6, 4


def _target(kind, rng):
    if kind == "real":
        return rng.standard_normal((N, C)).astype("float32")
    if kind == "binary":
        return rng.integers(0, 2, (N, C)).astype("float32")
    if kind == "pm1":
        return (2 * rng.integers(0, 2, (N, C)) - 1).astype("float32")
    if kind == "count":
        return rng.poisson(2.0, (N, C)).astype("float32")
    if kind == "dist":
        p = rng.uniform(0.05, 1, (N, C))
        return (p / p.sum(-1, keepdims=True)).astype("float32")
    if kind == "onehot":
        return np.eye(C, dtype="float32")[rng.integers(0, C, N)]
    return rng.integers(0, C, (N,)).astype("int32")  # index


def _pred(kind, rng):
    z = rng.standard_normal((N, C))
    if kind == "positive":
        return np.log1p(np.exp(z)).astype("float32")
    if kind == "prob":
        p = 1 / (1 + np.exp(-3 * z))
        p[0, :2] = [0.0, 1.0]  # exactly 0 and 1: Keras' epsilon clipping
        return p.astype("float32")
    if kind == "dist":
        e = np.exp(z)
        return (e / e.sum(-1, keepdims=True)).astype("float32")
    return z.astype("float32")


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"])
@pytest.mark.parametrize("cls,kwargs,tkind,pkind", CASES, ids=IDS)
def test_loss_values(cls, kwargs, tkind, pkind, reduction, rng):
    y, p = _target(tkind, rng), _pred(pkind, rng)
    sw = rng.uniform(0.2, 2.0, (N,)).astype("float32")
    fast = getattr(fk.losses, cls)(reduction=reduction, **kwargs)
    stock = getattr(keras.losses, cls)(reduction=reduction, **kwargs)
    close(fast(y, p), stock(y, p), what="no sample_weight")
    close(fast(y, p, sample_weight=sw), stock(y, p, sample_weight=sw), what="sample_weight")
    assert fast.get_config() == stock.get_config()


@pytest.mark.parametrize("cls,kwargs,tkind,pkind", CASES, ids=IDS)
def test_loss_training_step(cls, kwargs, tkind, pkind, rng):
    y = _target(tkind, rng)
    x = rng.standard_normal((N, 5)).astype("float32")
    sw = rng.uniform(0.2, 2.0, (N,)).astype("float32")
    act = OUT_ACT[pkind]

    def build():
        return keras.Sequential([keras.Input((5,)), keras.layers.Dense(C, activation=act, name="out")])

    fast, stock = build(), build()
    before = fast.get_weights()
    stock.set_weights(before)
    lf, wf = one_step(fast, x, y, getattr(fk.losses, cls)(**kwargs), sample_weight=sw)
    ls, ws = one_step(stock, x, y, getattr(keras.losses, cls)(**kwargs), sample_weight=sw)
    close(lf, ls, what="loss")
    close_updates(wf, ws, before, what=cls)


def test_loss_serialization_and_errors(tmp_path, rng):
    loss = fk.losses.Huber(delta=0.3, reduction="sum")
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(again) is fk.losses.Huber and again.get_config() == loss.get_config()
    with pytest.raises(ValueError):
        fk.losses.MeanSquaredError(reduction="no_such_reduction")
    with pytest.raises(ValueError):
        fk.losses.CategoricalCrossentropy(axis=True)(np.eye(3), np.eye(3))


def test_bce_non_finite_predictions_do_not_crash():
    p = np.array([[np.nan, 0.5], [np.inf, 0.2]], "float32")
    out = keras.ops.convert_to_numpy(fk.losses.BinaryCrossentropy(reduction="none")(np.ones((2, 2), "float32"), p))
    assert out.shape == (2,) and np.isnan(out[0])
