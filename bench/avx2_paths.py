"""fastnn's C++ kernels at forced ISA levels (AVX-512, AVX2) against torch, each library
alone in its own process, alternated; and fastnn's numpy API right after torch ops in
one process (the mixed-process case). Ceilings (copy GB/s, sgemm GFLOP/s) are measured
in the same run.

    python bench/avx2_paths.py [--reps 3] [--levels avx512,avx2,avx2-portable] [--quick]

A level named LEVEL-portable runs that level with FASTNN_SIMD=0 (the portable loops
instead of the hand-vectorized kernels of csrc/cpu/simd_kernels.h).

    python bench/avx2_paths.py --kernels [--compare /path/to/other/checkout]

Per-element cost of each float32 kernel, one thread, in-cache (64K elements), measured
in thread CPU time (so it holds on a busy machine), at each level, portable and vector,
and for --compare's checkout (its fastnn imported through PYTHONPATH) at its default level.

    python bench/avx2_paths.py --gemm [--reps 5] [--levels avx2] [--threads 2 | --cpu-time]

fastnn's own sgemm (forced at every size) against OpenBLAS, at each level: Dense+relu
forward+backward and forward alone at the DENSE shapes (m x k x n), GFLOP/s, each
(level, path) one process per repetition, alternated; the median and best are shown.
--cpu-time: one thread, timed in thread CPU time (the kernels' own cost, robust to load).

    python bench/avx2_paths.py --mixed [--reps 3] [--levels avx512]

The mixed-process case alone: fastnn's numpy Dense f+b right after torch matmuls in one
process vs without torch ops, in alternated blocks, for three variants (default; with
fastnn.torch's extension loaded, so the numpy API runs on torch's pool; OMP_WAIT_POLICY=PASSIVE;
numpy's matmuls instead of torch's).

Each (side, level) is one child process (`--worker SIDE LEVEL`) per repetition, which
first checks fastnn's results (check_fastnn) and then times each case (the median of a
few timings); the table shows each case's best over the repetitions (processes). GB/s counts the bytes read and
written (forward: x, y; backward: x, dy, dx), GFLOP/s 6 m n k for Dense f+b.
"""
import argparse
import json
import os
import subprocess
import sys
import time

