"""The framework layer of the parity run: every fastnn.torch module against its stock
torch twin (values and input / parameter gradients, float32 and float64, in this
process) and every fastnn.keras layer and loss against stock Keras (values and the
gradient with respect to the input / prediction, float32), on every installed Keras
backend, each in its own subprocess (KERAS_BACKEND is fixed at Keras' import) bounded by
a timeout.

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
    """(name, fastnn module, stock module or None, input maker, target maker or None) for
    every module of fastnn.torch: the activation and loss twins of fastnn.torch.patch's
    table with their default arguments (Softmax / LogSoftmax along dim -1, KLDivLoss with
    "batchmean"), and Linear fused with a few activations."""
    import importlib  # noqa: PLC0415

    twins = importlib.import_module("fastnn.torch.patch").TWINS  # (fastnn.torch.patch is also the function)

    def normal(g, shape=(33, 11)):
        return torch.randn(*shape, generator=g) * 3

    def unit(g, shape=(33, 11)):
        return 0.05 + 0.9 * torch.rand(*shape, generator=g)

    def log_probs(g):
        return torch.log_softmax(normal(g), -1)

    def labels(g):
        return torch.randint(0, 11, (33,), generator=g)

    special = {  # module class name -> (constructor kwargs, input maker, target maker)
        "Softmax": ({"dim": -1}, normal, None), "LogSoftmax": ({"dim": -1}, normal, None),
        "BCELoss": ({}, unit, lambda g: torch.rand(33, 11, generator=g)),
        "BCEWithLogitsLoss": ({}, normal, lambda g: torch.rand(33, 11, generator=g)),
        "CrossEntropyLoss": ({"label_smoothing": 0.1}, normal, labels),
        "NLLLoss": ({}, log_probs, labels),
        "KLDivLoss": ({"reduction": "batchmean"}, log_probs, lambda g: torch.softmax(normal(g), -1)),
        "PoissonNLLLoss": ({}, normal, lambda g: torch.rand(33, 11, generator=g) * 3),
    }
    out = []
    for stock_cls, cls in twins.items():
        if cls is ft.Linear:
            continue
        kw, x, t = special.get(cls.__name__, ({}, normal, None))
        if t is None and stock_cls.__module__.endswith("loss"):
            t = normal
        out.append((cls.__name__, cls(**kw), stock_cls(**kw), x, t))
    for act in ("relu", "gelu", "softmax"):
        out.append((f"Linear+{act}", ft.Linear(65, 17, activation=act), None, lambda g: normal(g, (33, 65)), None))
    return out


def _torch_one(torch, name, mine, stock, make_x, target, dtype):
    g = torch.Generator().manual_seed(0)
    if stock is None:  # Linear with an activation: stock = nn.Linear + the activation, same weights
        act = {"relu": torch.nn.ReLU(), "gelu": torch.nn.GELU(), "softmax": torch.nn.Softmax(-1)}[mine.activation]
        lin = torch.nn.Linear(mine.in_features, mine.out_features)
        lin.load_state_dict(mine.state_dict())
        stock = torch.nn.Sequential(lin, act)
    mine, stock = mine.to(dtype), stock.to(dtype)
    x = make_x(g).to(dtype)
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
        for name, mine, stock, make_x, target in _torch_pairs(torch, ft):
            try:
                w = _torch_one(torch, name, mine, stock, make_x, target, dtype)
                out.append({"name": f"fastnn.torch.{name} {dname}", "verdict": "ok" if w <= b else "FAIL",
                            "detail": f"{w:.3g} ulps (bound {b:g}), values and gradients"})
            except Exception as e:  # noqa: BLE001 - reported as the check's failure
                out.append({"name": f"fastnn.torch.{name} {dname}", "verdict": "FAIL",
                            "detail": f"{type(e).__name__}: {e}"})
    return out


# Run in a subprocess with KERAS_BACKEND set: prints one JSON line {name: [got, want]}
# per output (a layer's or loss's value, and its gradient with respect to the input or
# the prediction under a random upstream gradient, through the backend's own autodiff).
_KERAS_SCRIPT = r"""
import json, numpy as np, keras, fastnn.keras as fk
B = keras.backend.backend()
rng = np.random.default_rng(0)

