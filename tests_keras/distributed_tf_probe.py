"""fastnn.keras under tf.distribute.MirroredStrategy over 2 logical CPU devices: run by
tests/test_distributed_tf.py in its own process (logical devices are set before TF starts).
Prints one JSON object: per case, "ok" or the failure, and the losses.

    KERAS_BACKEND=tensorflow python tests_keras/distributed_tf_probe.py
"""
import json
import os
import sys
import traceback

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import fastnn.keras as fk  # noqa: E402
from fastnn.keras import _tf  # noqa: E402


def fit(layer_cls, loss, strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), layer_cls(16, activation="relu"), layer_cls(3)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((32, 6)).astype("float32"), rng.integers(0, 3, 32)
    hist = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return hist.history["loss"], model.get_weights()


def main():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    results = {"status": _tf.status(), "devices": devices}
    mirrored = tf.distribute.MirroredStrategy(devices[:2])
    one = tf.distribute.get_strategy()  # the default (no) strategy
    cases = {
        "mirrored_dense_stock_loss": (keras.losses.SparseCategoricalCrossentropy(from_logits=True), mirrored),
        "mirrored_dense_fastnn_loss": ("fastnn", mirrored),
    }
    for name, (loss, strategy) in cases.items():
        try:
            fast_loss = fk.losses.SparseCategoricalCrossentropy(from_logits=True) if loss == "fastnn" else loss
            ref_l, ref_w = fit(keras.layers.Dense, keras.losses.SparseCategoricalCrossentropy(from_logits=True), one)
            stock_l, stock_w = fit(keras.layers.Dense, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                   strategy)
            got_l, got_w = fit(fk.Dense, fast_loss, strategy)
            for a, b in ((got_l, stock_l), (got_l, ref_l)):
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
            for a, b, c in zip(got_w, stock_w, ref_w):
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
                np.testing.assert_allclose(a, c, rtol=2e-5, atol=2e-6)
            results[name] = {"ok": True, "losses": [float(v) for v in got_l], "replicas": strategy.num_replicas_in_sync}
        except Exception:  # noqa: BLE001 - reported by the test
            results[name] = {"ok": False, "error": traceback.format_exc()[-4000:]}
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
