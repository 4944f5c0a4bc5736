"""fastnn.torch.functional against torch.nn.functional: values and gradients of every
activation and of linear, float32 and float64, contiguous and strided inputs (the losses:
test_torch_losses, which uses the helpers here).

Reference: torch.nn.functional in float64 on the very values fastnn saw (a float32
input is cast exactly to float64), so a difference measures fastnn's rounding only.
  float64: rtol 1e-12 (~1e4 unit roundoffs: a few dozen rounded operations and sums of
           ~100 terms), atol 1e-14 * max(1, max|ref|) for results small by cancellation.
  float32: rtol 1e-5 (~170 roundoffs: float32 exp/log/erf of a few ulps chained, sums of
           ~100 terms), atol 1e-6 * max(1, max|ref|).
Gradients use a random upstream gradient, so each entry of the Jacobian product counts.
"""

import pytest
import torch
import torch.nn.functional as TF

import fastnn.torch.functional as F
from conftest import DEVICE_OF

TOL = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-12, 1e-14)}


@pytest.fixture(autouse=True)
def each_backend(backend):
    """Every test here runs on every CPU backend fastnn has (conftest's `backend`)."""
    if DEVICE_OF.get(backend) == "cuda":
        pytest.skip("these tests use CPU tensors; CUDA tensors need a CUDA torch build")
    return backend
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["f32", "f64"]


def assert_close(got, ref, dtype, what=""):
    """got (dtype) matches the float64 reference within TOL[dtype]; NaN/inf where ref has them."""
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"
    rtol, atol = TOL[dtype]
    ref = ref.detach().double()
    finite = ref[ref.isfinite()]
    scale = max(1.0, float(finite.abs().max())) if finite.numel() else 1.0
    torch.testing.assert_close(got.detach().double(), ref, rtol=rtol, atol=atol * scale, equal_nan=True,
                               msg=lambda m: f"{what}: {m}")


def run(fn, inputs, kwargs, grad_seed=0):
    """(output, grads of the float inputs that require grad) of fn(*inputs, **kwargs)
    under a random upstream gradient."""
    out = fn(*inputs, **kwargs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad((out * g.to(out.dtype)).sum(), leaves, allow_unused=True) if leaves else ()
    return out, grads


def leaf(t, dtype=None, grad=True):
    t = t.detach().to(dtype or t.dtype)
    return t.requires_grad_(grad and t.is_floating_point())


def as64(inputs):
    return [leaf(t, torch.float64) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs]


def check_against_torch(name, inputs, kwargs, dtype, tf_kwargs=None):
    """fastnn's F.name and torch's on the same inputs: values and gradients."""
    got, ggot = run(getattr(F, name), inputs, kwargs)
    kw64 = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in kwargs.items()}
    ref, gref = run(getattr(TF, name), as64(inputs), kw64 if tf_kwargs is None else tf_kwargs)
    assert_close(got, ref, dtype, f"{name} value")
    for i, (a, b) in enumerate(zip(ggot, gref)):
        assert a is not None and b is not None, f"{name}: gradient #{i} missing"
        assert_close(a, b, dtype, f"{name} grad #{i}")


def strided(t, layout):
    """t's values in a layout: "C", "T" (a transposed view of a C array) or "slice"
    (every other column of a wider buffer)."""
    if layout == "C":
        return t.contiguous()
    if layout == "T":
        return t.transpose(0, -1).contiguous().transpose(0, -1)
    wide = torch.full(t.shape[:-1] + (2 * t.shape[-1],), float("nan"), dtype=t.dtype)
    wide[..., ::2] = t
    return wide[..., ::2]


# ---- activations ------------------------------------------------------------------------

ACTIVATIONS = [
    ("relu", {}), ("relu6", {}), ("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 1.3}), ("selu", {}),
    ("celu", {"alpha": 0.75}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}), ("mish", {}),
    ("sigmoid", {}), ("hardsigmoid", {}), ("hardswish", {}), ("tanh", {}), ("softplus", {}),
    ("softplus", {"beta": 2.0, "threshold": 5.0}), ("softsign", {}), ("logsigmoid", {}),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}), ("softmax", {"dim": 1}), ("softmax", {"dim": -1}),
    ("log_softmax", {"dim": 0}), ("log_softmax", {"dim": 2}),
]
ACT_IDS = [n + "-" + ",".join(f"{k}={v}" for k, v in p.items()) for n, p in ACTIVATIONS]


