"""Every error case of API.md: the exception type, and a message that names the argument
(and, for shapes, the offending shape)."""
import re

import ml_dtypes
import numpy as np
import pytest

import fastnn
from conftest import K

f32, f64 = np.float32, np.float64


def raises(exc, fn, *args, mentions=(), **kwargs):
    """fn(*args, **kwargs) raises exc whose message matches every regex in mentions."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for pat in mentions:
        assert re.search(pat, msg), f"{exc.__name__} message {msg!r} does not mention {pat!r}"
    return msg


def arg(name):
    """Regex for an argument's name as a word."""
    return rf"\b{re.escape(name)}\b"


def shp(*dims):
    """Regex for a shape written (2, 5), [2, 5] or (4,)."""
    inner = r",\s*".join(map(str, dims))
    return rf"[(\[]\s*{inner}\s*,?\s*[)\]]"


def a(shape, dtype=f64, fill=0.5):
    return np.full(shape, fill, dtype=dtype)


def cls_target(n, c):
    return np.arange(n, dtype=np.int64) % c


# --------------------------------------------------------------------------- dtypes
MIXED = [
    ("activation_backward", lambda: K.activation_backward(a(5, f32), "gelu", x=a(5, f64)),
     ["dy", "x"]),
    ("loss_forward", lambda: K.loss_forward(a(5, f32), a(5, f64), "mse"), ["pred", "target"]),
    ("loss_backward", lambda: K.loss_backward(a(5, f64), a(5, f32), "mae"),
     ["pred", "target"]),
    ("dense_forward-w", lambda: K.dense_forward(a((3, 4), f32), a((2, 4), f64)), ["x", "w"]),
    ("dense_forward-b", lambda: K.dense_forward(a((3, 4), f32), a((2, 4), f32), a(2, f64)),
     ["b"]),
    ("dense_backward", lambda: K.dense_backward(a((3, 2), f64), a((3, 4), f32),
                                                     a((2, 4), f32), a((3, 2), f32)), ["dy"]),
    ("ce-weight", lambda: K.loss_forward(a((4, 3), f32), cls_target(4, 3), "cross_entropy",
                                              weight=a(3, f64)), ["weight"]),
    ("bcel-pos_weight", lambda: K.loss_forward(a((4, 3), f32), a((4, 3), f32),
                                                    "bce_with_logits", pos_weight=a(3, f64)),
     ["pos_weight"]),
    ("loss_backward-grad", lambda: K.loss_backward(a(5, f32), a(5, f32), "mse",
                                                        reduction="none", grad=a(5, f64)),
     ["grad"]),
]


@pytest.mark.parametrize("case, fn, names", [pytest.param(*m, id=m[0]) for m in MIXED])
def test_mixed_float_dtypes(backend, case, fn, names):
    raises(TypeError, fn, mentions=[r"float32", r"float64"] + [arg(n) for n in names])


bf16, f16 = np.dtype(ml_dtypes.bfloat16), np.float16
MIXED_16 = [
    ("activation_backward-bf16-f16", lambda: K.activation_backward(a(5, bf16), "gelu", x=a(5, f16)), ["dy", "x"]),
    ("dense_forward-bf16-f32", lambda: K.dense_forward(a((3, 4), bf16), a((2, 4), f32)), ["x", "w"]),
    ("loss_forward-f16-bf16", lambda: K.loss_forward(a(5, f16), a(5, bf16), "mse"), ["pred", "target"]),
    ("loss_backward-grad", lambda: K.loss_backward(a(5, bf16), a(5, bf16), "mse", reduction="none",
                                                   grad=a(5, f16)), ["grad"]),
    ("dense_ce-row_weight", lambda: K.dense_cross_entropy(a((4, 3), f16), a((2, 3), f16), None, cls_target(4, 2),
                                                          row_weight=a(4, f32)), ["row_weight"]),
]


@pytest.mark.parametrize("case, fn, names", [pytest.param(*m, id=m[0]) for m in MIXED_16])
def test_mixed_16bit_dtypes(backend, case, fn, names):
    """Mixing a 16-bit dtype with another float dtype raises like float32 with float64:
    both dtypes and the arguments named."""
    raises(TypeError, fn, mentions=[r"float16|bfloat16"] + [arg(n) for n in names])


def test_non_float_message_lists_the_accepted_dtypes(backend):
    raises(TypeError, K.activation_forward, np.arange(5), "relu",
           mentions=[arg("x"), "int64", r"expected float16, bfloat16, float32 or float64"])


