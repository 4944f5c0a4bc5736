"""The backend registry and selection: backends(), available_backends(), set_backend,
use_backend (scoped, nestable, thread-local), FASTNN_BACKEND, and the errors.

Which backend is in effect is read with fastnn.get_backend() (the forced name or None),
which the package provides beyond API.md; the tests that need it skip without it."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastnn
from conftest import DEVICE_OF, TEST_ONLY_BACKENDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = np.linspace(-2.0, 2.0, 9)


def unavailable():
    return [n for n, s in fastnn.backends().items() if s != "ok"]


@pytest.fixture
def clean_state(monkeypatch):
    """No FASTNN_BACKEND, no set_backend, before and after the test."""
    monkeypatch.delenv("FASTNN_BACKEND", raising=False)
    fastnn.set_backend(None)
    yield
    fastnn.set_backend(None)


@pytest.fixture
def get_backend():
    if not hasattr(fastnn, "get_backend"):
        pytest.skip("fastnn.get_backend() is not provided")
    return fastnn.get_backend


def test_backends_dict():
    b = fastnn.backends()
    assert isinstance(b, dict)
    assert b.get("cpp") == "ok", b
    for name, status in b.items():
        assert isinstance(name, str) and isinstance(status, str) and status, (name, status)


def test_available_backends_are_the_ok_ones():
    avail = fastnn.available_backends()
    assert "cpp" in avail
    assert list(avail) == [n for n, s in fastnn.backends().items() if s == "ok"]


def test_unknown_backend_name(clean_state):
    with pytest.raises(ValueError, match="tpu"):
        fastnn.set_backend("tpu")
    with pytest.raises(ValueError, match="tpu"):
        with fastnn.use_backend("tpu"):
            fastnn.activation_forward(X, "relu")
    np.testing.assert_array_equal(fastnn.activation_forward(X, "relu"), np.maximum(X, 0))


def test_forcing_unavailable_backend(clean_state):
    names = unavailable()
    if not names:
        pytest.skip("every backend is available here")
    for name in names:
        with pytest.raises(RuntimeError, match=name):
            fastnn.set_backend(name)
            fastnn.activation_forward(X, "relu")
        fastnn.set_backend(None)
        with pytest.raises(RuntimeError, match=name):
            with fastnn.use_backend(name):
                fastnn.activation_forward(X, "relu")
    # and nothing stays forced afterwards
    np.testing.assert_array_equal(fastnn.activation_forward(X, "relu"), np.maximum(X, 0))


@pytest.mark.parametrize("name", fastnn.available_backends())
def test_set_backend(clean_state, get_backend, name):
    assert get_backend() is None
    fastnn.set_backend(name)
    assert get_backend() == name
    np.testing.assert_array_equal(fastnn.activation_forward(X, "relu"), np.maximum(X, 0))
    fastnn.set_backend(None)
    assert get_backend() is None
    np.testing.assert_array_equal(fastnn.activation_forward(X, "relu"), np.maximum(X, 0))


def test_use_backend_nested(clean_state, get_backend):
    avail = fastnn.available_backends()
    outer, inner = avail[0], avail[-1]
    fastnn.set_backend(inner)
    with fastnn.use_backend(outer):
        assert get_backend() == outer  # use_backend wins over set_backend
        with fastnn.use_backend(inner):
            assert get_backend() == inner
            with fastnn.use_backend(outer):
                assert get_backend() == outer
            assert get_backend() == inner
        assert get_backend() == outer
        for name in unavailable():  # a failed inner use_backend leaves the outer one
            with pytest.raises(RuntimeError):
                with fastnn.use_backend(name):
                    fastnn.activation_forward(X, "relu")
            assert get_backend() == outer
    assert get_backend() == inner
    fastnn.set_backend(None)
    assert get_backend() is None


def test_use_backend_restored_on_exception(clean_state, get_backend):
    with pytest.raises(KeyError):
        with fastnn.use_backend("cpp"):
            raise KeyError("boom")
    assert get_backend() is None


def test_use_backend_is_thread_local(clean_state, get_backend):
    seen, errors = {}, []
    entered, release = threading.Event(), threading.Event()

    def other():
        try:
            seen["before"] = get_backend()
            with fastnn.use_backend("cpp"):
                seen["inside"] = get_backend()
                entered.set()
                release.wait(10)
            seen["y"] = fastnn.activation_forward(X, "relu")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            entered.set()

    with fastnn.use_backend("cpp"):
        t = threading.Thread(target=other)
        t.start()
        assert entered.wait(10)
        assert get_backend() == "cpp"
        release.set()
        t.join(10)
    assert get_backend() is None  # the other thread's use_backend never leaked here
    assert not errors, errors
    assert seen["before"] is None, "another thread saw this thread's use_backend"
    assert seen["inside"] == "cpp"
    np.testing.assert_array_equal(seen["y"], np.maximum(X, 0))


def test_env_var_is_read_at_each_call(clean_state, get_backend, monkeypatch):
    """FASTNN_BACKEND set or changed after import (os.environ) counts from the next call,
    below set_backend and use_backend, and use_backend(None) ignores it."""
    name = [n for n in fastnn.available_backends() if n in ("cpp", "numba")][-1]
    monkeypatch.setenv("FASTNN_BACKEND", name)
    assert get_backend() == name
    np.testing.assert_array_equal(fastnn.activation_forward(X, "relu"), np.maximum(X, 0))
    monkeypatch.setenv("FASTNN_BACKEND", " cpp ")
    assert get_backend() == "cpp"
    monkeypatch.setenv("FASTNN_BACKEND", "tpu")
    with pytest.raises(ValueError, match="tpu"):
        fastnn.activation_forward(X, "relu")
    with fastnn.use_backend(None):  # automatic inside, whatever the variable says
        assert get_backend() is None
        np.testing.assert_array_equal(fastnn.activation_forward(X, "relu"), np.maximum(X, 0))
    fastnn.set_backend(name)
    assert get_backend() == name
    fastnn.set_backend(None)
    monkeypatch.setenv("FASTNN_BACKEND", "  ")
    assert get_backend() is None
    monkeypatch.delenv("FASTNN_BACKEND")
    assert get_backend() is None
    np.testing.assert_array_equal(fastnn.activation_forward(X, "relu"), np.maximum(X, 0))


def _run(code, backend_env):
    env = dict(os.environ)
    env.pop("FASTNN_BACKEND", None)
    if backend_env is not None:
        env["FASTNN_BACKEND"] = backend_env
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


PROBE = """
import numpy as np
try:
    import fastnn
    y = fastnn.activation_forward(np.array([-1.0, 2.0]), "relu")
    print("OK", getattr(fastnn, "get_backend", lambda: "?")(), y.tolist())
