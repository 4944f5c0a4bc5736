"""Runs the fastnn.keras suite (tests_keras/) once per Keras backend, each in its own
process (one process cannot switch Keras backends):

    KERAS_BACKEND=<backend> python -m pytest tests_keras -q -x -p no:cacheprovider

Skipped, with the reason, where keras or the backend's framework is not installed."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORK = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


# The quick tier's share of the suite (python -m pytest without --full): Dense against
# stock Keras (every mapped activation, float32 and float64: forward and one SGD step),
# every loss class's values with its default reduction, sparse inputs, and mixed precision
# (16-bit Dense + relu and two losses under both mixed policies, LossScaleOptimizer fit);
# one process per backend.
QUICK = ("(test_dense_matches_stock and 2-True) or (test_sparse_inputs_as_stock and float32) or "
         "(test_loss_values and sum_over_batch_size) or test_every_mapped_string or "
         "(test_dense_mixed_matches_stock and relu) or test_loss_scale_optimizer or "
         "(test_loss_mixed_matches_stock and (MeanSquaredError or SparseCategoricalCrossentropy-from_logits))")


@pytest.mark.quick_only
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_suite_quick(backend):
    """The quick tier's fastnn.keras tests on each Keras backend (the full suite below)."""
    _run_suite(backend, ["-k", QUICK])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_suite(backend):
    _run_suite(backend, [])


def _run_suite(backend, extra):
    for mod in ("keras", FRAMEWORK[backend]):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"fastnn.keras suite on {backend}: {mod} is not installed "
                        f"(pip install -e \".[test]\" installs it)")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "pytest", "tests_keras", "-q", "-x", "-p", "no:cacheprovider",
           "-W", "ignore::DeprecationWarning"] + extra
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-6000:]
        pytest.fail(f"fastnn.keras suite failed on KERAS_BACKEND={backend} (exit {proc.returncode}):\n{tail}",
                    pytrace=False)
