"""Backend registry and selection.

A backend is a module in fastnn._backends exposing DEVICE ("cpu" or "cuda"),
``unavailable()`` (None, or why it cannot run here) and the kernel functions
(activation_forward, ..., class_loss_backward). Adding a backend is adding its module
and its name below.

Selection, first match wins: ``use_backend`` (thread-local, nestable) >
``set_backend`` (process-wide) > ``FASTNN_BACKEND`` > automatic (numpy -> cpp, else
numba; cupy -> cupy). A forced backend that cannot serve the inputs raises RuntimeError;
nothing falls back silently inside a call.
"""
import contextlib
import functools
import importlib
import os
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from . import _checks as C

# name -> module, in automatic-preference order per device.
_MODULES = {"cpp": "fastnn._backends.cpp", "numba": "fastnn._backends.numba", "cupy": "fastnn._backends.cupy"}
_AUTO = {"cpu": ("cpp", "numba"), "cuda": ("cupy",)}

_loaded: Dict[str, Any] = {}  # name -> module or reason string
_lock = threading.Lock()
_global = None    # set_backend()


class _Local(threading.local):
    """use_backend()'s stack, per thread; the class attribute is the empty default (reading
    an attribute a thread never set would raise and catch an AttributeError on every call)."""
    stack: Sequence[Optional[str]] = ()


_local = _Local()
_auto: Dict[str, str] = {}  # device -> the backend automatic selection chose


def _env_reader():
    """A function returning FASTNN_BACKEND's value (bytes or str) or None, always current.

    select() runs once per kernel call, and os.environ.get encodes the key and handles
    KeyError each time, a large part of a small call's cost. On CPython, os.environ keeps
    its values in the dict os.environ._data under os.environ.encodekey(name), updated by
    every assignment or deletion through os.environ (monkeypatch.setenv too): reading that
    dict sees every change os.environ.get would, at a tenth of the cost. Elsewhere,
    os.environ.get."""
    data, encodekey = getattr(os.environ, "_data", None), getattr(os.environ, "encodekey", None)
    if isinstance(data, dict) and encodekey is not None:
        try:
            key = encodekey("FASTNN_BACKEND")
        except Exception:  # noqa: BLE001 - an unexpected os.environ: the portable reader
            key = None
        if key is not None:
            return functools.partial(data.get, key)
    return functools.partial(os.environ.get, "FASTNN_BACKEND")


_env_raw = _env_reader()
_env_cache = (None, None)  # (raw value, its backend name or None)


def _env_backend():
    """The backend FASTNN_BACKEND names, or None (unset or blank)."""
    global _env_cache
    raw = _env_raw()
    if raw is None:
        return None
    cache = _env_cache  # one read: another thread may replace it
    if raw is not cache[0]:
        value = os.environ.get("FASTNN_BACKEND", "").strip()
        cache = _env_cache = (raw, value or None)
    return cache[1]


def _load(name):
    mod = _loaded.get(name)
    if mod is not None:
        return mod
    with _lock:
        if name not in _loaded:
            try:
                mod = importlib.import_module(_MODULES[name])
                why = mod.unavailable()
                _loaded[name] = mod if why is None else why
            except ModuleNotFoundError as e:
                if e.name == _MODULES[name]:
                    _loaded[name] = "not implemented in this version of fastnn"
                else:
                    _loaded[name] = f"not installed: {e}"
            except Exception as e:  # noqa: BLE001 - any import failure makes it unavailable
                _loaded[name] = f"not importable: {type(e).__name__}: {e}"
        return _loaded[name]


def _check_name(name):
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(_MODULES)}")


def backends() -> Dict[str, str]:
    """Every backend fastnn knows, and whether it can run here.

    Returns
    -------
    dict of str to str
        ``{name: "ok" or the reason it is unavailable}``, for "cpp", "numba", "cupy".

    Examples
    --------
    >>> fastnn.backends()["cpp"]
    'ok'
    """
    out = {}
    for name in _MODULES:
        mod = _load(name)
        out[name] = "ok" if not isinstance(mod, str) else mod
    return out


