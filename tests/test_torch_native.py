"""fastnn.torch's C++ autograd nodes (csrc/torch/native.cpp, fastnn/torch/_native.py).

Their values and gradients are checked bit for bit against the public API in
test_torch_fastpath.py and by gradcheck in test_torch_gradcheck.py (both run each path);
here: that they are the path taken, what autograd promises around them (double backward
refused, retain_graph, saved tensors freed with the graph, in-place checks), threads, and
the fallbacks (disabled, not buildable, calls they do not serve).
"""
import gc
import os
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastnn
import fastnn.torch as fnn
import fastnn.torch.functional as F
from fastnn.torch import _native as N

pytestmark = pytest.mark.skipif("cpp" not in fastnn.available_backends(), reason="the C++ backend is not built")


def _node(t):
    return t.grad_fn.name()


def test_the_cpp_nodes_serve_the_common_calls():
    assert N.status() == "ok", N.status()
    x = torch.randn(6, 5, requires_grad=True)
    w = torch.randn(4, 5, requires_grad=True)
    assert _node(F.linear(x, w, activation="gelu")) == "torch::autograd::CppNode<fastnn_torch::DenseFn>"
    assert _node(fnn.Linear(5, 3)(x)) == "torch::autograd::CppNode<fastnn_torch::DenseFn>"
    assert _node(F.silu(x)) == "torch::autograd::CppNode<fastnn_torch::ActFn>"
    assert _node(F.log_softmax(x, 1)) == "torch::autograd::CppNode<fastnn_torch::ActFn>"
    assert _node(F.mse_loss(x, torch.randn(6, 5))) == "torch::autograd::CppNode<fastnn_torch::LossFn>"
    assert _node(F.cross_entropy(x, torch.tensor([0, 1, 2, 3, 4, 0]))) == "torch::autograd::CppNode<fastnn_torch::LossFn>"
    assert _node(fnn.BCELoss()(torch.sigmoid(x), torch.rand(6, 5))) == "torch::autograd::CppNode<fastnn_torch::LossFn>"
    with torch.no_grad():  # no graph: the same kernels, no node
        assert F.linear(x, w, activation="relu").grad_fn is None


def test_calls_they_do_not_serve_take_the_python_functions():
    x = torch.randn(6, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    assert "LossFunction" in type(F.cross_entropy(x, labels, torch.rand(5)).grad_fn).__name__  # class weights
    t = torch.rand(6, 5, requires_grad=True)  # a target that needs a gradient
    assert "LossFunction" in type(F.mse_loss(x, t).grad_fn).__name__
    with fastnn.use_backend("numba"):  # another CPU backend is chosen: the Python path runs it
        assert "DenseFunction" in type(F.linear(x, torch.randn(3, 5)).grad_fn).__name__


def test_errors_still_come_from_the_public_api():
    with pytest.raises(ValueError, match="probabilities in"):
        F.binary_cross_entropy(torch.tensor([0.5, 1.5], requires_grad=True), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"class index 7, outside \[0, 3\)"):
        F.cross_entropy(torch.randn(2, 3, requires_grad=True), torch.tensor([1, 7]))
    with pytest.raises(ValueError, match=r"w has shape \(4, 5\) but x has 3 features"):
        F.linear(torch.randn(2, 3, requires_grad=True), torch.randn(4, 5))


def test_double_backward_raises_first_order_with_create_graph_is_right():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, dtype=torch.float64)
    t = torch.randn(4, 3, dtype=torch.float64)
    cases = [(lambda a: F.linear(a, w, activation="tanh").sum(), lambda a: torch.tanh(TF.linear(a, w)).sum()),
             (lambda a: F.gelu(a).sum(), lambda a: TF.gelu(a).sum()),
             (lambda a: F.mse_loss(a, t), lambda a: TF.mse_loss(a, t))]
    for fast, ref in cases:
        r, = torch.autograd.grad(ref(x), x)
        g, = torch.autograd.grad(fast(x), x, create_graph=True)
        torch.testing.assert_close(g.detach(), r, rtol=1e-12, atol=1e-12)
        # as once_differentiable: constant upstream gradients give a result without a graph
        # (differentiating it raises), ones that require grad give one that raises when used
        assert not g.requires_grad
        with pytest.raises(RuntimeError, match="does not require grad"):
            g.sum().backward()
        out = fast(x)
        g, = torch.autograd.grad(out, x, torch.ones_like(out, requires_grad=True), create_graph=True)
        torch.testing.assert_close(g.detach(), r, rtol=1e-12, atol=1e-12)
        with pytest.raises(RuntimeError, match="differentiate twice"):
            g.sum().backward()


