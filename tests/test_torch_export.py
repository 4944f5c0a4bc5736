"""torch.export and AOTInductor packages that contain fastnn ops, run in a fresh process.

A fresh process finds the ops by name: `import fastnn.torch` defines fastnn::* (their
schemas, fakes and Python kernels), and the first CPU call loads the C++ kernels. Each
test saves a program here, loads and runs it in a new interpreter at batch sizes other
than the one it was exported with (the batch dimension is dynamic), and compares with
this process's eager fastnn results, which test_torch_modules.py checks against torch.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import fastnn
import fastnn.torch as fnn


def _model():
    torch.manual_seed(0)
    return nn.Sequential(fnn.Linear(8, 16, activation="gelu", approximate="tanh"), fnn.Linear(16, 16), fnn.SiLU(),
                         fnn.Linear(16, 4), fnn.LogSoftmax(dim=-1)).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, 8, generator=g) for n in (3, 11)]


def _run_fresh(tmp_path, body):
    """Run `body` in a new interpreter with xs (the inputs) and out_path defined; return what it saved."""
    out = tmp_path / "out.pt"
    xs = tmp_path / "xs.pt"
    torch.save(_inputs(), xs)
    code = textwrap.dedent(f"""
        import torch
        import fastnn.torch  # defines fastnn::*; loads their C++ kernels on first use
        xs, out_path = torch.load({str(xs)!r}), {str(out)!r}
    """) + textwrap.dedent(body)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))  # this fastnn, not another
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return torch.load(out)


def _check(got):
    model = _model()
    with torch.no_grad():
        for y, x in zip(got, _inputs()):
            torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-6)


def _export():
    batch = torch.export.Dim("batch", min=2, max=1024)
    return torch.export.export(_model(), (torch.randn(5, 8),), dynamic_shapes=({0: batch},))


@pytest.mark.slow  # a fresh interpreter imports torch (~10 s on 2 busy cores)
def test_exported_program_saved_and_run_in_a_fresh_process(tmp_path):
    ep = _export()
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"fastnn.dense.default", "fastnn.activation.default"} <= targets
    path = str(tmp_path / "model.pt2")
    torch.export.save(ep, path)
    got = _run_fresh(tmp_path, f"""
        ep = torch.export.load({path!r})
        torch.save([ep.module()(x) for x in xs], out_path)
    """)
    _check(got)


@pytest.mark.slow  # AOTInductor compiles a C++ model (~30 s on 2 cores)
def test_aoti_package_runs_in_a_fresh_process(tmp_path):
    path = torch._inductor.aoti_compile_and_package(_export(), package_path=str(tmp_path / "model.pt2"))
    got = _run_fresh(tmp_path, f"""
        from fastnn.torch import _native
        runner = torch._inductor.aoti_load_package({path!r})
        out = [runner(x) for x in xs]
        # the package's first fastnn op loaded the extension, whose C++ kernels then ran
        assert _native.tried() and _native.status() == "ok", _native.status()
        torch.save(out, out_path)
    """)
    _check(got)
