"""What machine the benchmark ran on, and the ceilings it is measured against.

Ceilings (measured first, in the benchmark's dtype):
- "gemm": GFLOP/s of numpy's matmul (the BLAS numpy ships with) at n x n x n,
  2*n^3 FLOPs; a dense layer cannot beat the machine's best matrix product by much.
- "bandwidth": GB/s of np.copyto between two fresh buffers, counting the bytes
  read plus the bytes written (2 * size); activations and losses are memory bound.
Each is the best of several runs, not their median: a ceiling is what the machine
can do, and a neighbour's burst during one run must not lower it.
np.copyto runs on one thread, so on a many-core machine the bandwidth ceiling
understates what all cores can pull; small sizes that fit in cache beat it too.
"""

import datetime
import os
import platform
import subprocess
import time

import numpy as np


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def core_count():
    """Cores this process may run on (the affinity mask, else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def numpy_blas():
    """The BLAS numpy was built with, e.g. 'scipy-openblas 0.3.31', or ''."""
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except (AttributeError, KeyError, TypeError):
        return ""


def git_commit():
    """Short commit of the checkout this package runs from, '+dirty' if modified."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty=+dirty", "--abbrev=10"],
            cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def cpu_snapshot():
    """(seconds of busy CPU on the whole machine, this process's CPU seconds, wall).

    Busy is user+nice+system+irq+softirq+steal from /proc/stat (steal: time the
    hypervisor gave our virtual CPUs to someone else); None where there is none.
    """
    busy = None
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return busy, own, time.perf_counter()


def background_load(before, after, cores):
    """Share of the machine's cores that other processes (or the hypervisor) used
    between two cpu_snapshot()s: 0.0 on a quiet machine. None if unknown."""
    if before[0] is None or after[0] is None:
        return None
    wall = after[2] - before[2]
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / (wall * cores)) if wall > 0 else None


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _best_seconds(fn, reps):
    fn()  # warm-up: page faults, BLAS thread start
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def gemm_ceiling(n, dtype, reps=10, seed=0):
    """GFLOP/s of numpy's (n, n) @ (n, n) in `dtype` (sgemm for float32)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    seconds = _best_seconds(lambda: np.matmul(a, b, out=c), reps)
    return 2.0 * n ** 3 / seconds / 1e9


def bandwidth_ceiling(nbytes, reps=10):
    """GB/s of np.copyto of `nbytes`, counting bytes read + bytes written."""
    src = np.ones(nbytes // 8, np.float64)
    dst = np.zeros_like(src)  # zeros, not empty: touch the pages before timing
    seconds = _best_seconds(lambda: np.copyto(dst, src), reps)
    return 2.0 * src.nbytes / seconds / 1e9


def measure_ceilings(quick, dtype, progress=None):
    """{"gemm": GFLOP/s, "bandwidth": GB/s} plus a description of each."""
    n = 1024 if quick else 2048
    mb = 64 if quick else 256
    if progress:
        progress.step(f"ceiling: numpy matmul n={n}")
    gemm = gemm_ceiling(n, dtype, reps=10)
    if progress:
        progress.finish_step()
        progress.step(f"ceiling: np.copyto {mb} MB")
    bw = bandwidth_ceiling(mb * 2 ** 20, reps=10)
    if progress:
        progress.finish_step()
    return {"gemm": gemm, "bandwidth": bw}, {
        "gemm": f"numpy matmul {dtype} n={n}",
        "bandwidth": f"np.copyto {mb} MB, read+write",
    }
