"""Shared fixtures and helpers for the fastnn test suite.

Every kernel test takes the `backend` fixture, parametrized over
fastnn.available_backends(), so a new backend is tested with no new test code.
"""
import math
import os
import sys
import zlib
from collections import namedtuple

import numpy as np
import pytest
import torch

import fastnn

# torch is only the reference here, on small arrays: one thread avoids oversubscribing
# the cores that the kernels under test use.
torch.set_num_threads(1)

# test modules import helpers from here and from _ref.py, in any pytest import mode; they
# must get this very module (K's state is set by the backend fixture)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.modules.setdefault("conftest", sys.modules[__name__])


def _register_cuda_emulator():
    """Backend "cupy_emu": the CuPy backend's code and CUDA kernels run on the CPU emulator
    (tests/cuda_emu), so every kernel test also checks the CUDA kernels without a GPU.
    FASTNN_TEST_CUDA_EMU=0 leaves it out; a machine without g++ reports it unavailable."""
    if os.environ.get("FASTNN_TEST_CUDA_EMU", "1") == "0":
        return
    from fastnn import _dispatch

    name = "fastnn._backends._cupy_emu"
    try:
        from cuda_emu import backend as emu

        sys.modules[name] = emu.load()
    except Exception as e:  # noqa: BLE001 - reported as the backend's reason below
        why = f"CUDA emulator not built: {type(e).__name__}: {e}"
        sys.modules[name] = type(sys)(name)
        sys.modules[name].unavailable = lambda: why
    _dispatch._MODULES.setdefault("cupy_emu", name)


_register_cuda_emulator()
# Registered by this file only: a fresh process (FASTNN_BACKEND=... in a subprocess) lacks them.
TEST_ONLY_BACKENDS = frozenset({"cupy_emu"})
BACKENDS = list(fastnn.available_backends())
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
DTYPE_IDS = ["f32", "f64"]



# ------------------------------------------------------------------------ test tiers
# `python -m pytest` runs the quick tier; `python -m pytest --full` (or FASTNN_TEST_FULL=1)
# runs every collected test; `--rest` runs what the quick tier leaves out (CI: the quick
# tier, then --rest, so each test runs once). The quick tier keeps, for every test function:
#   - every combination of the parameters that pick a kernel (IDENTITY: backend, dtype,
#     op name and params, module class, ...), so each kernel of each backend in each dtype
#     still runs;
#   - each value of every other parameter (shapes, layouts, reductions, chunk sizes, ...)
#     at least once, on a kernel chosen by a hash of the test id (different kernels see
#     different shapes, the same on every run);
#   - all of a test function's cases when it has at most QUICK_KEEP_ALL of them;
# and leaves out @pytest.mark.slow tests unless a -m expression selects markers
# (@pytest.mark.quick_only tests stand in for slow ones in the quick tier; --full skips them). The
# sampling runs after -k / -m selection, per test function, so a narrow selection (one
# test id) runs as given.
IDENTITY = ("backend", "dtype", "name", "act", "activation", "params", "cls", "entry", "family", "xdt")
QUICK_KEEP_ALL = 24


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="fastnn: run the full suite (every parametrized case and the slow tests), "
                          "not the quick tier")
    parser.addoption("--rest", action="store_true", default=False,
                     help="fastnn: run only what the quick tier leaves out (quick tier + --rest = --full)")


def _key(v):
    return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)


def _backend(item):
    return getattr(getattr(item, "callspec", None), "params", {}).get("backend")


def quick_tier(items):
    """The items of the quick tier, in collection order (see above)."""
    groups = {}
    for it in items:
        groups.setdefault((it.path, getattr(it, "originalname", it.name), it.cls), []).append(it)
    keep = set()
    for group in groups.values():
        if len(group) <= QUICK_KEEP_ALL:
            keep.update(map(id, group))
            continue
        by_kernel = {}
        for it in group:
            params = getattr(getattr(it, "callspec", None), "params", {})
            kid = tuple((k, _key(params[k])) for k in IDENTITY if k in params)
            by_kernel.setdefault(kid, []).append(it)
        chosen = []
        for kid, its in by_kernel.items():  # one case per kernel, its inputs picked by hash
            # (the CUDA emulator runs each GPU thread serially, so its case is the first,
            # the smallest parameters of each list; the cover below still adds its others)
            pick = 0 if ("backend", "cupy_emu") in kid else zlib.crc32(repr(kid).encode()) % len(its)
            chosen.append(its[pick])
        def values(it):
            params = getattr(getattr(it, "callspec", None), "params", {})
            return {(k, _key(v)) for k, v in params.items() if k not in IDENTITY}
        covered = set().union(*map(values, chosen))
        missing = set().union(*map(values, group)) - covered
        while missing:  # then each other parameter value at least once (greedy cover)
            best = max(group, key=lambda it: (len(values(it) & missing), _backend(it) != "cupy_emu"))
            chosen.append(best)
            missing -= values(best)
        keep.update(map(id, chosen))
    return [it for it in items if id(it) in keep]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if config.getoption("--full") or os.environ.get("FASTNN_TEST_FULL") == "1":
        stand_ins = [it for it in items if "quick_only" in it.keywords]  # the full tests run instead
        if stand_ins:
            config.hook.pytest_deselected(items=stand_ins)
            items[:] = [it for it in items if "quick_only" not in it.keywords]
        return
    selected = items if config.getoption("markexpr") else [it for it in items if "slow" not in it.keywords]
    selected = quick_tier(selected)
    if config.getoption("--rest"):
        quick = set(map(id, selected))
        selected = [it for it in items if id(it) not in quick]
    if len(selected) < len(items):
        chosen = set(map(id, selected))
        config.hook.pytest_deselected(items=[it for it in items if id(it) not in chosen])
        items[:] = selected


