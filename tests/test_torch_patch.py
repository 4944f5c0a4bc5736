"""fastnn.torch.patch: a model mixing Linear, activations and a loss gives the same
outputs and gradients after patching, with the same Parameter objects; fusion rules."""
import copy

import pytest
import torch
from torch import nn

import fastnn.torch as fnn


class Block(nn.Module):
    """Not a Sequential: its Linear + activation are swapped but not fused."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 16)
        self.act = nn.SiLU()
        self.heads = nn.ModuleList([nn.Linear(16, 8), nn.Linear(16, 8)])

    def forward(self, x):
        h = self.act(self.proj(x)) + x
        return torch.cat([head(h) for head in self.heads], -1)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        shared = nn.Linear(16, 16)
        self.features = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), shared, nn.Tanh(), shared, nn.GELU("tanh"),
                                      nn.Linear(16, 16), nn.LeakyReLU(0.1, inplace=True))
        self.block = Block()
        self.head = nn.Sequential(nn.Linear(16, 5), nn.LogSoftmax(dim=-1))
        self.probs = nn.Softmax(dim=1)
        self.loss = nn.NLLLoss()

    def forward(self, x, y):
        logp = self.head(self.block(self.features(x)))
        return self.loss(logp, y) + self.probs(logp).pow(2).mean()


def _run(model, x, y):
    model.zero_grad()
    out = model(x, y)
    out.backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_patch_keeps_outputs_gradients_and_parameters():
    torch.manual_seed(0)
    model = Model().double()
    x, y = torch.randn(12, 10, dtype=torch.float64), torch.randint(0, 5, (12,))
    ref, ref_grads = _run(copy.deepcopy(model), x, y)
    params = dict(model.named_parameters())
    keys = list(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # built before patching: must keep working

    patched = fnn.patch(model, inplace=True)
    assert patched is model and list(model.state_dict()) == keys
    assert all(params[n] is p for n, p in model.named_parameters())
    got, grads = _run(model, x, y)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    for n, g in grads.items():
        torch.testing.assert_close(g, ref_grads[n], rtol=1e-12, atol=1e-14, msg=lambda m: f"{n}: {m}")
    before = model.head[0].weight.detach().clone()
    opt.step()
    assert not torch.equal(model.head[0].weight, before)


def test_patch_swaps_and_fuses_as_documented():
    model = fnn.patch(Model())
    f = model.features
    assert type(f[0]) is fnn.Linear and f[0].activation == "relu" and type(f[1]) is nn.Identity
    assert type(f[2]) is fnn.Linear and f[2].activation is None  # used twice: not fused
    assert f[2] is f[4] and type(f[3]) is fnn.Tanh and type(f[5]) is fnn.GELU
    assert f[6].activation == "leaky_relu" and f[6].act_params == {"negative_slope": 0.1}
    assert type(model.block.proj) is fnn.Linear and model.block.proj.activation is None
    assert type(model.block.act) is fnn.SiLU and type(model.block.heads[1]) is fnn.Linear
    assert model.head[0].activation == "log_softmax" and model.head[0].act_params == {"axis": -1}
    assert type(model.probs) is fnn.Softmax and model.probs.dim == 1
    assert type(model.loss) is fnn.NLLLoss


def test_patch_leaves_subclasses_hooked_and_non_last_dim_alone():
    class MyLinear(nn.Linear):
        pass

    hooked = nn.Linear(4, 4)
    hooked.register_forward_hook(lambda m, i, o: None)
    seq = nn.Sequential(MyLinear(4, 4), nn.ReLU(), hooked, nn.ReLU(), nn.Linear(4, 4), nn.Softmax(dim=1))
    fnn.patch(seq, inplace=True)
    assert type(seq[0]) is MyLinear and type(seq[1]) is fnn.ReLU
    assert type(seq[2]) is fnn.Linear and seq[2].activation is None and seq[2]._forward_hooks
    assert seq[4].activation is None and type(seq[5]) is fnn.Softmax


def test_patch_single_modules_and_the_issue_model():
    twin = fnn.patch(nn.BCELoss(reduction="sum"))
    assert type(twin) is fnn.BCELoss and twin.reduction == "sum"
    lin = nn.Linear(3, 2)
    assert fnn.patch(lin, inplace=True).weight is lin.weight

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(20, 10)
            self.fc2 = nn.Linear(10, 1)

        def forward(self, x):
            return torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))

    net = Net()
    x = torch.randn(8, 20)
    ref = net(x)
    fnn.patch(net, inplace=True)
    assert type(net.fc1) is fnn.Linear
    torch.testing.assert_close(net(x), ref, rtol=1e-5, atol=1e-6)


def test_patched_module_train_eval_flags_survive():
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU()).eval()
    fnn.patch(seq, inplace=True)
    assert not seq[0].training and not seq.training


def test_patch_many_models_keeps_structure():
    """patch() tracks modules by id(); replaced modules must not let new ones reuse an id
    (this failed about one time in three before the originals were kept alive)."""
    for _ in range(30):
        model = Model()
        keys, n = list(model.state_dict()), len(list(model.modules()))
        fnn.patch(model, inplace=True)
        assert list(model.state_dict()) == keys and len(list(model.modules())) == n


def test_patch_default_returns_a_patched_copy_and_leaves_the_model_alone():
    """inplace=False, the default (torch's convention for model-rewriting APIs): the model
    keeps its torch modules and Parameters; the copy is patched, equal in value."""
    torch.manual_seed(5)
    model = Model().double()
    x, y = torch.randn(12, 10, dtype=torch.float64), torch.randint(0, 5, (12,))
    ref, ref_grads = _run(model, x, y)
    params = dict(model.named_parameters())
    fast = fnn.patch(model)
    assert fast is not model and type(model.features[0]) is nn.Linear and type(model.loss) is nn.NLLLoss
    assert type(model.features[1]) is nn.ReLU and all(params[n] is p for n, p in model.named_parameters())
    assert type(fast.features[0]) is fnn.Linear and type(fast.loss) is fnn.NLLLoss
    assert list(fast.state_dict()) == list(model.state_dict())
    assert all(p is not params[n] and torch.equal(p, params[n]) for n, p in fast.named_parameters())
    got, grads = _run(fast, x, y)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    for n, g in grads.items():
        torch.testing.assert_close(g, ref_grads[n], rtol=1e-12, atol=1e-14, msg=lambda m: f"{n}: {m}")
    with pytest.raises(TypeError, match="inplace must be True or False"):
        fnn.patch(model, inplace="yes")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fnn.patch(lambda x: x)
