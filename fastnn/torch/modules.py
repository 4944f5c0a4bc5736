"""Drop-in modules for torch.nn: Linear (with an optional fused activation) and the
activation modules, on fastnn kernels.

Each subclasses its torch.nn twin, so constructor arguments, defaults, attributes,
parameter names, shapes, initialisation, state_dict keys, extra_repr and pickling are
torch's own (and ``isinstance(m, torch.nn.ReLU)`` stays true); only ``forward`` runs
fastnn.torch.functional. Each activation module also says which fastnn activation it is
(``fastnn_activation()`` -> (name, params)), which patch() uses to fuse it into a Linear.
"""
from typing import Dict, Optional

from torch import nn

import fastnn

from . import functional as F


class Linear(nn.Linear):
    r"""y = activation(x W^T + b), the bias and activation fused into the matrix product.

    Same parameters, init and state_dict as ``torch.nn.Linear``; ``activation`` (None:
    identity) is a fastnn activation name or torch's functional name, with its params as
    keyword arguments (``Linear(64, 32, activation="leaky_relu", negative_slope=0.2)``).

    Shape:
        - Input: (*, in_features). Output: (*, out_features).

    Examples::

        >>> import torch, fastnn.torch
        >>> m = fastnn.torch.Linear(20, 30, activation="relu")
        >>> m.load_state_dict(torch.nn.Linear(20, 30).state_dict())
        <All keys matched successfully>
        >>> m(torch.randn(128, 20)).shape
        torch.Size([128, 30])
    """

    def __init__(self, in_features, out_features, bias=True, activation=None, device=None, dtype=None,
                 **act_params):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.activation = activation
        self.act_params = dict(act_params)
        name, params = F.dense_activation(activation, self.act_params)
        fastnn.saved_for_backward(name, **params)  # unknown names / params raise here, not at the first call

    def forward(self, input):
        return F.linear(input, self.weight, self.bias, self.activation, **self.act_params)

    def extra_repr(self):
        s = super().extra_repr()
        if self.activation is not None:
            s += f", activation={self.activation!r}" + "".join(f", {k}={v!r}" for k, v in self.act_params.items())
        return s

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("activation", None)
        self.__dict__.setdefault("act_params", {})


class _Activation:
    """Mixin of the activation twins: which fastnn activation the module computes."""

    fastnn_name: Optional[str] = None
    fastnn_params: Dict[str, str] = {}  # fastnn param name -> the torch module's attribute

    def fastnn_activation(self):
        """(fastnn activation name, params) this module computes."""
        return self.fastnn_name, {k: getattr(self, a) for k, a in self.fastnn_params.items()}


class ReLU(_Activation, nn.ReLU):
    """fastnn twin of torch.nn.ReLU (same arguments); runs fastnn's 'relu' kernel."""

    fastnn_name = "relu"

    def forward(self, input):
        return F.relu(input, self.inplace)


class ReLU6(_Activation, nn.ReLU6):
    """fastnn twin of torch.nn.ReLU6 (same arguments); runs fastnn's 'relu6' kernel."""

    fastnn_name = "relu6"

    def forward(self, input):
        return F.relu6(input, self.inplace)


class LeakyReLU(_Activation, nn.LeakyReLU):
    """fastnn twin of torch.nn.LeakyReLU (same arguments); runs fastnn's 'leaky_relu' kernel."""

    fastnn_name = "leaky_relu"
    fastnn_params = {"negative_slope": "negative_slope"}

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope, self.inplace)


class ELU(_Activation, nn.ELU):
    """fastnn twin of torch.nn.ELU (same arguments); runs fastnn's 'elu' kernel."""

    fastnn_name = "elu"
    fastnn_params = {"alpha": "alpha"}

    def forward(self, input):
        return F.elu(input, self.alpha, self.inplace)


class SELU(_Activation, nn.SELU):
    """fastnn twin of torch.nn.SELU (same arguments); runs fastnn's 'selu' kernel."""

    fastnn_name = "selu"

    def forward(self, input):
        return F.selu(input, self.inplace)


class CELU(_Activation, nn.CELU):
    """fastnn twin of torch.nn.CELU (same arguments); runs fastnn's 'celu' kernel."""

    fastnn_name = "celu"
    fastnn_params = {"alpha": "alpha"}

    def forward(self, input):
        return F.celu(input, self.alpha, self.inplace)


