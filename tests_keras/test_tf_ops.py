"""The tensorflow bridge's op route (csrc/tf/ops.cc, fastnn/keras/_tf.py).

The ops run the very kernels the numpy_function route runs, so every op here must give
the same bits as that route: values and gradients, float32 and float64, 2-D and 3-D,
eager and inside tf.function. (The rest of this suite compares with stock Keras and runs
on the op route: it is what fastnn.keras uses on tensorflow.)
"""
import keras
import numpy as np
import pytest
from _util import BRIDGE_ACTS, BRIDGE_LOSSES, check_fallbacks

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the op route is tensorflow's")

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    from fastnn.keras import _tf as T

ACTS, LOSSES = BRIDGE_ACTS, BRIDGE_LOSSES


class _callback_route:
    """Within it, _tf takes the numpy_function route."""

    def __enter__(self):
        self.saved = T._ops_for
        T._ops_for = lambda usable: None

    def __exit__(self, *exc):
        T._ops_for = self.saved


def _grads(fn, inputs, probe, graph):
    def run(*inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = fn(*inputs)
            total = tf.reduce_sum(y * probe)
        return [y] + tape.gradient(total, list(inputs))

    run = tf.function(run) if graph else run
    return [np.asarray(t) for t in run(*inputs)]


def _same(fn, inputs, probe, what):
    for graph in (False, True):
        with _callback_route():
            ref = _grads(fn, inputs, probe, graph)
        got = _grads(fn, inputs, probe, graph)
        for i, (a, b) in enumerate(zip(ref, got)):
            np.testing.assert_array_equal(b, a, err_msg=f"{what} graph={graph}: output #{i}")


def test_the_op_route_is_built_and_used_here():
    assert T.status() == "ok"  # CI has a compiler: the ops must build there
    x, w = tf.ones((4, 3)), tf.ones((3, 2))

    @tf.function
    def step(x, w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = tf.reduce_sum(T.dense(x, w, None, "relu", ()))
        return tape.gradient(loss, w)

    graph = step.get_concrete_function(x, w).graph
    types = {op.type for op in graph.get_operations()}
    assert {"FastnnDenseFwd", "FastnnDenseBwdW"} <= types
    assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & types  # no Python inside the step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5), (0, 5)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name,params", ACTS, ids=[a[0] + str(len(a[1])) for a in ACTS])
def test_dense_matches_the_callback_route(rng, name, params, bias, shape, dtype):
    x = tf.constant(rng.standard_normal(shape).astype(dtype))
    w = tf.constant(rng.standard_normal((5, 4)).astype(dtype))
    b = tf.constant(rng.standard_normal(4).astype(dtype)) if bias else None
    probe = tf.constant(rng.standard_normal(shape[:-1] + (4,)).astype(dtype))
    inputs = (x, w, b) if bias else (x, w)
    _same(lambda x, w, *b: T.dense(x, w, b[0] if b else None, name, params), inputs, probe, name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,params", ACTS, ids=[a[0] + str(len(a[1])) for a in ACTS])
def test_activations_match_the_callback_route(rng, name, params, dtype):
    x = tf.constant((3 * rng.standard_normal((3, 4, 9))).astype(dtype))
    probe = tf.constant(rng.standard_normal((3, 4, 9)).astype(dtype))
    _same(lambda x: T.activation(x, name, params), (x,), probe, name)



@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,params", LOSSES, ids=[a[0] for a in LOSSES])
def test_elementwise_losses_match_the_callback_route(rng, name, params, dtype):
    pred = tf.constant(rng.uniform(0.02, 0.98, (4, 6)).astype(dtype))
    target = tf.constant(rng.uniform(0, 1, (4, 6)).astype(dtype))
    probe = tf.constant(rng.standard_normal((4, 6)).astype(dtype))
    _same(lambda p: T.loss(p, target, name, params, p.shape), (pred,), probe, name)


@pytest.mark.parametrize("bad", [np.nan, 1.5, -0.25])
def test_bce_outside_the_unit_interval_takes_the_callback_formula(rng, bad):
    """Keras' probability BCE never raises (a loss-scale overflow gives NaN predictions):
    outside [0, 1] the op computes _numpy.py's formula (in double: to float32 rounding of
    the float64 formula, NaN where it is NaN)."""
    pred = rng.uniform(0.1, 0.9, (3, 4)).astype("float32")
    pred[1, 2] = bad
    target = (rng.random((3, 4)) > 0.5).astype("float32")
    g = rng.standard_normal((3, 4)).astype("float32")
    got = _grads(lambda p: T.loss(p, tf.constant(target), "bce", (), p.shape), (tf.constant(pred),), tf.constant(g),
                 graph=True)
    p, t = pred.astype(np.float64), target.astype(np.float64)
    with np.errstate(all="ignore"):
        loss = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))
        grad = g * (p - t) / np.maximum(p * (1 - p), 1e-12)
    np.testing.assert_allclose(got[0], loss, rtol=1e-7, atol=0)
    np.testing.assert_allclose(got[1], grad, rtol=1e-7, atol=0)
    assert np.isnan(got[0]).sum() == np.isnan(loss).sum() >= (0 if bad == -0.25 else 1)


@pytest.mark.parametrize("label_dtype", ["int32", "int64"])
@pytest.mark.parametrize("name,params", [("cross_entropy", ()), ("cross_entropy", (("label_smoothing", 0.1),)),
                                         ("nll", ())])
def test_class_losses_match_the_callback_route(rng, name, params, label_dtype):
    pred = tf.constant(rng.standard_normal((2, 5, 7)).astype("float32"))
    labels = tf.constant(rng.integers(0, 7, (2, 5)).astype(label_dtype))
    probe = tf.constant(rng.standard_normal((2, 5)).astype("float32"))
    _same(lambda p: T.loss(p, labels, name, params, p.shape[:-1]), (pred,), probe, name)


def test_out_of_range_class_index_is_an_error_not_a_read_out_of_bounds():
    pred = tf.zeros((3, 4))
    for bad in (4, -1, 1 << 30):
        labels = tf.constant([0, bad, 2], tf.int32)
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"class index {bad} is out of range \[0, 4\)"):
            T.loss(pred, labels, "cross_entropy", (), (3,))


