"""The CUDA program of the CuPy backend, described once for every consumer.

* ``program(dtype)`` -> (source, options, name_expressions): what the CuPy backend hands
  to ``cupy.RawModule`` and what the NVRTC check (tools/nvrtc_check.py) compiles without
  a GPU. The source is csrc/cuda/kernels.cu with the files it includes inlined (its
  own .cu / .cuh parts and the ``fastnn/...`` headers, the generated op_table.h among them), so CuPy's on-disk kernel cache is keyed on the full text (a header edit can
  never be served a stale binary) and no include path is needed at run time.
* ``KERNELS``: each kernel's parameter types, in order. The backend converts its launch
  arguments with them (a Python int never reaches a ``long long`` parameter as the wrong
  width), and the CPU emulator (tests/cuda_emu) generates its C wrappers from them and
  checks them against the kernels' real signatures at compile time.

The .cu and .h files ship inside the package (fastnn/_csrc, copied by setup.py); from a
source checkout (editable install) they are read from the repository's csrc/.
"""
import glob
import os
import re

from .. import _registry as R
from .._extbuild import csrc_dir

_ACT = ["double"] * 7 + ["int"]                       # FK_ACT_DECL
_LOSS = ["int", "double", "double", "double", "int", "int", "int", "const T*", "long long"]  # FK_LOSS_DECL

# name -> parameter types ("T" is the dtype's C type).
KERNELS = {
    "act_forward": ["const T*", "T*", "long long", "int"] + _ACT,
    "act_backward": ["const T*", "const T*", "T*", "long long", "int", "int"] + _ACT,
    "softmax_forward": ["const T*", "T*", "long long", "long long", "int"],
    "softmax_backward": ["const T*", "const T*", "T*", "long long", "long long", "int", "int"],
    "bias_act": ["T*", "T*", "const T*", "long long", "long long", "int"] + _ACT,
    "bias_act_acc": ["const float*", "T*", "T*", "const T*", "long long", "long long", "int"] + _ACT,
    "from_f32": ["const float*", "T*", "long long"],
    "split_f32": ["const float*", "T*", "T*", "long long"],
    "add_bias_f32": ["float*", "const T*", "long long", "long long"],
    "act_grad": ["const T*", "const T*", "T*", "T*", "double*", "long long", "long long", "long long", "int", "int"] + _ACT,
    "col_reduce": ["const double*", "long long", "long long", "T*"],
    "sum_all": ["const T*", "long long", "double*"],
    "loss_forward": ["const T*", "const T*", "T*", "long long"] + _LOSS + ["double*"],
    "loss_backward": ["const T*", "const T*", "const T*", "double", "T*", "T*", "long long"] + _LOSS,
    "class_rows": ["const T*", "const long long*", "const T*", "const T*", "double", "T*", "T*", "long long",
                   "long long", "int", "long long", "double"],
    "soft_rows": ["const T*", "const T*", "const T*", "const T*", "double", "T*", "T*", "T*", "long long",
                  "long long", "double"],
}
NAMESPACE = "fk"
# numpy dtype name -> the kernels' storage type. "bfloat16" is ml_dtypes.bfloat16, the
# bfloat16 dtype of numpy, jax, TensorFlow and CuPy >= 14.
CTYPES = {"float32": "float", "float64": "double", "float16": "__half", "bfloat16": "__nv_bfloat16"}
HALF_DTYPES = ("float16", "bfloat16")

# Options for NVRTC (CuPy adds the architecture and, for RawModule, nothing else that
# changes the language; tools/nvrtc_check.py compiles with and without
# --device-as-default-execution-space, which some CuPy versions add).
OPTIONS = ("-std=c++17",)
# The 16-bit programs also get HALF_DEFINE (common.cuh then includes cuda_fp16.h and
# cuda_bf16.h) and -I the directory holding those headers (cuda_include_dir()): NVRTC has
# no built-in copy of them. The float32 / float64 programs need no CUDA header.
HALF_DEFINE = "-DFASTNN_CUDA_16BIT=1"


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)


