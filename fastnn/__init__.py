"""fastnn: fast forward and backward kernels for Dense layers, activations and losses.

The kernel API (docs/api.md) takes numpy (or cupy) arrays and dispatches to a
backend: "cpp" (C++ + OpenBLAS, the default on CPU), "numba", "cupy".

    >>> import numpy as np, fastnn
    >>> x = np.random.randn(32, 64).astype(np.float32)
    >>> w = np.random.randn(16, 64).astype(np.float32)
    >>> y, z = fastnn.dense_forward(x, w, None, "gelu")
"""
from ._activation import (PreparedActivation, activation_backward, activation_forward, prepare_activation,
                          saved_for_backward)
from ._dense import PreparedDense, dense_backward, dense_cross_entropy, dense_forward, prepare_dense
from ._dispatch import available_backends, backends, get_backend, set_backend, use_backend
from ._loss import PreparedLoss, loss_backward, loss_forward, prepare_loss
from ._registry import ACTIVATIONS, LOSSES

__version__ = "0.1.0"


def num_threads():
    """Threads the C++ backend's own kernels use (OpenBLAS keeps its own count)."""
    from ._backends import cpp

    return cpp._C.num_threads() if cpp._C is not None else 1


def set_num_threads(n):
    """Set the threads of the C++ backend's kernels (>= 1)."""
    from ._backends import cpp

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    if cpp._C is not None:
        cpp._C.set_num_threads(n)


def empty_cache():
    """Free the C++ backend's cached output buffers; returns the bytes freed.

    Large outputs (>= 1 MiB) of the C++ backend come from a cache of buffers that earlier
    outputs gave back when they were freed, so a training loop writes into memory that is
    already mapped (a fresh 64 MB array costs ~16k first-touch page faults, more than relu
    itself over 16M floats). The cache holds at most FASTNN_CACHE_MB megabytes (default
    1024; 0 disables it); arrays in use are never part of it."""
    from ._backends import cpp

    return int(cpp._C.empty_cache()) if cpp._C is not None else 0


def cache_info():
    """{"cached_bytes", "limit_bytes", "hits", "misses"} of the output buffer cache."""
    from ._backends import cpp

    if cpp._C is None:
        return {"cached_bytes": 0, "limit_bytes": 0, "hits": 0, "misses": 0}
    return dict(cpp._C.cache_stats())


__all__ = [
    "ACTIVATIONS", "LOSSES", "PreparedActivation", "PreparedDense", "PreparedLoss", "activation_backward", "activation_forward", "available_backends", "backends",
    "cache_info", "dense_backward", "dense_cross_entropy", "dense_forward", "empty_cache", "get_backend",
    "loss_backward", "loss_forward", "num_threads", "prepare_activation", "prepare_dense", "prepare_loss",
    "saved_for_backward", "set_backend", "set_num_threads",
    "use_backend",
]
