"""dense_forward / dense_backward against float64 torch: F.linear + activation, autograd.

Forward data are dyadic (small multiples of powers of 1/2) so that x @ W + b is exact in
float32 and float64 whatever the summation order: z is compared exactly-ish and y
measures only the activation's rounding. Gradients (and test_generic_data) are compared
in a band relative to |dz| @ |W| and |dz|^T @ |x|, the magnitudes a product rounds.
"""
import math

import os

import numpy as np
import pytest

import fastnn
from _ref import activation_bands, dense_ref, dense_scales
from conftest import (K, LAYOUTS, as_layout, assert_close, dyadic_dense, param_id,
                      shape_id)

EXTRA_PARAMS = [("leaky_relu", {"negative_slope": 0.2}), ("gelu", {"approximate": "tanh"}),
                ("softplus", {"beta": 2.0}), ("elu", {"alpha": 0.5}), ("relu", {"max_value": 6.0}),
                ("relu", {"negative_slope": 0.1})]
ACTS = [pytest.param(n, {}, id=n) for n in fastnn.ACTIVATIONS] + \
       [pytest.param(n, p, id=f"{n}-{param_id(p)}") for n, p in EXTRA_PARAMS
        if n in fastnn.ACTIVATIONS]
# (x shape, out features)
# (37, 300) -> 1 and (1, 300) -> 45: the degenerate products (one output column or row,
# an inner dimension of 1) that the C++ backend runs as its own gemv / outer product
SHAPES = [((1, 1), 1), ((7, 33), 5), ((33, 7), 257), ((64, 128), 96), ((2, 3, 7), 5),
          ((0, 7), 5), ((37, 300), 1), ((1, 300), 45)]
SHAPE_PARAMS = [pytest.param(xs, o, id=f"{shape_id(xs)}-o{o}") for xs, o in SHAPES]
WL = ["oi", "io"]


def saved_z(act, params):
    return "x" in set(fastnn.saved_for_backward(act, **params))


def check_forward(x, w, b, wl, act, params, dtype, keep_z=False):
    ref = dense_ref(x, w, b, wl, act, params)
    y, z = K.dense_forward(x, w, b, activation=act, weight_layout=wl,
                           keep_z=keep_z, **params)
    assert_close(y, ref["y"], dtype, **activation_bands(act, params, ref["z"], ref["y"]),
                 what=f"dense y ({act})")
    if keep_z or saved_z(act, params):
        assert z is not None, f"z is None with keep_z={keep_z} for {act}"
        assert_close(z, ref["z"], dtype, what="dense z")
    else:
        assert z is None, f"z returned for {act} whose backward does not need it"
    return y, z


def check_backward(x, w, b, wl, act, params, dtype, dy, layout=None, **need):
    ref = dense_ref(x, w, b, wl, act, params, dy)
    y = np.asarray(ref["y"]).astype(dtype)
    z = np.asarray(ref["z"]).astype(dtype) if saved_z(act, params) else None
    if layout is not None:
        y = as_layout(y, layout)
        z = None if z is None else as_layout(z, layout)
    out = K.dense_backward(dy, x, w, y, z, activation=act,
                          weight_layout=wl, **need, **params)
    assert isinstance(out, tuple) and len(out) == 3, out
    sc = dense_scales(x, w, wl, act, params, ref, dy)
    for key, got in zip(("dx", "dw", "db"), out):
        if not need.get(f"need_{key}", True):
            assert got is None, f"{key} computed although need_{key}=False"
        else:
            assert_close(got, ref[key], dtype, scale=sc[key], what=f"dense {key} ({act})")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("wl", WL)
@pytest.mark.parametrize("xshape, out", SHAPE_PARAMS)
@pytest.mark.parametrize("act, params", ACTS)
def test_forward(backend, dtype, act, params, xshape, out, wl, bias, rng):
    x, w, b = dyadic_dense(xshape, out, wl, bias, dtype, rng)
    check_forward(x, w, b, wl, act, params, dtype)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("wl", WL)
@pytest.mark.parametrize("xshape, out", SHAPE_PARAMS)
@pytest.mark.parametrize("act, params", ACTS)
def test_backward(backend, dtype, act, params, xshape, out, wl, bias, rng):
    x, w, b = dyadic_dense(xshape, out, wl, bias, dtype, rng)
    dy = rng.standard_normal(xshape[:-1] + (out,)).astype(dtype)
    check_backward(x, w, b, wl, act, params, dtype, dy)


