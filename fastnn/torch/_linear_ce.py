"""Linear + cross-entropy without the (N, classes) logits: torch 2.13's
``F.linear_cross_entropy`` / ``nn.LinearCrossEntropyLoss`` on fastnn.dense_cross_entropy,
plus options torch does not have.

One route for every call, eager and under torch.compile: the torch.library custom ops

    fastnn::linear_ce(x, w, b?, target, class_weight?, token_weight?, reduction, ignore_index,
                      label_smoothing, softcap, lse_square_scale, chunk, need_grads, want_lse,
                      keep_grads) -> (loss, lse, dx, dw, db)
    fastnn::linear_ce_backward(grad, x, w, b?, target, class_weight?, token_weight?,
                      ignore_index, label_smoothing, softcap, lse_square_scale, chunk) -> (dx, dw, db)

x (N, H), w (C, H), target (N,) int64 on one device; outputs C-contiguous, (0,) where not
wanted. The kernel is a large chunked pass, so the custom op's dispatch cost does not
matter, and the compiler sees one opaque op with a fake implementation (no graph break).

For "mean" / "sum" the forward computes all three gradients in the same pass and backward
only scales them by the upstream scalar: in place (keep_grads False, torch's
``allow_retain_graph=False``: no extra gradient-sized buffer, and a second backward
raises) or into new tensors (keep_grads True). For "none" backward runs the kernel again
with the per-row upstream gradients. Backward is once-differentiable (as torch's chunked
path: no double backward, no forward-mode AD).
"""
import math
import warnings
from typing import Optional, Union

import torch
from torch import Tensor, nn
from torch.nn import LinearCrossEntropyOptions

import fastnn
from fastnn import _checks as C

from . import _autocast
from ._ops import _dtensor_route, scope, to_array, to_tensor

_F = "fastnn.torch.linear_cross_entropy"
_REDUCTIONS = ("mean", "sum", "none")


# ---- the custom ops ---------------------------------------------------------------------------

def _kernel(x, w, b, target, class_weight, token_weight, reduction, ignore_index, label_smoothing, softcap, z,
            chunk, need_grads, want_lse, grad=None):
    with scope(x):
        out = fastnn.dense_cross_entropy(
            to_array(x), to_array(w), to_array(b), to_array(target), reduction=reduction, ignore_index=ignore_index,
            label_smoothing=label_smoothing, class_weight=to_array(class_weight), row_weight=to_array(token_weight),
            softcap=softcap if softcap > 0 else None, lse_square_scale=z, return_lse=want_lse,
            chunk_size=chunk if chunk > 0 else None, need_grads=need_grads,
            grad=None if grad is None else to_array(grad))
    loss, grads = out[0], out[1]
    lse = out[2] if want_lse else None
    return to_tensor(loss), (None if lse is None else to_tensor(lse)), tuple(to_tensor(g) for g in grads)


def _empty(like, shape):
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _out(t, like):
    return _empty(like, (0,)) if t is None else t.contiguous()