except Exception as e:
    print("ERR", type(e).__name__, e)
"""


@pytest.mark.parametrize("name", [n for n in fastnn.available_backends() if n not in TEST_ONLY_BACKENDS])
def test_env_var_selects_backend(name):
    out = _run(PROBE, name)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[0] == "OK", out.stdout
    assert words[1] in (name, "?"), out.stdout
    assert "[0.0, 2.0]" in out.stdout


def test_env_var_unknown_and_unavailable():
    out = _run(PROBE, "tpu")
    assert out.stdout.startswith("ERR ValueError") and "tpu" in out.stdout, out.stdout + out.stderr
    for name in unavailable():
        out = _run(PROBE, name)
        assert out.stdout.startswith("ERR RuntimeError") and name in out.stdout, out.stdout


def test_env_var_unset_is_automatic():
    out = _run(PROBE, None)
    assert out.stdout.split()[:2] in (["OK", "None"], ["OK", "?"]), out.stdout + out.stderr


def cpu_backends():
    return [n for n in fastnn.available_backends() if DEVICE_OF.get(n, "cpu") == "cpu"]


def test_backends_agree():
    """Every available CPU backend gives the same results as the first one (float64)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9, 13))
    w = rng.standard_normal((5, 13))
    t = rng.integers(0, 5, 9)
    results = {}
    for name in cpu_backends():
        with fastnn.use_backend(name):
            y, z = fastnn.dense_forward(x, w, None, activation="gelu", keep_z=True)
            results[name] = [y, z, fastnn.activation_forward(x, "mish"),
                             fastnn.loss_forward(y, t, "cross_entropy"),
                             fastnn.loss_backward(y, t, "cross_entropy")]
    first = results[cpu_backends()[0]]
    for name, res in results.items():
        for got, ref in zip(res, first):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("name", cpu_backends())
def test_concurrent_calls(name):
    """Kernels called from several threads at once (each with its own use_backend) give
    the single-threaded results."""
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((129, 257)) for _ in range(4)]
    w = rng.standard_normal((33, 257))

    def work(x):
        with fastnn.use_backend(name):
            y, _ = fastnn.dense_forward(x, w, None, activation="tanh")
            return y, fastnn.activation_forward(x, "softmax"), fastnn.loss_forward(x, x * 0.5, "mse")

    expected = [work(x) for x in xs]
    for _ in range(3):
        out = [None] * len(xs)
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, work(xs[i])))
                   for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for got, exp in zip(out, expected):
            assert got is not None, "a thread failed"
            for g, e in zip(got, exp):
                np.testing.assert_array_equal(g, e)
