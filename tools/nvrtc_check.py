"""Compile the CuPy backend's CUDA program with NVRTC, without a GPU (CI).

Uses exactly what the backend hands to cupy.RawModule (fastnn._backends._cuda_src.program:
source, options, name expressions) for every dtype (float32, float64, float16, bfloat16; the
16-bit programs with -I the CUDA include directory holding cuda_fp16.h / cuda_bf16.h,
_cuda_src.cuda_include_dir()), for each architecture, with
and without --device-as-default-execution-space (added by some CuPy versions), and
fails on any error or on any non-empty log (warnings included). NVRTC is called
through ctypes from the pinned nvidia-cuda-nvrtc wheel (or $FASTNN_NVRTC).

    python tools/nvrtc_check.py [--arch 75,80,90,120]
"""
import argparse
import ctypes
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fastnn._backends import _cuda_src  # noqa: E402


def load_nvrtc():
    cands = [os.environ.get("FASTNN_NVRTC", "")]
    try:
        import nvidia  # the nvidia-cuda-nvrtc wheel (a namespace package)
        for p in nvidia.__path__:
            cands += sorted(glob.glob(os.path.join(p, "cu*", "lib", "libnvrtc.so.*")))
            cands += sorted(glob.glob(os.path.join(p, "cuda_nvrtc", "lib", "libnvrtc.so.*")))
    except ImportError:
        pass
    cands += ["libnvrtc.so"]
    for c in cands:
        if c and "builtins" not in c and "alt" not in os.path.basename(c):
            try:
                # NVRTC dlopens its builtins library by soname: load it first, from beside it
                for b in sorted(glob.glob(os.path.join(os.path.dirname(c), "libnvrtc-builtins.so.*"))):
                    if ".alt." not in b:
                        ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
                return ctypes.CDLL(c), c
            except OSError:
                continue
    raise SystemExit("nvrtc_check: libnvrtc not found (pip install 'nvidia-cuda-nvrtc==13.0.*')")


def compile_one(lib, src, options, names, arch, default_device):
    prog = ctypes.c_void_p()
    check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"fastnn_kernels.cu", 0, None, None),
          "create")
    try:
        for n in names:
            check(lib, lib.nvrtcAddNameExpression(prog, n.encode()), f"name expression {n}")
        opts = list(options) + [f"--gpu-architecture=compute_{arch}"]
        if default_device:
            opts.append("--device-as-default-execution-space")
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace").strip()
        if rc != 0 or log:
            return f"arch {arch} opts {opts}: rc={rc}\n{log}"
        for n in names:  # every name expression must resolve to a lowered name
            out = ctypes.c_char_p()
            check(lib, lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(out)), f"lowered name {n}")
        ptx = ctypes.c_size_t()
        check(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(ptx)), "ptx size")
        return None
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def check(lib, rc, what):
    if rc != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise SystemExit(f"nvrtc_check: {what}: {lib.nvrtcGetErrorString(rc).decode()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="75,80,90,120")
    a = ap.parse_args()
    lib, path = load_nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    print(f"NVRTC {major.value}.{minor.value} ({path})")
    failures = []
    print(f"CUDA headers for the 16-bit programs: {_cuda_src.cuda_include_dir()}")
    for dtype in _cuda_src.CTYPES:
        src, options, names = _cuda_src.program(dtype)
        for arch in a.arch.split(","):
            for dd in (False, True):
                t = time.perf_counter()
                err = compile_one(lib, src, options, names, arch.strip(), dd)
                status = "FAIL" if err else "ok"
                print(f"  {dtype:8s} sm_{arch} {'(default device)' if dd else '':17s} {len(names)} kernels: {status} "
                      f"({time.perf_counter() - t:.1f}s)")
                if err:
                    failures.append(err)
    if failures:
        print("\n\n".join(failures))
        raise SystemExit(1)
    print("nvrtc check: OK")


if __name__ == "__main__":
    main()
