"""fastnn.torch in bfloat16 and float16, and under torch.autocast / torch.amp.GradScaler.

Every module (Linear, fused Linear + activation, each activation module, each loss module,
LinearCrossEntropyLoss) on 16-bit tensors, forward and backward, on each route a call can
take: the C++ autograd nodes ("native"), the Python autograd.Function over fastnn's
numpy front door ("python") and the torch.library custom ops ("library"; also compiled
with fullgraph=True, and exported).

Reference: the stock torch op in float64 on the very 16-bit values fastnn saw (the same
rounded inputs and upstream gradient), so a difference measures fastnn's rounding only.
Tolerances are torch's own for the dtype (torch.testing: bfloat16 rtol 1.6e-2, float16
rtol 1e-3), with atol = rtol * max|ref| for results small by cancellation; each check
also runs the stock op in the same 16-bit dtype through the same comparison, so the
tolerance is one torch itself meets.

Autocast: each fastnn function under torch.autocast("cpu", bfloat16 / float16) against
the stock function under the same autocast, on float32 and 16-bit inputs: the same
result dtype, values and gradient dtypes (fastnn/torch/_autocast.py holds the policy).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as TF

import fastnn
import fastnn.torch as fnn
import fastnn.torch.functional as F
from fastnn.torch import _autocast
from fastnn.torch import _native as N
from fastnn.torch import _ops
from fastnn.torch.losses import LOSS_MODULES
from fastnn.torch.modules import ACTIVATION_MODULES

LOW = [torch.bfloat16, torch.float16]
LOW_IDS = ["bf16", "f16"]
RTOL = {torch.bfloat16: 1.6e-2, torch.float16: 1e-3, torch.float32: 1e-5}  # float32: test_torch_functional's

native_ok = "cpp" in fastnn.available_backends() and N.status() == "ok"


@pytest.fixture(autouse=True)
def cpp_backend():
    if "cpp" not in fastnn.available_backends():
        pytest.skip("the C++ backend is not built here")
    with fastnn.use_backend("cpp"):
        yield


@pytest.fixture(params=["native", "python", "library"])
def route(request, monkeypatch):
    """The route fastnn.torch takes for the test's calls (fastnn/torch/_ops.py)."""
    if request.param == "native" and not native_ok:
        pytest.skip(f"fastnn.torch's C++ nodes are not available: {N.status()}")
    if request.param == "python":
        monkeypatch.setattr(_ops, "_native", lambda t: None)
    if request.param == "library":
        monkeypatch.setattr(_ops, "FORCE_LIBRARY", True)
    return request.param


_NODE = {"native": "CppNode<fastnn_torch::", "python": "FunctionBackward", "library": "GeneratedBackwardFor_fastnn_"}


def assert_route(t, route):
    """t's autograd node is the one route `route` builds (the call was not served elsewhere)."""
    n = t.grad_fn
    name = n.name() if callable(getattr(n, "name", None)) else type(n).__name__
    assert _NODE[route] in name, f"{route} route expected, got the node {name}"


def stock_of(cls):
    """The torch.nn class a fastnn.torch module subclasses."""
    return next(c for c in cls.__mro__[1:] if c.__module__.startswith("torch.nn"))


def check_close(got, ref, dtype, what, scale=None):
    """got has `dtype` and matches the float64 reference at torch's tolerance for dtype."""
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"
    ref = ref.detach().double()
    rtol = RTOL[dtype]
    scale = float(ref.abs().max()) if scale is None else scale
    torch.testing.assert_close(got.detach().double(), ref, rtol=rtol, atol=rtol * max(scale, 1e-3),
                               msg=lambda m: f"{what}: {m}")


def fwd_bwd(fn, inputs, up):
    """(output, gradients of the inputs that require grad) of fn(*inputs) with the upstream
    gradient up (cast to the output's dtype)."""
    out = fn(*inputs)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(out, leaves, up.to(out.dtype).reshape(out.shape))
    return out, grads