@pytest.mark.parametrize("wl", WL)
@pytest.mark.parametrize("act, params", ACTS)
def test_keep_z_roundtrip(backend, dtype, act, params, wl, rng):
    """keep_z=True always returns z; keep_z=False only when the backward needs it; the
    forward's own (y, z) then drive dense_backward correctly."""
    x, w, b = dyadic_dense((7, 33), 5, wl, True, dtype, rng)
    dy = rng.standard_normal((7, 5)).astype(dtype)
    check_forward(x, w, b, wl, act, params, dtype, keep_z=True)
    y, z = check_forward(x, w, b, wl, act, params, dtype, keep_z=False)
    ref = dense_ref(x, w, b, wl, act, params, dy)
    sc = dense_scales(x, w, wl, act, params, ref, dy)
    dx, dw, db = K.dense_backward(dy, x, w, y, z, activation=act, weight_layout=wl, **params)
    for key, got in zip(("dx", "dw", "db"), (dx, dw, db)):
        assert_close(got, ref[key], dtype, scale=sc[key], what=key)


NEEDS = [dict(need_dx=a, need_dw=b, need_db=c) for a in (True, False) for b in (True, False)
         for c in (True, False)]


@pytest.mark.parametrize("need", NEEDS, ids=lambda d: "-".join(
    k[5:] for k, v in d.items() if v) or "nothing")
@pytest.mark.parametrize("act", ["relu", "gelu", "softmax"])
def test_need_flags(backend, dtype, act, need, rng):
    x, w, b = dyadic_dense((7, 33), 5, "oi", True, dtype, rng)
    dy = rng.standard_normal((7, 5)).astype(dtype)
    check_backward(x, w, b, "oi", act, {}, dtype, dy, **need)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("wl", WL)
@pytest.mark.parametrize("xshape, out", [pytest.param((33, 65), 17, id="33x65-o17"),
                                         pytest.param((2, 3, 7), 5, id="2x3x7-o5")])
@pytest.mark.parametrize("act", ["relu", "gelu", "softmax"])
def test_layouts(backend, dtype, act, xshape, out, wl, layout, rng):
    """x, w, b, dy (and the saved y, z) in C/F/sliced/negative-stride/read-only layouts."""
    x0, w0, b0 = dyadic_dense(xshape, out, wl, True, dtype, rng)
    dy0 = rng.standard_normal(xshape[:-1] + (out,)).astype(dtype)
    x, w, b, dy = (as_layout(a, layout) for a in (x0, w0, b0, dy0))
    check_forward(x, w, b, wl, act, {}, dtype)
    check_backward(x, w, b, wl, act, {}, dtype, dy, layout=layout)


@pytest.mark.parametrize("wl", WL)
@pytest.mark.parametrize("xshape, out", [pytest.param((64, 128), 96, id="64x128-o96"),
                                         pytest.param((33, 257), 7, id="33x257-o7")])
