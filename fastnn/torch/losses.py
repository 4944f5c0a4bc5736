"""Drop-in loss modules for torch.nn on fastnn kernels.

Each subclasses its torch.nn twin, so the arguments (size_average / reduce included),
defaults, buffers (weight, pos_weight), state_dict and repr are torch's own; forward
runs fastnn.torch.functional with torch's conventions (see the losses section there).
"""
from torch import nn

from . import functional as F


class MSELoss(nn.MSELoss):
    """fastnn twin of torch.nn.MSELoss."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(nn.L1Loss):
    """fastnn twin of torch.nn.L1Loss."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class HuberLoss(nn.HuberLoss):
    """fastnn twin of torch.nn.HuberLoss."""

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class SmoothL1Loss(nn.SmoothL1Loss):
    """fastnn twin of torch.nn.SmoothL1Loss."""

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class BCELoss(nn.BCELoss):
    """fastnn twin of torch.nn.BCELoss (probabilities in; each log clamped at -100)."""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """fastnn twin of torch.nn.BCEWithLogitsLoss."""

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, pos_weight=self.pos_weight,
                                                  reduction=self.reduction)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """fastnn twin of torch.nn.CrossEntropyLoss (logits; index or probability targets;
    class axis 1 for N-D inputs, as torch)."""

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(nn.NLLLoss):
    """fastnn twin of torch.nn.NLLLoss."""

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class KLDivLoss(nn.KLDivLoss):
    """fastnn twin of torch.nn.KLDivLoss (reduction "batchmean" too)."""

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class PoissonNLLLoss(nn.PoissonNLLLoss):
    """fastnn twin of torch.nn.PoissonNLLLoss."""

    def forward(self, log_input, target):
        return F.poisson_nll_loss(log_input, target, log_input=self.log_input, full=self.full, eps=self.eps,
                                  reduction=self.reduction)


LOSS_MODULES = (MSELoss, L1Loss, HuberLoss, SmoothL1Loss, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss,
                KLDivLoss, PoissonNLLLoss)

__all__ = ["LOSS_MODULES"] + [c.__name__ for c in LOSS_MODULES]
