"""Bit-level fingerprint of fastnn's kernel results: a fixed set of calls on the C++ and
Numba backends (every activation, loss and Dense activation, both weight layouts, the
fused Dense + cross-entropy), each output hashed. Run it at two commits and compare the
JSON files: a refactoring that changes no arithmetic gives identical hashes.

    python tools/fingerprint.py out.json [--backends cpp,numba]
    python tools/fingerprint.py --compare old.json new.json
"""
import argparse
import hashlib
import json
import sys

import numpy as np

import fastnn

# The op lists as of the refactoring's start (new ops are not part of the comparison).
ACTS = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid",
        "hard_sigmoid", "hard_silu", "tanh", "softplus", "softsign", "log_sigmoid", "hard_tanh", "exponential",
        "softmax", "log_softmax")
ACT_VARIANTS = {"relu": [{"negative_slope": 0.1, "max_value": 6.0, "threshold": 0.5}],
                "gelu": [{"approximate": "tanh"}], "softplus": [{"beta": 2.0, "threshold": 5.0}],
                "elu": [{"alpha": 0.7}], "celu": [{"alpha": 1.3}], "leaky_relu": [{"negative_slope": 0.2}],
                "hard_tanh": [{"min_val": -0.5, "max_val": 2.0}]}
ELEMENTWISE = ("mse", "mae", "huber", "smooth_l1", "bce", "bce_with_logits", "kl_div", "poisson_nll", "hinge",
               "squared_hinge", "log_cosh")


def _h(a):
    if a is None:
        return None
    a = np.ascontiguousarray(np.asarray(a))
    return f"{a.dtype}{a.shape}:" + hashlib.sha256(a.tobytes()).hexdigest()[:20]


def calls(rng, dt):
    x = (rng.standard_normal((33, 47)) * 3).astype(dt)
    dy = rng.standard_normal((33, 47)).astype(dt)
    for name in ACTS:
        for params in [{}] + ACT_VARIANTS.get(name, []):
            y = fastnn.activation_forward(x, name, **params)
            yield f"act/{name}/{params}/fwd", y
            src = {"y": y} if "y" in fastnn.saved_for_backward(name, **params) else {"x": x}
            yield f"act/{name}/{params}/bwd", fastnn.activation_backward(dy, name, **src, **params)
    p, t = rng.standard_normal((29, 13)).astype(dt), rng.standard_normal((29, 13)).astype(dt)
    prob = rng.uniform(0.01, 0.99, (29, 13)).astype(dt)
    tprob = rng.uniform(0, 1, (29, 13)).astype(dt)
    for name in ELEMENTWISE:
        pp, tt = (prob, tprob) if name == "bce" else (p, np.abs(t) if name == "poisson_nll" else t)
        for red in ("mean", "sum", "none"):
            yield f"loss/{name}/{red}/fwd", fastnn.loss_forward(pp, tt, name, reduction=red)
            yield f"loss/{name}/{red}/bwd", fastnn.loss_backward(pp, tt, name, reduction=red)
    lab = rng.integers(0, 13, 29)
    lab[3] = -100
    w = rng.uniform(0.5, 2, 13).astype(dt)
    for name in ("cross_entropy", "nll"):
        for red in ("mean", "sum", "none"):
            for kw in ({}, {"weight": w}):
                yield f"loss/{name}/{red}/{sorted(kw)}/fwd", fastnn.loss_forward(p, lab, name, reduction=red, **kw)
                yield f"loss/{name}/{red}/{sorted(kw)}/bwd", fastnn.loss_backward(p, lab, name, reduction=red, **kw)
    yield "loss/ce/ls", fastnn.loss_backward(p, lab, "cross_entropy", label_smoothing=0.1)
    xs = rng.standard_normal((37, 29)).astype(dt)
    for layout in ("oi", "io"):
        W = (rng.standard_normal((19, 29) if layout == "oi" else (29, 19)) * 0.2).astype(dt)
        b = rng.standard_normal(19).astype(dt)
        g = rng.standard_normal((37, 19)).astype(dt)
        for name in ACTS:
            y, z = fastnn.dense_forward(xs, W, b, name, weight_layout=layout)
            yield f"dense/{layout}/{name}/fwd", y
            for i, d in enumerate(fastnn.dense_backward(g, xs, W, y, z, name, weight_layout=layout)):
                yield f"dense/{layout}/{name}/bwd{i}", d
    W = (rng.standard_normal((23, 29)) * 0.2).astype(dt)
    tl = rng.integers(0, 23, 37)
    loss, grads = fastnn.dense_cross_entropy(xs, W, np.zeros(23, dt), tl, chunk_size=8, label_smoothing=0.05)
    yield "dense_ce/loss", loss
    for i, d in enumerate(grads):
        yield f"dense_ce/grad{i}", d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--backends", default="cpp,numba")
    ap.add_argument("--compare", nargs=2)
    a = ap.parse_args()
    if a.compare:
        old, new = (json.load(open(f)) for f in a.compare)
        diff = [k for k in old if old[k] != new.get(k)]
        print(f"{len(old)} results compared, {len(diff)} differ")
        for k in diff[:20]:
            print("  ", k)
        sys.exit(1 if diff else 0)
    out = {}
    for be in a.backends.split(","):
        with fastnn.use_backend(be):
            for dt in (np.float32, np.float64):
                for key, val in calls(np.random.default_rng(7), dt):
                    out[f"{be}/{np.dtype(dt).name}/{key}"] = _h(val)
    json.dump(out, open(a.out, "w"), indent=0, sort_keys=True)
    print(f"{len(out)} results written to {a.out}")


if __name__ == "__main__":
    main()
