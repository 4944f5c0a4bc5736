"""fastnn.keras under tf.distribute.MirroredStrategy over 2 logical CPU devices, in one
subprocess (tests_keras/distributed_tf_probe.py; logical devices are set before TF starts):
fastnn.keras.Dense, with Keras' and with fastnn's SparseCategoricalCrossentropy, trains
(2 epochs of SGD, 2 replicas) to the losses and weights of stock keras.layers.Dense under
the same strategy and of a single-device run. The TF ops are per-replica kernels: each
replica runs them on its half of the batch; the strategy all-reduces the gradients.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(ROOT, "tests_keras", "distributed_tf_probe.py")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("tensorflow", "keras")),
                                 reason="tensorflow and keras are needed")]


@pytest.fixture(scope="module")
def probe():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"probe failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("name", ["mirrored_dense_stock_loss", "mirrored_dense_fastnn_loss"])
def test_mirrored_strategy_trains_like_stock(probe, name):
    res = probe[name]
    assert res["ok"], res.get("error")
    assert res["replicas"] == 2
