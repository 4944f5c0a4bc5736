"""fastnn.torch.LinearCrossEntropyLoss / functional.linear_cross_entropy as drop-ins for
torch 2.13's nn.LinearCrossEntropyLoss / F.linear_cross_entropy: values and every gradient
against torch's module on the full cross of torch's arguments, state_dict both ways, the
options' meaning, and the options beyond torch against a float64 composition in torch."""
import inspect
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastnn
import fastnn.torch as fnn

TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-11, atol=1e-13)}
# float32 against a float64 reference (the above: float32 against torch's float32)
TOL_F64_REF = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: TOL[torch.float64]}


def _run(mod, x, t, up, **kw):
    """(loss, [dx, d linear.weight, d linear.bias or None]) of mod(x, t)."""
    x = x.clone().requires_grad_(True)
    mod.zero_grad(set_to_none=True)
    out = mod(x, t, **kw)
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward(up)
    lin = mod.linear
    return out, [x.grad, lin.weight.grad, None if lin.bias is None else lin.bias.grad]


def _case(dtype, kdims, batched, bias, use_weight, ignore_index, seed):
    g = torch.Generator().manual_seed(seed)
    n, h, c = 23, 6, 5
    kw = dict(out_features=kdims, bias=bias, dtype=dtype,
              weight=(torch.rand(c, generator=g, dtype=dtype) + 0.5) if use_weight else None,
              ignore_index=ignore_index)
    x = torch.randn(*((n,) if batched else ()), h, generator=g, dtype=dtype)
    t = torch.randint(0, c, ((n,) if batched else ()) + kdims, generator=g)
    if batched:
        t.view(-1)[2] = -100 if ignore_index is None else ignore_index
        t.view(-1)[7] = -100 if ignore_index is None else ignore_index
    return kw, x, t


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_module_matches_torch_on_every_argument_combination(dtype, red):
    """The full cross of torch's arguments (216 cases per reduction) for float64, every 4th
    case for float32: the loss, the gradients of input, linear.weight and linear.bias equal
    torch's module's."""
    opts = [None, nn.LinearCrossEntropyOptions(), nn.LinearCrossEntropyOptions(allow_retain_graph=True,
                                                                                batch_chunk_size=4)]
    cross = itertools.product([(), (2, 3)], [True, False], [False, True], [False, True], [None, -100, 3],
                              [0.0, 0.15], range(len(opts)))
    n = 0
    for kdims, batched, bias, use_w, ii, ls, oi in cross:
        if kdims and not batched:
            continue  # torch refuses it too (tested in test_errors)
        n += 1
        if dtype == torch.float32 and n % 4:
            continue
        kw, x, t = _case(dtype, kdims, batched, bias, use_w, ii, seed=n)
        torch.manual_seed(n)
        ref = nn.LinearCrossEntropyLoss(6, 5, reduction=red, label_smoothing=ls, options=None, **kw)
        ours = fnn.LinearCrossEntropyLoss(6, 5, reduction=red, label_smoothing=ls, options=opts[oi], **kw)
        ours.load_state_dict(ref.state_dict(), strict=True)
        up = torch.randn(t.shape, dtype=dtype) if red == "none" else torch.tensor(0.7, dtype=dtype)
        r_out, r_g = _run(ref, x, t, up)
        o_out, o_g = _run(ours, x, t, up)
        what = f"kdims={kdims} batched={batched} bias={bias} weight={use_w} ignore_index={ii} ls={ls} {red} opt{oi}"
        torch.testing.assert_close(o_out, r_out, **TOL[dtype], equal_nan=True, msg=lambda m: f"loss, {what}: {m}")
        for o, r, name in zip(o_g, r_g, ("input", "linear.weight", "linear.bias")):
            if r is None:
                assert o is None, f"{name} grad, {what}"
            else:
                torch.testing.assert_close(o, r, **TOL[dtype], equal_nan=True,
                                           msg=lambda m: f"{name} grad, {what}: {m}")
    assert n == 3 * 2 * 2 * 3 * 2 * 3