def value_and_grad(fn, x, gy):
    if B == "jax":
        import jax, jax.numpy as jnp
        y = fn(jnp.asarray(x))
        return np.asarray(y), np.asarray(jax.grad(lambda v: jnp.sum(fn(v) * gy))(jnp.asarray(x)))
    if B == "tensorflow":
        import tensorflow as tf
        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            y = fn(v)
            s = tf.reduce_sum(y * gy)
        return y.numpy(), tape.gradient(s, v).numpy()
    import torch
    v = torch.tensor(x, requires_grad=True)
    y = fn(v)
    (y * torch.as_tensor(gy)).sum().backward()
    return y.detach().numpy(), v.grad.numpy()

out = {}
def pair(name, mine, stock, x):
    gy = rng.standard_normal(np.shape(keras.ops.convert_to_numpy(stock(x)))).astype("float32")
    (a, da), (b, db) = value_and_grad(mine, x, gy), value_and_grad(stock, x, gy)
    out[name] = [np.asarray(a).tolist(), np.asarray(b).tolist()]
    out[name + " d/dx"] = [np.asarray(da).tolist(), np.asarray(db).tolist()]

x = (rng.standard_normal((33, 65)) * 3).astype("float32")
for act in ("relu", "gelu", "softmax", "tanh", None):
    mine, stock = fk.Dense(17, activation=act), keras.layers.Dense(17, activation=act)
    mine.build((None, 65)); stock.build((None, 65)); stock.set_weights(mine.get_weights())
    pair(f"Dense+{act}", mine, stock, x)
for name, args in (("Activation", ("swish",)), ("ReLU", ()), ("LeakyReLU", ()), ("ELU", ()), ("Softmax", ())):
    pair(name, getattr(fk, name)(*args), getattr(keras.layers, name)(*args), x)
p = (rng.standard_normal((33, 11)) * 3).astype("float32")
prob = (0.05 + 0.9 * rng.random((33, 11))).astype("float32")
t_float, t_unit = rng.standard_normal((33, 11)).astype("float32"), rng.random((33, 11)).astype("float32")
t_onehot = np.eye(11, dtype="float32")[rng.integers(0, 11, 33)]
t_sparse = rng.integers(0, 11, 33)
losses = (("MeanSquaredError", {}, p, t_float), ("MeanAbsoluteError", {}, p, t_float), ("Huber", dict(delta=0.5), p, t_float),
          ("LogCosh", {}, p, t_float), ("Hinge", {}, p, t_unit.round()), ("SquaredHinge", {}, p, t_unit.round()),
          ("Poisson", {}, prob, t_unit * 3), ("KLDivergence", {}, prob, t_unit),
          ("BinaryCrossentropy", {}, prob, t_unit), ("BinaryCrossentropy", dict(from_logits=True), p, t_unit),
          ("CategoricalCrossentropy", dict(from_logits=True), p, t_onehot), ("CategoricalCrossentropy", {}, prob, t_onehot),
          ("SparseCategoricalCrossentropy", dict(from_logits=True), p, t_sparse))
for name, args, pred, target in losses:
    mine, stock = getattr(fk.losses, name)(**args), getattr(keras.losses, name)(**args)
    pair(name + ("(logits)" if args.get("from_logits") else ""), lambda v: mine(target, v), lambda v: stock(target, v), pred)
print("PARITY-JSON " + json.dumps(out))
"""


def check_keras(timeout, backends=KERAS_BACKENDS):
    """Every fastnn.keras layer and loss against stock Keras on each of `backends` that is
    installed, each in its own subprocess, all at once."""
    if importlib.util.find_spec("keras") is None:
        return [{"name": "fastnn.keras", "verdict": "skipped", "detail": "keras is not installed"}]
    installed = [b for b in backends if importlib.util.find_spec(b) is not None]
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
                        "detail": f"{w:.3g} ulps (bound {bound:g})"})
    return out


def check_frameworks(timeout=60.0):
    """Both layers' checks (torch in-process, then Keras' subprocesses)."""
    return check_torch() + check_keras(timeout)
