"""Keras' losses on fastnn's loss kernels.

Each class subclasses its keras.losses twin, so arguments, reductions
("sum_over_batch_size" default, "sum", "mean", "mean_with_sample_weight", "none"),
sample_weight, masks, the dtype policy and serialization are Keras' own; only the
per-sample function differs: the per-element (or per-row) loss is a fastnn kernel
with reduction "none", forward and backward, then Keras' mean over the last axis.
Keras' conventions are kept exactly (keras/src/losses/losses.py and the backends' nn.py,
3.15)::

    MeanSquaredError      mean((p - t)^2)                        kernel mse
    MeanAbsoluteError     mean(|p - t|)                          kernel mae
    Huber(delta)          mean(huber_delta(p - t))               kernel huber
    LogCosh               mean(log cosh(p - t))                  kernel log_cosh
    Hinge / SquaredHinge  mean(max(1 - t p, 0) [^2]), labels 0/1 -> -1/+1 when all are 0 or 1
    Poisson               mean(p - t log(p + eps))               kernel poisson_nll(log_input=False)
    KLDivergence          sum(t log(t / p)), t and p clipped to [eps, 1]   kernel kl_div on log p
    BinaryCrossentropy    mean(bce(clip(p, eps, 1 - eps), t)), or bce_with_logits;
                          label smoothing t (1 - ls) + ls / 2
    CategoricalCrossentropy   -sum t log(clip(p / sum p, eps, 1 - eps)), or cross_entropy
                          from logits; label smoothing t (1 - ls) + ls / C
    SparseCategoricalCrossentropy   -log(clip(p / sum p, eps, 1 - eps))_y (kernel nll),
                          or cross_entropy from logits

eps = keras.config.epsilon(). On tensorflow, a sigmoid / softmax output carries its
logits (as in stock Keras) and the crossentropies then compute from the logits.
Gradients flow to y_pred only (labels are constants, as in training).
SparseCategoricalCrossentropy with ``ignore_class`` runs Keras' own function.
"""
import warnings

import keras
from keras import ops

from . import _bridge as B


def _kernel(name, pred, target, params=None, rowwise=False):
    """The fastnn loss `name` with reduction "none" (per element; per row for the
    class losses), in pred's dtype (16-bit natively: float32 math, rounded once)."""
    if B.dtype_of(target) in B.KERNEL_DTYPES:
        target = B.cast(target, B.dtype_of(pred))
        if tuple(target.shape) != tuple(pred.shape):  # Keras broadcasts labels; the kernels do not
            target = ops.broadcast_to(target, ops.shape(pred))
    shape = pred.shape[:-1] if rowwise else pred.shape
    return B.get().loss(pred, target, name, B.params_key(params or {}), shape)


def _prepare(y_true, y_pred):
    y_pred = ops.convert_to_tensor(y_pred)
    return ops.cast(y_true, y_pred.dtype), y_pred


def _hinge_labels(y_true):
    """Keras' convert_binary_labels_to_hinge: 0/1 labels -> -1/+1 when every label is 0 or 1."""
    is_binary = ops.all(ops.logical_or(ops.equal(y_true, 0), ops.equal(y_true, 1)))
    return ops.where(is_binary, 2.0 * y_true - 1.0, y_true)


def _logits(y_pred, from_logits, op_type, fn_name):
    """(tensor, from_logits): the logits behind a tagged sigmoid / softmax output (TF)."""
    logits = B.get().logits_of(y_pred, op_type)
    if logits is None:
        return y_pred, from_logits
    if from_logits:
        warnings.warn(f'"`{fn_name}` received `from_logits=True`, but the `output` argument was produced by a '
                      f"{op_type} activation and thus does not represent logits. Was this intended?", stacklevel=3)
    return logits, True


def _last(t, axis):
    return t if axis in (-1, len(t.shape) - 1) else ops.moveaxis(t, axis, -1)


# ---- per-sample functions (the signatures of keras.losses.*) -----------------------------

