"""The fastnn.keras suite, on the Keras backend KERAS_BACKEND names (one process cannot
switch Keras backends): ``KERAS_BACKEND=<b> python -m pytest tests_keras``.
tests/test_keras_backends.py (part of the main ``python -m pytest``) runs it once per
backend, each in its own process. It lives outside tests/ so that the main run's
conftest (torch, the CUDA emulator) stays out of these processes."""
import os

import numpy as np
import pytest

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
