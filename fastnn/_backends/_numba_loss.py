"""Numba kernels of the losses: each elementwise loss's value and derivatives as scalar
@njit functions, the loops that apply them, and the cross-entropy family (class axis
last). Conventions as in _numba_act.py (T = the data's type, NaN semantics of torch,
one loop per loss chosen outside the element loop).

Kernels are serial and run on slices (fastnn._backends.numba splits the work over
threads). Forward kernels write per-element (per-row) values and float64 partial sums
per fixed chunk (CHUNK elements, or rows of about CHUNK elements), so a sum does not
depend on the thread count; "mean" denominators and the upstream grad's reduction
scaling are applied by fastnn/_loss.py. Backward kernels multiply by the upstream
grad g: grad[i] when given (has_grad), else the scalar gs.
"""
import math
from typing import Any, Dict

import numpy as np
from numba import njit

from ._numba_half import cz, ld, lowp, st

# As in _numba_act.py: cached, GIL released, numpy's division semantics, no fastmath.
OPTS: Dict[str, Any] = dict(cache=True, nogil=True, error_model="numpy")

# Loss codes: the index in fastnn._registry.ELEMENTWISE_LOSSES (checked at import by
# fastnn._backends.numba); literals, because compiled code freezes them.
MSE, MAE, HUBER, SMOOTH_L1, BCE, BCE_WITH_LOGITS, KL_DIV, POISSON_NLL = range(8)
HINGE, SQUARED_HINGE, LOG_COSH = range(8, 11)
NAMES = ("mse", "mae", "huber", "smooth_l1", "bce", "bce_with_logits", "kl_div", "poisson_nll", "hinge",
         "squared_hinge", "log_cosh")  # in code order

LN2 = math.log(2.0)
LN_2PI = math.log(2.0 * math.pi)  # Stirling term of poisson_nll(full=True)
# torch's binary_cross_entropy backward divides by max(p (1 - p), EPSILON) with the
# float 1e-12f, also for double tensors.
BCE_EPS_F32 = float(np.float32(1e-12))
CHUNK = 16384  # elements per reduction chunk / parallel block


# sigmoid and softplus, as in _numba_act.py: repeated here because numba's disk cache
# only notices changes to the file of the function it caches.
@njit(**OPTS)
def sigmoid(x):
    # 1 / (1 + e^-x), with e^-|x| so nothing overflows
    T = type(x)
    e = math.exp(-abs(x))
    r = T(1) / (T(1) + e)
    return r if x >= T(0) else e * r