def test_retain_graph_and_in_place_guard():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    y = F.linear(x, w, activation="sigmoid")  # saves its output y
    y.sum().backward(retain_graph=True)
    first = w.grad.clone()
    y.sum().backward()
    assert torch.equal(w.grad, 2 * first)
    h = x * 1.0
    y = F.linear(h, w, activation="relu")
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_saved_tensors_are_freed_with_the_graph():
    w = torch.randn(3, 5, requires_grad=True)
    h = torch.randn(4, 5, requires_grad=True) * 2.0  # a non-leaf saved by the node
    y = F.linear(h, w, activation="gelu")
    ref = weakref.ref(h)
    del h
    gc.collect()
    assert ref() is not None  # held by the node for backward
    del y
    gc.collect()
    assert ref() is None  # no cycle keeps it (the node saves its output y without a cycle too)


def _step(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 20, generator=g)
    w1 = torch.randn(10, 20, generator=g, requires_grad=True)
    w2 = torch.randn(1, 10, generator=g, requires_grad=True)
    p = F.linear(F.linear(x, w1, activation="relu"), w2, activation="sigmoid")
    loss = F.binary_cross_entropy(p, (torch.rand(32, 1, generator=g) > 0.5).float())
    loss.backward()
    return loss.detach(), w1.grad, w2.grad


def test_threads_get_the_serial_results():
    serial = {s: _step(s) for s in range(8)}
    out, errors = {}, []

    def run(s):
        try:
            for _ in range(30):
                out[s] = _step(s)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for s, ref in serial.items():
        for a, b in zip(out[s], ref):
            assert torch.equal(a, b)


