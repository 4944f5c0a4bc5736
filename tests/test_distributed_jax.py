"""fastnn.keras on jax over 4 forced host devices (XLA_FLAGS=--xla_force_host_platform_device_count=4),
in one subprocess (tests_keras/distributed_jax_probe.py; the flag must be set before jax starts):

- jit steps (value and gradients) of fastnn's Dense, softmax and cross-entropy kernels on
  batch-sharded inputs, output-sharded kernels (column parallel), input-sharded kernels
  (row parallel), a (batch, model) mesh and a 3-D input give
  stock jax's values, and their compiled modules hold no collective stock's lack and no
  more of any kind (the FFI calls' partitioning rules keep the shards);
- a sharding with no rule (a kernel sharded on its input dimension under an activation)
  still gives stock's values (the partitioner gathers it first);
- keras.distribution DataParallel and ModelParallel (a LayoutMap sharding the kernels)
  train fastnn.keras.Dense to stock keras.layers.Dense's losses and weights.
"""
import importlib.util

import pytest
from _probe import run_probe

RULED = ["data_parallel", "model_parallel", "data_and_model_2d", "data_parallel_3d_input", "row_parallel",
         "mlp_column_then_row_2d", "softmax_and_cross_entropy_data_parallel"]
UNRULED = ["row_parallel_activation_no_rule"]
KERAS = ["keras_data_parallel", "keras_model_parallel"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("jax", "keras")),
                                 reason="jax and keras are needed")]


@pytest.fixture(scope="module")
def probe():
    res = run_probe("distributed_jax_probe.py", "jax", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    if res["status"] != "ok":
        pytest.skip(f"the XLA FFI route is not in use here: {res['status']}")
    return res


def _case(probe, name):
    for group in ("dense_cases", "keras_cases"):  # a group that failed before its cases ran
        assert probe.get(group, {"ok": True})["ok"], probe[group]["error"]
    res = probe[name]
    assert res["ok"], res.get("error")
    return res


@pytest.mark.parametrize("name", RULED)
def test_sharded_step_matches_stock_with_no_extra_collectives(probe, name):
    res = _case(probe, name)
    fast, stock = res["fast"], res["stock"]
    assert all(fast[k] <= stock.get(k, 0) for k in fast), f"fastnn compiled {fast}, stock {stock}"


@pytest.mark.parametrize("name", UNRULED)
def test_sharding_without_a_rule_is_still_correct(probe, name):
    _case(probe, name)  # values checked in the probe against stock


@pytest.mark.parametrize("name", KERAS)
def test_keras_distribution_trains_like_stock(probe, name):
    res = _case(probe, name)
    if name == "keras_model_parallel":  # the LayoutMap took effect
        assert "model" in res["kernel_sharding"], res
