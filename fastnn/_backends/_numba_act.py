"""Numba kernels of the activations: each formula and its derivative, the loops that
apply them (elementwise, softmax rows) and the dense layer's fused passes (bias +
activation after the product; activation derivative + bias gradient before the
backward products).

A second, independent implementation of csrc/include/fastnn/scalar_math.h, written from
the math and torch's conventions (API.md), for tests/test_parity.py to compare. Rules:
  * Values of type T = the data's type, every constant cast with T(...): float32 data
    is computed in float32 (numba would promote it to float64 at the first Python float).
  * Comparisons are written so NaN takes the side torch's masks give it (stated per
    formula); masks are selects, never products with 0, so dy = inf/NaN outside the
    active region gives 0 as in torch. fastmath is off: NaN and inf propagate.
  * Activation params arrive as one float64 tuple p (ActSpec.numeric, _P_* below).
  * The activation is chosen by its code outside the element loops (*_span: one loop
    per activation, params cast before the loop).
Every jitted function a kernel calls lives in this file: numba's on-disk cache only
notices changes to the file of the function it caches.

Threads: kernels are serial and release the GIL; parallel_for (end of this file) runs
them on parts of the data from a small pool of Python threads. Not numba's prange:
under its OpenMP layer (GNU libgomp, the one available without TBB) a process that
forks after a parallel kernel aborts in the child at the next one ("fork() called from
a process already using GNU OpenMP"; torch DataLoader workers, multiprocessing), and
idle workers spin-wait on the cores the next BLAS product needs (a Dense layer's
forward + backward then took twice as long); each prange kernel also takes seconds more
to compile (parfor passes).
"""
import math
import os
import threading
from typing import Any, Dict
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

from ._numba_half import cz, ld, lowp, st

# Every kernel: compiled on first call, cached on disk, runs without the GIL; float
# division by zero gives inf/NaN as in numpy and torch (numba's default "python" error
# model raises instead). fastmath stays off so NaN and inf propagate exactly.
OPTS: Dict[str, Any] = dict(cache=True, nogil=True, error_model="numpy")

# Activation codes: the index in fastnn._registry.ACTIVATIONS (checked by
# fastnn._backends.numba at import). Literals here, not a lookup: compiled code freezes
# global values and the disk cache would not notice a change made in another file.
LINEAR, RELU, RELU6, LEAKY_RELU, ELU, SELU, CELU, GELU, SILU, MISH, SIGMOID = range(11)
HARD_SIGMOID, HARD_SILU, TANH, SOFTPLUS, SOFTSIGN, LOG_SIGMOID, HARD_TANH = range(11, 18)
EXPONENTIAL, RELU_SQUARED, SOFTMAX, LOG_SOFTMAX = range(18, 22)
NAMES = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid",
         "hard_sigmoid", "hard_silu", "tanh", "softplus", "softsign", "log_sigmoid", "hard_tanh", "exponential",
         "relu_squared", "softmax", "log_softmax")  # in code order

# Positions in p (ActSpec.numeric).
_P_SLOPE, _P_MAXV, _P_THRESH, _P_ALPHA, _P_BETA, _P_MIN, _P_MAX, _P_APPROX = range(8)

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)      # gelu tanh form
SQRT1_2 = math.sqrt(0.5)                       # gelu erf form: Phi(x) = erfc(-x/sqrt 2)/2
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)  # standard normal density factor
GELU_KAPPA = 0.044715                          # cubic coefficient (Hendrycks & Gimpel)
SELU_ALPHA = 1.6732632423543772848170429916717  # Klambauer et al. 2017, torch's values
SELU_SCALE = 1.0507009873554804934193349852946
# torch's hardsigmoid backward multiplies by the float constant 1.0f/6.0f even for
# double tensors; the same value here keeps float64 bit-compatible with torch.
ONE_SIXTH_F32 = float(np.float32(1.0) / np.float32(6.0))

# Elements per thread's part, at least: handing a part to a pool thread costs tens of
# microseconds, the time of ~200K elements of a memory-bound activation (CHEAP) or of
# ~16K of one calling exp/erfc/tanh.
GRAIN, GRAIN_CHEAP = 1 << 15, 1 << 18
CHEAP = (LINEAR, RELU, RELU6, LEAKY_RELU, HARD_SIGMOID, HARD_SILU, SOFTSIGN, HARD_TANH, RELU_SQUARED)


