"""Pieces the Python-side backends (numba on numpy, cupy on device arrays) share."""


def input_grads(xp, g, x, w, w_oi, need_dx, need_dw):
    """(dx, dw) of a Dense layer from g = dL/dz (m, n): dx = g W, dw = g^T x (w is (n, k),
    "oi") or x^T g (w is (k, n), "io"), each through one xp.matmul (BLAS / cuBLAS) into a
    fresh array; None where not needed."""
    dx = dw = None
    if need_dx:
        dx = xp.empty_like(x)
        xp.matmul(g, w if w_oi else w.T, out=dx)
    if need_dw:
        dw = xp.empty_like(w)
        xp.matmul(g.T, x, out=dw) if w_oi else xp.matmul(x.T, g, out=dw)
    return dx, dw
