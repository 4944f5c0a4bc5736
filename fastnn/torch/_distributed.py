"""fastnn.torch inside torch.distributed: DTensor sharding rules and vocab-parallel cross-entropy.

DTensor (tensor parallel: ColwiseParallel, RowwiseParallel, SequenceParallel)
    A call whose tensors are DTensors takes the torch.library custom-op route
    (fastnn::dense, fastnn::activation, fastnn::loss and their backward ops; the hook is
    _ops._dtensor_route). Importing this module registers, for each of those ops, the
    placements it can run on without communication (register_sharding). DTensor then
    picks, per mesh dimension, the cheapest listed strategy, redistributes the inputs to
    it (nothing when the inputs already match), runs the op on the local shards and wraps
    the results with the strategy's output placements. Any other placement is therefore
    still correct: it is redistributed (all-gathered) to one of the strategies first.

    Strategies (single mesh dimension; R = Replicate, S(d) = Shard(d), P = Partial sum;
    x (..., in), w (out, in) as nn.Linear's, d any batch dimension, -1 the last):

    op               outputs              inputs                          plan it serves
    dense            y, z: R              x R, w R, b R                   -
                     y, z: S(d)           x S(d), w R, b R                data / sequence parallel
                     y, z: S(-1)          x R, w S(0), b S(0)             ColwiseParallel
                     y: P (linear only)   x S(-1), w S(1), b P            RowwiseParallel
    dense_backward   the transposes of the four: dx, dw, db = (S(d), P, P), (P, S(0), S(0)),
                     (S(-1), S(1), R); a result not needed is a (0,) placeholder, R
    activation(+bw)  y: S(d) for x S(d), every d (softmax rows: not the last); R
    loss(+bw)        reduction "none": out S(d) for pred, target S(d), d a batch
                     dimension (not the class axis); "sum": out P; "mean" and class
                     weights / pos_weight: R (all-gathered first: a mean over uneven
                     shards is not the mean of the shards' means)

    The row-parallel forward is offered for the identity activation only: an activation
    cannot be applied to a partial sum, so a RowwiseParallel Linear with an activation
    gathers its input (correct, at an all-gather's cost).

Vocab-parallel cross-entropy: vocab_parallel_cross_entropy below.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_module, distribute_tensor
from torch.distributed.tensor._op_schema import RuntimeSchemaInfo
from torch.distributed.tensor.experimental import register_sharding
from torch.distributed.tensor.parallel import ParallelStyle

from . import _ops

R = Replicate()
_ROW_ACTIVATIONS = ("softmax", "log_softmax")


def _keeps_z(activation: str, params: str) -> bool:
    return _ops._dense_prepared(activation, _ops.decode(params)).keeps_z


def _batch_dims(spec) -> range:
    return range(spec.ndim - 1)


@register_sharding(torch.ops.fastnn.dense.default)
def _dense_rule(x, w, b, activation, params):
    keeps_z = _keeps_z(activation, params)
    last = x.ndim - 1
    bias = None if b is None else R
    out = [([R, R], [R, R, bias, None, None])]
    for d in _batch_dims(x):
        out.append(([Shard(d), Shard(d) if keeps_z else R], [Shard(d), R, bias, None, None]))
    out.append(([Shard(last), Shard(last) if keeps_z else R], [R, Shard(0), None if b is None else Shard(0), None,
                                                                  None]))
    if activation == "linear" and not keeps_z:
        out.append(([Partial(), R], [Shard(last), Shard(1), None if b is None else Partial(), None, None]))
    return out


@register_sharding(torch.ops.fastnn.dense_backward.default)
def _dense_backward_rule(dy, x, w, y, z, activation, params, need_dx, need_dw, need_db):
    def res(dx, dw, db):
        return [dx if need_dx else R, dw if need_dw else R, db if need_db else R]

    def ins(pdy, px, pw):  # y and z have dy's shape and placement
        return [pdy, px, pw, None if y is None else pdy, None if z is None else pdy, None, None, None, None, None]

    last = x.ndim - 1
    out = [(res(R, R, R), ins(R, R, R))]
    for d in _batch_dims(x):
        out.append((res(Shard(d), Partial(), Partial()), ins(Shard(d), Shard(d), R)))
    out.append((res(Partial(), Shard(0), Shard(0)), ins(Shard(last), R, Shard(0))))
    if y is None and z is None:  # the identity activation: the row-parallel transpose
        out.append((res(Shard(last), Shard(1), R), ins(R, Shard(last), Shard(1))))
    return out


def _act_dims(x, name):
    return range(x.ndim - 1) if name in _ROW_ACTIVATIONS else range(x.ndim)


@register_sharding(torch.ops.fastnn.activation.default)
def _activation_rule(x, name, params):
    return [([R], [R, None, None])] + [([Shard(d)], [Shard(d), None, None]) for d in _act_dims(x, name)]


@register_sharding(torch.ops.fastnn.activation_backward.default)
def _activation_backward_rule(dy, src, name, params):
    return ([([R], [R, R, None, None])] +
            [([Shard(d)], [Shard(d), Shard(d), None, None]) for d in _act_dims(dy, name)])


def _loss_dims(pred, target, weight, pos_weight, reduction):
    """The batch dimensions a loss may stay sharded on (none where it must be gathered)."""
    if weight is not None or pos_weight is not None or reduction not in ("none", "sum"):
        return range(0)
    return range(target.ndim if target.ndim < pred.ndim else pred.ndim)


@register_sharding(torch.ops.fastnn.loss.default)
def _loss_rule(pred, target, weight, pos_weight, name, reduction, params):
    opt = [None if weight is None else R, None if pos_weight is None else R]
    tail = [None, None, None]
    out = [([R], [R, R] + opt + tail)]
    for d in _loss_dims(pred, target, weight, pos_weight, reduction):
        out.append(([Shard(d) if reduction == "none" else Partial()], [Shard(d), Shard(d)] + opt + tail))
    return out


@register_sharding(torch.ops.fastnn.loss_backward.default)
def _loss_backward_rule(grad, pred, target, weight, pos_weight, name, reduction, params, need_target_grad):
    opt = [None if weight is None else R, None if pos_weight is None else R]
    tail = [None, None, None, None]
    out = [([R, R], [R, R, R] + opt + tail)]
    for d in _loss_dims(pred, target, weight, pos_weight, reduction):
        g = Shard(d) if reduction == "none" else R
        out.append(([Shard(d), Shard(d) if need_target_grad else R], [g, Shard(d), Shard(d)] + opt + tail))
    return out


def _key_all_static_args() -> None:
    """register_sharding keys DTensor's strategy cache on int arguments only; these rules
    depend on the strings (activation, reduction, params), the flags and which optional
    tensors are None, so every argument from the first one that is not a required tensor
    joins the key (else a strategy computed for one activation would serve another)."""
    prop = DTensor._op_dispatcher.sharding_propagator
    for op in (torch.ops.fastnn.dense.default, torch.ops.fastnn.dense_backward.default,
               torch.ops.fastnn.activation.default, torch.ops.fastnn.activation_backward.default,
               torch.ops.fastnn.loss.default, torch.ops.fastnn.loss_backward.default):
        args = op._schema.arguments
        first = next(i for i, a in enumerate(args) if not isinstance(a.type, torch.TensorType))
        prop.op_to_schema_info[op] = RuntimeSchemaInfo(static_argnum=first, needs_pytree=True)


_key_all_static_args()


# ---- vocab-parallel cross-entropy ----------------------------------------------------------

def _all_reduce(t: Tensor, op, group) -> Tensor:
    dist.all_reduce(t, op=op, group=group)
    return t


def _fused(x, w, b, target, chunk_size, grad=None):
    """fastnn's fused Linear + cross-entropy, per row (reduction "none"): the losses, or
    with `grad` (per row) the gradients (dx, dw, db). Targets are local indices >= 0."""
    import fastnn  # noqa: PLC0415

    A, T = _ops.to_array, _ops.to_tensor
    with _ops.scope(x):
        loss, grads = fastnn.dense_cross_entropy(A(x), A(w), A(b), A(target), reduction="none", ignore_index=-1,
                                                 chunk_size=chunk_size, need_grads=grad is not None,
                                                 grad=None if grad is None else A(grad))
    return T(loss) if grad is None else tuple(T(g) for g in grads)


class _VocabParallelCE(torch.autograd.Function):
    """Forward and backward of vocab_parallel_cross_entropy on this rank's shard (see there)."""

    @staticmethod
    def forward(ctx, x, w, b, target, offset, ignore_index, reduction, chunk_size, group):
        valid = target != ignore_index
        owned = valid & (target >= offset) & (target < offset + w.shape[0])
        eff = torch.where(owned, target - offset, torch.zeros_like(target))  # local class: the target or 0
        rows = _fused(x, w, b, eff, chunk_size)  # lse_r - z_eff
        z_eff = torch.linalg.vecdot(x, w[eff]) + (0 if b is None else b[eff])  # one (N, in) gather, freed here
        lse_r = rows + z_eff
        m = _all_reduce(lse_r.clone(), dist.ReduceOp.MAX, group)
        s_r = torch.exp(lse_r - m)
        s = _all_reduce(s_r.clone(), dist.ReduceOp.SUM, group)
        zt = _all_reduce(torch.where(owned, z_eff, torch.zeros_like(z_eff)), dist.ReduceOp.SUM, group)
        loss = torch.where(valid, m + torch.log(s) - zt, torch.zeros_like(zt))
        ctx.save_for_backward(x, w, b, eff, owned, valid, s_r / s)
        ctx.args = (reduction, chunk_size, group, int(valid.sum()), b is not None)
        if reduction == "none":
            return loss
        total = loss.sum()
        return total if reduction == "sum" else total / ctx.args[3]

    @staticmethod
    def backward(ctx, grad):
        x, w, b, eff, owned, valid, share = ctx.saved_tensors
        reduction, chunk_size, group, count, has_b = ctx.args
        if reduction == "none":
            g = grad
        else:
            g = (grad if reduction == "sum" else grad / count).expand(x.shape[0])
        g = torch.where(valid, g, torch.zeros_like(share))
        # d loss / d z_c = g (share softmax_r(z)_c - [c == t]): the kernel's gradient with
        # upstream g share and target eff is g share (softmax_r - onehot(eff)); the
        # difference, coef onehot(eff) with coef = g (share - owned), is added row by row.
        dx, dw, db = _fused(x, w, b, eff, chunk_size, grad=(g * share).contiguous())
        coef = g * (share - owned.to(share.dtype))
        dx.addcmul_(coef[:, None], w[eff])
        dw.index_add_(0, eff, x * coef[:, None])
        if has_b:
            db.index_add_(0, eff, coef)
        dist.all_reduce(dx, group=group)  # x is replicated: its gradient is the sum of the ranks' parts
        return dx, dw, (db if has_b else None), None, None, None, None, None, None


