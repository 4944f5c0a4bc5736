"""activation_forward / activation_backward against float64 torch (numpy for Keras-only).

Cases walk fastnn.ACTIVATIONS, so a new name fails here until tests/_ref.py knows it.
"""
import math

import numpy as np
import pytest

import fastnn
import torch
from _ref import activation_bands, activation_ref
from conftest import K, LAYOUTS, as_layout, assert_close, param_id, shape_id

API_ACTIVATIONS = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
                   "silu", "mish", "sigmoid", "hard_sigmoid", "hard_silu", "tanh", "softplus",
                   "softsign", "log_sigmoid", "hard_tanh", "exponential", "softmax",
                   "log_softmax")

# Params variants per name; a name missing here is still tested with its defaults.
PARAMS = {
    "relu": [{}, {"negative_slope": 0.1}, {"max_value": 6.0}, {"threshold": 0.5},
             {"negative_slope": 0.2, "max_value": 2.5, "threshold": 0.5}],
    "leaky_relu": [{}, {"negative_slope": 0.2}],
    "elu": [{}, {"alpha": 0.5}],
    "celu": [{}, {"alpha": 2.0}],
    "gelu": [{}, {"approximate": "none"}, {"approximate": "tanh"}],
    "softplus": [{}, {"beta": 2.0}, {"beta": 0.5, "threshold": 5.0}, {"threshold": math.inf},
                 {"beta": 2.0, "threshold": math.inf}],
    "hard_tanh": [{}, {"min_val": -2.0, "max_val": 0.5}],
    "softmax": [{}, {"axis": -1}, {"axis": 0}],
    "log_softmax": [{}, {"axis": -1}, {"axis": 0}],
}
CASES = [pytest.param(n, p, id=f"{n}-{param_id(p)}")
         for n in fastnn.ACTIVATIONS for p in PARAMS.get(n, [{}])]
ALIAS_CASES = [pytest.param("swish", "silu", id="swish"),
               pytest.param("hard_swish", "hard_silu", id="hard_swish")]
SHAPES = [(1,), (7,), (33,), (257,), (1031,), (3, 5, 7), (0, 7)]
SHAPE_PARAMS = [pytest.param(s, id=shape_id(s)) for s in SHAPES]


def needs(name, params):
    saved = set(fastnn.saved_for_backward(name, **params))
    assert saved <= {"x", "y"}, f"saved_for_backward({name}) = {saved}"
    return saved


def run_backward(name, params, x, y, dy):
    """activation_backward given exactly what saved_for_backward says it needs."""
    saved = needs(name, params)
    kw = dict(x=x if "x" in saved else None, y=y if "y" in saved else None)
    return K.activation_backward(dy, name, **kw, **params)


def in_dtype_range(ref, dtype):
    """The float64 reference with values beyond dtype's range made +-inf: the kernel in
    dtype (like torch's) overflows there, e.g. relu_squared(1e30) in float32."""
    ref = np.asarray(ref, np.float64)
    big = np.abs(ref) > np.finfo(dtype).max
    return np.where(big, np.sign(ref) * np.inf, ref) if big.any() else ref


def check_forward(name, params, x, dtype):
    y_ref, _ = activation_ref(name, params, x)
    y_ref = in_dtype_range(y_ref, dtype)
    y = K.activation_forward(x, name, **params)
    assert_close(y, y_ref, dtype, **activation_bands(name, params, x, y_ref),
                 what=f"{name}{params} forward")
    return y_ref


def check_backward(name, params, x, dy, dtype):
    y_ref, dx_ref = activation_ref(name, params, x, dy)
    y = np.asarray(y_ref).astype(dtype)  # the saved output, as the kernel's dtype
    dx = run_backward(name, params, x, y, dy)
    assert_close(dx, dx_ref, dtype, **activation_bands(name, params, x, y_ref, dy),
                 what=f"{name}{params} backward")


def test_names_cover_api():
    assert isinstance(fastnn.ACTIVATIONS, tuple)
    missing = set(API_ACTIVATIONS) - set(fastnn.ACTIVATIONS)
    assert not missing, f"ACTIVATIONS lacks {sorted(missing)}"


