"""The C++ kernels at every ISA level this CPU has (csrc/cpu/isa.h): the rest of the suite
runs them at the CPU's best level; here each lower level (AVX2 and baseline x86-64 on an
AVX-512 CPU) is forced with _C._set_isa and the activations and losses are checked
against the same float64 torch references and bounds. The hand-vectorized float32 kernels
(csrc/cpu/simd_kernels.h) get the full case list; float64 (the portable loops' per-level
copies) a sample. The tail-accuracy tests of test_activations.py run at every level too.
The whole suite can also be run at a level: FASTNN_ISA=avx2 python -m pytest ..."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
import test_activations as ta
import test_losses as tl
from fastnn._backends import cpp

_C = cpp._C
pytestmark = pytest.mark.skipif(_C is None, reason="the C++ backend is not built")
ORDER = ["baseline", "avx2", "avx512"]
CPU = _C._cpu_isa() if _C is not None else "baseline"
LOWER = ORDER[:ORDER.index(CPU)]  # the levels the rest of the suite does not run


@pytest.fixture(params=LOWER or [pytest.param(None, marks=pytest.mark.skip(reason=f"the CPU's only level is {CPU}"))])
def level(request):
    prev = _C._isa()
    assert _C._set_isa(request.param) == request.param
    try:
        with fastnn.use_backend("cpp"):
            yield request.param
    finally:
        _C._set_isa(prev)


def test_set_isa_caps_and_validates():
    prev = _C._isa()
    try:
        assert _C._set_isa("baseline") == "baseline" and _C._isa() == "baseline"
        assert _C._gelu_path() == "portable"
        assert _C._set_isa("avx512") == CPU  # never above the CPU's level
        with pytest.raises(ValueError, match="avx2"):
            _C._set_isa("sse9")
    finally:
        _C._set_isa(prev)


def test_env_caps_level():
    code = "from fastnn._backends import cpp; print(cpp._C._isa(), cpp._C._gelu_path())"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, FASTNN_ISA="baseline"),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["baseline", "portable"]


@pytest.mark.parametrize("name, params", ta.CASES)
def test_activation_f32(level, name, params, rng):
    """Every activation, float32, lengths that end in a partial vector, forward and backward."""
    for n in (7, 1031):
        x = (3.0 * rng.standard_normal(n)).astype(np.float32)
        dy = rng.standard_normal(n).astype(np.float32)
        ta.check_forward(name, params, x, np.float32)
        ta.check_backward(name, params, x, dy, np.float32)
    ta.test_extreme_inputs("cpp", np.float32, name, params)


@pytest.mark.parametrize("name", fastnn.ACTIVATIONS)
def test_activation_special_values_f32(level, name):
    ta.test_nan_forward("cpp", np.float32, name, {})
    ta.test_nan_backward("cpp", np.float32, name, {})
    ta.test_inf_forward("cpp", np.float32, name, {})


@pytest.mark.parametrize("name", ["gelu", "softplus", "mish", "silu", "tanh", "elu", "softmax"])
def test_activation_large(level, name, rng):
    for dtype in (np.float32, np.float64):
        ta.test_large("cpp", dtype, name, rng)


@pytest.mark.parametrize("name", ["gelu", "softplus"])
def test_tail_accuracy(level, name):
    if name == "gelu":
        ta.test_cpp_gelu_tail_relative_accuracy()
    else:
        ta.test_cpp_softplus_relative_accuracy(2.0)


@pytest.mark.parametrize("name", ["bce_with_logits", "cross_entropy", "poisson_nll", "log_cosh", "mse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_losses(level, name, dtype, rng):
    if name not in fastnn.LOSSES:
        pytest.skip(f"{name} is not in this op table")
    for reduction in ("mean", "none"):
        tl.test_large("cpp", np.dtype(dtype), name, reduction, rng)
