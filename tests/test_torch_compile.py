"""fastnn.torch under torch.compile: the custom ops fastnn::* and their C++ CPU kernels.

- The C++ kernels (csrc/torch/native.cpp, registered for the CPU dispatch key over the
  Python ones of fastnn/torch/_ops.py) give the Python kernels' bits and torch's values,
  serve the common calls themselves, and hand the others (class weights, a target
  gradient, parameters the public API refuses) to the Python kernels, errors included.
- Inductor: one graph for varying batch sizes marked dynamic, the C++ kernels run, the
  elementwise work around them fused, values and gradients as eager.
- Every fastnn.torch module and functional op traces with fullgraph=True (no graph
  break) and gives torch's values and gradients.
(test_torch_compile_ddp.py: the graphs hold only fastnn ops; test_torch_export.py:
torch.export and AOTInductor packages in a fresh process.)
"""
import pytest
import torch
import torch.nn.functional as TF
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend
from torch._inductor.utils import run_and_get_code

import fastnn
import fastnn.torch as fnn
import fastnn.torch.functional as F
from fastnn.torch import _native as N
from fastnn.torch import _ops
from fastnn.torch.losses import LOSS_MODULES
from fastnn.torch.modules import ACTIVATION_MODULES

needs_native = pytest.mark.skipif("cpp" not in fastnn.available_backends() or N.status() != "ok",
                                  reason="fastnn.torch's C++ extension is not built here")

PY_KERNELS = ("_dense_py", "_dense_backward_py", "_activation_py", "_activation_backward_py", "_loss_py",
              "_loss_backward_py")


@pytest.fixture
def python_kernel_calls(monkeypatch):
    """The names of the Python kernels called (by the C++ kernels' fallback or directly)."""
    calls = []
    for name in PY_KERNELS:
        fn = getattr(_ops, name)
        monkeypatch.setattr(_ops, name, lambda *a, _fn=fn, _name=name: (calls.append(_name), _fn(*a))[1])
    return calls


def _same(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype and a.is_contiguous()
    assert torch.equal(a, b), (a - b).abs().max()


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpp_kernels_give_the_python_kernels_bits_and_torchs_values(dtype, python_kernel_calls):
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(s, generator=g, dtype=dtype) for s in ((7, 5), (4, 5), (4,)))
    ops = torch.ops.fastnn
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-13}
    # Dense + gelu(tanh): y and the pre-activation z, then every gradient
    p = _ops.encode({"approximate": "tanh"})
    y, z = ops.dense(x, w, b, "gelu", p)
    _same(y, _ops._dense_py(x, w, b, "gelu", p)[0])
    _same(z, _ops._dense_py(x, w, b, "gelu", p)[1])
    xr, wr, br = (t.double().requires_grad_() for t in (x, w, b))
    yr = TF.gelu(TF.linear(xr, wr, br), approximate="tanh")
    torch.testing.assert_close(y, yr.to(dtype), **tol)
    dy = torch.randn(7, 4, generator=g, dtype=dtype)
    got = ops.dense_backward(dy, x, w, None, z, "gelu", p, True, True, True)
    for a, c in zip(got, _ops._dense_backward_py(dy, x, w, None, z, "gelu", p, True, True, True)):
        _same(a, c)
    for a, r in zip(got, torch.autograd.grad(yr, (xr, wr, br), dy.double())):
        torch.testing.assert_close(a, r.to(dtype), **tol)
    dx, dw, db = ops.dense_backward(dy, x, w, None, None, "linear", "", False, True, False)
    assert dx.shape == (0,) and db.shape == (0,)
    _same(dw, _ops._dense_backward_py(dy, x, w, None, None, "linear", "", False, True, False)[1])
    torch.testing.assert_close(dw, (dy.T.double() @ x.double()).to(dtype), **tol)
    # an activation whose backward reads y, along the last axis
    y = ops.activation(x, "log_softmax", _ops.encode({"axis": -1}))
    _same(y, _ops._activation_py(x, "log_softmax", _ops.encode({"axis": -1})))
    torch.testing.assert_close(y, TF.log_softmax(x.double(), -1).to(dtype), **tol)
    dx = ops.activation_backward(dy[:, :1].expand(7, 5).contiguous(), y, "log_softmax", _ops.encode({"axis": -1}))
    xr = x.double().requires_grad_()
    (ref,) = torch.autograd.grad(TF.log_softmax(xr, -1), xr, dy[:, :1].expand(7, 5).double())
    torch.testing.assert_close(dx, ref.to(dtype), **tol)
    # cross-entropy with label smoothing, mean, and its gradient
    labels = torch.randint(0, 5, (7,), generator=g)
    p = _ops.encode({"label_smoothing": 0.1})
    loss = ops.loss(x, labels, None, None, "cross_entropy", "mean", p)
    _same(loss, _ops._loss_py(x, labels, None, None, "cross_entropy", "mean", p))
    xr = x.double().requires_grad_()
    ref = TF.cross_entropy(xr, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss, ref.detach().to(dtype), **tol)
    one = torch.tensor(1.5, dtype=dtype)
    dpred, dt = ops.loss_backward(one, x, labels, None, None, "cross_entropy", "mean", p, False)
    _same(dpred, _ops._loss_backward_py(one, x, labels, None, None, "cross_entropy", "mean", p, False)[0])
    torch.testing.assert_close(dpred, torch.autograd.grad(ref, xr, one.double())[0].to(dtype), **tol)
    assert dt.shape == (0,)
    # each call above that was not a direct _py call ran in C++
    assert python_kernel_calls == ["_dense_py", "_dense_py", "_dense_backward_py", "_dense_backward_py",
                                   "_activation_py", "_loss_py", "_loss_backward_py"]