# ---- scalar formulas (stable in both tails) ------------------------------------------
@njit(**OPTS)
def sigmoid(x):
    # 1 / (1 + e^-x), with e^-|x| so nothing overflows
    T = type(x)
    e = math.exp(-abs(x))
    r = T(1) / (T(1) + e)
    return r if x >= T(0) else e * r


@njit(**OPTS)
def softplus(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|); NaN stays NaN through log1p
    T = type(x)
    return (x if x > T(0) else T(0)) + math.log1p(math.exp(-abs(x)))


@njit(**OPTS)
def relu_fwd(x, s, t, mv):
    # x > t ? min(x, max_value) : s (x - t); s == 0 gives exactly 0 (relu(-inf) = 0)
    T = type(x)
    if x > t:
        return x if x < mv else mv
    if x <= t:
        return T(0) if s == T(0) else s * (x - t)
    return x  # NaN


@njit(**OPTS)
def relu_bwd(x, dy, s, t, mv):
    # f' = s for x <= t (torch: 0 at 0), 0 at and above max_value, else 1 (NaN too)
    T = type(x)
    if x <= t:
        return T(0) if s == T(0) else s * dy
    return T(0) if x >= mv else dy


@njit(**OPTS)
def clamp_fwd(x, lo, hi):
    # hard_tanh, relu6 = hard_tanh(0, 6) (torch): min(max(x, lo), hi), NaN passes
    return lo if x < lo else (hi if x > hi else x)


@njit(**OPTS)
def clamp_bwd(x, dy, lo, hi):
    # 0 at and beyond both bounds (torch), 1 inside and at NaN
    return type(x)(0) if (x <= lo or x >= hi) else dy


@njit(**OPTS)
def elu_fwd(x, a, scale):
    # scale (x > 0 ? x : a (e^x - 1)); elu: scale 1; selu: torch's alpha and scale
    return scale * x if x > type(x)(0) else scale * a * math.expm1(x)


@njit(**OPTS)
def elu_bwd(x, dy, a, scale):
    # f' = scale (x > 0 ? 1 : a e^x): scale a at 0; NaN takes the x > 0 side
    return dy * scale * a * math.exp(x) if x <= type(x)(0) else dy * scale


@njit(**OPTS)
def gelu_erf_fwd(x):
    # x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (erfc: no cancellation for x << 0)
    T = type(x)
    return T(0.5) * x * math.erfc(-x * T(SQRT1_2))


@njit(**OPTS)
def gelu_erf_bwd(x, dy):
    # f' = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi)
    T = type(x)
    cdf = T(0.5) * math.erfc(-x * T(SQRT1_2))
    return dy * (cdf + x * T(INV_SQRT_2PI) * math.exp(T(-0.5) * x * x))


@njit(**OPTS)
def gelu_tanh_fwd(x):
    # u = sqrt(2/pi) (x + k x^3); x (1 + tanh u) / 2 = x sigmoid(2u)
    T = type(x)
    return x * sigmoid(T(2) * T(SQRT_2_OVER_PI) * (x + T(GELU_KAPPA) * x * x * x))


@njit(**OPTS)
def gelu_tanh_bwd(x, dy):
    # s = sigmoid(2u); f' = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 k x^2)
    T = type(x)
    c, k = T(SQRT_2_OVER_PI), T(GELU_KAPPA)
    s = sigmoid(T(2) * c * (x + k * x * x * x))
    d = T(2) * x * s * (T(1) - s) * c * (T(1) + T(3) * k * x * x)
    # finite x past float32's range for x^2: s (1 - s) = 0 times 3k x^2 = inf is NaN; the term
    # is 0 (float64's value). x = +-inf keeps torch's NaN.
    return dy * (s + d) if d == d or not math.isfinite(x) else dy * s


@njit(**OPTS)
def mish_bwd(x, dy):
    # (x tanh(sp(x)))' = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2)
    t = math.tanh(softplus(x))
    return dy * (t + x * sigmoid(x) * (type(x)(1) - t * t))


@njit(**OPTS)
def hard_sigmoid_fwd(x):
    # relu6(x + 3) / 6 in torch's order of operations; NaN passes through
    T = type(x)
    return T(0) if x <= T(-3) else (T(1) if x >= T(3) else (x + T(3)) / T(6))


@njit(**OPTS)
def hard_silu_fwd(x):
    # torch's literal x * min(max(x + 3, 0), 6) / 6: -inf gives NaN (-inf * 0) as in torch
    T = type(x)
    r = x + T(3)
    r = T(0) if r < T(0) else r
    return x * (T(6) if r > T(6) else r) / T(6)


