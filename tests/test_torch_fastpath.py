"""fastnn.torch's CPU routes (fastnn/torch/_ops.py: the C++ nodes, or the Python autograd
Functions over fastnn's prepared calls) must give

- exactly (bit for bit) what the public API gives for the same tensors, values and
  gradients, float32 and float64, on every CPU backend, and torch's values;
- the backend that use_backend / set_backend / FASTNN_BACKEND force, at each call;
- the activation or loss the call names now, never one resolved for other params
  (the resolved specs are cached, fastnn._checks.activation_spec_cached);
- autograd's protection against inputs modified in place between forward and backward;
- the public API's errors where it falls back to it.

Both fast paths are tested: the C++ autograd nodes (fastnn/torch/_native.py, the default
where they build) and the Python autograd.Functions (what runs without them): the autouse
``path`` fixture runs every test on each.
"""
import pytest
import torch
import torch.nn.functional as TF

import fastnn
import fastnn.torch as fnn
import fastnn.torch.functional as F
from fastnn import _checks as C
from fastnn.torch import _native as N
from fastnn.torch import _ops
from test_torch_functional import DTYPE_IDS, DTYPES, assert_close, leaf, strided

CPU_BACKENDS = [b for b in fastnn.available_backends() if b != "cupy"]


PATHS = ["native", "python"] if N.status() == "ok" else ["python"]


@pytest.fixture(autouse=True, params=PATHS)
def path(request, monkeypatch):
    """Which fast path serves the calls: the C++ nodes, or the Python Functions."""
    if request.param == "python":
        monkeypatch.setattr(_ops, "_native", lambda t: None)
    return request.param


def test_native_nodes_are_built_here():
    """Where a C++ compiler and torch's headers exist (as in CI), the C++ nodes load: a
    silent fallback would leave them untested."""
    assert N.status() == "ok", N.status()


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _r(shape, dtype, seed=0, lo=None, hi=None, grad=True):
    g = _g(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64) if lo is None else \
        lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    return leaf(t.to(dtype), grad=grad)


# (id, fastnn call, torch reference, make(dtype) -> inputs); the first inputs require grad
CASES = [
    ("linear-relu", lambda x, w, b: F.linear(x, w, b, activation="relu"), lambda x, w, b: TF.relu(TF.linear(x, w, b)),
     lambda d: [_r((8, 16), d), _r((16, 16), d, 1), _r((16,), d, 2)]),
    ("linear-sigmoid-nobias", lambda x, w: F.linear(x, w, activation="sigmoid"),
     lambda x, w: torch.sigmoid(TF.linear(x, w)), lambda d: [_r((64, 10), d), _r((1, 10), d, 1)]),
    ("linear-gelu-3d", lambda x, w, b: F.linear(x, w, b, activation="gelu", approximate="tanh"),
     lambda x, w, b: TF.gelu(TF.linear(x, w, b), approximate="tanh"),
     lambda d: [_r((2, 3, 5), d), _r((4, 5), d, 1), _r((4,), d, 2)]),
    ("linear-1d", lambda x, w, b: F.linear(x, w, b), TF.linear, lambda d: [_r((5,), d), _r((4, 5), d, 1),
                                                                          _r((4,), d, 2)]),
    ("linear-logsoftmax-T", lambda x, w, b: F.linear(x, w, b, activation="log_softmax"),
     lambda x, w, b: TF.log_softmax(TF.linear(x, w, b), -1),
     lambda d: [strided(_r((6, 5), d), "T"), strided(_r((4, 5), d, 1), "T"), _r((4,), d, 2)]),
    ("linear-tanh-slice", lambda x, w, b: F.linear(x, w, b, activation="tanh"),
     lambda x, w, b: torch.tanh(TF.linear(x, w, b)),
     lambda d: [strided(_r((6, 5), d), "slice"), strided(_r((4, 5), d, 1), "slice"), _r((4,), d, 2)]),
    ("relu", F.relu, TF.relu, lambda d: [_r((6, 7), d)]),
    ("leaky_relu-0d", lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2), lambda d: [_r((), d)]),
    ("softmax-dim0-T", lambda x: F.softmax(x, 0), lambda x: TF.softmax(x, 0),
     lambda d: [strided(_r((5, 6), d), "T")]),
    ("elu-3d-slice", lambda x: F.elu(x, 0.5), lambda x: TF.elu(x, 0.5),
     lambda d: [strided(_r((2, 3, 4), d), "slice")]),
    ("mse-mean", F.mse_loss, TF.mse_loss, lambda d: [_r((5, 4), d), _r((5, 4), d, 1)]),
    ("mse-sum-broadcast", lambda x, t: F.mse_loss(x, t, reduction="sum"), lambda x, t: TF.mse_loss(x, t, reduction="sum"),
     lambda d: [_r((5, 4), d), _r((4,), d, 1, grad=False).expand(5, 4)]),
    ("huber-none", lambda x, t: F.huber_loss(x, t, reduction="none", delta=0.5),
     lambda x, t: TF.huber_loss(x, t, reduction="none", delta=0.5), lambda d: [_r((5, 4), d), _r((5, 4), d, 1)]),
    ("bce", F.binary_cross_entropy, TF.binary_cross_entropy,
     lambda d: [_r((64, 1), d, 0, 0.01, 0.99), _r((64, 1), d, 1, 0, 1, grad=False)]),
    ("bce_with_logits", F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits,
     lambda d: [_r((6, 3), d), _r((6, 3), d, 1, 0, 1)]),
    ("kl_div-batchmean", lambda x, t: F.kl_div(x, t, reduction="batchmean"),
     lambda x, t: TF.kl_div(x, t, reduction="batchmean"), lambda d: [_r((5, 4), d), _r((5, 4), d, 1, 0.1, 1)]),
    ("cross_entropy-weight", lambda x, t, w: F.cross_entropy(x, t, w, label_smoothing=0.1),
     lambda x, t, w: TF.cross_entropy(x, t, w, label_smoothing=0.1),
     lambda d: [_r((7, 4), d), torch.tensor([0, 3, 1, 2, 2, 0, 1]), _r((4,), d, 2, 0.5, 2, grad=False)]),
    ("cross_entropy-nd-probs", F.cross_entropy, TF.cross_entropy,
     lambda d: [_r((2, 4, 3), d), torch.softmax(_r((2, 4, 3), d, 1, grad=False), 1)]),
    ("nll-ignore-none", lambda x, t: F.nll_loss(x, t, ignore_index=1, reduction="none"),
     lambda x, t: TF.nll_loss(x, t.long(), ignore_index=1, reduction="none"),  # torch takes no int32 here
     lambda d: [_r((6, 3), d), torch.tensor([0, 1, 2, 1, 0, 2], dtype=torch.int32)]),
]
CASE_IDS = [c[0] for c in CASES]


