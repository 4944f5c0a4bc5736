"""fastnn.torch: drop-in torch.nn layers, activations and losses on fastnn's kernels.

    >>> import torch, fastnn.torch as fnn
    >>> layer = fnn.Linear(784, 128, activation="relu")   # nn.Linear + ReLU, fused
    >>> loss = fnn.CrossEntropyLoss()(fnn.Linear(128, 10)(layer(torch.randn(32, 784))),
    ...                               torch.randint(0, 10, (32,)))
    >>> model = fnn.patch(torch_model)                     # a copy with fastnn's layers

- Modules with torch.nn's names, arguments, parameters and state_dict (each subclasses
  its torch twin): ``Linear`` (plus ``activation=``), the activation modules and the
  loss modules listed in ``__all__``.
- ``fastnn.torch.functional``: torch.nn.functional's names (``linear(x, w, b,
  activation=None, **params)``, ``relu``, ..., ``cross_entropy``).
- ``LinearCrossEntropyLoss`` / ``functional.linear_cross_entropy``: torch 2.13's, on
  fastnn's fused Linear + cross-entropy (no (N, classes) logits), plus soft-capping,
  z-loss, per-token weights and the per-row log-sum-exp as keyword options.
- ``patch(model, inplace=False)``: a copy of a model with its torch layers replaced by
  these (inplace=True: the model itself, sharing its parameters).

Autograd (gradcheck), torch.compile / torch.export (custom ops ``fastnn::*``, no graph
break) and DistributedDataParallel work. Each call takes one route (fastnn/torch/_ops.py):
on CPU tensors fastnn's C++ autograd nodes (csrc/torch/native.cpp, compiled against the
installed torch on first use and cached; FASTNN_TORCH_NATIVE=0 turns them off), which run
the kernels on torch's intra-op thread pool; elsewhere Python autograd.Functions over the
same kernels (CPU tensors as numpy views, CUDA tensors through DLPack to the CuPy backend,
on torch's current stream); under torch.compile the custom ops. Measurements:
docs/performance.md.
"""
import sys

from . import functional
from ._linear_ce import LinearCrossEntropyLoss
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss,
                     PoissonNLLLoss, SmoothL1Loss)
from .modules import (CELU, ELU, GELU, SELU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU, Linear, LogSigmoid,
                      LogSoftmax, Mish, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Softplus, Softsign, Tanh)
from .patch import patch
from ._docs import fill as _fill_docs
from ._docs import fill_modules as _fill_module_docs

_fill_docs(functional)

__all__ = [
    "functional", "patch", "Linear",
    "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Hardsigmoid",
    "Hardswish", "Tanh", "Softplus", "Softsign", "LogSigmoid", "Hardtanh", "Softmax", "LogSoftmax",
    "MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
    "KLDivLoss", "PoissonNLLLoss", "LinearCrossEntropyLoss",
]

_fill_module_docs(sys.modules[__name__])
