"""The framework layer of the parity run: a few fastnn.torch modules against their stock
torch twins (values and input / weight gradients, float32 and float64, in this process)
and a few fastnn.keras layers / losses against stock Keras (forward values, float32), on
every installed Keras backend, each in its own subprocess (KERAS_BACKEND is fixed at
Keras' import) bounded by a timeout.

Judged in the ulps of fastnn/parity/_cases.py with a normwise scale (the largest |value|
of each output) against the Dense family's bound: each pair is two implementations at
the same dtype, so their difference is at most the sum of both kernels' rounding.

Each check returns {"name", "verdict" ("ok", "FAIL", "skipped"), "detail"}.
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np

from ._bounds import bound_of
from ._cases import measure, normwise

KERAS_BACKENDS = ("jax", "tensorflow", "torch")


def _torch_pairs(torch, ft):
    """(name, fastnn module, stock module, input shape, target maker or None)."""
    nn = torch.nn
    return [
        ("Linear+gelu", ft.Linear(65, 17, activation="gelu"), None, (33, 65), None),
        ("GELU(tanh)", ft.GELU(approximate="tanh"), nn.GELU(approximate="tanh"), (33, 65), None),
        ("Softmax", ft.Softmax(dim=-1), nn.Softmax(dim=-1), (33, 65), None),
        ("CrossEntropyLoss", ft.CrossEntropyLoss(label_smoothing=0.1), nn.CrossEntropyLoss(label_smoothing=0.1),
         (33, 11), lambda g: torch.randint(0, 11, (33,), generator=g)),
        ("HuberLoss", ft.HuberLoss(delta=0.5), nn.HuberLoss(delta=0.5), (33, 11),
         lambda g: torch.randn(33, 11, generator=g)),
    ]


def _torch_one(torch, name, mine, stock, shape, target, dtype):
    g = torch.Generator().manual_seed(0)
    if stock is None:  # Linear with an activation: stock = gelu(nn.Linear) with the same weights
        lin = torch.nn.Linear(mine.in_features, mine.out_features)
        lin.load_state_dict(mine.state_dict())
        stock = torch.nn.Sequential(lin, torch.nn.GELU())
    mine, stock = mine.to(dtype), stock.to(dtype)
    x = (torch.randn(*shape, generator=g) * 3).to(dtype)
    t = None if target is None else target(g)
    t = t.to(dtype) if t is not None and t.is_floating_point() else t
    worst = 0.0
    outs = []
    gy = None  # random upstream gradient: with ones, softmax's input gradient is 0 + roundoff
    for mod in (mine, stock):
        xi = x.clone().requires_grad_(True)
        y = mod(xi) if t is None else mod(xi, t)
        gy = torch.randn(y.shape, generator=g).to(dtype) if gy is None else gy
        y.backward(gy)
        grads = [xi.grad] + [p.grad for p in mod.parameters()]
        outs.append([y.detach().numpy()] + [gr.detach().numpy() for gr in grads])
        mod.zero_grad()
    for a, b in zip(*outs):
        worst = max(worst, measure(a, b.astype(np.float64), a.dtype, normwise(b)).ulps)
    return worst


def check_torch():
    if importlib.util.find_spec("torch") is None:
        return [{"name": "fastnn.torch", "verdict": "skipped", "detail": "torch is not installed"}]
    import torch  # noqa: PLC0415
    import fastnn.torch as ft  # noqa: PLC0415
    out = []
    for dtype, dname in ((torch.float32, "float32"), (torch.float64, "float64")):
        b = bound_of("dense", "", dname)
        for name, mine, stock, shape, target in _torch_pairs(torch, ft):
            try:
                w = _torch_one(torch, name, mine, stock, shape, target, dtype)
                out.append({"name": f"fastnn.torch.{name} {dname}", "verdict": "ok" if w <= b else "FAIL",
                            "detail": f"{w:.3g} ulps (bound {b:g}), values and gradients"})
            except Exception as e:  # noqa: BLE001 - reported as the check's failure
                out.append({"name": f"fastnn.torch.{name} {dname}", "verdict": "FAIL",
                            "detail": f"{type(e).__name__}: {e}"})
    return out


# Run in a subprocess with KERAS_BACKEND set: prints one JSON line {name: [got, want]}.
_KERAS_SCRIPT = r"""
import json, numpy as np, keras, fastnn.keras as fk
rng = np.random.default_rng(0)
x = (rng.standard_normal((33, 65)) * 3).astype("float32")
out = {}
for act in ("gelu", "softmax", "relu"):
    mine, stock = fk.Dense(17, activation=act), keras.layers.Dense(17, activation=act)
    mine.build((None, 65)); stock.build((None, 65)); stock.set_weights(mine.get_weights())
    out["Dense+" + act] = [keras.ops.convert_to_numpy(mine(x)).tolist(), keras.ops.convert_to_numpy(stock(x)).tolist()]
p = (rng.standard_normal((33, 11)) * 3).astype("float32")
t = rng.integers(0, 11, 33)
tf_ = rng.standard_normal((33, 11)).astype("float32")
for name, args in (("SparseCategoricalCrossentropy", dict(from_logits=True)), ("MeanSquaredError", {}),
                   ("Huber", dict(delta=0.5))):
    tt = t if name.startswith("Sparse") else tf_
    mine, stock = getattr(fk.losses, name)(**args), getattr(keras.losses, name)(**args)
    out[name] = [float(mine(tt, p)), float(stock(tt, p))]
print("PARITY-JSON " + json.dumps(out))
"""


def check_keras(timeout):
    if importlib.util.find_spec("keras") is None:
        return [{"name": "fastnn.keras", "verdict": "skipped", "detail": "keras is not installed"}]
    installed = [b for b in KERAS_BACKENDS if importlib.util.find_spec(b) is not None]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    procs = {b: subprocess.Popen([sys.executable, "-c", _KERAS_SCRIPT], env=dict(env, KERAS_BACKEND=b),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for b in installed}
    out = []
    bound = bound_of("dense", "", "float32")
    for b, p in procs.items():  # all run at once; each waited for at most `timeout` seconds
        try:
            so, se = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            out.append({"name": f"fastnn.keras [{b}]", "verdict": "FAIL", "detail": f"timed out after {timeout:g} s"})
            continue
        line = next((ln for ln in so.splitlines() if ln.startswith("PARITY-JSON ")), None)
        if p.returncode != 0 or line is None:
            out.append({"name": f"fastnn.keras [{b}]", "verdict": "FAIL",
                        "detail": f"exit {p.returncode}: {se.strip().splitlines()[-1:] or ''}"})
            continue
        for name, (got, want) in json.loads(line[len("PARITY-JSON "):]).items():
            got, want = np.asarray(got, np.float32), np.asarray(want, np.float64)
            w = measure(got, want, np.float32, normwise(want)).ulps
            out.append({"name": f"fastnn.keras.{name} [{b}]", "verdict": "ok" if w <= bound else "FAIL",
                        "detail": f"{w:.3g} ulps (bound {bound:g}), forward values"})
    return out


def check_frameworks(timeout=60.0):
    """Both layers' checks (torch in-process, then Keras' subprocesses)."""
    return check_torch() + check_keras(timeout)
