"""GPU benchmark: fastnn's cupy backend against torch CUDA, with the device's ceilings
measured in the same run (device-to-device copy bandwidth, cuBLAS FP32 GEMM rate; the
bfloat16 rows against torch's bfloat16 GEMM rate).

    python bench/gpu_bench.py [--quick] [--csv FILE] [--only-bf16]

The bfloat16 rows (issue 18's GPU targets): Dense + relu forward + backward at 4096^3 and
relu / gelu on 256M elements, fastnn's cupy backend (GemmEx, float32 compute) against
torch's bfloat16, checked at bfloat16's tolerance (normwise 1.6e-2) first.

Every row checks fastnn's result against torch's before timing it. Times are medians of
CUDA-event-timed repetitions after warm-up (and after NVRTC compilation), in ms.
"""
import argparse
import csv
import statistics
import sys

import cupy as cp
import numpy as np
import torch

import fastnn


def timed(fn, reps=7, warm=3, inner=5):
    """Median over reps of the GPU time per call of `inner` back-to-back calls: the host
    work of a call (Python, validation, launch) overlaps the previous call's kernels, as
    in a training loop, so this is the device throughput, not one call's latency."""
    for _ in range(warm):
        fn()
    cp.cuda.Device().synchronize()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        for _ in range(inner):
            fn()
        b.record()
        b.synchronize()
        ts.append(cp.cuda.get_elapsed_time(a, b) / inner)
    return statistics.median(ts)


def t2c(t):
    return cp.from_dlpack(t.detach())


def check(name, got, ref, rtol):
    got = cp.asnumpy(got).astype(np.float64)
    ref = ref.detach().double().cpu().numpy()
    err = float(np.max(np.abs(got - ref) / (np.abs(ref).max() + 1e-30)))
    if not err <= rtol:
        raise SystemExit(f"{name}: fastnn differs from torch: max normwise error {err:.3g} > {rtol}")
    return err


