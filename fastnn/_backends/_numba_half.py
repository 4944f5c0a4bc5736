"""The Numba backend's 16-bit storage formats: its own conversions, written from the IEEE
754 definitions (binary16; bfloat16 = the top half of a binary32), independent of the C++
ones (csrc/include/fastnn/half.h) so that the parity tests compare two implementations.

numba has no 16-bit float types, so a 16-bit array reaches the kernels as a bit view, and
the view's integer type says which format the bits are in:

    float16  -> uint16 view        bfloat16 -> int16 view

(one compiled specialization per format, no format argument threaded through every
kernel). Inside the kernels every element is widened to float32 as it is loaded (`ld`),
computed on in float32, and rounded once, round-to-nearest-even, as it is stored (`st`);
float32 / float64 arrays pass through both unchanged. `cz(a)` is a zero of the type the
kernel computes in for a (float32 for the 16-bit formats), `lowp(a)` whether a is 16-bit.

The conversions are pure functions of their bits, checked exhaustively against numpy's
float16 and ml_dtypes' bfloat16 (tests/test_lowp.py). numba's disk cache notices changes
only to the file of the function it caches: after editing this file, clear the cache of
_numba_act.py, _numba_loss.py and _numba_dense.py (delete their __pycache__/*.nbi).
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

OPTS = dict(cache=True, nogil=True, error_model="numpy")

F16_VIEW, BF16_VIEW = np.dtype(np.uint16), np.dtype(np.int16)


@intrinsic
def _f32_from_bits(typingctx, u):
    """The float32 whose bit pattern is the uint32 u."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@intrinsic
def _bits_of_f64(typingctx, v):
    """The bit pattern of the float64 v, as a uint64."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.uint64(types.float64), codegen


@njit(**OPTS)
def bf16_to_f32(b):
    # bfloat16 is the high half of a binary32 (same sign, exponent, top 7 fraction bits):
    # every value, subnormals, infinities and NaN included, widens by a shift
    return _f32_from_bits(np.uint32((np.int64(b) & 0xFFFF) << 16))


@njit(**OPTS)
def f16_to_f32(b):
    # binary16: sign s, 5-bit exponent e (bias 15), 10-bit fraction f.
    #   e = 0:  (-1)^s f 2^-24            (zero, subnormals)
    #   e = 31: (-1)^s inf (f = 0), NaN (f != 0; the payload kept in the top fraction bits)
    #   else:   (-1)^s (1 + f 2^-10) 2^(e-15) = binary32 exponent e - 15 + 127, fraction f << 13
    u = np.int64(b) & 0xFFFF
    s, e, f = u >> 15, (u >> 10) & 0x1F, u & 0x3FF
    if e == 0:
        r = np.float32(f) * np.float32(2.0 ** -24)  # exact: f < 2^10
        return -r if s else r
    ebits = 0xFF if e == 0x1F else e + (127 - 15)
    return _f32_from_bits(np.uint32((s << 31) | (ebits << 23) | (f << 13)))


@njit(**OPTS)
def round_to(v, ebits, mbits):
    """The bits (as int64, sign in bit ebits + mbits) of float64 v rounded to the binary
    format with ebits exponent and mbits fraction bits: round to nearest, ties to even,
    subnormals kept, overflow to inf (values from (2 - 2^-mbits-1) 2^emax on), NaN to a
    quiet NaN of v's sign. A float32 is exactly a float64, so this rounds float32 results
    once as well."""
    u = _bits_of_f64(v)
    s = np.int64(u >> np.uint64(63))
    e64 = np.int64((u >> np.uint64(52)) & np.uint64(0x7FF))
    frac = np.int64(u & np.uint64((1 << 52) - 1))
    sign = s << (ebits + mbits)
    bias = (1 << (ebits - 1)) - 1
    inf = ((1 << ebits) - 1) << mbits
    if e64 == 0x7FF:
        return sign | (inf | (1 << (mbits - 1)) if frac != 0 else inf)
    # v = M 2^(E - 52), M the 53-bit significand
    M, E = (frac | (1 << 52), e64 - 1023) if e64 else (frac, -1022)
    if E > bias:
        return sign | inf
    Ee = max(E, 1 - bias)      # the result's exponent (subnormals: the minimum, 1 - bias)
    sh = 52 + (Ee - mbits) - E  # M >> sh counts quanta 2^(Ee - mbits); sh >= 52 - mbits > 0
    if sh >= 54:                # v < quantum / 2: rounds to zero
        return sign
    N = M >> sh
    rem, half = M & ((np.int64(1) << sh) - 1), np.int64(1) << (sh - 1)
    if rem > half or (rem == half and (N & 1)):
        N += 1
    # N in [2^mbits, 2^(mbits+1)] for a normal, [0, 2^mbits] for a subnormal: adding it to
    # the biased exponent field minus one also carries a rounding up into the next binade
    bits = ((Ee - (1 - bias)) << mbits) + N
    return sign | (inf if bits >= inf else bits)


@njit(**OPTS)
def f32_to_f16(v):
    return np.uint16(round_to(np.float64(v), 5, 10))


@njit(**OPTS)
def f32_to_bf16(v):
    return np.int16(round_to(np.float64(v), 8, 7))


# ---- type-dispatched load / store / compute type (resolved at compile time) -----------
def ld(v):
    """An element as the kernel computes with it: 16-bit bits widened to float32, floats as
    they are."""
    raise NotImplementedError("numba only")


def st(v, a):
    """v (a computed value) as an element of array a: rounded once to a's 16-bit format, or
    v itself for a float array (the assignment casts)."""
    raise NotImplementedError("numba only")


def cz(a):
    """A zero of the type computed in for array a: float32 for 16-bit, else a's dtype."""
    raise NotImplementedError("numba only")


def lowp(a):
    """Whether array a holds 16-bit bits (a compile-time constant)."""
    raise NotImplementedError("numba only")


@overload(ld)
def _ld(v):
    if isinstance(v, types.Float):
        return lambda v: v
    if v == types.uint16:
        return lambda v: f16_to_f32(v)
    if v == types.int16:
        return lambda v: bf16_to_f32(v)
    return None


@overload(st)
def _st(v, a):
    dt = a.dtype
    if isinstance(dt, types.Float):
        return lambda v, a: v
    if dt == types.uint16:
        return lambda v, a: f32_to_f16(v)
    if dt == types.int16:
        return lambda v, a: f32_to_bf16(v)
    return None


@overload(cz)
def _cz(a):
    if a.dtype == types.float64:
        return lambda a: np.float64(0)
    return lambda a: np.float32(0)


@overload(lowp)
def _lowp(a):
    is16 = a.dtype in (types.uint16, types.int16)
    return lambda a: is16


def bits(a):
    """The numba view of a numpy array: 16-bit arrays as their bit view (see above), others
    as they are (None stays None)."""
    if a is None or a.dtype.itemsize != 2:
        return a
    return a.view(F16_VIEW if a.dtype == np.float16 else BF16_VIEW)


@njit(**OPTS)
def widen_into(src, dst):
    """dst (float32, C-contiguous 2-D) = src (2-D, any strides) widened, for the
    products' panels."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = ld(src[i, j])


@njit(**OPTS)
def narrow_into(src, dst):
    """dst (2-D, 16-bit bits or float) = src (float32 / float64, 2-D) rounded once."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = st(src[i, j], dst)
