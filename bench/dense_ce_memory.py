"""Time and peak memory of the fused Dense + cross-entropy, fastnn vs torch.

    python bench/dense_ce_memory.py                 # (8192, 1024, 32000) and (4096, 4096, 128256)
    python bench/dense_ce_memory.py --quick         # (2048, 512, 8000)
    python bench/dense_ce_memory.py --shape 8192 1024 32000

Each (implementation, shape) runs in its own process: it allocates x, W, b, the targets
and the three gradient buffers' worth of memory first (what any implementation must
hold), records the resident set size, then runs forward+backward `--repeat` times. "peak
extra" is the process's peak RSS minus that baseline: the memory the implementation
itself needed (torch: the (N, C) logits, their softmax and gradient; fastnn: one chunk).
float32, torch with its default threads, fastnn's default backend and chunk size.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

SHAPES = [(8192, 1024, 32000), (4096, 4096, 128256)]


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(impl, n, h, c, repeat):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h), dtype=np.float32)
    w = rng.standard_normal((c, h), dtype=np.float32)
    w *= np.float32(1 / np.sqrt(h))  # in place: a temporary copy of W would raise the peak RSS
    b = np.zeros(c, np.float32)
    t = rng.integers(0, c, n)
    if impl == "torch":
        import torch
        import torch.nn.functional as F

        xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        tt = torch.from_numpy(t)
        # the gradient buffers autograd will keep, allocated up front like fastnn's
        for p in (xt, wt, bt):
            p.grad = torch.zeros_like(p)

        def step():
            loss = F.cross_entropy(F.linear(xt, wt, bt), tt)
            loss.backward()
            return float(loss)
    else:
        import fastnn

        # fastnn returns fresh gradients; keep one set alive so the baseline counts them
        _keep = [np.ones_like(x), np.ones_like(w), np.ones_like(b)]

        def step():
            _keep.clear()  # released first, as torch overwrites .grad in place
            loss, grads = fastnn.dense_cross_entropy(x, w, b, t)
            _keep[:] = grads
            return float(loss)

    base = rss_mb()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    return {"impl": impl, "shape": [n, h, c], "loss": loss, "median_s": sorted(times)[len(times) // 2],
            "baseline_mb": base, "peak_extra_mb": peak_mb() - base}


def run(impl, shape, repeat):
    code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import dense_ce_memory as m; print(json.dumps(m.child({impl!r}, *{list(shape)!r}, {repeat})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape")
    ap.add_argument("--shape", type=int, nargs=3, metavar=("N", "H", "C"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    shapes = [tuple(args.shape)] if args.shape else ([(2048, 512, 8000)] if args.quick else SHAPES)
    print(f"{'shape (N,H,C)':>22}  {'impl':>7}  {'median s':>9}  {'peak extra MB':>13}  {'loss':>9}")
    for shape in shapes:
        rows = [run(impl, shape, args.repeat) for impl in ("torch", "fastnn")]
        for r in rows:
            print(f"{str(tuple(r['shape'])):>22}  {r['impl']:>7}  {r['median_s']:9.3f}  {r['peak_extra_mb']:13.0f}"
                  f"  {r['loss']:9.5f}")
        tr, fr = rows
        print(f"{'':>22}  fastnn/torch: time {fr['median_s'] / tr['median_s']:.2f}x, "
              f"peak extra memory {fr['peak_extra_mb'] / max(tr['peak_extra_mb'], 1):.3f}x")


if __name__ == "__main__":
    main()
