"""Small C++ extensions built on first use against a framework that is imported
(fastnn.torch's autograd nodes against torch, fastnn.keras' TensorFlow ops against
tensorflow and its XLA FFI handlers against jaxlib) and cached, so a wheel of fastnn
never pins a torch, tensorflow or jax version.

The output's name carries a hash of the sources, of the compile command (compiler and
flags) and of `key` (the framework version, Python), so a change of any of them
builds anew; an unchanged one loads the cached file. The cache lives under
$FASTNN_CACHE_DIR (default ~/.cache/fastnn). Several processes may build at once
(DDP workers, pytest-xdist): each compiles to a temp file and renames it into place
atomically.

A build is visible: one line on stderr when it starts ("fastnn: building the torch
extension (one time, ~20 s) ...") and one when it ends, with its time; no line when the
cached file loads. Next to each built file a small JSON file (<name>_<hash>.json)
records what it was built for, so that ``fastnn.info()`` can list the cache without
importing the frameworks. ``python -m fastnn build [torch|tensorflow|jax|all]`` builds
them ahead of time into the same cache (EXTENSIONS below maps each to its module).
"""
import contextlib
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Iterator, List, Optional


@dataclass(frozen=True)
class Extension:
    """One framework extension: what a user calls it, the framework it is built against,
    its cache subdirectory, the module whose ``_build()`` compiles it, and a rough build
    time on a small machine (said in the start message, so a wait has a size)."""
    target: str      # the name `python -m fastnn build` takes
    framework: str   # the module it is compiled against
    title: str
    what: str        # what it gives, for fastnn.info()
    sub: str
    module: str
    seconds: int
    keras_backend: Optional[str] = None  # importing fastnn.keras imports keras: pick its backend


EXTENSIONS = (
    Extension("torch", "torch", "torch extension", "fastnn.torch's C++ autograd nodes", "torch_native",
              "fastnn.torch._native", 20),
    Extension("tensorflow", "tensorflow", "TensorFlow extension", "fastnn.keras' TensorFlow ops", "tf_ops",
              "fastnn.keras._tf", 10, "tensorflow"),
    Extension("jax", "jax", "jax extension", "fastnn.keras' XLA FFI handlers", "jax_ffi", "fastnn.keras._jax", 5,
              "jax"),
)
_BY_SUB = {e.sub: e for e in EXTENSIONS}

_plan_only = threading.local()  # set by planned(): build() returns the path, compiles nothing


def csrc_dir():
    """The directory of fastnn's C++ sources (front/, cpu/, include/, the bridges' torch/, tf/,
    jax/, cuda/): the installed copy (fastnn/_csrc) or the checkout's csrc/."""
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (os.path.join(here, "_csrc"), os.path.join(os.path.dirname(here), "csrc")):
        if os.path.isfile(os.path.join(d, "front", "front.h")):
            return d
    raise FileNotFoundError("fastnn's C++ sources (fastnn/_csrc or csrc/) are missing from this installation")


def front_headers(csrc):
    """The headers a bridge built outside fastnn._C compiles against (the front end, its
    table, the kernel declarations): hashed with its source, so a change rebuilds it."""
    return sorted(glob.glob(os.path.join(csrc, "front", "*.h")) + glob.glob(os.path.join(csrc, "cpu", "*.h"))
                  + glob.glob(os.path.join(csrc, "include", "fastnn", "*.h")))


def cache_dir(sub):
    return os.path.join(cache_root(), sub)


