"""fastnn.torch's C++ autograd nodes and the CPU kernels of its custom ops fastnn::*
(csrc/torch/native.cpp): built on first use, cached.

The extension is compiled against the torch that is imported (its headers, its ABI) the
first time fastnn.torch runs an op on CPU tensors, with the C++ compiler ($CXX or g++;
~20 s, once per torch version and source), and cached under $FASTNN_CACHE_DIR
(default ~/.cache/fastnn). It calls the kernels of fastnn._C through their C++ table, so
it needs no copy of them and gives the same bits as the Python path.

Where it cannot be built or loaded (no compiler, a torch without headers, the C++ backend
unavailable), or with FASTNN_TORCH_NATIVE=0, fastnn.torch runs its Python
torch.autograd.Functions instead (same kernels, same results, a Python autograd node's
cost more per op: examples/torch_overhead.py); ``status()`` says which and why.

Loading it also registers its C++ kernels for the CPU dispatch key of the custom ops
fastnn::* (defined in fastnn/torch/_ops.py): compiled and exported graphs then run them.

Specs (a resolved activation or loss) are registered with the extension once and then
referenced by a small integer: ``act_id(spec)`` / ``loss_id(spec)``.
"""
import os
import sys
import sysconfig
from typing import Any, Dict, Tuple

import torch

from fastnn import _extbuild

_act_ids: Dict[int, Tuple[Any, int]] = {}
_loss_ids: Dict[int, Tuple[Any, int]] = {}  # id(spec) -> (spec, extension id); the spec is held so its id stays unique


def _sources():
    csrc = _extbuild.csrc_dir()
    return csrc, os.path.join(csrc, "torch", "native.cpp"), _extbuild.front_headers(csrc)


def _build_command(src, out, csrc, cxx):
    from torch.utils import cpp_extension as ce

    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True))
    inc = ce.include_paths() + [sysconfig.get_paths()["include"], csrc, os.path.join(csrc, "include")]
    libdir = os.path.join(os.path.dirname(torch.__file__), "lib")
    # -fopenmp: at::parallel_for's OpenMP body is compiled here (ATen/ParallelOpenMP.h); at run
    # time its GOMP calls bind to the libgomp torch already loaded (one soname, one runtime).
    return ([cxx, "-O2", "-std=c++20", "-shared", "-fPIC", "-fvisibility=hidden", "-w", "-fopenmp",
             f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DTORCH_API_INCLUDE_EXTENSION_H",
             "-DTORCH_EXTENSION_NAME=_fastnn_torch_native"]
            + ["-I" + p for p in inc]
            + [src, "-o", out, "-L" + libdir, "-Wl,-rpath," + libdir, "-lc10", "-ltorch_cpu", "-ltorch",
               "-ltorch_python"])


def _build():
    """Path of the built extension (compiled now unless cached)."""
    csrc, src, headers = _sources()
    return _extbuild.build("_fastnn_torch_native", [src] + headers,
                           lambda out, cxx: _build_command(src, out, csrc, cxx),
                           f"{torch.__version__}|{sys.version}", "torch_native")


def _load():
    from importlib.machinery import ExtensionFileLoader
    from importlib.util import module_from_spec, spec_from_loader

    from fastnn._backends import cpp

    if cpp.unavailable():
        raise RuntimeError(f"the C++ backend is unavailable ({cpp.unavailable()})")
    path = _build()
    loader = ExtensionFileLoader("_fastnn_torch_native", path)
    mod = module_from_spec(spec_from_loader("_fastnn_torch_native", loader))
    loader.exec_module(mod)
    mod.init(cpp.front_end_table(), os.environ.get("FASTNN_TORCH_SHARED_THREADS", "1") != "0")
    return mod


_ext = _extbuild.Lazy(_load, "FASTNN_TORCH_NATIVE", "fastnn.torch: C++ autograd nodes", "the Python path")


def module():
    """The extension, or None (then ``status()`` says why)."""
    return _ext.get()


def tried():
    """True once loading the extension has been attempted (whatever the outcome)."""
    return _ext._tried


def status():
    """"ok" if the C++ autograd nodes are in use, else why not."""
    return "ok" if module() is not None else _ext.why


def act_id(spec):
    """The extension's id of a resolved activation (ActSpec)."""
    hit = _act_ids.get(id(spec))
    if hit is not None:
        return hit[1]
    i = _ext.value.register_activation(spec.code, [float(v) for v in spec.numeric], bool(spec.from_y), spec.axis)
    _act_ids[id(spec)] = (spec, i)
    return i


_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2, "batchmean": 3}  # csrc/front/front.h, Reduction


def loss_id(spec):
    """The extension's id of a resolved loss (LossSpec) without array parameters, or None."""
    hit = _loss_ids.get(id(spec))
    if hit is not None:
        return hit[1]
    p = spec.params
    if p.get("weight") is not None or p.get("pos_weight") is not None:
        return None
    i = _ext.value.register_loss(spec.code, list(spec.numeric))
    _loss_ids[id(spec)] = (spec, i)
    return i


def reduction_code(reduction):
    return _REDUCTIONS[reduction]
