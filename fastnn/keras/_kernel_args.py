"""What the compiled routes of the tensorflow and jax bridges (csrc/tf/ops.cc, csrc/jax/ffi.cpp)
pass besides arrays, and which calls they serve. An activation or loss crosses as its
resolved spec's code and its 8 numeric parameters (fastnn/_checks.py: ActSpec / LossSpec
.code and .numeric), which fastnn._C's front end decodes; each bridge encodes them in its
framework's attribute types. The sources are built with fastnn/_extbuild.py against
fastnn._C's front end (csrc/front)."""
import functools
import os

from fastnn import _checks as C, _extbuild, _registry as R


@functools.lru_cache(maxsize=256)
def activation(name, params):
    """The ActSpec of activation `name` (code, numeric, axis, from_y)."""
    return C.activation_spec_cached("fastnn.keras." + name, name, dict(params))


@functools.lru_cache(maxsize=256)
def loss(name, params):
    """The LossSpec of loss `name` (code, numeric)."""
    return C.loss_spec_cached("fastnn.keras." + name, name, dict(params))


def last_axis(name, params, ndim):
    """True if the activation is elementwise or runs along the last axis (what the
    compiled ops do)."""
    axis = activation(name, params).axis
    return axis is None or (ndim is not None and ndim > 0 and axis % ndim == ndim - 1)


def loss_serves(name, pred_shape, target_shape, same_dtype, int_labels):
    """True for the calls the compiled ops take: elementwise losses with a target of pred's
    dtype and shape, class losses with int32 / int64 labels of shape pred.shape[:-1]
    (shapes as lists; None where unknown)."""
    if pred_shape is None or target_shape is None:
        return False
    if name in R.CLASS_LOSSES:
        return int_labels and list(target_shape) == list(pred_shape)[:-1]
    return name in R.ELEMENTWISE_LOSSES and same_dtype and list(target_shape) == list(pred_shape)


def sources(bridge, main):
    """(csrc, the bridge's source, every file its build depends on) for csrc/<bridge>/<main>."""
    csrc = _extbuild.csrc_dir()
    src = os.path.join(csrc, bridge, main)
    return csrc, src, [src] + _extbuild.front_headers(csrc)
