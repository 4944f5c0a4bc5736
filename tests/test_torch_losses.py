"""fastnn.torch.functional's losses against torch.nn.functional: values and gradients
(input and float targets) for every reduction, float32 and float64; torch's broadcasting
and its warnings, dtype promotion, class axis, weights, legacy arguments and errors.
Tolerances and helpers: test_torch_functional."""
import warnings

import pytest
import torch
import torch.nn.functional as TF

import fastnn.torch.functional as F
from test_torch_functional import (DTYPE_IDS, DTYPES, as64, assert_close, check_against_torch,  # noqa: F401
                                   each_backend, leaf, run)

# ---- losses -----------------------------------------------------------------------------

def _t(shape, g, lo=None, hi=None, dtype=torch.float64):
    if lo is None:
        return torch.randn(shape, generator=g, dtype=dtype) * 2
    return (lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)).to(dtype)


def _labels(shape, classes, g, ignore=None):
    t = torch.randint(0, classes, shape, generator=g)
    if ignore is not None:
        t.view(-1)[::3] = ignore
    return t


def _probs(shape, g, axis=-1):
    return torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), axis)


# (functional name, id, make(g) -> (input, target, kwargs)); shapes (5, 4) unless noted
LOSSES = [
    ("mse_loss", "plain", lambda g: (_t((5, 4), g), _t((5, 4), g), {})),
    ("mse_loss", "weight", lambda g: (_t((5, 4), g), _t((5, 4), g), {"weight": _t((5, 4), g, 0.1, 2)})),
    ("l1_loss", "plain", lambda g: (_t((5, 4), g), _t((5, 4), g), {})),
    ("l1_loss", "weight", lambda g: (_t((5, 4), g), _t((5, 4), g), {"weight": _t((5, 4), g, 0.1, 2)})),
    ("huber_loss", "delta", lambda g: (_t((5, 4), g), _t((5, 4), g), {"delta": 0.7})),
    ("huber_loss", "weight", lambda g: (_t((5, 4), g), _t((5, 4), g), {"weight": _t((5, 4), g, 0.1, 2)})),
    ("smooth_l1_loss", "beta", lambda g: (_t((5, 4), g), _t((5, 4), g), {"beta": 0.5})),
    ("smooth_l1_loss", "beta0", lambda g: (_t((5, 4), g), _t((5, 4), g), {"beta": 0.0})),
    ("binary_cross_entropy", "plain", lambda g: (_t((5, 4), g, 0.02, 0.98), _t((5, 4), g, 0, 1), {})),
    ("binary_cross_entropy", "weight", lambda g: (_t((5, 4), g, 0.02, 0.98), _t((5, 4), g, 0, 1),
                                                  {"weight": _t((4,), g, 0.1, 2)})),
    ("binary_cross_entropy_with_logits", "plain", lambda g: (_t((5, 4), g), _t((5, 4), g, 0, 1), {})),
    ("binary_cross_entropy_with_logits", "pos_weight", lambda g: (_t((5, 4), g), _t((5, 4), g, 0, 1),
                                                                  {"pos_weight": _t((4,), g, 0.1, 3)})),
    ("binary_cross_entropy_with_logits", "weight", lambda g: (_t((5, 4), g), _t((5, 4), g, 0, 1),
                                                              {"weight": _t((5, 1), g, 0.1, 2),
                                                               "pos_weight": _t((4,), g, 0.1, 3)})),
    ("cross_entropy", "index", lambda g: (_t((5, 4), g), _labels((5,), 4, g), {})),
    ("cross_entropy", "weight-ignore-ls", lambda g: (_t((6, 4), g), _labels((6,), 4, g, ignore=2),
                                                     {"weight": _t((4,), g, 0.1, 2), "ignore_index": 2,
                                                      "label_smoothing": 0.2})),
    ("cross_entropy", "probs-ls", lambda g: (_t((5, 4), g), _probs((5, 4), g), {"label_smoothing": 0.1})),
    ("cross_entropy", "nd-index", lambda g: (_t((3, 4, 2, 5), g), _labels((3, 2, 5), 4, g, ignore=-100), {})),
    ("cross_entropy", "nd-probs", lambda g: (_t((3, 4, 5), g), _probs((3, 4, 5), g, 1), {})),
    ("cross_entropy", "unbatched", lambda g: (_t((4,), g), torch.tensor(2), {})),
    ("nll_loss", "plain", lambda g: (torch.log_softmax(_t((5, 4), g), -1), _labels((5,), 4, g), {})),
    ("nll_loss", "weight-ignore", lambda g: (_t((6, 4), g), _labels((6,), 4, g, ignore=1),
                                             {"weight": _t((4,), g, 0.1, 2), "ignore_index": 1})),
    ("nll_loss", "nd", lambda g: (_t((2, 4, 3, 5), g), _labels((2, 3, 5), 4, g), {})),
    ("kl_div", "plain", lambda g: (torch.log_softmax(_t((5, 4), g), -1), _probs((5, 4), g), {})),
    ("kl_div", "log_target", lambda g: (torch.log_softmax(_t((5, 4), g), -1),
                                        torch.log_softmax(_t((5, 4), g), -1), {"log_target": True})),
    ("poisson_nll_loss", "log_input", lambda g: (_t((5, 4), g), _t((5, 4), g, 0, 4), {})),
    ("poisson_nll_loss", "full", lambda g: (_t((5, 4), g, 0.1, 3), _t((5, 4), g, 0, 4),
                                            {"log_input": False, "full": True, "eps": 1e-3})),
]
LOSS_IDS = [f"{n}-{i}" for n, i, _ in LOSSES]


