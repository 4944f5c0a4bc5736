"""Dense layers: the prepared call (a Dense activation resolved once), the public
dense_forward / dense_backward built on it, and the fused Dense + cross-entropy.

Shapes: x (..., in); w (out, in) for weight_layout "oi" (torch's nn.Linear) or (in, out)
for "io" (Keras' kernel); b (out,) or None; y, z, dy (..., out).

Two routes, decided here and nowhere else:
- plain: numpy arrays as the backend takes them (C-contiguous, aligned, one kernel dtype,
  x 2-D, w (out, in), shapes fitting). The C++ backend checks and allocates such calls in
  C++ (its dense_forward_plain / dense_backward_plain, which answer None for anything
  else); the other CPU backends get them after the few checks below. This route exists
  because the general checks cost more than a seed-size layer itself.
- general: everything else, every call that must raise included: full validation
  (fastnn._checks), then the backend of the inputs' device.
Both give the same results and the same errors.
"""
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _checks as C
from ._activation import prepared as _prepared_activation
from ._dispatch import backend_for, select
from ._loss import divide



def _plain(a, dtype, shape):
    return type(a) is np.ndarray and a.dtype == dtype and a.shape == shape and a.flags.c_contiguous


def _plain_xw(x, w):
    """(m, k, n) when x (m, k) and w (n, k) can go to a CPU backend as they are, else None."""
    if x.ndim != 2 or x.dtype not in C.FLOAT_DTYPES or not x.flags.c_contiguous:
        return None
    if type(w) is not np.ndarray or w.ndim != 2 or not _plain(w, x.dtype, w.shape) or w.shape[1] != x.shape[1]:
        return None
    return x.shape[0], x.shape[1], w.shape[0]


class PreparedDense:
    """A Dense layer's activation resolved once (``fastnn.prepare_dense``):
    ``forward(x, w, b)`` -> (y, z) and ``backward(dy, x, w, y, z)`` -> (dx, dw, db).

    Attributes:
        spec: the resolved activation.
        keeps_z: forward returns the pre-activation z (the activation's backward reads its
            input); otherwise z is None unless keep_z=True.
    """

    __slots__ = ("spec", "keeps_z", "_plain_ok")

    def __init__(self, spec):
        self.spec = spec
        self.keeps_z = spec.name != "linear" and not spec.from_y
        self._plain_ok = spec.axis in (None, -1, 1)

    def __repr__(self):
        return f"PreparedDense({self.spec.name!r}, {dict(self.spec.params)!r})"

    def forward(self, x, w, b=None, *, weight_layout="oi", keep_z=False):
        """y = act(x @ W + b), and z = x @ W + b when backward needs it or keep_z=True
        (else None). New arrays; the inputs are not modified."""
        spec = self.spec
        need_z = bool(keep_z) or self.keeps_z
        if type(x) is np.ndarray and weight_layout == "oi" and self._plain_ok:
            be = select("cpu")
            plain = getattr(be, "dense_forward_plain", None)
            if plain is not None:
                out = plain(x, w, b, spec.code, spec.numeric, need_z)
                if out is not None:
                    return out
            else:
                dims = _plain_xw(x, w)
                if dims is not None and (b is None or _plain(b, x.dtype, (dims[2],))):
                    return be.dense_forward(x, w, True, b, spec, need_z)
        F = "dense_forward"
        be, xp = backend_for(F, x=x, w=w, b=b)
        x, w = C.float_array(F, "x", x, xp), C.float_array(F, "w", w, xp)
        b = None if b is None else C.float_array(F, "b", b, xp)
        C.same_dtype(F, x=x, w=w, b=b)
        x2, wc, w_oi, _, n = C.dense_arrays(F, x, w, weight_layout, spec, xp)
        if b is not None:
            C.expect_shape(F, "b", b, (n,), " (out,)")
            b = xp.ascontiguousarray(b)
        y, z = be.dense_forward(x2, wc, w_oi, b, spec, need_z)
        shape = x.shape[:-1] + (n,)
        return y.reshape(shape), (None if z is None else z.reshape(shape))

    def backward(self, dy, x, w, y, z=None, *, weight_layout="oi", need_dx=True, need_dw=True, need_db=True):
        """(dx, dw, db) of forward for upstream gradient dy; y or z as forward returned them
        (the activation reads y where ``saved_for_backward`` says "y", else z). Entries not
        asked for are None."""
        spec = self.spec
        if type(x) is np.ndarray and weight_layout == "oi" and self._plain_ok:
            be = select("cpu")
            plain = getattr(be, "dense_backward_plain", None)
            if plain is not None:
                out = plain(dy, x, w, y, z, spec.from_y and y is not None, bool(need_dx), bool(need_dw),
                            bool(need_db), spec.code, spec.numeric)
            else:
                out = self._plain_backward(be, dy, x, w, y, z, (bool(need_dx), bool(need_dw), bool(need_db)))
            if out is not None:
                return out
        need = (bool(need_dx), bool(need_dw), bool(need_db))
        F = "dense_backward"
        be, xp = backend_for(F, dy=dy, x=x, w=w, y=y, z=z)
        dy, x, w = (C.float_array(F, n, a, xp) for n, a in (("dy", dy), ("x", x), ("w", w)))
        y = None if y is None else C.float_array(F, "y", y, xp)
        z = None if z is None else C.float_array(F, "z", z, xp)
        C.same_dtype(F, dy=dy, x=x, w=w, y=y, z=z)
        x2, wc, w_oi, flipped, n = C.dense_arrays(F, x, w, weight_layout, spec, xp)
        out_shape = x.shape[:-1] + (n,)
        for arg, a in (("dy", dy), ("y", y), ("z", z)):
            if a is not None:
                C.expect_shape(F, arg, a, out_shape, " (x's batch dims + (out,))")
        zy, from_y = None, False
        if spec.name != "linear":
            if spec.from_y and y is not None:
                zy, from_y = y, True
            elif z is not None:
                zy = z
            else:
                what = "y or z" if spec.from_y else "z, the pre-activation (dense_forward returns it)"
                raise ValueError(f"{F}: activation {spec.name!r} needs {what}; got None")
            zy = xp.ascontiguousarray(zy.reshape(x2.shape[0], n))
        dy2 = xp.ascontiguousarray(dy.reshape(x2.shape[0], n))
        dx, dw, db = be.dense_backward(dy2, x2, wc, w_oi, zy, from_y, spec, *need)
        if dx is not None:
            dx = dx.reshape(x.shape)
        if dw is not None and flipped:
            dw = dw.T
        return dx, dw, db

    def _plain_backward(self, be, dy, x, w, y, z, need):
        """The plain route for the CPU backends without a C++ one: a few Python checks."""
        spec = self.spec
        dims = _plain_xw(x, w)
        if dims is None:
            return None
        out, dt = (dims[0], dims[2]), x.dtype
        if not (_plain(dy, dt, out) and (y is None or _plain(y, dt, out)) and (z is None or _plain(z, dt, out))):
            return None
        zy, from_y = None, False
        if spec.name != "linear":
            zy, from_y = (y, True) if spec.from_y and y is not None else (z, False)
            if zy is None:
                return None
        return be.dense_backward(dy, x, w, True, zy, from_y, spec, *need)


