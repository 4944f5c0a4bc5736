"""The CuPy backend's own module (fastnn/_backends/cupy.py), loaded a second time and run
on the CPU emulator: numpy arrays, kernels as C++ threads (build.py). Registered by the
tests' conftest as backend "cupy_emu", so the whole kernel suite checks the CUDA kernels
and the backend's launch logic against the same references as every other backend.

Launch limits are small (blocks of 32 threads, grids of a few blocks) so that every
grid-stride loop, multi-block reduction and row-strided kernel path is taken on the
tests' small shapes.
"""
import contextlib
import importlib.util
import os

import ml_dtypes
import numpy as np

import fastnn._backends as _pkg
from fastnn._backends import _cuda_src as S

from .build import build

NP = {"float": np.float32, "double": np.float64, "long long": np.int64, "__half": np.float16,
      "__nv_bfloat16": ml_dtypes.bfloat16}


class EmuRuntime:
    xp = np
    max_block = 32
    elem_block = 32

    def __init__(self, lib):
        self.lib = lib

    def grid_limit(self):
        return 6

    def max_threads(self, dtype, name):
        return self.max_block

    def on(self, a):
        return contextlib.nullcontext()  # one device: nothing to switch to

    def gemm(self, a, b, out, alpha, beta, tf32):
        """cublasGemmEx emulated (the CuPy runtime's gemm): operands widened exactly to
        float32 (TF32: rounded to 10 mantissa bits, nearest-even, as the tensor cores
        take them), product and accumulation in float32, alpha a b (+ beta out) rounded once to
        out's dtype (numpy / ml_dtypes conversions: round-to-nearest-even)."""
        assert a.ndim == b.ndim == out.ndim == 2 and out.flags.c_contiguous and out.flags.writeable
        assert a.dtype == b.dtype and (out.dtype == a.dtype or out.dtype == np.float32), (a.dtype, b.dtype, out.dtype)
        if a.size == 0 or b.size == 0:  # as CupyRuntime.gemm: no cuBLAS call for an empty product
            if a.shape[0] and b.shape[1] and not beta:
                out.fill(0)
            return
        for op in (a, b):  # what cuBLAS can read: unit stride along one axis (CupyRuntime's _blas_operand)
            assert op.strides[1] == op.itemsize or op.strides[0] == op.itemsize, f"gemm operand strides {op.strides}"
        af, bf = a.astype(np.float32), b.astype(np.float32)
        if tf32:
            af, bf = _tf32(af), _tf32(bf)
        r = np.float32(alpha) * np.matmul(af, bf)
        if beta:
            r = out.astype(np.float32) + np.float32(beta) * r
        out[...] = r.astype(out.dtype)

    def launch(self, dtype, name, grid, block, args):
        sig = S.signature(name, dtype)
        assert len(sig) == len(args), f"{name}: {len(args)} arguments for {len(sig)} parameters"
        assert len(block) == 1 and block[0] & (block[0] - 1) == 0, f"{name}: block {block} is not a power of two"
        assert all(g >= 1 for g in grid), f"{name}: empty grid {grid}"
        conv = []
        for i, (t, a) in enumerate(zip(sig, args)):
            if t.endswith("*"):
                if a is None:
                    conv.append(None)
                    continue
                base = t.replace("const ", "").rstrip("*").strip()
                assert isinstance(a, np.ndarray), f"{name} arg {i}: {type(a)} for {t}"
                assert a.dtype == NP[base], f"{name} arg {i}: dtype {a.dtype} for {t}"
                assert a.flags.c_contiguous, f"{name} arg {i}: not C-contiguous"
                if not t.startswith("const"):
                    assert a.flags.writeable, f"{name} arg {i}: writes to a read-only array"
                conv.append(a.ctypes.data)
            else:
                assert not isinstance(a, np.ndarray), f"{name} arg {i}: an array for {t}"
                conv.append(a)
        gx, gy = (tuple(grid) + (1,))[:2]
        getattr(self.lib, f"emu_{name}_{S.CTYPES[str(np.dtype(dtype))]}")(gx, gy, block[0], *conv)


def _tf32(a):
    """float32 values rounded to TF32's 10 mantissa bits (nearest-even; inf / NaN kept)."""
    u = a.view(np.uint32)
    r = ((u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)).view(np.float32)
    return np.where(np.isfinite(a), r, a)


def load():
    path = os.path.join(os.path.dirname(_pkg.__file__), "cupy.py")
    spec = importlib.util.spec_from_file_location("fastnn._backends._cupy_emu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.use_runtime(EmuRuntime(build()), "cpu")
    return mod
