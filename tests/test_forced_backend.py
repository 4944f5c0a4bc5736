"""A forced backend serves every op family on inputs of its device, whichever way it is
forced (use_backend, set_backend, FASTNN_BACKEND): the backend's own functions run (a spy
counts them) and the results are the automatic choice's.

"fake_cuda" is a CUDA backend registered here: DEVICE "cuda", inputs that say they live on
a GPU (a numpy subclass with a __cuda_array_interface__), and its work done by the CPU
emulator of fastnn's CUDA kernels (backend cupy_emu, tests/cuda_emu) where that builds,
else by the C++ backend. It is what catches a front door that picks a backend before it
looks at the inputs (a forced CUDA backend once made every Dense call raise "runs on cuda
but the inputs are on cpu", even for CUDA inputs).
"""
import sys
import types

import numpy as np
import pytest

import fastnn
from fastnn import _dispatch

FAKE = "fake_cuda"


class CudaArray(np.ndarray):
    """A numpy array that says it lives on a GPU (device_of reads __cuda_array_interface__)."""

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ctypes.data, False), "version": 3}


def _on_gpu(a):
    return None if a is None else np.asarray(a).view(CudaArray)


FUNCS = ("activation_forward", "activation_backward", "dense_forward", "dense_backward", "loss_forward",
         "loss_backward", "class_loss_forward", "class_loss_backward", "dense_cross_entropy",
         "dense_forward_plain", "dense_backward_plain")


def _spied(name, inner, device, counts):
    """A module posing as backend `name` on `device`: every kernel function of `inner`,
    counted."""
    mod = types.ModuleType(f"_test_backend_{name}")
    mod.DEVICE = device
    mod.xp = np
    mod.unavailable = lambda: None
    for f in FUNCS:
        fn = getattr(inner, f, None)
        if fn is None:
            continue

        def wrap(*a, _fn=fn, _f=f, **k):
            counts[_f] = counts.get(_f, 0) + 1
            out = _fn(*a, **k)
            return _outputs_on(device, out)
        setattr(mod, f, wrap)
    return mod


def _outputs_on(device, out):
    """A CUDA backend's outputs live on the GPU: ndarrays (also inside tuples) become CudaArrays."""
    if device == "cpu":
        return out
    if isinstance(out, tuple):
        return tuple(_outputs_on(device, o) for o in out)
    return out.view(CudaArray) if isinstance(out, np.ndarray) else out


@pytest.fixture
def counts():
    return {}


@pytest.fixture
def spy(counts, monkeypatch):
    """Registers spied twins of the available backends under their own names and the fake
    CUDA backend; returns the list of names to force."""
    names = []
    for name in fastnn.available_backends():
        inner = _dispatch._load(name)
        if inner.DEVICE != "cpu":
            continue
        mod = _spied(name, inner, "cpu", counts)
        monkeypatch.setitem(_dispatch._loaded, name, mod)
        names.append(name)
    inner = _dispatch._load("cupy_emu") if "cupy_emu" in _dispatch._MODULES else None
    if inner is None or isinstance(inner, str):
        inner = _dispatch._load("cpp")
    sys.modules[f"_test_backend_{FAKE}"] = fake = _spied(FAKE, inner, "cuda", counts)
    monkeypatch.setitem(_dispatch._MODULES, FAKE, fake.__name__)
    monkeypatch.setitem(_dispatch._loaded, FAKE, fake)
    monkeypatch.setattr(_dispatch, "_auto", {})
    names.append(FAKE)
    yield names
    sys.modules.pop(fake.__name__, None)


def _inputs(backend):
    rng = np.random.default_rng(5)
    dev = _on_gpu if backend == FAKE else (lambda a: a)
    d = {
        "x": rng.standard_normal((6, 5)), "w": rng.standard_normal((4, 5)), "b": rng.standard_normal(4),
        "dy": rng.standard_normal((6, 4)), "p": rng.standard_normal((6, 4)), "t": rng.standard_normal((6, 4)),
        "lab": rng.integers(0, 4, 6), "g": rng.standard_normal((6, 4)),
    }
    return {k: dev(v) for k, v in d.items()}


