"""torch.autograd.gradcheck (float64) for every fastnn.torch op, on each autograd path:
the C++ autograd nodes (fastnn/torch/_native.py, eager default), the eager Python
autograd.Functions and the torch.library custom ops that torch.compile uses;
and torch.library.opcheck on the custom ops (schema, fake implementations, autograd
registration)."""
import pytest
import torch

import fastnn
import fastnn.torch.functional as F
from fastnn.torch import _native, _ops
from test_torch_functional import each_backend  # noqa: F401 - runs every test on every backend


@pytest.fixture(params=["native", "function", "custom_op"])
def path(request, monkeypatch):
    if request.param == "native" and _native.status() != "ok":
        pytest.fail(f"the C++ autograd nodes did not load: {_native.status()}")
    if request.param != "native":
        monkeypatch.setattr(_ops, "_native", lambda t: None)
    monkeypatch.setattr(_ops, "FORCE_LIBRARY", request.param == "custom_op")
    return request.param


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _x(shape, lo=None, hi=None, seed=0, grad=True):
    g = _gen(seed)
    if lo is None:
        t = torch.randn(shape, generator=g, dtype=torch.float64) * 1.5
    else:
        t = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    return t.requires_grad_(grad)


def gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


# every fastnn activation (plus params) as a Dense activation, and torch's functional names
DENSE_ACTS = [(name, {}) for name in fastnn.ACTIVATIONS] + [
    ("relu", {"negative_slope": 0.1, "max_value": 1.5, "threshold": 0.2}), ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {"alpha": 0.5}), ("celu", {"alpha": 2.0}), ("gelu", {"approximate": "tanh"}),
    ("softplus", {"beta": 2.0, "threshold": 3.0}), ("hard_tanh", {"min_val": -0.5, "max_val": 0.8}),
    ("hardswish", {}), ("softmax", {"dim": -1})]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name,params", DENSE_ACTS, ids=[f"{n}-{len(p)}" for n, p in DENSE_ACTS])
def test_linear_gradcheck(name, params, bias, path):
    x, w = _x((3, 4), seed=1), _x((5, 4), seed=2)
    b = _x((5,), seed=3) if bias else None
    gradcheck(lambda x, w, b: F.linear(x, w, b, activation=name, **params), x, w, b)


ACTIVATIONS = [("relu", {}), ("relu6", {}), ("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 1.3}),
               ("selu", {}), ("celu", {"alpha": 0.5}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}),
               ("mish", {}), ("sigmoid", {}), ("hardsigmoid", {}), ("hardswish", {}), ("tanh", {}), ("softplus", {}),
               ("softsign", {}), ("logsigmoid", {}), ("hardtanh", {"min_val": -0.5, "max_val": 2.0}),
               ("softmax", {"dim": 0}), ("log_softmax", {"dim": 1})]


@pytest.mark.parametrize("name,params", ACTIVATIONS, ids=[f"{n}-{len(p)}" for n, p in ACTIVATIONS])
def test_activation_gradcheck(name, params, path):
    x = _x((3, 4, 2), seed=4) * 3
    gradcheck(lambda x: getattr(F, name)(x, **params), x.detach().requires_grad_())


def _labels(shape, n, seed=5):
    return torch.randint(0, n, shape, generator=_gen(seed))