@njit(**OPTS)
def softplus(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
    T = type(x)
    return (x if x > T(0) else T(0)) + math.log1p(math.exp(-abs(x)))


# ---- elementwise losses: *_val(p, t) = loss; *_grad(p, t) = (dloss/dp, dloss/dt) --------
# d = p - t. Kinks: derivative 0 where p == t (mae, huber, smooth_l1).
@njit(**OPTS)
def sign0(d):
    # torch.sign: 0 at 0 and at NaN
    T = type(d)
    return T(1) if d > T(0) else (T(-1) if d < T(0) else T(0))


@njit(**OPTS)
def huber_val(p, t, delta):
    # |d| < delta ? d^2 / 2 : delta (|d| - delta / 2)
    T = type(p)
    d = p - t
    return T(0.5) * d * d if abs(d) < delta else delta * (abs(d) - T(0.5) * delta)


@njit(**OPTS)
def huber_grad(p, t, delta):
    # clamp(d, -delta, delta), NaN kept
    d = p - t
    g = -delta if d < -delta else (delta if d > delta else d)
    return g, -g


@njit(**OPTS)
def smooth_l1_val(p, t, beta):
    # |d| < beta ? d^2 / (2 beta) : |d| - beta / 2; beta == 0 is l1
    T = type(p)
    d = p - t
    if beta == T(0):
        return abs(d)
    return T(0.5) * d * d / beta if abs(d) < beta else abs(d) - T(0.5) * beta


@njit(**OPTS)
def smooth_l1_grad(p, t, beta):
    # d < -beta ? -1 : d > beta ? 1 : d / beta  (sign(d) when beta == 0)
    T = type(p)
    d = p - t
    g = sign0(d) if beta == T(0) else (T(-1) if d < -beta else (T(1) if d > beta else d / beta))
    return g, -g


@njit(**OPTS)
def bce_val(p, t):
    # torch: (t - 1) max(log(1 - p), -100) - t max(log p, -100)
    T = type(p)
    lp, l1p = math.log(p), math.log1p(-p)
    lp = T(-100) if lp < T(-100) else lp
    l1p = T(-100) if l1p < T(-100) else l1p
    return (t - T(1)) * l1p - t * lp


@njit(**OPTS)
def bce_grad(p, t, want_dt):
    # dp = (p - t) / max(p (1 - p), 1e-12f); dt = log(1 - p) - log p = -logit(p)
    T = type(p)
    v = (T(1) - p) * p
    eps = T(BCE_EPS_F32)
    return (p - t) / (eps if v < eps else v), (math.log1p(-p) - math.log(p) if want_dt else T(0))


@njit(**OPTS)
def bce_logits_val(x, t, w):
    # lw = 1 + (w - 1) t; (1 - t) x + lw softplus(-x)  (w = pos_weight, 1 without)
    T = type(x)
    return (T(1) - t) * x + (T(1) + (w - T(1)) * t) * softplus(-x)


@njit(**OPTS)
def bce_logits_grad(x, t, w, want_dt):
    # dx = lw sigmoid(x) - w t; dt = (w - 1) softplus(-x) - x
    T = type(x)
    return (T(1) + (w - T(1)) * t) * sigmoid(x) - w * t, ((w - T(1)) * softplus(-x) - x if want_dt else T(0))


@njit(**OPTS)
def kl_div_val(x, t, log_target):
    # x = log q. log_target: e^t (t - x); else xlogy(t, t) - t x (0 where t == 0)
    T = type(x)
    if log_target:
        return math.exp(t) * (t - x)
    return (T(0) if t == T(0) else t * math.log(t)) - t * x


@njit(**OPTS)
def kl_div_grad(x, t, log_target, want_dt):
    # log_target: (-e^t, e^t (t - x + 1)); else (-t, log t + t/t - x): torch's xlogy
    # gradient, NaN at t == 0 (0/0)
    T = type(x)
    if log_target:
        e = math.exp(t)
        return -e, e * (t - x + T(1))
    return -t, (math.log(t) + t / t - x if want_dt else T(0))


@njit(**OPTS)
def poisson_val(x, t, log_input, full, eps):
    # log_input: e^x - t x; else x - t log(x + eps); full adds, where t > 1, Stirling's
    # t log t - t + log(2 pi t) / 2
    T = type(x)
    v = math.exp(x) - t * x if log_input else x - t * math.log(x + eps)
    if full and t > T(1):
        v += t * math.log(t) - t + T(0.5) * (T(LN_2PI) + math.log(t))
    return v


@njit(**OPTS)
def poisson_grad(x, t, log_input, full, eps, want_dt):
    # dx = log_input ? e^x - t : 1 - t / (x + eps); dt = log_input ? -x : -log(x + eps),
    # full adds log t + 1/(2t) where t > 1. torch masks the Stirling term with
    # masked_fill(t <= 1, 0), whose backward gives its derivative times 0: 0 for
    # 0 < t <= 1 but NaN for t <= 0 (log 0 = -inf, 1/0 = inf).
    T = type(x)
    if log_input:
        dx, dt = math.exp(x) - t, -x
    else:
        dx, dt = T(1) - t / (x + eps), (-math.log(x + eps) if want_dt else T(0))
    if full and want_dt:
        sd = math.log(t) + T(0.5) / t
        dt += sd if t > T(1) else sd * T(0)
    return dx, dt


@njit(**OPTS)
def hinge_margin(p, t):
    # max(1 - t p, 0), NaN kept
    T = type(p)
    m = T(1) - t * p
    return m if m > T(0) else (T(0) if m <= T(0) else m)


@njit(**OPTS)
def log_cosh_val(p, t):
    # log cosh d = d + softplus(-2 d) - log 2 (Keras 3), stable for large |d|
    T = type(p)
    d = p - t
    return d + softplus(T(-2) * d) - T(LN2)


@njit(**OPTS)
def hinge_grad(p, t):
    # d/dp max(1 - t p, 0) = -t where 1 - t p > 0, else 0 (labels are not differentiated)
    T = type(p)
    return (-t if T(1) - t * p > T(0) else T(0)), T(0)


# ---- elementwise kernels ------------------------------------------------------------
@njit(**OPTS)
def loss_values(code, pred, target, dst, pw, off, prm, flags):
    """dst = the losses of 1-D slices pred, target; element i uses pos_weight
    pw[(off + i) % len(pw)]. (Slices and range(len): no wraparound, see fwd_span.)"""
    delta, beta, eps = prm
    log_target, log_input, full = flags
    if code == MSE:
        for i in range(pred.shape[0]):
            dst[i] = st((ld(pred[i]) - ld(target[i])) * (ld(pred[i]) - ld(target[i])), dst)
    elif code == MAE:
        for i in range(pred.shape[0]):
            dst[i] = st(abs(ld(pred[i]) - ld(target[i])), dst)
    elif code == HUBER:
        for i in range(pred.shape[0]):
            dst[i] = st(huber_val(ld(pred[i]), ld(target[i]), delta), dst)
    elif code == SMOOTH_L1:
        for i in range(pred.shape[0]):
            dst[i] = st(smooth_l1_val(ld(pred[i]), ld(target[i]), beta), dst)
    elif code == BCE:
        for i in range(pred.shape[0]):
            dst[i] = st(bce_val(ld(pred[i]), ld(target[i])), dst)
    elif code == BCE_WITH_LOGITS:
        for i in range(pred.shape[0]):
            dst[i] = st(bce_logits_val(ld(pred[i]), ld(target[i]), ld(pw[(off + i) % pw.shape[0]])), dst)
    elif code == KL_DIV:
        for i in range(pred.shape[0]):
            dst[i] = st(kl_div_val(ld(pred[i]), ld(target[i]), log_target), dst)
    elif code == POISSON_NLL:
        for i in range(pred.shape[0]):
            dst[i] = st(poisson_val(ld(pred[i]), ld(target[i]), log_input, full, eps), dst)
    elif code == HINGE:
        for i in range(pred.shape[0]):
            dst[i] = st(hinge_margin(ld(pred[i]), ld(target[i])), dst)
    elif code == SQUARED_HINGE:
        for i in range(pred.shape[0]):
            dst[i] = st(hinge_margin(ld(pred[i]), ld(target[i])) * hinge_margin(ld(pred[i]), ld(target[i])), dst)
    elif code == LOG_COSH:
        for i in range(pred.shape[0]):
            dst[i] = st(log_cosh_val(ld(pred[i]), ld(target[i])), dst)


@njit(**OPTS)
def loss_derivs(code, pred, target, dp, dt, want_dt, pw, off, prm, flags):
    """dp = dloss/dpred and dt = dloss/dtarget (computed where cheap or want_dt, else
    0) of 1-D slices, into scratch arrays of the compute type; pos_weight as in
    loss_values. Unconditional stores, so the
    arithmetic-only loops vectorize."""
    T = type(cz(pred))
    delta, beta, eps = prm
    log_target, log_input, full = flags
    n = pred.shape[0]
    if code == MSE:  # 2 d
        for i in range(n):
            dp[i] = T(2) * (ld(pred[i]) - ld(target[i]))
            dt[i] = -dp[i]
    elif code == MAE:  # sign(d), 0 at d == 0
        for i in range(n):
            dp[i] = sign0(ld(pred[i]) - ld(target[i]))
            dt[i] = -dp[i]
    elif code == HUBER:
        for i in range(n):
            dp[i], dt[i] = huber_grad(ld(pred[i]), ld(target[i]), delta)
    elif code == SMOOTH_L1:
        for i in range(n):
            dp[i], dt[i] = smooth_l1_grad(ld(pred[i]), ld(target[i]), beta)
    elif code == BCE:
        for i in range(n):
            dp[i], dt[i] = bce_grad(ld(pred[i]), ld(target[i]), want_dt)
    elif code == BCE_WITH_LOGITS:
        for i in range(n):
            dp[i], dt[i] = bce_logits_grad(ld(pred[i]), ld(target[i]), ld(pw[(off + i) % pw.shape[0]]), want_dt)
    elif code == KL_DIV:
        for i in range(n):
            dp[i], dt[i] = kl_div_grad(ld(pred[i]), ld(target[i]), log_target, want_dt)
    elif code == POISSON_NLL:
        for i in range(n):
            dp[i], dt[i] = poisson_grad(ld(pred[i]), ld(target[i]), log_input, full, eps, want_dt)
    elif code == HINGE:
        for i in range(n):
            dp[i], dt[i] = hinge_grad(ld(pred[i]), ld(target[i]))
    elif code == SQUARED_HINGE:  # d/dp max(1 - t p, 0)^2 = -2 t max(1 - t p, 0)
        for i in range(n):
            dp[i] = T(-2) * ld(target[i]) * hinge_margin(ld(pred[i]), ld(target[i]))
            dt[i] = T(0)
    elif code == LOG_COSH:  # (log cosh d)' = tanh d
        for i in range(n):
            dp[i] = math.tanh(ld(pred[i]) - ld(target[i]))
            dt[i] = -dp[i]


@njit(**OPTS)
def loss_backward(code, pred, target, grad, has_grad, gs, dpred, dtarget, has_dt, pw, off, prm, flags):
    """dpred = g dloss/dpred (and dtarget = g dloss/dtarget when has_dt) of 1-D slices
    starting at flat index off, g = grad[i] (has_grad) or gs: per chunk, the loss's
    derivatives into scratch (compute type), then one pass applying g and storing (each
    output rounded once for 16-bit data)."""
    n = pred.shape[0]
    T = type(cz(pred))
    sp, sd = np.empty(min(n, CHUNK), T), np.empty(min(n, CHUNK), T)
    for c in range((n + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        dp, dt = sp[:hi - lo], sd[:hi - lo]
        loss_derivs(code, pred[lo:hi], target[lo:hi], dp, dt, has_dt, pw, off + lo, prm, flags)
        g, dpk = grad[lo:hi], dpred[lo:hi]
        if has_grad:
            for i in range(dp.shape[0]):
                dpk[i] = st(ld(g[i]) * dp[i], dpk)
        else:
            for i in range(dp.shape[0]):
                dpk[i] = st(gs * dp[i], dpk)
        if has_dt:
            dtk = dtarget[lo:hi]
            if has_grad:
                for i in range(dt.shape[0]):
                    dtk[i] = st(ld(g[i]) * dt[i], dtk)
            else:
                for i in range(dt.shape[0]):
                    dtk[i] = st(gs * dt[i], dtk)


@njit(**OPTS)
def sum64(a):
    """float64 sum of a in 8 interleaved partial sums, a fixed order (deterministic):
    a plain sequential sum waits on each add's latency and may not be reordered
    without fastmath (several times slower: about the cost of a whole mse forward)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = a.shape[0] // 8 * 8
    for i in range(0, n8, 8):
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
        s4 += a[i + 4]
        s5 += a[i + 5]
        s6 += a[i + 6]
        s7 += a[i + 7]
    for i in range(n8, a.shape[0]):
        s0 += a[i]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(**OPTS)
def loss_forward(code, pred, target, out, has_out, pw, off, prm, flags, parts):
    """Losses of 1-D slices starting at flat index off (a multiple of CHUNK): parts[c] =
    float64 sum over chunk c of the slice (of the unrounded values for 16-bit data); out =
    per-element losses when has_out."""
    n = pred.shape[0]
    T = type(cz(pred))
    direct = has_out and not lowp(out)  # the values go straight to out
    scratch = np.empty(0 if direct else min(n, CHUNK), T)
    for c in range((n + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        if direct:
            loss_values(code, pred[lo:hi], target[lo:hi], out[lo:hi], pw, off + lo, prm, flags)
            parts[c] = sum64(out[lo:hi])
        else:
            dst = scratch[:hi - lo]
            loss_values(code, pred[lo:hi], target[lo:hi], dst, pw, off + lo, prm, flags)
            parts[c] = sum64(dst)
            if has_out:
                o = out[lo:hi]
                for i in range(dst.shape[0]):
                    o[i] = st(dst[i], o)


# ---- cross-entropy family: pred (rows, C), class axis last --------------------------
@njit(**OPTS)
def row_lse(x):
    # log sum e^x = m + log sum e^(x - m), m = max (NaN ignored; 0 for an all -inf row)
    T = type(cz(x))
    m = T(-np.inf)
    for j in range(x.shape[0]):
        if ld(x[j]) > m:
            m = ld(x[j])
    if not m > T(-np.inf):
        m = T(0)
    s = T(0)
    for j in range(x.shape[0]):
        s += math.exp(ld(x[j]) - m)
    return m + math.log(s)


@njit(**OPTS)
def class_row_loss(x, y, w, log_probs, ls):
    # nll: -w_y x_y.  cross_entropy (x = logits, logp = x - lse), label smoothing ls:
    # (1 - ls) w_y (lse - x_y) + (ls / C) sum_c w_c (lse - x_c)
    T = type(cz(x))
    if log_probs:
        return -ld(w[y]) * ld(x[y])
    lse = row_lse(x)
    v = (T(1) - ls) * ld(w[y]) * (lse - ld(x[y]))
    if ls != T(0):
        s = T(0)
        for j in range(x.shape[0]):
            s += ld(w[j]) * (lse - ld(x[j]))
        v += ls / T(x.shape[0]) * s
    return v


@njit(**OPTS)
def class_forward(pred, target, w, out, has_out, log_probs, ignore_index, ls, chunk, parts):
    """Index targets: parts[c] = float64 sum of the row losses over chunk c of `chunk`
    rows; out[r] when has_out. Ignored rows give 0; an index out of range (refused by
    the validation layer) NaN."""
    rows, C = pred.shape
    T = type(cz(pred))
    for c in range((rows + chunk - 1) // chunk):
        s = 0.0
        for r in range(c * chunk, min(rows, (c + 1) * chunk)):
            y = target[r]
            v = T(0)
            if y != ignore_index:
                v = class_row_loss(pred[r], y, w, log_probs, ls) if 0 <= y < C else T(np.nan)
            if has_out:
                out[r] = st(v, out)
            s += v
        parts[c] = s


@njit(**OPTS)
def class_backward(pred, target, w, grad, has_grad, gs, dpred, log_probs, ignore_index, ls):
    """dpred of index targets, g = grad[r] or gs, p = softmax(x), W = sum_c w_c:
    nll: -g w_y at y, 0 elsewhere; cross_entropy:
    g [(1 - ls) w_y (p_c - [c == y]) + (ls / C) (W p_c - w_c)]. Ignored rows: 0."""
    rows, C = pred.shape
    T = type(cz(pred))
    wsum = T(0)
    for j in range(C):
        wsum += ld(w[j])
    for r in range(rows):
        y, x, dx = target[r], pred[r], dpred[r]
        for j in range(C):
            dx[j] = st(T(0), dx)
        if y == ignore_index or not 0 <= y < C:
            continue
        g = ld(grad[r]) if has_grad else gs
        if log_probs:
            dx[y] = st(-g * ld(w[y]), dx)
            continue
        lse = row_lse(x)
        k1, k2 = g * (T(1) - ls) * ld(w[y]), g * ls / T(C)
        for j in range(C):
            pj = math.exp(ld(x[j]) - lse)
            d = k1 * pj + k2 * (wsum * pj - ld(w[j]))
            dx[j] = st(d - k1 if j == y else d, dx)


@njit(**OPTS)
def soft_class_forward(pred, target, w, out, has_out, ls, chunk, parts):
    """Probability targets t, smoothed t' = (1 - ls) t + ls / C:
    loss_r = -sum_c w_c t'_c (x_c - lse); parts as in class_forward."""
    rows, C = pred.shape
    T = type(cz(pred))
    u = ls / T(max(C, 1))
    for c in range((rows + chunk - 1) // chunk):
        s = 0.0
        for r in range(c * chunk, min(rows, (c + 1) * chunk)):
            x, t = pred[r], target[r]
            lse = row_lse(x)
            v = T(0)
            for j in range(C):
                v -= ld(w[j]) * ((T(1) - ls) * ld(t[j]) + u) * (ld(x[j]) - lse)
            if has_out:
                out[r] = st(v, out)
            s += v
        parts[c] = s


@njit(**OPTS)
def soft_class_backward(pred, target, w, grad, has_grad, gs, dpred, dtarget, has_dt, ls):
    """dx_c = g (p_c sum_k w_k t'_k - w_c t'_c); dt_c = -g (1 - ls) w_c (x_c - lse)."""
    rows, C = pred.shape
    T = type(cz(pred))
    u = ls / T(max(C, 1))
    for r in range(rows):
        x, t = pred[r], target[r]
        g = ld(grad[r]) if has_grad else gs
        lse = row_lse(x)
        wt = T(0)
        for j in range(C):
            wt += ld(w[j]) * ((T(1) - ls) * ld(t[j]) + u)
        dp = dpred[r]
        for j in range(C):
            dp[j] = st(g * (math.exp(ld(x[j]) - lse) * wt - ld(w[j]) * ((T(1) - ls) * ld(t[j]) + u)), dp)
            if has_dt:
                dtarget[r, j] = st(-g * (T(1) - ls) * ld(w[j]) * (ld(x[j]) - lse), dtarget)