def compare(ours, stock, inputs, dtype, what, seed=0):
    """ours(*inputs) in dtype vs stock on float64 copies of the same values, forward and
    backward; the stock op in dtype must meet the same tolerance."""
    out = ours(*inputs)
    up = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    o, g = fwd_bwd(ours, inputs, up)
    wide = [t.detach().double().requires_grad_(t.requires_grad) if t.is_floating_point() else t for t in inputs]
    r, rg = fwd_bwd(stock, wide, up.double())
    s, sg = fwd_bwd(stock, inputs, up)
    for got, who in ((o, "fastnn"), (s, "torch")):
        check_close(got, r, dtype, f"{what} forward ({who})")
    for i, (a, b, ref) in enumerate(zip(g, sg, rg)):
        check_close(a, ref, dtype, f"{what} grad {i} (fastnn)")
        check_close(b, ref, dtype, f"{what} grad {i} (torch)")
    return o


# ---- every module in bfloat16 / float16, forward and backward, on each route ---------------------

def _act_args(cls):
    return {"dim": -1} if cls.__name__ in ("Softmax", "LogSoftmax") else {}


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("cls", ACTIVATION_MODULES, ids=lambda c: c.__name__)
def test_activation_modules(cls, dtype, route):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(6, 33, generator=g) * 3).to(dtype).requires_grad_()
    kw = _act_args(cls)
    out = compare(cls(**kw), stock_of(cls)(**kw), [x], dtype, cls.__name__)
    assert_route(out, route)


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("activation", [None, "relu", "gelu", "sigmoid"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(activation, bias, dtype, route):
    torch.manual_seed(2)
    ours = fnn.Linear(40, 17, bias=bias, activation=activation, dtype=dtype)
    stock_act = {None: lambda y: y, "relu": TF.relu, "gelu": TF.gelu, "sigmoid": torch.sigmoid}[activation]

    def stock(x, w, *b):
        return stock_act(TF.linear(x, w, *b))

    def mine(x, w, *b):
        return F.linear(x, w, *b, activation=activation)

    x = torch.randn(3, 5, 40).to(dtype).requires_grad_()
    params = [ours.weight] + ([ours.bias] if bias else [])
    assert_route(compare(mine, stock, [x] + params, dtype, f"linear+{activation}"), route)
    y = ours(x)  # the module runs the same function
    assert y.dtype == dtype and torch.equal(y, mine(x, *params))


def _loss_inputs(name, dtype, g):
    """(input, target) of loss module `name` in its domain."""
    x = torch.randn(8, 5, generator=g)
    if name == "BCELoss":
        return torch.sigmoid(x).to(dtype), torch.rand(8, 5, generator=g).to(dtype)
    if name == "BCEWithLogitsLoss":
        return x.to(dtype), torch.rand(8, 5, generator=g).to(dtype)
    if name == "CrossEntropyLoss":
        return x.to(dtype), torch.randint(0, 5, (8,), generator=g)
    if name == "NLLLoss":
        return torch.log_softmax(x, 1).to(dtype), torch.randint(0, 5, (8,), generator=g)
    if name == "KLDivLoss":
        return torch.log_softmax(x, 1).to(dtype), torch.softmax(torch.randn(8, 5, generator=g), 1).to(dtype)
    if name == "PoissonNLLLoss":
        return x.to(dtype), (torch.rand(8, 5, generator=g) * 3).to(dtype)
    return x.to(dtype), torch.randn(8, 5, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("cls", LOSS_MODULES, ids=lambda c: c.__name__)
def test_loss_modules(cls, reduction, dtype, route):
    g = torch.Generator().manual_seed(3)
    x, t = _loss_inputs(cls.__name__, dtype, g)
    x.requires_grad_()
    kw = {"reduction": reduction}
    if cls.__name__ == "KLDivLoss" and reduction == "mean":
        kw["reduction"] = "batchmean"
    out = compare(cls(**kw), stock_of(cls)(**kw), [x, t], dtype, f"{cls.__name__}({kw['reduction']})")
    assert_route(out, route)


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_cross_entropy(reduction, dtype):
    torch.manual_seed(4)
    kw = dict(bias=True, reduction=reduction, label_smoothing=0.1, dtype=dtype)
    ours = fnn.LinearCrossEntropyLoss(24, 50, **kw)
    x = torch.randn(13, 24).to(dtype).requires_grad_()
    t = torch.randint(0, 50, (13,))
    t[3] = -100

    def mine(x, w, b, t):
        return F.linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction, label_smoothing=0.1)

    def stock(x, w, b, t):
        return TF.linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction, label_smoothing=0.1)

    compare(mine, stock, [x, ours.linear.weight, ours.linear.bias, t], dtype, "linear_cross_entropy")
    assert ours(x, t).dtype == dtype


# ---- what backward keeps: tensors in the input's dtype ----------------------------------------------

@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_saved_for_backward_keeps_the_input_dtype(dtype, route):
    saved = []

    def pack(t):
        saved.append((t.dtype, tuple(t.shape)))
        return t

    x = torch.randn(4, 8).to(dtype).requires_grad_()
    lin = fnn.Linear(8, 6, activation="gelu", dtype=dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fnn.Sigmoid()(lin(x))
        loss = fnn.MSELoss()(y, torch.zeros_like(y))
    float_saved = [d for d, s in saved if d.is_floating_point]
    assert float_saved and all(d == dtype for d in float_saved), saved
    loss.backward()
    assert x.grad.dtype == dtype and lin.weight.grad.dtype == dtype


# ---- torch.autocast: the stock op's policy, per op ------------------------------------------------

_FASTNN_NAME = {"linear+relu": "linear", "l1": "mae", "mse+weight": "mse_weighted", "l1+weight": "mae_weighted",
                "huber+weight": "huber", "bce_with_logits+weights": "bce_with_logits",
                "cross_entropy+weight": "cross_entropy"}

AUTOCAST_CASES = {
    # name: (fastnn function, stock function, input maker (float32 tensors), leaves)
    "linear": (lambda x, w, b: F.linear(x, w, b), TF.linear, "xwb"),
    "linear+relu": (lambda x, w, b: F.linear(x, w, b, activation="relu"), lambda x, w, b: TF.relu(TF.linear(x, w, b)),
                    "xwb"),
    "relu": (F.relu, TF.relu, "x"),
    "gelu": (F.gelu, TF.gelu, "x"),
    "sigmoid": (F.sigmoid, torch.sigmoid, "x"),
    "softplus": (F.softplus, TF.softplus, "x"),
    "softmax": (lambda x: F.softmax(x, -1), lambda x: TF.softmax(x, -1), "x"),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1), "x"),
    "mse": (F.mse_loss, TF.mse_loss, "xy"),
    "l1": (F.l1_loss, TF.l1_loss, "xy"),
    "huber": (F.huber_loss, TF.huber_loss, "xy"),
    "smooth_l1": (F.smooth_l1_loss, TF.smooth_l1_loss, "xy"),
    "bce": (lambda p, t: F.binary_cross_entropy(p, t), lambda p, t: TF.binary_cross_entropy(p, t), "pt"),
    "bce_with_logits": (F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, "xt"),
    "cross_entropy": (F.cross_entropy, TF.cross_entropy, "xc"),
    "nll": (F.nll_loss, TF.nll_loss, "lc"),
    "kl_div": (lambda a, b: F.kl_div(a, b, reduction="batchmean"),
               lambda a, b: TF.kl_div(a, b, reduction="batchmean"), "lq"),
    "poisson_nll": (F.poisson_nll_loss, TF.poisson_nll_loss, "xr"),
    "mse+weight": (lambda x, y, v: F.mse_loss(x, y, weight=v), lambda x, y, v: TF.mse_loss(x, y, weight=v), "xyv"),
    "l1+weight": (lambda x, y, v: F.l1_loss(x, y, weight=v, reduction="sum"),
                  lambda x, y, v: TF.l1_loss(x, y, weight=v, reduction="sum"), "xyv"),
    "huber+weight": (lambda x, y, v: F.huber_loss(x, y, weight=v), lambda x, y, v: TF.huber_loss(x, y, weight=v),
                     "xyv"),
    "bce_with_logits+weights": (
        lambda x, t, v, u: F.binary_cross_entropy_with_logits(x, t, weight=v, pos_weight=u),
        lambda x, t, v, u: TF.binary_cross_entropy_with_logits(x, t, weight=v, pos_weight=u), "xtvu"),
    "cross_entropy+weight": (lambda x, c, u: F.cross_entropy(x, c, weight=u, label_smoothing=0.1, reduction="none"),
                             lambda x, c, u: TF.cross_entropy(x, c, weight=u, label_smoothing=0.1, reduction="none"),
                             "xcu"),
    "linear_cross_entropy": (lambda x, w, c: F.linear_cross_entropy(x, w, c),
                             lambda x, w, c: TF.linear_cross_entropy(x, w, c), "xwc"),
}


