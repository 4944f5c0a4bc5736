"""fastnn.testing: assert_close's bound and message, ulp_error's arithmetic, the
on_every_backend decorator, hard_inputs' hard cases."""
import math
import re
import sys
import types

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch
from fastnn.testing import PRECISION, assert_close, hard_inputs, on_every_backend, precision, ulp_error, xp_of

EPS32 = 2.0 ** -23


def test_ulp_error_known_values():
    one = np.float32(1)
    assert ulp_error(one + np.float32(3 * EPS32), 1.0, np.float32) == 3.0
    assert ulp_error(2.0 + 2 * 2 * EPS32, 2.0, np.float32) == 2.0      # spacing doubles at 2
    assert ulp_error(1.0 + 2.0 ** -52, 1.0, np.float64) == 1.0
    assert ulp_error(0.5 + 2.0 ** -24, 0.5, np.float32) == 1.0        # the spacing of [0.5, 1) is 2^-24
    assert ulp_error(0.5 - 2.0 ** -25, 0.5, np.float32) == 0.5        # counted in desired's binade
    tiny_step = 2.0 ** -149                                           # float32 subnormal spacing
    assert ulp_error(3 * tiny_step, 0.0, np.float32) == 3.0
    e = ulp_error([np.inf, np.nan, np.nan, 1.0], [np.inf, np.nan, 1.0, np.inf], np.float32)
    assert list(e) == [0.0, 0.0, math.inf, math.inf]


def test_precision_table():
    assert precision(np.float32) == PRECISION["float32"] == (EPS32, 2.0 ** -126)
    assert precision("float64").eps == np.finfo(np.float64).eps
    with pytest.raises(ValueError, match="dtype 'int32'"):
        precision(np.int32)


def test_16bit_precisions():
    """float16 and bfloat16 entries: numpy's / ml_dtypes' own eps and smallest normal; the
    units of ulp_error and assert_close follow them."""
    import ml_dtypes

    bf16 = np.dtype(ml_dtypes.bfloat16)
    assert precision(np.float16) == (np.finfo(np.float16).eps, np.finfo(np.float16).tiny)
    assert precision(bf16) == (float(ml_dtypes.finfo(bf16).eps), float(ml_dtypes.finfo(bf16).tiny))
    assert ulp_error(np.float16(1) + np.float16(2.0 ** -9), 1.0, np.float16) == 2.0
    assert ulp_error(2.0 ** -24, 0.0, np.float16) == 1.0              # float16 subnormal spacing
    got = np.array([1.0, 2.0], bf16)
    assert_close(got, [1.0, 2.0 + 2.0 ** -6], ulps=1)                 # 1 ulp of bfloat16 at 2
    with pytest.raises(AssertionError, match="bfloat16"):
        assert_close(got, [1.0, 2.0 + 2.0 ** -4], ulps=1)             # 4 ulps


def test_assert_close_passes_within_ulps():
    x = np.linspace(-3, 3, 101).astype(np.float32)
    assert_close(x * np.float32(1 + 3 * EPS32), x.astype(np.float64), ulps=4)
    assert_close(np.float32([1e-30]), [0.0], scale=1.0, ulps=1)       # small by cancellation
    assert_close(np.array([np.nan, np.inf]), [np.nan, np.inf])


def test_assert_close_reports_worst_element():
    desired = np.ones((3, 4))
    actual = desired.astype(np.float32)
    actual[1, 2] = np.float32(1 + 40 * EPS32)
    actual[2, 0] = np.float32(1 + 20 * EPS32)
    with pytest.raises(AssertionError) as e:
        assert_close(actual, desired, ulps=8, err_msg="gelu y")
    msg = str(e.value)
    assert msg.startswith("gelu y: 2 of 12 elements beyond the bound")
    assert "worst at index (1, 2)" in msg and "desired 1.0" in msg
    assert re.search(r"actual 1\.0000047\d*", msg) and "error 40 ulps of desired" in msg


def test_assert_close_nan_and_shape():
    with pytest.raises(AssertionError, match=r"1 of 2 elements .* index \(1,\): actual nan, desired 2.0, error inf ulps"):
        assert_close(np.array([1.0, np.nan]), [1.0, 2.0])
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(np.zeros(3), np.zeros(4))