def _run(fn, inputs, seed=5):
    """(output, gradients of the inputs that require grad) under a random upstream gradient."""
    out = fn(*inputs)
    g = torch.randn(out.shape, generator=_g(seed), dtype=torch.float64).to(out.dtype)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return out, torch.autograd.grad(out, leaves, g)


def _fresh(inputs, dtype=None):
    """The same values as new leaves (a new autograd graph), floats in dtype if given
    (exactly: float32 to float64)."""
    return [t.detach().to(dtype or t.dtype, copy=True).requires_grad_(t.requires_grad) if t.is_floating_point()
            else t.clone() for t in inputs]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case,fn,ref,make", CASES, ids=CASE_IDS)
def test_fast_path_is_the_public_api_bit_for_bit(case, fn, ref, make, dtype, backend, monkeypatch):
    inputs = make(dtype)
    with fastnn.use_backend(backend):
        fast, gfast = _run(fn, inputs)
        with monkeypatch.context() as m:
            m.setattr(_ops, "_native", lambda t: None)
            slow, gslow = _run(fn, _fresh(inputs))
    assert fast.dtype == slow.dtype == dtype and fast.shape == slow.shape
    assert torch.equal(fast, slow), f"{case}: value differs from the public API's"
    for i, (a, b) in enumerate(zip(gfast, gslow)):
        assert torch.equal(a, b), f"{case}: gradient #{i} differs from the public API's"
    # and torch's own values (the reference in float64 on the same values)
    rv, rg = _run(ref, _fresh(inputs, torch.float64))
    assert_close(fast, rv, dtype, f"{case} value")
    for i, (a, b) in enumerate(zip(gfast, rg)):
        assert_close(a, b, dtype, f"{case} grad #{i}")


@pytest.mark.parametrize("case", ["linear-gelu-3d", "linear-logsoftmax-T", "softmax-dim0-T", "cross_entropy-weight",
                                  "bce", "kl_div-batchmean"])
def test_fast_path_gradcheck(case):
    _, fn, _, make = CASES[CASE_IDS.index(case)]
    inputs = make(torch.float64)
    n = sum(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs)
    rest = inputs[n:]
    assert torch.autograd.gradcheck(lambda *a: fn(*a, *rest), tuple(inputs[:n]), eps=1e-6, atol=1e-7, rtol=1e-6)


