"""atheris fuzzer of fastnn's public kernel API.

Arbitrary bytes become a call: which function, which backend (cpp / numba), names (real
ones, aliases, garbage), dtypes (float and not), shapes (0 and 1 included), memory
layouts, values (NaN, +-inf, subnormals, huge; float16 and bfloat16 included), parameters of any type and reductions.
A call may return or raise ValueError / TypeError (the documented errors); anything else
-- another exception, a crash, a sanitizer report -- is a finding.

    python fuzz/fuzz_api.py -runs=100000 -seed=1        # CI: a fixed budget
    python fuzz/fuzz_api.py fuzz/regressions/*          # replay saved inputs

Every input that ever failed is kept in fuzz/regressions/ and replayed by
tests/test_fuzz_regressions.py.
"""
import sys

import atheris

with atheris.instrument_imports(include=["fastnn"]):
    import ml_dtypes
    import numpy as np

    import fastnn

BACKENDS = [b for b in ("cpp", "numba") if b in fastnn.available_backends()]
NAMES = list(fastnn.ACTIVATIONS) + list(fastnn.LOSSES) + ["swish", "l1", "identity", "", "RELU", "nope\x00"]
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.bool_, np.complex64, BF16]
FLOATS = [np.float32, np.float64, np.float16, BF16]  # what every kernel takes
REDUCTIONS = ["mean", "sum", "none", "batchmean", "max", ""]
PARAM_KEYS = ["alpha", "beta", "threshold", "negative_slope", "max_value", "min_val", "max_val", "approximate",
              "axis", "delta", "eps", "log_target", "log_input", "full", "ignore_index", "label_smoothing",
              "weight", "pos_weight", "weight_layout", "keep_z", "chunk_size", "need_grads", "bogus"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 5e-324, 1e30, -1e30, 3e38, 1.0, -1.0]


def array(fdp, dtype=None, shape=None):
    dt = np.dtype(dtype or DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)])
    if shape is None:
        shape = tuple(fdp.ConsumeIntInRange(0, 5) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    n = int(np.prod(shape))
    if (dt.kind == "f" or dt == BF16) and fdp.ConsumeBool():
        vals = [SPECIAL[fdp.ConsumeIntInRange(0, len(SPECIAL) - 1)] for _ in range(n)]
        a = np.array(vals, dtype=np.float64).astype(dt).reshape(shape)
    else:
        raw = fdp.ConsumeBytes(n * dt.itemsize)
        raw = raw + bytes(n * dt.itemsize - len(raw))
        a = np.frombuffer(raw, dtype=dt).reshape(shape).copy() if n else np.zeros(shape, dt)
        if dt.kind == "i":
            a = np.asarray(a % 7 - 1, dtype=dt)  # class indices around the valid range (-1 .. 5)
    layout = fdp.ConsumeIntInRange(0, 3)
    if layout == 1 and a.ndim >= 2:
        a = np.asfortranarray(a)
    elif layout == 2 and a.ndim >= 1:
        a = a[::-1]
    elif layout == 3:
        a.flags.writeable = False
    return a


def value(fdp):
    kind = fdp.ConsumeIntInRange(0, 6)
    if kind == 0:
        return fdp.ConsumeFloat()
    if kind == 1:
        return fdp.ConsumeIntInRange(-(2 ** 40), 2 ** 40)
    if kind == 2:
        return fdp.ConsumeBool()
    if kind == 3:
        return fdp.ConsumeUnicodeNoSurrogates(4)
    if kind == 4:
        return None
    if kind == 5:
        return array(fdp)
    return [fdp.ConsumeFloat()]


def params(fdp):
    return {PARAM_KEYS[fdp.ConsumeIntInRange(0, len(PARAM_KEYS) - 1)]: value(fdp)
            for _ in range(fdp.ConsumeIntInRange(0, 2))}


def one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    backend = BACKENDS[fdp.ConsumeIntInRange(0, len(BACKENDS) - 1)]
    which = fdp.ConsumeIntInRange(0, 6)
    name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    fdt = FLOATS[fdp.ConsumeIntInRange(0, len(FLOATS) - 1)] if fdp.ConsumeBool() else None
    a, b = array(fdp, fdt), array(fdp, fdt)
    p = params(fdp)
    red = REDUCTIONS[fdp.ConsumeIntInRange(0, len(REDUCTIONS) - 1)]
    try:
        with fastnn.use_backend(backend):
            if which == 0:
                fastnn.activation_forward(a, name, **p)
            elif which == 1:
                fastnn.activation_backward(a, name, x=b, y=b if fdp.ConsumeBool() else None, **p)
            elif which == 2:
                fastnn.loss_forward(a, b, name, reduction=red, **p)
            elif which == 3:
                fastnn.loss_backward(a, b, name, reduction=red, need_target_grad=fdp.ConsumeBool(), **p)
            elif which == 4:
                fastnn.dense_forward(a, b, array(fdp, fdt) if fdp.ConsumeBool() else None, name, **p)
            elif which == 5:
                fastnn.dense_backward(a, b, array(fdp, fdt), a, b, name, **p)
            else:
                fastnn.dense_cross_entropy(a, b, None, array(fdp, np.int64), reduction=red, **p)
    except (ValueError, TypeError):
        pass  # the documented errors


def main():
    np.seterr(all="ignore")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
