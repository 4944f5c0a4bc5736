"""fastnn.info() and `python -m fastnn`: what this installation runs and why.

Everything here is read without compiling or timing anything: the backends and why any
is unavailable, the CPU's instruction-set level and the code paths the C++ backend chose
for it (fastnn._C), OpenBLAS's build and threads, and which framework extensions are in
the cache (fastnn/_extbuild.py). Frameworks are not imported unless ``check=True``
(importing tensorflow alone takes seconds); without it an extension counts as built
when the cache holds one built for the installed framework's version and this Python.
"""
import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
from typing import Any, Dict, List, Optional

from . import _extbuild

# distributions whose version an extension is keyed on (the key's first "|" field)
_VERSION_OF = {"torch": ("torch",), "tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jaxlib",)}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown cpu"


def cpu_flags() -> set:
    """The CPU's feature flags (Linux /proc/cpuinfo names: avx2, avx512f, ...); empty
    where unknown."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    return set()


def isa_level(flags: Optional[set] = None) -> str:
    """The vector instruction level that decides fastnn's kernels: "AVX512-BF16",
    "AVX-512", "AVX2", or "baseline" (none of them: the portable kernels)."""
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return "unknown" if platform.machine() in ("x86_64", "AMD64") else f"{platform.machine()} (portable kernels)"
    if "avx512f" in flags:
        return "AVX512-BF16" if "avx512_bf16" in flags else "AVX-512"
    return "AVX2" if "avx2" in flags and "fma" in flags else "baseline"


def core_count() -> int:
    """Cores this process may run on (its affinity mask, else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpp():
    from ._backends import cpp

    return None if cpp.unavailable() else cpp


def describe_paths(paths: Dict[str, Any]) -> List[str]:
    """Plain lines for the C++ backend's code_paths(): which product and vector kernels run."""
    lines = []
    for key, value in paths.items():
        if key == "gemm" and isinstance(value, (tuple, list)) and len(value) == 2:
            lib, min_macs = value
            if str(lib).startswith("fastnn"):
                isa = str(lib).split("-", 1)[1].upper().replace("AVX512", "AVX-512") if "-" in str(lib) else ""
                lines.append(f"matrix products: fastnn's own {isa} sgemm from {int(min_macs):,} multiply-adds "
                             f"up, OpenBLAS below (float64: OpenBLAS)")
            else:
                lines.append(f"matrix products: {'OpenBLAS' if str(lib).lower() == 'openblas' else lib}")
        elif key == "blas":
            continue  # its own line
        else:
            text = {"avx512": "AVX-512 vector kernel", "avx2": "AVX2 vector kernel",
                    "portable": "portable C++ (compiler-vectorized)"}.get(str(value), str(value))
            lines.append(f"{key} kernel: {text}")
    return lines


def code_paths() -> Dict[str, Any]:
    """The C++ backend's choices on this CPU (empty where it is unavailable)."""
    cpp = _cpp()
    return dict(cpp.code_paths()) if cpp is not None else {}


def openblas() -> str:
    """OpenBLAS's build and thread count as fastnn's C++ backend links it, or why unknown."""
    cpp = _cpp()
    if cpp is None:
        return "unknown (the C++ backend is unavailable)"
    config = str(cpp.code_paths().get("blas", "?"))
    threads = "?"
    with contextlib.suppress(Exception):
        import ctypes

        import scipy_openblas32 as ob

        lib = ctypes.CDLL(os.path.join(ob.get_lib_dir(), ob.get_library(fullname=True)))
        threads = str(lib.scipy_openblas_get_num_threads())
    return f"{config}; {threads} threads (OPENBLAS_NUM_THREADS)"


def _installed(ext: _extbuild.Extension) -> Optional[str]:
    for dist in _VERSION_OF[ext.target]:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return None


def extension_status(ext: _extbuild.Extension, check: bool = False) -> Dict[str, Any]:
    """{"target", "title", "installed" (framework version or None), "built" (bool),
    "path" (the matching cached file or None), "cached" (all files), "note"}."""
    installed = _installed(ext) if importlib.util.find_spec(ext.framework) else None
    cached = _extbuild.cached(ext.sub)
    out: Dict[str, Any] = {"target": ext.target, "title": ext.title, "what": ext.what, "installed": installed,
                              "built": False, "path": None, "cached": cached, "note": ""}
    if installed is None:
        out["note"] = f"{ext.framework} is not installed"
        return out
    if check:
        try:
            path = _extbuild.expected_path(ext.target)
        except Exception as e:  # noqa: BLE001 - reported in the listing
            out["note"] = f"cannot be built here: {type(e).__name__}: {str(e)[:200]}"
            return out
        out["built"], out["path"] = os.path.exists(path), path
        out["note"] = "checked against the installed framework and sources"
        return out
    key = f"{installed}|{sys.version}"
    match = next((c for c in cached if c["built_for"] == key), None)
    if match is not None:
        out["built"], out["path"] = True, match["path"]
        out["note"] = f"built for {ext.framework} {installed} and this Python"
    return out


def collect(check: bool = False) -> Dict[str, Any]:
    """Everything info() prints, as a dict (the same facts, for programs and tests)."""
    import numpy as np

    from . import __version__
    from ._dispatch import backends

    cpp = _cpp()
    flags = cpu_flags()
    return {
        "fastnn": __version__, "location": os.path.dirname(os.path.abspath(__file__)),
        "python": sys.version.split()[0], "numpy": np.__version__,
        "cpu": cpu_model(), "cores": core_count(), "isa": isa_level(flags),
        "isa_flags": sorted(f for f in flags if f in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                                                     "avx512_bf16", "avx512_fp16", "amx_tile")),
        "backends": backends(),
        "threads": cpp.num_threads() if cpp is not None else 1,
        "paths": {k: v for k, v in code_paths().items() if k != "blas"},
        "openblas": openblas(),
        "cache_root": _extbuild.cache_root(),
        "extensions": [extension_status(e, check) for e in _extbuild.EXTENSIONS],
    }