# ---- forced backends ------------------------------------------------------------------------

KERNELS = ("dense_forward", "dense_backward", "activation_forward", "activation_backward", "loss_forward",
           "loss_backward", "class_loss_forward", "class_loss_backward")


@pytest.fixture
def spy(monkeypatch):
    """[(backend module name, kernel)] of every backend kernel call from Python (the C++
    nodes call the C++ kernels directly: the tests using spy run on the Python path)."""
    monkeypatch.setattr(_ops, "_native", lambda t: None)
    from fastnn import _dispatch  # noqa: PLC0415

    calls = []
    for name in CPU_BACKENDS:
        mod = _dispatch._load(name)
        for fn in KERNELS + ("dense_forward_plain", "dense_backward_plain"):  # cpp's plain Dense route
            if not hasattr(mod, fn):
                continue

            def wrapped(*a, _orig=getattr(mod, fn), _key=(name, fn.replace("_plain", "")), **k):
                calls.append(_key)
                return _orig(*a, **k)
            monkeypatch.setattr(mod, fn, wrapped)
    monkeypatch.delenv("FASTNN_BACKEND", raising=False)
    fastnn.set_backend(None)
    yield calls
    fastnn.set_backend(None)


def _train_step():
    x = torch.randn(8, 6, requires_grad=True)
    w, b = torch.randn(4, 6, requires_grad=True), torch.randn(4, requires_grad=True)
    h = F.sigmoid(F.linear(x, w, b, activation="relu"))
    (F.mse_loss(h, torch.rand(8, 4)) + F.cross_entropy(h, torch.tensor([0, 1, 2, 3] * 2))).backward()


@pytest.mark.skipif("numba" not in CPU_BACKENDS or "cpp" not in CPU_BACKENDS, reason="needs cpp and numba")
@pytest.mark.parametrize("force", ["use_backend", "set_backend", "FASTNN_BACKEND"])
def test_forced_backend_is_honoured_per_call(spy, force, monkeypatch):
    _train_step()
    assert spy and {b for b, _ in spy} == {"cpp"}, spy  # automatic choice
    for name in ("numba", "cpp", "numba"):  # switched between calls: each call sees the current choice
        spy.clear()
        if force == "use_backend":
            with fastnn.use_backend(name):
                _train_step()
        else:
            if force == "set_backend":
                fastnn.set_backend(name)
            else:
                monkeypatch.setenv("FASTNN_BACKEND", name)
            _train_step()
        assert {b for b, _ in spy} == {name}, (force, name, spy)
        assert {k for _, k in spy} == set(KERNELS), spy  # every kind of kernel ran there
    spy.clear()
    fastnn.set_backend(None)
    monkeypatch.delenv("FASTNN_BACKEND", raising=False)
    _train_step()
    assert {b for b, _ in spy} == {"cpp"}


@pytest.mark.skipif("numba" not in CPU_BACKENDS, reason="needs numba")
def test_backend_of_backward_is_the_one_in_effect_then(spy):
    x = torch.randn(5, 3, requires_grad=True)
    with fastnn.use_backend("numba"):
        y = F.linear(x, torch.randn(2, 3), activation="gelu")
    assert spy == [("numba", "dense_forward")]
    y.sum().backward()
    assert set(spy[1:]) == {("cpp", "dense_backward")}  # (cpp's plain route may decline first: dy is expanded)


# ---- no stale specs ---------------------------------------------------------------------------

def test_changed_activation_params_are_not_served_stale():
    x = torch.randn(6, 5, dtype=torch.float64)
    m = fnn.Linear(5, 4, activation="leaky_relu", negative_slope=0.1).double()
    for slope in (0.1, 0.3, 0.3, 2, 0.1):
        m.act_params["negative_slope"] = slope
        assert_close(m(x), TF.leaky_relu(TF.linear(x, m.weight, m.bias), slope), torch.float64, str(slope))
    m.activation, m.act_params = "gelu", {"approximate": "tanh"}
    assert_close(m(x), TF.gelu(TF.linear(x, m.weight, m.bias), approximate="tanh"), torch.float64)
    m.act_params["approximate"] = "none"
    assert_close(m(x), TF.gelu(TF.linear(x, m.weight, m.bias)), torch.float64)
    act = fnn.ELU(alpha=0.5)
    for alpha in (0.5, 2.0, 0.5):
        act.alpha = alpha
        assert_close(act(x), TF.elu(x, alpha), torch.float64, str(alpha))
    loss = fnn.HuberLoss(delta=0.5)
    t = torch.randn(6, 5, dtype=torch.float64)
    for delta in (0.5, 3.0):
        loss.delta = delta
        assert_close(loss(x, t), TF.huber_loss(x, t, delta=delta), torch.float64, str(delta))