@njit(**OPTS)
def hard_silu_bwd(x, dy):
    # 0 for x <= -3 (0 at -3), x/3 + 1/2 on (-3, 3), 1 from 3 on (1 at 3) and at NaN
    T = type(x)
    if x <= T(-3):
        return T(0)
    return dy * (x / T(3) + T(0.5)) if x < T(3) else dy


# ---- one loop per activation: the code is read once, outside the element loop ---------
@njit(**OPTS)
def fwd_span(code, x, y, p):
    """y = f(x) over 1-D x (y may be x). Not softmax / log_softmax.
    Callers pass slices and loops run over range(len): indices provably >= 0 let numba
    drop its negative-index wraparound, and the loops vectorize (5x faster than
    indexing from lo to hi)."""
    T = type(cz(x))
    s, a, beta, th = T(p[_P_SLOPE]), T(p[_P_ALPHA]), T(p[_P_BETA]), T(p[_P_THRESH])
    n = x.shape[0]
    if code == LINEAR:
        for i in range(n):
            y[i] = st(ld(x[i]), y)
    elif code == RELU:
        for i in range(n):
            y[i] = st(relu_fwd(ld(x[i]), s, th, T(p[_P_MAXV])), y)
    elif code == RELU6 or code == HARD_TANH:
        lo, hi = (T(0), T(6)) if code == RELU6 else (T(p[_P_MIN]), T(p[_P_MAX]))
        for i in range(n):
            y[i] = st(clamp_fwd(ld(x[i]), lo, hi), y)
    elif code == LEAKY_RELU:  # x > 0 ? x : s x
        for i in range(n):
            y[i] = st(ld(x[i]) if ld(x[i]) > T(0) else ld(x[i]) * s, y)
    elif code == ELU or code == SELU:
        a, scale = (a, T(1)) if code == ELU else (T(SELU_ALPHA), T(SELU_SCALE))
        for i in range(n):
            y[i] = st(elu_fwd(ld(x[i]), a, scale), y)
    elif code == CELU:  # max(0, x) + min(0, a (e^(x/a) - 1))
        for i in range(n):
            y[i] = st(ld(x[i]) if ld(x[i]) > T(0) else a * math.expm1(ld(x[i]) / a), y)
    elif code == GELU and p[_P_APPROX] == 0.0:
        for i in range(n):
            y[i] = st(gelu_erf_fwd(ld(x[i])), y)
    elif code == GELU:
        for i in range(n):
            y[i] = st(gelu_tanh_fwd(ld(x[i])), y)
    elif code == SILU:  # x sigmoid(x)
        for i in range(n):
            y[i] = st(ld(x[i]) * sigmoid(ld(x[i])), y)
    elif code == MISH:  # x tanh(softplus(x))
        for i in range(n):
            y[i] = st(ld(x[i]) * math.tanh(softplus(ld(x[i]))), y)
    elif code == SIGMOID:
        for i in range(n):
            y[i] = st(sigmoid(ld(x[i])), y)
    elif code == HARD_SIGMOID:
        for i in range(n):
            y[i] = st(hard_sigmoid_fwd(ld(x[i])), y)
    elif code == HARD_SILU:
        for i in range(n):
            y[i] = st(hard_silu_fwd(ld(x[i])), y)
    elif code == TANH:
        for i in range(n):
            y[i] = st(math.tanh(ld(x[i])), y)
    elif code == SOFTPLUS:  # x where beta x > threshold (strictly, as torch), else sp(beta x) / beta
        for i in range(n):
            y[i] = st(ld(x[i]) if beta * ld(x[i]) > th else softplus(beta * ld(x[i])) / beta, y)
    elif code == SOFTSIGN:  # x / (1 + |x|); inf / inf = NaN, as torch
        for i in range(n):
            y[i] = st(ld(x[i]) / (T(1) + abs(ld(x[i]))), y)
    elif code == LOG_SIGMOID:  # -softplus(-x) = min(x, 0) - log1p(e^-|x|)
        for i in range(n):
            y[i] = st((ld(x[i]) if ld(x[i]) < T(0) else T(0)) - math.log1p(math.exp(-abs(ld(x[i])))), y)
    elif code == EXPONENTIAL:
        for i in range(n):
            y[i] = st(math.exp(ld(x[i])), y)
    elif code == RELU_SQUARED:  # x relu(x), torch's x * F.relu(x): -inf * 0 = NaN, x < 0 gives -0
        for i in range(n):
            r = ld(x[i]) if ld(x[i]) > T(0) else (T(0) if ld(x[i]) <= T(0) else ld(x[i]))  # relu, NaN kept
            y[i] = st(ld(x[i]) * r, y)


