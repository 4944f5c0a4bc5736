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
"""
import glob
import hashlib
import os
import subprocess
import tempfile
import threading
import warnings


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
    root = os.environ.get("FASTNN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "fastnn")
    return os.path.join(root, sub)


def build(name, sources, command, key, sub):
    """Path of the shared library `name` (compiled now unless cached). `sources`: the
    files it is built from (hashed); `command(out, cxx)`: the compile command writing
    `out`; `key`: whatever else decides the build (versions)."""
    cxx = os.environ.get("CXX", "g++")
    h = hashlib.sha256()
    for p in sources:
        with open(p, "rb") as f:
            h.update(f.read())
    h.update(f"{key}|{' '.join(command('OUT', cxx))}".encode())
    d = cache_dir(sub)
    os.makedirs(d, exist_ok=True)
    so = os.path.join(d, f"{name}_{h.hexdigest()[:16]}.so")
    if not os.path.exists(so):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=d)
        os.close(fd)
        try:
            r = subprocess.run(command(tmp, cxx), capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"compiling {sources[0]} failed:\n{r.stderr[-3000:]}")
            os.replace(tmp, so)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return so


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