_prepared: Dict[Any, Any] = {}


def prepared(func, activation, params):
    """The PreparedDense of (activation, params), resolved once per distinct arguments."""
    return C.prepared_for(_prepared, C.activation_spec_cached(func, activation, params), PreparedDense)


def prepare_dense(activation: str = "linear", *, caller: str = "prepare_dense", **act_params: Any) -> "PreparedDense":
    """A Dense layer's activation resolved and checked once, for repeated calls.

    Parameters
    ----------
    activation : str
        A name or alias of ``fastnn.ACTIVATIONS``; default ``"linear"``.
    caller : str
        The function name errors name (a wrapper passes its own).
    **act_params
        The activation's parameters.

    Returns
    -------
    PreparedDense
        With ``forward(x, w, b)`` and ``backward(dy, x, w, y, z)``, the arguments of
        :func:`dense_forward` / :func:`dense_backward` less the activation.

    Raises
    ------
    ValueError
        An unknown activation or parameter, naming `caller`.

    Examples
    --------
    >>> op = fastnn.prepare_dense("gelu")
    >>> y, z = op.forward(np.ones((4, 3), np.float32), np.ones((2, 3), np.float32))
    """
    return prepared(caller, activation, act_params)


def dense_forward(x: Any, w: Any, b: Any = None, activation: str = "linear", *, weight_layout: str = "oi",
                  keep_z: bool = False, **act_params: Any) -> Tuple[Any, Optional[Any]]:
    """``y = act(x @ W + b)``, the bias and activation fused into the product's pass.

    Parameters
    ----------
    x : numpy.ndarray or cupy.ndarray, shape (..., in)
        float16, bfloat16, float32 or float64; any layout. Not modified. 16-bit
        layers multiply and add in float32 and round y (and z) once (:doc:`../lowp`).
    w : array, shape (out, in) or (in, out)
        (out, in) for ``weight_layout="oi"`` (torch's nn.Linear), (in, out) for ``"io"``
        (Keras' kernel); x's dtype; never copied when C- or Fortran-contiguous.
    b : array, shape (out,), optional
        The bias, x's dtype.
    activation : str
        A name or alias of ``fastnn.ACTIVATIONS`` (softmax / log_softmax along the last
        axis); default ``"linear"``.
    weight_layout : {"oi", "io"}
        The layout of w.
    keep_z : bool
        Also return the pre-activation z when the backward does not need it.
    **act_params
        The activation's parameters.

    Returns
    -------
    y : array, shape (..., out)
        x's dtype and kind.
    z : array, shape (..., out), or None
        The pre-activation, when the activation's backward reads its input
        (``saved_for_backward(activation) == {"x"}``) or `keep_z`; else None.

    Raises
    ------
    ValueError
        Shapes that do not fit (naming the argument, its shape and the expected one), an
        unknown activation or parameter, a bad `weight_layout`.
    TypeError
        Mixed dtypes or non-float arrays.

    Examples
    --------
    >>> x = np.random.randn(32, 64).astype(np.float32)
    >>> w = np.random.randn(16, 64).astype(np.float32)
    >>> y, z = fastnn.dense_forward(x, w, None, "gelu")
    >>> y.shape, z.shape
    ((32, 16), (32, 16))
    """
    return prepared("dense_forward", activation, act_params).forward(x, w, b, weight_layout=weight_layout,
                                                                     keep_z=keep_z)


