"""Training with fastnn.keras like stock: the issue's example for 5 epochs, mixed
precision policies, the activation layers."""
import importlib.util
import os

import keras
import numpy as np
import pytest
from _util import close, close_updates, one_step

import fastnn.keras as fk

_spec = importlib.util.spec_from_file_location(
    "keras_mlp", os.path.join(os.path.dirname(__file__), "..", "examples", "keras_mlp.py"))
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def test_example_five_epochs_match_stock():
    """Same losses every epoch to float32 rounding: 100 Adam steps of identical math in
    a different summation order; differences stay at a few float32 roundoffs of the loss."""
    x, y = example.data(n=200)
    res = example.train_pair((20, 10, 1), x, y, epochs=5, batch_size=10)
    np.testing.assert_allclose(res["fastnn"][0], res["stock"][0], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="jit_compile=True with fastnn layers: torch "
                    "(torch.compile); tensorflow's layers opt out of XLA, jax always jits")
def test_jit_compile_trains_like_stock(rng):
    """On torch, jit_compile=True runs the train step under torch.compile: a fastnn model
    still trains like its stock twin there."""
    x = rng.standard_normal((64, 20)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    weights, losses = None, {}
    for name, Dense in (("stock", keras.layers.Dense), ("fastnn", fk.Dense)):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((20,)), Dense(10, activation="relu"), Dense(1, activation="sigmoid")])
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)
        model.compile(loss="binary_crossentropy", optimizer="adam", jit_compile=True)
        losses[name] = model.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
    np.testing.assert_allclose(losses["fastnn"], losses["stock"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_like_stock(policy, rng):
    """The kernels take the 16-bit tensors natively (float32 math, one rounding per
    output); stock rounds after each of its ops: values agree to the half type's precision (bfloat16: 8 bits, 4e-3
    relative; a few roundings deep), and both learn."""
    keras.config.set_dtype_policy(policy)
    x, y = example.data(n=64)
    res = example.train_pair((20, 16, 1), x, y, epochs=3, batch_size=16)
    tol = 3e-2 if policy == "mixed_bfloat16" else 5e-3
    np.testing.assert_allclose(res["fastnn"][0], res["stock"][0], rtol=tol)
    assert res["fastnn"][0][-1] < res["fastnn"][0][0]
    layer = fk.Dense(3, activation="relu")
    out = layer(x[:4])
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert keras.backend.standardize_dtype(layer.kernel.dtype) == "float32"  # variables stay float32


LAYERS = [
    ("Activation", ("gelu",), {}),
    ("Activation", ("softmax",), {}),
    ("Activation", ("squareplus",), {}),
    ("ReLU", (), {}),
    ("ReLU", (), {"max_value": 2.0, "negative_slope": 0.1, "threshold": 0.3}),
    ("LeakyReLU", (), {}),
    ("ELU", (), {"alpha": 0.5}),
    ("Softmax", (), {}),
    ("Softmax", (), {"axis": 1}),
]


@pytest.mark.parametrize("cls,args,kwargs", LAYERS, ids=[f"{c}{a}{k}" for c, a, k in LAYERS])
def test_activation_layers_match_stock(cls, args, kwargs, rng):
    def build(mod):
        return keras.Sequential([keras.Input((3, 4)), keras.layers.Dense(4), getattr(mod, cls)(*args, **kwargs),
                                 keras.layers.Dense(2)])
    fast, stock = build(fk), build(keras.layers)
    before = fast.get_weights()
    stock.set_weights(before)
    x = rng.uniform(-2, 2, (5, 3, 4)).astype("float32")
    y = rng.standard_normal((5, 3, 2)).astype("float32")
    close(fast.predict(x, verbose=0), stock.predict(x, verbose=0), what="forward")
    lf, wf = one_step(fast, x, y, "mse")
    ls, ws = one_step(stock, x, y, "mse")
    close(lf, ls, what="loss")
    close_updates(wf, ws, before, what=cls)
    cf, cs = fast.layers[1].get_config(), stock.layers[1].get_config()
    cf.pop("name"), cs.pop("name")
    assert cf == cs