def test_spec_cache_keys_tell_equal_but_different_values_apart():
    pos = C.activation_spec_cached("f", "leaky_relu", {"negative_slope": 0.0})
    neg = C.activation_spec_cached("f", "leaky_relu", {"negative_slope": -0.0})
    assert str(pos.numeric[0]) == "0.0" and str(neg.numeric[0]) == "-0.0"
    assert C.activation_spec_cached("f", "relu", {"negative_slope": 1.0}).numeric[0] == 1.0
    with pytest.raises(TypeError, match="negative_slope must be a number"):  # True == 1.0, but not a number
        C.activation_spec_cached("f", "relu", {"negative_slope": True})
    assert C.activation_spec_cached("f", "gelu", {"approximate": True}).params["approximate"] == "tanh"
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):  # 1 == True, but not a flag
        C.activation_spec_cached("f", "gelu", {"approximate": 1})
    spec = C.activation_spec_cached("f", "elu", {"alpha": 2.0})
    assert spec == C.activation_spec("f", "elu", {"alpha": 2.0})
    with pytest.raises(TypeError):  # cached specs are shared: read-only
        spec.params["alpha"] = 3.0


def test_spec_cache_never_caches_errors():
    for func in ("first", "second"):  # each call raises, naming its own function
        with pytest.raises(ValueError, match=f"^{func}: unknown activation 'relux'"):
            C.activation_spec_cached(func, "relux", {})
        with pytest.raises(ValueError, match=f"^{func}: celu alpha must be nonzero"):
            C.activation_spec_cached(func, "celu", {"alpha": 0})
        with pytest.raises(ValueError, match=f"^{func}: huber delta must be > 0"):
            C.loss_spec_cached(func, "huber", {"delta": -1.0})
    with pytest.raises(TypeError, match="alpha must be a number"):  # unhashable: resolved (and refused) uncached
        C.activation_spec_cached("f", "elu", {"alpha": [1.0]})


# ---- autograd's guards still hold ------------------------------------------------------------

def test_input_modified_in_place_after_forward_still_raises():
    x = torch.randn(4, 5, requires_grad=True)
    w = torch.randn(3, 5, requires_grad=True)
    h = x * 1.0
    y = F.linear(h, w, activation="relu")
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    p = torch.rand(4, 3, requires_grad=True) * 0.5
    loss = F.binary_cross_entropy(p, torch.rand(4, 3))
    with torch.no_grad():
        p.mul_(1.5)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_retain_graph_backward_twice():
    """A retained graph runs backward again from its saved tensors alone."""
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    y = F.linear(x, w, activation="gelu")
    y.sum().backward(retain_graph=True)
    first = w.grad.clone()
    y.sum().backward()
    assert torch.equal(w.grad, 2 * first)


# ---- the public API's errors where the fast path leaves a call to it -------------------------------

def test_errors_come_from_the_public_api():
    with pytest.raises(ValueError, match=r"w has shape \(4, 5\) but x has 3 features"):
        F.linear(torch.randn(2, 3, requires_grad=True), torch.randn(4, 5), activation="relu")
    with pytest.raises(ValueError, match=r"b has shape \(3,\)"):
        F.linear(torch.randn(2, 5), torch.randn(4, 5), torch.randn(3))
    with pytest.raises(ValueError, match="probabilities in"):
        F.binary_cross_entropy(torch.tensor([0.5, float("nan")]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="target.*probabilities in"):
        F.binary_cross_entropy(torch.tensor([0.5, 0.5], requires_grad=True), torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"class index -2, outside \[0, 3\)"):
        F.nll_loss(torch.randn(2, 3, requires_grad=True), torch.tensor([1, -2]))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        F.softmax(torch.randn(2, 3), 2)
    for x in (torch.randn(5), torch.randn(5, requires_grad=True)):  # axis 1 of a 1-d x: out of range
        with pytest.raises(ValueError, match="axis 1 is out of range"):
            F.linear(x, torch.randn(3, 5), activation="softmax", dim=1)
    with pytest.raises(ValueError, match="last axis"):
        F.linear(torch.randn(2, 5), torch.randn(3, 5), activation="log_softmax", dim=0)
