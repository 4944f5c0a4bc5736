"""The hard-case inputs of each loss (fastnn.testing.hard_inputs' loss part): finite values
inside each loss's domain, with its kinks hit exactly.

Contract: loss_inputs(name, shape, dtype, rng, params) -> {"pred", "target", "grad"};
elementwise losses: pred and target of `shape`; class losses (cross_entropy, nll): pred
of `shape` (class axis last), target int64 indices of shape[:-1] with rows 0, 8, 16, ...
set to ignore_index. grad is the upstream gradient of reduction="none" (same shape as the
loss), which callers use only for that reduction. NaN and inf are left out: one of them
makes a reduced loss NaN and says nothing about the other terms.
"""
import numpy as np

from . import _registry as R


def _with(a, specials):
    flat = a.reshape(-1)
    k = min(flat.size, len(specials))
    flat[:k] = specials[:k]
    return flat.reshape(a.shape)


def _elementwise(name, shape, rng, params):
    """(pred, target) as float64 for an elementwise loss."""
    n = int(np.prod(shape))
    big = [60.0, -60.0, 1000.0, -1000.0, 0.0, 1e-3]
    if name in ("mse", "mae", "huber", "smooth_l1", "log_cosh"):
        full = dict(R.LOSS_PARAMS.get(name, {}), **params)
        k = float(full.get("delta", full.get("beta", 1.0)))
        pred = _with(rng.standard_normal(n) * 3, big + [0.5, 0.5, 0.5, 0.5, 2.0])
        d = _with(rng.standard_normal(n), [0.5, -0.5, 3.0, -3.0, 0.0, 0.0, k, -k, 0.0, k / 2])
        return pred.reshape(shape), (pred - d).reshape(shape)
    if name == "bce":
        pred = _with(rng.uniform(0.01, 0.99, n), [0.5, 1e-3, 0.999, 1e-6, 1 - 1e-6])
        return pred.reshape(shape), _with(rng.uniform(0, 1, n), [0.0, 1.0, 0.0, 1.0, 0.5]).reshape(shape)
    if name == "bce_with_logits":
        pred = _with(rng.standard_normal(n) * 3, big)
        return pred.reshape(shape), _with(rng.uniform(0, 1, n), [1.0, 0.0, 0.0, 1.0, 0.5]).reshape(shape)
    if name == "kl_div":
        q = rng.uniform(1e-3, 1.0, n)
        t = _with(rng.uniform(0, 1, n), [0.0, 1.0, 0.5, 1e-6])
        t = np.log(np.maximum(t, 1e-30)) if params.get("log_target", False) else t
        return _with(np.log(q), [0.0, -60.0, -1e-3, -5.0]).reshape(shape), t.reshape(shape)
    if name == "poisson_nll":
        t = _with(np.floor(rng.uniform(0, 8, n)), [0.0, 1.0, 5.0, 0.0, 30.0])
        if params.get("log_input", True):
            return _with(rng.standard_normal(n), [0.0, -60.0, 20.0, 1e-3]).reshape(shape), t.reshape(shape)
        return _with(rng.uniform(0.01, 8, n), [1.0, 1e-3, 30.0, 0.5]).reshape(shape), t.reshape(shape)
    if name in ("hinge", "squared_hinge"):
        t = _with(np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0), [1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
        pred = _with(rng.standard_normal(n) * 2, [1.0, -1.0, 60.0, 60.0, 0.0, 0.999])
        return pred.reshape(shape), t.reshape(shape)
    raise ValueError(f"hard_inputs: no input domain for loss {name!r}")


def loss_inputs(name, shape, dtype, rng, params):
    if not shape:
        raise ValueError(f"hard_inputs: shape of loss {name!r} must have at least one axis, got ()")
    if R.LOSS_TABLE[name].shape == "class":
        rows, ncls = int(np.prod(shape[:-1])), shape[-1]
        logits = rng.standard_normal((rows, ncls)) * 3
        if rows and ncls:
            logits[1 % rows] = 60.0 * np.sign(rng.standard_normal(ncls))  # rows of large |x|
            logits[2 % rows, 0] = -1000.0
            logits[3 % rows] = 0.0                                      # ties: uniform softmax
        pred = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True) if name == "nll" and ncls else logits
        t = rng.integers(0, max(ncls, 1), rows).astype(np.int64)
        t[::8] = params.get("ignore_index", -100)
        grad = rng.standard_normal(rows).reshape(shape[:-1])
        return {"pred": pred.reshape(shape).astype(dtype), "target": t.reshape(shape[:-1]),
                "grad": grad.astype(dtype)}
    pred, target = _elementwise(name, shape, rng, params)
    return {"pred": pred.astype(dtype), "target": target.astype(dtype),
            "grad": rng.standard_normal(shape).astype(dtype)}
