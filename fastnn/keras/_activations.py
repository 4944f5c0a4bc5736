"""Keras activations -> fastnn activation names, with Keras 3's defaults.

Keras' activation functions (keras.activations.*, what ``activations.get("name")``
returns) are matched by identity; the defaults are the ones of
keras/src/activations/activations.py (3.15): leaky_relu slope 0.2, gelu exact (erf,
``approximate=False``), softplus log(1 + exp(x)) with no linear threshold, elu/celu
alpha 1, softmax / log_softmax over the last axis. Anything else (a Keras activation
fastnn has no kernel for, such as squareplus or glu, or a user function) is not mapped:
the layers then run Keras' own function after the fastnn linear part.
"""
import math

from keras import activations as A

# fastnn name and params for each mappable Keras activation function
_MAP = {
    A.linear: ("linear", {}),
    A.relu: ("relu", {}),
    A.relu6: ("relu6", {}),
    A.leaky_relu: ("leaky_relu", {"negative_slope": 0.2}),
    A.elu: ("elu", {"alpha": 1.0}),
    A.selu: ("selu", {}),
    A.celu: ("celu", {"alpha": 1.0}),
    A.gelu: ("gelu", {"approximate": "none"}),
    A.silu: ("silu", {}),
    A.mish: ("mish", {}),
    A.sigmoid: ("sigmoid", {}),
    A.hard_sigmoid: ("hard_sigmoid", {}),
    A.hard_silu: ("hard_silu", {}),
    A.tanh: ("tanh", {}),
    A.softplus: ("softplus", {"threshold": math.inf}),
    A.softsign: ("softsign", {}),
    A.log_sigmoid: ("log_sigmoid", {}),
    A.hard_tanh: ("hard_tanh", {}),
    A.exponential: ("exponential", {}),
    A.softmax: ("softmax", {"axis": -1}),
    A.log_softmax: ("log_softmax", {"axis": -1}),
}

# Keras tags the output of these with the logits (``_keras_logits``); stock TF losses
# then compute from the logits. The layers keep that: on tensorflow they run the
# fastnn linear part and then Keras' own function.
TAGS_LOGITS = (A.sigmoid, A.softmax)



def fastnn_spec(fn):
    """(fastnn name, params dict) for a Keras activation function, or None."""
    try:
        return _MAP.get(fn)
    except TypeError:  # an unhashable callable
        return None


def relu_spec(negative_slope, max_value, threshold):
    """fastnn's relu params for Keras' relu(negative_slope, max_value, threshold); None
    where Keras' formula is not x > threshold ? min(x, max_value) : slope * (x - threshold)
    (a negative threshold with a max_value: Keras clips (threshold, 0) to 0 there)."""
    if max_value is not None and threshold < 0:
        return None
    params = {}
    if negative_slope:
        params["negative_slope"] = float(negative_slope)
    if max_value is not None:
        params["max_value"] = float(max_value)
    if threshold:
        params["threshold"] = float(threshold)
    return ("relu", params)
