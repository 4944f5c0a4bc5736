"""Distributed measurements (docs/distributed.md): each case in its own process.

    python bench/distributed.py jax      # data-parallel jit step on 2 forced host devices:
                                         # collectives of the compiled step and step time,
                                         # fastnn.keras' jax bridge vs stock jnp (and 1 device)
    python bench/distributed.py vocab    # vocab-parallel cross-entropy at (8192, 1024, 32000):
                                         # peak memory per rank on 2 gloo ranks vs the unsharded
                                         # fused loss (fastnn) and torch's F.cross_entropy(F.linear)
    python bench/distributed.py vocab --shape 2048 512 8000    # a quicker shape

jax: an MLP (in 512 -> 512 relu -> 512 relu -> 10), batch 4096 float32, squared-error loss,
one jitted SGD step (value_and_grad + update), batch sharded over the devices; median of
`--steps` steps after 3 warm-up steps. vocab: forward + backward once, float32; "peak" is the
process's peak RSS, "extra" that minus the RSS after the inputs were allocated (what the
loss itself needed). Wrap in `flock /tmp/fastnn_bench.lock` on a shared machine.
"""
import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _spawn(args, env=None):
    out = subprocess.run([sys.executable, __file__] + args, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, **(env or {})), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- jax --------------------------------------------------------------------------------

