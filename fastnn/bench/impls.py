"""Which implementations can run here: fastnn's CPU backends, torch, numpy.

Everything optional is imported here, once, so that a missing torch or an
unbuilt fastnn turns into a note in the header instead of a traceback.
"""

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

    def fastnn_impls(self):
        """[(impl name, context factory)] for each CPU backend of fastnn."""
        return [(f"fastnn[{name}]", _backend_context(self.fastnn, name))
                for name in self.backends]


def _backend_context(fastnn, name):
    return lambda: fastnn.use_backend(name)


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


def load():
    """A Frameworks with whatever imports cleanly."""
    fw = Frameworks()
    _load_fastnn(fw)
    _load_torch(fw)
    return fw


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
    return lines
