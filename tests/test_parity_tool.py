"""python -m fastnn.parity: the default set passes on this machine (in-process, every
available backend including the test-only CUDA emulator "cupy_emu"), the command line
works in a fresh process, and a planted wrong kernel is reported with its worst element
and makes the exit status 1.

The default set runs here in full (without the framework layer, which starts one Keras
subprocess per backend and is covered by a subprocess test of its own only where keras
imports quickly enough: see test_frameworks_layer)."""
import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np

import pytest

import fastnn
from fastnn import _dispatch, parity
from fastnn.parity import _frameworks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANTED = "planted"
PLANTED_FLAT = 40        # the element the planted kernel gets wrong


@pytest.mark.slow
def test_default_set_passes(tmp_path, capsys):
    out = {k: str(tmp_path / f"p.{k}") for k in ("json", "csv", "html")}
    rc = parity.main(["--no-frameworks", "--quiet", "--json", out["json"], "--csv", out["csv"], "--html", out["html"]])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert f"reference {parity.reference_name()}" in text and "verdict: ok" in text
    report = json.load(open(out["json"]))
    rows = report["rows"]
    assert {r["backend"] for r in rows} == set(fastnn.available_backends())
    assert {r["dtype"] for r in rows} == set(parity.DTYPES)
    covered = {r["op"] for r in rows}
    assert set(fastnn.ACTIVATIONS) <= covered and set(fastnn.LOSSES) <= covered
    assert "dense_cross_entropy" in {r["family"] for r in rows}
    assert {r["option"] for r in rows if r["family"] == "dense"} == {"oi", "io"}
    assert all(r["verdict"] == "ok" and r["ulps"] <= r["bound"] for r in rows)
    assert any(r["n"] == 0 for r in rows)  # empty batches are part of the set
    assert open(out["csv"]).readline().startswith("family,op,params")
    assert "<table" in open(out["html"]).read()


def test_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "fastnn.parity", "--ops", "hard_sigmoid,huber", "--backends", "cpp",
                        "--no-frameworks"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "reference torch" in p.stdout and "verdict: ok" in p.stdout
    assert "%" in p.stderr  # the progress bar
    bad = subprocess.run([sys.executable, "-m", "fastnn.parity", "--ops", "nope"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "unknown op(s) nope" in bad.stderr
    with pytest.raises(ValueError, match=r"--backends: not available here: nope \(unknown backend\)"):
        parity.run(ops=["relu"], backends=["nope"])
    with pytest.raises(ValueError, match="--dtypes: unknown dtype"):
        parity.run(ops=["relu"], dtypes=["float8"])
    assert {"float16", "bfloat16"} <= set(parity.DTYPES)
    rows = parity.run(ops=["gelu"], backends=["numba"], dtypes=["float16", "bfloat16"])
    assert {r["dtype"] for r in rows} == {"float16", "bfloat16"}
    assert all(r["verdict"] == "ok" and r["ulps"] <= r["bound"] for r in rows)


@pytest.fixture
def planted(monkeypatch):
    """Backend "planted": the cpp backend with softsign's forward wrong by 4x its bound at
    one element."""
    cpp = _dispatch._load("cpp")
    mod = types.ModuleType("_test_backend_planted")
    for k in dir(cpp):
        if not k.startswith("__"):
            setattr(mod, k, getattr(cpp, k))

    def activation_forward(x, spec, cols):
        y = cpp.activation_forward(x, spec, cols)
        if spec.name == "softsign" and y.size > 40:
            bound = parity.bound_of("activation", "softsign", y.dtype.name)
            y.flat[40] *= 1 + 4 * bound * np.finfo(y.dtype).eps
        return y

    mod.activation_forward = activation_forward
    sys.modules[mod.__name__] = mod
    monkeypatch.setitem(_dispatch._MODULES, PLANTED, mod.__name__)
    monkeypatch.setitem(_dispatch._loaded, PLANTED, mod)
    yield PLANTED
    sys.modules.pop(mod.__name__, None)


def test_planted_wrong_kernel_is_reported(planted, tmp_path, capsys):
    path = str(tmp_path / "p.json")
    rc = parity.main(["--ops", "softsign,tanh", "--backends", f"cpp,{planted}", "--no-frameworks", "--quiet",
                      "--json", path])
    text = capsys.readouterr().out
    assert rc == 1
    rows = json.load(open(path))["rows"]
    broken = [r for r in rows if r["verdict"] != "ok"]
    assert broken and all(r["backend"] == planted and r["op"] == "softsign" and r["output"] == "y" for r in broken)
    assert {r["dtype"] for r in broken} == set(parity.DTYPES)  # 16-bit rows included
    for r in broken:
        shape = tuple(int(n) for n in r["shape"].split("x"))
        assert np.ravel_multi_index(r["worst_index"], shape) == PLANTED_FLAT
        assert r["bound"] < r["ulps"] < 4.5 * r["bound"]  # 4 bounds relative to |y|; the unit adds 1 to |y|
        assert r["worst_got"] != r["worst_ref"]
    assert "BROKEN:" in text and "worst at (1, 3)" in text and "verdict: FAIL" in text  # (7, 37) case


def test_bounds_table_covers_every_dtype():
    fams = {"activation", "loss", "dense", "dense_cross_entropy"}
    assert {(f, d) for f in fams for d in parity.DTYPES} <= set(parity.BOUNDS)
    with pytest.raises(ValueError, match="float8"):
        parity.bound_of("activation", "relu", "float8")


def test_frameworks_layer():
    """The torch half of the framework layer (in-process); Keras' half when keras is
    installed, one subprocess per backend, bounded by the timeout."""
    pytest.importorskip("torch")
    checks = _frameworks.check_torch()
    assert checks and all(c["verdict"] == "ok" for c in checks), checks


def test_reference_without_torch(monkeypatch):
    """Without torch the reference is fastnn's float64 path on the numba backend, and the
    summary says so."""
    if "numba" not in fastnn.available_backends():
        pytest.skip("needs the numba backend")
    from fastnn.parity import _reference
    monkeypatch.setattr(_reference, "torch", None)
    assert "numba" in parity.reference_name()
    rows = parity.run(ops=["gelu", "kl_div", "dense_cross_entropy"], backends=["cpp"])
    assert rows and all(r["verdict"] == "ok" for r in rows)


@pytest.mark.skipif(importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None,
                    reason="needs keras and jax")
@pytest.mark.slow
def test_keras_layer_on_one_backend():
    """The Keras half of the framework layer (every fastnn.keras layer and loss, values and
    input gradients, against stock Keras) on jax, in its own subprocess; the parity run
    covers every installed backend the same way."""
    from fastnn.parity._frameworks import check_keras  # noqa: PLC0415

    rows = check_keras(300, backends=("jax",))
    assert len(rows) >= 40, rows
    assert all(r["verdict"] == "ok" for r in rows), [r for r in rows if r["verdict"] != "ok"]
    assert any(r["name"].startswith("fastnn.keras.SparseCategoricalCrossentropy") for r in rows)
