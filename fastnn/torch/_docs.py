"""Docstrings of fastnn.torch.functional's torch twins, written once from a template.

Each twin takes torch.nn.functional's arguments, defaults, shapes, dtype promotion and
broadcasting and returns what torch returns; the template states that, the fastnn kernel
that runs, and an example, so help() and the API reference describe every function
without restating torch's documentation 33 times. A function that has its own docstring
keeps it.
"""
from types import ModuleType
from typing import Dict, Tuple

# torch.nn.functional name -> (fastnn op, kind)
TWINS: Dict[str, Tuple[str, str]] = {
    "relu": ("relu", "activation"), "relu6": ("relu6", "activation"), "leaky_relu": ("leaky_relu", "activation"),
    "elu": ("elu", "activation"), "selu": ("selu", "activation"), "celu": ("celu", "activation"),
    "gelu": ("gelu", "activation"), "silu": ("silu", "activation"), "mish": ("mish", "activation"),
    "sigmoid": ("sigmoid", "activation"), "hardsigmoid": ("hard_sigmoid", "activation"),
    "hardswish": ("hard_silu", "activation"), "tanh": ("tanh", "activation"), "softplus": ("softplus", "activation"),
    "softsign": ("softsign", "activation"), "logsigmoid": ("log_sigmoid", "activation"),
    "hardtanh": ("hard_tanh", "activation"), "relu_": ("relu", "activation"),
    "leaky_relu_": ("leaky_relu", "activation"), "elu_": ("elu", "activation"), "hardtanh_": ("hard_tanh", "activation"),
    "softmax": ("softmax", "activation"), "log_softmax": ("log_softmax", "activation"),
    "mse_loss": ("mse", "loss"), "l1_loss": ("mae", "loss"), "huber_loss": ("huber", "loss"),
    "smooth_l1_loss": ("smooth_l1", "loss"), "binary_cross_entropy": ("bce", "loss"),
    "binary_cross_entropy_with_logits": ("bce_with_logits", "loss"), "cross_entropy": ("cross_entropy", "loss"),
    "nll_loss": ("nll", "loss"), "kl_div": ("kl_div", "loss"), "poisson_nll_loss": ("poisson_nll", "loss"),
}

_EXAMPLE = {
    "activation": ">>> y = F.{name}(torch.randn(4, 8, requires_grad=True){extra})",
    "loss": ">>> loss = F.{name}({args})",
}
_LOSS_ARGS = {
    "cross_entropy": "torch.randn(4, 10, requires_grad=True), torch.randint(0, 10, (4,))",
    "nll_loss": "torch.randn(4, 10).log_softmax(-1), torch.randint(0, 10, (4,))",
    "binary_cross_entropy": "torch.rand(4, requires_grad=True), torch.rand(4)",
    "kl_div": "torch.randn(4, 5).log_softmax(-1), torch.rand(4, 5), reduction='batchmean'",
}

_TEMPLATE = """``torch.nn.functional.{name}`` on fastnn's ``{op}`` kernel (forward and backward).

Takes the arguments and defaults of ``torch.nn.functional.{name}``{inplace}.

Returns
-------
torch.Tensor
    What torch returns: {returns}; torch's dtype promotion{bcast}.
    float32, float64, float16 and bfloat16 run on the kernels (16-bit natively: float32
    arithmetic inside, one rounding per output); under torch.autocast the op runs where
    torch's autocast puts the stock op (fastnn/torch/_autocast.py); CPU tensors run on
    the C++ backend, CUDA tensors on the CuPy backend.

Raises
------
ValueError, TypeError, RuntimeError
    Where torch raises for the same arguments; fastnn's messages name the argument.

Examples
--------
>>> import torch, fastnn.torch.functional as F
{example}
"""


