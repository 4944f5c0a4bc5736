"""What machine the benchmark ran on, how busy it was, and the ceilings it is measured against.

Ceilings (measured first, in the benchmark's dtype), each the best of several runs, not
their median: a ceiling is what the machine can do, and a neighbour's burst during one
run must not lower it.
- "gemm": GFLOP/s of numpy's matmul (the BLAS numpy ships with, its default threads)
  at n x n x n, 2*n^3 FLOPs: about the most a Dense layer's products reach. fastnn's
  own sgemm can pass it (a row above 100% is faster than numpy's product).
- "bandwidth": GB/s of np.copyto between two buffers, bytes read plus bytes written
  (2 * size), split over as many threads as fastnn's kernels use (numpy releases the
  GIL while it copies): an elementwise kernel moves memory the same way, so a
  two-thread kernel is compared with a two-thread copy. Inputs that fit in the CPU's
  caches can pass it.
Load: other processes' share of the cores, from /proc/stat (cpu_snapshot); a timing
taken while it is above BUSY is re-measured, and its ratios are withheld if still busy.
"""

import datetime
import os
import subprocess
import time

import numpy as np


from fastnn._info import core_count, cpu_model, isa_level  # noqa: F401 - one place for each

# Other processes' share of the cores above which a timing is called busy: a neighbour
# at 15% of two cores already takes a fifth of a core from a two-thread kernel.
BUSY = 0.15


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


def bandwidth_ceiling(nbytes, threads=1, reps=10):
    """GB/s of np.copyto of `nbytes` split over `threads` threads, counting bytes read +
    bytes written."""
    from concurrent.futures import ThreadPoolExecutor

    src = np.ones(nbytes // 8, np.float64)
    dst = np.zeros_like(src)  # zeros, not empty: touch the pages before timing
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(threads) as pool:
        def copy():
            if threads == 1:
                np.copyto(dst, src)
            else:
                list(pool.map(lambda p: np.copyto(*p), parts))
        seconds = _best_seconds(copy, reps)
    return 2.0 * src.nbytes / seconds / 1e9


def kernel_threads():
    """Threads fastnn's C++ kernels use (1 where fastnn is unavailable)."""
    try:
        import fastnn
        return int(fastnn.num_threads())
    except Exception:  # noqa: BLE001 - the ceiling still measures, on one thread
        return 1


def measure_ceilings(quick, dtype, progress=None):
    """({"gemm": GFLOP/s, "bandwidth": GB/s}, {same keys: one line saying what each is})."""
    n = 1024 if quick else 2048
    mb = 64 if quick else 256
    threads = kernel_threads()
    if progress:
        progress.step(f"sgemm ceiling: numpy matmul n={n}")
    gemm = gemm_ceiling(n, dtype, reps=10)
    if progress:
        progress.finish_step()
        progress.step(f"copy ceiling: np.copyto {mb} MB on {threads} threads")
    bw = bandwidth_ceiling(mb * 2 ** 20, threads, reps=10)
    if progress:
        progress.finish_step()
    blas = numpy_blas() or "numpy's BLAS"
    word = "sgemm" if dtype == "float32" else "dgemm"
    return {"gemm": gemm, "bandwidth": bw}, {
        "gemm": f"{word} ceiling {gemm:.1f} GFLOP/s: numpy's matrix product ({blas}) of two {n}x{n} "
                f"{dtype} matrices, best of 10; about the most a Dense layer's products reach here "
                f"(fastnn's own sgemm can pass it: above 100% is faster than numpy's product)",
        "bandwidth": f"copy ceiling {bw:.1f} GB/s: copying {mb} MB with np.copyto on {threads} "
                     f"thread{'s' if threads > 1 else ''} (as many as fastnn's kernels use), bytes "
                     f"read + written, best of 10; the memory speed an elementwise kernel can "
                     f"reach (inputs that fit in the CPU's caches can pass it)",
    }


def quiet_wait(seconds, limit=BUSY, sample_s=0.5):
    """Sample the load for up to `seconds`, returning as soon as one sample is below
    `limit`; the last sample (share of the cores others used), None where unknown."""
    deadline = time.perf_counter() + seconds
    while True:
        before = cpu_snapshot()
        time.sleep(sample_s)
        load = background_load(before, cpu_snapshot(), core_count())
        if load is None or load < limit or time.perf_counter() >= deadline:
            return load


def load_lines(load, where, remeasured=True):
    """The load warning fastnn.bench and the examples print: one line, plain words."""
    if load is None:
        return [f"load {where}: unknown (no /proc/stat)"]
    if load <= BUSY:
        return [f"load {where}: quiet (other processes used {100 * load:.0f}% of the cores)"]
    what = ("Timings taken while busy are re-measured; ratios that stay busy are not shown "
            "(--ignore-load shows them, marked)." if remeasured else
            "The timings above are not reliable: the other processes took CPU time from them.")
    return [f"load {where}: BUSY: other processes used {100 * load:.0f}% of the cores. {what} "
            f"Close other programs and rerun for fair numbers."]


class LoadWatch:
    """Other processes' share of the cores from construction to lines(): the examples
    print the benchmark's load warning with it.

        watch = LoadWatch()
        ...  # timings
        print(*watch.lines(), sep="\n")
    """

    def __init__(self):
        self.before = cpu_snapshot()

    def load(self):
        return background_load(self.before, cpu_snapshot(), core_count())

    def lines(self, where="during the run"):
        return load_lines(self.load(), where, remeasured=False)
