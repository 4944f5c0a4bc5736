"""fastnn.keras under tf.distribute.MirroredStrategy over 2 logical CPU devices, in one
subprocess (tests_keras/distributed_tf_probe.py; logical devices are set before TF starts):
fastnn.keras.Dense, with Keras' and with fastnn's SparseCategoricalCrossentropy, trains
(2 epochs of SGD, 2 replicas) to the losses and weights of stock keras.layers.Dense under
the same strategy and of a single-device run. The TF ops are per-replica kernels: each
replica runs them on its half of the batch; the strategy all-reduces the gradients.
"""
import importlib.util

import pytest
from _probe import run_probe


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("tensorflow", "keras")),
                                 reason="tensorflow and keras are needed")]


@pytest.fixture(scope="module")
def probe():
    return run_probe("distributed_tf_probe.py", "tensorflow")


@pytest.mark.parametrize("name", ["mirrored_dense_stock_loss", "mirrored_dense_fastnn_loss"])
def test_mirrored_strategy_trains_like_stock(probe, name):
    res = probe[name]
    assert res["ok"], res.get("error")
    assert res["replicas"] == 2
