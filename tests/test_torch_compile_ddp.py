"""fastnn.torch under torch.compile, torch.export and DistributedDataParallel.

Compile: the fastnn ops are torch.library custom ops, so dynamo captures a whole model
in one graph (fullgraph=True fails on any graph break) whose forward and backward call
only fastnn ops; the compiled model gives eager's values and gradients exactly (the same
kernels on the same inputs), with the aot_eager backend and with inductor.
DDP: 2 processes (gloo, CPU) on halves of a batch give the single-process gradients.
"""
import os
import socket

import torch
import torch.multiprocessing as mp
from functorch.compile import make_boxed_func
from torch import nn
from torch._dynamo.backends.common import aot_autograd

import fastnn.torch as fnn


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(fnn.Linear(8, 16, activation="gelu", approximate="tanh"), fnn.Linear(16, 16), fnn.ReLU(),
                         fnn.Linear(16, 4), fnn.LogSoftmax(dim=-1)).double()


def loss_and_grads(model, step, x, y):
    model.zero_grad()
    loss = step(x, y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def recording_backend(graphs):
    """An AOTAutograd backend that runs the graphs as they are and records their ops."""
    def compiler(gm, example_inputs):
        graphs.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        return make_boxed_func(gm.forward)

    return aot_autograd(fw_compiler=compiler, bw_compiler=compiler)


def test_compile_one_graph_of_fastnn_ops_same_results():
    torch._dynamo.reset()
    model, loss_fn = make_model(), fnn.NLLLoss(weight=torch.rand(4, dtype=torch.float64) + 0.5)
    step = lambda x, y: loss_fn(model(x), y)  # noqa: E731
    graphs = []
    compiled = torch.compile(step, backend=recording_backend(graphs), fullgraph=True)
    for n in (6, 9):  # a second batch size: recompiled or dynamic, same results either way
        x, y = torch.randn(n, 8, dtype=torch.float64), torch.randint(0, 4, (n,))
        ref, ref_grads = loss_and_grads(model, step, x, y)
        got, grads = loss_and_grads(model, compiled, x, y)
        torch.testing.assert_close(got, ref, rtol=1e-13, atol=0)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-13, atol=1e-15)
    forward, backward = graphs[0], graphs[1]
    assert {"fastnn.dense.default", "fastnn.activation.default", "fastnn.loss.default"} <= forward
    assert {"fastnn.dense_backward.default", "fastnn.activation_backward.default",
            "fastnn.loss_backward.default"} <= backward
    assert not any(op.startswith("aten.") and op != "aten.detach.default" for op in forward | backward), \
        forward | backward


def test_compile_functional_with_torch_conventions():
    """Promotion, broadcasting, class axis 1 and in-place activations trace too (the
    size-mismatch UserWarning of mse/l1/huber/smooth_l1 breaks the graph, as torch's own)."""
    torch._dynamo.reset()

    def f(x, t, labels):
        h = fnn.functional.relu(x * 1.0, inplace=True)
        return (fnn.functional.poisson_nll_loss(h.sum(1), t) + fnn.functional.l1_loss(x, x.detach().double() / 2)
                + fnn.functional.cross_entropy(x, labels, label_smoothing=0.1) + fnn.functional.softmax(x, 1).sum())

    x = torch.randn(3, 4, 5, requires_grad=True)
    t, labels = torch.rand(5, dtype=torch.float64), torch.randint(0, 4, (3, 5))
    ref = f(x, t, labels)
    (gref,) = torch.autograd.grad(ref, x)
    got = torch.compile(f, backend="aot_eager", fullgraph=True)(x, t, labels)
    (g,) = torch.autograd.grad(got, x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g, gref, rtol=1e-6, atol=1e-6)


def test_export_sees_fastnn_ops():
    model = make_model().eval()
    x = torch.randn(5, 8, dtype=torch.float64)
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "fastnn.dense.default" in targets and "fastnn.activation.default" in targets
    torch.testing.assert_close(ep.module()(x), model(x), rtol=0, atol=0)


def test_compile_inductor_trains_like_eager():
    torch._dynamo.reset()
    model, compiled_model = make_model(1), make_model(1)
    compiled = torch.compile(compiled_model)
    x, y = torch.randn(16, 8, dtype=torch.float64), torch.randint(0, 4, (16,))
    loss_fn = fnn.NLLLoss()
    for _ in range(2):
        ref, ref_grads = loss_and_grads(model, lambda x, y: loss_fn(model(x), y), x, y)
        got, grads = loss_and_grads(compiled_model, lambda x, y: loss_fn(compiled(x), y), x, y)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-14)


# ---- DistributedDataParallel ------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(16, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (16,), generator=g)


def _ddp_worker(rank, world, port, out_path):
    import faulthandler  # noqa: PLC0415 - in the spawned process
    from datetime import timedelta  # noqa: PLC0415

    import torch.distributed as dist  # noqa: PLC0415

    faulthandler.dump_traceback_later(60, exit=True)  # a stuck worker fails the test, with its stack
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        model = nn.parallel.DistributedDataParallel(make_model())
        x, y = _data()
        shard = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        fnn.NLLLoss()(model(x[shard]), y[shard]).backward()
        if rank == 0:
            torch.save([p.grad for p in model.parameters()], out_path)
        del model  # DDP's reducer goes before its process group; no rank leaves early
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_single_process(tmp_path):
    out = str(tmp_path / "grads.pt")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_ddp_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    model = make_model()
    x, y = _data()
    fnn.NLLLoss()(model(x), y).backward()
    ddp_grads = torch.load(out)
    for g, p in zip(ddp_grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-14)
