"""The jax bridge's XLA FFI route (csrc/jax/ffi.cpp, fastnn/keras/_jax.py).

The FFI handlers run the very kernels the pure_callback route runs, so every op here must
give the same bits as that route: values and gradients, float32 and float64, 2-D and
3-D. (The pure_callback route itself is compared with stock Keras by the rest of this
suite, which runs on the FFI route: on a CPU jax it is what fastnn.keras uses.)
"""
import keras
import numpy as np
import pytest
from _util import BRIDGE_ACTS, BRIDGE_LOSSES, check_fallbacks

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="the XLA FFI route is jax's")

if keras.backend.backend() == "jax":
    import jax
    import jax.numpy as jnp

    from fastnn.keras import _jax as J

ACTS, LOSSES = BRIDGE_ACTS, BRIDGE_LOSSES


# each op on one route: the pure_callback route (cb_*) or the FFI route (ffi_*)
def cb_dense(x, w, b, name, params):
    return J._dense(x, w, b, name, params, False)


def ffi_dense(x, w, b, name, params):
    return J._dense(x, w, b, name, params, True)


def cb_activation(x, name, params):
    return J._activation(x, name, params, False)


def ffi_activation(x, name, params):
    return J._activation(x, name, params, True)


def cb_loss(pred, target, name, params, none_shape):
    return J._loss(pred, target, name, params, tuple(none_shape), False)


def ffi_loss(pred, target, name, params, none_shape):
    return J._loss(pred, target, name, params, tuple(none_shape), True)


def _same(a, b, what):
    for i, (u, v) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v), err_msg=f"{what}: output #{i}")


def test_the_ffi_route_is_built_and_used_here():
    assert J.status() == "ok"  # CI has a compiler: the FFI route must build there
    x, w = jnp.ones((4, 3), jnp.float32), jnp.ones((3, 2), jnp.float32)
    step = jax.jit(jax.grad(lambda x, w: J.dense(x, w, None, "relu", ()).sum(), argnums=(0, 1)))
    hlo = step.lower(x, w).as_text()
    for target in ("fastnn_dense_fwd", "fastnn_dense_bwd_w", "fastnn_dense_bwd_x"):
        assert target in hlo
    assert "callback" not in hlo  # the step never leaves XLA


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5), (0, 5)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name,params", ACTS, ids=[a[0] + str(len(a[1])) for a in ACTS])
def test_dense_matches_the_callback_route(rng, name, params, bias, shape, dtype):
    x = jnp.asarray(rng.standard_normal(shape).astype(dtype))
    w = jnp.asarray(rng.standard_normal((5, 4)).astype(dtype))
    b = jnp.asarray(rng.standard_normal(4).astype(dtype)) if bias else None
    probe = jnp.asarray(rng.standard_normal(shape[:-1] + (4,)).astype(dtype))

    def f(x, w, b, op):
        return (op(x, w, b, name, params) * probe).sum()

    for argnums in ((0, 1, 2) if bias else (0, 1)), (1,):  # (1,): XLA drops the unused dx call
        ref = jax.jit(jax.value_and_grad(f, argnums), static_argnums=3)(x, w, b, cb_dense)
        got = jax.jit(jax.value_and_grad(f, argnums), static_argnums=3)(x, w, b, ffi_dense)
        _same([ref[0], *ref[1]], [got[0], *got[1]], f"{name} {argnums}")
    _same([cb_dense(x, w, b, name, params)], [ffi_dense(x, w, b, name, params)], "eager forward")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,params", ACTS, ids=[a[0] + str(len(a[1])) for a in ACTS])
def test_activations_match_the_callback_route(rng, name, params, dtype):
    x = jnp.asarray((3 * rng.standard_normal((3, 4, 9))).astype(dtype))
    probe = jnp.asarray(rng.standard_normal(x.shape).astype(dtype))
    for op in (cb_activation, ffi_activation):
        g = jax.jit(jax.value_and_grad(lambda x: (op(x, name, params) * probe).sum()))(x)
        if op is cb_activation:
            ref = g
    _same(ref, g, name)



