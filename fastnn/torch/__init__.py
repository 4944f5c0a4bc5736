"""fastnn.torch: drop-in torch.nn layers, activations and losses on fastnn's kernels.

    >>> import torch, fastnn.torch as fnn
    >>> layer = fnn.Linear(784, 128, activation="relu")   # nn.Linear + ReLU, fused
    >>> loss = fnn.CrossEntropyLoss()(fnn.Linear(128, 10)(layer(torch.randn(32, 784))),
    ...                               torch.randint(0, 10, (32,)))
    >>> model = fnn.patch(torch_model)                     # swap the layers of a torch model

- Modules with torch.nn's names, arguments, parameters and state_dict (each subclasses
  its torch twin): ``Linear`` (plus ``activation=``), the activation modules and the
  loss modules listed in ``__all__``.
- ``fastnn.torch.functional``: torch.nn.functional's names (``linear(x, w, b,
  activation=None, **params)``, ``relu``, ..., ``cross_entropy``).
- ``patch(model)``: replace a model's torch layers by these, sharing the parameters.

Autograd (gradcheck), torch.compile / torch.export (custom ops fastnn::*, no graph
break) and DistributedDataParallel work. CPU tensors reach the kernels as numpy views,
CUDA tensors through DLPack to the CuPy backend (when fastnn has one).

Performance: on CPU tensors the autograd nodes are C++ (fastnn/torch/_native.py:
csrc/torch/native.cpp, compiled against the installed torch on first use and cached),
which call the C++ kernels directly: at tiny sizes a fused Linear + ReLU forward +
backward costs less than torch's two ops (42 us vs 55 on x (8, 16), w (16, 16);
examples/torch_overhead.py) and the example MLP trains faster than stock torch
(examples/torch_mlp.py). Where they cannot be built (no C++ compiler) or with
FASTNN_TORCH_NATIVE=0, Python autograd.Functions run the same kernels (~35 us more per
op forward + backward). At large sizes the kernels' speed shows. torch's OpenMP threads
busy-wait for a while after each torch op and take cores from the fastnn kernels that
follow (a Linear(1024, 1024) + ReLU fwd+bwd between torch ops: 46 ms, 24 ms with
OMP_WAIT_POLICY=PASSIVE set before starting Python); fastnn's own BLAS threads sleep
~20 us after their work (fastnn sets OPENBLAS_THREAD_TIMEOUT=16 for its OpenBLAS
unless you set it).
"""
from . import functional
from ._linear_ce import LinearCrossEntropyLoss
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss,
                     PoissonNLLLoss, SmoothL1Loss)
from .modules import (CELU, ELU, GELU, SELU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU, Linear, LogSigmoid,
                      LogSoftmax, Mish, ReLU, ReLU6, Sigmoid, SiLU, Softmax, Softplus, Softsign, Tanh)
from .patch import patch

__all__ = [
    "functional", "patch", "Linear",
    "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Hardsigmoid",
    "Hardswish", "Tanh", "Softplus", "Softsign", "LogSigmoid", "Hardtanh", "Softmax", "LogSoftmax",
    "MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
    "KLDivLoss", "PoissonNLLLoss", "LinearCrossEntropyLoss",
]