def format_info(d: Dict[str, Any]) -> str:
    """The text of info(): one fact a line, plain words."""
    lines = [f"fastnn {d['fastnn']} ({d['location']})",
             f"Python {d['python']}, numpy {d['numpy']}",
             f"CPU: {d['cpu']}, {d['cores']} cores",
             f"instruction set level: {d['isa']} (flags: {' '.join(d['isa_flags']) or 'none found'})",
             "backends:"]
    for name, status in d["backends"].items():
        lines.append(f"  {name:6s} " + ("available" if status == "ok" else f"unavailable: {status}"))
    if d["paths"]:
        lines.append("C++ backend paths on this CPU:")
        lines += [f"  {line}" for line in describe_paths(d["paths"])]
    lines += [f"fastnn threads: {d['threads']} (fastnn.set_num_threads, FASTNN_NUM_THREADS)",
              f"OpenBLAS: {d['openblas']}",
              f"framework extensions (cache: {d['cache_root']}; set FASTNN_CACHE_DIR to move it):"]
    for e in d["extensions"]:
        head = f"  {e['target']:10s} ({e['what']}): "
        if e["installed"] is None:
            lines.append(head + e["note"])
        elif e["built"]:
            lines.append(head + f"built ({e['note']})\n      {e['path']}")
        else:
            others = f"; {len(e['cached'])} file(s) in the cache for other versions" if e["cached"] else ""
            lines.append(head + f"not built yet{others} ({e['note'] or 'builds on first use'}); "
                         f"python -m fastnn build {e['target']}")
    lines.append("build them ahead of time (a Docker image, CI): python -m fastnn build all")
    return "\n".join(lines)


def info(check: bool = False, return_string: bool = False) -> Optional[str]:
    """Print what this fastnn installation runs: version, backends (and why any is
    unavailable), the CPU's instruction-set level and the code paths chosen, OpenBLAS and
    threads, and which framework extensions are built and where they are cached.

    The same report as ``python -m fastnn`` (``python -m fastnn info --check`` for
    ``check=True``).

    Parameters
    ----------
    check : bool
        Import each installed framework and compute the exact file its extension needs
        (seconds: tensorflow's import is slow); without it a cached file built for the
        installed framework version and this Python counts as built.
    return_string : bool
        Return the text instead of printing it.

    Returns
    -------
    str or None
        The report with ``return_string=True``, else None (it is printed).

    Examples
    --------
    >>> text = fastnn.info(return_string=True)
    >>> text.startswith("fastnn ")
    True
    """
    text = format_info(collect(check))
    if return_string:
        return text
    print(text)
    return None