def ceilings(quick):
    n = (1 << 28) if not quick else (1 << 26)
    a = cp.empty(n, dtype=cp.float32)
    b = cp.empty_like(a)
    ms = timed(lambda: b.__setitem__(Ellipsis, a))
    bw = 2 * a.nbytes / ms / 1e6  # GB/s, read + write
    m = 8192 if not quick else 4096
    x = cp.random.standard_normal((m, m), dtype=cp.float32)
    y = cp.empty_like(x)
    ms2 = timed(lambda: cp.matmul(x, x, out=y))
    return bw, 2 * m ** 3 / ms2 / 1e9  # GB/s, TFLOP/s (flop per ms / 1e9)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--csv")
    ap.add_argument("--only-bf16", action="store_true", help="only the bfloat16 rows")
    a = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False  # both sides: full FP32 products
    dev = torch.device("cuda")
    rows = []
    bw, gf = ceilings(a.quick)
    print(f"device: {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}, copy {bw:.0f} GB/s (read+write), "
          f"cuBLAS FP32 GEMM {gf:.1f} TFLOP/s", flush=True)
    g = torch.Generator(device=dev).manual_seed(0)

    def row(op, shape, t_f, t_t, work, unit):
        rate = work / t_f / 1e6 if unit == "GB/s" else work / t_f / 1e9  # per ms: GB/s, TFLOP/s
        ceil = bw if unit == "GB/s" else gf
        rows.append({"op": op, "shape": shape, "fastnn_ms": round(t_f, 4), "torch_ms": round(t_t, 4),
                     "speedup": round(t_t / t_f, 3), "rate": round(rate, 1), "unit": unit,
                     "of_ceiling": round(rate / ceil, 3)})
        print(f"{op:28s} {shape:20s} fastnn {t_f:8.3f} ms  torch {t_t:8.3f} ms  x{t_t / t_f:5.2f}  "
              f"{rate:9.1f} {unit} ({100 * rate / ceil:4.0f}% of ceiling)", flush=True)

    bf16_rows(a.quick, dev, g, row)
    if a.only_bf16:
        return report(rows, a.csv)

    # Dense + relu forward and backward
    dense_shapes = [(4096, 4096, 4096), (8192, 1024, 1024)] if not a.quick else [(2048, 2048, 2048)]
    for m, k, n in dense_shapes:
        x = torch.randn(m, k, device=dev, generator=g)
        w = torch.randn(n, k, device=dev, generator=g) / k ** 0.5
        b = torch.randn(n, device=dev, generator=g)
        dy = torch.randn(m, n, device=dev, generator=g)
        xc, wc, bc, dyc = t2c(x), t2c(w), t2c(b), t2c(dy)

        def f_fast():
            y, z = fastnn.dense_forward(xc, wc, bc, "relu")
            return fastnn.dense_backward(dyc, xc, wc, y, z, "relu")

        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))

        def f_torch():
            y = torch.relu(torch.nn.functional.linear(xr, wr, br))
            return torch.autograd.grad(y, (xr, wr, br), dy)

        (dx, dw, db), (tdx, tdw, tdb) = f_fast(), f_torch()
        for nm, gg, rr in (("dx", dx, tdx), ("dw", dw, tdw), ("db", db, tdb)):
            check(f"dense {nm}", gg, rr, 1e-4)
        row("dense+relu fwd+bwd", f"{m}x{k}x{n}", timed(f_fast), timed(f_torch), 6 * m * k * n, "TFLOP/s")

    # activations, forward and backward, on 256M elements
    ne = (1 << 28) if not a.quick else (1 << 24)
    x = torch.randn(ne, device=dev, generator=g)
    dy = torch.randn(ne, device=dev, generator=g)
    xc, dyc = t2c(x), t2c(dy)
    for act, tf in (("relu", torch.relu), ("gelu", torch.nn.functional.gelu)):
        check(f"{act} fwd", fastnn.activation_forward(xc, act), tf(x), 1e-6)
        row(f"{act} forward", f"{ne}", timed(lambda: fastnn.activation_forward(xc, act)), timed(lambda: tf(x)),
            2 * 4 * ne, "GB/s")
        xr = x.clone().requires_grad_()
        yr = tf(xr)
        if act == "relu":
            yc = fastnn.activation_forward(xc, act)
            f_fast = lambda: fastnn.activation_backward(dyc, act, y=yc)  # noqa: E731
            t_b = timed(lambda: torch.ops.aten.threshold_backward(dy, yr.detach(), 0))
        else:
            f_fast = lambda: fastnn.activation_backward(dyc, act, x=xc)  # noqa: E731
            t_b = timed(lambda: torch.ops.aten.gelu_backward(dy, x))
        check(f"{act} bwd", f_fast(), torch.autograd.grad(yr, xr, dy)[0], 1e-6)
        row(f"{act} backward", f"{ne}", timed(f_fast), t_b, 3 * 4 * ne, "GB/s")
        del xr, yr
    del x, dy, xc, dyc
    torch.cuda.empty_cache()
    cp.get_default_memory_pool().free_all_blocks()

    # cross_entropy forward + backward
    n, c = (8192, 32000) if not a.quick else (2048, 32000)
    logits = torch.randn(n, c, device=dev, generator=g) * 3
    tgt = torch.randint(0, c, (n,), device=dev, generator=g)
    lc, tc = t2c(logits), t2c(tgt)

    def f_fast():
        return fastnn.loss_forward(lc, tc, "cross_entropy"), fastnn.loss_backward(lc, tc, "cross_entropy")

    lr = logits.clone().requires_grad_()

    def f_torch():
        loss = torch.nn.functional.cross_entropy(lr, tgt)
        return loss, torch.autograd.grad(loss, lr)[0]

    (lf, gf_), (lt, gt) = f_fast(), f_torch()
    check("cross_entropy loss", lf, lt, 1e-5)
    check("cross_entropy grad", gf_, gt, 1e-5)
    row("cross_entropy fwd+bwd", f"{n}x{c}", timed(f_fast), timed(f_torch), 3 * 4 * n * c, "GB/s")

    # softmax forward along rows, and the fused Dense + cross-entropy (no logits kept)
    sm_f = lambda: fastnn.activation_forward(lc, "softmax")  # noqa: E731
    check("softmax", sm_f(), torch.softmax(logits, 1), 1e-6)
    row("softmax forward", f"{n}x{c}", timed(sm_f), timed(lambda: torch.softmax(logits, 1)), 2 * 4 * n * c, "GB/s")
    del lr, logits, lc
    torch.cuda.empty_cache()
    cp.get_default_memory_pool().free_all_blocks()
    h = 1024
    x = torch.randn(n, h, device=dev, generator=g)
    w = torch.randn(c, h, device=dev, generator=g) / h ** 0.5
    b = torch.zeros(c, device=dev)
    xc, wc, bc = t2c(x), t2c(w), t2c(b)
    dce = lambda: fastnn.dense_cross_entropy(xc, wc, bc, tc)  # noqa: E731
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))

    def ce_torch():
        loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(xr, wr, br), tgt)
        return loss, torch.autograd.grad(loss, (xr, wr, br))

    (l1, (dx1, dw1, _)), (l2, (dx2, dw2, _)) = dce(), ce_torch()
    check("dense_cross_entropy loss", l1, l2, 1e-5)
    check("dense_cross_entropy dx", dx1, dx2, 1e-4)
    check("dense_cross_entropy dw", dw1, dw2, 1e-4)
    row("dense_cross_entropy f+b", f"{n}x{h}x{c}", timed(dce, reps=5, inner=2), timed(ce_torch, reps=5, inner=2),
        6 * n * h * c, "TFLOP/s")

    return report(rows, a.csv)