def _reductions(name):
    return ["mean", "sum", "none"] + (["batchmean"] if name == "kl_div" else [])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,case,make", LOSSES, ids=LOSS_IDS)
def test_loss_matches_torch(name, case, make, dtype):
    """Every reduction; gradients of input and (float targets) of target."""
    for reduction in _reductions(name):
        x, t, kw = make(torch.Generator().manual_seed(5))
        x = leaf(x, dtype)
        t = leaf(t, dtype) if t.is_floating_point() else t
        kw = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # kl_div's 'mean' warning: tested below
            check_against_torch(name, [x, t], dict(kw, reduction=reduction), dtype)


def test_weight_requiring_grad_gets_its_gradient():
    g = torch.Generator().manual_seed(6)
    x, t, w = _t((5, 4), g), _t((5, 4), g), _t((5, 4), g, 0.1, 2)
    for name in ["mse_loss", "l1_loss", "huber_loss"]:
        a, b = leaf(w), leaf(w)
        getattr(F, name)(x, t, weight=a).backward()
        getattr(TF, name)(x, t, weight=b).backward()
        assert_close(a.grad, b.grad, torch.float64, name)


def test_class_weight_requiring_grad_is_refused():
    w = torch.ones(4, requires_grad=True)
    with pytest.raises(TypeError, match="weight requires grad"):
        F.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]), weight=w)
    with pytest.raises(TypeError, match="pos_weight requires grad"):
        F.binary_cross_entropy_with_logits(torch.randn(3, 4), torch.rand(3, 4), pos_weight=w)


BROADCASTING = ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss"]
SILENT = ["kl_div", "poisson_nll_loss"]


@pytest.mark.parametrize("tshape,xshape", [((4,), (5, 4)), ((5, 4), (5, 1)), ((1, 4), (3, 5, 1))])
@pytest.mark.parametrize("name", BROADCASTING + SILENT)
def test_loss_broadcasting_like_torch(name, xshape, tshape):
    g = torch.Generator().manual_seed(7)
    for reduction in _reductions(name)[1:]:  # "mean" of kl_div warns anyway
        x, t = leaf(_t(xshape, g, 0.1, 2)), leaf(_t(tshape, g, 0.1, 2))
        with warnings.catch_warnings(record=True) as mine:
            warnings.simplefilter("always")
            got, ggot = run(getattr(F, name), [x, t], {"reduction": reduction})
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            ref, gref = run(getattr(TF, name), [x, t], {"reduction": reduction})
        assert [str(w.message) for w in mine] == [str(w.message) for w in theirs]
        assert bool(mine) == (name in BROADCASTING)
        assert_close(got, ref, torch.float64, f"{name} {reduction}")
        for a, b in zip(ggot, gref):
            assert_close(a, b, torch.float64, f"{name} {reduction} grad")


def test_kl_div_mean_warning_and_legacy_args():
    x, t = torch.log_softmax(torch.randn(3, 4), -1), torch.softmax(torch.randn(3, 4), -1)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        F.kl_div(x, t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kw in [{"size_average": False}, {"reduce": False}, {"size_average": True, "reduce": True}]:
            assert_close(F.kl_div(x.double(), t.double(), **kw), TF.kl_div(x.double(), t.double(), **kw),
                         torch.float64, str(kw))
            assert_close(F.mse_loss(x.double(), t.double(), **kw), TF.mse_loss(x.double(), t.double(), **kw),
                         torch.float64, str(kw))


PROMOTING = ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "kl_div", "poisson_nll_loss",
             "binary_cross_entropy_with_logits"]


