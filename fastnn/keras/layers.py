"""Keras layers on fastnn kernels: Dense and the activation layers.

Each subclasses its keras.layers twin, so constructor arguments, weights (Dense: kernel
(in, units), then bias (units,)), variable order, build, get_config,
compute_output_shape, masking, LoRA (``enable_lora``: ``self.kernel`` folds the
low-rank delta in) and quantization (``quantize()``: Keras routes quantized layers to
its own ``quantized_call``) are Keras' own; only ``call`` changes:

    Dense.call:  y = act(x @ kernel + bias), one fused fastnn kernel, forward and backward

Where fastnn has no kernel for the activation (a Keras activation such as squareplus,
or a user function) the fastnn linear part runs and then Keras' function. On
tensorflow, a sigmoid / softmax output stays Keras' own op after the fastnn linear
part: stock TF losses find its logits there (``_keras_logits``), so the loss values and
gradients are stock Keras'.

Registered serializable as "fastnn>Dense", ...: ``model.save`` / ``load_model``
round-trip; weights swap with the stock layers through get_weights / set_weights.
"""
import keras
from keras import ops

from . import _activations as A
from . import _bridge as B

_FLOATS = B.KERNEL_DTYPES


def _input(layer, inputs):
    """inputs as a tensor of a float dtype (others cast to the compute dtype, where
    stock's matmul would promote)."""
    x = ops.convert_to_tensor(inputs)
    return x if B.dtype_of(x) in _FLOATS else ops.cast(x, layer.compute_dtype)


def dense(x, kernel, bias, name, params):
    """act(x @ kernel + bias) on the current backend's bridge, in x's dtype (16-bit
    natively). The weights take x's dtype: under a mixed policy Keras' autocast hands
    them over already cast (float32 variables, read in the compute dtype, as stock Dense
    reads them), and their gradients flow back through that cast to float32."""
    dt = B.dtype_of(x)
    w = B.cast(ops.convert_to_tensor(kernel), dt)
    b = None if bias is None else B.cast(ops.convert_to_tensor(bias), dt)
    return B.get().dense(x, w, b, name, B.params_key(params))


def activation(x, name, params):
    """The fastnn activation `name` on x, in x's dtype (16-bit natively)."""
    return B.get().activation(x, name, B.params_key(params))


def _is_sparse(x):
    """x is a sparse tensor of the current backend (tf.SparseTensor, a jax.experimental
    sparse array, a torch tensor of a sparse layout): what stock Dense's matmul accepts
    and fastnn's dense kernels do not."""
    name = B.backend_name()
    if name == "tensorflow":
        import tensorflow as tf
        return isinstance(x, tf.SparseTensor)
    if name == "jax":
        from jax.experimental import sparse
        return isinstance(x, sparse.JAXSparse)
    if name == "torch":
        import torch
        return isinstance(x, torch.Tensor) and x.layout != torch.strided
    return False


def _tf_keeps_logits(fn):
    return B.backend_name() == "tensorflow" and any(fn is f for f in A.TAGS_LOGITS)


def _no_jit_on_tf(layer):
    # XLA cannot compile tf.numpy_function; with a GPU visible, jit_compile="auto" would
    # pick XLA for a model whose layers all support it
    if B.backend_name() == "tensorflow":
        layer.supports_jit = False


