"""fastnn.torch.patch(model, inplace=False): swap torch.nn layers for their fastnn twins,
in a deep copy of the model (default) or in the model itself (inplace=True).

Every module whose type is exactly one of the supported torch.nn classes (nn.Linear, the
activations, the losses, nn.LinearCrossEntropyLoss) becomes its fastnn twin, which is a
subclass of it: the twin takes over the module's state (``__dict__``: the very same
Parameter and buffer objects, of the copy or of the model, hooks, training flag), so
state_dict keys and outputs stay as they were (and with inplace=True, optimizers built on
the model keep working). Subclasses of those torch classes are left alone (their forward
may differ).

The default follows torch's model-rewriting APIs that take ``inplace``
(torch.ao.quantization's fuse_modules / prepare / convert / quantize_dynamic, torch.fx's
fuse): they default to inplace=False and return a modified copy.

Fusion: inside an nn.Sequential, an nn.Linear directly followed by a supported activation
module becomes one fastnn Linear with that activation, and the activation's slot an
nn.Identity (it has no state, so state_dict keys do not change). Not fused: modules used
more than once in the model, modules with hooks, and Softmax / LogSoftmax unless
dim=-1 (the fused kernel works along the last axis).
"""
import copy
from collections import Counter

from torch import nn

from . import losses, modules
from ._linear_ce import LinearCrossEntropyLoss

# torch.nn class -> its fastnn twin (the twin's torch.nn base class): the modules built
# with default arguments (fastnn.parity reads this table)
TWINS = {next(b for b in cls.__bases__ if b is not modules._Activation): cls
         for cls in modules.ACTIVATION_MODULES + losses.LOSS_MODULES + (modules.Linear,)}
# and the twins whose constructor needs arguments
HEAD_TWINS = {nn.LinearCrossEntropyLoss: LinearCrossEntropyLoss}


def patch(model: nn.Module, inplace: bool = False) -> nn.Module:
    """`model` with its torch.nn Linear / activation / loss / LinearCrossEntropyLoss modules
    replaced by fastnn twins (a supported module passed itself comes back as its twin).

    inplace=False (the default, as torch.ao.quantization's and torch.fx's rewriting APIs):
    `model` is left unchanged and a patched deep copy is returned (its own parameters,
    equal in value). inplace=True: `model` itself is modified (its children replaced; the
    twins share its Parameter objects, so an optimizer built on it keeps working) and, as
    the root module may itself be replaced, the result must still be used:
    ``model = patch(model, inplace=True)``."""
    if not isinstance(inplace, bool):
        raise TypeError(f"fastnn.torch.patch: inplace must be True or False, got {inplace!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"fastnn.torch.patch: model must be a torch.nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    # modules are tracked by id(): every original stays referenced until the end, so no
    # module created here (a twin, an Identity) can reuse the id of one replaced here
    originals = [m for _, m in model.named_modules(remove_duplicate=False)]
    uses = Counter(id(m) for m in originals)
    memo: dict[int, nn.Module] = {}
    root = _twin(model, memo)
    _patch_children(root, memo, uses, set())
    del originals
    return root


def _twin(module, memo):
    """The fastnn twin of module sharing its state (module itself if there is none)."""
    if id(module) in memo:
        return memo[id(module)]
    cls = TWINS.get(type(module)) or HEAD_TWINS.get(type(module))
    new = module
    if cls is not None:
        new = cls.__new__(cls)
        new.__dict__.update(module.__dict__)
        if cls is modules.Linear:
            new.activation, new.act_params = None, {}
    memo[id(module)] = new
    return new


def _patch_children(parent, memo, uses, seen):
    if id(parent) in seen:
        return
    seen.add(id(parent))
    if isinstance(parent, nn.Sequential):
        _fuse(parent, memo, uses)
    for name, child in list(parent._modules.items()):
        if child is None:
            continue
        new = _twin(child, memo)
        if new is not child:
            parent._modules[name] = new
        _patch_children(new, memo, uses, seen)


def _has_hooks(m):
    return any(getattr(m, h, None) for h in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                              "_backward_pre_hooks"))


def _fusable(linear, act, uses):
    if type(linear) is not nn.Linear or type(act) not in TWINS or not issubclass(TWINS[type(act)],
                                                                                  modules._Activation):
        return False
    if uses[id(linear)] != 1 or uses[id(act)] != 1 or _has_hooks(linear) or _has_hooks(act):
        return False
    return not isinstance(act, (nn.Softmax, nn.LogSoftmax)) or act.dim == -1


def _fuse(seq, memo, uses):
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        linear, act = seq._modules[first], seq._modules[second]
        if linear is None or act is None or not _fusable(linear, act, uses):
            continue
        fused = _twin(linear, memo)
        fused.activation, params = _twin(act, memo).fastnn_activation()
        fused.act_params = params
        seq._modules[second] = nn.Identity()