def _local(t, name: str):
    """(local tensor, offset of its first row): a DTensor sharded on dim 0 over a 1-D mesh
    (ColwiseParallel's weight) gives its shard; a plain tensor is the caller's shard."""
    if not isinstance(t, DTensor):
        return t, None
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset  # noqa: PLC0415

    if t.device_mesh.ndim != 1 or t.placements[0] != Shard(0):
        raise ValueError(f"vocab_parallel_cross_entropy: {name} must be sharded on dim 0 (the classes) over a 1-D "
                         f"mesh, got placements {t.placements} on a {t.device_mesh.ndim}-D mesh")
    _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    return t.to_local(), int(offset[0])


def vocab_parallel_cross_entropy(x: Tensor, weight: Tensor, bias: Optional[Tensor], target: Tensor, *,
                                 group: Optional[dist.ProcessGroup] = None, class_offset: Optional[int] = None,
                                 ignore_index: int = -100, reduction: str = "mean",
                                 chunk_size: Optional[int] = None) -> Tensor:
    """F.cross_entropy(F.linear(x, W, B), target) with the classes of W (C, in) and B (C,)
    split over the ranks of `group`, never holding the (N, C) logits, nor a rank's (N, C/ranks).

    x (N, in) is the same on every rank (a plain tensor or a Replicate DTensor); weight and
    bias are this rank's rows of W and B: either plain tensors, classes
    [class_offset, class_offset + weight.shape[0]) (class_offset required), or DTensors
    sharded on dim 0 (ColwiseParallel's head), whose offsets are read from the sharding.
    target (N,) holds global class indices (ignore_index rows count nowhere). Every rank
    returns the same loss; backward gives each rank the gradient of its own rows of W, B
    and the full dx (summed over the ranks).

    Per rank, with the rank's logits z = x W_r^T + B_r never formed (e = the row's target
    if this rank owns it, else local class 0)::

      lse_r = fastnn's fused Linear + cross-entropy per row with target e (= lse_r - z_e;
              the kernel is chunked over rows and classes), plus z_e = x . W[e] + B[e];
      lse   = m + log(sum_r exp(lse_r - m)),  m = max_r lse_r      (all-reduce max, sum)
      z_t   = z_e on the rank owning t, summed over the ranks        (all-reduce sum)
      loss  = lse - z_t per row, reduced as F.cross_entropy does ("mean": over the rows
              not ignored).

    Backward: the fused kernel's backward with upstream g exp(lse_r - lse) (the rank's
    share of the softmax), a rank-1 correction per row at column e, and an all-reduce of
    dx. Memory per rank: W_r and its gradient, dx, two (N, in) temporaries and O(N); no
    logits. Label smoothing is not supported (it needs the sum of all logits)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"vocab_parallel_cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if isinstance(x, DTensor):
        if any(p != R for p in x.placements):
            raise ValueError(f"vocab_parallel_cross_entropy: x must be replicated, got placements {x.placements}")
        x = x.to_local()
    if isinstance(target, DTensor):
        target = target.full_tensor()
    if group is None and isinstance(weight, DTensor):
        group = weight.device_mesh.get_group()
    w, off_w = _local(weight, "weight")
    b, off_b = (None, None) if bias is None else _local(bias, "bias")
    offset = off_w if off_w is not None else class_offset
    if offset is None:
        raise ValueError("vocab_parallel_cross_entropy: class_offset is required when weight is a plain tensor "
                         "(this rank's first class)")
    if b is not None and off_b is not None and off_b != offset:
        raise ValueError(f"vocab_parallel_cross_entropy: bias starts at class {off_b}, weight at {offset}")
    if x.ndim != 2 or target.shape != x.shape[:1] or w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(f"vocab_parallel_cross_entropy: expected x (N, in), weight (C_r, in), target (N,), got x "
                         f"{tuple(x.shape)}, weight {tuple(w.shape)}, target {tuple(target.shape)}")
    dtype = torch.promote_types(x.dtype, w.dtype)
    if b is not None:
        dtype = torch.promote_types(dtype, b.dtype)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"vocab_parallel_cross_entropy: dtype {dtype} is not supported; expected float32 or float64")
    x, w = x.to(dtype).contiguous(), w.to(dtype).contiguous()
    b = None if b is None else b.to(dtype).contiguous()
    return _VocabParallelCE.apply(x, w, b, target.long().contiguous(), int(offset), int(ignore_index), reduction,
                                  chunk_size, group)


class VocabParallel(ParallelStyle):
    """parallelize_module's style for a module owning a classifier weight (C, in) and
    bias (C,), such as fastnn.torch.LinearCrossEntropyLoss: shards both on the classes
    (dim 0, like ColwiseParallel, which only takes nn.Linear / nn.Embedding). The module's
    loss is then vocab_parallel_cross_entropy over the shards. For LinearCrossEntropyLoss
    (torch's layout: the projection is the ``linear`` submodule) it shards ``linear``'s
    weight and bias, and the module's forward takes the vocab-parallel loss."""

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        def shard(name, mod, mesh):
            for pname, param in list(mod.named_parameters(recurse=False)):
                if pname in ("weight", "bias"):
                    mod.register_parameter(pname, nn.Parameter(distribute_tensor(param, mesh, [Shard(0)])))

        linear = getattr(module, "linear", None)
        distribute_module(linear if isinstance(linear, nn.Linear) else module, device_mesh, shard)
        return module


__all__ = ["VocabParallel", "vocab_parallel_cross_entropy"]
