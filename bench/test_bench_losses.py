"""pytest-benchmark: cross_entropy at (8192, 1000), mse and bce_with_logits on 1M
floats, forward+backward, reduction mean (fastnn.bench.loss). Checked against
float64 numpy before timing."""
import pytest

from fastnn.bench import loss
from fastnn.bench.pytest_support import params, run

SPECS = [("cross_entropy", "forward+backward", (8192, 1000)),
         ("mse", "forward+backward", (2 ** 20,)),
         ("bce_with_logits", "forward+backward", (2 ** 20,))]


@pytest.mark.parametrize("spec,impl", params(SPECS))
def test_loss(benchmark, spec, impl):
    run(benchmark, loss, spec, impl)