@njit(**OPTS)
def bwd_span(code, x, dy, dx, p):
    """dx = dy f'(x) over 1-D slices, from the input x. Not softmax / log_softmax."""
    T = type(cz(x))
    s, a, beta, th = T(p[_P_SLOPE]), T(p[_P_ALPHA]), T(p[_P_BETA]), T(p[_P_THRESH])
    n = x.shape[0]
    if code == LINEAR:
        for i in range(n):
            dx[i] = st(ld(dy[i]), dx)
    elif code == RELU:
        for i in range(n):
            dx[i] = st(relu_bwd(ld(x[i]), ld(dy[i]), s, th, T(p[_P_MAXV])), dx)
    elif code == RELU6 or code == HARD_TANH:
        lo, hi = (T(0), T(6)) if code == RELU6 else (T(p[_P_MIN]), T(p[_P_MAX]))
        for i in range(n):
            dx[i] = st(clamp_bwd(ld(x[i]), ld(dy[i]), lo, hi), dx)
    elif code == LEAKY_RELU:  # slope at 0 and at NaN (torch: x > 0 ? dy : dy * slope)
        for i in range(n):
            dx[i] = st(ld(dy[i]) if ld(x[i]) > T(0) else ld(dy[i]) * s, dx)
    elif code == ELU or code == SELU:
        a, scale = (a, T(1)) if code == ELU else (T(SELU_ALPHA), T(SELU_SCALE))
        for i in range(n):
            dx[i] = st(elu_bwd(ld(x[i]), ld(dy[i]), a, scale), dx)
    elif code == CELU:  # f' = x > 0 ? 1 : e^(x/a): 1 at 0; NaN: dy; 1/a as torch: 1 / float32(a)
        s = T(1.0 / float(np.float32(a)))
        for i in range(n):
            dx[i] = st(ld(dy[i]) * s * a * math.exp(ld(x[i]) * s) if ld(x[i]) <= T(0) else ld(dy[i]), dx)
    elif code == GELU and p[_P_APPROX] == 0.0:
        for i in range(n):
            dx[i] = st(gelu_erf_bwd(ld(x[i]), ld(dy[i])), dx)
    elif code == GELU:
        for i in range(n):
            dx[i] = st(gelu_tanh_bwd(ld(x[i]), ld(dy[i])), dx)
    elif code == SILU:  # (x s)' = s (1 + x (1 - s)), s = sigmoid(x)
        for i in range(n):
            sg = sigmoid(ld(x[i]))
            dx[i] = st(ld(dy[i]) * sg * (T(1) + ld(x[i]) * (T(1) - sg)), dx)
    elif code == MISH:
        for i in range(n):
            dx[i] = st(mish_bwd(ld(x[i]), ld(dy[i])), dx)
    elif code == SIGMOID:  # s (1 - s)
        for i in range(n):
            sg = sigmoid(ld(x[i]))
            dx[i] = st(ld(dy[i]) * sg * (T(1) - sg), dx)
    elif code == HARD_SIGMOID:  # 1/6 (float 1/6, as torch) on (-3, 3); 0 at +-3, beyond, at NaN
        for i in range(n):
            dx[i] = st(ld(dy[i]) * T(ONE_SIXTH_F32) if (ld(x[i]) > T(-3) and ld(x[i]) < T(3)) else T(0), dx)
    elif code == HARD_SILU:
        for i in range(n):
            dx[i] = st(hard_silu_bwd(ld(x[i]), ld(dy[i])), dx)
    elif code == TANH:  # 1 - tanh^2
        for i in range(n):
            t = math.tanh(ld(x[i]))
            dx[i] = st(ld(dy[i]) * (T(1) - t * t), dx)
    elif code == SOFTPLUS:  # f' = beta x > threshold ? 1 : sigmoid(beta x)
        for i in range(n):
            dx[i] = st(ld(dy[i]) if beta * ld(x[i]) > th else ld(dy[i]) * sigmoid(beta * ld(x[i])), dx)
    elif code == SOFTSIGN:  # 1 / (1 + |x|)^2; NaN at x = +-inf, as torch's autograd
        for i in range(n):
            d = T(1) + abs(ld(x[i]))
            dx[i] = st(ld(dy[i]) / (d * d) if d * T(0) == T(0) else d * T(0), dx)
    elif code == LOG_SIGMOID:  # (-softplus(-x))' = sigmoid(-x)
        for i in range(n):
            dx[i] = st(ld(dy[i]) * sigmoid(-ld(x[i])), dx)
    elif code == EXPONENTIAL:
        for i in range(n):
            dx[i] = st(ld(dy[i]) * math.exp(ld(x[i])), dx)
    elif code == RELU_SQUARED:
        # autograd of x * relu(x): dy relu(x) + (dy x where relu(x) > 0 or NaN, else 0); the
        # two terms are equal above 0, so it is 2 (dy x) there
        for i in range(n):
            r = ld(x[i]) if ld(x[i]) > T(0) else (T(0) if ld(x[i]) <= T(0) else ld(x[i]))
            dx[i] = st(T(2) * (ld(dy[i]) * ld(x[i])) if r > T(0) else ld(dy[i]) * r + T(0), dx)