def _autocast_inputs(kind, idt, g):
    n, k = 8, 12
    make = {
        "x": lambda: torch.randn(n, k, generator=g),
        "w": lambda: torch.randn(7, k, generator=g) / 3,
        "b": lambda: torch.randn(7, generator=g),
        "y": lambda: torch.randn(n, k, generator=g),
        "p": lambda: torch.rand(n, k, generator=g) * 0.9 + 0.05,
        "t": lambda: torch.rand(n, k, generator=g),
        "c": lambda: torch.randint(0, 7 if "w" in kind else k, (n,), generator=g),
        "l": lambda: torch.log_softmax(torch.randn(n, k, generator=g), 1),
        "q": lambda: torch.softmax(torch.randn(n, k, generator=g), 1),
        "r": lambda: torch.rand(n, k, generator=g) * 3,
        "v": lambda: torch.rand(n, k, generator=g),  # per-element weights
        "u": lambda: torch.rand(k, generator=g) + 0.5,  # per-class weights / pos_weight
    }
    out = []
    for i, c in enumerate(kind):
        t = make[c]()
        if t.is_floating_point():
            t = t.to(idt)
            if i == 0 or c in "wb":
                t.requires_grad_()
        out.append(t)
    return out


@pytest.mark.parametrize("idt", [torch.float32, "low"], ids=["in-f32", "in-16"])
@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
@pytest.mark.parametrize("name", list(AUTOCAST_CASES))
def test_autocast_matches_the_stock_op(name, dtype, idt, route):
    idt = dtype if idt == "low" else idt
    mine, stock, kind = AUTOCAST_CASES[name]
    inputs = _autocast_inputs(kind, idt, torch.Generator().manual_seed(5))
    with torch.autocast("cpu", dtype=dtype):
        o = mine(*inputs)
        s = stock(*inputs)
    assert o.dtype == s.dtype, f"{name}: fastnn gives {o.dtype} under autocast, torch {s.dtype}"
    # the policy table says what the stock op did
    pol = _autocast.policy(_FASTNN_NAME.get(name, name), "cpu")
    expect = torch.float32 if name == "linear_cross_entropy" else {"lower": dtype, "fp32": torch.float32,
                                                                   "input": idt}[pol]
    assert s.dtype == expect, f"{name}: torch gives {s.dtype}, the policy table says {pol}"
    # values at the tolerance of the dtype the op computes in (float32 for the float32 ops;
    # linear_cross_entropy: torch rounds the logits to the autocast dtype, fastnn does not)
    tol = RTOL[dtype if name == "linear_cross_entropy" else o.dtype]
    torch.testing.assert_close(o.double(), s.detach().double(), rtol=tol, atol=tol * float(s.detach().abs().max()),
                               msg=lambda m: f"{name} under autocast: {m}")
    leaves = [t for t in inputs if t.requires_grad]
    up = torch.randn(o.shape, generator=torch.Generator().manual_seed(6))
    go = torch.autograd.grad(o, leaves, up.to(o.dtype))
    gs = torch.autograd.grad(s, leaves, up.to(s.dtype))
    for i, (a, b) in enumerate(zip(go, gs)):
        assert a.dtype == b.dtype == leaves[i].dtype
        torch.testing.assert_close(a.double(), b.double(), rtol=2 * RTOL[dtype],
                                   atol=2 * RTOL[dtype] * float(b.abs().max()),
                                   msg=lambda m, i=i: f"{name} under autocast, grad {i}: {m}")