def pytest_report_header(config):
    if config.getoption("--full") or os.environ.get("FASTNN_TEST_FULL") == "1":
        return "fastnn tests: full suite"
    if config.getoption("--rest"):
        return "fastnn tests: what the quick tier leaves out (--rest)"
    return "fastnn tests: quick tier (every kernel, backend and dtype; sampled inputs); --full runs everything"


# Backends that take device arrays; every other backend takes numpy arrays.
DEVICE_OF = {"cupy": "cuda"}


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test with this backend forced (scoped, thread-local); kernels called
    through K get their arrays on that backend's device."""
    K.xp = pytest.importorskip("cupy") if DEVICE_OF.get(request.param) == "cuda" else None
    try:
        with fastnn.use_backend(request.param):
            yield request.param
    finally:
        K.xp = None


@pytest.fixture(params=DTYPES, ids=DTYPE_IDS)
def dtype(request):
    return request.param


@pytest.fixture
def rng(request):
    """A generator seeded from the test id: deterministic, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


# ------------------------------------------------------------------------ tolerances
# The reference is float64 torch/numpy evaluated on the very values the kernel saw (a
# float32 input is cast exactly to float64), so the difference measures only the
# kernel's own rounding.
#   float64: unit roundoff 1.1e-16. rtol 1e-12 leaves ~1e4 roundoffs of room for a few
#            dozen rounded operations and float64 sums of ~1e3 terms. atol 1e-14 (~90
#            roundoffs of an O(1) operand) covers results that are small only through
#            cancellation (gelu's derivative near x = -0.75, 1 + tanh(u) in tanh-gelu).
#   float32: unit roundoff 6e-8. rtol 1e-5 (~170 roundoffs) allows float32 (possibly
#            vectorized) exp/log/tanh/erf of a few ulps each, chained a few times, and
#            float32 sums of ~1e3 terms (error ~ sqrt(n) roundoffs). atol 1e-6: as above
#            for O(1) operands.
# Where the operands of a result are much larger than the result (matrix products,
# log_softmax, reductions of terms of both signs) the band is rtol * |operands|
# (`scale=`), or, for gradients of losses and matrix products, atol relative to the
# largest entry of the array (`normwise=True`).
Tol = namedtuple("Tol", "rtol atol")
TOL = {np.dtype(np.float32): Tol(rtol=1e-5, atol=1e-6),
       np.dtype(np.float64): Tol(rtol=1e-12, atol=1e-14)}


def assert_close(got, ref, dtype, *, scale=None, opscale=None, normwise=False, tol=None,
                 what=""):
    """got (the kernel's array) matches the float64 reference ref within TOL[dtype].

    Checks the kind (numpy), dtype and shape, that NaN/inf sit where the reference has
    them, then |got - ref| <= atol' + rtol * max(|ref|, scale) with atol' = atol, or
    atol * max|ref| when normwise."""
    dtype = np.dtype(dtype)
    assert isinstance(got, np.ndarray), f"{what}: expected numpy.ndarray, got {type(got)}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    tol = TOL[dtype] if tol is None else tol
    g = got.astype(np.float64)
    finite = np.isfinite(ref)
    # NaN and +-inf must be exactly where torch puts them
    np.testing.assert_array_equal(np.isnan(g), np.isnan(ref), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(g[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)],
                                  err_msg=f"{what}: inf entries")
    atol = tol.atol
    if normwise and finite.any():
        atol = tol.atol * float(np.max(np.abs(ref[finite])))
    if scale is None and opscale is None:
        np.testing.assert_allclose(g[finite], ref[finite], rtol=tol.rtol, atol=atol,
                                   err_msg=what)
        return
    band = atol + tol.rtol * np.maximum(np.abs(ref), 0.0 if scale is None else scale)
    if opscale is not None:
        band = band + tol.atol * opscale
    # |got - ref| in units of the allowed band: every entry must be <= 1
    np.testing.assert_allclose(np.abs(g[finite] - ref[finite]) / band[finite], 0.0, rtol=0, atol=1.0,
                               err_msg=f"{what}: error / allowed band (band = atol + "
                                       f"rtol * max(|ref|, scale) + atol * opscale)")


def dyadic_dense(xshape, out, weight_layout, bias, dtype, rng):
    """(x, w, b) for dense tests: x in [-3, 3] (step 1/8), w of step 1/(8 * 2^k) with
    2^k ~ sqrt(in), b of step 1/8. Every partial sum of x @ W + b is a multiple of
    2^-(6+k) below 2^14 in size, hence exact in float32 whatever the summation order."""
    n_in = xshape[-1]
    k = max(0, round(math.log2(math.sqrt(n_in)))) if n_in else 0
    x = rng.integers(-24, 25, size=xshape) / 8.0
    w = rng.integers(-8, 9, size=(out, n_in)) / (8.0 * 2 ** k)
    w = w if weight_layout == "oi" else w.T.copy()
    b = rng.integers(-8, 9, size=out) / 8.0 if bias else None
    return x.astype(dtype), w.astype(dtype), (None if b is None else b.astype(dtype))


# --------------------------------------------------------------------------- layouts
LAYOUTS = ("C", "F", "sliced", "negstride", "readonly")


def as_layout(a, layout):
    """The same values as a, in the given memory layout (a fresh array or view)."""
    a = np.asarray(a)
    if layout == "C":
        return np.ascontiguousarray(a).copy()
    if layout == "F":
        return np.asfortranarray(a).copy(order="F")
    if layout == "sliced":  # every other column of a twice-as-wide buffer full of NaN
        buf = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, dtype=a.dtype) \
            if a.dtype.kind == "f" else np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        buf[..., ::2] = a
        out = buf[..., ::2]
        assert a.size <= 1 or not out.flags.c_contiguous
        return out
    if layout == "negstride":  # negative strides on every axis
        out = np.flip(np.flip(a).copy())
        assert a.size <= 1 or min(out.strides) < 0
        return out
    if layout == "readonly":
        out = a.copy()
        out.flags.writeable = False
        return out
    raise ValueError(layout)


def _owner(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def call_unmodified(fn, *args, **kwargs):
    """fn(*args, **kwargs), asserting no numpy array argument (nor the buffer it views)
    changed."""
    arrays = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    arrays += [_owner(a) for a in arrays if _owner(a) is not a]
    copies = [a.copy() for a in arrays]
    out = fn(*args, **kwargs)
    for i, (a, c) in enumerate(zip(arrays, copies)):
        np.testing.assert_array_equal(a, c, err_msg=f"{fn.__name__}: input #{i} was modified")
    return out


class Kernels:
    """fastnn's functions called on the device of the backend under test.

    With xp = None (numpy backends) arguments pass through unchanged. With xp = cupy,
    numpy arguments are copied to the device keeping their layout (the same strides and
    offset into a copy of the buffer they view), outputs must be cupy arrays (API.md:
    outputs are of the kind of the inputs) and come back as numpy. Either way the
    inputs are checked to be unmodified after the call."""

    xp = None

    def __getattr__(self, name):
        fn = getattr(fastnn, name)

        def call(*args, **kwargs):
            if self.xp is None:
                return call_unmodified(fn, *args, **kwargs)
            dev = [self._to(a) for a in args]
            kdev = {k: self._to(v) for k, v in kwargs.items()}
            out = fn(*dev, **kdev)
            for host, d in list(zip(args, dev)) + [(kwargs[k], kdev[k]) for k in kwargs]:
                if isinstance(host, np.ndarray):
                    np.testing.assert_array_equal(self.xp.asnumpy(d), host,
                                                  err_msg=f"{name}: a device input was modified")
            return self._back(out)

        call.__name__ = name
        return call

    def _to(self, a):
        if not isinstance(a, np.ndarray):
            return a
        owner = _owner(a)
        if owner is a or not (owner.flags.c_contiguous or owner.flags.f_contiguous):
            return self.xp.array(a, order="K")
        buf = self.xp.array(owner, order="K")
        offset = a.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
        return self.xp.ndarray(a.shape, a.dtype, buf.data + offset, strides=a.strides)

    def _back(self, out):
        if isinstance(out, tuple):
            return tuple(self._back(o) for o in out)
        if out is None:
            return None
        assert isinstance(out, self.xp.ndarray), f"expected a {self.xp.__name__} array, got {type(out)}"
        return self.xp.asnumpy(out)


K = Kernels()


def param_id(params):
    """Readable test id for a params dict; array-valued params show as their key only."""
    if not params:
        return "default"
    return ",".join(k if isinstance(v, np.ndarray) or v == "C" else f"{k}={v}"
                    for k, v in params.items())


def shape_id(shape):
    return "x".join(map(str, shape)) if len(shape) else "scalar"
