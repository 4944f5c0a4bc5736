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
from typing import Any, Dict

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


def prepare_dense(activation="linear", *, caller="prepare_dense", **act_params):
    """A Dense layer's activation resolved and checked once, for repeated calls:
    ``op = fastnn.prepare_dense("gelu"); y, z = op.forward(x, w, b)``. Errors name
    `caller` (a wrapper passes its own function's name)."""
    return prepared(caller, activation, act_params)


def dense_forward(x, w, b=None, activation="linear", *, weight_layout="oi", keep_z=False, **act_params):
    """y = act(x @ W + b), the bias and activation fused into the product's pass.

    Args:
        x: (..., in), float32 or float64 (numpy, or cupy on a GPU).
        w: (out, in) for weight_layout="oi" (torch's nn.Linear), (in, out) for "io"
            (Keras' kernel); never copied when C- or Fortran-contiguous.
        b: (out,) or None.
        activation: a name of ``fastnn.ACTIVATIONS`` (softmax / log_softmax along the last
            axis), its parameters as keywords.
        keep_z: also return the pre-activation z when backward does not need it.
    Returns:
        (y, z): y (..., out); z (..., out) when the activation's backward reads its input
        (``saved_for_backward(activation) == {"x"}``) or keep_z, else None.
    Raises:
        ValueError / TypeError naming the argument: shapes that do not fit, mixed dtypes,
        unknown activation or parameter.

        >>> y, z = fastnn.dense_forward(x, w, b, "gelu")
    """
    return prepared("dense_forward", activation, act_params).forward(x, w, b, weight_layout=weight_layout,
                                                                     keep_z=keep_z)


def dense_backward(dy, x, w, y, z=None, activation="linear", *, weight_layout="oi", need_dx=True, need_dw=True,
                   need_db=True, **act_params):
    """(dx, dw, db) of dense_forward: dy (..., out) the upstream gradient, x and w as given
    to dense_forward, y and z as it returned them. dx (..., in), dw w's shape, db (out,);
    entries not asked for (need_dx / need_dw / need_db False) are None."""
    return prepared("dense_backward", activation, act_params).backward(
        dy, x, w, y, z, weight_layout=weight_layout, need_dx=need_dx, need_dw=need_dw, need_db=need_db)


# ---- fused Dense + cross-entropy ------------------------------------------------------------

def dense_cross_entropy(x, w, b, target, *, weight_layout="oi", reduction="mean", ignore_index=-100,
                        label_smoothing=0.0, chunk_size=None, need_grads=True, grad=None):
    """loss, (dx, dw, db) of cross_entropy(x @ W + b, target) in one chunked pass that never
    holds the (N, classes) logits.

    x (..., in); w (classes, in) ("oi") or (in, classes) ("io"); b (classes,) or None;
    target int32/int64 class indices of shape x.shape[:-1] (ignore_index rows count
    nothing). The gradients are those of the reduced loss times `grad` (a scalar, or for
    reduction "none" a per-row array; default 1). need_grads=False returns (None, None,
    None) for the gradients. chunk_size: rows per chunk (default: about 256 MiB of logits,
    at least 512 rows).
    """
    F = "dense_cross_entropy"
    spec = C.loss_spec(F, "cross_entropy", {"ignore_index": ignore_index, "label_smoothing": label_smoothing})
    reduction = C.reduction_of(F, "cross_entropy", reduction)
    chunk = C.chunk_size(F, chunk_size)
    be, xp = backend_for(F, x=x, w=w, b=b, target=target)
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
    ii = spec.params["ignore_index"]
    t = target if xp is not np else C.to_numpy(F, "target", target)
    t = C.index_target(F, t, x.shape[:-1], ncls, ii, xp, " (x.shape[:-1]: one class index per row)")
    count = int((t != ii).sum())
    garr, gs = C.upstream_grad(F, grad, reduction, x.shape[:-1], x.dtype, xp)
    if reduction == "mean":
        gs = float(divide(gs, count))
    total, rows, dx, dw, db = be.dense_cross_entropy(x2, wc, w_oi, b, t, ii, spec.params["label_smoothing"], garr,
                                                     gs, reduction == "none", bool(need_grads), chunk)
    if reduction == "none":
        loss = rows.reshape(x.shape[:-1])
    else:
        loss = xp.asarray(total if reduction == "sum" else divide(total, count), dtype=x.dtype)
    if not need_grads:
        return loss, (None, None, None)
    return loss, (dx.reshape(x.shape), dw.T if flipped else dw, db)
