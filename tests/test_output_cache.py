"""The C++ backend's cache of large output buffers (csrc/cpu/pool.h, fastnn.empty_cache):
reused memory must never be handed out while any array (or view) still uses it, the
results are the same as with fresh memory, the cache stays within its limit, and turning
it off (FASTNN_CACHE_MB=0) works."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn

pytestmark = pytest.mark.skipif("cpp" not in fastnn.available_backends(), reason="the C++ backend is not built")

N = 1 << 19  # 2 MiB of float32: over the 1 MiB threshold


@pytest.fixture(autouse=True)
def _cpp():
    fastnn.empty_cache()
    with fastnn.use_backend("cpp"):
        yield
    fastnn.empty_cache()


def test_outputs_reuse_freed_buffers():
    x = np.linspace(-3, 3, N, dtype=np.float32)
    before = fastnn.cache_info()
    y = fastnn.activation_forward(x, "relu")
    ptr = y.ctypes.data
    del y  # back to the cache
    assert fastnn.cache_info()["cached_bytes"] >= x.nbytes
    y2 = fastnn.activation_forward(x, "relu")
    assert y2.ctypes.data == ptr  # the same block, already faulted in
    info = fastnn.cache_info()
    assert info["hits"] == before["hits"] + 1 and info["misses"] == before["misses"] + 1
    np.testing.assert_array_equal(y2, np.maximum(x, 0))


def test_a_view_keeps_its_buffer():
    x = np.linspace(-3, 3, N, dtype=np.float32)
    y = fastnn.activation_forward(x, "tanh")
    view = y[1000:2000]
    expected = np.tanh(x[1000:2000].astype(np.float64))
    del y  # the view still holds the block
    assert fastnn.cache_info()["cached_bytes"] == 0
    z = fastnn.activation_forward(-x, "relu")  # would get the block if it had been released
    assert z.ctypes.data != view.ctypes.data - 1000 * 4
    np.testing.assert_allclose(view, expected, rtol=1e-6, atol=1e-7)
    del view
    assert fastnn.cache_info()["cached_bytes"] >= x.nbytes


def test_pooled_outputs_are_ordinary_arrays():
    x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    y = fastnn.activation_forward(x, "gelu")
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned and y.dtype == np.float32
    assert y.shape == x.shape and y.ctypes.data % (2 << 20) == 0  # 2 MiB aligned (huge pages)
    y[0, 0] = 5.0  # writable, ours
    w = np.random.default_rng(1).standard_normal((300, 1024)).astype(np.float32)
    out, z = fastnn.dense_forward(x, w, None, "gelu")
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    np.testing.assert_allclose(z, ref, rtol=1e-4, atol=1e-3)


def test_cache_limit_and_empty_cache():
    x = np.ones(N, np.float32)
    ys = [fastnn.activation_forward(x, "relu") for _ in range(6)]
    del ys
    info = fastnn.cache_info()
    assert 0 < info["cached_bytes"] <= info["limit_bytes"]
    assert fastnn.empty_cache() == info["cached_bytes"]
    assert fastnn.cache_info()["cached_bytes"] == 0


def _run(code, **env):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, **env),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_cache_off_and_limit_from_environment():
    code = ("import numpy as np, fastnn\n"
            "x = np.ones(1 << 20, np.float32)\n"
            "for _ in range(3): y = fastnn.activation_forward(x, 'relu'); del y\n"
            "i = fastnn.cache_info(); print(i['limit_bytes'], i['cached_bytes'], i['hits'])")
    assert _run(code, FASTNN_CACHE_MB="0") == "0 0 0"
    limit, cached, hits = map(int, _run(code, FASTNN_CACHE_MB="64").split())
    assert limit == 64 << 20 and cached == 4 << 20 and hits == 2


def test_impossible_output_raises_memory_error():
    from fastnn._backends import cpp

    with pytest.raises(MemoryError):
        cpp._C.empty((1 << 40, 1 << 20), np.dtype(np.float32))
    with pytest.raises(ValueError, match="negative dimension"):
        cpp._C.empty((-1, 4), np.dtype(np.float32))