@pytest.mark.parametrize("act", ["linear", "tanh", "sigmoid"])
def test_generic_data(backend, dtype, act, xshape, out, wl, rng):
    """Normal (non-dyadic) data: the product rounds. |act'| <= 1 here, so the band for y
    and z is rtol * (|x| @ |W| + |b|)."""
    x = rng.standard_normal(xshape).astype(dtype)
    w = (rng.standard_normal((out, xshape[-1])) / math.sqrt(xshape[-1])).astype(dtype)
    w = w if wl == "oi" else np.ascontiguousarray(w.T)
    b = rng.standard_normal(out).astype(dtype)
    ref = dense_ref(x, w, b, wl, act, {})
    w_oi = np.abs(w.astype(np.float64)) if wl == "oi" else np.abs(w.astype(np.float64)).T
    scale = np.abs(x.astype(np.float64)) @ w_oi.T + np.abs(b.astype(np.float64))
    y, z = K.dense_forward(x, w, b, activation=act, weight_layout=wl,
                           keep_z=True)
    assert_close(z, ref["z"], dtype, scale=scale, what="z")
    assert_close(y, ref["y"], dtype, scale=scale, what="y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    check_backward(x, w, b, wl, act, {}, dtype, dy)


def test_empty_batch_values(backend, dtype, rng):
    """0 rows: y is (0, out); dx is (0, in); dw and db are zeros."""
    x, w, b = dyadic_dense((0, 7), 5, "oi", True, dtype, rng)
    y, z = K.dense_forward(x, w, b, activation="gelu")
    assert y.shape == (0, 5) and y.dtype == dtype
    dx, dw, db = K.dense_backward(np.zeros((0, 5), dtype), x, w, y, z, activation="gelu")
    assert dx.shape == (0, 7) and dx.dtype == dtype
    np.testing.assert_array_equal(dw, np.zeros((5, 7)))
    np.testing.assert_array_equal(db, np.zeros(5))


@pytest.mark.parametrize("wl", WL)
@pytest.mark.parametrize("act", ["linear", "relu", "gelu", "softmax"])
def test_large(backend, dtype, act, wl, rng):
    """1031 rows x 257 in x 129 out: more rows than one parallel chunk of the kernels."""
    x, w, b = dyadic_dense((1031, 257), 129, wl, True, dtype, rng)
    dy = rng.standard_normal((1031, 129)).astype(dtype)
    check_forward(x, w, b, wl, act, {}, dtype)
    check_backward(x, w, b, wl, act, {}, dtype, dy)


@pytest.mark.parametrize("activation", ["linear", "relu", "gelu", "softmax"])
def test_small_call_fast_path_is_the_general_path(backend, activation):
    """Plain 2-D C-contiguous numpy calls take the plain route (fastnn/_dense.py: the C++
    backend's own checks, or a few Python ones for the other CPU backends): the same bits
    as the general route, which the same call with w passed as a Fortran-ordered (in, out)
    view takes (the kernels then get the very same arrays), on every CPU backend."""
    from conftest import DEVICE_OF  # noqa: PLC0415

    if DEVICE_OF.get(backend) == "cuda":
        pytest.skip("numpy inputs go to CPU backends only (a GPU backend refuses them on both paths)")

    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 20)).astype(np.float32)
    w = rng.standard_normal((7, 20)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    dy = rng.standard_normal((10, 7)).astype(np.float32)

    def run(wl):
        wa = w if wl == "oi" else w.T
        with fastnn.use_backend(backend):
            y, z = fastnn.dense_forward(x, wa, b, activation, keep_z=True, weight_layout=wl)
            dx, dw, db = fastnn.dense_backward(dy, x, wa, y, z, activation, weight_layout=wl)
            return y, z, dx, dw if wl == "oi" else dw.T, db

    for a, s in zip(run("oi"), run("io")):
        np.testing.assert_array_equal(a, s)


@pytest.mark.parametrize("wl", WL)
@pytest.mark.parametrize("xshape, out", [pytest.param((4096, 1024), 1, id="4096x1024-o1"),
                                         pytest.param((1, 4096), 1024, id="1x4096-o1024")])
def test_degenerate_products_threaded(wl, xshape, out, rng):
    """The C++ backend's own matrix-vector products split over threads from 4M
    multiply-adds (csrc/cpu/dense.cpp, kGemvGrain): large enough here for two parts."""
    with fastnn.use_backend("cpp"):
        x, w, b = dyadic_dense(xshape, out, wl, True, np.float32, rng)
        dy = rng.standard_normal(xshape[:-1] + (out,)).astype(np.float32)
        check_forward(x, w, b, wl, "relu", {}, np.float32)
        check_backward(x, w, b, wl, "relu", {}, np.float32, dy)


def _restore_gemm_path(C):
    """Back to the start-up routing: fastnn's sgemm at each level's default minimum
    (none at AVX2), or OpenBLAS only under FASTNN_GEMM=openblas."""
    C._set_gemm_path("openblas" if os.environ.get("FASTNN_GEMM") == "openblas" else "fastnn", -1)


@pytest.fixture
def own_sgemm():
    """Routes every float32 Dense product of the C++ backend to fastnn's own sgemm at the
    ISA level in effect (csrc/cpu/sgemm.cpp: AVX-512 or AVX2 kernel; by default only the
    larger products go there), and back afterwards. Run the file with FASTNN_ISA=avx2 for
    the AVX2 kernel on an AVX-512 CPU."""
    from fastnn._backends import cpp  # noqa: PLC0415

    if cpp._C is None:
        pytest.skip("the C++ extension is not built")
    path = cpp._C._set_gemm_path("fastnn", 0)[0]
    if path != "fastnn-" + cpp._C._isa():
        _restore_gemm_path(cpp._C)
        pytest.skip(f"no AVX2 or AVX-512 at this level ({cpp._C._isa()}): the products run on OpenBLAS")
    yield cpp._C
    _restore_gemm_path(cpp._C)


# SHAPES plus: more than one k block (512) with B read in place (whole 64-column panels)
# and packed (partial panels); row counts that are not whole 6-row tiles.
OWN_SHAPES = SHAPES + [((1031, 257), 129), ((200, 1100), 128), ((13, 1030), 70), ((7, 2, 520), 64)]


@pytest.mark.parametrize("wl", WL)
@pytest.mark.parametrize("xshape, out", [pytest.param(xs, o, id=f"{shape_id(xs)}-o{o}") for xs, o in OWN_SHAPES])
@pytest.mark.parametrize("act", ["linear", "relu", "gelu", "softmax"])
def test_cpp_own_sgemm(own_sgemm, act, xshape, out, wl, rng):
    """fastnn's own sgemm at every shape, both weight layouts (all four transpose cases
    of its packing: x W^T and x W forward, g W and g W^T for dx, g^T x and x^T g for dW)."""
    with fastnn.use_backend("cpp"):
        x, w, b = dyadic_dense(xshape, out, wl, True, np.float32, rng)
        dy = rng.standard_normal(xshape[:-1] + (out,)).astype(np.float32)
        check_forward(x, w, b, wl, act, {}, np.float32)
        check_backward(x, w, b, wl, act, {}, np.float32, dy)


@pytest.mark.parametrize("xshape, out", [pytest.param((1031, 70), 1030, id="1031x70-o1030"),
                                         pytest.param((300, 1100), 129, id="300x1100-o129"),
                                         pytest.param((37, 300), 45, id="37x300-o45")])
@pytest.mark.parametrize("act", ["relu", "gelu", "softmax", "tanh", "linear"])
def test_cpp_own_sgemm_dw_only(own_sgemm, act, xshape, out, rng):
    """dW and db without dx, W stored (in, out): the C++ backend makes g = dy * act'(.)
    inside the sgemm's packing, in fixed groups of rows (1031 x 1030: five groups of 240
    rows, across k blocks of 512), never written out."""
    with fastnn.use_backend("cpp"):
        x, w, b = dyadic_dense(xshape, out, "io", True, np.float32, rng)
        dy = rng.standard_normal(xshape[:-1] + (out,)).astype(np.float32)
        check_backward(x, w, b, "io", act, {}, np.float32, dy, need_dx=False)
        check_backward(x, w, b, "io", act, {}, np.float32, dy, need_dx=False, need_db=False)


@pytest.mark.parametrize("wl", WL)
def test_cpp_own_sgemm_bits_do_not_depend_on_threads(own_sgemm, wl, rng):
    """Each output element is one thread's sum in a fixed order: one thread and two give
    the same bits (generic data: the sums round)."""
    x = rng.standard_normal((301, 1100)).astype(np.float32)
    w = rng.standard_normal((130, 1100) if wl == "oi" else (1100, 130)).astype(np.float32)
    dy = rng.standard_normal((301, 130)).astype(np.float32)
    outs = []
    n0 = fastnn.num_threads()
    try:
        for n in (1, 2):
            fastnn.set_num_threads(n)
            with fastnn.use_backend("cpp"):
                y, _ = fastnn.dense_forward(x, w, None, activation="relu", weight_layout=wl)
                full = fastnn.dense_backward(dy, x, w, y, activation="relu", weight_layout=wl)
                only_w = fastnn.dense_backward(dy, x, w, y, activation="relu", weight_layout=wl, need_dx=False)
                outs.append((y,) + full + only_w[1:])
    finally:
        fastnn.set_num_threads(n0)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    ref = np.maximum(x.astype(np.float64) @ (w.T if wl == "oi" else w).astype(np.float64), 0)
    np.testing.assert_allclose(outs[0][0], ref, rtol=0, atol=2e-5 * np.abs(ref).max())


def test_cpp_default_gemm_routing(rng):
    """By default the C++ backend's float32 products of >= 2^30 multiply-adds run on
    fastnn's sgemm at the AVX-512 level, on OpenBLAS at the others; a 1024^3 forward and
    backward give the reference."""
    from fastnn._backends import cpp  # noqa: PLC0415

    if cpp._C is None:
        pytest.skip("the C++ extension is not built")
    path, min_macs = cpp._C._gemm_path()
    if cpp._C._isa() == "avx512":
        assert (path, min_macs) == ("fastnn-avx512", 1 << 30)
    else:  # AVX2 (OpenBLAS measured as fast: csrc/cpu/sgemm.cpp) and baseline: OpenBLAS only
        assert path == "openblas"
    with fastnn.use_backend("cpp"):
        x, w, b = dyadic_dense((1024, 1024), 1024, "io", True, np.float32, rng)
        dy = rng.standard_normal((1024, 1024)).astype(np.float32)
        check_forward(x, w, b, "io", "relu", {}, np.float32)
        check_backward(x, w, b, "io", "relu", {}, np.float32, dy)


_TORCH_POOL_PROBE = """
import sys, threading, numpy as np, torch, fastnn
from fastnn._backends import cpp
from fastnn.torch import _native
torch.set_num_threads(2)
rng = np.random.default_rng(0)
x = rng.standard_normal((700, 600)).astype(np.float32)
w = rng.standard_normal((500, 600)).astype(np.float32)
b = rng.standard_normal(500).astype(np.float32)
dy = rng.standard_normal((700, 500)).astype(np.float32)
logits = rng.standard_normal((3000, 700)).astype(np.float32)
t = rng.integers(0, 700, 3000)

def calls():
    y, z = fastnn.dense_forward(x, w, b, "gelu")
    outs = [y, *fastnn.dense_backward(dy, x, w, y, z, "gelu")]
    outs.append(fastnn.activation_forward(logits, "softmax"))
    outs.append(np.atleast_1d(fastnn.loss_forward(logits, t, "cross_entropy")))
    outs.append(fastnn.loss_backward(logits, t, "cross_entropy"))
    return np.concatenate([np.asarray(o, np.float32).ravel() for o in outs])

ref = calls()
assert _native.module() is not None, _native.status()
c0 = cpp._C._thread_counters()
got = calls()
c1 = cpp._C._thread_counters()
box = []
th = threading.Thread(target=lambda: box.append((cpp._C._thread_counters(), calls(), cpp._C._thread_counters())))
th.start(); th.join()
(o0, other, o1), = box
print(repr([c1[0] - c0[0], c1[1] - c0[1], o1[0] - o0[0], bool(np.array_equal(ref, got)),
            bool(np.array_equal(ref, other))]))
"""


def test_numpy_api_on_torch_pool_gives_the_same_bits():
    """Once fastnn.torch's extension is loaded, the numpy API called on the loading thread
    runs its parallel parts and OpenBLAS's jobs on torch's intra-op pool (counted by
    _thread_counters; csrc/cpu/parallel.h, set_default_executor), other threads on fastnn's
    pool; the results are the same bits as before it was loaded (fresh process)."""
    pytest.importorskip("torch")
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    env = dict(os.environ, FASTNN_NUM_THREADS="2", FASTNN_TORCH_SHARED_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _TORCH_POOL_PROBE], capture_output=True, text=True, env=env,
                       timeout=600)
    if r.returncode != 0 and "status()" in r.stderr:
        pytest.skip("fastnn.torch's extension cannot be built here: " + r.stderr[-300:])
    assert r.returncode == 0, r.stderr[-3000:]
    runs, callbacks, other_runs, same, same_other = eval(r.stdout.strip().splitlines()[-1])
    assert runs > 0 and callbacks > 0, r.stdout  # on torch's pool
    assert other_runs == 0, r.stdout  # another thread: fastnn's pool
    assert same and same_other