def cache_root() -> str:
    """$FASTNN_CACHE_DIR, else ~/.cache/fastnn: where every extension is cached."""
    return os.environ.get("FASTNN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "fastnn")


@contextlib.contextmanager
def planned() -> Iterator[None]:
    """Inside the block, build() returns the path it would load and compiles nothing
    (``fastnn.info(check=True)`` asks each module's _build() which file it needs)."""
    old = getattr(_plan_only, "on", False)
    _plan_only.on = True
    try:
        yield
    finally:
        _plan_only.on = old


def _say(line: str) -> None:
    """The build messages: stderr, one line each, flushed at once (a build is a wait)."""
    print(f"fastnn: {line}", file=sys.stderr, flush=True)


def _compile(cmd: List[str], tmp: str, so: str, sub: str, source: str) -> None:
    ext = _BY_SUB.get(sub)
    title = ext.title if ext else sub
    _say(f"building the {title} (one time, ~{ext.seconds if ext else 10} s) ...")
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        _say(f"building the {title} failed after {seconds:.1f} s")
        raise RuntimeError(f"compiling {source} failed:\n{r.stderr[-3000:]}")
    os.replace(tmp, so)
    _say(f"built the {title} in {seconds:.1f} s (cached in {os.path.dirname(so)})")


def build(name, sources, command, key, sub):
    """Path of the shared library `name` (compiled now unless cached). `sources`: the
    files it is built from (hashed); `command(out, cxx)`: the compile command writing
    `out`; `key`: whatever else decides the build (versions, "|"-joined, the
    framework's first)."""
    cxx = os.environ.get("CXX", "g++")
    h = hashlib.sha256()
    for p in sources:
        with open(p, "rb") as f:
            h.update(f.read())
    h.update(f"{key}|{' '.join(command('OUT', cxx))}".encode())
    d = cache_dir(sub)
    so = os.path.join(d, f"{name}_{h.hexdigest()[:16]}.so")
    if getattr(_plan_only, "on", False) or os.path.exists(so):
        return so
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=d)
    os.close(fd)
    try:
        _compile(command(tmp, cxx), tmp, so, sub, sources[0])
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    with contextlib.suppress(OSError):  # the record is for fastnn.info(); the build stands without it
        with open(so[:-3] + ".json", "w") as f:
            json.dump({"built_for": key, "date": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
    return so


def cached(sub: str) -> List[dict]:
    """The built files of cache subdirectory `sub`, newest first: {"path", "built_for"
    (the key it was built with, '' when no record), "bytes"}."""
    out = []
    for so in glob.glob(os.path.join(cache_dir(sub), "*.so")):
        built_for = ""
        with contextlib.suppress(OSError, ValueError):
            with open(so[:-3] + ".json") as f:
                built_for = json.load(f).get("built_for", "")
        out.append({"path": so, "built_for": built_for, "bytes": os.path.getsize(so),
                    "mtime": os.path.getmtime(so)})
    return sorted(out, key=lambda e: -e["mtime"])


def extension(target: str) -> Extension:
    """The Extension `python -m fastnn build <target>` names; ValueError if none."""
    for e in EXTENSIONS:
        if target == e.target:
            return e
    raise ValueError(f"unknown extension {target!r}; expected one of "
                     f"{', '.join(e.target for e in EXTENSIONS)} or all")


def build_module(ext: Extension):
    """Import the module that builds `ext` (its framework with it); KERAS_BACKEND is
    set to the extension's framework when the user has not chosen one, since importing
    fastnn.keras imports keras, and keras imports its backend."""
    import importlib

    had = os.environ.get("KERAS_BACKEND")
    if ext.keras_backend and "keras" not in sys.modules and had is None:
        os.environ["KERAS_BACKEND"] = ext.keras_backend
    try:
        return importlib.import_module(ext.module)
    finally:  # keras has read it by now; the process's environment stays the user's
        if had is None:
            os.environ.pop("KERAS_BACKEND", None)


def build_ahead(target: str) -> str:
    """Build `target`'s extension now (or find it cached); its path. Raises what the
    build raises (no compiler, the framework missing)."""
    return build_module(extension(target))._build()


def expected_path(target: str) -> str:
    """The path `target`'s extension has for the installed framework and sources
    (imports the framework; compiles nothing)."""
    mod = build_module(extension(target))
    with planned():
        return mod._build()


class Lazy:
    """An extension loaded on first use by `load()`, once per process (thread-safe).
    ``get()`` is the loaded object, or None when `env` is "0" or loading failed; then
    ``why`` says why, and a failure warns once that `what` is unavailable and `fallback`
    runs instead."""

    def __init__(self, load, env, what, fallback):
        self._load, self._env, self._what, self._fallback = load, env, what, fallback
        self._lock = threading.Lock()
        self._tried = False
        self.value = self.why = None

    def get(self):
        if self._tried:
            return self.value
        with self._lock:
            if not self._tried:
                if os.environ.get(self._env, "1") == "0":
                    self.why = f"disabled by {self._env}=0"
                else:
                    try:
                        self.value = self._load()
                    except Exception as e:  # noqa: BLE001 - reported, then the fallback runs
                        self.why = f"{type(e).__name__}: {e}"
                        warnings.warn(f"{self._what} unavailable, using {self._fallback} ({self.why[:300]})",
                                      RuntimeWarning, stacklevel=4)
                self._tried = True
        return self.value


def cpu_api_address():
    """The address of fastnn._C's front-end table (csrc/cpu/api.h), for an extension
    loaded with ctypes; raises if the C++ backend is unavailable."""
    import ctypes

    from fastnn._backends import cpp

    if cpp.unavailable():
        raise RuntimeError(f"the C++ backend is unavailable ({cpp.unavailable()})")
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get(cpp.front_end_table(), b"fastnn._C.cpu_api")


def init_ctypes(lib, symbol):
    """Hand fastnn._C's front-end table to `lib`'s init function `symbol` (0: accepted)."""
    import ctypes

    fn = getattr(lib, symbol)
    fn.argtypes, fn.restype = [ctypes.c_void_p], ctypes.c_int
    if fn(cpu_api_address()) != 0:
        raise RuntimeError(f"fastnn._C's front-end table does not match {symbol}'s build (rebuild fastnn)")