def fill(module: ModuleType) -> None:
    """Give every twin in `module` without a docstring the template's."""
    for name, (op, kind) in TWINS.items():
        fn = getattr(module, name, None)
        if fn is None or fn.__doc__:
            continue
        if kind == "activation":
            extra = ", dim=-1" if op in ("softmax", "log_softmax") else ""
            example = _EXAMPLE["activation"].format(name=name, extra=extra)
            if name.endswith("_"):
                example = f">>> x = torch.randn(4, 8); y = F.{name}(x)   # in place: y is x"
            returns = "a tensor of the input's shape"
            inplace = "; the ``_`` variants and ``inplace=True`` write into the input" if (
                name.endswith("_") or "inplace" in fn.__code__.co_varnames) else ""
            bcast = ""
        else:
            args = _LOSS_ARGS.get(name, "torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)")
            example = _EXAMPLE["loss"].format(name=name, args=args)
            returns = "a 0-d tensor, or the unreduced losses for ``reduction='none'``"
            inplace = ""
            bcast = " and broadcasting of target against input (with torch's warning)" if op in (
                "mse", "mae", "huber", "smooth_l1") else ""
        fn.__doc__ = _TEMPLATE.format(name=name, op=op, inplace=inplace, returns=returns, bcast=bcast,
                                      example=example)


# torch.nn module -> the fastnn.torch.functional function its forward runs
MODULES: Dict[str, str] = {
    "ReLU": "relu", "ReLU6": "relu6", "LeakyReLU": "leaky_relu", "ELU": "elu", "SELU": "selu", "CELU": "celu",
    "GELU": "gelu", "SiLU": "silu", "Mish": "mish", "Sigmoid": "sigmoid", "Hardsigmoid": "hardsigmoid",
    "Hardswish": "hardswish", "Tanh": "tanh", "Softplus": "softplus", "Softsign": "softsign",
    "LogSigmoid": "logsigmoid", "Hardtanh": "hardtanh", "Softmax": "softmax", "LogSoftmax": "log_softmax",
    "MSELoss": "mse_loss", "L1Loss": "l1_loss", "HuberLoss": "huber_loss", "SmoothL1Loss": "smooth_l1_loss",
    "BCELoss": "binary_cross_entropy", "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
    "CrossEntropyLoss": "cross_entropy", "NLLLoss": "nll_loss", "KLDivLoss": "kl_div",
    "PoissonNLLLoss": "poisson_nll_loss",
}
_CTOR = {"Softmax": "dim=-1", "LogSoftmax": "dim=-1", "KLDivLoss": "reduction='batchmean'"}

_MODULE_TEMPLATE = """

Takes ``torch.nn.{cls}``'s constructor arguments and has its parameters, buffers,
state_dict and repr (it subclasses it); ``forward`` runs
:func:`fastnn.torch.functional.{fn}`, which says the kernel, dtypes, devices and errors.

Examples
--------
>>> import torch, fastnn.torch as fnn
>>> {call}
"""


def fill_modules(package: ModuleType) -> None:
    """Append the module template to each torch.nn twin's one-line docstring in `package`."""
    for cls_name, fn in MODULES.items():
        cls = getattr(package, cls_name, None)
        if cls is None or "Examples" in (cls.__doc__ or ""):
            continue
        if fn in _LOSS_ARGS or fn.endswith("loss") or fn in ("cross_entropy", "kl_div",
                                                             "binary_cross_entropy_with_logits"):
            args = _LOSS_ARGS.get(fn, "torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)")
            args = args.replace(", reduction='batchmean'", "")
            if fn == "binary_cross_entropy_with_logits":
                args = "torch.randn(4, 3, requires_grad=True), torch.rand(4, 3)"
            call = f"loss = fnn.{cls_name}({_CTOR.get(cls_name, '')})({args})"
        else:
            call = f"y = fnn.{cls_name}({_CTOR.get(cls_name, '')})(torch.randn(4, 8))"
        cls.__doc__ = (cls.__doc__ or "").rstrip() + _MODULE_TEMPLATE.format(cls=cls_name, fn=fn, call=call)