# (name, make() -> (input, target, kwargs)): float targets get gradchecked too
LOSSES = [
    ("mse_loss", lambda: (_x((3, 4)), _x((3, 4), seed=1), {})),
    ("mse_loss-broadcast", lambda: (_x((3, 4)), _x((4,), seed=1), {})),
    ("l1_loss", lambda: (_x((3, 4)), _x((3, 4), seed=1), {})),
    ("huber_loss", lambda: (_x((3, 4)), _x((3, 4), seed=1), {"delta": 0.8})),
    ("smooth_l1_loss", lambda: (_x((3, 4)), _x((3, 4), seed=1), {"beta": 0.6})),
    ("binary_cross_entropy", lambda: (_x((3, 4), 0.1, 0.9), _x((3, 4), 0, 1, seed=1), {})),
    ("binary_cross_entropy_with_logits", lambda: (_x((3, 4)), _x((3, 4), 0, 1, seed=1),
                                                  {"pos_weight": _x((4,), 0.5, 2, seed=2, grad=False)})),
    ("cross_entropy", lambda: (_x((4, 3)), _labels((4,), 3), {"label_smoothing": 0.1,
                                                            "weight": _x((3,), 0.5, 2, grad=False)})),
    ("cross_entropy-probs", lambda: (_x((2, 3, 2)), torch.softmax(_x((2, 3, 2), seed=1), 1).detach().requires_grad_(),
                                     {})),
    ("cross_entropy-nd", lambda: (_x((2, 3, 2)), _labels((2, 2), 3), {})),
    ("nll_loss", lambda: (_x((4, 3)), _labels((4,), 3), {"ignore_index": 1})),
    ("kl_div", lambda: (_x((3, 4)), _x((3, 4), 0.1, 1, seed=1), {"reduction": "batchmean"})),
    ("kl_div-log_target", lambda: (_x((3, 4)), _x((3, 4), seed=1), {"log_target": True, "reduction": "sum"})),
    ("poisson_nll_loss", lambda: (_x((3, 4)), _x((3, 4), 0, 3, seed=1), {})),
    ("poisson_nll_loss-full", lambda: (_x((3, 4), 0.5, 2), _x((3, 4), 1.1, 4, seed=1), {"log_input": False,
                                                                                         "full": True})),
]


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case,make", LOSSES, ids=[c for c, _ in LOSSES])
def test_loss_gradcheck(case, make, reduction, path):
    x, t, kw = make()
    kw = dict(kw)
    if reduction == "none" or "reduction" not in kw:  # a case's own reduction stands in for "mean"
        kw["reduction"] = reduction
    fn = getattr(F, case.split("-")[0])
    if t.requires_grad:
        gradcheck(lambda x, t: fn(x, t, **kw), x, t)
    else:
        gradcheck(lambda x: fn(x, t, **kw), x)


def test_custom_op_path_is_taken(path, each_backend):
    x = _x((3, 4))
    y = F.linear(x, _x((2, 4), seed=1), activation="tanh")
    native = path == "native" and each_backend == "cpp"  # the C++ nodes call the C++ kernels only
    assert ("DenseFunction" in type(y.grad_fn).__name__) == (path == "function" or (path == "native" and not native))
    assert ("fastnn_torch::DenseFn" in y.grad_fn.name()) == native, y.grad_fn.name()


# ---- torch.library.opcheck: schema, fake tensors, autograd registration, AOT dispatch ------

def _opcheck_cases():
    x, w, b = _x((3, 4)), _x((5, 4), seed=1), _x((5,), seed=2)
    t = _x((3, 4), seed=3)
    labels = _labels((3,), 4)
    return [
        ("dense-gelu", _ops.dense_op, (x, w, b, "gelu", "approximate='none'")),
        ("dense-sigmoid", _ops.dense_op, (x, w, None, "sigmoid", "")),
        ("dense-linear", _ops.dense_op, (x, w, b, "linear", "")),
        ("activation-softmax", _ops.activation_op, (x, "softmax", "axis=0")),
        ("activation-elu", _ops.activation_op, (x, "elu", "alpha=0.5")),
        ("loss-mse", _ops.loss_op, (x, t, None, None, "mse", "mean", "")),
        ("loss-huber-none", _ops.loss_op, (x, t, None, None, "huber", "none", "delta=0.5")),
        ("loss-ce", _ops.loss_op, (x, labels, _x((4,), 0.5, 2, grad=False), None, "cross_entropy", "none",
                                    "ignore_index=-100;label_smoothing=0.1")),
        ("loss-bcel", _ops.loss_op, (x, torch.rand(3, 4, dtype=torch.float64), None,
                                      _x((4,), 0.5, 2, grad=False), "bce_with_logits", "sum", "")),
    ]


@pytest.mark.parametrize("case", range(len(_opcheck_cases())), ids=[c[0] for c in _opcheck_cases()])
def test_opcheck(case):
    _, op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args)


def test_params_travel_exactly_through_the_custom_ops():
    import numpy as np  # noqa: PLC0415

    from fastnn.torch._ops import decode, encode  # noqa: PLC0415

    params = {"negative_slope": np.float64(0.1), "max_value": None, "threshold": float("inf"), "axis": np.int64(-1),
              "approximate": "tanh", "log_target": True, "eps": 1e-8 / 3, "delta": torch.tensor(0.25)}
    back = decode(encode(params))
    assert back == {k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()}
    assert all(type(v) in (float, int, bool, str, type(None)) for v in back.values())
