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

OP_BOUNDS holds per-op entries overriding their family's, for an op whose formula loses
more by design; none is needed today (tanh-gelu's backward, the worst activation, is
within its family's bound).

Measured worst (python -m fastnn.parity --full, cpp, numba and cupy_emu, torch 2.13 float64
reference) -> bound:
  activation           float32 2.4 -> 16    float64 4.9 -> 32   (tanh-gelu dx)
  loss                 float32 4.1 -> 32    float64 8.2 -> 64   (cross_entropy dpred with
                                                                 label smoothing; poisson_nll
                                                                 full=True sum)
  dense                float32 35  -> 256   float64 31  -> 128  (dw of the products with
                                                                 the exponential / softmax)
  dense_cross_entropy  float32 3.9 -> 16    float64 2.4 -> 16   (dw, db)

float16 / bfloat16 (numba backend; ulps of the 16-bit format: one rounding is <= 0.5):
  activation           float16 0.82 -> 4    bfloat16 0.84 -> 4   (exponential dx)
  loss                 float16 0.5 -> 4     bfloat16 0.24 -> 4
  dense                float16 87  -> 128   bfloat16 32  -> 128  (dx of hard_silu / hard_tanh:
                                                                 a 16-bit z rounded across the
                                                                 kink; the reference
                                                                 differentiates the exact z)
  dense_cross_entropy  float16 0.22 -> 4    bfloat16 0.22 -> 4
"""
from typing import Dict, Tuple

# (family, dtype name) -> bound in ulps
BOUNDS = {
    ("activation", "float32"): 16.0,
    ("activation", "float64"): 32.0,
    ("loss", "float32"): 32.0,
    ("loss", "float64"): 64.0,
    ("dense", "float32"): 256.0,
    ("dense", "float64"): 128.0,
    ("dense_cross_entropy", "float32"): 16.0,
    ("dense_cross_entropy", "float64"): 16.0,
    ("activation", "float16"): 4.0,
    ("activation", "bfloat16"): 4.0,
    ("loss", "float16"): 4.0,
    ("loss", "bfloat16"): 4.0,
    ("dense", "float16"): 128.0,
    ("dense", "bfloat16"): 128.0,
    ("dense_cross_entropy", "float16"): 4.0,
    ("dense_cross_entropy", "bfloat16"): 4.0,
}
# (op, dtype name) -> bound in ulps, overriding its family's
OP_BOUNDS: Dict[Tuple[str, str], float] = {}


def bound_of(family: str, op: str, dtype: str) -> float:
    """The documented bound, in ulps, of one parity row.

    Parameters
    ----------
    family : str
        The op family ("activation", "dense", "dense_io", "loss", "class_loss",
        "dense_cross_entropy").
    op : str
        The op name (a per-op entry of ``OP_BOUNDS`` overrides the family's).
    dtype : str
        A dtype name ("float32", "float64", ...).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        The table has no bound for the family at that dtype (naming both).

    Examples
    --------
    >>> fastnn.parity.bound_of("activation", "relu", "float32") > 0
    True
    """
    if (op, dtype) in OP_BOUNDS:
        return OP_BOUNDS[(op, dtype)]
    if (family, dtype) not in BOUNDS:
        raise ValueError(f"fastnn.parity: no bound for family {family!r} at dtype {dtype!r}; add it to BOUNDS")
    return BOUNDS[(family, dtype)]