def _inline(path, inc_dir, seen):
    """The text of path with its quoted includes inlined, each once: "fastnn/..." from
    inc_dir, any other name (the program's own .cu / .cuh files) from path's directory."""
    text = open(path, encoding="utf-8").read()
    here = os.path.dirname(path)

    def sub(m):
        rel = m.group(1)
        full = os.path.normpath(os.path.join(inc_dir if rel.startswith("fastnn/") else here, rel))
        if full in seen:
            return f"// (already included: {rel})"
        seen.add(full)
        return f"// ---- begin {rel}\n{_inline(full, inc_dir, seen)}\n// ---- end {rel}"
    return _INCLUDE.sub(sub, text)


def source():
    d = csrc_dir()
    text = _inline(os.path.join(d, "cuda", "kernels.cu"), os.path.join(d, "include"), set())
    _check_table(text)
    return text


_HASH = re.compile(r"kOpTableHash = 0x([0-9a-f]+)u;")


def _check_table(text):
    """The program's op codes are the generated op_table.h's: it must be the header of this
    registry (an installed copy of csrc/ older or newer than the Python package is not)."""
    m = _HASH.search(text)
    if m is None or int(m.group(1), 16) != R.OP_TABLE_HASH:
        raise RuntimeError("fastnn's CUDA sources were generated from another op table than fastnn._registry "
                           "(csrc/include/fastnn/op_table.h is stale: run python tools/gen_op_table.py)")


def name_expression(kernel, dtype):
    return f"{NAMESPACE}::{kernel}<{CTYPES[str(dtype)]}>"


def _has_half_headers(d):
    return all(os.path.isfile(os.path.join(d, h)) for h in ("cuda_fp16.h", "cuda_bf16.h"))


def cuda_include_dir():
    """The directory of CUDA's cuda_fp16.h / cuda_bf16.h (and the runtime headers they
    include) for NVRTC, first found of: $FASTNN_CUDA_INCLUDE, $CUDA_PATH/include,
    $CUDA_HOME/include, /usr/local/cuda/include, the include/ of the nvidia-cuda-runtime /
    nvidia-cuda-nvrtc wheels. None if there is none."""
    cands = [os.environ.get("FASTNN_CUDA_INCLUDE", "")]
    cands += [os.path.join(os.environ[v], "include") for v in ("CUDA_PATH", "CUDA_HOME") if os.environ.get(v)]
    cands.append("/usr/local/cuda/include")
    try:
        import nvidia  # noqa: PLC0415 - the CUDA wheels' namespace package, optional
        for p in nvidia.__path__:
            cands += sorted(glob.glob(os.path.join(p, "cu*", "include")), reverse=True)
            cands.append(os.path.join(p, "cuda_runtime", "include"))
    except ImportError:
        pass
    for d in cands:
        if d and _has_half_headers(d):
            return d
    return None


def options(dtype):
    """The NVRTC options of the module for one dtype."""
    if str(dtype) not in HALF_DTYPES:
        return OPTIONS
    inc = cuda_include_dir()
    if inc is None:
        raise RuntimeError(f"fastnn cupy backend: {dtype} kernels need CUDA's cuda_fp16.h and cuda_bf16.h, found in "
                           f"none of $FASTNN_CUDA_INCLUDE, $CUDA_PATH/include, $CUDA_HOME/include, "
                           f"/usr/local/cuda/include or the nvidia-cuda-runtime wheel; expected one of them (set "
                           f"FASTNN_CUDA_INCLUDE to the directory holding cuda_fp16.h)")
    return OPTIONS + (HALF_DEFINE, "-I" + inc)


def program(dtype):
    """(source, options, name_expressions) of the module for one dtype."""
    return source(), options(dtype), tuple(name_expression(k, dtype) for k in KERNELS)


def signature(kernel, dtype):
    """The C parameter types of one kernel instance."""
    ct = CTYPES[str(dtype)]
    return [re.sub(r"\bT\b", ct, t) for t in KERNELS[kernel]]


def nvcc_instances():
    """A .cu translation unit that instantiates every kernel, for every dtype of CTYPES
    (the 16-bit ones included), for nvcc -c (CI)."""
    lines = [f"#define {HALF_DEFINE[2:].replace('=', ' ')}", '#include "kernels.cu"']
    for dt in CTYPES:
        for k in KERNELS:
            sig = ", ".join(signature(k, dt))
            lines.append(f"template __global__ void {name_expression(k, dt)}({sig});")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m fastnn._backends._cuda_src > inst.cu
    print(nvcc_instances(), end="")
