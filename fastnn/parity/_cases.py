"""The cases of the parity run and how each is measured.

A case is one op with one set of parameters (and reduction / weight layout) on one shape;
it yields one row per (backend, dtype, output): the forward value and each gradient.

Error measure (the "ulps" column and the bound): per element
    e_i = |got_i - ref_i| / (eps(dtype) * max(|ref_i| + s_i, tiny(dtype)))
(tiny: the smallest normal number; a reference beyond the dtype's range counts as +-inf,
float16 from 65520 on) and the row's error is max_i e_i, with NaN / inf placed differently from the reference
counting as inf. s_i is the magnitude of what rounds into element i, so a result that is
small only by cancellation is judged against its operands:
  * elementwise activation, forward: 1 (|x| + 1 for gelu, whose x Phi(x) loses |x|
    roundoffs); backward: |dy| (1 + |x|) (a derivative's zero crossing, 1 - tanh^2);
  * softmax / log_softmax: the row's largest |x| (forward), |dy| (1 + |x|) summed over
    the row (backward);
  * loss values, loss gradients, Dense outputs and dense_cross_entropy: the largest |ref|
    of that output (normwise: sums of terms of both signs, matrix products).
"rel" is max |got - ref| / max |ref|, the error relative to the output's value scale.
"""
import math
from typing import NamedTuple, Tuple

import numpy as np

from .. import _registry as R
from ..testing import hard_inputs, precision


class Case(NamedTuple):
    family: str       # "activation", "loss", "dense", "dense_cross_entropy"
    op: str
    params: tuple     # sorted (name, value) pairs
    option: str       # loss reduction (+ "/probs": cross_entropy on probability targets) or Dense
                      # weight layout ("" otherwise)
    shape: Tuple[int, ...]

    @property
    def label(self):
        p = ",".join(f"{k}={v}" for k, v in self.params)
        return "/".join(s for s in (self.op, p, self.option, "x".join(map(str, self.shape))) if s)


RAMP = "ramp"  # an array parameter's variant: linspace(0.5, 2, n) over the last axis (resolve_params)


def _variant(param):
    """One non-default value of a parameter inside its range, or None."""
    d, kind = param.default, param.kind
    if kind == "array_or_none":
        return RAMP
    if kind == "choice":
        return next(c for c in param.range.choices if c != d)
    if kind == "bool":
        return not d
    if kind == "float_or_none" and d is None:
        return 2.5
    if kind == "float":
        v = 0.5 if d == 0 else (40.0 if d == 20.0 else d * 2)
        return v if param.range.ok(v) else None
    return None


def param_sets(entry, full):
    """Default params, then (default set) one variant changing every numeric param, or
    (full) one variant per param."""
    variants = [(p.name, _variant(p)) for p in entry.params]
    variants = [(k, v) for k, v in variants if v is not None]
    out = [()]
    if full:
        out += [((k, v),) for k, v in variants]
    elif variants:
        out.append(tuple(sorted(variants)))
    return out


def cases(full=False):
    """Every case of the default set (or of --full: one variant per param, more shapes)."""
    out = []
    act_shapes = [(7, 37), (0, 37), (65, 1031)] + ([(3, 1031), (1, 1)] if full else [])
    for a in R.OPS_ACTIVATIONS:
        for ps in param_sets(a, full):
            out += [Case("activation", a.name, ps, "", s) for s in act_shapes]
    loss_shapes = [(33, 7), (0, 7)] + ([(4, 5, 129), (1031, 67)] if full else [])
    for entry in R.OPS_LOSSES:
        for ps in param_sets(entry, full):
            for red in entry.reductions:
                out += [Case("loss", entry.name, ps, red, s) for s in loss_shapes]
    for ps in ((), (("label_smoothing", 0.1),)):  # probability targets (ignore_index does not apply)
        for red in R.reductions_of("cross_entropy"):
            out += [Case("loss", "cross_entropy", ps, red + "/probs", s) for s in loss_shapes]
    dense_shapes = [(33, 65, 17), (0, 65, 17)] + ([(257, 129, 31)] if full else [])
    for act in R.ACTIVATIONS:
        for layout in ("oi", "io"):
            out += [Case("dense", act, (), layout, s) for s in dense_shapes]
    for red in ("mean", "sum", "none"):
        out += [Case("dense_cross_entropy", "dense_cross_entropy", (), red, s)
                for s in [(33, 65, 11), (0, 65, 11)] + ([(513, 129, 101)] if full else [])]
    return out


