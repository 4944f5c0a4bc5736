"""Builds the CPU emulation of the CUDA kernels: csrc/cuda/kernels.cu compiled by g++
with emu.h, plus one extern "C" launcher per kernel and dtype generated from
fastnn._backends._cuda_src.KERNELS (a static_assert checks each against the kernel's real
signature, so the table the CuPy backend converts its arguments with is proven too).

    lib = build()        # ctypes.CDLL, cached by the hash of the sources
"""
import ctypes
import hashlib
import os
import subprocess
import tempfile

from fastnn._backends import _cuda_src as S

HERE = os.path.dirname(os.path.abspath(__file__))
CTYPE = {"long long": ctypes.c_longlong, "int": ctypes.c_int, "double": ctypes.c_double}


def wrapper_source():
    lines = ['#include "emu.h"', '#include "cuda/kernels.cu"', "#include <type_traits>", ""]
    for dt in S.CTYPES:
        for k in S.KERNELS:
            sig = S.signature(k, dt)
            params = ", ".join(f"{t} a{i}" for i, t in enumerate(sig))
            args = ", ".join(f"a{i}" for i in range(len(sig)))
            name = S.name_expression(k, dt)
            lines += [
                f'extern "C" void emu_{k}_{S.CTYPES[dt]}(unsigned gx, unsigned gy, unsigned bx, {params}) {{',
                f"  static_assert(std::is_same_v<decltype(&{name}), void (*)({', '.join(sig)})>,",
                f'                "KERNELS[{k!r}] does not match the kernel");',
                f"  emu::launch(dim3{{gx, gy, 1}}, dim3{{bx, 1, 1}}, [&] {{ {name}({args}); }});",
                "}",
            ]
    return "\n".join(lines) + "\n"


def build(sanitize=None):
    """The emulator library (sanitize: None or "thread")."""
    csrc = S.csrc_dir()
    src = wrapper_source()
    h = hashlib.sha256(src.encode())
    h.update(S.source().encode())  # kernels.cu with every fastnn/ header it includes, inlined
    for p in (os.path.join(HERE, "emu.h"), os.path.join(csrc, "include", "fastnn", "cpu_math.h"),
              os.path.join(csrc, "include", "fastnn", "half.h")):
        h.update(open(p, "rb").read())
    h.update(str(sanitize).encode())
    out_dir = os.path.join(tempfile.gettempdir(), "fastnn_cuda_emu")
    os.makedirs(out_dir, exist_ok=True)
    so = os.path.join(out_dir, f"emu_{h.hexdigest()[:16]}.so")
    if not os.path.exists(so):
        cpp = so[:-3] + ".cpp"
        with open(cpp, "w") as f:
            f.write(src)
        cmd = ["g++", "-std=c++20", "-O1", "-g", "-shared", "-fPIC", "-pthread", "-Wall", "-Wno-unused-function",
               "-I" + HERE, "-I" + csrc, "-I" + os.path.join(csrc, "include"), cpp, "-o", so + ".tmp"]
        if sanitize:
            cmd.insert(1, f"-fsanitize={sanitize}")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"building the CUDA emulator failed:\n{' '.join(cmd)}\n{r.stderr[-6000:]}")
        os.replace(so + ".tmp", so)
    lib = ctypes.CDLL(so)
    for dt in S.CTYPES:
        for k in S.KERNELS:
            fn = getattr(lib, f"emu_{k}_{S.CTYPES[dt]}")
            fn.argtypes = [ctypes.c_uint] * 3 + [ctypes.c_void_p if t.endswith("*") else CTYPE[t]
                                                 for t in S.signature(k, dt)]
            fn.restype = None
    return lib