@on_every_backend(ulps=64, scale=1.0)  # gelu's derivative crosses 0: O(1) operands
def test_on_every_backend_gelu(xp, backend):
    assert fastnn.get_backend() == backend
    x = xp.asarray(hard_inputs("gelu", (4, 33), np.float32, seed=1)["x"])
    y = fastnn.activation_forward(x, "gelu")
    assert type(y) is type(x)
    return y, fastnn.activation_backward(xp.ones_like(x), "gelu", x=x)


@pytest.fixture
def skewed(monkeypatch):
    """Backend "skewed": cpp with every activation output off by 1000 ulps."""
    cpp = _dispatch._load("cpp")
    mod = types.ModuleType("_test_backend_skewed")
    for k in dir(cpp):
        if not k.startswith("__"):
            setattr(mod, k, getattr(cpp, k))
    mod.activation_forward = lambda x, spec, cols: cpp.activation_forward(x, spec, cols) * (
        1 + 1000 * np.finfo(x.dtype).eps)
    sys.modules[mod.__name__] = mod
    monkeypatch.setitem(_dispatch._MODULES, "skewed", mod.__name__)
    monkeypatch.setitem(_dispatch._loaded, "skewed", mod)
    yield "skewed"
    sys.modules.pop(mod.__name__, None)


@pytest.mark.parametrize("n", [7])
def test_on_every_backend_finds_a_disagreement(skewed, n):
    seen = []

    @on_every_backend(["cpp", skewed], ulps=16)
    def body(n, xp, backend):
        seen.append(backend)
        return fastnn.activation_forward(xp.linspace(1, 2, n), "linear")

    with pytest.raises(AssertionError, match="result #0: backend skewed vs cpp: 7 of 7 elements"):
        body(n)
    assert seen == ["cpp", skewed]
    assert "n" in str(__import__("inspect").signature(body)) and "xp" not in str(__import__("inspect").signature(body))


def test_xp_of():
    assert xp_of("cpp") is np
    with pytest.raises(ValueError, match="unknown backend|unavailable"):
        xp_of("no_such_backend")


def test_hard_inputs_activation_cases():
    x = hard_inputs("hard_sigmoid", (8, 9), np.float32, seed=3)["x"].ravel()
    for v in (0.0, 60.0, -1000.0, 3.0, -3.0, np.nextafter(np.float32(3), np.float32(4))):
        assert (x == v).any(), v
    assert np.isnan(x).any() and np.isposinf(x).any() and np.isneginf(x).any()
    sub = x[(x != 0) & (np.abs(x) < np.finfo(np.float32).tiny)]
    assert sub.size >= 2                                               # subnormals
    relu = hard_inputs("relu", (64,), np.float64, threshold=0.5, max_value=2.5)["x"]
    assert {0.5, 2.5} <= set(relu.tolist())                            # kinks from the params
    np.testing.assert_array_equal(hard_inputs("gelu", (9,), np.float32, 5)["x"],
                                  hard_inputs("gelu", (9,), np.float32, 5)["x"])
    assert np.isfinite(hard_inputs("softmax", (4, 32), np.float32)["x"]).all()


def test_hard_inputs_losses_and_dense():
    a = hard_inputs("cross_entropy", (33, 5), np.float32, ignore_index=-7)
    assert a["target"].shape == (33,) and (a["target"] == -7).sum() == 5 and a["target"].dtype == np.int64
    assert np.abs(a["pred"]).max() >= 60
    h = hard_inputs("hinge", (40,), np.float64)
    assert set(np.unique(h["target"])) == {-1.0, 1.0} and (h["pred"] * h["target"] == 1).any()
    hub = hard_inputs("huber", (40,), np.float64, delta=0.25)
    assert np.isclose(np.abs(hub["pred"] - hub["target"]), 0.25).any()
    b = hard_inputs("bce", (50,), np.float32)
    assert ((b["pred"] > 0) & (b["pred"] < 1)).all()
    assert hard_inputs("mse", (0, 3), np.float32)["pred"].shape == (0, 3)
    d = hard_inputs("dense", (5, 7, 3), np.float64)
    assert d["x"].shape == (5, 7) and d["w"].shape == (3, 7) and d["b"].shape == (3,) and d["dy"].shape == (5, 3)
    ce = hard_inputs("dense_cross_entropy", (17, 7, 4), np.float32)
    assert (ce["target"] == -100).sum() == 3
    with pytest.raises(ValueError, match="op_name 'nope'"):
        hard_inputs("nope", (3,))