def available_backends() -> List[str]:
    """The names of the backends that can run here.

    Returns
    -------
    list of str
        In fastnn's order of preference ("cpp", "numba", "cupy").

    Examples
    --------
    >>> "cpp" in fastnn.available_backends()
    True
    """
    return [n for n, s in backends().items() if s == "ok"]


def _require(name):
    mod = _load(name)
    if isinstance(mod, str):
        raise RuntimeError(f"fastnn backend {name!r} is not available: {mod}")
    return mod


def set_backend(name: Optional[str]) -> None:
    """Force one backend for the whole process; None restores the automatic choice.

    Parameters
    ----------
    name : str or None
        "cpp", "numba", "cupy", or None. :func:`use_backend` (per thread) takes precedence.

    Raises
    ------
    ValueError
        An unknown backend name.
    RuntimeError
        The backend is unavailable here (the message says why).

    Examples
    --------
    >>> fastnn.set_backend("numba"); fastnn.set_backend(None)
    """
    global _global
    if name is not None:
        _check_name(name)
        _require(name)
    _global = name


def get_backend() -> Optional[str]:
    """The backend forced for this thread, or None (automatic).

    Returns
    -------
    str or None
        From :func:`use_backend`, else :func:`set_backend`, else ``FASTNN_BACKEND``.

    Examples
    --------
    >>> with fastnn.use_backend("numba"):
    ...     fastnn.get_backend()
    'numba'
    """
    stack = _local.stack
    if stack:
        return stack[-1]
    if _global is not None:
        return _global
    return _env_backend()


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[None]:
    """Force a backend inside a with-block, for this thread only; nestable.

    Parameters
    ----------
    name : str or None
        A backend name; None restores the automatic choice inside the block.

    Raises
    ------
    ValueError
        An unknown backend name.
    RuntimeError
        The backend is unavailable here.

    Examples
    --------
    >>> with fastnn.use_backend("numba"):
    ...     y = fastnn.activation_forward(np.ones(3), "relu")
    """
    if name is not None:
        _check_name(name)
        _require(name)
    stack = _local.stack
    if not isinstance(stack, list):
        stack = _local.stack = []
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def array_module(be):
    """The array module of a backend's inputs and outputs: numpy on the CPU; on CUDA the
    backend's ``xp`` (CuPy)."""
    if be.DEVICE == "cpu":
        return np
    xp = getattr(be, "xp", None)
    if xp is None:
        import cupy as xp  # noqa: PLC0415 - only where CUDA inputs exist
    return xp


def backend_for(func, **arrays):
    """(backend module, array module) serving these arrays (None entries ignored): their one
    device (ValueError naming the arguments if they are on several), then the backend
    selected for it."""
    be = select(C.same_device(func, **arrays))
    return be, array_module(be)


def select(device):
    """The backend module serving inputs on `device` ("cpu" or "cuda")."""
    stack = _local.stack  # get_backend(), inlined: this runs once per kernel call
    if stack:
        forced = stack[-1]
    else:
        forced = _global
        if forced is None and _env_raw() is not None:
            forced = _env_backend()
    if forced is None:
        mod = _auto.get(device)
        if mod is not None:
            return mod
    else:
        mod = _loaded.get(forced)
        if mod is None or isinstance(mod, str):  # not loaded yet, or unavailable: raise why
            _check_name(forced)
            mod = _require(forced)
        if mod.DEVICE != device:
            raise RuntimeError(f"fastnn backend {forced!r} runs on {mod.DEVICE} but the inputs are on {device}")
        return mod
    reasons = []
    for name in _AUTO[device]:
        mod = _load(name)
        if not isinstance(mod, str):
            _auto[device] = mod  # a backend's availability never changes once loaded
            return mod
        reasons.append(f"{name}: {mod}")
    raise RuntimeError(f"no fastnn backend can serve {device} inputs ({'; '.join(reasons)})")
