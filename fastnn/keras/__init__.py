"""fastnn.keras: drop-in Keras 3 layers and losses on fastnn's kernels, for the
tensorflow, jax and torch Keras backends.

    >>> from fastnn.keras import Dense                     # the only line that changes
    >>> model = keras.Sequential([Dense(10, input_dim=20, activation="relu"),
    ...                           Dense(1, activation="sigmoid")])
    >>> model.compile(loss=fastnn.keras.losses.BinaryCrossentropy(), optimizer="adam")

- ``Dense`` and the activation layers ``Activation, ReLU, LeakyReLU, ELU, Softmax``
  subclass their keras.layers twins (arguments, weights, config, LoRA, quantization,
  serialization: Keras'); ``call`` runs one fused fastnn kernel forward and backward.
- ``fastnn.keras.losses``: Keras' loss classes (reductions, sample_weight, dtype policy,
  serialization: Keras') whose per-element part runs on fastnn's loss kernels.

The kernels run through one small bridge per backend, imported on first use:
tf.custom_gradient + tf.numpy_function (layers set supports_jit=False on tensorflow:
XLA cannot compile a Python callback), jax.custom_vjp over XLA FFI custom calls on a CPU
jax (csrc/jax/ffi.cpp, built on first use; the jitted step never leaves XLA) or
jax.pure_callback elsewhere, and the fastnn.torch ops (C++ autograd nodes on torch's
thread pool; custom ops under torch.compile). float16 / bfloat16 (``mixed_float16`` /
``mixed_bfloat16`` policies) run natively on the 16-bit kernels (float32 math inside,
each output rounded once, no float32 copies); float64 stays float64.
"""
from . import losses
from .layers import ELU, Activation, Dense, LeakyReLU, ReLU, Softmax

__all__ = ["Activation", "Dense", "ELU", "LeakyReLU", "ReLU", "Softmax", "losses"]
