"""fastnn.keras on jax over forced host devices: run by tests/test_distributed_jax.py in its
own process (XLA_FLAGS must be set before jax starts). Prints one JSON object: per case,
"ok" or the failure, and the collectives of fastnn's and stock's compiled steps.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 KERAS_BACKEND=jax \
        python tests_keras/distributed_jax_probe.py
"""
import json
import os
import re
import sys
import traceback

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

jax.config.update("jax_enable_x64", True)

from fastnn.keras import _jax  # noqa: E402

COLLECTIVE = re.compile(r"\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(?:-start)?\(")


def collectives(fn, *args):
    """The collective instructions of fn's compiled module, by kind."""
    out = {}
    for kind in COLLECTIVE.findall(jax.jit(fn).lower(*args).compile().as_text()):
        out[kind] = out.get(kind, 0) + 1
    return out


STOCK_ACT = {"linear": lambda v: v, "tanh": jnp.tanh, "relu": jax.nn.relu, "gelu": lambda v: jax.nn.gelu(v, False)}


def dense_step(act, fast):
    def f(x, w, b, t):
        y = _jax.dense(x, w, b, act, ()) if fast else STOCK_ACT[act](x @ w + b)
        return jnp.sum((y - t) ** 2)
    return jax.value_and_grad(f, argnums=(0, 1, 2))


def softmax_ce_step(fast):
    """softmax activation, then the cross-entropy loss kernel on integer labels (per row)."""
    def f(x, w, labels):
        z = x @ w
        if fast:
            p = _jax.activation(z, "softmax", ())
            per_row = _jax.loss(z, labels, "cross_entropy", (), labels.shape)
        else:
            p = jax.nn.softmax(z, axis=-1)
            per_row = -jnp.take_along_axis(jax.nn.log_softmax(z, -1), labels[:, None], 1)[:, 0]
        return jnp.sum(per_row) + jnp.sum(p ** 2)
    return jax.value_and_grad(f, argnums=(0, 1))


def put(mesh, a, spec):
    return jax.device_put(a, NamedSharding(mesh, spec))


def compare(fast, stock, args):
    got, ref = fast(*args), stock(*args)
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-10, atol=1e-10)
    return {"fast": collectives(fast, *args), "stock": collectives(stock, *args)}


def dense_cases(rng):
    devs = np.array(jax.devices())
    mesh1 = Mesh(devs[:2], ("d",))
    mesh2 = Mesh(devs[:4].reshape(2, 2), ("batch", "model"))
    x = rng.standard_normal((8, 6))
    x3 = rng.standard_normal((4, 3, 6))
    w, b = rng.standard_normal((6, 10)), rng.standard_normal(10)
    t, t3 = rng.standard_normal((8, 10)), rng.standard_normal((4, 3, 10))
    cases = {
        # name: (mesh, x, x spec, w spec, b spec, target, target spec, activation, rule exists)
        "data_parallel": (mesh1, x, P("d"), P(), P(), t, P("d"), "tanh", True),
        "model_parallel": (mesh1, x, P(), P(None, "d"), P("d"), t, P(None, "d"), "gelu", True),
        "data_and_model_2d": (mesh2, x, P("batch"), P(None, "model"), P("model"), t, P("batch", "model"), "relu",
                              True),
        "data_parallel_3d_input": (mesh1, x3, P("d"), P(), P(), t3, P("d"), "linear", True),
        "row_parallel": (mesh1, x, P(None, "d"), P("d", None), P(), t, P(), "linear", True),
        "row_parallel_activation_no_rule": (mesh1, x, P(None, "d"), P("d", None), P(), t, P(), "tanh", False),
    }
    out = {}
    for name, (mesh, xa, xs, ws, bs, ta, ts, act, rule) in cases.items():
        args = (put(mesh, xa, xs), put(mesh, w, ws), put(mesh, b, bs), put(mesh, ta, ts))
        out[name] = dict(compare(dense_step(act, True), dense_step(act, False), args), rule=rule)
    # two layers, the first column-parallel, the second row-parallel (Megatron's MLP), on a
    # (batch, model) mesh
    w2, b2 = rng.standard_normal((10, 4)), rng.standard_normal(4)

    def mlp(fast):
        def f(x, w, b, w2, b2, t):
            if fast:
                y = _jax.dense(_jax.dense(x, w, b, "tanh", ()), w2, b2, "linear", ())
            else:
                y = jnp.tanh(x @ w + b) @ w2 + b2
            return jnp.mean((y - t) ** 2)
        return jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4))
    args = (put(mesh2, x, P("batch")), put(mesh2, w, P(None, "model")), put(mesh2, b, P("model")),
            put(mesh2, w2, P("model", None)), put(mesh2, b2, P()), put(mesh2, t[:, :4], P("batch")))
    out["mlp_column_then_row_2d"] = dict(compare(mlp(True), mlp(False), args), rule=True)
    labels = rng.integers(0, 10, 8)
    args = (put(mesh1, x, P("d")), put(mesh1, w, P()), put(mesh1, labels, P("d")))
    out["softmax_and_cross_entropy_data_parallel"] = dict(compare(softmax_ce_step(True), softmax_ce_step(False),
                                                                  args), rule=True)
    return out


def keras_fit(distribution, layer_cls, seed=0):
    import keras  # noqa: PLC0415

    keras.distribution.set_distribution(distribution)
    try:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((6,)), layer_cls(16, activation="tanh", name="d1"),
                                  layer_cls(4, name="d2")])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        rng = np.random.default_rng(1)
        x, y = rng.standard_normal((32, 6)).astype("float32"), rng.standard_normal((32, 4)).astype("float32")
        hist = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return hist.history["loss"], [np.asarray(v) for v in model.get_weights()], model
    finally:
        keras.distribution.set_distribution(None)


def keras_cases():
    import keras  # noqa: PLC0415

    import fastnn.keras as fk  # noqa: PLC0415

    devices = keras.distribution.list_devices()
    out = {}
    mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"], devices[:4])
    layout = keras.distribution.LayoutMap(mesh)
    layout[".*d1/kernel"] = (None, "model")
    layout[".*d1/bias"] = ("model",)
    layout[".*d2/kernel"] = ("model", None)
    dists = {"keras_data_parallel": lambda: keras.distribution.DataParallel(devices=devices[:2]),
             "keras_model_parallel": lambda: keras.distribution.ModelParallel(layout_map=layout,
                                                                              batch_dim_name="batch")}
    for name, make in dists.items():
        loss_s, w_s, _ = keras_fit(make(), keras.layers.Dense)
        loss_f, w_f, model = keras_fit(make(), fk.Dense)
        np.testing.assert_allclose(loss_f, loss_s, rtol=2e-5, atol=1e-6)
        for a, b in zip(w_f, w_s):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
        kernel = model.layers[0].kernel.value
        out[name] = {"losses": [float(v) for v in loss_f], "kernel_sharding": str(kernel.sharding.spec)}
    return out


def main():
    rng = np.random.default_rng(0)
    results = {"status": _jax.status()}
    for group in (dense_cases, keras_cases):
        try:
            for name, res in group(*((rng,) if group is dense_cases else ())).items():
                results[name] = dict(res, ok=True)
        except Exception:  # noqa: BLE001 - reported by the test
            results[group.__name__] = {"ok": False, "error": traceback.format_exc()[-4000:]}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
