"""The fastnn.keras suite runs once per Keras backend, each in its own process:
tests/test_keras_backends.py starts ``KERAS_BACKEND=<b> python -m pytest tests/keras`` with
FASTNN_KERAS_SUITE=1. Without that variable (the main ``python -m pytest`` run) nothing
here is collected: one process cannot switch Keras backends."""
import os

import numpy as np
import pytest

if os.environ.get("FASTNN_KERAS_SUITE") != "1":
    collect_ignore_glob = ["test_*.py"]
else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 layers (Keras' floatx stays float32)
    keras = pytest.importorskip("keras")

    @pytest.fixture(autouse=True)
    def _fresh_keras():
        """Each test starts from Keras' defaults (float32 policy, fresh layer names)."""
        keras.config.set_dtype_policy("float32")
        keras.utils.clear_session()
        yield
        keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng(request):
    import zlib
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
