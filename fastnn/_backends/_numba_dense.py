"""Dense forward / backward of the numba backend: numpy's BLAS (np.matmul into
preallocated outputs) for the products, the fused @njit passes of _numba_act.py for
everything else, split over threads by rows (_numba_act.parallel_for).

  forward:  z = x W + b (x (m, k); W (n, k) "oi" or (k, n) "io"); y = act(z)
  backward: g = dy * act'(z or y), db = sum_rows g     -- one fused pass
            dx = g W ("oi") or g W^T ("io")              -- two products
            dW = g^T x ("oi") or x^T g ("io")
  cross_entropy: Dense + softmax cross-entropy over chunks of rows (see ce_rows).

16-bit layers (forward_lp, backward_lp, cross_entropy): the products run on float32
panels widened from the 16-bit operands (matmul_lp: float32 BLAS, float32 accumulation);
the epilogues and prologues work on the float32 product and every output is rounded once
to the layer's dtype: y = round(act(x W + b)), z = round(x W + b), dx = round(g W) with
g = dy act'(z) kept in float32, dW likewise, db = round(float32 sum of g).
"""
import math

import numpy as np
from numba import njit

from . import _numba_act as A
from . import _numba_half as H
from ._common import input_grads
from ._numba_act import OPTS
from ._numba_half import ld, st

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


# ---- 16-bit layers ------------------------------------------------------------------
# Panel edge of the 16-bit products: 512 x 512 float32 = 1 MiB per widened panel, large
# enough that sgemm runs near its peak, small enough to stay in L2 / L3.
PANEL = 512


def _panel(a, r0, r1, c0, c1, buf):
    """a[r0:r1, c0:c1] as float32: a view of a float32 a, else widened into buf."""
    if a.dtype == np.float32:
        return a[r0:r1, c0:c1]
    out = buf[:r1 - r0, :c1 - c0]
    H.widen_into(a[r0:r1, c0:c1], out)
    return out


def matmul_lp(a, b, out):
    """out (m, n) = a (m, k) @ b (k, n): a, b float32 arrays or 16-bit bit views (any
    strides), products and sums in float32 (sgemm on widened PANEL-sized panels, the k
    panels summed in float32); out float32 or a 16-bit bit view, each entry rounded once."""
    m, k = a.shape
    n = b.shape[1]
    abuf = np.empty((min(m, PANEL), min(k, PANEL)), np.float32)
    bbuf = np.empty((min(k, PANEL), min(n, PANEL)), np.float32)
    acc = np.empty((min(m, PANEL), min(n, PANEL)), np.float32)
    prod = np.empty_like(acc)
    for i0 in range(0, m, PANEL):
        i1 = min(m, i0 + PANEL)
        for j0 in range(0, n, PANEL):
            j1 = min(n, j0 + PANEL)
            ac = acc[:i1 - i0, :j1 - j0]
            ac[...] = 0
            for k0 in range(0, k, PANEL):
                k1 = min(k, k0 + PANEL)
                pr = prod[:i1 - i0, :j1 - j0]
                np.matmul(_panel(a, i0, i1, k0, k1, abuf), _panel(b, k0, k1, j0, j1, bbuf), out=pr)
                ac += pr
            if out.dtype == np.float32:
                out[i0:i1, j0:j1] = ac
            else:
                H.narrow_into(ac, out[i0:i1, j0:j1])