def dense_backward(dy: Any, x: Any, w: Any, y: Any, z: Any = None, activation: str = "linear", *,
                   weight_layout: str = "oi", need_dx: bool = True, need_dw: bool = True, need_db: bool = True,
                   **act_params: Any) -> Tuple[Optional[Any], Optional[Any], Optional[Any]]:
    """The gradients ``(dx, dw, db)`` of :func:`dense_forward`.

    Parameters
    ----------
    dy : array, shape (..., out)
        The upstream gradient d(loss)/dy, x's dtype.
    x, w : array
        As given to :func:`dense_forward` (same `weight_layout`).
    y, z : array or None
        As :func:`dense_forward` returned them (the activation's backward reads one of
        them; None where it returned None).
    activation : str
        The activation of the forward call, with the same ``act_params``.
    weight_layout : {"oi", "io"}
        The layout of w.
    need_dx, need_dw, need_db : bool
        Which gradients to compute; an entry not asked for is None and costs nothing.
    **act_params
        The activation's parameters.

    Returns
    -------
    dx : array of x's shape, or None
    dw : array of w's shape and layout, or None
    db : array, shape (out,), or None

    Raises
    ------
    ValueError
        Shapes that do not fit; the array the activation's backward needs is missing.
    TypeError
        Mixed dtypes or non-float arrays.

    Examples
    --------
    >>> x = np.random.randn(8, 5); w = np.random.randn(3, 5); b = np.zeros(3)
    >>> y, z = fastnn.dense_forward(x, w, b, "tanh")
    >>> dx, dw, db = fastnn.dense_backward(np.ones_like(y), x, w, y, z, "tanh")
    >>> dx.shape, dw.shape, db.shape
    ((8, 5), (3, 5), (3,))
    """
    return prepared("dense_backward", activation, act_params).backward(
        dy, x, w, y, z, weight_layout=weight_layout, need_dx=need_dx, need_dw=need_dw, need_db=need_db)


# ---- fused Dense + cross-entropy ------------------------------------------------------------

