"""Which bridge runs the kernels (the one for keras.backend.backend(), imported on first
use) and the dtype rule shared by the layers and losses.

dtype rule: float16, bfloat16, float32 and float64 run on the kernels as they are (the
16-bit ones natively: mixed_float16 / mixed_bfloat16 policies hand the layers tensors of
the compute dtype, and the kernels widen them to float32 in registers or L1-sized blocks,
accumulate in float32 and round each output once; no float32 copy of a tensor is made
here); anything else is cast to the layer's compute dtype first (as stock Dense's matmul
promotes an integer input).
"""
import importlib
import math
from typing import Any, Dict

import keras
from keras import ops

_MODULES = {"tensorflow": "._tf", "jax": "._jax", "torch": "._torch"}
KERNEL_DTYPES = ("float16", "bfloat16", "float32", "float64")
_loaded: Dict[str, Any] = {}


def backend_name():
    return keras.backend.backend()


def get():
    """The bridge module of the current Keras backend."""
    name = backend_name()
    mod = _loaded.get(name)
    if mod is None:
        if name not in _MODULES:
            raise RuntimeError(f"fastnn.keras: Keras backend {name!r} is not supported; expected one of "
                               f"{sorted(_MODULES)} (set KERAS_BACKEND)")
        mod = _loaded[name] = importlib.import_module(_MODULES[name], __package__)
    return mod


def dtype_of(x):
    return keras.backend.standardize_dtype(x.dtype)


def cast(x, dtype):
    return x if x is None or dtype_of(x) == dtype else ops.cast(x, dtype)


def params_key(params):
    """A hashable, canonical form of a params dict (jax's static arguments need one)."""
    return tuple(sorted((k, float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                         and k != "axis" else v) for k, v in params.items()))


INF = math.inf
