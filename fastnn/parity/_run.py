"""Running the cases: the float64 reference once per (case, dtype), then each backend on
the same inputs (device backends get device copies), one row per output."""
import numpy as np

import fastnn

from . import _reference as ref
from ._bounds import bound_of
from ._cases import act_scales, inputs, measure, normwise, reduction, resolve_params

OUTPUTS = {"activation": ("y", "dx"), "loss": ("loss", "dpred"), "dense": ("y", "dx", "dw", "db"),
           "dense_cross_entropy": ("loss", "dx", "dw", "db")}


def _reference(case, a, dtype):
    """(outputs, scales): the float64 reference of each output and its s (see _cases)."""
    p = resolve_params(case, dtype)
    if case.family == "activation":
        y, dx = ref.activation(case.op, p, a["x"], a["dy"])
        return (y, dx), act_scales(case, a["x"], a["dy"], dx)
    if case.family == "loss":
        grad = a["grad"] if reduction(case) == "none" else None
        outs = ref.loss(case.op, p, a["pred"], a["target"], reduction(case), grad)
    elif case.family == "dense":
        w = a["w"] if case.option == "oi" else np.ascontiguousarray(a["w"].T)
        d = ref.dense(a["x"], w, a["b"], case.option, case.op, p, a["dy"])
        outs = (d["y"], d["dx"], d["dw"], d["db"])
    else:
        outs = ref.dense_cross_entropy(a["x"], a["w"], a["b"], a["target"], case.option)
    return outs, tuple(normwise(o) for o in outs)


def _kernels(case, a, xp):
    """The outputs of the backend in force, as numpy arrays."""
    dev = {k: (xp.asarray(v) if xp is not np else v) for k, v in a.items()}
    p = resolve_params(case, a["x" if "x" in a else "pred"].dtype, xp)
    if case.family == "activation":
        y = fastnn.activation_forward(dev["x"], case.op, **p)
        outs = (y, fastnn.activation_backward(dev["dy"], case.op, x=dev["x"], y=y, **p))
    elif case.family == "loss":
        kw = dict(reduction=reduction(case), **p)
        grad = dev["grad"] if reduction(case) == "none" else None
        outs = (fastnn.loss_forward(dev["pred"], dev["target"], case.op, **kw),
                fastnn.loss_backward(dev["pred"], dev["target"], case.op, grad=grad, **kw))
    elif case.family == "dense":
        w = dev["w"] if case.option == "oi" else xp.ascontiguousarray(dev["w"].T)
        kw = dict(weight_layout=case.option, **p)
        y, z = fastnn.dense_forward(dev["x"], w, dev["b"], case.op, keep_z=True, **kw)
        outs = (y,) + tuple(fastnn.dense_backward(dev["dy"], dev["x"], w, y, z, case.op, **kw))
    else:
        loss, grads = fastnn.dense_cross_entropy(dev["x"], dev["w"], dev["b"], dev["target"], reduction=case.option)
        outs = (loss,) + tuple(grads)
    return tuple(o.get() if hasattr(o, "get") and not isinstance(o, np.ndarray) else np.asarray(o) for o in outs)


def _row(case, backend, dtype, output, m=None, error=""):
    b = bound_of(case.family, case.op, np.dtype(dtype).name)
    ok = not error and m.ulps <= b
    return {"family": case.family, "op": case.op, "params": ",".join(f"{k}={v}" for k, v in case.params),
            "option": case.option, "shape": "x".join(map(str, case.shape)), "backend": backend,
            "dtype": np.dtype(dtype).name, "output": output, "n": 0 if m is None else m.n,
            "ulps": None if m is None else m.ulps, "rel": None if m is None else m.rel, "bound": b,
            "verdict": "ok" if ok else ("error" if error else "FAIL"),
            "worst_index": None if m is None or not m.worst else list(m.worst[0]),
            "worst_got": None if m is None or not m.worst else m.worst[1],
            "worst_ref": None if m is None or not m.worst else m.worst[2], "error": error}


def run_case(case, backends, dtypes):
    """The rows of one case over the backends and dtypes."""
    from ..testing import xp_of  # noqa: PLC0415
    rows = []
    names = OUTPUTS[case.family]
    for dtype in dtypes:
        a = inputs(case, np.dtype(dtype))
        try:
            want, scales = _reference(case, a, np.dtype(dtype))
        except Exception as e:  # noqa: BLE001 - a reference failure is a row of its own
            rows += [_row(case, "reference", dtype, o, error=f"{type(e).__name__}: {e}") for o in names]
            continue
        for be in backends:
            try:
                with fastnn.use_backend(be):
                    got = _kernels(case, a, xp_of(be))
            except Exception as e:  # noqa: BLE001 - reported in the row, counted as broken
                rows += [_row(case, be, dtype, o, error=f"{type(e).__name__}: {e}") for o in names]
                continue
            for o, g, r, s in zip(names, got, want, scales):
                rows.append(_row(case, be, dtype, o, measure(g, r, dtype, s)))
    return rows