def _family_calls(a):
    """op family -> a function of the inputs running its forward and backward."""
    def act():
        y = fastnn.activation_forward(a["x"], "gelu")
        return y, fastnn.activation_backward(a["x"], "gelu", x=a["x"])

    def dense():
        y, z = fastnn.dense_forward(a["x"], a["w"], a["b"], "gelu")
        return (y,) + fastnn.dense_backward(a["dy"], a["x"], a["w"], y, z, "gelu")

    def dense_io():
        w = np.ascontiguousarray(np.asarray(a["w"]).T)
        w = w.view(CudaArray) if isinstance(a["w"], CudaArray) else w
        y, z = fastnn.dense_forward(a["x"], w, None, "relu", weight_layout="io")
        return (y,) + fastnn.dense_backward(a["dy"], a["x"], w, y, z, "relu", weight_layout="io")

    def loss():
        return (fastnn.loss_forward(a["p"], a["t"], "huber"), fastnn.loss_backward(a["p"], a["t"], "huber"))

    def class_loss():
        return (fastnn.loss_forward(a["p"], a["lab"], "cross_entropy"),
                fastnn.loss_backward(a["p"], a["lab"], "cross_entropy"))

    def dense_ce():
        loss, grads = fastnn.dense_cross_entropy(a["x"], a["w"], a["b"], a["lab"])
        return (loss,) + grads

    return {"activation": act, "dense": dense, "dense_io": dense_io, "loss": loss, "class_loss": class_loss,
            "dense_cross_entropy": dense_ce}


FAMILIES = ("activation", "dense", "dense_io", "loss", "class_loss", "dense_cross_entropy")
EXPECT = {"activation": "activation_", "dense": "dense_", "dense_io": "dense_", "loss": "loss_",
          "class_loss": "class_loss_", "dense_cross_entropy": "dense_cross_entropy"}


@pytest.mark.parametrize("how", ["use_backend", "set_backend", "env"])
@pytest.mark.parametrize("family", FAMILIES)
def test_forced_backend_serves_every_op_family(spy, counts, family, how, monkeypatch):
    expected = [np.asarray(r) for r in _family_calls(_inputs("cpp"))[family]()]
    for name in spy:
        counts.clear()
        fn = _family_calls(_inputs(name))[family]
        if how == "use_backend":
            with fastnn.use_backend(name):
                got = fn()
        elif how == "set_backend":
            fastnn.set_backend(name)
            try:
                got = fn()
            finally:
                fastnn.set_backend(None)
        else:
            monkeypatch.setenv("FASTNN_BACKEND", name)
            got = fn()
            monkeypatch.delenv("FASTNN_BACKEND")
        ran = [f for f in counts if f.startswith(EXPECT[family])]
        assert ran, f"{family} forced to {name} by {how}: the backend's kernels never ran ({counts})"
        for e, g in zip(expected, got):
            np.testing.assert_allclose(np.asarray(g), e, rtol=1e-12, atol=1e-14, err_msg=f"{family} on {name}")


def test_forced_cuda_backend_refuses_cpu_inputs(spy):
    """A forced backend that cannot serve the inputs' device raises; nothing falls back."""
    a = _inputs("cpp")
    with fastnn.use_backend(FAKE):
        with pytest.raises(RuntimeError, match="runs on cuda but the inputs are on cpu"):
            fastnn.dense_forward(a["x"], a["w"], a["b"], "relu")
        with pytest.raises(RuntimeError, match="runs on cuda but the inputs are on cpu"):
            fastnn.activation_forward(a["x"], "relu")


def test_mixed_devices_name_the_arguments(spy):
    a = _inputs("cpp")
    with pytest.raises(ValueError, match="x on cpu, w on cuda"):
        fastnn.dense_forward(a["x"], _on_gpu(a["w"]), None)
