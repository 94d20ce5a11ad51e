"""Linear layers whose CPU inference runs through oneDNN.

PyTorch computes a float32 ``F.linear`` or ``matmul`` on a CPU with MKL, which takes an AVX2 code path
on AMD processors; oneDNN chooses its kernels from the instruction set alone. On the AMD EPYC of our
benchmarks oneDNN runs the paper-size denoiser and critic layers 2.3x faster than ``F.linear`` and up to
6x faster than the batched ``matmul`` of the critic ensemble (benchmarks/README.md). Most of EXPO's time
is inference (sampling candidate actions and scoring them), so that is where it is used:

- only without autograd (oneDNN's op has no backward), so every training step keeps ``F.linear``;
- only for float32 on an x86 CPU, outside autocast and ``torch.compile`` (which choose their own kernels);
- only for layers of at least :data:`ONEDNN_MIN_MACS` multiply-adds: below that the call costs more
  than it saves.

A SiLU that follows a layer is fused into oneDNN's matmul (applied to each output tile while it is in
cache): the denoiser's residual blocks apply it to ``(rows, 4·width)`` activations, and fused it makes the
paper-size sampler 1.5x faster than a separate SiLU pass. The results equal ``F.linear``'s (and ``F.silu``'s)
up to floating-point summation order.
"""

import platform

import torch as th
from torch import nn
from torch.nn import functional as F

# Smallest layer (rows x in x out multiply-adds) sent to oneDNN; tiny CPU configurations stay on F.linear.
ONEDNN_MIN_MACS = 1 << 22

ONEDNN_AVAILABLE = th.backends.mkldnn.is_available() and platform.machine().lower() in ("x86_64", "amd64")


def use_onednn(x: th.Tensor, weight: th.Tensor, macs: int) -> bool:
    """Whether :func:`linear` sends ``x @ weight.T`` (``macs`` multiply-adds) to oneDNN."""
    return (
        ONEDNN_AVAILABLE
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == th.float32
        and not (th.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not th.is_autocast_enabled("cpu")
        and not th.compiler.is_compiling()
        and macs >= ONEDNN_MIN_MACS
    )


def _onednn_linear(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, silu: bool = False) -> th.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    out = th.ops.mkldnn._linear_pointwise(rows, weight, bias, "swish" if silu else "none", [None], "")
    return out.reshape(*x.shape[:-1], weight.shape[0])


def linear(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None = None, silu: bool = False) -> th.Tensor:
    """
    ``F.linear(x, weight, bias)``, followed by ``F.silu`` if ``silu``.

    :param weight: ``(out, in)``
    """
    if use_onednn(x, weight, x.numel() * weight.shape[0]):
        return _onednn_linear(x, weight, bias, silu)
    out = F.linear(x, weight, bias)
    return F.silu(out) if silu else out


def ensemble_linear(x: th.Tensor, weight: th.Tensor, bias: th.Tensor) -> th.Tensor:
    """
    ``E`` linear layers at once: ``x @ weight + bias``.

    :param x: ``(B, in)``, the same rows for every member, or ``(E, B, in)``
    :param weight: ``(E, in, out)``
    :param bias: ``(E, 1, out)``
    :return: ``(E, B, out)``
    """
    n_members = weight.shape[0]
    rows_per_member = x.numel() // x.shape[-1] // (n_members if x.dim() == 3 else 1)
    if use_onednn(x, weight, rows_per_member * weight[0].numel()):
        inputs = x.unbind(0) if x.dim() == 3 else [x] * n_members
        return th.stack([_onednn_linear(xe, we.t(), be[0]) for xe, we, be in zip(inputs, weight, bias)])
    return th.matmul(x, weight) + bias


class Linear(nn.Linear):
    """
    ``nn.Linear`` (same parameters and state dict) whose large no-grad CPU calls use :func:`linear`.

    :param silu: apply SiLU to the output (fused into the matmul on the oneDNN path)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, silu: bool = False):
        super().__init__(in_features, out_features, bias)
        self.silu = silu

    def forward(self, x: th.Tensor) -> th.Tensor:
        return linear(x, self.weight, self.bias, self.silu)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", silu=True" if self.silu else "")