INT_INPUTS = [
    ("activation_forward", lambda: K.activation_forward(np.arange(5), "relu"), "x"),
    ("activation_forward-i32", lambda: K.activation_forward(np.arange(5, dtype=np.int32),
                                                                 "tanh"), "x"),
    ("loss_forward", lambda: K.loss_forward(np.arange(5), a(5), "mse"), "pred"),
    ("loss_forward-target", lambda: K.loss_forward(a(5), np.arange(5), "mse"), "target"),
    ("dense_forward", lambda: K.dense_forward(np.ones((3, 4), np.int64), a((2, 4))), "x"),
    ("dense_forward-w", lambda: K.dense_forward(a((3, 4)), np.ones((2, 4), np.int32)), "w"),
    ("cross_entropy-pred", lambda: K.loss_forward(np.ones((4, 3), np.int64),
                                                       cls_target(4, 3), "cross_entropy"),
     "pred"),
]


@pytest.mark.parametrize("case, fn, name", [pytest.param(*m, id=m[0]) for m in INT_INPUTS])
def test_int_float_input(backend, case, fn, name):
    raises(TypeError, fn, mentions=[arg(name)])


# --------------------------------------------------------------------------- shapes
SHAPES = [
    ("dense-w-oi", lambda: K.dense_forward(a((3, 4)), a((2, 5))), "w", (2, 5)),
    ("dense-w-io", lambda: K.dense_forward(a((3, 4)), a((5, 2)), weight_layout="io"),
     "w", (5, 2)),
    ("dense-b", lambda: K.dense_forward(a((3, 4)), a((2, 4)), a(3)), "b", (3,)),
    ("dense-b-2d", lambda: K.dense_forward(a((3, 4)), a((2, 4)), a((1, 2))), "b", (1, 2)),
    ("dense_backward-dy", lambda: K.dense_backward(a((3, 5)), a((3, 4)), a((2, 4)),
                                                        a((3, 2))), "dy", (3, 5)),
    ("dense_backward-y", lambda: K.dense_backward(a((3, 2)), a((3, 4)), a((2, 4)),
                                                       a((3, 3))), "y", (3, 3)),
    ("activation_backward-x", lambda: K.activation_backward(a(5), "gelu", x=a(6)),
     "x", (6,)),
    ("activation_backward-y", lambda: K.activation_backward(a((2, 3)), "sigmoid",
                                                                 y=a((3, 2))), "y", (3, 2)),
    ("mse-target", lambda: K.loss_forward(a(3), a(4), "mse"), "target", (4,)),
    ("mse-no-broadcast", lambda: K.loss_forward(a((3, 4)), a(4), "mse"), "target", (4,)),
    ("bce-target", lambda: K.loss_backward(a((2, 3)), a((3, 2)), "bce"), "target", (3, 2)),
    ("ce-target", lambda: K.loss_forward(a((5, 3)), cls_target(7, 3), "cross_entropy"),
     "target", (7,)),
    ("ce-prob-target", lambda: K.loss_forward(a((5, 3)), a((5, 4), fill=0.25),
                                                   "cross_entropy"), "target", (5, 4)),
    ("nll-target", lambda: K.loss_forward(a((5, 3)), np.zeros((5, 1), np.int64), "nll"),
     "target", (5, 1)),
    ("ce-weight", lambda: K.loss_forward(a((5, 3)), cls_target(5, 3), "cross_entropy",
                                              weight=a(4)), "weight", (4,)),
    ("bcel-pos_weight", lambda: K.loss_forward(a((5, 3)), a((5, 3)), "bce_with_logits",
                                                    pos_weight=a(2)), "pos_weight", (2,)),
    ("grad-none", lambda: K.loss_backward(a((4, 3)), a((4, 3)), "mse", reduction="none",
                                               grad=a((4, 2))), "grad", (4, 2)),
    ("grad-ce-none", lambda: K.loss_backward(a((4, 3)), cls_target(4, 3), "cross_entropy",
                                                  reduction="none", grad=a((4, 3))),
     "grad", (4, 3)),
]


@pytest.mark.parametrize("case, fn, name, shape", [pytest.param(*s, id=s[0]) for s in SHAPES])
def test_shape_mismatch(backend, case, fn, name, shape):
    raises(ValueError, fn, mentions=[arg(name), shp(*shape)])


# ---------------------------------------------------------------------- bad names
BAD_NAMES = [
    ("activation", lambda: K.activation_forward(a(3), "nope"), "nope"),
    ("activation_backward", lambda: K.activation_backward(a(3), "nope", x=a(3)), "nope"),
    ("saved_for_backward", lambda: fastnn.saved_for_backward("nope"), "nope"),
    ("dense-activation", lambda: K.dense_forward(a((3, 4)), a((2, 4)), activation="nope"),
     "nope"),
    ("loss", lambda: K.loss_forward(a(3), a(3), "nope"), "nope"),
    ("loss_backward", lambda: K.loss_backward(a(3), a(3), "nope"), "nope"),
    ("reduction", lambda: K.loss_forward(a(3), a(3), "mse", reduction="avg"), "avg"),
    ("reduction-backward", lambda: K.loss_backward(a(3), a(3), "mse", reduction="avg"),
     "avg"),
    ("approximate", lambda: K.activation_forward(a(3), "gelu", approximate="fast"),
     "approximate"),
    ("weight_layout", lambda: K.dense_forward(a((3, 4)), a((2, 4)), weight_layout="ik"),
     "weight_layout"),
    ("weight_layout-backward", lambda: K.dense_backward(a((3, 2)), a((3, 4)), a((2, 4)),
                                                             a((3, 2)), weight_layout="OI"),
     "weight_layout"),
]


