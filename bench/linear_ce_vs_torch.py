"""Time and peak memory of fastnn.torch.functional.linear_cross_entropy against torch
2.13's chunked path, F.linear_cross_entropy(..., options=LinearCrossEntropyOptions()).

    flock /tmp/fastnn_bench.lock python bench/linear_ce_vs_torch.py            # both shapes
    python bench/linear_ce_vs_torch.py --shape 8192 1024 32000 --repeat 3 --rounds 2
    python bench/linear_ce_vs_torch.py --quick                                  # (2048, 512, 8000)
    python bench/linear_ce_vs_torch.py --impls torch_chunked,fastnn,fastnn:512,torch_reference

Each (implementation, shape, round) runs in its own process, the implementations
alternating within a round. A process allocates x, W, the targets and the gradient
buffers of x and W (.grad, zero-filled: what any implementation must hold), records its
resident set size, then runs forward + backward `--repeat` times (mean reduction, float32,
no bias, as torch's module by default). "peak extra" is the peak RSS minus that baseline:
the memory the implementation itself needed. Both sides use torch's default threads and
the same options instance (allow_retain_graph=False: gradients consumed in place);
fastnn resolves "auto" to 512 rows per chunk ("fastnn:R" passes batch_chunk_size=R).

(4096, 4096, 128256): W and dW are 2.1 GB each; with torch's reference path
(options=None, "torch_reference") the (N, C) logits and their gradient add 4.2 GB more,
so that implementation is off by default for the big shape.
"""
import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(8192, 1024, 32000), (4096, 4096, 128256)]
IMPLS = ("torch_chunked", "fastnn")


from dense_ce_memory import peak_mb, rss_mb  # noqa: E402 - bench/ is the script's directory


def child(impl, n, h, c, repeat):
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, h, generator=g).requires_grad_()
    w = torch.randn(c, h, generator=g)
    w.mul_(1 / h ** 0.5)  # in place: a temporary copy of W would raise the peak RSS
    w.requires_grad_()
    t = torch.randint(0, c, (n,), generator=g)
    for p in (x, w):  # the gradient buffers, allocated and touched up front (zeros_like's pages
        p.grad = torch.empty_like(p).fill_(0.0)  # would become resident only when backward writes)
    if impl == "fastnn" or impl.startswith("fastnn:"):  # "fastnn:R": R rows per chunk
        import fastnn.torch as fnn

        rows = int(impl.split(":")[1]) if ":" in impl else None
        fn, options = fnn.functional.linear_cross_entropy, torch.nn.LinearCrossEntropyOptions(batch_chunk_size=rows)
    elif impl == "torch_chunked":
        fn, options = F.linear_cross_entropy, torch.nn.LinearCrossEntropyOptions()
    elif impl == "torch_reference":
        fn, options = F.linear_cross_entropy, None
    else:
        raise ValueError(f"unknown impl {impl!r}; expected torch_chunked, torch_reference, fastnn or fastnn:ROWS")

    base = rss_mb()
    times, loss = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(x, w, t, options=options)
        out.backward()
        times.append(time.perf_counter() - t0)
        loss = float(out)
    return {"impl": impl, "shape": [n, h, c], "loss": loss, "median_s": sorted(times)[(len(times) - 1) // 2],
            "times_s": times, "baseline_mb": base, "peak_extra_mb": peak_mb() - base,
            "threads": torch.get_num_threads()}


def run(impl, shape, repeat):
    code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import linear_ce_vs_torch as m; print(json.dumps(m.child({impl!r}, *{list(shape)!r}, {repeat})))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{impl} {shape} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape")
    ap.add_argument("--shape", type=int, nargs=3, metavar=("N", "H", "C"))
    ap.add_argument("--repeat", type=int, default=3, help="steps per process (the median, lower for even counts)")
    ap.add_argument("--rounds", type=int, default=1, help="processes per implementation, alternating")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--json", help="also write the raw rows here")
    args = ap.parse_args(argv)
    shapes = [tuple(args.shape)] if args.shape else ([(2048, 512, 8000)] if args.quick else SHAPES)
    impls = args.impls.split(",")
    print(f"load average at start: {os.getloadavg()}")
    print(f"{'shape (N,H,C)':>22}  {'impl':>15}  {'median s':>9}  {'peak extra MB':>13}  {'loss':>9}")
    rows = []
    for shape in shapes:
        got = {i: [] for i in impls}
        for _ in range(args.rounds):
            for impl in impls:
                r = run(impl, shape, args.repeat)
                got[impl].append(r)
                rows.append(r)
                print(f"{str(tuple(r['shape'])):>22}  {impl:>15}  {r['median_s']:9.3f}  {r['peak_extra_mb']:13.0f}"
                      f"  {r['loss']:9.5f}", flush=True)
        if "fastnn" in got and "torch_chunked" in got:
            best = {i: min(r["median_s"] for r in got[i]) for i in ("fastnn", "torch_chunked")}
            mem = {i: max(r["peak_extra_mb"] for r in got[i]) for i in ("fastnn", "torch_chunked")}
            print(f"{'':>22}  fastnn/torch_chunked: time {best['fastnn'] / best['torch_chunked']:.2f}x (best of "
                  f"rounds), peak extra memory {mem['fastnn'] / max(mem['torch_chunked'], 1):.3f}x")
    print(f"load average at end: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