def test_functional_has_torchs_signature_and_results():
    ours, theirs = inspect.signature(fnn.functional.linear_cross_entropy), inspect.signature(F.linear_cross_entropy)
    def spec(params):  # names, defaults and kinds (annotations are spelled differently)
        return [(p.name, p.default, p.kind) for p in params]

    torch_params = list(theirs.parameters.values())
    assert spec(list(ours.parameters.values())[:len(torch_params)]) == spec(torch_params)
    extra = list(ours.parameters.values())[len(torch_params):]
    kw_only = inspect.Parameter.KEYWORD_ONLY
    assert spec(extra) == [("softcap", None, kw_only), ("lse_square_scale", 0.0, kw_only),
                           ("token_weight", None, kw_only), ("return_lse", False, kw_only)]
    m_ours = inspect.signature(fnn.LinearCrossEntropyLoss.__init__).parameters
    m_torch = inspect.signature(nn.LinearCrossEntropyLoss.__init__).parameters
    assert spec(list(m_ours.values())[:len(m_torch)]) == spec(m_torch.values())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(19, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 7, (19,), generator=g)
    cw = torch.rand(7, generator=g, dtype=torch.float64)
    kw = dict(linear_bias=b, weight=cw, reduction="sum", label_smoothing=0.3)
    got, ref = fnn.functional.linear_cross_entropy(x, w, t, **kw), F.linear_cross_entropy(x, w, t, **kw)
    torch.testing.assert_close(got, ref, **TOL[torch.float64])
    for a, r in zip(torch.autograd.grad(got, (x, w, b)), torch.autograd.grad(ref, (x, w, b))):
        torch.testing.assert_close(a, r, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_probability_targets_match_torch(dtype, reduction):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(13, 6, generator=g, dtype=dtype)
    for kdims in [(), (2,)]:
        kw = dict(out_features=kdims, bias=True, dtype=dtype, reduction=reduction, label_smoothing=0.1,
                  weight=torch.rand(4, generator=g, dtype=dtype))
        ref, ours = nn.LinearCrossEntropyLoss(6, 4, **kw), fnn.LinearCrossEntropyLoss(6, 4, **kw)
        ours.load_state_dict(ref.state_dict(), strict=True)
        t = torch.softmax(torch.randn(13, 4, *kdims, generator=g, dtype=dtype), 1)
        up = torch.randn(13, *kdims, dtype=dtype) if reduction == "none" else torch.tensor(1.3, dtype=dtype)
        (ro, rg), (oo, og) = _run(ref, x, t, up), _run(ours, x, t, up)
        torch.testing.assert_close(oo, ro, **TOL[dtype])
        for a, r in zip(og, rg):
            torch.testing.assert_close(a, r, **TOL[dtype])


# ---- state_dict, repr, the legacy constructor, patch ------------------------------------------------

@pytest.mark.parametrize("bias, kdims, weight", [(False, (), False), (True, (3,), True)])
def test_checkpoints_move_both_ways_strictly(bias, kdims, weight):
    kw = dict(out_features=kdims, bias=bias, weight=torch.rand(6) + 0.5 if weight else None, ignore_index=2)
    ref, ours = nn.LinearCrossEntropyLoss(9, 6, **kw), fnn.LinearCrossEntropyLoss(9, 6, **kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert ("linear.weight" in ours.state_dict()) and (("linear.bias" in ours.state_dict()) == bias)
    ours.load_state_dict(ref.state_dict(), strict=True)
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    fresh = nn.LinearCrossEntropyLoss(9, 6, **kw)
    fresh.load_state_dict(ours.state_dict(), strict=True)
    for k, v in ours.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    for attr in ("num_classes", "out_features", "reduction", "ignore_index", "label_smoothing", "options"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
    assert repr(ours) == repr(ref)
    assert isinstance(ours, nn.LinearCrossEntropyLoss)


def test_repr_shows_the_options_beyond_torch_only_when_on():
    m = fnn.LinearCrossEntropyLoss(4, 3, softcap=30.0, lse_square_scale=1e-4, return_lse=True)
    assert m.extra_repr() == (nn.LinearCrossEntropyLoss(4, 3).extra_repr()
                              + ", softcap=30.0, lse_square_scale=0.0001, return_lse=True")


def test_legacy_constructor_and_checkpoints_still_load():
    with pytest.warns(FutureWarning, match="from_legacy_args is deprecated"):
        old = fnn.LinearCrossEntropyLoss.from_legacy_args(9, 6, chunk_size=5, label_smoothing=0.1)
    assert old.linear.bias is not None and old.ignore_index == -100 and old.options.batch_chunk_size == 5
    g = torch.Generator().manual_seed(3)
    legacy_sd = {"weight": torch.randn(6, 9, generator=g), "bias": torch.randn(6, generator=g)}  # the old layout
    with pytest.warns(FutureWarning, match="earlier layout"):
        old.load_state_dict(legacy_sd, strict=True)
    x, t = torch.randn(12, 9, generator=g), torch.randint(0, 6, (12,), generator=g)
    ref = F.cross_entropy(F.linear(x, legacy_sd["weight"], legacy_sd["bias"]), t, label_smoothing=0.1)
    torch.testing.assert_close(old(x, t), ref, **TOL[torch.float32])


def test_patch_swaps_torchs_module_keeping_its_state():
    torch.manual_seed(4)
    head = nn.LinearCrossEntropyLoss(8, 5, bias=True, label_smoothing=0.1, weight=torch.rand(5) + 0.5)
    model = nn.ModuleDict({"body": nn.Linear(8, 8), "head": head})
    x, t = torch.randn(10, 8), torch.randint(0, 5, (10,))
    ref = head(model["body"](x), t)
    fast = fnn.patch(model)
    assert type(fast["head"]) is fnn.LinearCrossEntropyLoss and type(model["head"]) is nn.LinearCrossEntropyLoss
    torch.testing.assert_close(fast["head"](fast["body"](x), t), ref, **TOL[torch.float32])
    assert list(fast.state_dict()) == list(model.state_dict())
    same = fnn.patch(model, inplace=True)
    assert same is model and type(model["head"]) is fnn.LinearCrossEntropyLoss
    assert model["head"].linear.weight is head.linear.weight


# ---- options: allow_retain_graph, chunking, acc_dtype -------------------------------------------------

def test_allow_retain_graph_is_honoured_like_torch():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 5, (9,), generator=g)
    for options, twice_ok in [(None, True), (nn.LinearCrossEntropyOptions(), False),
                              (nn.LinearCrossEntropyOptions(allow_retain_graph=True), True)]:
        for fn in (F.linear_cross_entropy, fnn.functional.linear_cross_entropy):
            x.grad = w.grad = None
            loss = fn(x, w, t, options=options)
            loss.backward(retain_graph=True)
            first = x.grad.clone()
            if twice_ok:
                loss.backward()
                torch.testing.assert_close(x.grad, 2 * first, **TOL[torch.float64])
            else:
                with pytest.raises(RuntimeError):
                    loss.backward()


def test_double_backward_raises_instead_of_returning_wrong_values():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (5,))
    for red in ("mean", "none"):
        loss = fnn.functional.linear_cross_entropy(x, w, t, reduction=red).sum()
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.grad(loss, x, create_graph=True)


def test_chunking_options_give_the_same_results_and_acc_dtype_is_checked():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(37, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(40, 8, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 40, (37,), generator=g)
    ref = F.linear_cross_entropy(x, w, t)
    rg = torch.autograd.grad(ref, (x, w))
    O = nn.LinearCrossEntropyOptions
    for options in [O(batch_chunk_size=1), O(batch_chunk_size=10, chunking_method=None),
                    O(chunking_method="aspect_ratio:2"), O(chunking_method=None), O(acc_policy="accurate"),
                    O(acc_dtype=torch.float64, allow_retain_graph=True)]:
        got = fnn.functional.linear_cross_entropy(x, w, t, options=options)
        torch.testing.assert_close(got, ref, **TOL[torch.float64])
        for a, r in zip(torch.autograd.grad(got, (x, w)), rg):
            torch.testing.assert_close(a, r, **TOL[torch.float64])
    with pytest.raises(ValueError, match="acc_dtype"):
        fnn.functional.linear_cross_entropy(x, w, t, options=O(acc_dtype=torch.float32))
    with pytest.raises(ValueError, match="batch_chunk_size"):
        fnn.functional.linear_cross_entropy(x, w, t, options=O(batch_chunk_size=3, chunking_method="aspect_ratio"))


# ---- the options beyond torch ---------------------------------------------------------------------

def _composition(x, w, b, t, cw, tw, cap, z, ls, reduction, ii, kdims):
    """The options beyond torch written out in float64 torch: logits (N, C, *kdims), soft
    cap, torch's cross_entropy rows, + z lse^2 on kept rows, times token weights; "mean"
    over torch's denominator."""
    c, h = w.shape[0], w.shape[-1]
    L = F.linear(x, w.reshape(-1, h), None if b is None else b.reshape(-1)).reshape(x.shape[0], c, *kdims)
    if cap:
        L = cap * torch.tanh(L / cap)
    lse = torch.logsumexp(L, 1)
    ce = F.cross_entropy(L, t, weight=cw, label_smoothing=ls, ignore_index=ii, reduction="none")
    kept = t != ii
    row = (ce + z * lse ** 2 * kept) * (1.0 if tw is None else tw)
    if reduction == "none":
        return row, lse
    if reduction == "sum":
        return row.sum(), lse
    return row.sum() / (kept.sum() if cw is None else cw[torch.where(kept, t, 0)][kept].sum()), lse


BEYOND = [dict(softcap=2.0), dict(lse_square_scale=1e-2), dict(token_weight=True), dict(return_lse=True),
          dict(softcap=5.0, lse_square_scale=1e-3, token_weight=True, return_lse=True)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("beyond", BEYOND, ids=["cap", "z", "tw", "lse", "all"])
def test_options_beyond_torch_match_a_float64_composition(dtype, beyond):
    cross = itertools.product([(), (2,)], [False, True], [0.0, 0.1], ["mean", "sum", "none"])
    for seed, (kdims, use_cw, ls, red) in enumerate(cross):
        g = torch.Generator().manual_seed(seed)
        x = 3 * torch.randn(17, 6, generator=g, dtype=torch.float64)
        w = torch.randn(5, *kdims, 6, generator=g, dtype=torch.float64)
        b = torch.randn(5, *kdims, generator=g, dtype=torch.float64)
        t = torch.randint(0, 5, (17, *kdims), generator=g)
        t.view(-1)[4] = -100
        cw = torch.rand(5, generator=g, dtype=torch.float64) + 0.5 if use_cw else None
        tw = torch.rand(t.shape, generator=g, dtype=torch.float64) if beyond.get("token_weight") else None
        cap, z = beyond.get("softcap"), beyond.get("lse_square_scale", 0.0)
        up = torch.randn(t.shape, generator=g, dtype=torch.float64) if red == "none" else torch.tensor(0.6)
        leaves = [a.clone().requires_grad_(True) for a in (x, w, b)]
        ref, ref_lse = _composition(*leaves, t, cw, tw, cap, z, ls, red, -100, kdims)
        rg = torch.autograd.grad(ref, leaves, up.to(torch.float64))
        leaves = [a.to(dtype).requires_grad_(True) for a in (x, w, b)]
        kw = dict(beyond, token_weight=None if tw is None else tw.to(dtype))
        out = fnn.functional.linear_cross_entropy(leaves[0], leaves[1], t, linear_bias=leaves[2],
                                                  weight=None if cw is None else cw.to(dtype), reduction=red,
                                                  label_smoothing=ls, **kw)
        loss, lse = out if beyond.get("return_lse") else (out, None)
        og = torch.autograd.grad(loss, leaves, up.to(dtype))
        what = f"{beyond} kdims={kdims} cw={use_cw} ls={ls} {red}"
        tol = TOL_F64_REF[dtype]
        torch.testing.assert_close(loss.double(), ref.detach(), **tol, msg=lambda m: f"loss {what}: {m}")
        for a, r, name in zip(og, rg, ("input", "linear_weight", "linear_bias")):
            torch.testing.assert_close(a.double(), r, **tol, msg=lambda m: f"{name} grad {what}: {m}")
        if lse is not None:
            assert lse.shape == t.shape and not lse.requires_grad
            torch.testing.assert_close(lse.double(), ref_lse.detach(), **tol, msg=lambda m: f"lse {what}: {m}")


def test_module_beyond_options_and_token_weight_in_forward():
    g = torch.Generator().manual_seed(7)
    m = fnn.LinearCrossEntropyLoss(6, 5, bias=True, dtype=torch.float64, softcap=3.0, lse_square_scale=1e-2,
                                   return_lse=True)
    x, t = torch.randn(11, 6, generator=g, dtype=torch.float64), torch.randint(0, 5, (11,), generator=g)
    tw = torch.rand(11, generator=g, dtype=torch.float64)
    loss, lse = m(x, t, token_weight=tw)
    ref, ref_lse = _composition(x, m.linear.weight, m.linear.bias, t, None, tw, 3.0, 1e-2, 0.0, "mean", -100, ())
    torch.testing.assert_close(loss, ref, **TOL[torch.float64])
    torch.testing.assert_close(lse, ref_lse, **TOL[torch.float64])


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck(reduction):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (7, 2), generator=g)
    t[1, 0] = -100
    cw, tw = torch.rand(3, generator=g, dtype=torch.float64) + 0.5, torch.rand(7, 2, generator=g, dtype=torch.float64)
    for kw in ({}, dict(softcap=2.0, lse_square_scale=0.05, token_weight=tw)):
        fn = lambda x, w, b: fnn.functional.linear_cross_entropy(  # noqa: E731
            x, w, t, linear_bias=b, weight=cw, reduction=reduction, label_smoothing=0.2, **kw)
        assert torch.autograd.gradcheck(fn, (x, w, b))


def test_numba_backend_gives_the_same_results():
    if "numba" not in fastnn.available_backends():
        pytest.skip("numba backend unavailable")
    g = torch.Generator().manual_seed(9)
    x = torch.randn(21, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 5, (21,), generator=g)
    kw = dict(weight=torch.rand(5, dtype=torch.float64), label_smoothing=0.1, softcap=4.0, lse_square_scale=1e-3)
    outs = []
    for be in ("cpp", "numba"):
        with fastnn.use_backend(be):
            loss = fnn.functional.linear_cross_entropy(x, w, t, **kw)
            outs.append([loss, *torch.autograd.grad(loss, (x, w))])
    for a, r in zip(*outs):
        torch.testing.assert_close(a, r, **TOL[torch.float64])


@pytest.mark.parametrize("call, err, match", [
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x[None], w, t), ValueError, "dimensionality 1 or 2"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w[:, :3], t), ValueError, "linear_weight has shape"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t, linear_bias=torch.zeros(4)), ValueError,
     "linear_bias has shape"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x[0], w[:, None], t[0]), ValueError, "batched input"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t, weight=torch.ones(4)), ValueError,
     "weight has shape"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t, reduction="batchmean"), ValueError, "reduction"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t, label_smoothing=1.5), ValueError,
     "label_smoothing"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t[:3]), ValueError, "target has shape"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, torch.rand(6, 5), ignore_index=-100), ValueError,
     "probability targets"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, torch.rand(6, 5), softcap=2.0), ValueError,
     "class-index targets"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t, softcap=0.0), ValueError, "softcap"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t, lse_square_scale=-1.0), ValueError,
     "lse_square_scale"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t, token_weight=torch.ones(5)), ValueError,
     "token_weight has shape"),
    (lambda x, w, t: fnn.functional.linear_cross_entropy(x, w, t + 10), ValueError, "class index"),
    (lambda x, w, t: fnn.LinearCrossEntropyLoss(4, 5, softcap=-2.0), ValueError, "softcap"),
])
def test_errors(call, err, match):
    x, w, t = torch.randn(6, 4), torch.randn(5, 4), torch.randint(0, 5, (6,))
    with pytest.raises(err, match=match):
        call(x, w, t)