class Measure(NamedTuple):
    ulps: float
    rel: float
    n: int
    worst: tuple      # (index, got, ref) of the largest e_i, or () when n == 0


def measure(got, ref, dtype, s):
    """The error of `got` (the kernel's array) against the float64 `ref` (module docstring)."""
    p = precision(dtype)
    eps = p.eps
    g = np.asarray(got, np.float64)
    r = np.asarray(ref, np.float64)
    # beyond the dtype's range the exact result is +-inf (float16 from 65520 on): the largest
    # finite value is (2 - eps) 2^emax, and it rounds up to inf from (2 - eps/2) 2^emax
    top = (2.0 - eps / 2) * 2.0 ** (1 - math.log2(p.tiny))
    if (np.abs(r) >= top).any():
        with np.errstate(invalid="ignore"):
            r = np.where(np.abs(r) >= top, np.sign(r) * math.inf, r)
    if g.shape != r.shape:
        return Measure(math.inf, math.inf, r.size, (("shape",), g.shape, r.shape))
    if r.size == 0:
        return Measure(0.0, 0.0, 0, ())
    s = np.broadcast_to(np.nan_to_num(np.asarray(s, np.float64), nan=0.0, posinf=0.0), r.shape)
    same = (g == r) | (np.isnan(g) & np.isnan(r))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # floored at the smallest normal: a subnormal result's spacing is that of tiny
        mag = np.maximum(np.where(np.isfinite(r), np.abs(r), 0.0) + s, p.tiny)
        e = np.where(same, 0.0, np.abs(g - r) / (eps * mag))
        e = np.where(np.isnan(e), math.inf, e)
        fin = np.isfinite(r) & np.isfinite(g)
        top = np.max(np.abs(r[fin])) if fin.any() else 0.0
        diff = np.where(same | ~fin, 0.0, np.abs(g - r))
        rel = float(np.max(diff) / top) if top > 0 else (0.0 if not diff.any() else math.inf)
    if (~same & ~fin).any():
        rel = math.inf
    i = int(np.argmax(e))
    idx = tuple(int(k) for k in np.unravel_index(i, r.shape))
    return Measure(float(e.flat[i]), rel, r.size, (idx, float(g.flat[i]), float(r.flat[i])))


def act_scales(case, x, dy, dx_ref):
    """(s of the forward, s of the backward) of an activation case (module docstring)."""
    ax = np.abs(np.where(np.isfinite(x), x, 0.0).astype(np.float64))
    ady = np.abs(dy.astype(np.float64))
    if case.op in R.ROW_ACTIVATIONS:
        axis = dict(case.params).get("axis", -1)
        return (np.max(ax, axis, keepdims=True) if ax.size else 0.0,
                np.sum(ady * (1 + ax), axis, keepdims=True) if ax.size else 0.0)
    return (ax + 1.0 if case.op == "gelu" else 1.0), ady * (1.0 + ax)


def resolve_params(case, dtype, xp=np):
    """The case's params as the kernels take them: RAMP becomes a weight array of the class
    (last) axis in `dtype` on xp's device."""
    n = case.shape[-1] if case.shape else 0
    return {k: (xp.asarray(np.linspace(0.5, 2.0, n).astype(dtype)) if v == RAMP else v) for k, v in case.params}


def normwise(ref):
    r = np.asarray(ref, np.float64)
    r = r[np.isfinite(r)]
    return float(np.max(np.abs(r))) if r.size else 0.0


def inputs(case, dtype):
    """The case's hard-case inputs at dtype (seeded by the case label: the same every run)."""
    import zlib  # noqa: PLC0415
    seed = zlib.crc32(case.label.encode())
    if case.family == "activation":
        return hard_inputs(case.op, case.shape, dtype, seed, **dict(case.params))
    if case.family == "loss":
        a = hard_inputs(case.op, case.shape, dtype, seed, **dict(case.params))
        if case.option.endswith("/probs"):  # class probabilities of pred's shape, rows summing to 1
            logits = np.random.default_rng(seed).standard_normal(case.shape) * 2
            e = np.exp(logits - logits.max(-1, keepdims=True)) if logits.size else logits
            a["target"] = (e / e.sum(-1, keepdims=True) if e.size else e).astype(dtype)
        return a
    return hard_inputs(case.family, case.shape, dtype, seed)


def reduction(case):
    """A loss case's reduction (its option without the target-kind suffix)."""
    return case.option.split("/")[0]
