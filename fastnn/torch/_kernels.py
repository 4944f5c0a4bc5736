"""The fastnn kernel calls on tensors: every autograd path (autograd.Function in eager,
torch.library custom ops under torch.compile) goes through these functions.

Inputs are tensors of one kernel dtype (float32/float64) on one device; params is a
dict of Python scalars; weight / pos_weight are the loss's tensor params (or None).
Outputs are fresh tensors (the kernels never return views of their inputs). On CUDA,
every DLPack exchange happens inside scope(), on torch's current stream.
"""
import fastnn

from ._bridge import scope, to_array as A, to_tensor as T


# ---- dense: y = act(x @ w.T + b), x (..., in), w (out, in), b (out,) ----------------------

def dense_forward(x, w, b, activation, params):
    """(y, z): z is the pre-activation when the activation's backward needs it, else None."""
    with scope(x):
        y, z = fastnn.dense_forward(A(x), A(w), A(b), activation, **params)
        return T(y), T(z)


def dense_backward(dy, x, w, y, z, activation, params, need_dx, need_dw, need_db):
    """(dx, dw, db); entries not asked for are None."""
    with scope(dy):
        dx, dw, db = fastnn.dense_backward(A(dy), A(x), A(w), A(y), A(z), activation, need_dx=need_dx,
                                           need_dw=need_dw, need_db=need_db, **params)
        return T(dx), T(dw), T(db)


# ---- activations: y = f(x), any shape --------------------------------------------------

def activation_forward(x, name, params):
    with scope(x):
        return T(fastnn.activation_forward(A(x), name, **params))


def activation_backward(dy, src, from_y, name, params):
    """dx from the saved x (from_y False) or y (from_y True)."""
    with scope(dy):
        if from_y:
            return T(fastnn.activation_backward(A(dy), name, y=A(src), **params))
        return T(fastnn.activation_backward(A(dy), name, x=A(src), **params))


# ---- losses: pred (..., C) for the class losses (class axis last), else target's shape ---

def _tensor_params(params, weight, pos_weight):
    p = dict(params)
    if weight is not None:
        p["weight"] = A(weight)
    if pos_weight is not None:
        p["pos_weight"] = A(pos_weight)
    return p


def loss_forward(pred, target, name, reduction, params, weight=None, pos_weight=None):
    with scope(pred):
        out = fastnn.loss_forward(A(pred), A(target), name, reduction=reduction,
                                  **_tensor_params(params, weight, pos_weight))
        return T(out)


def loss_backward(grad, pred, target, name, reduction, params, weight, pos_weight, need_target_grad):
    """(dpred, dtarget); dtarget is None unless need_target_grad."""
    with scope(pred):
        out = fastnn.loss_backward(A(pred), A(target), name, reduction=reduction, grad=A(grad),
                                   need_target_grad=need_target_grad,
                                   **_tensor_params(params, weight, pos_weight))
        if need_target_grad:
            return T(out[0]), T(out[1])
        return T(out), None