# ---- torch.compile ----------------------------------------------------------------------------------

def _compiled_matches_eager(backend):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(10)
    m = fnn.LinearCrossEntropyLoss(6, 7, bias=True, dtype=torch.float64, label_smoothing=0.1,
                                   weight=torch.rand(7, generator=g, dtype=torch.float64),
                                   options=nn.LinearCrossEntropyOptions(batch_chunk_size=4))
    x = torch.randn(13, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 7, (13,), generator=g)
    tw = torch.rand(13, generator=g, dtype=torch.float64)

    def step(x, t, tw):
        a = m(x, t)
        b, lse = fnn.functional.linear_cross_entropy(x, m.linear.weight, t, linear_bias=m.linear.bias,
                                                     reduction="none", softcap=3.0, lse_square_scale=1e-2,
                                                     token_weight=tw, return_lse=True)
        return a + (b * torch.linspace(0, 1, 13, dtype=b.dtype)).sum(), lse

    ref, ref_lse = step(x, t, tw)
    rg = torch.autograd.grad(ref, (x, m.linear.weight, m.linear.bias))
    got, lse = torch.compile(step, fullgraph=True, backend=backend)(x, t, tw)  # fullgraph: a graph break raises
    og = torch.autograd.grad(got, (x, m.linear.weight, m.linear.bias))
    torch.testing.assert_close(got, ref, **TOL[torch.float64])
    torch.testing.assert_close(lse, ref_lse, **TOL[torch.float64])
    for a, r in zip(og, rg):
        torch.testing.assert_close(a, r, **TOL[torch.float64])


def test_compile_fullgraph_aot_eager():
    _compiled_matches_eager("aot_eager")


@pytest.mark.slow
def test_compile_fullgraph_inductor():
    _compiled_matches_eager("inductor")
