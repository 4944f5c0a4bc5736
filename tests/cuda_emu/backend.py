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

import numpy as np

import fastnn._backends as _pkg
from fastnn._backends import _cuda_src as S

from .build import build

NP = {"float": np.float32, "double": np.float64, "long long": np.int64}


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


def load():
    path = os.path.join(os.path.dirname(_pkg.__file__), "cupy.py")
    spec = importlib.util.spec_from_file_location("fastnn._backends._cupy_emu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.use_runtime(EmuRuntime(build()), "cpu")
    return mod