def test_autocast_policy_covers_every_loss_and_cuda_rules():
    """The CUDA entries (no CUDA here): torch's lists in aten/src/ATen/autocast_mode.cpp put
    every loss fastnn has in float32, softplus / softmax / log_softmax in float32
    (fp32_set_opt_dtype for the softmaxes), binary_cross_entropy in the banned list."""
    for name in ("mse", "mae", "huber", "smooth_l1", "bce_with_logits", "cross_entropy", "nll", "kl_div",
                 "poisson_nll"):
        assert _autocast.policy(name, "cpu") == _autocast.policy(name, "cuda") == "fp32"
    assert _autocast.policy("bce", "cuda") == "banned" and _autocast.policy("bce", "cpu") == "fp32"
    for name in ("softplus", "softmax", "log_softmax"):
        assert _autocast.policy(name, "cuda") == "fp32" and _autocast.policy(name, "cpu") == "input"
    for name in fastnn.ACTIVATIONS:
        if name not in ("softplus", "softmax", "log_softmax", "linear"):
            assert _autocast.policy(name, "cuda") == _autocast.policy(name, "cpu") == "input"


def test_autocast_disabled_region_and_float64_are_left_alone():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 6, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.linear(x, w).dtype == TF.linear(x, w).dtype == torch.float64
        with torch.autocast("cpu", enabled=False):
            x32, w32 = x.float(), w.float()
            assert F.linear(x32, w32).dtype == torch.float32
            assert F.mse_loss(x32.bfloat16(), x32.bfloat16()).dtype == torch.bfloat16


