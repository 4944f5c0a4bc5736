"""Where a cupy-backend call's time goes: host vs device per call, then a cProfile of the
host side. For a machine with a GPU and CuPy (run from the repository root after
`bash bench/gpu_check.sh` installed fastnn):

    python3 bench/gpu_probe.py

Why: on an H200, fastnn's elementwise kernels ran as fast as torch's on the device, but
each call spent ~47-56 us on the host against torch's ~8 (cupyx.profiler.benchmark,
16M floats), so back-to-back calls (bench/gpu_bench.py) measured the host: relu forward
0.053 ms against torch's 0.036. The profile shows which part of that host time is
fastnn's (argument checks, dispatch) and which is CuPy's (allocation, launch).
"""
import cProfile
import pstats

import cupy as cp
import torch
from cupyx.profiler import benchmark

import fastnn


def main():
    n = 1 << 24
    x = cp.random.standard_normal(n, dtype=cp.float32)
    dy = cp.random.standard_normal(n, dtype=cp.float32)
    xt = torch.from_dlpack(x)
    small = x[:1024]
    w = cp.random.standard_normal((64, 64), dtype=cp.float32)
    xd = cp.random.standard_normal((32, 64), dtype=cp.float32)
    cases = {
        "fastnn relu fwd 16M": lambda: fastnn.activation_forward(x, "relu"),
        "torch relu fwd 16M": lambda: torch.relu(xt),
        "fastnn relu bwd 16M": lambda: fastnn.activation_backward(dy, "relu", x=x),
        "fastnn gelu fwd 16M": lambda: fastnn.activation_forward(x, "gelu"),
        "cupy copy 16M": lambda: x.copy(),
        "fastnn relu fwd 1K": lambda: fastnn.activation_forward(small, "relu"),
        "cupy maximum 1K": lambda: cp.maximum(small, 0),
        "cupy empty_like 1K": lambda: cp.empty_like(small),
        "fastnn dense fwd 32x64x64": lambda: fastnn.dense_forward(xd, w, None, activation="relu"),
    }
    for name, f in cases.items():
        r = benchmark(f, n_repeat=200, n_warmup=20)
        print(f"{name:28s} host {r.cpu_times.mean() * 1e6:8.1f} us   device {r.gpu_times.mean() * 1e6:8.1f} us")
    for name in ("fastnn relu fwd 1K", "fastnn dense fwd 32x64x64"):
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(2000):
            cases[name]()
        prof.disable()
        print("=====", name, "(2000 calls)")
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
