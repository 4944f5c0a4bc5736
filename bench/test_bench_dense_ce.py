"""pytest-benchmark: the fused Dense + cross-entropy forward+backward at
(N, H, C) = (1024, 512, 8000) (fastnn.bench.dense_ce), fastnn.dense_cross_entropy vs
torch's F.linear + F.cross_entropy. Checked against float64 numpy before timing."""
import pytest

from fastnn.bench import dense_ce
from fastnn.bench.pytest_support import impl_names, params, run

SPECS = [(dense_ce.OP, "forward+backward", (1024, 512, 8000))]
NAMES = [n for n in impl_names() if n != "numpy"]  # no numpy composition of this one


@pytest.mark.parametrize("spec,impl", params(SPECS, NAMES))
def test_dense_cross_entropy(benchmark, spec, impl):
    run(benchmark, dense_ce, spec, impl)