def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    return ops.mean(_kernel("mse", y_pred, y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    return ops.mean(_kernel("mae", y_pred, y_true), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    y_true, y_pred = _prepare(y_true, y_pred)
    return ops.mean(_kernel("huber", y_pred, y_true, {"delta": float(delta)}), axis=-1)


def log_cosh(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    return ops.mean(_kernel("log_cosh", y_pred, y_true), axis=-1)


def hinge(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    return ops.mean(_kernel("hinge", y_pred, _hinge_labels(y_true)), axis=-1)


def squared_hinge(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    return ops.mean(_kernel("squared_hinge", y_pred, _hinge_labels(y_true)), axis=-1)


def poisson(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    params = {"log_input": False, "full": False, "eps": float(keras.config.epsilon())}
    return ops.mean(_kernel("poisson_nll", y_pred, y_true, params), axis=-1)


def kl_divergence(y_true, y_pred):
    y_true, y_pred = _prepare(y_true, y_pred)
    eps = keras.config.epsilon()
    y_true, y_pred = ops.clip(y_true, eps, 1), ops.clip(y_pred, eps, 1)
    return ops.sum(_kernel("kl_div", ops.log(y_pred), y_true), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = _prepare(y_true, y_pred)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    y_pred, from_logits = _logits(y_pred, from_logits, "Sigmoid", "binary_crossentropy")
    if from_logits:
        per = _kernel("bce_with_logits", y_pred, y_true)
    else:
        eps = keras.config.epsilon()
        per = _kernel("bce", ops.clip(y_pred, eps, 1.0 - eps), y_true)
    return ops.mean(per, axis=axis)


def _log_probs(y_pred):
    """log of Keras' normalized, clipped probabilities, and the sum of the clipped ones."""
    eps = keras.config.epsilon()
    p = ops.clip(y_pred / ops.sum(y_pred, axis=-1, keepdims=True), eps, 1.0 - eps)
    return ops.log(p), p


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    if isinstance(axis, bool):
        raise ValueError(f"`axis` must be of type `int`. Received: axis={axis} of type {type(axis)}")
    y_true, y_pred = _prepare(y_true, y_pred)
    if y_pred.shape[-1] == 1:
        warnings.warn("In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, num_classes) "
                      f"with num_classes > 1. Received: y_pred.shape={y_pred.shape}. Consider using "
                      "'binary_crossentropy' if you only have 2 classes.", SyntaxWarning, stacklevel=2)
    if label_smoothing:
        num_classes = ops.cast(ops.shape(y_true)[-1], y_pred.dtype)
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    y_true, y_pred = _last(y_true, axis), _last(y_pred, axis)
    y_pred, from_logits = _logits(y_pred, from_logits, "Softmax", "categorical_crossentropy")
    if from_logits:
        return _kernel("cross_entropy", y_pred, y_true, rowwise=True)
    # cross_entropy of the logits log(p) is -sum t log p + sum(t) log(sum p): Keras' value
    # is that minus the second term (p clipped, so sum p is not exactly 1)
    logp, p = _log_probs(y_pred)
    ce = _kernel("cross_entropy", logp, y_true, rowwise=True)
    return ce - ops.sum(y_true, axis=-1) * ops.log(ops.sum(p, axis=-1))


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    if ignore_class is not None:
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=from_logits,
                                                            ignore_class=ignore_class, axis=axis)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[axis] == 1:
        y_true = ops.squeeze(y_true, axis=axis)
    y_true = ops.cast(y_true, "int32")
    y_pred = _last(y_pred, axis)
    y_pred, from_logits = _logits(y_pred, from_logits, "Softmax", "sparse_categorical_crossentropy")
    if from_logits:
        return _kernel("cross_entropy", y_pred, y_true, rowwise=True)
    return _kernel("nll", _log_probs(y_pred)[0], y_true, rowwise=True)


# The per-sample functions' docstrings, from one template: each keeps the signature and
# formula of its keras.losses twin (the table of the module docstring).
_KERNEL = {"mean_squared_error": "mse", "mean_absolute_error": "mae", "huber": "huber", "log_cosh": "log_cosh",
           "hinge": "hinge", "squared_hinge": "squared_hinge", "poisson": "poisson_nll",
           "kl_divergence": "kl_div", "binary_crossentropy": "bce or bce_with_logits",
           "categorical_crossentropy": "cross_entropy (from_logits) or its Keras clipped form",
           "sparse_categorical_crossentropy": "nll or cross_entropy (from_logits)"}
_DOC = """``keras.losses.{name}`` on fastnn's {kernel} kernel: one loss per sample.

Takes the arguments and defaults of ``keras.losses.{name}`` and computes Keras' formula
(the table above: epsilon clipping, label conversion, the mean over the last axis).

Returns
-------
tensor
    The per-sample losses, shape ``y_pred.shape[:-1]``, y_pred's dtype (float16 /
    bfloat16 natively: float32 math inside the kernel, each value rounded once). The class losses take the class axis last.

Raises
------
ValueError
    Shapes that do not fit (y_true of y_pred's shape; class indices of
    ``y_pred.shape[:-1]`` for the sparse loss), as stock Keras.

Examples
--------
>>> import numpy as np, fastnn.keras.losses as fl
>>> per_sample = fl.{name}(np.ones((2, 3), "float32"), np.full((2, 3), 0.5, "float32"))
"""
for _name, _kernel_name in _KERNEL.items():
    _fn = globals()[_name]
    if not _fn.__doc__:
        _fn.__doc__ = _DOC.format(name=_name, kernel=_kernel_name)
    if _name == "sparse_categorical_crossentropy":
        _fn.__doc__ = _fn.__doc__.replace('np.ones((2, 3), "float32"), np.full', 'np.array([0, 2]), np.full')


# ---- the loss classes ---------------------------------------------------------------------

def _fastnn_loss(stock, fn):
    """A subclass of the keras.losses class `stock` whose per-sample function is `fn`."""

    def __init__(self, *args, **kwargs):
        stock.__init__(self, *args, **kwargs)
        self.fn = fn

    name = stock.__name__
    args = ('np.array([0, 2]), np.array([[2.0, 0.5, 0.1], [0.2, 0.3, 1.5]], "float32")'
            if name == "SparseCategoricalCrossentropy" else
            'np.array([[0.0, 1.0, 1.0]], "float32"), np.array([[0.2, 0.7, 0.9]], "float32")')
    doc = f"""``keras.losses.{name}`` computed by fastnn's kernels.

    A subclass of the stock class: the same constructor arguments and defaults
    (``reduction``, ``name``, ``dtype`` and the loss's own options), reductions,
    ``sample_weight``, masks and ``get_config``; the per-sample values are
    :func:`fastnn.keras.losses.{fn.__name__}` (float16, bfloat16, float32 and float64 on
    the kernels). As stock, the loss computes in its own ``dtype`` (default floatx,
    float32 even under a mixed policy: y_pred is cast to it first); ``dtype="bfloat16"``
    or a mixed policy makes it compute natively in 16 bits.

    Parameters
    ----------
    arguments : as ``keras.losses.{name}``
        Passed to the stock constructor unchanged.

    Returns
    -------
    A loss object; calling it with ``(y_true, y_pred, sample_weight=None)`` returns the
    reduced loss, as stock.

    Raises
    ------
    ValueError, TypeError
        As stock for bad arguments; fastnn's kernels name the argument for bad inputs.

    Examples
    --------
    >>> import numpy as np, fastnn.keras.losses as fl
    >>> value = fl.{name}()({args})
    """
    cls = type(stock.__name__, (stock,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})
    return keras.saving.register_keras_serializable(package="fastnn")(cls)


MeanSquaredError = _fastnn_loss(keras.losses.MeanSquaredError, mean_squared_error)
MeanAbsoluteError = _fastnn_loss(keras.losses.MeanAbsoluteError, mean_absolute_error)
Huber = _fastnn_loss(keras.losses.Huber, huber)
LogCosh = _fastnn_loss(keras.losses.LogCosh, log_cosh)
Hinge = _fastnn_loss(keras.losses.Hinge, hinge)
SquaredHinge = _fastnn_loss(keras.losses.SquaredHinge, squared_hinge)
Poisson = _fastnn_loss(keras.losses.Poisson, poisson)
KLDivergence = _fastnn_loss(keras.losses.KLDivergence, kl_divergence)
BinaryCrossentropy = _fastnn_loss(keras.losses.BinaryCrossentropy, binary_crossentropy)
CategoricalCrossentropy = _fastnn_loss(keras.losses.CategoricalCrossentropy, categorical_crossentropy)
SparseCategoricalCrossentropy = _fastnn_loss(keras.losses.SparseCategoricalCrossentropy,
                                             sparse_categorical_crossentropy)

__all__ = [
    "BinaryCrossentropy", "CategoricalCrossentropy", "Hinge", "Huber", "KLDivergence", "LogCosh",
    "MeanAbsoluteError", "MeanSquaredError", "Poisson", "SparseCategoricalCrossentropy", "SquaredHinge",
    "binary_crossentropy", "categorical_crossentropy", "hinge", "huber", "kl_divergence", "log_cosh",
    "mean_absolute_error", "mean_squared_error", "poisson", "sparse_categorical_crossentropy", "squared_hinge",
]
