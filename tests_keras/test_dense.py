"""fastnn.keras.Dense against keras.layers.Dense: every activation string fastnn maps,
with and without bias, 2-D and 3-D inputs, float32 and float64; values, and weights
after one SGD step (which checks the gradients of x, kernel and bias: every branch
below reads the input through another Dense)."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from _util import close, close_updates, np_, one_step

import fastnn.keras as fk
from fastnn.keras import _activations

# every Keras activation string fastnn has a kernel for, plus None and one it has not
MAPPED = ["linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish", "mish",
          "sigmoid", "hard_sigmoid", "hard_silu", "hard_swish", "tanh", "softplus", "softsign", "log_sigmoid",
          "hard_tanh", "exponential", "softmax", "log_softmax"]
ACTIVATIONS = MAPPED + [None, "squareplus"]


def test_every_mapped_string_has_a_kernel():
    for name in MAPPED:
        assert _activations.fastnn_spec(keras.activations.get(name)) is not None, name
    assert _activations.fastnn_spec(keras.activations.get("squareplus")) is None


def _branches(layers, shape, use_bias, dtype):
    """One input, a Dense(4) feature layer, then one Dense(3, act) branch per activation,
    concatenated: one model checks every activation."""
    inp = keras.Input(shape, dtype=dtype)
    h = layers.Dense(4, use_bias=use_bias, dtype=dtype, name="features")(inp)
    outs = [layers.Dense(3, activation=a, use_bias=use_bias, dtype=dtype, name=f"act_{a}")(h) for a in ACTIVATIONS]
    return keras.Model(inp, keras.layers.Concatenate(dtype=dtype)(outs))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rank,use_bias", [(2, True), (3, False), (2, False), (3, True)])
def test_dense_matches_stock(rank, use_bias, dtype, rng):
    shape = (6,) if rank == 2 else (2, 6)
    fast = _branches(fk, shape, use_bias, dtype)
    stock = _branches(keras.layers, shape, use_bias, dtype)
    weights = fast.get_weights()
    if use_bias:  # nonzero biases, so a missing bias term shows
        weights = [w + rng.uniform(-0.3, 0.3, w.shape).astype(w.dtype) if w.ndim == 1 else w for w in weights]
        fast.set_weights(weights)
    stock.set_weights(weights)
    x = rng.uniform(-1.5, 1.5, (5,) + shape).astype(dtype)
    y = rng.uniform(-1, 1, (5,) + shape[:-1] + (3 * len(ACTIVATIONS),)).astype(dtype)
    yf, ys = fast.predict(x, verbose=0), stock.predict(x, verbose=0)
    assert yf.dtype == ys.dtype == np.dtype(dtype)
    for i, a in enumerate(ACTIVATIONS):
        close(yf[..., 3 * i:3 * i + 3], ys[..., 3 * i:3 * i + 3], dtype, what=f"forward {a}")
    lf, wf = one_step(fast, x, y, "mse")
    ls, ws = one_step(stock, x, y, "mse")
    close(lf, ls, dtype, what="loss")
    names = [v.path for v in fast.weights]
    for name, f, s, b in zip(names, wf, ws, weights):
        close_updates([f], [s], [b], dtype, what=name)


def test_kernel_path_is_taken(monkeypatch, rng):
    """The layer calls the bridge (and not Keras' matmul) for mapped activations."""
    from fastnn.keras import _bridge
    calls = []
    real = _bridge.get

    class Spy:
        def __getattr__(self, name):
            fn = getattr(real(), name)
            return lambda *a, **k: calls.append(name) or fn(*a, **k)

    monkeypatch.setattr(_bridge, "get", lambda: Spy())
    layer = fk.Dense(3, activation="gelu")
    layer(rng.standard_normal((2, 4)).astype("float32"))
    assert calls == ["dense"]


def test_activation_set_to_none_after_build(rng):
    """Setting ``layer.activation = None`` on a built layer (to read the pre-activation)
    makes it linear, as stock Dense does."""
    x = rng.standard_normal((5, 7)).astype("float32")
    mine, stock = fk.Dense(3, activation="relu"), keras.layers.Dense(3, activation="relu")
    mine.build((None, 7))
    stock.build((None, 7))
    stock.set_weights(mine.get_weights())
    mine.activation = stock.activation = None
    close(np_(mine(x)), np_(stock(x)), "float32")
    w, b = mine.get_weights()
    close(np_(mine(x)), x.astype(np.float64) @ w + b, "float32")


def test_config_weights_and_swap(rng):
    f = fk.Dense(5, activation="relu", input_dim=4)
    s = keras.layers.Dense(5, activation="relu", input_shape=(4,))
    f.build((None, 4))
    s.build((None, 4))
    cf, cs = f.get_config(), s.get_config()
    cf.pop("name"), cs.pop("name")
    assert cf == cs
    assert [w.shape for w in f.weights] == [(4, 5), (5,)] and [v.name for v in f.weights] == ["kernel", "bias"]
    s.set_weights(f.get_weights())
    x = rng.standard_normal((3, 4)).astype("float32")
    close(f(x), s(x))
    f.set_weights([w * 2 for w in s.get_weights()])
    s.set_weights(f.get_weights())
    close(f(x), s(x))
    assert f.compute_output_shape((None, 7, 4)) == (None, 7, 5)


def test_summary_save_load_and_partial_batch(tmp_path, rng):
    model = keras.Sequential([fk.Dense(6, input_dim=5, activation="tanh"), fk.Dense(2)])
    lines = []
    model.summary(print_fn=lambda s, **k: lines.append(s))
    text = "\n".join(lines)
    assert "Dense" in text and "Total params: 50" in text.replace(",", "")
    x = rng.standard_normal((25, 5)).astype("float32")  # batch 10: a last batch of 5
    y = model.predict(x, batch_size=10, verbose=0)
    assert y.shape == (25, 2)
    close(y, model(x))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert all(type(a) is type(b) for a, b in zip(loaded.layers, model.layers))
    assert type(loaded.layers[0]) is fk.Dense
    np.testing.assert_array_equal(loaded.predict(x, batch_size=10, verbose=0), y)


def test_lora_and_quantize_pass_through(rng):
    x = rng.standard_normal((4, 6)).astype("float32")
    f, s = fk.Dense(3, activation="relu"), keras.layers.Dense(3, activation="relu")
    f.build((None, 6))
    s.build((None, 6))
    s.set_weights(f.get_weights())
    f.enable_lora(2)
    s.enable_lora(2)
    for a, b in zip(f.weights, s.weights):  # nonzero lora_kernel_b, so the delta matters
        b.assign(a + 0.1 if a.path.endswith("lora_kernel_b") else a)
    for a, b in zip(f.weights, s.weights):
        a.assign(b)
    close(f(x), s(x))
    fq, sq = fk.Dense(3), keras.layers.Dense(3)
    fq.build((None, 6))
    sq.build((None, 6))
    sq.set_weights(fq.get_weights())
    fq.quantize("int8")
    sq.quantize("int8")
    np.testing.assert_allclose(np_(fq(x)), np_(sq(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_do_not_crash(bad, rng):
    model = keras.Sequential([keras.Input((4,)), fk.Dense(3, activation="relu"), fk.Dense(1, activation="sigmoid")])
    x = rng.standard_normal((6, 4)).astype("float32")
    x[1, 2] = bad
    assert model.predict(x, verbose=0).shape == (6, 1)
    model.compile(loss=fk.losses.BinaryCrossentropy(), optimizer="sgd")
    model.train_on_batch(x, np.ones((6, 1), "float32"))  # NaN loss and weights; no exception


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="units"):
        fk.Dense(0)
    with pytest.raises(ValueError):
        fk.Dense(3, activation="no_such_activation")
    layer = fk.Dense(3)
    layer.build((None, 4))
    with pytest.raises(ValueError):
        layer(np.zeros((2, 5), "float32"))


_SAVE_ELSEWHERE = """
import os, sys
import numpy as np
import keras
import fastnn.keras as fk
import fastnn.keras.losses as fl
keras.utils.set_random_seed(3)
model = keras.Sequential([keras.Input((5,)), fk.Dense(6, activation="gelu"), fk.ReLU(),
                          fk.Dense(3, use_bias=False), fk.Softmax()])
model.compile(loss=fl.CategoricalCrossentropy(label_smoothing=0.1), optimizer="sgd")
x = np.random.default_rng(0).standard_normal((9, 5)).astype("float32")
np.save(sys.argv[2], x)
np.save(sys.argv[3], model.predict(x, verbose=0))
model.save(sys.argv[1])
"""


@pytest.mark.parametrize("source", ["tensorflow", "jax", "torch"])
def test_a_model_saved_on_another_backend_loads_here(tmp_path, source):
    """.keras files carry no backend: one saved by a fastnn model on `source` loads on this
    backend as fastnn layers and losses, with the same predictions."""
    if source == keras.backend.backend():
        pytest.skip("the same backend: test_summary_save_load_and_partial_batch")
    path, xs, ys = (str(tmp_path / n) for n in ("m.keras", "x.npy", "y.npy"))
    env = dict(os.environ, KERAS_BACKEND=source)
    r = subprocess.run([sys.executable, "-c", _SAVE_ELSEWHERE, path, xs, ys], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    loaded = keras.models.load_model(path)
    assert [type(layer).__module__ for layer in loaded.layers] == ["fastnn.keras.layers"] * 4
    assert type(loaded.loss).__module__ == "fastnn.keras.losses"
    close(loaded.predict(np.load(xs), verbose=0), np.load(ys))


# ---- sparse inputs ----------------------------------------------------------------------

def _sparse(x):
    """x as the current backend's sparse tensor, the kind stock Dense accepts."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.sparse.from_dense(x)
    if backend == "jax":
        from jax.experimental import sparse
        return sparse.BCOO.fromdense(x)
    import torch
    return torch.tensor(x).to_sparse()


def _sparse_input(rng, shape, dtype):
    x = rng.uniform(-1.5, 1.5, shape)
    x[rng.uniform(size=shape) < 0.7] = 0.0  # ~70% zeros, one all-zero row
    x[0] = 0.0
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "sigmoid", "softmax", None, "squareplus"])
def test_sparse_inputs_as_stock(activation, dtype, rng):
    """A sparse input (tf.SparseTensor / jax BCOO / torch sparse COO) gives stock Dense's
    output: the same values as stock on the same sparse tensor, and as the float64
    formula act(x @ W + b) on its dense twin."""
    x = _sparse_input(rng, (6, 9), dtype)
    mine = fk.Dense(4, activation=activation, dtype=dtype)
    stock = keras.layers.Dense(4, activation=activation, dtype=dtype)
    mine.build((None, 9))
    stock.build((None, 9))
    w, b = mine.get_weights()
    b = b + rng.uniform(-0.5, 0.5, b.shape).astype(dtype)
    mine.set_weights([w, b])
    stock.set_weights([w, b])
    ym, ys = np_(mine(_sparse(x))), np_(stock(_sparse(x)))
    assert ym.dtype == np.dtype(dtype) and ym.shape == (6, 4)
    close(ym, ys, dtype, what=f"sparse {activation} vs stock")
    z = x.astype(np.float64) @ w + b
    act = keras.activations.get(activation)
    ref = np_(act(keras.ops.convert_to_tensor(z.astype(dtype)))) if activation else z
    close(ym, ref, dtype, what=f"sparse {activation} vs the dense formula")


@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="stock keras.Input(sparse=True) is tensorflow / jax only")
def test_sparse_model_trains_as_stock(rng):
    """keras.Input(sparse=True) -> Dense: one SGD step on a sparse batch updates the
    weights as stock does (the gradients of kernel and bias through the sparse matmul)."""
    def build(mod):
        inp = keras.Input((9,), sparse=True)
        return keras.Model(inp, mod.Dense(3, activation="tanh")(inp))

    fast, stock = build(fk), build(keras.layers)
    weights = fast.get_weights()
    stock.set_weights(weights)
    x = _sparse(_sparse_input(rng, (8, 9), "float32"))
    y = rng.uniform(-1, 1, (8, 3)).astype("float32")
    lf, wf = one_step(fast, x, y, "mse")
    ls, ws = one_step(stock, x, y, "mse")
    close(lf, ls, what="loss")
    close_updates(wf, ws, weights, what="sparse Dense")
