"""pytest-benchmark: relu, gelu, sigmoid, silu, tanh, softplus forward and backward on
1M floats (fastnn.bench.activation), and softmax / log_softmax forward+backward at
(8192, 1000) (fastnn.bench.softmax). Checked against float64 numpy before timing."""
import pytest

from fastnn.bench import activation, softmax
from fastnn.bench.pytest_support import params, run

ELEMENTWISE = [(name, mode, (2 ** 20,)) for name in activation.NAMES
               for mode in activation.MODES]
ROWWISE = [(name, "forward+backward", (8192, 1000)) for name in softmax.NAMES]


@pytest.mark.parametrize("spec,impl", params(ELEMENTWISE))
def test_activation(benchmark, spec, impl):
    run(benchmark, activation, spec, impl)


@pytest.mark.parametrize("spec,impl", params(ROWWISE))
def test_softmax(benchmark, spec, impl):
    run(benchmark, softmax, spec, impl)
