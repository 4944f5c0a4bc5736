"""fastnn: fast forward and backward kernels for Dense layers, activations and losses.

The kernel API (docs/contract.md) takes numpy (or cupy) arrays and dispatches to a
backend: "cpp" (C++ + OpenBLAS, the default on CPU), "numba", "cupy".

    >>> import numpy as np, fastnn
    >>> x = np.random.randn(32, 64).astype(np.float32)
    >>> w = np.random.randn(16, 64).astype(np.float32)
    >>> y, z = fastnn.dense_forward(x, w, None, "gelu")
"""
from typing import Dict

from ._activation import (PreparedActivation, activation_backward, activation_forward, prepare_activation,
                          saved_for_backward)
from ._dense import PreparedDense, dense_backward, dense_cross_entropy, dense_forward, prepare_dense
from ._dispatch import available_backends, backends, get_backend, set_backend, use_backend
from ._info import info
from ._loss import PreparedLoss, loss_backward, loss_forward, prepare_loss
from ._registry import ACTIVATIONS, LOSSES

__version__ = "0.1.0"


def _cpp():
    """The C++ backend module, or None where it is unavailable (then the controls below
    do nothing: no other backend has threads or a buffer cache of its own)."""
    from ._dispatch import _load  # noqa: PLC0415

    mod = _load("cpp")
    return None if isinstance(mod, str) else mod


def num_threads() -> int:
    """Threads the C++ backend's own kernels use (OpenBLAS keeps its own count).

    Returns
    -------
    int
        >= 1; 1 where the C++ backend is unavailable. Set by :func:`set_num_threads` or
        ``FASTNN_NUM_THREADS`` (default: the CPUs this process may use).

    Examples
    --------
    >>> fastnn.num_threads() >= 1
    True
    """
    cpp = _cpp()
    return cpp.num_threads() if cpp else 1


def set_num_threads(n: int) -> None:
    """Set the threads of the C++ backend's kernels (also ``FASTNN_NUM_THREADS``).

    Parameters
    ----------
    n : int
        >= 1. Does nothing where the C++ backend is unavailable.

    Raises
    ------
    ValueError
        n is not an integer >= 1.

    Examples
    --------
    >>> fastnn.set_num_threads(2)
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    cpp = _cpp()
    if cpp:
        cpp.set_num_threads(n)


def empty_cache() -> int:
    """Free the C++ backend's cached output buffers.

    Large outputs (>= 1 MiB) of the C++ backend come from a cache of buffers that earlier
    outputs gave back when they were freed, so a training loop writes into memory that is
    already mapped (a fresh buffer pays a first-touch page fault per page). The cache holds
    at most FASTNN_CACHE_MB megabytes (default 1024; 0 disables it); arrays in use are
    never part of it.

    Returns
    -------
    int
        The bytes freed (0 without the C++ backend).

    Examples
    --------
    >>> freed = fastnn.empty_cache()
    """
    cpp = _cpp()
    return cpp.empty_cache() if cpp else 0


def cache_info() -> Dict[str, int]:
    """The state of the C++ backend's output buffer cache.

    Returns
    -------
    dict
        ``{"cached_bytes", "limit_bytes", "hits", "misses"}`` (all 0 without the C++
        backend).

    Examples
    --------
    >>> sorted(fastnn.cache_info())
    ['cached_bytes', 'hits', 'limit_bytes', 'misses']
    """
    cpp = _cpp()
    return cpp.cache_info() if cpp else {"cached_bytes": 0, "limit_bytes": 0, "hits": 0, "misses": 0}


def set_cache_limit(nbytes: int) -> None:
    """Set the output buffer cache's limit (``FASTNN_CACHE_MB`` at start).

    Parameters
    ----------
    nbytes : int
        >= 0 bytes; 0 turns the cache off (and frees it).

    Raises
    ------
    ValueError
        nbytes is not an integer >= 0.

    Examples
    --------
    >>> fastnn.set_cache_limit(256 << 20)
    """
    if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
        raise ValueError(f"set_cache_limit: nbytes must be an integer >= 0, got {nbytes!r}")
    cpp = _cpp()
    if cpp:
        cpp.set_cache_limit(nbytes)


__all__ = [
    "ACTIVATIONS", "LOSSES", "PreparedActivation", "PreparedDense", "PreparedLoss", "activation_backward",
    "activation_forward", "available_backends", "backends", "cache_info", "dense_backward", "dense_cross_entropy",
    "dense_forward", "empty_cache", "get_backend", "info", "loss_backward", "loss_forward", "num_threads",
    "prepare_activation", "prepare_dense", "prepare_loss", "saved_for_backward", "set_backend", "set_cache_limit",
    "set_num_threads", "use_backend",
]
