"""The 16-bit products (gemm_lp, csrc/cpu/kernels.h) against fastnn's float32 sgemm and
torch's bf16 matmul, in one process, alternated, best of N (GFLOP/s and ratios). Prints the
CPU's ISA and the float32 sgemm ceiling of this run first.

    python bench/lowp_gemm.py [--reps 7] [--levels avx512,avx2,baseline] [--shapes 256x1024x1024,...] [--cpu-time]

--cpu-time: one thread everywhere (fastnn, OpenBLAS, torch), timed in thread CPU time: the
kernels' own cost, robust to a busy machine.

Each shape m x n x k is timed as the forward product x W^T (bt), the backward dx = g W
(float32 g with bf16 W: the mixed product) and dW = x^T g (at), on every gemm_lp path the
level has (best, widen, bf16dot, amx, amx_split, blas; csrc/cpu/gemm_lp.h). "amx" and
"bf16dot" round the float32 g of the mixed products to bf16 (gemm_lp itself does not).
"""
import argparse
import os
import time

import sys

if "--cpu-time" in sys.argv:  # OpenBLAS reads it when it loads
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np

import ml_dtypes
from fastnn._backends.cpp import _C  # loads OpenBLAS first

BF16 = np.dtype(ml_dtypes.bfloat16)


CLOCK = time.perf_counter


def best_of(fn, reps, min_time=0.05):
    fn()
    t = CLOCK()
    fn()
    one = CLOCK() - t
    n = max(1, int(min_time / max(one, 1e-6)))
    best = float("inf")
    for _ in range(reps):
        t = CLOCK()
        for _ in range(n):
            fn()
        best = min(best, (CLOCK() - t) / n)
    return best


def isa_flags():
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":")[1].split())
                    break
    except OSError:
        pass
    return [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16") if f in flags]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--levels", default=None)
    ap.add_argument("--shapes", default="256x1024x1024,1024x1024x1024,64x256x256")
    ap.add_argument("--cpu-time", action="store_true")
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        CLOCK = time.thread_time
        _C.set_num_threads(1)
    levels = args.levels.split(",") if args.levels else [lv for lv in ("avx512", "avx2", "baseline")
                                                          if ["baseline", "avx2", "avx512"].index(lv)
                                                          <= ["baseline", "avx2", "avx512"].index(_C._cpu_isa())]
    print(f"CPU ISA: {_C._cpu_isa()} ({' '.join(isa_flags())}); threads {_C.num_threads()}; "
          f"loadavg {open('/proc/loadavg').read().split()[:3]}")
    try:
        import torch
        if args.cpu_time:
            torch.set_num_threads(1)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    prev = _C._isa()
    try:
        for shape in args.shapes.split(","):
            m, n, k = map(int, shape.split("x"))
            flop = 2.0 * m * n * k
            x32 = rng.standard_normal((m, k)).astype(np.float32)
            w32 = rng.standard_normal((n, k)).astype(np.float32)
            g32 = rng.standard_normal((m, n)).astype(np.float32)
            x16, w16 = x32.astype(BF16), w32.astype(BF16)
            c_mn, c_mk, c_nk = (np.empty((m, n), np.float32), np.empty((m, k), np.float32),
                                np.empty((n, k), np.float32))
            # the three products of a Dense layer: y = x W^T, dx = g W, dW = g^T x
            prods32 = {
                "fwd x@W^T": lambda p: _C._sgemm(x32, w32, False, True, 1.0, 0.0, c_mn, path=p),
                "dx g@W": lambda p: _C._sgemm(g32, w32, False, False, 1.0, 0.0, c_mk, path=p),
                "dW g^T@x": lambda p: _C._sgemm(g32, x32, True, False, 1.0, 0.0, c_nk, path=p),
            }
            prods16 = {
                "fwd x@W^T": lambda p: _C._gemm_lp(x16, w16, False, True, 1.0, 0.0, c_mn, path=p),
                "dx g@W": lambda p: _C._gemm_lp(g32, w16, False, False, 1.0, 0.0, c_mk, path=p),
                "dW g^T@x": lambda p: _C._gemm_lp(g32, x16, True, False, 1.0, 0.0, c_nk, path=p),
            }
            print(f"\n== {m}x{n}x{k} (m x n x k), GFLOP/s (best of {args.reps}) ==")
            if torch is not None:
                tx, tw, tg = (torch.from_numpy(x32).bfloat16(), torch.from_numpy(w32).bfloat16(),
                              torch.from_numpy(g32).bfloat16())
                tt = {"fwd x@W^T": lambda: tx @ tw.T, "dx g@W": lambda: tg @ tw, "dW g^T@x": lambda: tg.T @ tx}
                tsec = {name: best_of(fn, args.reps) for name, fn in tt.items()}
                print("  torch bf16 matmul        " + "  ".join(f"{name} {flop / s / 1e9:7.1f}" for name, s in tsec.items()))
            for level in levels:
                _C._set_isa(level)
                ref = {}
                for p in ("own", "openblas"):
                    if p == "own" and level == "baseline":
                        continue
                    secs = {name: best_of(lambda f=fn: f(p), args.reps) for name, fn in prods32.items()}
                    ref.setdefault("f32", secs)
                    print(f"  [{level:8s}] f32 sgemm {p:9s}" + "  ".join(f"{name} {flop / s / 1e9:7.1f}" for name, s in secs.items()))
                paths = (["best", "widen", "blas"] + (["bf16dot"] if _C._gemm_lp_has_bf16dot() else [])
                         + (["amx", "amx_split"] if _C._gemm_lp_has_amx() else []))
                if level == "baseline":
                    paths = ["best", "blas"]
                for path in paths:
                    secs = {name: best_of(lambda f=fn: f(path), args.reps) for name, fn in prods16.items()}
                    base = ref["f32"]
                    print(f"  [{level:8s}] gemm_lp {path:11s}" + "  ".join(
                        f"{name} {flop / s / 1e9:7.1f} ({base[name] / s:4.2f}x f32)" for name, s in secs.items()))
    finally:
        _C._set_isa(prev)
    print(f"\nloadavg after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