@needs_native
def test_calls_the_cpp_kernels_do_not_serve_go_to_the_python_kernels(python_kernel_calls):
    x, labels = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    weight = torch.rand(4, dtype=torch.float64) + 0.5
    got = torch.ops.fastnn.loss(x, labels, weight, None, "nll", "mean", "")
    torch.testing.assert_close(got, TF.nll_loss(x, labels, weight), rtol=1e-13, atol=0)
    t = torch.randn(6, 4, dtype=torch.float64)
    dpred, dt = torch.ops.fastnn.loss_backward(torch.tensor(1.0, dtype=torch.float64), x, t, None, None, "mse",
                                               "sum", "", True)
    torch.testing.assert_close(dpred, 2 * (x - t), rtol=1e-14, atol=0)
    torch.testing.assert_close(dt, -2 * (x - t), rtol=1e-14, atol=0)
    assert python_kernel_calls == ["_loss_py", "_loss_backward_py"]
    with pytest.raises(TypeError, match="unexpected parameter.*bogus.*'relu'"):  # the public API's error
        torch.ops.fastnn.activation(x, "relu", "bogus=1")
    with pytest.raises(ValueError, match="probabilities in"):  # a value outside bce's domain
        torch.ops.fastnn.loss(x.abs() + 1, t.sigmoid(), None, None, "bce", "mean", "")


@needs_native
def test_opcheck_schema_fakes_and_autograd_of_every_op():
    """torch.library.opcheck: each op's schema (no mutation, no aliasing), its fake against
    the C++ kernel's outputs (shapes, strides, dtypes, also under dynamic shapes) and its
    autograd registration, on sample calls that the C++ kernels serve."""
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((6, 5), (3, 5), (3,)))
    dy, labels, t = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2]), torch.rand(6, 3).double()
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    y, z = torch.ops.fastnn.dense(x, w, b, "silu", "")
    gelu = _ops.encode({"approximate": "tanh"})
    calls = [(torch.ops.fastnn.dense, (xg, wg, b, "gelu", gelu)),
             (torch.ops.fastnn.dense, (xg, wg, None, "linear", "")),
             (torch.ops.fastnn.dense_backward, (dy, x, w, None, z, "silu", "", True, True, True)),
             (torch.ops.fastnn.activation, (xg, "softplus", _ops.encode({"beta": 2.0}))),
             (torch.ops.fastnn.activation_backward, (dy, y, "sigmoid", "")),
             (torch.ops.fastnn.loss, (y.clone().requires_grad_(), labels, None, None, "cross_entropy", "mean", "")),
             (torch.ops.fastnn.loss, (y.clone().requires_grad_(), t, None, None, "mse", "none", "")),
             (torch.ops.fastnn.loss_backward, (torch.tensor(2.0, dtype=torch.float64), y, t, None, None, "huber",
                                               "sum", _ops.encode({"delta": 0.5}), False))]
    for op, args in calls:
        torch.library.opcheck(op, args)


def _model():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = fnn.Linear(8, 8, activation="gelu", approximate="tanh")
            self.b = fnn.Linear(8, 4)
            self.act = fnn.SiLU()

        def forward(self, x):
            return TF.log_softmax(self.b(self.act(self.a(x) * 0.5 + x)), -1)  # torch's log_softmax: inductor's

    torch.manual_seed(0)
    return Residual().double()


@needs_native
@pytest.mark.slow  # inductor compiles a forward and a backward graph (~10 s on 2 cores)
def test_inductor_one_dynamic_graph_runs_the_cpp_kernels_and_fuses_around_them(python_kernel_calls):
    torch._dynamo.reset()
    model, loss_fn = _model(), fnn.NLLLoss()

    def step(x, y):
        return loss_fn(model(x), y)

    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(step, backend=counter, fullgraph=True)
    for i, n in enumerate((6, 9, 13)):
        g = torch.Generator().manual_seed(n)
        x, y = torch.randn(n, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)
        torch._dynamo.mark_dynamic(x, 0)
        torch._dynamo.mark_dynamic(y, 0)
        model.zero_grad()
        ref = step(x, y)
        ref.backward()
        ref_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        if i == 0:
            got, (fw_code, *_) = run_and_get_code(compiled, x, y)
        else:
            got = compiled(x, y)
        got.backward()
        torch.testing.assert_close(got, ref, rtol=1e-13, atol=0)
        for p, r in zip(model.parameters(), ref_grads):
            torch.testing.assert_close(p.grad, r, rtol=1e-12, atol=1e-14)
    assert counter.frame_count == 1  # one graph for the three batch sizes
    assert python_kernel_calls == []  # the C++ kernels served every fastnn op
    assert fw_code.count("torch.ops.fastnn.dense.default(") == 2
    assert "torch.ops.fastnn.activation.default(" in fw_code and "torch.ops.fastnn.loss.default(" in fw_code
    # the residual's scale and add are one fused inductor kernel between the fastnn ops
    assert any("mul" in line and "add" in line for line in fw_code.splitlines() if line.startswith("cpp_fused_"))