def bf16_rows(quick, dev, g, row):
    """bfloat16 Dense + relu f+b (4096^3) and relu / gelu f / b on 256M elements, against
    torch's bfloat16 (its TFLOP/s rows' ceiling is still the FP32 GEMM rate: the bf16
    rate is printed beside it)."""
    bf = torch.bfloat16
    m = k = n = 4096 if not quick else 2048
    xb = torch.randn(m, k, device=dev, generator=g).to(bf)
    tflops = 2 * m * k * n / timed(lambda: torch.matmul(xb, xb)) / 1e9
    print(f"torch bf16 GEMM {m}^3: {tflops:.1f} TFLOP/s", flush=True)
    x = torch.randn(m, k, device=dev, generator=g).to(bf)
    w = (torch.randn(n, k, device=dev, generator=g) / k ** 0.5).to(bf)
    b = torch.randn(n, device=dev, generator=g).to(bf)
    dy = torch.randn(m, n, device=dev, generator=g).to(bf)
    xc, wc, bc, dyc = t2c(x), t2c(w), t2c(b), t2c(dy)

    def f_fast():
        y, z = fastnn.dense_forward(xc, wc, bc, "relu")
        return fastnn.dense_backward(dyc, xc, wc, y, z, "relu")

    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))

    def f_torch():
        y = torch.relu(torch.nn.functional.linear(xr, wr, br))
        return torch.autograd.grad(y, (xr, wr, br), dy)

    (dx, dw, db), (tdx, tdw, tdb) = f_fast(), f_torch()
    for nm, gg, rr in (("dx", dx, tdx), ("dw", dw, tdw), ("db", db, tdb)):
        check(f"bf16 dense {nm}", gg, rr, 1.6e-2)
    row("bf16 dense+relu fwd+bwd", f"{m}x{k}x{n}", timed(f_fast), timed(f_torch), 6 * m * k * n, "TFLOP/s")
    del x, w, b, dy, xc, wc, bc, dyc, xr, wr, br, dx, dw, db, tdx, tdw, tdb, xb
    torch.cuda.empty_cache()
    cp.get_default_memory_pool().free_all_blocks()

    ne = (1 << 28) if not quick else (1 << 24)
    x = torch.randn(ne, device=dev, generator=g).to(bf)
    dy = torch.randn(ne, device=dev, generator=g).to(bf)
    xc, dyc = t2c(x), t2c(dy)
    for act, tf in (("relu", torch.relu), ("gelu", torch.nn.functional.gelu)):
        check(f"bf16 {act} fwd", fastnn.activation_forward(xc, act), tf(x), 1.6e-2)
        row(f"bf16 {act} forward", f"{ne}", timed(lambda: fastnn.activation_forward(xc, act)), timed(lambda: tf(x)),
            2 * 2 * ne, "GB/s")
        if act == "relu":
            yc, yt = fastnn.activation_forward(xc, act), tf(x)
            f_fast = lambda: fastnn.activation_backward(dyc, act, y=yc)  # noqa: E731
            f_t = lambda: torch.ops.aten.threshold_backward(dy, yt, 0)  # noqa: E731
        else:
            f_fast = lambda: fastnn.activation_backward(dyc, act, x=xc)  # noqa: E731
            f_t = lambda: torch.ops.aten.gelu_backward(dy, x)  # noqa: E731
        check(f"bf16 {act} bwd", f_fast(), f_t(), 1.6e-2)
        row(f"bf16 {act} backward", f"{ne}", timed(f_fast), timed(f_t), 3 * 2 * ne, "GB/s")
    del x, dy, xc, dyc
    torch.cuda.empty_cache()
    cp.get_default_memory_pool().free_all_blocks()


def report(rows, csv_path):
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
    print("\n| op | shape | fastnn ms | torch ms | speedup | rate | of ceiling |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['op']} | {r['shape']} | {r['fastnn_ms']} | {r['torch_ms']} | {r['speedup']}x | "
              f"{r['rate']} {r['unit']} | {100 * r['of_ceiling']:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
