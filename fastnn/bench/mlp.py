"""End to end: one training step of an MLP in torch, stock vs fastnn.torch.patch(model).

    model  784 -> 1024 -> relu -> 1024 -> relu -> 10, batch 256, float32
    step   model.zero_grad(set_to_none=True); loss = CrossEntropyLoss()(model(x), t);
           loss.backward()          (no optimizer: the update is the same for both)
Impls: "torch" (stock modules), "torch.compile" (torch.compile(model), the loss eager;
its backward compiled by AOTAutograd), "fastnn.torch.patch" (the same model, its
Linear+ReLU pairs and the loss replaced by fastnn's twins), "numpy" (a hand-written
float32 step). Each returns (loss, dW1, db1, dW2, db2, dW3, db3).

FLOPs per step: the forward's products, 2*B*sum(I*O), plus dW of every layer
(2*B*I*O each) and dx of every layer but the first (x needs no gradient):
6*B*(1024*1024 + 1024*10) + 4*B*784*1024 = 2.448 GFLOP at B = 256 (issue 6's ~2.45).
"""

import copy

import numpy as np

from .dense_ce import mean_cross_entropy
from .timing import Case, Impl

OP = "mlp_train_step"
MODE = "forward+backward"
SIZES = (784, 1024, 1024, 10)
BATCH = 256


def specs(quick):
    return [(OP, MODE, (BATCH, *SIZES))]


def flops(batch, sizes):
    layers = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * batch * i * o for i, o in layers)
    dw = sum(2 * batch * i * o for i, o in layers)
    dx = sum(2 * batch * i * o for i, o in layers[1:])
    return fwd + dw + dx


def make_inputs(batch, sizes, dtype, seed):
    """x, targets and [(W, b)] on power-of-two grids, so every hidden pre-activation
    is exact in float32 and never 0 (odd multiples of 1/512 and 1/65536): each
    implementation puts the relu kink on the same side for every element, and the
    float64 reference applies. Weights of magnitude <= 1/32 keep the logits O(1).
    Speed does not depend on the values."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(-2, 3, (batch, sizes[0])) / 4).astype(dtype)
    t = rng.integers(0, sizes[-1], batch, dtype=np.int64)
    offsets = [1 / 512, 1 / 65536, 1 / 64]
    params = []
    for (i, o), off in zip(zip(sizes[:-1], sizes[1:]), offsets):
        w = (rng.integers(-2, 3, (o, i)) / 64).astype(dtype)
        b = ((2 * rng.integers(-4, 5, o) + 1) * off).astype(dtype)
        params.append((w, b))
    return x, t, params


def numpy_step(x, t, params):
    """(loss, dW1, db1, ...) of mean cross-entropy after relu hidden layers."""
    hs, h = [x], x
    for k, (w, b) in enumerate(params):
        h = h @ w.T + b
        if k < len(params) - 1:
            h = np.maximum(h, 0)
        hs.append(h)
    loss, g = mean_cross_entropy(hs[-1], t)
    grads = []
    for k in range(len(params) - 1, -1, -1):
        w, _ = params[k]
        grads = [g.T @ hs[k], g.sum(axis=0)] + grads
        if k > 0:
            g = (g @ w) * (hs[k] > 0)
    return (np.asarray(loss), *grads)


def _torch_model(fw, params):
    nn = fw.torch.nn
    layers = []
    for k, (w, b) in enumerate(params):
        lin = nn.Linear(w.shape[1], w.shape[0], dtype=fw.torch.from_numpy(w).dtype)
        with fw.torch.no_grad():
            lin.weight.copy_(fw.torch.from_numpy(w))
            lin.bias.copy_(fw.torch.from_numpy(b))
        layers.append(lin)
        if k < len(params) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _step_impl(fw, name, model, loss_fn, xt, tt):
    params = list(model.parameters())

    def step():
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), tt)
        loss.backward()
        return (loss, *[p.grad for p in params])
    return Impl(name, step)


def _torch_impls(fw, x, t, params):
    torch = fw.torch
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    stock = _torch_model(fw, params)
    impls = [_step_impl(fw, "torch", stock, torch.nn.CrossEntropyLoss(), xt, tt)]
    compiled = fw.torch_compile(copy.deepcopy(stock))  # shares its module's parameters
    if compiled is not None:
        impls.append(_step_impl(fw, "torch.compile", compiled, torch.nn.CrossEntropyLoss(),
                                xt, tt))
    if fw.fastnn is not None:
        try:
            import fastnn.torch as ft
            patched = ft.patch(copy.deepcopy(stock))
            loss_fn = ft.patch(torch.nn.CrossEntropyLoss())
            impls.append(_step_impl(fw, "fastnn.torch.patch", patched, loss_fn, xt, tt))
        except Exception as exc:
            impls.append(Impl("fastnn.torch.patch", None,
                              error=f"patch raised {type(exc).__name__}: {exc}"))
    return impls


def make_case(spec, dtype, fw, seed=0):
    op, mode, shape = spec
    batch, sizes = shape[0], shape[1:]
    x, t, params = make_inputs(batch, sizes, dtype, seed)
    def reference():
        return numpy_step(x.astype(np.float64), t,
                          [(w.astype(np.float64), b.astype(np.float64)) for w, b in params])
    impls = _torch_impls(fw, x, t, params) if fw.torch is not None else []
    impls.append(Impl("numpy", lambda: numpy_step(x, t, params)))
    return Case(op=op, mode=mode, shape=shape, dtype=dtype, unit="GFLOP/s",
                work=flops(batch, sizes), ceiling="gemm", reference=reference,
                impls=impls)