def act_input(dtype, layout="C", shape=(6, 5, 7)):
    """Values of N(0, 3^2) with the kinks (0, +-1, +-3, 6) and +-30 mixed in."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    special = torch.tensor([0.0, -1.0, 1.0, -3.0, 3.0, 6.0, -0.5, 2.0, 30.0, -30.0], dtype=torch.float64)
    x.view(-1)[: special.numel()] = special
    return leaf(strided(x.to(dtype), layout))


@pytest.mark.parametrize("layout", ["C", "T", "slice"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", ACTIVATIONS, ids=ACT_IDS)
def test_activation_matches_torch(name, params, dtype, layout):
    check_against_torch(name, [act_input(dtype, layout)], params, dtype)


@pytest.mark.parametrize("name,params", [("relu", {}), ("leaky_relu", {"negative_slope": 0.1}), ("elu", {}),
                                         ("hardtanh", {}), ("silu", {}), ("gelu", {}), ("softmax", {"dim": 0})])
def test_activation_no_grad_and_odd_shapes(name, params):
    for shape in [(), (1,), (0, 3), (1031,)]:
        x = torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            assert_close(getattr(F, name)(x, **params), getattr(TF, name)(x, **params), torch.float64, str(shape))
        with torch.inference_mode():
            assert_close(getattr(F, name)(x, **params), getattr(TF, name)(x, **params), torch.float64, str(shape))


INPLACE = ["relu", "relu6", "leaky_relu", "elu", "selu", "celu", "silu", "mish", "hardsigmoid", "hardswish", "hardtanh"]


@pytest.mark.parametrize("name", INPLACE)
def test_inplace_matches_torch(name):
    """inplace=True writes into the input and returns it; gradients flow as in torch."""
    base = act_input(torch.float64)
    mine, ref = base.detach().clone().requires_grad_(), base.detach().clone().requires_grad_()
    a, b = mine * 1.0, ref * 1.0  # non-leaf, as in a network
    out_a, out_b = getattr(F, name)(a, inplace=True), getattr(TF, name)(b, inplace=True)
    assert out_a is a
    assert_close(a, b, torch.float64, "inplace result")
    g = torch.randn(base.shape, dtype=torch.float64)
    (out_a * g).sum().backward()
    (out_b * g).sum().backward()
    assert_close(mine.grad, ref.grad, torch.float64, "inplace grad")
    with torch.no_grad():
        c = base.detach().clone()
        assert getattr(F, name)(c, inplace=True) is c
        assert_close(c, getattr(TF, name)(base.detach()), torch.float64, "no-grad inplace")


def test_softmax_implicit_dim_rule_and_warning():
    for shape in [(5,), (4, 5), (3, 4, 5), (2, 3, 4, 5)]:
        x = torch.randn(shape, dtype=torch.float64)
        with pytest.warns(UserWarning, match="Implicit dimension choice for softmax") as rec:
            got = F.softmax(x)
        assert rec[0].filename == __file__  # the warning points at the caller, as torch's does
        with pytest.warns(UserWarning):
            ref = TF.softmax(x)
        assert_close(got, ref, torch.float64, str(shape))
        with pytest.warns(UserWarning, match="log_softmax"):
            assert_close(F.log_softmax(x), TF.log_softmax(x, dim=0 if len(shape) in (0, 1, 3) else 1),
                         torch.float64, str(shape))


def test_softmax_dtype_argument():
    x = torch.randn(4, 5)
    got = F.softmax(x, dim=1, dtype=torch.float64)
    assert got.dtype == torch.float64
    assert_close(got, TF.softmax(x.double(), dim=1), torch.float64)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softsign"])
def test_integer_inputs_promote_like_torch(name):
    x = torch.arange(-3, 4)
    assert_close(getattr(F, name)(x), getattr(TF, name)(x.double()), torch.float32)


def test_unsupported_dtypes_raise():
    with pytest.raises(TypeError, match="dtype torch.int64"):
        F.relu(torch.arange(3))
    with pytest.raises(TypeError, match="dtype torch.complex64"):
        F.gelu(torch.randn(3, dtype=torch.complex64))


# ---- linear -----------------------------------------------------------------------------

LINEAR_ACTS = [(None, {}, None), ("relu", {}, TF.relu), ("gelu", {"approximate": "tanh"},
                                                           lambda y: TF.gelu(y, approximate="tanh")),
               ("leaky_relu", {"negative_slope": 0.1}, lambda y: TF.leaky_relu(y, 0.1)),
               ("sigmoid", {}, torch.sigmoid), ("hardswish", {}, TF.hardswish),
               ("softmax", {"dim": -1}, lambda y: TF.softmax(y, -1)),
               ("log_softmax", {}, lambda y: TF.log_softmax(y, -1)), ("elu", {"alpha": 0.5}, lambda y: TF.elu(y, 0.5))]


def linear_ref(x, w, b, act):
    y = TF.linear(x, w, b)
    return y if act is None else act(y)


@pytest.mark.parametrize("xshape", [(7, 5), (2, 3, 5), (5,), (0, 5)], ids=["2d", "3d", "1d", "empty"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation,params,ref_act", LINEAR_ACTS, ids=[str(a[0]) for a in LINEAR_ACTS])
def test_linear_matches_torch(activation, params, ref_act, dtype, bias, xshape):
    g = torch.Generator().manual_seed(2)
    x = leaf(torch.randn(xshape, generator=g, dtype=dtype))
    w = leaf(torch.randn(4, 5, generator=g, dtype=dtype) / 2)
    b = leaf(torch.randn(4, generator=g, dtype=dtype)) if bias else None
    got, ggot = run(lambda *a: F.linear(*a, activation=activation, **params), [x, w, b], {})
    ref, gref = run(lambda *a: linear_ref(*a, ref_act), as64([x, w, b]), {})
    assert_close(got, ref, dtype, "y")
    for what, a, r in zip(("dx", "dw", "db"), ggot, gref):
        assert_close(a, r, dtype, what)


@pytest.mark.parametrize("layout", ["T", "slice"])
def test_linear_strided_inputs_and_weight(layout):
    g = torch.Generator().manual_seed(3)
    x = leaf(strided(torch.randn(6, 5, generator=g, dtype=torch.float64), layout))
    w = leaf(strided(torch.randn(4, 5, generator=g, dtype=torch.float64), layout))
    b = leaf(torch.randn(8, generator=g, dtype=torch.float64)[::2])
    got, ggot = run(lambda *a: F.linear(*a, activation="tanh"), [x, w, b], {})
    ref, gref = run(lambda *a: torch.tanh(TF.linear(*a)), [x, w, b], {})
    assert_close(got, ref, torch.float64)
    for a, r in zip(ggot, gref):
        assert_close(a, r, torch.float64)


def test_linear_only_some_inputs_require_grad():
    x, w, b = torch.randn(3, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64), torch.randn(2).double()
    w.requires_grad_()
    (F.linear(x, w, b, activation="relu") ** 2).sum().backward()
    w2 = w.detach().clone().requires_grad_()
    (TF.relu(TF.linear(x, w2, b)) ** 2).sum().backward()
    assert_close(w.grad, w2.grad, torch.float64)
    assert x.grad is None and b.grad is None


def test_linear_mixed_dtypes_refused_like_torch():
    x, w = torch.randn(3, 5), torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        TF.linear(x, w)
    with pytest.raises(RuntimeError, match="input is torch.float32 but weight is torch.float64"):
        F.linear(x, w)
    with pytest.raises(RuntimeError, match="bias is torch.float64"):
        F.linear(x, w.float(), torch.zeros(2, dtype=torch.float64))


def test_linear_bad_activation():
    with pytest.raises(ValueError, match="unknown activation 'relux'"):
        F.linear(torch.randn(2, 3), torch.randn(4, 3), activation="relux")
    with pytest.raises(TypeError, match="unexpected parameter"):
        F.linear(torch.randn(2, 3), torch.randn(4, 3), activation="relu", alpha=2.0)
    with pytest.raises(ValueError, match="last axis"):
        F.linear(torch.randn(2, 3), torch.randn(4, 3), activation="softmax", dim=0)


def test_double_backward_raises_instead_of_zeros():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = F.gelu(x)
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.sum().backward()