@pytest.mark.parametrize("case, fn, token", [pytest.param(*b, id=b[0]) for b in BAD_NAMES])
def test_unknown_names(backend, case, fn, token):
    raises(ValueError, fn, mentions=[re.escape(token)])


# ------------------------------------------------------------------- bad parameters
BAD_PARAMS = [("huber", {"delta": 0.0}, "delta"), ("huber", {"delta": -1.0}, "delta"),
              ("smooth_l1", {"beta": -0.5}, "beta"),
              ("cross_entropy", {"label_smoothing": -0.1}, "label_smoothing"),
              ("cross_entropy", {"label_smoothing": 1.5}, "label_smoothing")]


@pytest.mark.parametrize("fn_name", ["loss_forward", "loss_backward"])
@pytest.mark.parametrize("name, params, key",
                         [pytest.param(*b, id=f"{b[0]}-{b[2]}={list(b[1].values())[0]}")
                          for b in BAD_PARAMS])
def test_bad_loss_params(backend, fn_name, name, params, key):
    pred = a((4, 3))
    target = cls_target(4, 3) if name == "cross_entropy" else a((4, 3), fill=0.25)
    raises(ValueError, getattr(K, fn_name), pred, target, name, **params,
           mentions=[arg(key)])


BAD_TARGETS = [
    ("ce-index=C", "cross_entropy", np.array([0, 3, 1]), {}),
    ("ce-index=-1", "cross_entropy", np.array([0, -1, 1]), {}),
    ("ce-int32-index=7", "cross_entropy", np.array([0, 7, 1], np.int32), {}),
    ("ce--100-not-ignored", "cross_entropy", np.array([0, -100, 1]), {"ignore_index": 1}),
    ("nll-index=C", "nll", np.array([0, 3, 1]), {}),
    ("nll-index=-5", "nll", np.array([0, -5, 1], np.int32), {"ignore_index": 2}),
]


@pytest.mark.parametrize("fn_name", ["loss_forward", "loss_backward"])
@pytest.mark.parametrize("case, name, target, params", [pytest.param(*b, id=b[0])
                                                        for b in BAD_TARGETS])
def test_class_index_out_of_range(backend, fn_name, case, name, target, params):
    pred = np.log(a((3, 3), fill=1 / 3))
    raises(ValueError, getattr(K, fn_name), pred, target, name, **params,
           mentions=[arg("target")])


BCE_BAD = [("pred>1", [0.5, 1.5], [0.0, 1.0], "pred"), ("pred<0", [-0.1, 0.5], [0.0, 1.0], "pred"),
           ("pred-nan", [np.nan, 0.5], [0.0, 1.0], "pred"),
           ("target>1", [0.5, 0.5], [0.0, 1.5], "target"),
           ("target<0", [0.5, 0.5], [-0.5, 1.0], "target")]


@pytest.mark.parametrize("fn_name", ["loss_forward", "loss_backward"])
@pytest.mark.parametrize("case, pred, target, name", [pytest.param(*b, id=b[0]) for b in BCE_BAD])
def test_bce_out_of_range(backend, fn_name, case, pred, target, name):
    raises(ValueError, getattr(K, fn_name), np.array(pred), np.array(target), "bce",
           mentions=[rf"\b({name}|input)\b"])


@pytest.mark.parametrize("fn_name", ["loss_forward", "loss_backward"])
def test_prob_targets_with_ignore_index(backend, fn_name):
    pred = a((4, 3))
    target = a((4, 3), fill=1 / 3)
    raises(ValueError, getattr(K, fn_name), pred, target, "cross_entropy", ignore_index=0,
           mentions=[arg("ignore_index")])


def test_unavailable_backend_raises_runtime_error():
    missing = [n for n, s in fastnn.backends().items() if s != "ok"]
    if not missing:
        pytest.skip("every backend is available here")
    for name in missing:
        try:
            with pytest.raises(RuntimeError, match=name):
                fastnn.set_backend(name)
                K.activation_forward(a(3), "relu")
            with pytest.raises(RuntimeError, match=name):
                with fastnn.use_backend(name):
                    K.activation_forward(a(3), "relu")
        finally:
            fastnn.set_backend(None)