@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,params", LOSSES, ids=[a[0] for a in LOSSES])
def test_elementwise_losses_match_the_callback_route(rng, name, params, dtype):
    pred = jnp.asarray(rng.uniform(0.02, 0.98, (4, 6)).astype(dtype))
    target = jnp.asarray(rng.uniform(0, 1, (4, 6)).astype(dtype))
    probe = jnp.asarray(rng.standard_normal((4, 6)).astype(dtype))
    out = []
    for op in (cb_loss, ffi_loss):
        out.append(jax.jit(jax.value_and_grad(lambda p: (op(p, target, name, params, p.shape) * probe).sum()))(pred))
    _same(out[0], out[1], name)


@pytest.mark.parametrize("bad", [np.nan, 1.5, -0.25])
def test_bce_outside_the_unit_interval_takes_the_callback_formula(rng, bad):
    """Keras' probability BCE never raises (a loss-scale overflow gives NaN predictions):
    outside [0, 1] the handler computes _numpy.py's formula (in double: to float32
    rounding of the float64 formula, NaN where it is NaN)."""
    pred = rng.uniform(0.1, 0.9, (3, 4)).astype("float32")
    pred[1, 2] = bad
    target = (rng.random((3, 4)) > 0.5).astype("float32")
    g = rng.standard_normal((3, 4)).astype("float32")
    t_ = jnp.asarray(target)
    value, vjp = jax.vjp(lambda p: ffi_loss(p, t_, "bce", (), p.shape), jnp.asarray(pred))
    p, t = pred.astype(np.float64), target.astype(np.float64)
    with np.errstate(all="ignore"):
        loss = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))
        grad = g * (p - t) / np.maximum(p * (1 - p), 1e-12)
    np.testing.assert_allclose(np.asarray(value), loss, rtol=1e-7, atol=0)
    np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]), grad, rtol=1e-7, atol=0)


@pytest.mark.parametrize("label_dtype", ["int32", "int64"])
@pytest.mark.parametrize("name,params", [("cross_entropy", ()), ("cross_entropy", (("label_smoothing", 0.1),)),
                                         ("nll", ())])
def test_class_losses_match_the_callback_route(rng, name, params, label_dtype):
    pred = jnp.asarray(rng.standard_normal((2, 5, 7)).astype("float32"))
    labels = jnp.asarray(rng.integers(0, 7, (2, 5)).astype(label_dtype))
    out = [jax.jit(jax.value_and_grad(lambda p: (op(p, labels, name, params, p.shape[:-1]) ** 2).sum()))(pred)
           for op in (cb_loss, ffi_loss)]
    _same(out[0], out[1], name)


def test_out_of_range_class_index_is_an_error_not_a_read_out_of_bounds():
    pred = jnp.zeros((3, 4), jnp.float32)
    for bad in (4, -1, 1 << 30):
        labels = jnp.asarray([0, bad, 2], jnp.int32)
        with pytest.raises(Exception, match=rf"class index {bad} is out of range \[0, 4\)"):
            jax.block_until_ready(ffi_loss(pred, labels, "cross_entropy", (), (3,)))


def test_vmap_runs_the_kernel_per_example(rng):
    xs = jnp.asarray(rng.standard_normal((3, 4, 5)).astype("float32"))
    ws = jnp.asarray(rng.standard_normal((3, 5, 2)).astype("float32"))
    got = jax.vmap(lambda x, w: ffi_dense(x, w, None, "tanh", ()))(xs, ws)
    np.testing.assert_allclose(np.asarray(got), np.tanh(np.einsum("bij,bjk->bik", np.asarray(xs, np.float64),
                                                                   np.asarray(ws, np.float64))), rtol=2e-6, atol=2e-6)


_PROBE = """
import os, warnings
os.environ["KERAS_BACKEND"] = "jax"
import jax, jax.numpy as jnp
from fastnn.keras import _jax
y = jax.jit(lambda x: _jax.dense(x, jnp.ones((3, 2)), None, "relu", ()))(jnp.ones((4, 3)))
print(_jax.status()); print(float(y.sum()))
"""


def test_disabled_by_environment_or_a_missing_compiler(tmp_path):
    check_fallbacks(_PROBE, "FASTNN_JAX_FFI", "XLA FFI kernels unavailable", tmp_path)