def forward_lp(x, w, w_oi, b, code, p, keep_z):
    """forward() of a 16-bit layer (numpy float16 / bfloat16 arrays in and out)."""
    m, n = x.shape[0], (w.shape[0] if w_oi else w.shape[1])
    y = np.empty((m, n), dtype=x.dtype)
    z = np.empty_like(y) if keep_z else None
    xb, wb, yb, zbits = H.bits(x), H.bits(w), H.bits(y), H.bits(z)
    wk = wb.T if w_oi else wb
    has_b = b is not None
    bb = H.bits(b) if has_b else np.empty(0, np.float32)
    block = max(MIN_BLOCK_ROWS, BLOCK_BYTES // max(1, n * 4))
    zs = np.empty((min(block, m), n), np.float32)  # the float32 product of a block of rows
    grain = row_grain(code, n)
    for r0 in range(0, m, block):
        r1 = min(m, r0 + block)
        zb, yk = zs[:r1 - r0], yb[r0:r1]
        matmul_lp(xb[r0:r1], wk, zb)
        A.parallel_for(r1 - r0, grain, lambda lo, hi, zb=zb, yk=yk: A.bias_act_rows(
            code, zb[lo:hi], yk[lo:hi], bb, has_b, p))
        if keep_z:
            H.narrow_into(zb, zbits[r0:r1])
    return y, z


def backward_lp(dy, x, w, w_oi, zy, from_y, code, p, need_dx, need_dw, need_db):
    """backward() of a 16-bit layer. g = dL/dz stays float32 (n floats per row) for the
    products, so dx and dW are rounded once; db sums g in float32."""
    m, n = dy.shape
    dx = np.empty_like(x) if need_dx else None
    dw = np.empty_like(w) if need_dw else None
    db = np.empty(n, dy.dtype) if need_db else None
    if not (need_dx or need_dw or need_db):
        return dx, dw, db
    chunk = max(1, CHUNK_BYTES // max(1, n * 4))
    nch = (m + chunk - 1) // chunk if need_db else 0
    dbp = np.zeros((nch, n), np.float32)
    g = np.empty((m, n), np.float32)
    dyb = H.bits(dy)
    zyb = dyb if zy is None else H.bits(zy)
    grain = -(-row_grain(code, n) // chunk) * chunk

    def run(lo, hi):
        A.act_grad_rows(code, from_y, zyb[lo:hi], dyb[lo:hi], g[lo:hi], dbp[lo // chunk:], need_db, chunk, p)
    A.parallel_for(m, grain, run)
    if need_db:
        H.narrow_into(dbp.sum(axis=0, dtype=np.float32).reshape(1, n) if nch else np.zeros((1, n), np.float32),
                      H.bits(db).reshape(1, n))
    wb, xb = H.bits(w), H.bits(x)
    if need_dx:
        matmul_lp(g, wb if w_oi else wb.T, H.bits(dx))
    if need_dw:
        matmul_lp(g.T, xb, H.bits(dw)) if w_oi else matmul_lp(xb.T, g, H.bits(dw))
    return dx, dw, db


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
    targets (refused by the validation layer): NaN. L is float32 for a 16-bit layer (its
    b, grad, class and row weights and lse 16-bit bit views)."""
    rows, c = L.shape
    T = L.dtype.type
    u = ls / T(c)
    for r in range(rows):
        row, y = L[r], target[r]
        bad = y != ignore_index and (y < 0 or y >= c)
        if bad or (y == ignore_index and not want_lse):
            loss[r] = st(T(np.nan) if bad else T(0), loss)
            lse[r] = st(T(np.nan), lse)
            if grads:
                row[:] = T(0)
            continue
        if has_b:
            for j in range(c):
                row[j] += ld(b[j])
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
        lse[r] = st(z, lse)
        if y == ignore_index:
            loss[r] = st(T(0), loss)
            if grads:
                row[:] = T(0)
            continue
        wy = ld(cw[y]) if has_cw else T(1)
        qsum = (T(1) - ls) * wy + u * wsum
        acc = (T(1) - ls) * wy * (z - row[y])
        if ls != 0:
            for j in range(c):
                acc += u * (ld(cw[j]) if has_cw else T(1)) * (z - row[j])
        rwi = ld(rw[r]) if has_rw else T(1)
        loss[r] = st(rwi * (acc + zs * z * z), loss)
        if grads:
            g = (ld(grad[r]) if has_grad else gs) * rwi
            a = qsum + T(2) * zs * z
            for j in range(c):
                q = u * (ld(cw[j]) if has_cw else T(1))
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
    None; extras: fastnn._checks.CeExtras. 16-bit x: logits and G in float32, the row
    losses summed unrounded, dW summed over the chunks in float32, each output rounded
    once."""
    n, h = x.shape
    c = w.shape[0] if w_oi else w.shape[1]
    lp = x.dtype.itemsize == 2
    T = np.float32 if lp else x.dtype.type
    ct = np.dtype(T)  # the dtype of the logits and the per-row scratch
    rows = np.empty(n, dtype=x.dtype) if want_none else None
    lse = np.empty(n, dtype=x.dtype)
    dx = np.empty_like(x) if need_grads else None
    dw = (np.empty_like(w) if lp else np.zeros_like(w)) if need_grads else None
    db = np.zeros(c) if need_grads else None  # float64 column sums of G
    total = 0.0
    if n and not c:
        raise ValueError("dense_cross_entropy: w has no classes (0 outputs); expected at least one")
    chunk = max(1, min(chunk or ce_chunk(n, c, ct.itemsize), n)) if n else 1
    L = np.empty((chunk, c), dtype=ct)
    lbuf = np.empty(chunk, dtype=ct)
    dwacc = np.zeros(w.shape, np.float32) if lp and need_grads else dw  # where dW is summed
    part = np.empty(w.shape, ct) if need_grads and (chunk < n or lp) else None  # dW of one chunk
    cw, rw = extras.class_weight, extras.row_weight
    wsum = T(c if cw is None else cw.sum(dtype=np.float64))
    xb, wb, bits_rows, bits_lse = H.bits(x), H.bits(w), H.bits(rows), H.bits(lse)
    has_b = b is not None
    empty = np.empty(0, dtype=ct)
    bb = H.bits(b) if has_b else empty
    gg = H.bits(grad) if grad is not None else empty
    args = (H.bits(cw) if cw is not None else empty, cw is not None, wsum,
            H.bits(rw) if rw is not None else empty, rw is not None, T(extras.softcap), T(extras.z_scale))
    mm = matmul_lp if lp else (lambda a, b_, out: np.matmul(a, b_, out=out))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        Lk, xk = L[:r1 - r0], xb[r0:r1]
        mm(xk, wb.T if w_oi else wb, Lk)
        lk = bits_rows[r0:r1] if want_none and not lp else lbuf[:r1 - r0]
        tk, gk, ek = target[r0:r1], gg[r0:r1], bits_lse[r0:r1]
        rk = args[3][r0:r1] if rw is not None else empty
        A.parallel_for(r1 - r0, max(1, A.GRAIN // c), lambda lo, hi, Lk=Lk, tk=tk, gk=gk, lk=lk, ek=ek, rk=rk: ce_rows(
            Lk[lo:hi], bb, has_b, tk[lo:hi], gk[lo:hi], grad is not None, T(gs), ignore_index, T(ls), need_grads,
            lk[lo:hi], args[0], args[1], args[2], rk[lo:hi] if rw is not None else empty, args[4], args[5], args[6],
            ek[lo:hi], extras.want_lse))
        total += float(lk.sum(dtype=np.float64))
        if want_none and lp:
            H.narrow_into(lk.reshape(1, -1), bits_rows[r0:r1].reshape(1, -1))
        if not need_grads:
            continue
        mm(Lk, wb if w_oi else wb.T, H.bits(dx)[r0:r1])
        dst = dwacc if part is None else part
        if w_oi:
            mm(Lk.T, xk, dst)   # dW (c, h) = G^T x
        else:
            mm(xk.T, Lk, dst)   # dW (h, c) = x^T G
        if part is not None:
            dwacc += part
        db += Lk.sum(axis=0, dtype=np.float64)
    if lp and need_grads:
        H.narrow_into(dwacc, H.bits(dw))
    if db is not None:
        res = np.empty(c, x.dtype)
        H.narrow_into(db.reshape(1, c), H.bits(res).reshape(1, c)) if lp else res.__setitem__(slice(None), db)
        db = res
    return total, rows, dx, dw, db, (lse if extras.want_lse else None)
