"""TensorFlow bridge: fastnn kernels inside TF autodiff and tf.function.

The ops run as TensorFlow ops built from csrc/tf/ops.cc (_tf_ops.py: no Python inside the
step). Where those are unavailable (no compiler, FASTNN_TF_OPS=0) or a call is not one
they take, each op is a ``tf.custom_gradient`` whose forward and backward are
``tf.numpy_function(..., stateful=False)`` calls (stateless, so a graph that does not
use a result prunes its call: the first layer's dx is never computed). numpy_function
loses static shapes; they are restored with set_shape. XLA cannot compile a Python
callback, so layers using this bridge set ``supports_jit = False``.

Cost: one Dense forward + backward through this route cost 192-282 us more than stock
(examples/keras_mlp.py --overhead), about nothing through the ops.
"""
import tensorflow as tf

from . import _numpy as N, _tf_ops as O


def _call(fn, inputs, dtypes, shapes):
    outs = tf.numpy_function(fn, inputs, dtypes, stateful=False)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    for o, s in zip(outs, shapes):
        o.set_shape(s)
    return outs


def dense(x, w, b, name, params):
    """act(x @ w + b): x (..., in), w (in, out), b (out,) or None; one float dtype."""
    if O.usable() and O.act_last_axis(name, params, x.shape.rank):
        return O.dense(x, w, b, name, params)
    # tensors, not tf.Variables: a variable read inside the custom_gradient function would
    # make TF ask grad for a `variables=` argument
    x, w = tf.convert_to_tensor(x), tf.convert_to_tensor(w)
    b = None if b is None else tf.convert_to_tensor(b)
    kind = N.saves(name, params)
    has_b = b is not None
    dt = x.dtype
    y_shape = x.shape[:-1].concatenate(w.shape[-1:])

    @tf.custom_gradient
    def op(x, w, *b):
        outs = _call(lambda x, w, *b: N.dense_fwd(x, w, b[0] if b else None, name, params), [x, w, *b],
                     [dt] * (2 if kind == "z" else 1), [y_shape, y_shape])
        y = outs[0]
        r = {"none": y, "y": y, "z": outs[-1]}[kind]

        def grad(dy):
            n_out = 3 if has_b else 2
            g = _call(lambda dy, x, w, r: N.dense_bwd_w(dy, x, w, r, has_b, name, params), [dy, x, w, r],
                      [dt] * n_out, [y_shape, w.shape, w.shape[-1:]])
            dpre = g[0]
            (dx,) = _call(N.dense_bwd_x, [dpre, w], [dt], [x.shape])
            return [dx, *g[1:]]

        return y, grad

    return op(x, w, *([b] if has_b else []))


def activation(x, name, params):
    x = tf.convert_to_tensor(x)
    if O.usable() and O.act_last_axis(name, params, x.shape.rank):
        return O.activation(x, name, params)
    kind = N.saves(name, params)

    @tf.custom_gradient
    def op(x):
        (y,) = _call(lambda x: N.act_fwd(x, name, params), [x], [x.dtype], [x.shape])

        def grad(dy):
            return _call(lambda dy, r: N.act_bwd(dy, r, name, params), [dy, y if kind == "y" else x],
                         [x.dtype], [x.shape])[0]

        return y, grad

    return op(x)


def loss(pred, target, name, params, none_shape):
    """The "none" loss (per element, or per row for cross_entropy); d/d pred only."""
    pred, target = tf.convert_to_tensor(pred), tf.stop_gradient(target)
    if O.usable() and O.loss_serves(name, pred, target):
        return O.loss(pred, target, name, params, none_shape)

    @tf.custom_gradient
    def op(pred):
        (out,) = _call(lambda p, t: N.loss_fwd(p, t, name, params), [pred, target], [pred.dtype], [none_shape])

        def grad(g):
            return _call(lambda g, p, t: N.loss_bwd(g, p, t, name, params), [g, pred, target], [pred.dtype],
                         [pred.shape])[0]

        return out, grad

    return op(pred)


def logits_of(output, op_type):
    """The logits behind a sigmoid / softmax output, as stock Keras' TF losses find them
    (``_keras_logits`` set by keras.activations, or the graph op's input); else None."""
    if hasattr(output, "_keras_logits"):
        return output._keras_logits
    if (hasattr(output, "op") and not isinstance(output, (tf.__internal__.EagerTensor, tf.Variable))
            and output.op.type == op_type and len(output.op.inputs) == 1):
        return output.op.inputs[0]
    return None
