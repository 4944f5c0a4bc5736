"""fastnn.torch on CUDA tensors: the modules and losses run on the cupy backend (tensors
reach CuPy through DLPack, on torch's current stream) and match their torch twins on the
GPU, values and gradients, float32 and float64. Skipped where there is no CUDA device or
the cupy backend is unavailable (run on a GPU by bench/gpu_check.sh).
"""
import numpy as np
import pytest
import torch
from torch import nn

import fastnn
import fastnn.torch as ft

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or fastnn.backends().get("cupy") != "ok",
    reason=f"needs a CUDA device and the cupy backend (backends: {fastnn.backends()})")

DEV = "cuda"
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


@pytest.fixture(autouse=True)
def full_fp32():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # compare full-precision products
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def close(a, b, dtype, what, scale=1.0):
    t = TOL[dtype]
    assert a.device == b.device and a.dtype == b.dtype and a.shape == b.shape, what
    torch.testing.assert_close(a, b, rtol=t["rtol"], atol=t["atol"] * scale, msg=what)


def grads(params):
    return [p.grad.clone() for p in params]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, "relu", "gelu", "sigmoid", "tanh"])
def test_linear_matches_torch(dtype, act):
    torch.manual_seed(0)
    ref = nn.Linear(64, 48, device=DEV, dtype=dtype)
    fl = ft.Linear(64, 48, activation=act, device=DEV, dtype=dtype)
    fl.load_state_dict(ref.state_dict())
    x = torch.randn(33, 64, device=DEV, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    f = {None: lambda v: v, "relu": torch.relu, "gelu": nn.functional.gelu, "sigmoid": torch.sigmoid,
         "tanh": torch.tanh}[act]
    y_ref, y = f(ref(x)), fl(x2)
    assert y.is_cuda
    close(y, y_ref, dtype, "forward", scale=10)
    dy = torch.randn_like(y)
    y_ref.backward(dy)
    y.backward(dy)
    close(x2.grad, x.grad, dtype, "dx", scale=10)
    close(fl.weight.grad, ref.weight.grad, dtype, "dw", scale=10)
    close(fl.bias.grad, ref.bias.grad, dtype, "db", scale=10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mods", [(ft.GELU(), nn.GELU()), (ft.SiLU(), nn.SiLU()), (ft.Softmax(dim=1), nn.Softmax(dim=1)),
                                  (ft.LogSoftmax(dim=-1), nn.LogSoftmax(dim=-1)), (ft.ELU(0.5), nn.ELU(0.5))],
                         ids=lambda m: type(m[0]).__name__)
def test_activations_match_torch(dtype, mods):
    mine, theirs = mods
    x = (torch.randn(17, 130, device=DEV, dtype=dtype) * 3).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y, yr = mine(x2), theirs(x)
    close(y, yr, dtype, "forward")
    dy = torch.randn_like(y)
    y.backward(dy)
    yr.backward(dy)
    close(x2.grad, x.grad, dtype, "backward", scale=10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "SmoothL1Loss", "NLLLoss"])
def test_losses_match_torch(dtype, name):
    torch.manual_seed(1)
    pred = torch.randn(64, 10, device=DEV, dtype=dtype, requires_grad=True)
    if name in ("CrossEntropyLoss", "NLLLoss"):
        target = torch.randint(0, 10, (64,), device=DEV)
    elif name == "BCEWithLogitsLoss":
        target = torch.rand(64, 10, device=DEV, dtype=dtype)
    else:
        target = torch.randn(64, 10, device=DEV, dtype=dtype)
    p_in = torch.log_softmax(pred, 1) if name == "NLLLoss" else pred
    pred2 = pred.detach().clone().requires_grad_()
    p_in2 = torch.log_softmax(pred2, 1) if name == "NLLLoss" else pred2
    lr, lf = getattr(nn, name)()(p_in, target), getattr(ft, name)()(p_in2, target)
    assert lf.is_cuda and lf.shape == ()
    close(lf, lr, dtype, "loss")
    lr.backward()
    lf.backward()
    close(pred2.grad, pred.grad, dtype, "grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_cross_entropy_matches_torch(dtype):
    torch.manual_seed(2)
    lce = ft.LinearCrossEntropyLoss(32, 1000, bias=True, device=DEV, dtype=dtype,
                                    options=nn.LinearCrossEntropyOptions(batch_chunk_size=50))
    lin = nn.Linear(32, 1000, device=DEV, dtype=dtype)
    lin.load_state_dict(lce.linear.state_dict())
    x = torch.randn(120, 32, device=DEV, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    t = torch.randint(0, 1000, (120,), device=DEV)
    t[3] = -100
    lr, lf = nn.functional.cross_entropy(lin(x), t), lce(x2, t)
    close(lf, lr, dtype, "loss")
    lr.backward()
    lf.backward()
    close(x2.grad, x.grad, dtype, "dx", scale=10)
    close(lce.linear.weight.grad, lin.weight.grad, dtype, "dw", scale=10)
    close(lce.linear.bias.grad, lin.bias.grad, dtype, "db", scale=10)


def test_example_mlp_trains_like_torch_on_cuda():
    """The README's model, 20 Adam steps on the GPU: both loss curves agree."""
    torch.manual_seed(3)

    class Net(nn.Module):
        def __init__(self, lin):
            super().__init__()
            self.fc1, self.fc2 = lin(20, 10), lin(10, 1)

        def forward(self, x):
            return torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))

    a = Net(lambda i, o: nn.Linear(i, o, device=DEV))
    b = Net(lambda i, o: ft.Linear(i, o, device=DEV))
    b.load_state_dict(a.state_dict())
    x = torch.randn(256, 20, device=DEV)
    y = (x[:, :1] + x[:, 1:2] > 0).float()
    curves = []
    for net, crit in ((a, nn.BCELoss()), (b, ft.BCELoss())):
        opt = torch.optim.Adam(net.parameters())
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = crit(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves.append(np.array(losses))
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-5)