@keras.saving.register_keras_serializable(package="fastnn")
class Dense(keras.layers.Dense):
    """``keras.layers.Dense`` computed by one fused fastnn kernel: ``act(x @ kernel + bias)``.

    Parameters
    ----------
    units : int
        The output features.
    activation : str, callable or None
        A Keras activation; those fastnn has a kernel for (relu, gelu, sigmoid, softmax,
        ...: :doc:`../ops`) are fused into the product, others run as Keras' function
        after the fastnn linear part. None (also when set after build) is linear.
    use_bias : bool
        As stock.
    **kwargs
        Every other argument of ``keras.layers.Dense`` (initializers, regularizers,
        constraints, ``lora_rank``, ``dtype``, ``name``, the Keras 2 style
        ``input_dim=``), with stock's defaults.

    Notes
    -----
    Shapes: input (batch, ..., in) -> output (batch, ..., units); kernel (in, units),
    bias (units,), as stock (weights swap with stock Dense through get_weights /
    set_weights). dtypes: float16, bfloat16, float32 and float64 run on the kernels;
    under ``mixed_float16`` / ``mixed_bfloat16`` (or ``dtype=`` a mixed policy) the
    variables are float32 and the layer computes natively in the 16-bit compute dtype
    (float32 accumulation, each output rounded once), returning that dtype as stock
    does; integer inputs are cast to the compute dtype, as stock's matmul promotes. Sparse inputs
    (``tf.SparseTensor``, a jax ``BCOO``, a torch sparse tensor) take stock's
    sparse-dense matmul, then fastnn's activation. Errors are stock Keras' (shape
    mismatches raise ValueError at build / call).

    Examples
    --------
    >>> import keras
    >>> from fastnn.keras import Dense
    >>> model = keras.Sequential([keras.Input((20,)), Dense(10, activation="relu"),
    ...                           Dense(1, activation="sigmoid")])
    >>> model.predict(np.zeros((2, 20), "float32"), verbose=0).shape
    (2, 1)
    """

    def __init__(self, units, activation=None, use_bias=True, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        _no_jit_on_tf(self)

    def call(self, inputs, training=None):
        # None (set after construction, e.g. to read logits) is the identity, as in stock Dense
        spec = ("linear", {}) if self.activation is None else A.fastnn_spec(self.activation)
        if _is_sparse(inputs):
            return self._sparse_call(inputs, spec)
        x = _input(self, inputs)
        if spec is None or _tf_keeps_logits(self.activation):
            return self.activation(dense(x, self.kernel, self.bias, "linear", {}))
        return dense(x, self.kernel, self.bias, *spec)

    def _sparse_call(self, inputs, spec):
        """A sparse input: the kernels take dense arrays, so the product is stock's own
        sparse-dense matmul (keras.ops.matmul: tf.sparse, jax BCOO, torch.sparse), with
        the gradients stock has; the activation then runs on fastnn's kernel where it
        has one, as after the fastnn linear part."""
        z = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            z = ops.add(z, self.bias)
        if self.activation is None or spec == ("linear", {}):
            return z
        if spec is None or _tf_keeps_logits(self.activation) or B.dtype_of(z) not in _FLOATS:
            return self.activation(z)
        return activation(z, *spec)

    def quantize(self, mode=None, type_check=True, config=None, **kwargs):
        """Keras' quantization (its quantized_call then runs, not fastnn). Stock Dense
        refuses subclasses (type_check); this class keeps Dense's variables and build."""
        return super().quantize(mode, type_check=False, config=config, **kwargs)


class _Activation:
    """call() through fastnn where _spec() names a kernel, else the Keras layer's own."""

    def _spec(self):
        raise NotImplementedError

    def call(self, inputs):
        spec = self._spec()
        if spec is None:
            return super().call(inputs)
        return activation(_input(self, inputs), *spec)


@keras.saving.register_keras_serializable(package="fastnn")
class Activation(_Activation, keras.layers.Activation):
    """``keras.layers.Activation(activation)`` on fastnn's activation kernels.

    Parameters
    ----------
    activation : str or callable
        A Keras activation. Those fastnn has a kernel for (relu, gelu, sigmoid, softmax,
        ...: :doc:`../ops`) run on it, forward and backward; others run as Keras' function.
    **kwargs
        ``keras.layers.Activation``'s other arguments (name, dtype, ...).

    Notes
    -----
    Output of the input's shape and dtype (float16 / bfloat16 natively, float32 math inside).

    Examples
    --------
    >>> from fastnn.keras import Activation
    >>> tuple(Activation("gelu")(np.array([[-1.0, 0.0, 1.0]], "float32")).shape)
    (1, 3)
    """

    def __init__(self, activation, **kwargs):
        super().__init__(activation, **kwargs)
        _no_jit_on_tf(self)

    def _spec(self):
        return None if _tf_keeps_logits(self.activation) else A.fastnn_spec(self.activation)


@keras.saving.register_keras_serializable(package="fastnn")
class ReLU(_Activation, keras.layers.ReLU):
    """``keras.layers.ReLU(max_value=None, negative_slope=0.0, threshold=0.0)`` on fastnn's relu kernel.

    The three parameters are the kernel's (Keras' relu: ``x > threshold ? min(x, max_value)
    : negative_slope (x - threshold)``); same shapes, dtypes and config as stock.

    Examples
    --------
    >>> from fastnn.keras import ReLU
    >>> layer = ReLU(max_value=6.0)
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(max_value=max_value, negative_slope=negative_slope, threshold=threshold, **kwargs)
        _no_jit_on_tf(self)

    def _spec(self):
        return A.relu_spec(self.negative_slope, self.max_value, self.threshold)


@keras.saving.register_keras_serializable(package="fastnn")
class LeakyReLU(_Activation, keras.layers.LeakyReLU):
    """``keras.layers.LeakyReLU(negative_slope=0.3)`` on fastnn's leaky_relu kernel.

    Keras computes ``max(x, negative_slope * x)``, leaky_relu's value for slopes <= 1;
    a slope above 1 runs Keras' own function. Same shapes, dtypes and config as stock.

    Examples
    --------
    >>> from fastnn.keras import LeakyReLU
    >>> layer = LeakyReLU(negative_slope=0.2)
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(negative_slope=negative_slope, **kwargs)
        _no_jit_on_tf(self)

    def _spec(self):
        # Keras computes max(x, slope * x): the same as leaky_relu for slopes <= 1
        s = float(self.negative_slope)
        return ("leaky_relu", {"negative_slope": s}) if s <= 1.0 else None


@keras.saving.register_keras_serializable(package="fastnn")
class ELU(_Activation, keras.layers.ELU):
    """``keras.layers.ELU(alpha=1.0)`` on fastnn's elu kernel; same shapes, dtypes and config.

    Examples
    --------
    >>> from fastnn.keras import ELU
    >>> layer = ELU(alpha=0.5)
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(alpha=alpha, **kwargs)
        _no_jit_on_tf(self)

    def _spec(self):
        return ("elu", {"alpha": float(self.alpha)})


@keras.saving.register_keras_serializable(package="fastnn")
class Softmax(_Activation, keras.layers.Softmax):
    """``keras.layers.Softmax(axis=-1)`` on fastnn's softmax kernel along one axis.

    A mask, a tuple of axes, or the tensorflow backend (where stock losses read the logits
    of a softmax op) run Keras' own softmax. Same shapes, dtypes and config as stock.

    Examples
    --------
    >>> from fastnn.keras import Softmax
    >>> layer = Softmax(axis=-1)
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(axis=axis, **kwargs)
        _no_jit_on_tf(self)

    def _spec(self):
        if not isinstance(self.axis, int) or B.backend_name() == "tensorflow":
            return None
        return ("softmax", {"axis": self.axis})

    def call(self, inputs, mask=None):
        spec = self._spec()
        if spec is None or mask is not None:
            return keras.layers.Softmax.call(self, inputs, mask=mask)
        return activation(_input(self, inputs), *spec)