def jax_child(impl, devices, steps):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: PLC0415

    from fastnn.keras import _jax  # noqa: PLC0415

    sizes = [512, 512, 512, 10]
    rng = np.random.default_rng(0)
    params = [(jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), jnp.float32), jnp.zeros(b, jnp.float32))
              for a, b in zip(sizes[:-1], sizes[1:])]
    x = jnp.asarray(rng.standard_normal((4096, sizes[0])), jnp.float32)
    t = jnp.asarray(rng.standard_normal((4096, sizes[-1])), jnp.float32)

    def loss(params, x, t):
        for k, (w, b) in enumerate(params):
            act = "relu" if k < len(params) - 1 else "linear"
            if impl == "fastnn":
                x = _jax.dense(x, w, b, act, ())
            else:
                x = x @ w + b
                x = jax.nn.relu(x) if act == "relu" else x
        return jnp.mean((x - t) ** 2)

    @jax.jit
    def step(params, x, t):
        v, g = jax.value_and_grad(loss)(params, x, t)
        return v, jax.tree.map(lambda p, d: p - 0.01 * d, params, g)

    mesh = Mesh(np.array(jax.devices()[:devices]), ("d",))
    x, t = (jax.device_put(a, NamedSharding(mesh, P("d"))) for a in (x, t))
    params = jax.device_put(params, NamedSharding(mesh, P()))
    text = step.lower(params, x, t).compile().as_text()
    colls = {}
    for k in re.findall(r"\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(?:-start)?\(", text):
        colls[k] = colls.get(k, 0) + 1
    for _ in range(3):
        v, params = step(params, x, t)
    jax.block_until_ready(params)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        v, params = step(params, x, t)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"impl": impl, "devices": devices, "collectives": colls,
                      "step_ms": 1e3 * times[len(times) // 2], "loss": float(v), "ffi": _jax.status()}))


def jax_main(steps):
    rows = []
    for devices in (2, 1):
        for impl in ("stock", "fastnn", "stock", "fastnn"):  # alternated, twice
            rows.append(_spawn(["_jax", impl, str(devices), str(steps)],
                               {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
                                "KERAS_BACKEND": "jax"}))
    best = {}
    for r in rows:
        key = (r["impl"], r["devices"])
        if key not in best or r["step_ms"] < best[key]["step_ms"]:
            best[key] = r
    print(f"load: {os.getloadavg()}")
    print(f"{'impl':8} {'devices':>7} {'step ms':>8}  collectives")
    for (impl, devices), r in sorted(best.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        print(f"{impl:8} {devices:7d} {r['step_ms']:8.2f}  {r['collectives']}")


# ---- vocab-parallel cross-entropy -------------------------------------------------------------

def _inputs(n, h, c, lo, hi):
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, h, generator=g)
    t = torch.randint(0, c, (n,), generator=g)
    w = torch.empty(hi - lo, h)  # rows of W from per-block seeds: every rank's slice is the unsharded W's
    for k in range(lo // 1000, -(-hi // 1000)):
        rows = torch.randn(1000, h, generator=torch.Generator().manual_seed(1 + k)) / h ** 0.5
        a, e = max(lo, 1000 * k), min(hi, 1000 * k + 1000)
        w[a - lo:e - lo] = rows[a - 1000 * k:e - 1000 * k]
    b = torch.zeros(hi - lo)
    return x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), t


def vocab_child(impl, n, h, c, rank=0, world=1, port=0):
    import torch  # noqa: PLC0415

    if world > 1:
        import torch.distributed as dist  # noqa: PLC0415

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
    per = -(-c // world)
    lo, hi = rank * per, min(c, (rank + 1) * per)
    x, w, b, t = _inputs(n, h, c, lo, hi)
    import fastnn.torch.functional  # noqa: F401,PLC0415 - imports outside the measured part
    from fastnn.torch.distributed import vocab_parallel_cross_entropy  # noqa: PLC0415
    base = _rss_mb()
    t0 = time.perf_counter()
    if impl == "vocab_parallel":
        loss = vocab_parallel_cross_entropy(x, w, b, t, class_offset=lo)
    elif impl == "fastnn":
        import fastnn.torch.functional as F  # noqa: PLC0415

        loss = F.linear_cross_entropy(x, w, b, t)
    else:
        import torch.nn.functional as TF  # noqa: PLC0415

        loss = TF.cross_entropy(TF.linear(x, w, b), t)
    loss.backward()
    sec = time.perf_counter() - t0
    row = {"impl": impl, "rank": rank, "world": world, "peak_mb": _peak_mb(), "extra_mb": _peak_mb() - base,
           "inputs_mb": base, "seconds": sec, "loss": loss.item()}
    if world > 1:
        import torch.distributed as dist  # noqa: PLC0415

        rows = [None] * world
        dist.all_gather_object(rows, row)
        dist.destroy_process_group()
        if rank == 0:
            print(json.dumps(rows))
    else:
        print(json.dumps([row]))


def vocab_main(shape):
    n, h, c = shape
    print(f"load: {os.getloadavg()}  shape (N, in, C) = {shape}, float32, forward + backward")
    for impl, world in (("fastnn", 1), ("vocab_parallel", 2), ("torch", 1)):
        if world == 1:
            rows = _spawn(["_vocab", impl, str(n), str(h), str(c)])
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            procs = [subprocess.Popen([sys.executable, __file__, "_vocab", impl, str(n), str(h), str(c), str(r),
                                       str(world), str(port)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
                     for r in range(world)]
            outs = [p.communicate()[0] for p in procs]
            rows = json.loads(outs[0].strip().splitlines()[-1])
        for r in rows:
            print(f"{r['impl']:15} rank {r['rank']}/{r['world']}: peak RSS {r['peak_mb']:8.0f} MB, extra over inputs "
                  f"{r['extra_mb']:7.0f} MB, inputs+runtime {r['inputs_mb']:6.0f} MB, {r['seconds']:6.2f} s, "
                  f"loss {r['loss']:.6f}")


def main():
    if sys.argv[1] == "_jax":
        return jax_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    if sys.argv[1] == "_vocab":
        return vocab_child(sys.argv[2], *map(int, sys.argv[3:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["jax", "vocab"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--shape", type=int, nargs=3, default=[8192, 1024, 32000])
    a = ap.parse_args()
    return jax_main(a.steps) if a.what == "jax" else vocab_main(tuple(a.shape))


if __name__ == "__main__":
    main()