def test_shapes_are_known_in_a_graph():
    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32)])
    def f(x):
        y = T.dense(x, tf.ones((5, 3)), tf.ones((3,)), "gelu", ())
        assert y.shape.as_list() == [None, 3]
        per = T.loss(y, tf.zeros_like(y), "mse", (), y.shape)
        assert per.shape.as_list() == [None, 3]
        return per

    assert f(tf.ones((2, 5))).shape == (2, 3)


_PROBE = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
from fastnn.keras import _tf
y = _tf.dense(tf.ones((4, 3)), tf.ones((3, 2)), None, "relu", ())
print(_tf.status()); print(float(tf.reduce_sum(y)))
"""


def test_disabled_by_environment_or_a_missing_compiler(tmp_path):
    check_fallbacks(_PROBE, "FASTNN_TF_OPS", "TensorFlow ops unavailable", tmp_path)


@pytest.mark.parametrize("name", ["relu", "gelu", "softmax"])
def test_weight_gradients_alone_on_fastnns_sgemm(rng, name):
    """A first layer's backward: gradients for w and b only, in a graph (TF prunes dx, and
    FastnnDenseBwdW's dpre has no reader: the op skips it and the product makes the
    activation gradient inside its packing). With fastnn's sgemm forced at this size, the
    same bits as the callback route, whose numpy call writes dpre and computes dx."""
    from fastnn._backends import cpp

    before = cpp._C._gemm_path()
    if cpp._C._set_gemm_path("fastnn-avx512", 0)[0] != "fastnn-avx512":
        cpp._C._set_gemm_path(*before)
        pytest.skip("no AVX-512 here: fastnn's sgemm is not used")
    try:
        x = tf.constant(rng.standard_normal((300, 70)).astype("float32"))
        w = tf.constant(rng.standard_normal((70, 1030)).astype("float32"))
        b = tf.constant(rng.standard_normal(1030).astype("float32"))
        probe = tf.constant(rng.standard_normal((300, 1030)).astype("float32"))

        @tf.function
        def grads(w, b):
            with tf.GradientTape() as tape:
                tape.watch([w, b])
                total = tf.reduce_sum(T.dense(x, w, b, name, ()) * probe)
            return tape.gradient(total, [w, b])

        got = [np.asarray(t) for t in grads(w, b)]
        with _callback_route():
            ref = [np.asarray(t) for t in tf.function(grads.python_function)(w, b)]
        for a, r, what in zip(got, ref, ("dw", "db")):
            np.testing.assert_array_equal(a, r, err_msg=what)
        exact = np.asarray(probe, np.float64)  # and close to float64 (relu: exact gradient mask)
        if name == "relu":
            z = np.asarray(x, np.float64) @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
            g = exact * (z > 0)
            np.testing.assert_allclose(got[0], np.asarray(x, np.float64).T @ g, rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(got[1], g.sum(0), rtol=1e-4, atol=1e-3)
    finally:
        cpp._C._set_gemm_path(*before)
