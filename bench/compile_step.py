"""One training step under torch.compile: stock torch vs fastnn, eager vs compiled (issue 25).

    python bench/compile_step.py [--rounds 3] [--steps 30] [--batch 256] [--threads N]

Model: MLP 784-1024-1024-10 (Linear + ReLU, Linear + ReLU, Linear), cross-entropy, Adam,
float32, batch 256. Four variants, each in its own process (so neither the other's
compiled code, thread pools nor allocator state is shared), alternated round by round:

- ``stock eager``: torch.nn modules and loss.
- ``stock compiled``: ``torch.compile(step, fullgraph=True)`` over model + loss (inductor).
- ``fastnn eager``: the same model after ``fastnn.torch.patch`` (Linear + ReLU fused), its
  fastnn.torch cross-entropy.
- ``fastnn compiled``: that model and loss under ``torch.compile(step, fullgraph=True)``.

The optimizer step (Adam, torch's default implementation for CPU tensors) runs eagerly in
every variant. A process reports the median step time (forward, backward, optimizer) over
``--steps`` timed steps after ``--warmup`` untimed ones, and the warm-up: the time of the
first step (compilation for the compiled variants) minus one median step. The summary
prints each variant's median over rounds, the ratios the issue sets as targets, the CPU,
its ISA, the thread count and the load average. Each process also reports the CPU time
of its steps (all its threads): on a busy machine, where wall time mostly measures the
other processes, it is the steadier figure (with one thread, the work itself).

``--variant NAME`` runs one variant in this process and prints one JSON line (what the
driver does in each child).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = ("stock eager", "stock compiled", "fastnn eager", "fastnn compiled")


def _model(torch, fastnn_model):
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    loss_fn = nn.CrossEntropyLoss()
    if fastnn_model:
        import fastnn.torch as fnn

        model, loss_fn = fnn.patch(model), fnn.CrossEntropyLoss()
    return model, loss_fn


def run_variant(name, steps, warmup, batch):
    """One variant in this process: {"variant", "step_ms", "warmup_s", "loss"}."""
    import torch

    model, loss_fn = _model(torch, name.startswith("fastnn"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def fwd(x, y):
        return loss_fn(model(x), y)

    step_fn = torch.compile(fwd, fullgraph=True) if name.endswith("compiled") else fwd
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, 784, generator=g), torch.randint(0, 10, (batch,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = step_fn(x, y)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    times, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    return {"variant": name, "step_ms": med * 1e3, "cpu_ms": statistics.median(cpu) * 1e3,
            "warmup_s": max(first - med, 0.0), "loss": loss.item()}


def _cpu():
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx512f", "avx512bw", "avx512_bf16", "amx_tile", "avx2", "fma") if f in flags]
    return model, " ".join(isa) or "baseline x86-64"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=VARIANTS, help="run this variant here and print one JSON line")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of all four variants, alternated (default 3)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per process (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps after the first (default 5)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads in each child (0: torch's default)")
    a = ap.parse_args(argv)
    if a.variant:
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        print(json.dumps(run_variant(a.variant, a.steps, a.warmup, a.batch)))
        return 0

    results = {v: [] for v in VARIANTS}
    for r in range(a.rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for v in order:
            cmd = [sys.executable, os.path.abspath(__file__), "--variant", v, "--steps", str(a.steps),
                   "--warmup", str(a.warmup), "--batch", str(a.batch), "--threads", str(a.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            res = json.loads(out)
            results[v].append(res)
            print(f"round {r + 1}: {v:16s} step {res['step_ms']:7.2f} ms (CPU time {res['cpu_ms']:7.2f} ms)  "
                  f"warm-up {res['warmup_s']:6.2f} s", flush=True)

    import torch

    model, isa = _cpu()
    print(f"\nCPU: {model} ({os.cpu_count()} logical cores); ISA: {isa}; torch {torch.__version__}, "
          f"{a.threads or torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}")
    print(f"MLP 784-1024-1024-10, batch {a.batch}, Adam, float32; median of {a.rounds} processes x {a.steps} steps\n")
    med = {v: statistics.median(r["step_ms"] for r in results[v]) for v in VARIANTS}
    warm = {v: statistics.median(r["warmup_s"] for r in results[v]) for v in VARIANTS}
    cpu = {v: statistics.median(r["cpu_ms"] for r in results[v]) for v in VARIANTS}
    print("| variant | step (ms) | range (ms) | CPU time / step (ms) | warm-up (s) |\n|---|---|---|---|---|")
    for v in VARIANTS:
        lo, hi = min(r["step_ms"] for r in results[v]), max(r["step_ms"] for r in results[v])
        print(f"| {v} | {med[v]:.2f} | {lo:.2f}-{hi:.2f} | {cpu[v]:.2f} | {warm[v]:.2f} |")
    checks = [("fastnn compiled vs stock compiled (speed-up, target >= 1.1)",
               med["stock compiled"] / med["fastnn compiled"], 1.1),
              ("fastnn compiled vs fastnn eager (speed-up, target >= 1.0)",
               med["fastnn eager"] / med["fastnn compiled"], 1.0),
              ("warm-up fastnn compiled / stock compiled (target <= 1.0)",
               warm["fastnn compiled"] / max(warm["stock compiled"], 1e-9), None)]
    print()
    ok = True
    for label, value, target in checks:
        met = value >= target if target is not None else value <= 1.0
        ok = ok and met
        print(f"{label}: {value:.2f}x {'met' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
