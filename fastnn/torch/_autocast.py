"""torch.autocast for fastnn.torch: each op runs where torch's autocast puts the stock op
it replaces. The policy is declared once, in POLICY below; functional.py reads it.

torch's lists (torch 2.13, aten/src/ATen/autocast_mode.cpp, mirrored in
torch/testing/_internal/autocast_test_lists.py; tests/test_torch_lowp.py checks every
entry against the stock op under autocast):

- "lower": linear runs in the autocast dtype: its eligible inputs (floating, not
  float64) are cast to it, the output is in it (CPU and CUDA).
- "fp32": the stock op casts its eligible 16-bit inputs to float32 and returns float32:
  every loss (CPU and CUDA; cross_entropy on CUDA through its log_softmax and nll_loss,
  which are both float32 ops there), and on CUDA only softplus, softmax and log_softmax.
  Not mse / l1 with a per-element weight: torch 2.13 computes those from elementwise
  ops outside the lists ("input"; their final torch.sum follows autocast's own rule).
- "input": not in autocast's lists (the activations, softplus / softmax / log_softmax
  on CPU): the op runs in its input's dtype, as without autocast.
- "banned": binary_cross_entropy on CUDA raises (torch: "unsafe to autocast"; use
  binary_cross_entropy_with_logits).
- linear_cross_entropy: torch computes ``cross_entropy(linear(x, w, b), target)``, so
  x, w, b are cast to the autocast dtype ("lower") and the loss is float32 ("fp32").
  fastnn's fused kernel computes the logits from the same 16-bit operands with float32
  accumulation and does not round them to 16 bits before the softmax (torch does);
  the loss is returned as float32.

A fused Linear + activation is linear then the activation: the product runs in the
autocast dtype, and where the activation's stock op is "fp32" on that device, the result
is returned as float32 (the fused kernel rounds once, to the autocast dtype).

What runs inside fastnn after the cast is not affected by autocast: the casts are
ordinary (differentiable) ``Tensor.to`` calls, so under torch.compile they are traced
into the graph before the custom op (which has no autocast kernel of its own) and a
compiled model gets the stock model's dtypes, with no graph break.
"""
from typing import Optional

import torch
from torch import Tensor

LOWER, FP32, INPUT, BANNED = "lower", "fp32", "input", "banned"

_LOSSES = ("mse", "mae", "huber", "smooth_l1", "bce_with_logits", "cross_entropy", "nll", "kl_div", "poisson_nll")

# op name (fastnn's) -> {device type: policy}; ops not named here follow DEFAULT.
POLICY = {
    "linear": {"cpu": LOWER, "cuda": LOWER},
    **{name: {"cpu": FP32, "cuda": FP32} for name in _LOSSES},
    "bce": {"cpu": FP32, "cuda": BANNED},
    # mse / l1 with a per-element weight: torch computes them from elementwise torch ops
    # outside autocast's lists (then torch.sum, which CUDA autocast sums in float32)
    "mse_weighted": {"cpu": INPUT, "cuda": INPUT},
    "mae_weighted": {"cpu": INPUT, "cuda": INPUT},
    "softplus": {"cpu": INPUT, "cuda": FP32},
    "softmax": {"cpu": INPUT, "cuda": FP32},
    "log_softmax": {"cpu": INPUT, "cuda": FP32},
}
DEFAULT = INPUT  # every other activation (not in autocast's lists)

_EXEMPT = (torch.float64,)  # autocast leaves float64 tensors as they are


def policy(name: str, device_type: str) -> str:
    """The autocast policy of fastnn op `name` on tensors of `device_type`."""
    return POLICY.get(name, {}).get(device_type, DEFAULT)


def active(t: Tensor) -> Optional[torch.dtype]:
    """The autocast dtype when autocast is on for t's device type, else None."""
    dev = t.device.type
    if dev not in ("cpu", "cuda") or not torch.is_autocast_enabled(dev):
        return None
    return torch.get_autocast_dtype(dev)


def _cast(t, dtype):
    if t is None or not t.is_floating_point() or t.dtype in _EXEMPT or t.dtype == dtype:
        return t
    return t.to(dtype)


def cast_inputs(name: str, func: str, *tensors) -> tuple:
    """The tensors as autocast hands them to the stock op of fastnn op `name` (func: the
    public name, for the error): unchanged without autocast or under the "input" policy."""
    ref = tensors[0]
    ad = active(ref)
    if ad is None:
        return tensors
    p = policy(name, ref.device.type)
    if p == INPUT:
        return tensors
    if p == BANNED:
        raise RuntimeError(f"{func}: unsafe to autocast (as torch.nn.functional.binary_cross_entropy under "
                           f"{ref.device.type} autocast); use binary_cross_entropy_with_logits, or compute it "
                           f"outside the autocast region on float32 inputs")
    dtype = ad if p == LOWER else torch.float32
    return tuple(_cast(t, dtype) for t in tensors)


def linear_inputs(activation: str, x, w, b):
    """x, w, b cast to the autocast dtype (torch's linear under autocast), and the dtype
    the fused activation's result is returned in (float32 where the activation's stock op
    is a float32 op on that device, else None: the product's dtype)."""
    ad = active(x)
    if ad is None:
        return (x, w, b), None
    out = torch.float32 if policy(activation, x.device.type) == FP32 else None
    return (_cast(x, ad), _cast(w, ad), _cast(b, ad)), out