N_ACT = 1 << 24
ACTS = [("relu", {}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("softplus", {}), ("tanh", {}),
        ("sigmoid", {}), ("silu", {}), ("mish", {}), ("elu", {}), ("selu", {}), ("celu", {}),
        ("log_sigmoid", {})]
DENSE = [(64, 256, 256), (256, 1024, 1024), (1024, 1024, 1024)]
ROWS, COLS = 8192, 1000


def best(fn, reps, inner=1, clock=time.perf_counter):
    """Median seconds per call over `reps` timings of `inner` calls (after one warm-up)."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = clock()
        for _ in range(inner):
            fn()
        ts.append((clock() - t0) / inner)
    return sorted(ts)[len(ts) // 2]


def check_fastnn(level):
    """Correctness before timing: every timed activation at `level` against the portable
    code (baseline level) on 4099 points, and Dense+relu against numpy."""
    import numpy as np
    import fastnn
    from fastnn._backends import cpp
    rng = np.random.default_rng(1)
    x = (4.0 * rng.standard_normal(4099)).astype(np.float32)
    dy = rng.standard_normal(x.size).astype(np.float32)
    for name, p in ACTS:
        cpp._C._set_isa("baseline")
        y0 = fastnn.activation_forward(x, name, **p)
        g0 = fastnn.activation_backward(dy, name, x=x, y=y0, **p)
        cpp._C._set_isa(level)
        y = fastnn.activation_forward(x, name, **p)
        g = fastnn.activation_backward(dy, name, x=x, y=y, **p)
        np.testing.assert_allclose(y, y0, rtol=1e-5, atol=1e-6, err_msg=f"{name}{p} forward at {level}")
        np.testing.assert_allclose(g, g0, rtol=1e-4, atol=1e-5, err_msg=f"{name}{p} backward at {level}")
    xx = rng.standard_normal((33, 65)).astype(np.float32)
    w = rng.standard_normal((17, 65)).astype(np.float32)
    b = rng.standard_normal(17).astype(np.float32)
    y, _ = fastnn.dense_forward(xx, w, b, "relu")
    ref = np.maximum(xx.astype(np.float64) @ w.T.astype(np.float64) + b, 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4, err_msg=f"dense at {level}")


def dense_calls(rng, m, kk, n):
    """(forward+backward, forward) of a Dense+relu layer x (m, kk) -> (m, n) through the
    numpy API, on fixed random data."""
    import numpy as np
    import fastnn
    xx = rng.standard_normal((m, kk)).astype(np.float32)
    w = (rng.standard_normal((n, kk)) / np.sqrt(kk)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal((m, n)).astype(np.float32)

    def fb():
        yy, zz = fastnn.dense_forward(xx, w, b, "relu")
        fastnn.dense_backward(g, xx, w, yy, zz, "relu")

    def f():
        fastnn.dense_forward(xx, w, b, "relu")
    return fb, f


def inner_for(seconds):
    return max(1, int(0.05 / max(seconds, 1e-7)))


def act_key(name, params):
    return name + ("-tanh" if params.get("approximate") == "tanh" else "")


def worker(side, level, quick):
    import numpy as np
    res = {}
    rng = np.random.default_rng(0)
    reps = 3 if quick else 5
    x = (3.0 * rng.standard_normal(N_ACT)).astype(np.float32)
    dy = rng.standard_normal(N_ACT).astype(np.float32)
    out = np.empty_like(x)
    res["copy_GBps"] = 2 * x.nbytes / best(lambda: np.copyto(out, x), reps)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    logits = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    target = rng.integers(0, COLS, ROWS)
    if side == "fastnn":
        import fastnn
        from fastnn._backends import cpp
        C = cpp._C
        check_fastnn(level.split("-")[0])
        res["isa"] = C._set_isa(level.split("-")[0]) + ("-portable" if level.endswith("-portable") else "")
        res["gemm_path"] = list(C._gemm_path())
        for name, p in ACTS:
            k = act_key(name, p)
            y = fastnn.activation_forward(x, name, **p)
            res[f"act {k} f"] = 8 * N_ACT / best(lambda: fastnn.activation_forward(x, name, **p), reps)
            res[f"act {k} b"] = 12 * N_ACT / best(lambda: fastnn.activation_backward(dy, name, x=x, y=y, **p), reps)
        # softmax f+b, cross-entropy f+b
        def sm():
            y = fastnn.activation_forward(logits, "softmax")
            fastnn.activation_backward(logits, "softmax", x=logits, y=y)
        res["softmax f+b ms"] = 1e3 * best(sm, reps)
        def ce():
            fastnn.loss_forward(logits, target, "cross_entropy")
            fastnn.loss_backward(logits, target, "cross_entropy")
        res["cross_entropy f+b ms"] = 1e3 * best(ce, reps)
        for m, kk, n in DENSE:
            fb, f = dense_calls(rng, m, kk, n)
            t = best(fb, reps, inner_for(best(fb, 1)))
            res[f"dense {m}x{kk}x{n} f+b GFs"] = 6 * m * n * kk / t / 1e9
            res[f"dense {m}x{kk}x{n} f+b us"] = t * 1e6
            res[f"dense {m}x{kk}x{n} f GFs"] = 2 * m * n * kk / best(f, reps, inner_for(best(f, 1))) / 1e9
        # the sgemm ceiling: numpy's matmul (OpenBLAS) at 1024^3, in this process
        res["sgemm_ceiling_GFs"] = 2 * 1024 ** 3 / best(lambda: a @ a, reps) / 1e9
        # mixed process: torch ops just before each fastnn call; then again once fastnn.torch's
        # extension is loaded (the numpy API then runs on torch's pool: csrc/cpu/parallel.h)
        import torch
        ta = torch.randn(1024, 1024)
        for m, kk, n, tag in [DENSE[1] + ("",), DENSE[1] + (" torch-pool",)]:
            if tag:
                from fastnn.torch import _native
                if _native.module() is None:
                    continue
            fb, _ = dense_calls(rng, m, kk, n)
            ts = []
            for _ in range(reps * 3):
                for _ in range(2):
                    ta @ ta
                t0 = time.perf_counter()
                fb()
                ts.append(time.perf_counter() - t0)
            res[f"mixed dense {m}x{kk}x{n} f+b GFs"] = 6 * m * n * kk / sorted(ts)[len(ts) // 2] / 1e9
            ts = []
            for _ in range(reps * 3):
                fb()
                t0 = time.perf_counter()
                fb()
                ts.append(time.perf_counter() - t0)
            res[f"alone-same-loop dense {m}x{kk}x{n} f+b GFs"] = 6 * m * n * kk / sorted(ts)[len(ts) // 2] / 1e9
    else:
        import torch
        import torch.nn.functional as F
        res["isa"] = torch.backends.cpu.get_cpu_capability()
        xt = torch.from_numpy(x)
        dyt = torch.from_numpy(dy)
        fns = {"relu": F.relu, "gelu": F.gelu, "gelu-tanh": lambda t: F.gelu(t, approximate="tanh"),
               "softplus": F.softplus, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "silu": F.silu,
               "mish": F.mish, "elu": F.elu, "selu": F.selu, "celu": F.celu, "log_sigmoid": F.logsigmoid}
        for name, p in ACTS:
            k = act_key(name, p)
            f = fns[k]
            res[f"act {k} f"] = 8 * N_ACT / best(lambda: f(xt), reps)
            xg = xt.clone().requires_grad_(True)
            yg = f(xg)
            res[f"act {k} b"] = 12 * N_ACT / best(lambda: torch.autograd.grad(yg, xg, dyt, retain_graph=True), reps)
        lt = torch.from_numpy(logits)
        tt = torch.from_numpy(target)
        def sm():
            l = lt.clone().requires_grad_(True)
            torch.softmax(l, -1).backward(lt)
        res["softmax f+b ms"] = 1e3 * best(sm, reps)
        def ce():
            l = lt.clone().requires_grad_(True)
            F.cross_entropy(l, tt).backward()
        res["cross_entropy f+b ms"] = 1e3 * best(ce, reps)
        for m, kk, n in DENSE:
            xx = torch.randn(m, kk)
            lin = torch.nn.Linear(kk, n)
            g = torch.randn(m, n)
            def fb():
                xg = xx.requires_grad_(True)
                torch.relu(lin(xg)).backward(g)
            t = best(fb, reps, inner_for(best(fb, 1)))
            res[f"dense {m}x{kk}x{n} f+b GFs"] = 6 * m * n * kk / t / 1e9
            res[f"dense {m}x{kk}x{n} f+b us"] = t * 1e6
            with torch.no_grad():
                f = lambda: torch.relu(lin(xx))
                res[f"dense {m}x{kk}x{n} f GFs"] = 2 * m * n * kk / best(f, reps, inner_for(best(f, 1))) / 1e9
        ta = torch.from_numpy(a)
        res["sgemm_ceiling_GFs"] = 2 * 1024 ** 3 / best(lambda: ta @ ta, reps) / 1e9
    print(json.dumps(res))


KERNEL_ACTS = [("gelu", {}), ("gelu", {"approximate": "tanh"}), ("softplus", {}), ("sigmoid", {}), ("silu", {}),
               ("mish", {}), ("tanh", {}), ("elu", {}), ("selu", {}), ("log_sigmoid", {})]


def kernels_worker(level):
    import numpy as np
    import fastnn
    from fastnn._backends import cpp
    if level != "-":
        cpp._C._set_isa(level.split("-")[0])
    rng = np.random.default_rng(0)
    n = 1 << 16
    x = (3 * rng.standard_normal(n)).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    logits = rng.standard_normal((256, 1000)).astype(np.float32)
    target = rng.integers(0, 1000, 256)

    def ns(f, count):
        f()
        b = float("inf")
        for _ in range(7):
            t0 = time.thread_time()
            for _ in range(10):
                f()
            b = min(b, (time.thread_time() - t0) / 10)
        return round(b / count * 1e9, 3)
    out = {}
    for name, p in KERNEL_ACTS:
        k = act_key(name, p)
        y = fastnn.activation_forward(x, name, **p)
        out[f"{k} f"] = ns(lambda: fastnn.activation_forward(x, name, **p), n)
        out[f"{k} b"] = ns(lambda: fastnn.activation_backward(dy, name, x=x, y=y, **p), n)
    out["softmax f"] = ns(lambda: fastnn.activation_forward(logits, "softmax"), logits.size)
    out["cross_entropy f"] = ns(lambda: fastnn.loss_forward(logits, target, "cross_entropy"), logits.size)
    out["cross_entropy b"] = ns(lambda: fastnn.loss_backward(logits, target, "cross_entropy"), logits.size)
    print(json.dumps(out))


def kernels_main(args):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = [(lv, here) for lv in ("avx512", "avx512-portable", "avx2", "avx2-portable")]
    if args.compare:
        runs.append(("-", os.path.abspath(args.compare)))
    res = {}
    for lv, root in runs:
        env = dict(os.environ, FASTNN_NUM_THREADS="1", PYTHONPATH=root,
                   FASTNN_SIMD="0" if lv.endswith("-portable") else "1")
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--kernels-worker", lv], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{lv} {root} failed:\n{p.stderr[-3000:]}")
        res[(lv, root)] = json.loads(p.stdout.strip().splitlines()[-1])
    names = [("compare" if lv == "-" else lv) for lv, _ in runs]
    print(f"# ns per element, 1 thread, thread CPU time; load {os.getloadavg()}")
    print("| kernel | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 1))
    for k in res[runs[0]]:
        print(f"| {k} | " + " | ".join(str(res[r].get(k, "-")) for r in runs) + " |")


def level_env(env, level):
    """The environment of a fastnn process at `level`: at AVX2, OpenBLAS's Haswell kernels
    (OPENBLAS_CORETYPE), as on an AVX2-only CPU (its default here would be AVX-512's)."""
    return dict(env, OPENBLAS_CORETYPE="Haswell") if level.startswith("avx2") else dict(env)


def gemm_worker(level, path):
    clock = time.thread_time if os.environ.get("FASTNN_BENCH_CPU_TIME") == "1" else time.perf_counter
    import numpy as np
    import fastnn
    from fastnn._backends import cpp
    C = cpp._C
    res = {"isa": C._set_isa(level), "gemm_path": list(C._set_gemm_path(path, 0)), "threads": fastnn.num_threads(),
           "blas": C.blas_config().split()[4]}
    rng = np.random.default_rng(0)
    for m, kk, n in DENSE:
        fb, f = dense_calls(rng, m, kk, n)
        res[f"{m}x{kk}x{n} f+b"] = 6 * m * n * kk / best(fb, 5, inner_for(best(fb, 1)), clock) / 1e9
        res[f"{m}x{kk}x{n} f"] = 2 * m * n * kk / best(f, 5, inner_for(best(f, 1)), clock) / 1e9
    print(json.dumps(res))


def gemm_main(args):
    import statistics
    runs = [(lv, path) for lv in args.levels.split(",") for path in ("fastnn", "openblas")]
    env = dict(os.environ)
    if args.threads:
        env["FASTNN_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    if args.cpu_time:  # one thread, its CPU time: the kernels' cost, robust to a busy machine
        env["FASTNN_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
        env["FASTNN_BENCH_CPU_TIME"] = "1"
    res = {r: [] for r in runs}
    for _ in range(args.reps):
        for lv, path in runs:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--gemm-worker", lv, path],
                               env=level_env(env, lv), capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"{lv} {path} failed:\n{p.stderr[-3000:]}")
            res[(lv, path)].append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(f"# Dense+relu GFLOP/s, median (best) of {args.reps} processes each; load {os.getloadavg()}")
    for r in runs:
        r0 = res[r][0]
        print(f"# {r}: isa={r0['isa']} gemm={r0['gemm_path']} threads={r0['threads']} openblas core={r0['blas']}")
    keys = [k for k in res[runs[0]][0] if k not in ("isa", "gemm_path", "threads", "blas")]
    print("| case | " + " | ".join(f"{lv} {path}" for lv, path in runs) + " | fastnn/openblas |")
    print("|" + "---|" * (len(runs) + 2))
    for k in keys:
        cells, ratios = [], []
        for lv in args.levels.split(","):
            med = {}
            for path in ("fastnn", "openblas"):
                v = [x[k] for x in res[(lv, path)]]
                med[path] = statistics.median(v)
                cells.append(f"{med[path]:.1f} ({max(v):.1f})")
            ratios.append(f"{lv} {med['fastnn'] / med['openblas']:.2f}x")
        print(f"| {k} | " + " | ".join(cells) + " | " + ", ".join(ratios) + " |")


MIXED_VARIANTS = {  # name: (environment, load fastnn.torch's extension first)
    "default": ({}, False),
    "torch-pool": ({}, True),  # the numpy API on torch's pool (csrc/cpu/parallel.h, set_default_executor)
    "omp-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, False),  # torch's workers sleep at once
    # the same matmuls by numpy instead of torch: numpy's own OpenBLAS (a second copy in the
    # process, with its own server threads spinning after each call)
    "numpy-ops": ({}, False),
}


def mixed_worker(variant, level):
    import statistics
    import numpy as np
    import torch
    from fastnn._backends import cpp
    cpp._C._set_isa(level)
    if MIXED_VARIANTS[variant][1]:
        from fastnn.torch import _native
        assert _native.module() is not None, _native.status()
    rng = np.random.default_rng(0)
    m, kk, n = DENSE[1]
    fb, _ = dense_calls(rng, m, kk, n)
    ta = torch.randn(1024, 1024)
    if variant == "numpy-ops":
        ta = ta.numpy()
    fb()
    ta @ ta
    mixed, alone = [], []
    for _ in range(4):  # blocks alternated, so that the machine's load drifts over both alike
        for _ in range(10):
            for _ in range(3):
                ta @ ta
            t0 = time.perf_counter()
            fb()
            mixed.append(time.perf_counter() - t0)
        time.sleep(0.3)  # torch's and OpenBLAS's workers asleep again: "alone" is alone
        fb()
        for _ in range(10):
            t0 = time.perf_counter()
            fb()
            alone.append(time.perf_counter() - t0)
    f = 6 * m * n * kk / 1e9
    print(json.dumps({"mixed": f / statistics.median(mixed), "alone": f / statistics.median(alone),
                      "mixed best": f / min(mixed), "alone best": f / min(alone)}))


def mixed_main(args):
    level = args.levels.split(",")[0]
    res = {v: [] for v in MIXED_VARIANTS}
    for _ in range(args.reps):
        for v, (extra, _) in MIXED_VARIANTS.items():
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--mixed-worker", v, level],
                               env=level_env(dict(os.environ, **extra), level), capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"{v} failed:\n{p.stderr[-3000:]}")
            res[v].append(json.loads(p.stdout.strip().splitlines()[-1]))
    m, kk, n = DENSE[1]
    print(f"# Dense+relu f+b {m}x{kk}x{n} GFLOP/s at {level}, right after 3 torch 1024^3 matmuls (mixed) and "
          f"without torch ops (alone), in alternated blocks; per process the median of 40 (best); {args.reps} processes "
          f"per variant, alternated; load {os.getloadavg()}")
    print("| variant | mixed | alone | mixed/alone per process |")
    print("|---|---|---|---|")
    for v, rs in res.items():
        print(f"| {v} | " + ", ".join(f"{r['mixed']:.1f} ({r['mixed best']:.1f})" for r in rs) + " | "
              + ", ".join(f"{r['alone']:.1f} ({r['alone best']:.1f})" for r in rs) + " | "
              + ", ".join(f"{r['mixed'] / r['alone']:.2f}" for r in rs) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="processes per (side, level), alternated")
    ap.add_argument("--levels", default="avx512,avx2,avx2-portable")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--kernels", action="store_true", help="per-element kernel costs (see above)")
    ap.add_argument("--compare", help="with --kernels: another checkout to time at its default level")
    ap.add_argument("--gemm", action="store_true", help="own sgemm vs OpenBLAS in Dense (see above)")
    ap.add_argument("--threads", type=int, default=0, help="with --gemm: FASTNN/OPENBLAS_NUM_THREADS (0: default)")
    ap.add_argument("--cpu-time", action="store_true", help="with --gemm: one thread, thread CPU time")
    ap.add_argument("--mixed", action="store_true", help="the mixed-process case, its variants (see above)")
    ap.add_argument("--mixed-worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--gemm-worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--worker", nargs=2, metavar=("SIDE", "LEVEL"), help=argparse.SUPPRESS)
    ap.add_argument("--kernels-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker, args.quick)
    if args.kernels_worker:
        return kernels_worker(args.kernels_worker)
    if args.kernels:
        return kernels_main(args)
    if args.gemm_worker:
        return gemm_worker(*args.gemm_worker)
    if args.mixed_worker:
        return mixed_worker(*args.mixed_worker)
    if args.mixed:
        return mixed_main(args if args.levels != ap.get_default("levels") else argparse.Namespace(**{**vars(args), "levels": "avx512"}))
    if args.gemm:
        return gemm_main(args if args.levels != ap.get_default("levels") else argparse.Namespace(**{**vars(args), "levels": "avx2"}))
    levels = args.levels.split(",")
    # torch at its own best level, and capped to AVX2 (ATEN_CPU_CAPABILITY) to pair with
    # fastnn's AVX2 columns, as on an AVX2-only CPU
    torch_levels = ["-"] + (["avx2"] if any(lv.startswith("avx2") for lv in levels) else [])
    runs = [("fastnn", lv) for lv in levels] + [("torch", lv) for lv in torch_levels]
    results = {r: [] for r in runs}
    for _ in range(args.reps):
        for side, lv in runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, lv] + (["--quick"] if args.quick else [])
            env = dict(os.environ, FASTNN_SIMD="0" if lv.endswith("-portable") else "1")
            if side == "fastnn":
                env = level_env(env, lv)
            if side == "torch" and lv != "-":
                env["ATEN_CPU_CAPABILITY"] = lv
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                sys.exit(f"{side} {lv} failed:\n{p.stderr[-3000:]}")
            results[(side, lv)].append(json.loads(p.stdout.strip().splitlines()[-1]))

    def lower_better(k):
        return k.endswith(" ms") or k.endswith(" us")

    def agg(rs, k):
        vals = [r[k] for r in rs if k in r]
        return (min(vals) if lower_better(k) else max(vals)) if vals else None

    def torch_for(lv):  # the torch run a fastnn level is compared with
        t = lv.split("-")[0]
        return ("torch", t) if ("torch", t) in results else ("torch", "-")

    keys = [k for k in results[runs[0]][0] if k not in ("isa", "gemm_path")]
    print(f"# load: {os.getloadavg()}  cpus: {os.cpu_count()}  reps: {args.reps}")
    for side, lv in runs:
        r = results[(side, lv)][0]
        print(f"# {side} {lv}: isa={r.get('isa')} gemm={r.get('gemm_path')}")
    cols = [(s, lv) for s, lv in runs]
    head = "| case | " + " | ".join(f"{s} {lv}" for s, lv in cols) + " | " + \
        " | ".join(f"{lv}/torch {torch_for(lv)[1]}" for s, lv in runs if s == "fastnn") + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for k in keys:
        vals = [agg(results[c], k) for c in cols]
        ratios = []
        for s, lv in runs:
            if s != "fastnn":
                continue
            v, t = agg(results[(s, lv)], k), agg(results[torch_for(lv)], k)
            ratios.append("-" if v is None or t is None else f"{(t / v if lower_better(k) else v / t):.2f}x")

        def fmt(v):
            if v is None:
                return "-"
            return f"{v / 1e9:.1f}" if k.startswith("act") or k == "copy_GBps" else f"{v:.1f}"
        unit = " GB/s" if k.startswith("act") else ""
        print(f"| {k}{unit} | " + " | ".join(fmt(v) for v in vals) + " | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
