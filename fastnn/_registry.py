"""The names of fastnn's kernels and their parameters: the one registry every
backend, the validation layer and the tests are driven from.

Order matters: an activation's index in ACTIVATIONS and a loss's index in
ELEMENTWISE_LOSSES are the codes the C++ enums (csrc/cpu/kernels.h) use.
"""
import math

ACTIVATIONS = (
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu",
    "mish", "sigmoid", "hard_sigmoid", "hard_silu", "tanh", "softplus", "softsign",
    "log_sigmoid", "hard_tanh", "exponential", "softmax", "log_softmax",
)
ACTIVATION_ALIASES = {"swish": "silu", "hard_swish": "hard_silu", "identity": "linear"}

# Parameters (name -> default) each activation accepts; torch's defaults.
ACTIVATION_PARAMS = {
    "relu": {"negative_slope": 0.0, "max_value": None, "threshold": 0.0},
    "leaky_relu": {"negative_slope": 0.01},
    "elu": {"alpha": 1.0},
    "celu": {"alpha": 1.0},
    "gelu": {"approximate": "none"},
    "softplus": {"beta": 1.0, "threshold": 20.0},
    "hard_tanh": {"min_val": -1.0, "max_val": 1.0},
    "softmax": {"axis": -1},
    "log_softmax": {"axis": -1},
}

# Activations whose backward reads the output y (cheaper or exact from y); every other
# activation's backward reads its input x. relu only with its torch defaults.
FROM_Y = frozenset({"sigmoid", "tanh", "exponential", "softmax", "log_softmax"})
ROW_ACTIVATIONS = frozenset({"softmax", "log_softmax"})

# Elementwise losses, in the order of the C++ Loss enum; then the class losses.
ELEMENTWISE_LOSSES = (
    "mse", "mae", "huber", "smooth_l1", "bce", "bce_with_logits", "kl_div",
    "poisson_nll", "hinge", "squared_hinge", "log_cosh",
)
CLASS_LOSSES = ("cross_entropy", "nll")
LOSSES = ELEMENTWISE_LOSSES + CLASS_LOSSES
LOSS_ALIASES = {"l1": "mae"}

LOSS_PARAMS = {
    "huber": {"delta": 1.0},
    "smooth_l1": {"beta": 1.0},
    "bce_with_logits": {"pos_weight": None},
    "cross_entropy": {"weight": None, "ignore_index": -100, "label_smoothing": 0.0},
    "nll": {"weight": None, "ignore_index": -100},
    "kl_div": {"log_target": False},
    "poisson_nll": {"log_input": True, "full": False, "eps": 1e-8},
}
# Losses whose torch twin also differentiates the target (need_target_grad=True).
TARGET_GRAD_LOSSES = frozenset({
    "mse", "mae", "huber", "smooth_l1", "bce", "bce_with_logits", "cross_entropy",
    "kl_div", "poisson_nll",
})
REDUCTIONS = ("mean", "sum", "none", "batchmean")

INF = math.inf