ACT_NAMES = [c.__name__ for c in ACTIVATION_MODULES]
LOSS_NAMES = [c.__name__ for c in LOSS_MODULES]


def _every_op(x, t, p, labels):
    """Every fastnn.torch activation and loss, as a module and as a functional, summed."""
    acts = [getattr(fnn, n)(dim=-1)(x) if "Softmax" in n else getattr(fnn, n)()(x) for n in ACT_NAMES]
    h = x * 1.0
    acts += [F.relu(h), F.relu6(h), F.leaky_relu(h, 0.2), F.elu(h), F.selu(h), F.celu(h, 0.5), F.gelu(h),
             F.gelu(h, approximate="tanh"), F.silu(h), F.mish(h), F.sigmoid(h), F.hardsigmoid(h), F.hardswish(h), F.tanh(h),
             F.softplus(h, 2.0), F.softsign(h), F.logsigmoid(h), F.hardtanh(h, -0.5, 0.5), F.softmax(h, 1),
             F.log_softmax(h, 0), F.linear(h, p.T[:5], None, activation="relu"),
             F.relu_(h * 1.0), F.leaky_relu_(h * 1.0), F.elu_(h * 1.0), F.hardtanh_(h * 1.0)]
    sig, logp = torch.sigmoid(x), TF.log_softmax(x, -1)
    losses = []
    for n in LOSS_NAMES:
        m = getattr(fnn, n)(reduction="batchmean") if n == "KLDivLoss" else getattr(fnn, n)()  # 'mean' warns
        if n in ("CrossEntropyLoss", "NLLLoss"):
            losses.append(m(logp if n == "NLLLoss" else x, labels))
        elif n == "BCELoss":
            losses.append(m(sig, t))
        elif n == "KLDivLoss":
            losses.append(m(logp, t.softmax(-1)))
        else:
            losses.append(m(x, t))
    losses += [F.mse_loss(x, t, reduction="sum"), F.l1_loss(x, t), F.huber_loss(x, t, delta=0.5),
               F.smooth_l1_loss(x, t, beta=0.5), F.binary_cross_entropy(sig, t),
               F.binary_cross_entropy_with_logits(x, t, pos_weight=torch.full((5,), 2.0, dtype=x.dtype)),
               F.cross_entropy(x, labels, label_smoothing=0.1), F.nll_loss(logp, labels, reduction="sum"),
               F.kl_div(logp, t.softmax(-1), reduction="batchmean"), F.poisson_nll_loss(x, t.abs())]
    return sum(a.sum() for a in acts) + sum(losses)


def test_every_module_and_functional_op_traces_without_a_graph_break():
    """fullgraph=True fails on any graph break; values and gradients as torch's (the
    same expression over torch's own modules and functionals)."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t, p = torch.rand(4, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 4, 2, 1])
    counter = CompileCounterWithBackend("aot_eager")
    got = torch.compile(_every_op, backend=counter, fullgraph=True)(x, t, p, labels)
    (grad,) = torch.autograd.grad(got, x)
    assert counter.frame_count == 1
    with torch.no_grad():
        eager = _every_op(x, t, p, labels)
    torch.testing.assert_close(got.detach(), eager, rtol=1e-14, atol=0)
    # the independent reference: torch's own ops in place of fastnn's
    xr = x.detach().requires_grad_()
    with _torch_twins():
        ref = _every_op(xr, t, p, labels)
    (gref,) = torch.autograd.grad(ref, xr)
    torch.testing.assert_close(got.detach(), ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, gref, rtol=1e-12, atol=1e-12)


class _torch_twins:
    """fnn's modules and functionals replaced by torch's for the duration (monkeypatching
    the names _every_op looks up)."""

    def __enter__(self):
        self.saved = {}
        for mod, names in ((fnn, ACT_NAMES + LOSS_NAMES),
                           (F, [n for n in F.__all__ if hasattr(TF, n) and n != "linear"])):
            for n in names:
                self.saved[(mod, n)] = getattr(mod, n)
                setattr(mod, n, getattr(nn if mod is fnn else TF, n))
        self.saved[(F, "linear")] = F.linear
        F.linear = lambda x, w, b=None, activation=None: TF.relu(TF.linear(x, w, b))
        return self

    def __exit__(self, *exc):
        for (mod, n), v in self.saved.items():
            setattr(mod, n, v)
