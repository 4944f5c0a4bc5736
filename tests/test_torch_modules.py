"""fastnn.torch modules against their torch.nn twins: constructor arguments, defaults,
parameters, init, state_dict, repr, pickling, and forward/backward values (float32 and
float64; the float64 reference and tolerances of test_torch_functional)."""
import copy
import io
import warnings

import pytest
import torch
from torch import nn

import fastnn.torch as fnn
from test_torch_functional import DTYPES, assert_close


def forward_backward(module, *inputs):
    """(output, grads of the inputs requiring grad, grads of the parameters)."""
    out = module(*inputs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(out.dtype)
    params = [p for p in module.parameters() if p.requires_grad]
    leaves = [t for t in inputs if t.requires_grad] + params
    return out, torch.autograd.grad((out * g).sum(), leaves) if leaves else ()


def compare_modules(mine, theirs, inputs, dtype):
    """mine(*inputs) vs theirs on float64 copies: values and all gradients."""
    ref_inputs = [t.detach().double().requires_grad_(t.requires_grad) if t.is_floating_point() else t
                  for t in inputs]
    got, ggot = forward_backward(mine, *inputs)
    ref, gref = forward_backward(theirs.double(), *ref_inputs)
    assert_close(got, ref, dtype, "output")
    assert len(ggot) == len(gref)
    for i, (a, b) in enumerate(zip(ggot, gref)):
        assert_close(a, b, dtype, f"grad #{i}")


# ---- activation modules -------------------------------------------------------------------

ACT_MODULES = [
    ("ReLU", {}), ("ReLU", {"inplace": True}), ("ReLU6", {}), ("LeakyReLU", {"negative_slope": 0.2}),
    ("ELU", {"alpha": 0.5}), ("SELU", {}), ("CELU", {"alpha": 2.0}), ("GELU", {"approximate": "tanh"}), ("GELU", {}),
    ("SiLU", {}), ("Mish", {}), ("Sigmoid", {}), ("Hardsigmoid", {}), ("Hardswish", {}), ("Tanh", {}),
    ("Softplus", {"beta": 2.0, "threshold": 4.0}), ("Softsign", {}), ("LogSigmoid", {}),
    ("Hardtanh", {"min_val": -2.0, "max_val": 0.5}), ("Softmax", {"dim": 1}), ("LogSoftmax", {"dim": -1}),
    ("Softmax", {}), ("LogSoftmax", {}),
]


class AfterLayer(nn.Module):
    """module(x * 1.0): the module applied to a non-leaf, as after a layer (in-place needs it)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x * 1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls,kwargs", ACT_MODULES, ids=[f"{c}-{k}" for c, k in ACT_MODULES])
def test_activation_module_matches_torch(cls, kwargs, dtype):
    mine, theirs = getattr(fnn, cls)(**kwargs), getattr(nn, cls)(**kwargs)
    assert isinstance(mine, getattr(nn, cls))
    assert repr(mine) == repr(theirs)
    assert mine.state_dict() == {} and vars(mine) == vars(theirs)
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1), dtype=dtype) * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Softmax()'s implicit-dim warning
        compare_modules(AfterLayer(mine), AfterLayer(theirs), [x.requires_grad_()], dtype)


def test_activation_module_defaults_match_torch():
    for cls, _ in ACT_MODULES:
        mine, theirs = getattr(fnn, cls)(), getattr(nn, cls)()
        assert vars(mine) == vars(theirs), cls


# ---- Linear -----------------------------------------------------------------------------

def test_linear_init_params_and_state_dict_like_nn_linear():
    torch.manual_seed(0)
    theirs = nn.Linear(7, 3)
    torch.manual_seed(0)
    mine = fnn.Linear(7, 3)
    assert [n for n, _ in mine.named_parameters()] == ["weight", "bias"]
    assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)
    assert repr(mine) == repr(theirs) and isinstance(mine, nn.Linear)
    other = fnn.Linear(7, 3, activation="relu")
    other.load_state_dict(theirs.state_dict())
    assert torch.equal(other.weight, theirs.weight)
    back = nn.Linear(7, 3)
    back.load_state_dict(other.state_dict())
    assert torch.equal(back.bias, theirs.bias)
    assert list(fnn.Linear(7, 3, bias=False).state_dict()) == list(nn.Linear(7, 3, bias=False).state_dict())


def test_linear_arguments():
    m = fnn.Linear(4, 2, False, "leaky_relu", dtype=torch.float64, device="cpu", negative_slope=0.3)
    assert m.bias is None and m.weight.dtype == torch.float64
    assert repr(m) == "Linear(in_features=4, out_features=2, bias=False, activation='leaky_relu', negative_slope=0.3)"
    with pytest.raises(ValueError, match="unknown activation"):
        fnn.Linear(4, 2, activation="nope")
    with pytest.raises(TypeError, match="unexpected parameter"):
        fnn.Linear(4, 2, activation="relu", alpha=1.0)


LINEAR_CASES = [(None, {}, None), ("relu", {}, nn.ReLU()), ("gelu", {"approximate": "tanh"}, nn.GELU("tanh")),
                ("hardswish", {}, nn.Hardswish()), ("softmax", {"dim": -1}, nn.Softmax(-1)),
                ("celu", {"alpha": 0.5}, nn.CELU(0.5))]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("activation,params,act", LINEAR_CASES, ids=[str(c[0]) for c in LINEAR_CASES])
def test_linear_forward_backward_match_torch(activation, params, act, dtype):
    torch.manual_seed(1)
    mine = fnn.Linear(6, 4, activation=activation, dtype=dtype, **params)
    theirs = nn.Linear(6, 4, dtype=dtype)
    theirs.load_state_dict(mine.state_dict())
    ref = theirs if act is None else nn.Sequential(theirs, act)
    x = torch.randn(2, 5, 6, dtype=dtype, requires_grad=True)
    compare_modules(mine, ref, [x], dtype)


def test_linear_pickle_deepcopy_and_float_conversion():
    m = fnn.Linear(3, 2, activation="elu", alpha=0.5)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m2 = torch.load(buf, weights_only=False)
    m3 = copy.deepcopy(m).double()
    x = torch.randn(4, 3)
    assert torch.equal(m2(x), m(x)) and repr(m2) == repr(m)
    assert m3(x.double()).dtype == torch.float64


# ---- losses -----------------------------------------------------------------------------

def _g(seed):
    return torch.Generator().manual_seed(seed)


LOSS_MODULES = [
    ("MSELoss", {}, "reg"), ("MSELoss", {"reduction": "sum"}, "reg"), ("L1Loss", {"reduction": "none"}, "reg"),
    ("HuberLoss", {"delta": 0.5}, "reg"), ("SmoothL1Loss", {"beta": 0.3}, "reg"),
    ("MSELoss", {"size_average": False}, "reg"),
    ("BCELoss", {}, "prob"), ("BCELoss", {"weight": torch.rand(4, generator=_g(1)) + 0.5}, "prob"),
    ("BCEWithLogitsLoss", {"pos_weight": torch.rand(4, generator=_g(2)) * 3}, "logit"),
    ("BCEWithLogitsLoss", {"weight": torch.rand(4, generator=_g(3)), "reduction": "sum"}, "logit"),
    ("CrossEntropyLoss", {}, "class"),
    ("CrossEntropyLoss", {"weight": torch.rand(4, generator=_g(4)) + 0.5, "ignore_index": 0,
                          "label_smoothing": 0.15}, "class"),
    ("CrossEntropyLoss", {"reduction": "none"}, "class-nd"),
    ("NLLLoss", {"weight": torch.rand(4, generator=_g(5)) + 0.5, "ignore_index": 2}, "class"),
    ("NLLLoss", {}, "class-nd"),
    ("KLDivLoss", {"reduction": "batchmean"}, "kl"), ("KLDivLoss", {"reduction": "sum", "log_target": True}, "kl-log"),
    ("PoissonNLLLoss", {}, "reg"), ("PoissonNLLLoss", {"log_input": False, "full": True, "eps": 1e-4}, "pos"),
]


def _loss_inputs(kind, dtype):
    g = _g(6)
    if kind.startswith("class"):
        shape = (5, 4) if kind == "class" else (5, 4, 3)
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        return x.to(dtype), torch.randint(0, 4, shape[:1] + shape[2:], generator=g)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.rand(5, 4, generator=g, dtype=torch.float64) * (3 if kind in ("reg", "pos") else 1)
    if kind == "prob":
        x = torch.sigmoid(x)
    elif kind == "pos":
        x = x.abs() + 0.1
    elif kind.startswith("kl"):
        x = torch.log_softmax(x, -1)
        t = torch.log_softmax(t, -1) if kind == "kl-log" else torch.softmax(t, -1)
    return x.to(dtype), t.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls,kwargs,kind", LOSS_MODULES, ids=[f"{c}-{','.join(k)}" for c, k, _ in LOSS_MODULES])
def test_loss_module_matches_torch(cls, kwargs, kind, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # size_average deprecation
        kw = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        mine, theirs = getattr(fnn, cls)(**kw), getattr(nn, cls)(**kw)
    assert isinstance(mine, getattr(nn, cls)) and repr(mine) == repr(theirs)
    assert mine.state_dict().keys() == theirs.state_dict().keys()
    assert vars(mine).keys() == vars(theirs).keys()
    x, t = _loss_inputs(kind, dtype)
    inputs = [x.requires_grad_(), t.requires_grad_() if t.is_floating_point() else t]
    compare_modules(mine, theirs, inputs, dtype)


def test_loss_module_buffers_follow_to():
    m = fnn.CrossEntropyLoss(weight=torch.ones(3)).double()
    assert m.weight.dtype == torch.float64
    x = torch.randn(4, 3, dtype=torch.float64)
    assert m(x, torch.tensor([0, 1, 2, 1])).dtype == torch.float64


def test_example_mlp_trains_like_torch():
    """examples/torch_mlp.py: the issue's model with fastnn layers (swapped, and fused)
    trains like the stock one: 100 Adam steps, loss curves equal to float32 rounding."""
    import importlib.util  # noqa: PLC0415
    import pathlib  # noqa: PLC0415

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "torch_mlp.py"
    spec = importlib.util.spec_from_file_location("torch_mlp_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.compare_training(steps=100, batch=64)
    ref = torch.tensor(results["torch"][0], dtype=torch.float64)
    assert ref[-1] < ref[0] - 0.05  # it learns
    for name in ("fastnn", "fastnn fused"):
        torch.testing.assert_close(torch.tensor(results[name][0], dtype=torch.float64), ref, rtol=2e-6, atol=1e-7,
                                   msg=lambda m: f"{name}: {m}")
