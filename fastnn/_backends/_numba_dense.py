"""Dense forward / backward of the numba backend: numpy's BLAS (np.matmul into
preallocated outputs) for the products, the fused @njit passes of _numba_act.py for
everything else, split over threads by rows (_numba_act.parallel_for).

  forward:  z = x W + b (x (m, k); W (n, k) "oi" or (k, n) "io"); y = act(z)
  backward: g = dy * act'(z or y), db = sum_rows g     -- one fused pass
            dx = g W ("oi") or g W^T ("io")              -- two products
            dW = g^T x ("oi") or x^T g ("io")
  cross_entropy: Dense + softmax cross-entropy over chunks of rows (see ce_rows).
"""
import math

import numpy as np
from numba import njit

from . import _numba_act as A
from ._common import input_grads
from ._numba_act import OPTS

# Rows per product in the forward: the epilogue (bias + activation) runs on each block
# of ~4 MiB of output right after its product, while the block is still in cache.
BLOCK_BYTES = 4 << 20
MIN_BLOCK_ROWS = 256
# Rows per chunk of the backward pass (~64 KiB of g): the unit of the float64 partial
# sums of db, fixed so db does not depend on the thread count.
CHUNK_BYTES = 64 << 10


def row_grain(code, n):
    """Rows per thread's part, at least (see _numba_act.GRAIN)."""
    return max(1, (A.GRAIN_CHEAP if code in A.CHEAP else A.GRAIN) // max(1, n))


def forward(x, w, w_oi, b, code, p, keep_z):
    """(y, z) with z the pre-activation when keep_z (a separate array), else None.
    Without keep_z each block's product goes to a scratch block, not into y: written
    in place (x and y one array) the activation loops fail LLVM's runtime alias check
    and run scalar and branchy (tens of times slower)."""
    m, n = x.shape[0], (w.shape[0] if w_oi else w.shape[1])
    y = np.empty((m, n), dtype=x.dtype)
    z = np.empty_like(y) if keep_z else None
    wk = w.T if w_oi else w   # (k, n): a transposed view, BLAS reads it as such
    has_b = b is not None
    bb = b if has_b else np.empty(0, dtype=x.dtype)
    fused = has_b or code != A.LINEAR or keep_z
    block = max(MIN_BLOCK_ROWS, BLOCK_BYTES // max(1, n * x.itemsize))
    scratch = np.empty((min(block, m), n), dtype=x.dtype) if fused and not keep_z else None
    grain = row_grain(code, n)
    for r0 in range(0, m, block):
        r1 = min(m, r0 + block)
        yb = y[r0:r1]
        zb = z[r0:r1] if keep_z else (scratch[:r1 - r0] if fused else yb)
        np.matmul(x[r0:r1], wk, out=zb)  # zeros when k == 0
        if fused:
            A.parallel_for(r1 - r0, grain, lambda lo, hi, zb=zb, yb=yb: A.bias_act_rows(
                code, zb[lo:hi], yb[lo:hi], bb, has_b, p))
    return y, z


def backward(dy, x, w, w_oi, zy, from_y, code, p, need_dx, need_dw, need_db):
    """(dx, dw, db), None where not needed; zy is z, or y when from_y, or None (linear)."""
    m, n = dy.shape
    g, dx, dw, db = dy, None, None, None
    if not (need_dx or need_dw or need_db):
        return dx, dw, db
    if code != A.LINEAR or need_db:
        chunk = max(1, CHUNK_BYTES // max(1, n * dy.itemsize))
        nch = (m + chunk - 1) // chunk if need_db else 0
        dbp = np.zeros((nch, n))
        if code != A.LINEAR:
            g = np.empty_like(dy)
        zy = dy if zy is None else zy
        grain = -(-row_grain(code, n) // chunk) * chunk  # whole chunks per part

        def run(lo, hi):
            A.act_grad_rows(code, from_y, zy[lo:hi], dy[lo:hi], g[lo:hi], dbp[lo // chunk:], need_db, chunk, p)
        A.parallel_for(m, grain, run)
        if need_db:
            db = dbp.sum(axis=0).astype(dy.dtype) if nch else np.zeros(n, dtype=dy.dtype)
    dx, dw = input_grads(np, g, x, w, w_oi, need_dx, need_dw)
    return dx, dw, db


# ---- fused Dense + softmax cross-entropy ------------------------------------------------
@njit(**OPTS)
def ce_rows(L, b, has_b, target, grad, has_grad, gs, ignore_index, ls, grads, loss, cw, has_cw, wsum, rw, has_rw,
            cap, zs, lse, want_lse):
    """One chunk of logits L (rows, C), bias not yet added. Row i with target y, written as
    a cross-entropy against the (unnormalized) target weights
        q_j = (1 - ls) w_y [j == y] + (ls / C) w_j        (w: class weights, 1 without)
    on the capped logits S = cap tanh(L / cap) (S = L without a cap):
        lse = log sum_j e^(S_j)
        loss_i = rw_i (sum_j q_j (lse - S_j) + zs lse^2)
        dloss_i/dS_j = rw_i ((sum_k q_k + 2 zs lse) p_j - q_j),   dS_j/dL_j = 1 - (S_j / cap)^2
    and, when grads, L is overwritten with G = g_i dloss_i/dL, g_i = grad[i] or gs.
    Ignored rows: loss 0, G 0, lse computed only when wanted (else NaN); out-of-range
    targets (refused by the validation layer): NaN."""
    rows, c = L.shape
    T = L.dtype.type
    u = ls / T(c)
    for r in range(rows):
        row, y = L[r], target[r]
        bad = y != ignore_index and (y < 0 or y >= c)
        if bad or (y == ignore_index and not want_lse):
            loss[r] = T(np.nan) if bad else T(0)
            lse[r] = T(np.nan)
            if grads:
                row[:] = T(0)
            continue
        if has_b:
            for j in range(c):
                row[j] += b[j]
        if cap > 0:
            for j in range(c):
                row[j] = cap * math.tanh(row[j] / cap)
        m = T(-np.inf)  # max with NaN ignored; 0 for an all -inf row
        for j in range(c):
            if row[j] > m:
                m = row[j]
        if not m > T(-np.inf):
            m = T(0)
        s = T(0)
        for j in range(c):
            s += math.exp(row[j] - m)
        z = m + math.log(s)
        lse[r] = z
        if y == ignore_index:
            loss[r] = T(0)
            if grads:
                row[:] = T(0)
            continue
        wy = cw[y] if has_cw else T(1)
        qsum = (T(1) - ls) * wy + u * wsum
        acc = (T(1) - ls) * wy * (z - row[y])
        if ls != 0:
            for j in range(c):
                acc += u * (cw[j] if has_cw else T(1)) * (z - row[j])
        rwi = rw[r] if has_rw else T(1)
        loss[r] = rwi * (acc + zs * z * z)
        if grads:
            g = (grad[r] if has_grad else gs) * rwi
            a = qsum + T(2) * zs * z
            for j in range(c):
                q = u * (cw[j] if has_cw else T(1))
                if j == y:
                    q += (T(1) - ls) * wy
                d = a * math.exp(row[j] - z) - q
                if cap > 0:
                    t = row[j] / cap
                    d *= T(1) - t * t
                row[j] = g * d


def ce_chunk(n, c, itemsize):
    """Rows per chunk: ~64 MiB of logits, at least 256 rows (each chunk's products
    re-read W), at most n."""
    return max(1, min(n, max((64 << 20) // max(c * itemsize, 1), 256)))


def cross_entropy(x, w, w_oi, b, target, ignore_index, ls, grad, gs, want_none, need_grads, chunk, extras):
    """(total, per-row losses or None, dx, dw, db, lse or None) (grads None unless
    need_grads); x (n, h), w (c, h) "oi" or (h, c) "io", target int64 (n,), grad (n,) or
    None; extras: fastnn._checks.CeExtras."""
    n, h = x.shape
    c = w.shape[0] if w_oi else w.shape[1]
    T = x.dtype.type
    rows = np.empty(n, dtype=x.dtype) if want_none else None
    lse = np.empty(n, dtype=x.dtype)
    dx = np.empty_like(x) if need_grads else None
    dw = np.zeros_like(w) if need_grads else None
    db = np.zeros(c) if need_grads else None  # float64 column sums of G
    total = 0.0
    if n and not c:
        raise ValueError("dense_cross_entropy: w has no classes (0 outputs); expected at least one")
    chunk = max(1, min(chunk or ce_chunk(n, c, x.itemsize), n)) if n else 1
    L = np.empty((chunk, c), dtype=x.dtype)
    lbuf = np.empty(chunk, dtype=x.dtype)
    part = np.empty_like(w) if need_grads and chunk < n else None  # dW of one chunk
    has_b, bb = b is not None, (b if b is not None else np.empty(0, dtype=x.dtype))
    gg = grad if grad is not None else np.empty(0, dtype=x.dtype)
    empty = np.empty(0, dtype=x.dtype)
    cw, rw = extras.class_weight, extras.row_weight
    wsum = T(c if cw is None else cw.sum(dtype=np.float64))
    args = (cw if cw is not None else empty, cw is not None, wsum, rw if rw is not None else empty, rw is not None,
            T(extras.softcap), T(extras.z_scale))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        Lk, xk = L[:r1 - r0], x[r0:r1]
        np.matmul(xk, w.T if w_oi else w, out=Lk)
        lk = rows[r0:r1] if want_none else lbuf[:r1 - r0]
        tk, gk, ek = target[r0:r1], gg[r0:r1], lse[r0:r1]
        rk = args[3][r0:r1] if rw is not None else empty
        A.parallel_for(r1 - r0, max(1, A.GRAIN // c), lambda lo, hi, Lk=Lk, tk=tk, gk=gk, lk=lk, ek=ek, rk=rk: ce_rows(
            Lk[lo:hi], bb, has_b, tk[lo:hi], gk[lo:hi], grad is not None, T(gs), ignore_index, T(ls), need_grads,
            lk[lo:hi], args[0], args[1], args[2], rk[lo:hi] if rw is not None else empty, args[4], args[5], args[6],
            ek[lo:hi], extras.want_lse))
        total += float(lk.sum(dtype=np.float64))
        if not need_grads:
            continue
        np.matmul(Lk, w if w_oi else w.T, out=dx[r0:r1])
        dst = dw if part is None else part
        if w_oi:
            np.matmul(Lk.T, xk, out=dst)   # dW (c, h) = G^T x
        else:
            np.matmul(xk.T, Lk, out=dst)   # dW (h, c) = x^T G
        if part is not None:
            dw += part
        db += Lk.sum(axis=0, dtype=np.float64)
    return (total, rows, dx, dw, (None if db is None else db.astype(x.dtype)),
            (lse if extras.want_lse else None))