class _Sub(np.ndarray):
    pass


def _misaligned(a):
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("variant", ["plain", "subclass", "misaligned", "fortran", "readonly"])
@pytest.mark.parametrize("act", ["relu", "gelu", "linear"])
def test_plain_call_path(variant, act, rng):
    """The C++ backend checks plain numpy Dense calls in C++ (csrc/bindings.cpp,
    dense_forward_plain); every other kind of array takes the general path. Both give
    the reference values, and the inputs are left as they were."""
    x, w, b = dyadic_dense((9, 20), 7, "oi", True, np.float32, rng)
    dy = rng.standard_normal((9, 7)).astype(np.float32)
    change = {"plain": lambda a: a, "subclass": lambda a: a.view(_Sub), "misaligned": _misaligned,
              "fortran": np.asfortranarray, "readonly": lambda a: np.require(a, requirements="C").copy()}[variant]
    xv, wv = change(x), change(w)
    if variant == "readonly":
        xv.flags.writeable = wv.flags.writeable = False
    before = (xv.copy(), wv.copy())
    with fastnn.use_backend("cpp"):
        check_forward(xv, wv, b, "oi", act, {}, np.float32)
        check_backward(xv, wv, b, "oi", act, {}, np.float32, change(dy))
    assert np.array_equal(xv, before[0]) and np.array_equal(wv, before[1])


def test_plain_call_path_checks_unused_y():
    """A malformed y is refused even where the backward reads z (as on the general path)."""
    x, w = np.ones((4, 3), np.float32), np.ones((2, 3), np.float32)
    dy, z = np.ones((4, 2), np.float32), np.ones((4, 2), np.float32)
    with fastnn.use_backend("cpp"), pytest.raises(ValueError, match="y"):
        fastnn.dense_backward(dy, x, w, np.ones((5, 2), np.float32), z, activation="gelu")