@torch.library.custom_op("fastnn::linear_ce", mutates_args=())
def linear_ce_op(x: Tensor, w: Tensor, b: Optional[Tensor], target: Tensor, class_weight: Optional[Tensor],
                 token_weight: Optional[Tensor], reduction: str, ignore_index: int, label_smoothing: float,
                 softcap: float, lse_square_scale: float, chunk: int, need_grads: bool, want_lse: bool,
                 keep_grads: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads_now = need_grads and reduction != "none"
    loss, lse, (dx, dw, db) = _kernel(x, w, b, target, class_weight, token_weight, reduction, ignore_index,
                                      label_smoothing, softcap, lse_square_scale, chunk, grads_now, want_lse)
    return (loss.contiguous(), _out(lse, x), _out(dx, x), _out(dw, x),
            _out(db if b is not None else None, x))


@linear_ce_op.register_fake
def _(x, w, b, target, class_weight, token_weight, reduction, ignore_index, label_smoothing, softcap,
      lse_square_scale, chunk, need_grads, want_lse, keep_grads):
    grads_now = need_grads and reduction != "none"
    return (_empty(x, target.shape if reduction == "none" else ()), _empty(x, target.shape if want_lse else (0,)),
            _empty(x, x.shape if grads_now else (0,)), _empty(x, w.shape if grads_now else (0,)),
            _empty(x, w.shape[:1] if grads_now and b is not None else (0,)))


@torch.library.custom_op("fastnn::linear_ce_backward", mutates_args=())
def linear_ce_backward_op(grad: Tensor, x: Tensor, w: Tensor, b: Optional[Tensor], target: Tensor,
                          class_weight: Optional[Tensor], token_weight: Optional[Tensor], ignore_index: int,
                          label_smoothing: float, softcap: float, lse_square_scale: float,
                          chunk: int) -> tuple[Tensor, Tensor, Tensor]:
    _, _, (dx, dw, db) = _kernel(x, w, b, target, class_weight, token_weight, "none", ignore_index, label_smoothing,
                                 softcap, lse_square_scale, chunk, True, False, grad=grad.contiguous())
    return dx.contiguous(), dw.contiguous(), _out(db if b is not None else None, x)


@linear_ce_backward_op.register_fake
def _(grad, x, w, b, target, class_weight, token_weight, ignore_index, label_smoothing, softcap, lse_square_scale,
      chunk):
    return _empty(x, x.shape), _empty(x, w.shape), _empty(x, w.shape[:1] if b is not None else (0,))


def _setup(ctx, inputs, output):
    (x, w, b, target, class_weight, token_weight, reduction, ignore_index, ls, softcap, z, chunk, need_grads,
     want_lse, keep_grads) = inputs
    loss, lse, dx, dw, db = output
    ctx.mark_non_differentiable(lse, dx, dw, db)
    ctx.reduction, ctx.keep_grads, ctx.has_b = reduction, keep_grads, b is not None
    if reduction == "none":
        ctx.args = (ignore_index, ls, softcap, z, chunk)
        ctx.save_for_backward(x, w, b, target, class_weight, token_weight)
    else:
        ctx.save_for_backward(dx, dw, db)


def _scaled(g, grad, in_place):
    if g is None or g.numel() == 0:
        return None
    return g.mul_(grad) if in_place else g * grad


def _backward(ctx, grad, _lse, _dx, _dw, _db):
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        # create_graph=True: the gradients computed in forward are constants here, so a
        # graph through them would give wrong higher-order derivatives
        raise RuntimeError(f"{_F}: double backward (create_graph=True, higher-order gradients) is not supported; "
                           f"expected a plain backward, as torch's chunked linear_cross_entropy")
    need = ctx.needs_input_grad
    if ctx.reduction == "none":
        x, w, b, target, class_weight, token_weight = ctx.saved_tensors
        dx, dw, db = linear_ce_backward_op(grad, x, w, b, target, class_weight, token_weight, *ctx.args)
    else:
        # in place unless kept: a second backward over these tensors then fails autograd's
        # saved-tensor version check (torch's allow_retain_graph=False contract)
        in_place = not ctx.keep_grads
        dx, dw, db = (_scaled(g, grad, in_place) if n else None for g, n in zip(ctx.saved_tensors, need[:3]))
    return ((dx if need[0] else None), (dw if need[1] else None), (db if need[2] and ctx.has_b else None),
            None, None, None, None, None, None, None, None, None, None, None, None)


linear_ce_op.register_autograd(_backward, setup_context=_setup)


# ---- torch's arguments -> the op's ----------------------------------------------------------------

_AUTO_ROWS = 512


def _chunk_of(options, n, h, c, dtype):
    """Rows per chunk from a LinearCrossEntropyOptions (0: fastnn's default), following
    torch's own resolution of batch_chunk_size and chunking_method."""
    if options is None:
        return 0
    acc = getattr(options, "acc_dtype", None)
    if acc is not None and acc != dtype:
        raise ValueError(f"{_F}: options.acc_dtype={acc} is not available: fastnn accumulates in the input "
                         f"dtype ({dtype}); expected None or {dtype}")
    size, method = options.batch_chunk_size, options.chunking_method
    if method == "auto":
        # an options instance asks for torch's memory-saving path: the kernel's smallest
        # efficient chunk (512 rows: below it each chunk's three products re-read W too
        # often); fastnn's default (about 256 MiB of logits, at least 512 rows) is the
        # same at large vocabularies and larger, for speed, at small ones
        return min(size, n) if size is not None else min(n, _AUTO_ROWS)
    if method is None:
        return min(size, n) if size is not None else n
    factor = int(method.split(":", 1)[1]) if ":" in method else 1
    target = -(-n // max(1, -(-c // max(1, h))))
    rows = min((1 << (target - 1).bit_length()) // factor, n) if n else 0
    if size is not None and size != rows:
        raise ValueError(f"{_F}: options.batch_chunk_size (={size}) and chunking_method ({method!r}) give different "
                         f"chunk sizes ({size} vs {rows}); expected only one of them")
    return max(rows, 1)


def _float_dtype(*tensors):
    """(the dtype the kernel computes in, the result's dtype). Without autocast both are the
    tensors' promoted dtype (float16 / bfloat16 natively: 16-bit operands, float32
    accumulation, the loss rounded once). Under torch.autocast, as torch's
    ``cross_entropy(linear(...))``: the kernel runs in the autocast dtype and the loss is
    float32 (fastnn/torch/_autocast.py)."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"{_F}: dtype {dtype} is not supported; expected floating-point input and linear_weight")
    ad = _autocast.active(tensors[0])
    if ad is not None and dtype is not torch.float64:
        return ad, torch.float32
    return dtype, dtype


def linear_cross_entropy(input: Tensor, linear_weight: Tensor, target: Tensor, *, linear_bias: Optional[Tensor] = None,
                         weight: Optional[Tensor] = None, reduction: str = "mean", ignore_index: Optional[int] = None,
                         label_smoothing: float = 0.0, options: Optional[nn.LinearCrossEntropyOptions] = None,
                         softcap: Optional[float] = None,
                         lse_square_scale: float = 0.0, token_weight: Optional[Tensor] = None,
                         return_lse: bool = False) -> Union[Tensor, tuple[Tensor, Tensor]]:
    """torch.nn.functional.linear_cross_entropy (torch 2.13) on fastnn's fused kernel.

    ``cross_entropy(linear(input, linear_weight, linear_bias), target, weight=weight,
    reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing)``,
    computed in chunks of rows that never hold the (N, classes) logits, forward and all
    gradients in one pass.

    Parameters
    ----------
    input : Tensor, shape (in_features,) or (N, in_features)
    linear_weight : Tensor, shape (C, in_features) or (C, d_1, ..., d_K, in_features)
        The second form is a K-dimensional loss (batched input only).
    target : Tensor
        Class indices, shape (), (N,) or (N, d_1, ..., d_K); or class probabilities of the
        logits' shape ((C,), (N, C) or (N, C, d_1, ..., d_K)), which are computed by
        fastnn's cross_entropy on the logits (a probability target is itself as large as
        the logits, so nothing is saved by fusing).
    linear_bias : Tensor, shape (C,) or (C, d_1, ..., d_K), optional
    weight : Tensor, shape (C,), optional
        Class weights; "mean" is then the weighted mean, as torch's.
    reduction : {"mean", "sum", "none"}
    ignore_index : int, optional
        None means torch's default (-100 for class indices; probability targets allow
        only None).
    label_smoothing : float in [0, 1]
    options : torch.nn.LinearCrossEntropyOptions, optional
        fastnn always chunks; what each field means here: ``batch_chunk_size`` /
        ``chunking_method``: rows per chunk, resolved as torch resolves them ("auto": 512 rows;
        options=None: fastnn's default chunk, about 256 MiB of logits and at least 512
        rows; ``chunking_method=None`` without a size: one chunk). ``allow_retain_graph``: False
        (torch's default for an options instance) scales the gradients precomputed by
        forward in place, so a second backward through the same graph raises; True, and
        options=None (torch's reference path, which allows it), keep them (one extra
        gradient-sized tensor per backward); under torch.compile they are always kept, as
        torch does. ``acc_dtype``: None or the input dtype (fastnn accumulates in it;
        other values raise ValueError). ``acc_policy``: accepted, no effect (fastnn has
        one policy: dW accumulates across chunks in place, like torch's "compact").
    softcap : float > 0, optional
        Beyond torch (as the next three; all off by default, giving torch's loss when off;
        class-index targets only): the logits become ``softcap * tanh(logits / softcap)``
        before the softmax (logit soft-capping).
    lse_square_scale : float >= 0
        Adds the z-loss ``lse_square_scale * lse**2`` to the loss of each row not ignored
        (lse: the row's log-sum-exp).
    token_weight : Tensor, target's shape, optional
        A weight per loss element, multiplying that element's loss (class weight,
        smoothing and z-loss included). "mean" keeps torch's denominator (the count, or
        the class-weight sum, of the rows not ignored), so all-ones token weights change
        nothing. Not differentiated.
    return_lse : bool
        Also return each row's log-sum-exp (of the soft-capped logits when softcap is
        set), target's shape, ignored rows included, not differentiated.

    Returns
    -------
    Tensor or (Tensor, Tensor)
        The loss, () for "mean" / "sum", target's shape for "none"; ``(loss, lse)`` with
        return_lse=True, in the input dtype: float32, float64, float16 and bfloat16 run
        on the kernel (16-bit natively, float32 accumulation; the class weight is
        converted to the input dtype for the call). Under torch.autocast, as torch's:
        input, weight and bias in the autocast dtype, the loss (and lse) float32. Backward is once-differentiable (no double backward
        or forward-mode AD, as torch's chunked path).

    Raises
    ------
    ValueError, TypeError
        Naming the argument (torch raises RuntimeError for the shape checks it makes).

    Examples
    --------
    >>> import torch, fastnn.torch as fnn
    >>> x, w = torch.randn(8, 64, requires_grad=True), torch.randn(1000, 64, requires_grad=True)
    >>> loss = fnn.functional.linear_cross_entropy(x, w, torch.randint(0, 1000, (8,)))
    >>> loss.backward()
    """
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"{_F}: reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    if input.dim() not in (1, 2):
        raise ValueError(f"{_F}: input must have dimensionality 1 or 2, got shape {tuple(input.shape)}")
    if linear_weight.dim() < 2:
        raise ValueError(f"{_F}: linear_weight must have dimensionality at least 2, got shape "
                         f"{tuple(linear_weight.shape)}")
    h = input.shape[-1]
    if linear_weight.shape[-1] != h:
        raise ValueError(f"{_F}: linear_weight has shape {tuple(linear_weight.shape)} but input has {h} features; "
                         f"expected (C, ..., {h})")
    c, kdims = linear_weight.shape[0], tuple(linear_weight.shape[1:-1])
    if linear_bias is not None and tuple(linear_bias.shape) != (c, *kdims):
        raise ValueError(f"{_F}: linear_bias has shape {tuple(linear_bias.shape)}; expected {(c, *kdims)}")
    if kdims and input.dim() == 1:
        raise ValueError(f"{_F}: a K-dimensional loss (linear_weight {tuple(linear_weight.shape)}) needs batched "
                         f"input (N, {h}); got shape {tuple(input.shape)}")
    if weight is not None and tuple(weight.shape) != (c,):
        raise ValueError(f"{_F}: weight has shape {tuple(weight.shape)}; expected ({c},), one weight per class")
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"{_F}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    beyond = softcap is not None or lse_square_scale != 0 or token_weight is not None or return_lse
    logits_shape = (*input.shape[:-1], c, *kdims)
    if tuple(target.shape) == logits_shape and target.is_floating_point():
        if ignore_index is not None:
            raise ValueError(f"{_F}: ignore_index ({ignore_index}) cannot be given with probability targets")
        if beyond:
            raise ValueError(f"{_F}: softcap, lse_square_scale, token_weight and return_lse need class-index "
                             f"targets; got probability targets of shape {tuple(target.shape)}")
        return _probability_targets(input, linear_weight, linear_bias, target, weight, reduction, ls, logits_shape)
    ii = -100 if ignore_index is None else ignore_index
    if isinstance(ii, bool) or not isinstance(ii, int):
        raise TypeError(f"{_F}: ignore_index must be an int or None, got {ignore_index!r}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{_F}: target has dtype {target.dtype} and shape {tuple(target.shape)}; expected int64 "
                        f"class indices of shape {(*input.shape[:-1], *kdims)}, or class probabilities of the "
                        f"logits' shape {logits_shape}")
    rows_shape = (*input.shape[:-1], *kdims)
    if tuple(target.shape) != rows_shape:
        raise ValueError(f"{_F}: target has shape {tuple(target.shape)}; expected {rows_shape} (class indices) or "
                         f"{logits_shape} (class probabilities)")
    if token_weight is not None and tuple(token_weight.shape) != rows_shape:
        raise ValueError(f"{_F}: token_weight has shape {tuple(token_weight.shape)}; expected {rows_shape}, "
                         f"target's shape")
    cap, z = C.ce_scalars(_F, softcap, lse_square_scale)

    dtype, out_dtype = _float_dtype(input, linear_weight, linear_bias)
    x = input.to(dtype).reshape(-1, h).contiguous()
    w = linear_weight.to(dtype)
    b = None if linear_bias is None else linear_bias.to(dtype)
    cw = None if weight is None else weight.detach().to(dtype).contiguous()
    tw = None if token_weight is None else token_weight.detach().to(dtype)
    t = target.long() if target.dtype not in (torch.int32, torch.int64) else target
    n = x.shape[0]
    chunk = _chunk_of(options, n, h, c, dtype)
    keep = options is None or bool(options.allow_retain_graph) or torch.compiler.is_compiling()
    need = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad))
    common = (cw, reduction, ii, ls, cap, z, chunk, need, bool(return_lse), keep)

    if not kdims:
        loss, lse, *_ = linear_ce_op(x, w.contiguous(), None if b is None else b.contiguous(), t.reshape(-1),
                                     cw, None if tw is None else tw.reshape(-1).contiguous(), *common[1:])
        if reduction == "none":
            loss = loss.reshape(target.shape)
        return _result(loss, lse.reshape(target.shape) if return_lse else None, out_dtype)

    # K-dimensional loss: position p of (d_1, ..., d_K) is its own head w[:, p] over the
    # same x; each runs the fused kernel ("sum" or "none"), "mean" divides by torch's
    # denominator over all positions
    p = math.prod(kdims)
    wp = w.reshape(c, p, h)
    bp = None if b is None else b.reshape(c, p)
    tp, twp = t.reshape(n, p), (None if tw is None else tw.reshape(n, p))
    red = "none" if reduction == "none" else "sum"
    losses, lses = [], []
    for i in range(p):
        out = linear_ce_op(x, wp[:, i].contiguous(), None if bp is None else bp[:, i].contiguous(),
                           tp[:, i].contiguous(), cw, None if twp is None else twp[:, i].contiguous(), red,
                           *common[2:])
        losses.append(out[0])
        lses.append(out[1])
    lse = torch.stack(lses, 1).reshape(target.shape) if return_lse else None
    if reduction == "none":
        loss = torch.stack(losses, 1).reshape(target.shape)
    else:
        loss = torch.stack(losses).sum()
        if reduction == "mean":
            kept = t != ii
            denom = (kept.sum() if cw is None else torch.where(kept, cw[torch.where(kept, t, 0)], 0).sum())
            loss = loss / denom.to(dtype)
    return _result(loss, lse, out_dtype)


def _result(loss, lse, dtype):
    """loss, or (loss, lse) when lse is not None, in the result's dtype."""
    loss = loss.to(dtype)
    return loss if lse is None else (loss, lse.to(dtype))


def _probability_targets(input, linear_weight, linear_bias, target, weight, reduction, ls, logits_shape):
    """Class-probability targets: the logits are computed (the target is as large), then
    fastnn's cross_entropy with torch's class axis 1."""
    from . import functional as FF  # noqa: PLC0415 - functional imports this module

    dtype, out_dtype = _float_dtype(input, linear_weight, linear_bias)
    c, h = linear_weight.shape[0], linear_weight.shape[-1]
    w2 = linear_weight.to(dtype).reshape(-1, h)
    b2 = None if linear_bias is None else linear_bias.to(dtype).reshape(-1)
    logits = FF.linear(input.to(dtype), w2, b2).reshape(logits_shape)
    return FF.cross_entropy(logits, target.to(dtype), weight=None if weight is None else weight.to(dtype),
                            reduction=reduction, label_smoothing=ls).to(out_dtype)


# ---- the module ---------------------------------------------------------------------------------

class LinearCrossEntropyLoss(nn.LinearCrossEntropyLoss):
    """torch.nn.LinearCrossEntropyLoss (torch 2.13) on fastnn's fused kernel: the same
    constructor, defaults (bias=False, ignore_index=None, ...), attributes, ``linear``
    submodule (state_dict key ``linear.weight``, ``linear.bias``), repr and results;
    forward runs :func:`fastnn.torch.functional.linear_cross_entropy` (see it for what
    ``options`` means here).

    Beyond torch, keyword-only constructor options, off by default (the repr shows them
    only when on): ``softcap`` (logit soft-capping), ``lse_square_scale`` (z-loss),
    ``return_lse`` (forward returns ``(loss, lse)``); and forward's ``token_weight`` (a
    weight per loss element, target's shape).

    fastnn's earlier constructor, ``(in_features, num_classes, bias=True,
    ignore_index=-100, label_smoothing=0.0, reduction="mean", chunk_size=None)``, is
    :meth:`from_legacy_args` (deprecated); checkpoints saved by that class, with
    top-level ``weight`` / ``bias`` keys, load into this one (with a FutureWarning).

    Examples
    --------
    >>> import torch, fastnn.torch as fnn
    >>> head = fnn.LinearCrossEntropyLoss(64, 1000, bias=True)
    >>> loss = head(torch.randn(8, 64), torch.randint(0, 1000, (8,)))
    """

    softcap: Optional[float] = None
    lse_square_scale: float = 0.0
    return_lse: bool = False

    def __init__(self, in_features: int, num_classes: int, *, out_features: tuple = (), bias: bool = False,
                 device=None, dtype=None, reduction: str = "mean", weight: Optional[Tensor] = None,
                 ignore_index: Optional[int] = None, label_smoothing: float = 0.0,
                 options: Optional[LinearCrossEntropyOptions] = None,
                 softcap: Optional[float] = None, lse_square_scale: float = 0.0, return_lse: bool = False) -> None:
        super().__init__(in_features, num_classes, out_features=out_features, bias=bias, device=device, dtype=dtype,
                         reduction=reduction, weight=weight, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, options=options)
        C.ce_scalars("LinearCrossEntropyLoss", softcap, lse_square_scale)
        self.softcap, self.lse_square_scale, self.return_lse = softcap, float(lse_square_scale), bool(return_lse)

    @classmethod
    def from_legacy_args(cls, in_features: int, num_classes: int, bias: bool = True, ignore_index: int = -100,
                         label_smoothing: float = 0.0, reduction: str = "mean", chunk_size: Optional[int] = None,
                         device=None, dtype=None) -> "LinearCrossEntropyLoss":
        """Deprecated: the constructor of fastnn's class before it followed torch's (bias
        on by default, ``chunk_size`` rows per chunk). Use the torch-style constructor:
        ``LinearCrossEntropyLoss(in_features, num_classes, bias=True, options=
        torch.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk_size))``."""
        warnings.warn("LinearCrossEntropyLoss.from_legacy_args is deprecated; use torch's constructor arguments "
                      "(bias=True, options=torch.nn.LinearCrossEntropyOptions(batch_chunk_size=..., "
                      "allow_retain_graph=True))", FutureWarning, stacklevel=2)
        options = None
        if chunk_size is not None:
            options = LinearCrossEntropyOptions(batch_chunk_size=chunk_size, allow_retain_graph=True)
        return cls(in_features, num_classes, bias=bias, device=device, dtype=dtype, reduction=reduction,
                   ignore_index=ignore_index, label_smoothing=label_smoothing, options=options)

    def forward(self, input: Tensor, target: Tensor, token_weight: Optional[Tensor] = None):
        """The loss (and the per-row lse with return_lse=True) of input (N, in_features)
        or (in_features,) against target; token_weight: see linear_cross_entropy."""
        lin = self.linear
        if _dtensor_route(lin.weight):
            return self._vocab_parallel(input, target, token_weight)
        w = lin.weight.reshape((self.num_classes, *self.out_features, lin.in_features))
        b = None if lin.bias is None else lin.bias.reshape((self.num_classes, *self.out_features))
        return linear_cross_entropy(input, w, target, linear_bias=b, weight=self.weight, reduction=self.reduction,
                                    ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
                                    options=self.options, softcap=self.softcap,
                                    lse_square_scale=self.lse_square_scale, token_weight=token_weight,
                                    return_lse=self.return_lse)

    def _vocab_parallel(self, input: Tensor, target: Tensor, token_weight: Optional[Tensor]) -> Tensor:
        """The loss with ``linear`` sharded on the classes (fastnn.torch.distributed.
        VocabParallel): fastnn.torch.distributed.vocab_parallel_cross_entropy, a cross-rank
        log-sum-exp over each rank's fused kernel. It serves the plain loss: class-index
        targets, no class weights, label smoothing, K-dimensional heads or options beyond
        torch (each needs a quantity summed over every class; they raise here)."""
        from ._distributed import vocab_parallel_cross_entropy  # noqa: PLC0415 - imports torch.distributed

        unsupported = [name for name, on in (
            ("weight", self.weight is not None), ("label_smoothing", self.label_smoothing != 0),
            ("out_features", bool(self.out_features)), ("softcap", self.softcap is not None),
            ("lse_square_scale", self.lse_square_scale != 0), ("return_lse", self.return_lse),
            ("token_weight", token_weight is not None)) if on]
        if unsupported:
            raise ValueError(f"LinearCrossEntropyLoss: {', '.join(unsupported)} not supported with a vocab-sharded "
                             f"linear (VocabParallel); expected the plain loss")
        if input.dim() not in (1, 2) or tuple(target.shape) != tuple(input.shape[:-1]):
            raise ValueError(f"LinearCrossEntropyLoss: with a vocab-sharded linear, input must be (N, "
                             f"{self.in_features}) or ({self.in_features},) and target its class indices; got input "
                             f"{tuple(input.shape)}, target {tuple(target.shape)}")
        ii = -100 if self.ignore_index is None else self.ignore_index
        chunk = None if self.options is None else self.options.batch_chunk_size
        loss = vocab_parallel_cross_entropy(input.reshape(-1, input.shape[-1]), self.linear.weight, self.linear.bias,
                                            target.reshape(-1), ignore_index=ii, reduction=self.reduction,
                                            chunk_size=chunk if isinstance(chunk, int) else None)
        return loss.reshape(target.shape) if self.reduction == "none" else loss

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.softcap is not None:
            s += f", softcap={self.softcap}"
        if self.lse_square_scale:
            s += f", lse_square_scale={self.lse_square_scale}"
        if self.return_lse:
            s += ", return_lse=True"
        return s

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # fastnn's earlier class kept the projection as top-level "weight" (classes, in)
        # and "bias"; torch's layout has them under "linear." ("weight" is then the 1-D
        # class weight buffer, so a 2-D "weight" can only be the old projection)
        old = state_dict.get(prefix + "weight")
        if old is not None and old.dim() == 2 and prefix + "linear.weight" not in state_dict:
            warnings.warn("LinearCrossEntropyLoss: loading a checkpoint of fastnn's earlier layout (top-level "
                          "'weight' / 'bias'); they load as 'linear.weight' / 'linear.bias'. Save it again to "
                          "update it.", FutureWarning, stacklevel=3)
            state_dict[prefix + "linear.weight"] = state_dict.pop(prefix + "weight")
            if prefix + "bias" in state_dict:
                state_dict[prefix + "linear.bias"] = state_dict.pop(prefix + "bias")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