@pytest.mark.parametrize("name", PROMOTING)
@pytest.mark.parametrize("xdt,tdt", [(torch.float32, torch.float64), (torch.float64, torch.float32)],
                         ids=["f32-f64", "f64-f32"])
def test_loss_dtype_promotion_like_torch(name, xdt, tdt):
    """The result has torch's dtype for mixed inputs; values and gradients (of each input's
    own dtype) match float64 torch to float32 precision, the precision of one input (torch
    itself rounds some intermediates to it). torch's huber_loss backward fails on mixed
    dtypes (RuntimeError "Found dtype Double but expected Float"); fastnn's works."""
    g = torch.Generator().manual_seed(8)
    x, t = leaf(_t((5, 4), g).to(xdt)), leaf(_t((5, 4), g, 0, 1).to(tdt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, (gx, gt) = run(getattr(F, name), [x, t], {})
        theirs = getattr(TF, name)(x.detach(), t.detach())
        ref, (rx, rt) = run(getattr(TF, name), as64([x, t]), {})
    assert got.dtype == theirs.dtype
    assert (gx.dtype, gt.dtype) == (xdt, tdt)
    assert_close(got.float(), theirs.float(), torch.float32, "vs torch's mixed-dtype value")
    assert_close(got.float(), ref, torch.float32, "value")
    assert_close(gx.float(), rx, torch.float32, "input grad")
    assert_close(gt.float(), rt, torch.float32, "target grad")


def test_cross_entropy_probability_targets_promote():
    x, t = torch.randn(5, 4, requires_grad=True), torch.softmax(torch.randn(5, 4, dtype=torch.float64), -1)
    got, ref = F.cross_entropy(x, t), TF.cross_entropy(x, t)
    assert got.dtype == ref.dtype == torch.float64
    assert_close(got.float(), ref.float(), torch.float32)


def test_loss_dtype_errors_like_torch():
    x32, x64 = torch.rand(3, 4), torch.rand(3, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="target has dtype torch.float64 but input is torch.float32"):
        F.binary_cross_entropy(x32, x64)
    with pytest.raises(RuntimeError, match="weight has dtype torch.float64"):
        F.cross_entropy(x32, torch.tensor([0, 1, 2]), weight=torch.ones(4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="target has dtype torch.int16"):
        F.nll_loss(x32, torch.tensor([0, 1, 2], dtype=torch.int16))
    with pytest.raises(ValueError, match="Using a target size"):
        F.binary_cross_entropy(x32, torch.rand(4))
    with pytest.raises(ValueError, match="Target size"):
        F.binary_cross_entropy_with_logits(x32, torch.rand(4))


@pytest.mark.parametrize("tdt", [torch.int32, torch.uint8])
def test_class_target_dtypes(tdt):
    x = torch.randn(6, 4, dtype=torch.float64)
    t = torch.tensor([0, 3, 1, 2, 2, 0])
    for name in ["cross_entropy", "nll_loss"]:
        assert_close(getattr(F, name)(x, t.to(tdt), reduction="none"), getattr(TF, name)(x, t, reduction="none"),
                     torch.float64, f"{name} {tdt}")


def test_empty_batch_like_torch():
    x, t = torch.randn(0, 4, dtype=torch.float64, requires_grad=True), torch.randn(0, 4, dtype=torch.float64)
    for reduction in ["mean", "sum", "none"]:
        got, ref = F.mse_loss(x, t, reduction=reduction), TF.mse_loss(x, t, reduction=reduction)
        assert_close(got, ref, torch.float64, reduction)
    labels = torch.full((3,), -100)
    xc = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    got = F.cross_entropy(xc, labels)
    assert torch.isnan(got) and torch.isnan(TF.cross_entropy(xc, labels))
    got.backward()
    assert torch.equal(xc.grad, torch.zeros_like(xc))


def test_loss_errors():
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(torch.randn(3), torch.randn(3), reduction="avg")
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.poisson_nll_loss(torch.randn(3), torch.rand(3), reduction="batchmean")
    with pytest.raises(ValueError, match=r"class index 7, outside \[0, 4\)"):
        F.cross_entropy(torch.randn(2, 4), torch.tensor([1, 7]))
    with pytest.raises(ValueError, match="probabilities in"):
        F.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.tensor([0.0, 1.0]))