@njit(**OPTS)
def bwd_y_span(code, y, dy, dx, p):
    """dx = dy f'(x) from the output y: relu (torch defaults), sigmoid, tanh, exponential."""
    T = type(cz(y))
    n = y.shape[0]
    if code == RELU:  # torch's threshold_backward: 0 where y <= 0, else dy (NaN passes dy)
        for i in range(n):
            dx[i] = st(T(0) if ld(y[i]) <= T(0) else ld(dy[i]), dx)
    elif code == SIGMOID:  # y (1 - y)
        for i in range(n):
            dx[i] = st(ld(dy[i]) * ld(y[i]) * (T(1) - ld(y[i])), dx)
    elif code == TANH:  # 1 - y^2
        for i in range(n):
            dx[i] = st(ld(dy[i]) * (T(1) - ld(y[i]) * ld(y[i])), dx)
    elif code == EXPONENTIAL:  # exp' = exp
        for i in range(n):
            dx[i] = st(ld(dy[i]) * ld(y[i]), dx)


# ---- softmax rows ------------------------------------------------------------------
@njit(**OPTS)
def softmax_row(log_out, x, y):
    """One row (y may be x). m = max (NaN ignored; 0 if the row is all -inf/NaN, so
    0/0 gives torch's NaN); softmax y = e^(x - m) / sum; log_softmax y = x - m - log sum.
    16-bit y: e^(x - m) is computed again in the last pass instead of being kept in y, so
    each output is rounded once."""
    T = type(cz(x))
    m = T(-np.inf)
    for j in range(x.shape[0]):
        if ld(x[j]) > m:
            m = ld(x[j])
    if not m > T(-np.inf):
        m = T(0)
    s = T(0)
    if log_out:
        for j in range(x.shape[0]):
            s += math.exp(ld(x[j]) - m)
        ls = math.log(s)
        for j in range(x.shape[0]):
            y[j] = st(ld(x[j]) - m - ls, y)
    elif lowp(y):
        for j in range(x.shape[0]):
            s += math.exp(ld(x[j]) - m)
        inv = T(1) / s
        for j in range(x.shape[0]):
            y[j] = st(math.exp(ld(x[j]) - m) * inv, y)
    else:
        for j in range(x.shape[0]):
            y[j] = math.exp(ld(x[j]) - m)
            s += y[j]
        inv = T(1) / s
        for j in range(x.shape[0]):
            y[j] *= inv


@njit(**OPTS)
def softmax_grad_row(log_out, from_y, xy, dy, dx, ys):
    """dx of one row, from y (or from x: y is computed first, into dx, or for a 16-bit dx
    into the float32 scratch row ys, so that dx is rounded once).
    softmax: dx = y (dy - sum dy y); log_softmax: dx = dy - e^y sum dy."""
    if not from_y:
        if lowp(dx):
            softmax_row(log_out, xy, ys)
            softmax_grad_from(log_out, ys, dy, dx)
        else:
            softmax_row(log_out, xy, dx)
            softmax_grad_from(log_out, dx, dy, dx)
    else:
        softmax_grad_from(log_out, xy, dy, dx)