@pytest.mark.parametrize("name", fastnn.ACTIVATIONS)
def test_saved_for_backward(name):
    for params in PARAMS.get(name, [{}]):
        needs(name, params)


@pytest.mark.parametrize("shape", SHAPE_PARAMS)
@pytest.mark.parametrize("name, params", CASES)
def test_forward(backend, dtype, name, params, shape, rng):
    x = (3.0 * rng.standard_normal(shape)).astype(dtype)
    check_forward(name, params, x, dtype)


@pytest.mark.parametrize("shape", SHAPE_PARAMS)
@pytest.mark.parametrize("name, params", CASES)
def test_backward(backend, dtype, name, params, shape, rng):
    x = (3.0 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    check_backward(name, params, x, dy, dtype)


@pytest.mark.parametrize("alias, canonical", ALIAS_CASES)
def test_aliases(backend, dtype, alias, canonical, rng):
    x = (3.0 * rng.standard_normal((5, 33))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    check_forward(alias, {}, x, dtype)
    check_backward(alias, {}, x, dy, dtype)
    np.testing.assert_array_equal(K.activation_forward(x, alias),
                                  K.activation_forward(x, canonical))


LAYOUT_NAMES = [("relu", {}), ("gelu", {}), ("softplus", {"beta": 2.0}), ("hard_silu", {}),
                ("softmax", {}), ("log_softmax", {"axis": 0})]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name, params",
                         [pytest.param(n, p, id=f"{n}-{param_id(p)}") for n, p in LAYOUT_NAMES])
def test_layouts(backend, dtype, name, params, layout, rng):
    base = (3.0 * rng.standard_normal((33, 17))).astype(dtype)
    dyb = rng.standard_normal(base.shape).astype(dtype)
    x, dy = as_layout(base, layout), as_layout(dyb, layout)
    y_ref = check_forward(name, params, x, dtype)
    y_ref2, dx_ref = activation_ref(name, params, base, dyb)
    y = as_layout(np.asarray(y_ref).astype(dtype), layout)
    dx = run_backward(name, params, x, y, dy)
    assert_close(dx, dx_ref, dtype, **activation_bands(name, params, base, y_ref2, dyb),
                 what=f"{name} backward, {layout}")


# ------------------------------------------------------------------------- extremes
@pytest.mark.parametrize("name, params", CASES)
def test_extreme_inputs(backend, dtype, name, params):
    """+-60 everywhere (exp(60) = 1.1e26 is finite in float32), and +-1000 for every name
    but exponential: finite, and equal to torch's value and gradient."""
    vals = [-60.0, -30.0, -1.5, 0.25, 30.0, 60.0]
    if name != "exponential":
        vals += [-1000.0, 1000.0]
    x = np.array(vals, dtype=dtype)
    if name in ("softmax", "log_softmax") and params.get("axis", -1) == 0:
        x = x.reshape(-1, 2)
    dy = np.ones_like(x)
    y_ref = check_forward(name, params, x, dtype)
    y = K.activation_forward(x, name, **params)
    assert np.all(np.isfinite(y)), f"{name}{params}({x}) = {y}"
    check_backward(name, params, x, dy, dtype)
    dx = run_backward(name, params, x, np.asarray(y_ref).astype(dtype), dy)
    assert np.all(np.isfinite(dx)), f"{name}{params}' ({x}) = {dx}"


# Derivatives at kinks: API.md's table. Checked against torch, and torch against the table.
KINKS = [
    ("relu", {}, [0.0], [0.0]),
    ("relu6", {}, [0.0, 6.0], [0.0, 0.0]),
    ("hard_tanh", {}, [-1.0, 1.0], [0.0, 0.0]),
    ("hard_tanh", {"min_val": -2.0, "max_val": 0.5}, [-2.0, 0.5], [0.0, 0.0]),
    ("leaky_relu", {}, [0.0], [0.01]),
    ("leaky_relu", {"negative_slope": 0.2}, [0.0], [0.2]),
    ("hard_sigmoid", {}, [-3.0, 3.0], [0.0, 0.0]),
    ("hard_silu", {}, [-3.0, 3.0], [0.0, 1.0]),
    ("elu", {}, [0.0], [1.0]),
    ("elu", {"alpha": 0.5}, [0.0], [0.5]),
    ("celu", {}, [0.0], [1.0]),
    ("celu", {"alpha": 2.0}, [0.0], [1.0]),
    ("selu", {}, [0.0], [1.0507009873554805 * 1.6732632423543772]),
]


@pytest.mark.parametrize("name, params, points, slopes",
                         [pytest.param(*k, id=f"{k[0]}-{param_id(k[1])}") for k in KINKS])
def test_kinks(backend, dtype, name, params, points, slopes):
    x = np.array(points, dtype=dtype)
    dy = np.ones_like(x)
    _, dx_torch = activation_ref(name, params, x, dy)
    np.testing.assert_allclose(dx_torch, slopes, rtol=1e-7, err_msg="torch vs API.md table")
    check_forward(name, params, x, dtype)
    check_backward(name, params, x, dy, dtype)
    # and a random upstream gradient on both sides of each kink
    xs = np.concatenate([x, x - 0.5, x + 0.5]).astype(dtype)
    check_backward(name, params, xs, np.linspace(-2, 3, xs.size).astype(dtype), dtype)


TORCH_TWINS = [pytest.param(n, {}, id=n) for n in fastnn.ACTIVATIONS]


@pytest.mark.parametrize("name, params", TORCH_TWINS)
def test_nan_forward(backend, dtype, name, params):
    x = np.array([-2.0, np.nan, 0.5, np.nan, 3.5], dtype=dtype)
    check_forward(name, params, x, dtype)  # NaN positions must match torch's


@pytest.mark.parametrize("name, params", TORCH_TWINS)
def test_nan_backward(backend, dtype, name, params):
    x = np.array([-2.0, np.nan, 0.5, np.nan, 3.5], dtype=dtype)
    check_backward(name, params, x, np.full_like(x, 0.75), dtype)


@pytest.mark.parametrize("name, params", TORCH_TWINS)
def test_inf_forward(backend, dtype, name, params):
    """API.md: Inf inputs propagate as torch propagates them."""
    x = np.array([-np.inf, -2.0, 0.5, np.inf], dtype=dtype)
    if name in ("softmax", "log_softmax"):
        x = x.reshape(2, 2)
    check_forward(name, params, x, dtype)


# 257 x 1031 = 265k elements: several of a CPU kernel's parallel chunks (tens of k elements)
LARGE = (257, 1031)


@pytest.mark.parametrize("name", fastnn.ACTIVATIONS)
def test_large(backend, dtype, name, rng):
    x = (3.0 * rng.standard_normal(LARGE)).astype(dtype)
    dy = rng.standard_normal(LARGE).astype(dtype)
    check_forward(name, {}, x, dtype)
    check_backward(name, {}, x, dy, dtype)


@pytest.mark.parametrize("layout", ["F", "negstride", "sliced"])
@pytest.mark.parametrize("name, params", [pytest.param("gelu", {}, id="gelu"),
                                          pytest.param("softmax", {}, id="softmax"),
                                          pytest.param("log_softmax", {"axis": 0}, id="log_softmax-axis=0")])
def test_large_layouts(backend, dtype, name, params, layout, rng):
    x = as_layout((3.0 * rng.standard_normal(LARGE)).astype(dtype), layout)
    dy = as_layout(rng.standard_normal(LARGE).astype(dtype), layout)
    check_forward(name, params, x, dtype)
    check_backward(name, params, x, dy, dtype)


@pytest.mark.parametrize("name", ["relu", "gelu", "softmax"])
def test_zero_stride_view(backend, dtype, name):
    """A read-only broadcast view (stride 0 on the first axis) is a valid input."""
    x = np.broadcast_to(np.linspace(-4.0, 4.0, 33).astype(dtype), (5, 33))
    check_forward(name, {}, x, dtype)
    check_backward(name, {}, x, np.broadcast_to(np.linspace(1.0, 2.0, 33).astype(dtype), x.shape),
                   dtype)


@pytest.mark.parametrize("alpha", [0.7, 1.3, 2.0])
def test_celu_alpha_not_a_float32_value(backend, alpha):
    """torch's celu backward divides by alpha rounded to float32 (elu_backward's
    input_scale), also in float64; the forward uses alpha itself."""
    x = np.linspace(-6.0, 2.0, 301)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.celu(xt, alpha).sum().backward()
    y = K.activation_forward(x, "celu", alpha=alpha)
    dx = K.activation_backward(np.ones_like(x), "celu", x=x, alpha=alpha)
    np.testing.assert_allclose(y, torch.nn.functional.celu(torch.tensor(x), alpha).numpy(), rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-14, atol=1e-16)


def test_cpp_gelu_tail_relative_accuracy():
    """float32 gelu (erf form) keeps its relative accuracy in the negative tail, where
    torch's x (1 + erf(x / sqrt 2)) / 2 cancels to nothing: about every 1000th float32 in
    [1e-30, 12.9] with both signs (12.9: Phi(-x) still a normal float), against float64 erfc.
    Bounds, in units of 2^-24 of the result (forward) or of |Phi| + |x phi| (backward,
    whose terms cancel near x = -0.75): the vector kernel (csrc/cpu/simd_kernels.h, exact x^2
    in the exponent; AVX-512 and AVX2 alike, test_isa_levels.py runs this at each level)
    measured 9.0 and 8.8 on these points; the portable code,
    whose erfc sees x / sqrt 2 rounded, 195 and 65 (baseline x86-64 build). torch's
    formula is off by 100% below x = -5.5."""
    from scipy.special import erfc
    from fastnn import _C
    vector = _C._gelu_path() != "portable"
    bits = np.arange(np.float32(1e-30).view(np.int32), np.float32(12.9).view(np.int32), 997, dtype=np.int32)
    x = np.concatenate([-bits.view(np.float32), bits.view(np.float32)])
    xd = x.astype(np.float64)
    cdf = 0.5 * erfc(-xd / np.sqrt(2.0))
    xphi = xd * np.exp(-0.5 * xd * xd) / np.sqrt(2.0 * np.pi)
    with fastnn.use_backend("cpp"):
        y = fastnn.activation_forward(x, "gelu")
        g = fastnn.activation_backward(np.ones_like(x), "gelu", x=x)
    fwd = np.abs(y - xd * cdf) / np.abs(xd * cdf) * 2.0 ** 24
    bwd = np.abs(g - (cdf + xphi)) / (cdf + np.abs(xphi)) * 2.0 ** 24
    assert fwd.max() <= (24 if vector else 256), x[fwd.argmax()]
    assert bwd.max() <= (16 if vector else 128), x[bwd.argmax()]


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_cpp_softplus_relative_accuracy(beta):
    """float32 softplus keeps its relative accuracy everywhere, the tail softplus(x) ~ e^x
    included: about every 1000th float32 with |beta x| in [1e-30, 87] (87: results still
    normal), against float64. Measured: 2.9 units of 2^-24 (vector kernel,
    csrc/cpu/simd_kernels.h), 2.8 (portable code, baseline x86-64 build, beta 1); bound 8."""
    lim = np.float32(87.0 / beta)
    bits = np.arange(np.float32(1e-30).view(np.int32), lim.view(np.int32), 997, dtype=np.int32)
    x = np.concatenate([-bits.view(np.float32), bits.view(np.float32)])
    bx = beta * x.astype(np.float64)
    ref = np.where(bx > 20.0, x, (np.maximum(bx, 0.0) + np.log1p(np.exp(-np.abs(bx)))) / beta)
    with fastnn.use_backend("cpp"):
        y = fastnn.activation_forward(x, "softplus", beta=beta)
    err = np.abs(y - ref) / np.abs(ref) * 2.0 ** 24
    assert err.max() <= 8, (err.max(), x[err.argmax()])
