"""fastnn.torch.LinearCrossEntropyLoss / functional.linear_cross_entropy against torch's
F.cross_entropy(F.linear(x, W, b), target): values and the gradients of x, W, b."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastnn
import fastnn.torch as fnn

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}


def _inputs(dtype, n=37, h=9, c=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=g, dtype=dtype)
    w = torch.randn(c, h, generator=g, dtype=dtype) / 3
    b = torch.randn(c, generator=g, dtype=dtype)
    t = torch.randint(0, c, (n,), generator=g)
    t[3] = -100
    return x, w, b, t


def _grads(fn, x, w, b, t, upstream):
    leaves = [a.clone().requires_grad_(True) for a in (x, w, b)]
    out = fn(*leaves, t)
    out.backward(upstream)
    return out.detach(), [a.grad for a in leaves]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_matches_linear_then_cross_entropy(backend, dtype, reduction, ls):
    x, w, b, t = _inputs(dtype)
    up = torch.randn(x.shape[0], dtype=dtype) if reduction == "none" else torch.tensor(0.7, dtype=dtype)
    ref_out, ref_g = _grads(lambda x, w, b, t: F.cross_entropy(F.linear(x, w, b), t, reduction=reduction,
                                                               label_smoothing=ls), x, w, b, t, up)
    with fastnn.use_backend(backend):
        out, g = _grads(lambda x, w, b, t: fnn.functional.linear_cross_entropy(
            x, w, b, t, reduction=reduction, label_smoothing=ls, chunk_size=8), x, w, b, t, up)
    torch.testing.assert_close(out, ref_out, **TOL[dtype])
    for got, ref in zip(g, ref_g):
        torch.testing.assert_close(got, ref, **TOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck(reduction):
    x, w, b, t = _inputs(torch.float64, n=6, h=4, c=3)
    args = [a.clone().requires_grad_(True) for a in (x, w, b)]
    assert torch.autograd.gradcheck(
        lambda x, w, b: fnn.functional.linear_cross_entropy(x, w, b, t, reduction=reduction, label_smoothing=0.2),
        args)


def test_module_is_state_dict_compatible_with_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(9, 6)
    mod = fnn.LinearCrossEntropyLoss(9, 6, ignore_index=-100)
    mod.load_state_dict(lin.state_dict())
    x, _, _, t = _inputs(torch.float32)
    torch.testing.assert_close(mod(x, t), F.cross_entropy(lin(x), t), rtol=1e-5, atol=1e-6)
    assert set(mod.state_dict()) == {"weight", "bias"}
    lin.load_state_dict(mod.state_dict())
    nobias = fnn.LinearCrossEntropyLoss(9, 6, bias=False)
    assert nobias.bias is None and set(nobias.state_dict()) == {"weight"}