@njit(**OPTS)
def softmax_grad_from(log_out, y, dy, dx):
    T = type(cz(y))
    s = T(0)
    if log_out:
        for j in range(dy.shape[0]):
            s += ld(dy[j])
        for j in range(dy.shape[0]):
            dx[j] = st(ld(dy[j]) - math.exp(ld(y[j])) * s, dx)
    else:
        for j in range(dy.shape[0]):
            s += ld(dy[j]) * ld(y[j])
        for j in range(dy.shape[0]):
            dx[j] = st(ld(y[j]) * (ld(dy[j]) - s), dx)


# ---- row kernels: 2-D (rows, cols) C-contiguous blocks ----------------------------------
@njit(**OPTS)
def softmax_forward(log_out, x, y):
    for r in range(x.shape[0]):
        softmax_row(log_out, x[r], y[r])


@njit(**OPTS)
def softmax_backward(log_out, from_y, xy, dy, dx):
    ys = np.empty(xy.shape[1] if lowp(dx) else 0, np.float32)
    for r in range(xy.shape[0]):
        softmax_grad_row(log_out, from_y, xy[r], dy[r], dx[r], ys)


@njit(**OPTS)
def bias_act_rows(code, z, y, b, has_b, p):
    """Dense epilogue of rows of the product z, one pass: z += b (if has_b), y = act(z)
    (y may be z). A 16-bit layer's z is the float32 product (y its 16-bit output)."""
    n = z.shape[1]
    for r in range(z.shape[0]):
        zr, yr = z[r], y[r]
        if has_b:
            for j in range(n):
                zr[j] += ld(b[j])
        if code == SOFTMAX or code == LOG_SOFTMAX:
            softmax_row(code == LOG_SOFTMAX, zr, yr)
        else:
            fwd_span(code, zr, yr, p)


@njit(**OPTS)
def act_grad_rows(code, from_y, zy, dy, g, dbp, need_db, chunk, p):
    """Dense backward prologue, one pass: g = dy * act'(z or y) (for linear, written only
    when g is not dy: a 16-bit layer's g is float32) and, when need_db, dbp[c, j] = sum of
    g[r, j] over the rows r of chunk c (float64, float32 for 16-bit layers). Chunks are
    fixed, so db is the same for any thread count."""
    rows, n = dy.shape
    own_g = code != LINEAR or lowp(dy)
    ys = np.empty(n if lowp(g) else 0, np.float32)
    for c in range((rows + chunk - 1) // chunk):
        for r in range(c * chunk, min(rows, (c + 1) * chunk)):
            if code == SOFTMAX or code == LOG_SOFTMAX:
                softmax_grad_row(code == LOG_SOFTMAX, from_y, zy[r], dy[r], g[r], ys)
            elif own_g:
                if from_y:
                    bwd_y_span(code, zy[r], dy[r], g[r], p)
                else:
                    bwd_span(code, zy[r], dy[r], g[r], p)
            if need_db:
                if own_g:
                    gr = g[r]
                    for j in range(n):
                        dbp[c, j] += gr[j]
                else:
                    dr = dy[r]
                    for j in range(n):
                        dbp[c, j] += dr[j]


# ---- threads --------------------------------------------------------------------------
NUM_THREADS = max(1, int(getattr(numba.config, "NUMBA_NUM_THREADS")))  # NUMBA_NUM_THREADS, default: CPUs
_pool, _pool_pid, _pool_lock = None, None, threading.Lock()


def _executor():
    """The pool (NUM_THREADS - 1 threads; the caller is the last), created on first use
    and again in a forked child, which inherits the object but not its threads."""
    global _pool, _pool_pid
    if _pool is not None and _pool_pid == os.getpid():
        return _pool
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(NUM_THREADS - 1, thread_name_prefix="fastnn-numba")
            _pool_pid = os.getpid()
        return _pool


def parallel_for(n, grain, run):
    """run(lo, hi) over [0, n) in at most NUM_THREADS parts of at least `grain` items,
    cut at multiples of `grain` (so chunked sums keep their chunks); the calling thread
    runs the first part. Below 2 grains: one call, in the calling thread."""
    parts = min(NUM_THREADS, n // grain) if grain > 0 else 1
    if parts <= 1:
        run(0, n)
        return
    units = -(-n // grain)
    cuts = [min(n, units * i // parts * grain) for i in range(parts + 1)]
    futures = [_executor().submit(run, cuts[i], cuts[i + 1]) for i in range(1, parts)]
    try:
        run(cuts[0], cuts[1])
    finally:
        for f in futures:
            f.result()
