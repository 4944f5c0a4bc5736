"""pytest-benchmark: Dense + relu forward and forward+backward (fastnn.bench.dense).

    pytest bench/ --benchmark-only                # every family
    pytest bench/test_bench_dense.py --benchmark-only
Each implementation is checked against the float64 numpy reference before it is timed.
"""
import pytest

from fastnn.bench import dense
from fastnn.bench.pytest_support import params, run

SPECS = [(dense.OP, mode, shape) for shape in [(10, 20, 10), (64, 256, 256),
                                               (256, 1024, 1024)] for mode in dense.MODES]


@pytest.mark.parametrize("spec,impl", params(SPECS))
def test_dense_relu(benchmark, spec, impl):
    run(benchmark, dense, spec, impl)
