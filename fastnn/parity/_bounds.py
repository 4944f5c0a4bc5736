"""The documented error bounds `python -m fastnn.parity` checks, per op family and dtype,
in the unit of fastnn.parity's "ulps" column (fastnn/parity/_cases.py: |got - ref| over
eps(dtype) times the magnitude of the value and of what rounds into it).

Where each bound comes from: the worst error measured over the hard-case inputs of the
default and --full sets on the cpp and numba backends and the CUDA kernels (through the
test suite's CPU emulator), rounded up to a power of two and multiplied by 4. The margin
covers what the measurement cannot see: other CPUs' libm and vector exp/log (a few ulps
each, chained a few times), another BLAS's summation order in the Dense products, and
CUDA's fast-math intrinsics. A bound is a statement about fastnn's kernels, so a row
over it is a regression to look at, not noise; raise a bound only with the measurement
that justifies it.

Per-op entries override their family's for ops whose formula loses more by design
(tanh-gelu: sigmoid(2u) for x << 0 loses |2u| roundoffs of u).
"""

# (family, dtype name) -> bound in ulps
BOUNDS = {
    ("activation", "float32"): 64.0,
    ("activation", "float64"): 64.0,
    ("loss", "float32"): 64.0,
    ("loss", "float64"): 64.0,
    ("dense", "float32"): 64.0,
    ("dense", "float64"): 64.0,
    ("dense_cross_entropy", "float32"): 64.0,
    ("dense_cross_entropy", "float64"): 64.0,
}
# (op, dtype name) -> bound in ulps, overriding its family's
OP_BOUNDS = {}


def bound_of(family, op, dtype):
    """The bound of one row (ValueError naming the dtype when the table lacks it)."""
    if (op, dtype) in OP_BOUNDS:
        return OP_BOUNDS[(op, dtype)]
    if (family, dtype) not in BOUNDS:
        raise ValueError(f"fastnn.parity: no bound for family {family!r} at dtype {dtype!r}; add it to BOUNDS")
    return BOUNDS[(family, dtype)]
