"""Threads: fastnn's C++ gelu and relu forward with fastnn.set_num_threads(1) vs (2), at
sizes below, near and far above the point where the C++ backend splits the work.
gelu (exact erf, ~20 flops an element) is compute bound, so a second core should
nearly halve its time on large inputs; relu is bound by memory bandwidth, which one
core of this machine already nearly saturates.

The threshold is the elementwise grain, kGrain = 32768 items in csrc/cpu/activation.cpp:
parallel_for never makes a part smaller than that, so up to 32K elements a kernel runs
on the calling thread alone (one part of relu is ~10 us there, a few times the cost of
waking a pool thread), and above it each thread gets >= 32K elements. Expected here:
1 and 2 threads the same at 32K, 2 threads faster at 16M (gelu: close to 2x).
torch runs with its own default thread count.
"""

import numpy as np

from .activation import bytes_moved, make_inputs, reference
from .timing import Case, Impl

NAMES = ("gelu", "relu")
MODE = "forward"
SIZES = [2 ** 15, 2 ** 18, 2 ** 24]
QUICK_SIZES = [2 ** 15, 2 ** 24]
THREADS = (1, 2)


def specs(quick):
    names = NAMES[:1] if quick else NAMES
    return [(f"{name} threads", MODE, (n,)) for name in names
            for n in (QUICK_SIZES if quick else SIZES)]


class _Threads:
    """Context: the C++ backend with `n` threads inside, the old count restored after."""

    def __init__(self, fastnn, n):
        self.fastnn, self.n = fastnn, n

    def __enter__(self):
        self.old = self.fastnn.num_threads()
        self.fastnn.set_num_threads(self.n)
        self.backend = self.fastnn.use_backend("cpp")
        self.backend.__enter__()

    def __exit__(self, *exc):
        self.backend.__exit__(*exc)
        self.fastnn.set_num_threads(self.old)


def make_case(spec, dtype, fw, seed=0):
    op, mode, shape = spec
    name = op.split()[0]
    x, dy = make_inputs(shape, dtype, seed)
    impls = []
    if fw.fastnn is not None and "cpp" in fw.backends:
        fn = fw.fastnn
        for n in THREADS:
            impls.append(Impl(f"fastnn[cpp] {n} thread{'s' if n > 1 else ''}",
                              lambda: fn.activation_forward(x, name),
                              lambda n=n: _Threads(fn, n)))
    if fw.torch is not None:
        xt = fw.torch.from_numpy(x)
        act = getattr(fw.F, name)
        impls.append(Impl("torch", lambda: act(xt)))
    return Case(op=op, mode=mode, shape=shape, dtype=dtype, unit="GB/s",
                work=bytes_moved(mode, shape, np.dtype(dtype).itemsize),
                ceiling="bandwidth", reference=lambda: reference(name, mode, x, dy), impls=impls)