def _python(code, **env):
    e = dict(os.environ, **env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


_PROBE = """
import warnings, torch, fastnn.torch.functional as F
from fastnn.torch import _native
x = torch.randn(4, 3, requires_grad=True)
y = F.linear(x, torch.randn(2, 3), activation="relu")
y.sum().backward()
print(_native.status()); print(type(y.grad_fn).__name__)
"""


def test_disabled_by_environment():
    r = _python(_PROBE, FASTNN_TORCH_NATIVE="0")
    assert r.stdout.split("\n")[:2] == ["disabled by FASTNN_TORCH_NATIVE=0", "DenseFunctionBackward"], r.stdout


def test_no_compiler_warns_once_and_runs_the_python_path(tmp_path):
    r = _python(_PROBE, CXX="/bin/false", FASTNN_CACHE_DIR=str(tmp_path))
    lines = r.stdout.strip().split("\n")
    assert lines[0].startswith("RuntimeError: compiling") and lines[-1] == "DenseFunctionBackward", r.stdout
    assert r.stderr.count("C++ autograd nodes unavailable") == 1, r.stderr
    assert not [p for p in tmp_path.rglob("*.so")]  # nothing half-built left behind


def test_large_outputs_come_from_the_buffer_cache_and_go_back():
    fastnn.empty_cache()
    x = torch.linspace(-4, 4, 1 << 19, dtype=torch.float32, requires_grad=True)  # 2 MiB
    y = F.gelu(x)
    view = y[100:200]
    expected = TF.gelu(x.detach()[100:200].double()).float()  # float64 reference (torch's float32 gelu
    # loses relative accuracy in the tail)
    del y  # the view keeps the block
    assert fastnn.cache_info()["cached_bytes"] == 0
    z = F.relu(-x)  # would get the block had it been released
    torch.testing.assert_close(view.detach(), expected, rtol=1e-6, atol=1e-7)
    del view
    assert fastnn.cache_info()["cached_bytes"] >= x.numel() * 4
    ptr_free = fastnn.cache_info()["hits"]
    w = F.silu(x)  # reuses it
    assert fastnn.cache_info()["hits"] == ptr_free + 1
    torch.testing.assert_close(w, TF.silu(x.double()).float(), rtol=1e-6, atol=1e-7)
    w.sum().backward()  # a gradient in pooled memory too, accumulated by autograd
    torch.testing.assert_close(x.grad, torch.autograd.grad(TF.silu(x).sum(), x)[0], rtol=1e-5, atol=1e-6)
    del z, w
    fastnn.empty_cache()


# ---- threads: inside the nodes the kernels run on torch's intra-op pool -------------------

_THREADS_PROBE = """
import sys, numpy as np, torch, fastnn, fastnn.torch.functional as F
from fastnn._backends import cpp
torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(0)
x = torch.randn(700, 600, generator=g, requires_grad=True)
w = torch.randn(500, 600, generator=g, requires_grad=True)
b = torch.randn(500, generator=g, requires_grad=True)
before = cpp._C._thread_counters()
y = F.linear(x, w, b, activation="gelu")
(y * torch.linspace(-1, 1, 500)).sum().backward()
inside = cpp._C._thread_counters()
fastnn.dense_forward(x.detach().numpy(), w.detach().numpy(), None, "relu")  # the public API, outside a node
after = cpp._C._thread_counters()
print([inside[0] - before[0], inside[1] - before[1], after[1] - inside[1]])
np.save(sys.argv[2], np.concatenate([t.detach().numpy().ravel() for t in (y, x.grad, w.grad, b.grad)]))
"""


@pytest.mark.parametrize("share,torch_threads", [("1", 2), ("1", 1), ("0", 2)])
def test_kernels_run_on_torch_threads_inside_the_nodes_only(tmp_path, share, torch_threads):
    """With 2 torch threads the nodes hand fastnn's parallel parts and OpenBLAS's jobs to
    torch's pool (counted by _thread_counters); with 1 torch thread, or
    FASTNN_TORCH_SHARED_THREADS=0, they do not. Outside a node, the numpy API on the
    thread that loaded the extension runs there too (set_default_executor, parallel.h). The
    bits never depend on it."""
    out = tmp_path / "r.npy"
    env = dict(os.environ, FASTNN_TORCH_SHARED_THREADS=share, FASTNN_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", _THREADS_PROBE, str(torch_threads), str(out)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    runs, callbacks, outside = eval(r.stdout.strip().split("\n")[-1])
    if share == "1" and torch_threads > 1:
        assert runs > 0 and callbacks > 0, r.stdout  # GEMMs of 700x600x500 are threaded by OpenBLAS
        assert outside > 0  # the numpy API on this thread too, once the extension is loaded (parallel.h)
    else:
        assert runs == 0 and callbacks == 0, r.stdout
        assert outside == 0
    got = torch.from_numpy(np.load(out))
    ref_path = tmp_path / "ref.npy"
    r = subprocess.run([sys.executable, "-c", _THREADS_PROBE, "2", str(ref_path)], capture_output=True, text=True,
                       env=dict(os.environ, FASTNN_TORCH_SHARED_THREADS="0", FASTNN_NUM_THREADS="1"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # the bits of OpenBLAS's own threads and of a single-threaded fastnn pool (OpenBLAS's
    # GEMM partition is the same whichever threads run its jobs)
    assert torch.equal(got, torch.from_numpy(np.load(ref_path)))


def test_nodes_from_many_threads_share_torch_pool_safely():
    """Python threads calling the nodes at once: each gets its own OpenMP team (or runs
    serially inside one); every result equals the single-threaded one."""
    torch.manual_seed(0)
    x = torch.randn(300, 400)
    w = torch.randn(350, 400)
    ref = F.linear(x, w, activation="relu")
    errors = []

    def work():
        for _ in range(5):
            xi = x.clone().requires_grad_(True)
            y = F.linear(xi, w, activation="relu")
            y.sum().backward()
            if not torch.equal(y, ref):
                errors.append("forward differs")

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
