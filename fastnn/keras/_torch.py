"""torch bridge: the fastnn.torch ops, which are autograd Functions already (and custom
ops fastnn::* under torch.compile, so ``jit_compile=True`` works). Keras' kernel is
(in, out): fastnn.torch.linear takes its transpose, an (out, in) Fortran-order view
the kernels read without a copy; the gradient comes back through the same view."""

from fastnn.torch import _ops
from fastnn.torch import functional as F

def dense(x, w, b, name, params):
    """act(x @ w + b): x (..., in), w (in, out), b (out,) or None; one float dtype."""
    return F.linear(x, w.T, b, activation=name, **dict(params))

def activation(x, name, params):
    return _ops.activation(x, name, dict(params))

def loss(pred, target, name, params, none_shape):
    """The "none" loss (per element, or per row for cross_entropy); d/d pred only."""
    target = target.detach()
    if target.is_floating_point() and target.dtype != pred.dtype:
        target = target.to(pred.dtype)
    return _ops.loss(pred, target, name, "none", dict(params))

def logits_of(output, op_type):  # noqa: ARG001 - Keras' torch losses never use the logits
    return None

