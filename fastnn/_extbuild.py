"""Small C++ extensions built on first use against a framework that is imported
(fastnn.torch's autograd nodes against torch, fastnn.keras' XLA FFI handlers against
jaxlib) and cached, so a wheel of fastnn never pins a torch or jax version.

The output's name carries a hash of the sources, of the compile command (compiler and
flags) and of `key` (the framework version, Python), so a change of any of them
builds anew; an unchanged one loads the cached file. The cache lives under
$FASTNN_CACHE_DIR (default ~/.cache/fastnn). Several processes may build at once
(DDP workers, pytest-xdist): each compiles to a temp file and renames it into place
atomically.
"""
import hashlib
import os
import subprocess
import tempfile


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