def dense_cross_entropy(x: Any, w: Any, b: Any, target: Any, *, weight_layout: str = "oi",
                        reduction: str = "mean", ignore_index: int = -100, label_smoothing: float = 0.0,
                        class_weight: Any = None, row_weight: Any = None, softcap: Optional[float] = None,
                        lse_square_scale: float = 0.0, return_lse: bool = False,
                        chunk_size: Optional[int] = None, need_grads: bool = True, grad: Any = None) -> Any:
    """``cross_entropy(x @ W + b, target)`` and its gradients in one chunked pass.

    The (N, classes) logits are never held: rows are processed in chunks, forward and
    backward together (torch's ``F.cross_entropy(F.linear(x, w, b), target)``).

    With L = x @ W + b, p = softmax(L), lse = log sum_j exp(L_j), y the target, row i's loss
    is that of torch's ``cross_entropy(L, target, weight=class_weight,
    label_smoothing=label_smoothing, reduction="none")``, then the options beyond torch (all
    off by default), inside the same chunked pass. Ignored rows have loss 0. "mean" divides
    the sum of the row losses by torch's denominator: the sum of class_weight[y_i] over the
    rows not ignored (their count without class weights); row weights do not enter it, so
    all-ones row weights give the unweighted loss.

    Parameters
    ----------
    x : array, shape (..., in)
        float16, bfloat16, float32 or float64 (16-bit: logits, softmax and sums in
        float32, each output rounded once, :doc:`../lowp`).
    w : array, shape (classes, in) or (in, classes)
        ``weight_layout="oi"`` or ``"io"``; x's dtype.
    b : array, shape (classes,), or None
    target : integer array, shape x.shape[:-1]
        int32 / int64 class indices; rows equal to `ignore_index` count nothing.
    reduction : {"mean", "sum", "none"}
        "none" returns one loss per row.
    ignore_index : int
        Default -100, as torch.
    label_smoothing : float in [0, 1]
    class_weight : array, shape (classes,), optional
        torch's ``weight``: row i's loss is scaled by class_weight[y_i] (smoothing terms by
        each class's weight), and "mean" is the weighted mean.
    row_weight : array, shape x.shape[:-1], optional
        Multiplies row i's loss (class weight, smoothing and z-loss included): per-token
        loss weights.
    softcap : float > 0, optional
        The logits become ``softcap * tanh(L / softcap)`` before the softmax (logit
        soft-capping).
    lse_square_scale : float >= 0
        Adds the z-loss ``lse_square_scale * lse**2`` to each row not ignored.
    return_lse : bool
        Also return each row's log-sum-exp (of the capped logits), shape x.shape[:-1];
        ignored rows included.
    chunk_size : int, optional
        Rows per chunk (default: about 256 MiB of logits, at least 512 rows).
    need_grads : bool
        False returns ``(None, None, None)`` for the gradients.
    grad : scalar or array, optional
        The upstream gradient of the loss (for "none" one per row); default 1.

    Returns
    -------
    loss : array
        0-d (mean / sum) or x.shape[:-1] ("none"), x's dtype.
    (dx, dw, db) : tuple of arrays or None
        x's shape, w's shape and layout, (classes,).
    lse : array, shape x.shape[:-1]
        Only with ``return_lse=True``: ``(loss, (dx, dw, db), lse)``.

    Raises
    ------
    ValueError
        Shapes that do not fit; a class index out of range that is not `ignore_index`;
        a bad reduction, label_smoothing, chunk_size, softcap or lse_square_scale.
    TypeError
        Mixed or non-float dtypes, a non-integer target.

    Examples
    --------
    >>> x = np.random.randn(64, 32).astype(np.float32)
    >>> w = np.random.randn(1000, 32).astype(np.float32)
    >>> t = np.random.randint(0, 1000, 64)
    >>> loss, (dx, dw, db) = fastnn.dense_cross_entropy(x, w, None, t)
    """
    F = "dense_cross_entropy"
    spec = C.loss_spec(F, "cross_entropy", {"ignore_index": ignore_index, "label_smoothing": label_smoothing})
    reduction = C.reduction_of(F, "cross_entropy", reduction)
    chunk = C.chunk_size(F, chunk_size)
    be, xp = backend_for(F, x=x, w=w, b=b, target=target, class_weight=class_weight, row_weight=row_weight)
    x, w = C.float_array(F, "x", x, xp), C.float_array(F, "w", w, xp)
    b = None if b is None else C.float_array(F, "b", b, xp)
    C.same_dtype(F, x=x, w=w, b=b)
    lin = _prepared_activation(F, "linear", {}).spec
    x2, wc, w_oi, flipped, ncls = C.dense_arrays(F, x, w, weight_layout, lin, xp)
    if b is not None:
        C.expect_shape(F, "b", b, (ncls,), " (classes,)")
        b = xp.ascontiguousarray(b)
    if ncls == 0 and x2.shape[0] > 0:
        raise ValueError(f"{F}: w has shape {C.shape_str(w.shape)}: 0 classes; expected at least one")
    extras = C.ce_extras(F, x, x.shape[:-1], ncls, class_weight, row_weight, softcap, lse_square_scale, return_lse,
                         xp)
    ii = spec.params["ignore_index"]
    t = target if xp is not np else C.to_numpy(F, "target", target)
    t = C.index_target(F, t, x.shape[:-1], ncls, ii, xp, " (x.shape[:-1]: one class index per row)")
    garr, gs = C.upstream_grad(F, grad, reduction, x.shape[:-1], x.dtype, xp)
    denom = None
    if reduction == "mean":
        kept = t != ii
        denom = (int(kept.sum()) if extras.class_weight is None
                 else float(extras.class_weight[t[kept]].sum(dtype=xp.float64)))
        gs = float(divide(gs, denom))
    total, rows, dx, dw, db, lse = be.dense_cross_entropy(
        x2, wc, w_oi, b, t, ii, spec.params["label_smoothing"], garr, gs, reduction == "none", bool(need_grads),
        chunk, extras)
    if reduction == "none":
        loss = rows.reshape(x.shape[:-1])
    else:
        loss = xp.asarray(total if reduction == "sum" else divide(total, denom), dtype=x.dtype)
    grads = (None, None, None) if not need_grads else (dx.reshape(x.shape), dw.T if flipped else dw, db)
    if extras.want_lse:
        return loss, grads, lse.reshape(x.shape[:-1])
    return loss, grads