# ---- torch.compile (fullgraph) and torch.export ------------------------------------------------

def _mlp(mod, act, dtype=None):
    torch.manual_seed(7)
    return nn.Sequential(mod.Linear(16, 32, dtype=dtype), act(), mod.Linear(32, 5, dtype=dtype))


def _train_step(model, loss_fn):
    def step(x, t):
        logits = model(x)
        loss = loss_fn(logits, t)
        return logits, loss
    return step


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_compiled_model_under_autocast_gives_the_stock_dtypes(dtype):
    torch._dynamo.reset()
    ours, stock = _mlp(fnn, fnn.GELU), _mlp(nn, nn.GELU)
    stock.load_state_dict(ours.state_dict())
    x, t = torch.randn(9, 16), torch.randint(0, 5, (9,))
    compiled = torch.compile(_train_step(ours, fnn.CrossEntropyLoss()), fullgraph=True, backend="aot_eager")
    with torch.autocast("cpu", dtype=dtype):
        lo, loss = compiled(x, t)
        ls, loss_s = _train_step(stock, nn.CrossEntropyLoss())(x, t)
    assert (lo.dtype, loss.dtype) == (ls.dtype, loss_s.dtype) == (dtype, torch.float32)
    torch.testing.assert_close(lo.double(), ls.double(), rtol=2 * RTOL[dtype],
                               atol=2 * RTOL[dtype] * float(ls.detach().abs().max()))
    torch.testing.assert_close(loss, loss_s, rtol=2 * RTOL[dtype], atol=0)
    loss.backward()
    loss_s.backward()
    for (n, a), b in zip(ours.named_parameters(), stock.parameters()):
        assert a.grad.dtype == b.grad.dtype == torch.float32
        torch.testing.assert_close(a.grad, b.grad, rtol=4 * RTOL[dtype], atol=4 * RTOL[dtype] * float(b.grad.abs().max()),
                                   msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_compiled_model_under_autocast_matches_the_compiled_stock_model(dtype):
    torch._dynamo.reset()
    ours, stock = _mlp(fnn, fnn.SiLU), _mlp(nn, nn.SiLU)
    stock.load_state_dict(ours.state_dict())
    x, t = torch.randn(9, 16), torch.randint(0, 5, (9,))
    co = torch.compile(_train_step(ours, fnn.CrossEntropyLoss()), fullgraph=True)
    cs = torch.compile(_train_step(stock, nn.CrossEntropyLoss()), fullgraph=True)
    with torch.autocast("cpu", dtype=dtype):
        lo, loss = co(x, t)
        ls, loss_s = cs(x, t)
    assert (lo.dtype, loss.dtype) == (ls.dtype, loss_s.dtype)
    torch.testing.assert_close(loss, loss_s, rtol=2 * RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_compiled_16bit_model(dtype):
    torch._dynamo.reset()
    ours = _mlp(fnn, fnn.ReLU, dtype)
    x = torch.randn(6, 16).to(dtype).requires_grad_()
    y = torch.compile(ours, fullgraph=True, backend="aot_eager")(x)
    ref = ours(x)
    assert y.dtype == dtype
    torch.testing.assert_close(y, ref, rtol=0, atol=0)  # the same kernels, the same bits
    (gx,) = torch.autograd.grad(y.sum(), x)
    (rx,) = torch.autograd.grad(ref.sum(), x)
    assert gx.dtype == dtype and torch.equal(gx, rx)


@pytest.mark.parametrize("dtype", LOW, ids=LOW_IDS)
def test_exported_16bit_model(dtype):
    ours = _mlp(fnn, fnn.Tanh, dtype)
    x = torch.randn(6, 16).to(dtype)
    ep = torch.export.export(ours, (x,))
    assert any("fastnn" in str(n.target) for n in ep.graph.nodes)
    y = ep.module()(x)
    assert y.dtype == dtype and torch.equal(y, ours(x))


# ---- torch.amp.GradScaler: float16 training -------------------------------------------------------

def _scaler_run(mod, steps, inf_step):
    torch.manual_seed(8)
    model = nn.Sequential(mod.Linear(10, 24, activation="relu") if mod is fnn else nn.Sequential(nn.Linear(10, 24),
                                                                                              nn.ReLU()),
                          mod.Linear(24, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)
    loss_fn = mod.CrossEntropyLoss()
    g = torch.Generator().manual_seed(9)
    scales, losses, params = [], [], []
    for i in range(steps):
        x, t = torch.randn(16, 10, generator=g), torch.randint(0, 4, (16,), generator=g)
        if i == inf_step:
            x[0, 0] = 1e6  # float16 overflows (inf logits -> non-finite gradients): the step is skipped
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = loss_fn(model(x), t)
        assert loss.dtype == torch.float32
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        losses.append(loss.detach())
        params.append([p.detach().clone() for p in model.parameters()])
    return scales, losses, params


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the overflowing step
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the overflowing step
def test_grad_scaler_float16_training_matches_stock():
    ours = _scaler_run(fnn, 6, inf_step=3)
    stock = _scaler_run(nn, 6, inf_step=3)
    assert ours[0] == stock[0]  # the same loss-scale history: growth, and the skip at the inf step
    assert ours[0][3] == ours[0][2] / 2
    for a, b in zip(ours[2][3], ours[2][2]):
        assert torch.equal(a, b)  # the inf step changed no parameter
    for i, (a, b) in enumerate(zip(ours[1], stock[1])):
        if i != 3:
            torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-3, msg=lambda m, i=i: f"loss at step {i}: {m}")
    for a, b in zip(ours[2][-1], stock[2][-1]):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=2e-3)
