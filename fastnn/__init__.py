"""fastnn: fast forward and backward kernels for Dense layers, activations and losses.

The kernel API (shared/API.md) takes numpy (or cupy) arrays and dispatches to a
backend: "cpp" (C++ + OpenBLAS, the default on CPU), "numba", "cupy".

    >>> import numpy as np, fastnn
    >>> x = np.random.randn(32, 64).astype(np.float32)
    >>> w = np.random.randn(16, 64).astype(np.float32)
    >>> y, z = fastnn.dense_forward(x, w, None, "gelu")
"""
from ._dispatch import available_backends, backends, get_backend, set_backend, use_backend
from ._dense_ce import dense_cross_entropy
from ._kernels import activation_backward, activation_forward, dense_backward, dense_forward, saved_for_backward
from ._losses import loss_backward, loss_forward
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


__all__ = [
    "ACTIVATIONS", "LOSSES", "activation_backward", "activation_forward", "available_backends", "backends",
    "dense_backward", "dense_cross_entropy", "dense_forward", "get_backend", "loss_backward", "loss_forward", "num_threads",
    "saved_for_backward", "set_backend", "set_num_threads", "use_backend",
]