class GELU(_Activation, nn.GELU):
    """fastnn twin of torch.nn.GELU (same arguments); runs fastnn's 'gelu' kernel."""

    fastnn_name = "gelu"
    fastnn_params = {"approximate": "approximate"}

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)


class SiLU(_Activation, nn.SiLU):
    """fastnn twin of torch.nn.SiLU (same arguments); runs fastnn's 'silu' kernel."""

    fastnn_name = "silu"

    def forward(self, input):
        return F.silu(input, self.inplace)


class Mish(_Activation, nn.Mish):
    """fastnn twin of torch.nn.Mish (same arguments); runs fastnn's 'mish' kernel."""

    fastnn_name = "mish"

    def forward(self, input):
        return F.mish(input, self.inplace)


class Sigmoid(_Activation, nn.Sigmoid):
    """fastnn twin of torch.nn.Sigmoid (same arguments); runs fastnn's 'sigmoid' kernel."""

    fastnn_name = "sigmoid"

    def forward(self, input):
        return F.sigmoid(input)


class Hardsigmoid(_Activation, nn.Hardsigmoid):
    """fastnn twin of torch.nn.Hardsigmoid (same arguments); runs fastnn's 'hard_sigmoid' kernel."""

    fastnn_name = "hard_sigmoid"

    def forward(self, input):
        return F.hardsigmoid(input, self.inplace)


class Hardswish(_Activation, nn.Hardswish):
    """fastnn twin of torch.nn.Hardswish (same arguments); runs fastnn's 'hard_silu' kernel."""

    fastnn_name = "hard_silu"

    def forward(self, input):
        return F.hardswish(input, self.inplace)


class Tanh(_Activation, nn.Tanh):
    """fastnn twin of torch.nn.Tanh (same arguments); runs fastnn's 'tanh' kernel."""

    fastnn_name = "tanh"

    def forward(self, input):
        return F.tanh(input)


class Softplus(_Activation, nn.Softplus):
    """fastnn twin of torch.nn.Softplus (same arguments); runs fastnn's 'softplus' kernel."""

    fastnn_name = "softplus"
    fastnn_params = {"beta": "beta", "threshold": "threshold"}

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)


class Softsign(_Activation, nn.Softsign):
    """fastnn twin of torch.nn.Softsign (same arguments); runs fastnn's 'softsign' kernel."""

    fastnn_name = "softsign"

    def forward(self, input):
        return F.softsign(input)


class LogSigmoid(_Activation, nn.LogSigmoid):
    """fastnn twin of torch.nn.LogSigmoid (same arguments); runs fastnn's 'log_sigmoid' kernel."""

    fastnn_name = "log_sigmoid"

    def forward(self, input):
        return F.logsigmoid(input)


class Hardtanh(_Activation, nn.Hardtanh):
    """fastnn twin of torch.nn.Hardtanh (same arguments); runs fastnn's 'hard_tanh' kernel."""

    fastnn_name = "hard_tanh"
    fastnn_params = {"min_val": "min_val", "max_val": "max_val"}

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)


class Softmax(_Activation, nn.Softmax):
    """fastnn twin of torch.nn.Softmax (same arguments); runs fastnn's 'softmax' kernel."""

    fastnn_name = "softmax"
    fastnn_params = {"axis": "dim"}

    def forward(self, input):
    # dim=None keeps torch's implicit-dim rule and warning; _stacklevel=5 as torch's module
        return F.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(_Activation, nn.LogSoftmax):
    """fastnn twin of torch.nn.LogSoftmax (same arguments); runs fastnn's 'log_softmax' kernel."""

    fastnn_name = "log_softmax"
    fastnn_params = {"axis": "dim"}

    def forward(self, input):
    # dim=None keeps torch's implicit-dim rule and warning; _stacklevel=5 as torch's module
        return F.log_softmax(input, self.dim, _stacklevel=5)


ACTIVATION_MODULES = (ReLU, ReLU6, LeakyReLU, ELU, SELU, CELU, GELU, SiLU, Mish, Sigmoid, Hardsigmoid, Hardswish,
                      Tanh, Softplus, Softsign, LogSigmoid, Hardtanh, Softmax, LogSoftmax)

__all__ = ["Linear", "ACTIVATION_MODULES"] + [c.__name__ for c in ACTIVATION_MODULES]
