"""Which implementations can run here: fastnn's CPU backends, torch, numpy.

Everything optional is imported here, once, so that a missing torch or an
unbuilt fastnn turns into a note in the header instead of a traceback.

Two extra kinds of row, both what a reader would otherwise ask about:
- "torch.compile": the same torch function under torch.compile (inductor), what a
  user tries before reaching for a kernel library. Compiling happens in the
  correctness check, outside the timings.
- "fastnn[cpp] no cache": fastnn's C++ backend with its output buffer cache turned
  off (csrc/cpu/pool.h). By default large outputs come from buffers that earlier
  outputs gave back, already faulted in; torch and numpy map fresh pages for every
  output > 32 MB (glibc's mmap threshold) and pay ~16k first-touch page faults per
  64 MB. This row shows what fastnn costs when it pays them too.
"""

import contextlib
from dataclasses import dataclass, field
from typing import Optional

# Backends that serve GPU arrays; this benchmark times numpy (CPU) inputs only.
GPU_BACKENDS = ("cupy",)


@dataclass
class Frameworks:
    fastnn: Optional[object] = None       # the fastnn module, if its API is importable
    backends: list = field(default_factory=list)   # CPU backends to time
    torch: Optional[object] = None
    F: Optional[object] = None            # torch.nn.functional
    notes: list = field(default_factory=list)       # why something is skipped
    compile: bool = True     # add torch.compile rows where a family has them
    cache_rows: bool = True  # add "fastnn[cpp] no cache" rows where outputs are large

    def fastnn_impls(self, cache_row=False):
        """[(impl name, context factory)] for each CPU backend of fastnn, plus the
        C++ backend with its output cache off when `cache_row` (and it can be)."""
        out = [(f"fastnn[{name}]", _backend_context(self.fastnn, name))
               for name in self.backends]
        if cache_row and self.cache_rows and _has_cache(self.fastnn):
            out.append((NO_CACHE, lambda: _no_cache(self.fastnn)))
        return out

    def torch_compile(self, fn):
        """torch.compile(fn), or None where compile rows are off or unavailable.

        Dynamo's caches are reset first: every case builds its functions from the
        same code objects, and past the recompile limit (8) dynamo would silently run
        them eagerly -- a "torch.compile" row that is really torch eager.
        """
        if not self.compile or self.torch is None:
            return None
        import torch._dynamo
        torch._dynamo.reset()
        return self.torch.compile(fn, dynamic=False)


NO_CACHE = "fastnn[cpp] no cache"


def _backend_context(fastnn, name):
    return lambda: fastnn.use_backend(name)


def _has_cache(fastnn):
    """True where fastnn's C++ backend, and so its output buffer cache, is available."""
    return hasattr(fastnn, "set_cache_limit") and "cpp" in fastnn.available_backends()


@contextlib.contextmanager
def _no_cache(fastnn):
    """The C++ backend with its output cache off (limit 0, emptied) inside the block."""
    limit = fastnn.cache_info()["limit_bytes"]
    fastnn.set_cache_limit(0)
    fastnn.empty_cache()
    try:
        with fastnn.use_backend("cpp"):
            yield
    finally:
        fastnn.set_cache_limit(limit)


def disable_output_cache(fw):
    """--no-output-cache: the C++ backend's cache off for the whole run."""
    if fw.fastnn is None or not _has_cache(fw.fastnn):
        fw.notes.append("--no-output-cache: this fastnn build has no output cache")
        return
    fw.fastnn.set_cache_limit(0)
    fw.fastnn.empty_cache()
    fw.cache_rows = False  # every fastnn[cpp] row is already cache-off
    fw.notes.append("output cache: OFF for every fastnn row (--no-output-cache)")


def _load_fastnn(fw):
    try:
        import fastnn
    except Exception as exc:  # a broken build must not hide the torch/numpy rows
        fw.notes.append(f"fastnn rows skipped: import fastnn failed: "
                        f"{type(exc).__name__}: {exc}")
        return
    if not hasattr(fastnn, "dense_forward"):
        fw.notes.append("fastnn rows skipped: the fastnn package is not built yet "
                        "(no fastnn.dense_forward)")
        return
    try:
        available = list(fastnn.available_backends())
    except Exception as exc:
        fw.notes.append(f"fastnn rows skipped: available_backends() raised {exc!r}")
        return
    fw.fastnn = fastnn
    fw.backends = [b for b in available if b not in GPU_BACKENDS]
    if not fw.backends:
        fw.notes.append(f"fastnn rows skipped: no CPU backend available "
                        f"({describe_backends(fastnn)})")


def _load_torch(fw):
    try:
        import torch
        import torch.nn.functional as F
    except Exception as exc:
        fw.notes.append(f"torch rows skipped: import torch failed: {exc}")
        return
    fw.torch, fw.F = torch, F


def load(fastnn=True, torch=True):
    """A Frameworks with whatever imports cleanly, of the libraries asked for (a
    benchmark process that times fastnn alone does not import torch, and back)."""
    fw = Frameworks()
    if fastnn:
        _load_fastnn(fw)
    if torch:
        _load_torch(fw)
    return fw


# Which process an implementation is timed in when each library runs alone
# (procs.py): fastnn's numpy API without torch imported, torch without fastnn,
# numpy alone, and fastnn.torch (which is torch plus fastnn by nature).
GROUPS = ("fastnn", "torch", "fastnn.torch", "numpy")


def group_of(impl_name):
    """The process group (GROUPS) of implementation `impl_name`."""
    if impl_name.startswith("fastnn.torch"):
        return "fastnn.torch"
    if impl_name.startswith("fastnn"):
        return "fastnn"
    if impl_name.startswith("torch"):
        return "torch"
    return "numpy"


def load_group(group):
    """The Frameworks a process of `group` imports."""
    return load(fastnn=group in ("fastnn", "fastnn.torch"), torch=group in ("torch", "fastnn.torch"))


def describe_backends(fastnn):
    """'cpp ok, numba: not installed' from fastnn.backends()."""
    try:
        status = fastnn.backends()
    except Exception as exc:
        try:
            available = ", ".join(fastnn.available_backends())
        except Exception:
            available = "?"
        return f"available: {available}; fastnn.backends() raised {exc!r}"
    return ", ".join(f"{k} ok" if v == "ok" else f"{k}: {v}" for k, v in status.items())


def versions(fw):
    """Header lines: library versions and thread counts."""
    import numpy as np
    from . import machine
    blas = machine.numpy_blas()
    lines = [f"numpy: {np.__version__}" + (f" ({blas})" if blas else "")]
    if fw.torch is not None:
        lines.append(f"torch: {fw.torch.__version__} "
                     f"({fw.torch.get_num_threads()} threads, its default, unchanged)")
    if fw.fastnn is not None:
        threads = getattr(fw.fastnn, "num_threads", None)
        threads = f"; {threads()} threads" if callable(threads) else ""
        lines.append(f"fastnn: {getattr(fw.fastnn, '__version__', '?')} "
                     f"({describe_backends(fw.fastnn)}{threads})")
        info = fw.fastnn.cache_info() if hasattr(fw.fastnn, "cache_info") else None
        if info is not None:
            lines.append(f"fastnn output cache: limit {info['limit_bytes'] >> 20} MB "
                         f"(rows '{NO_CACHE}' run with it off)")
    return lines
