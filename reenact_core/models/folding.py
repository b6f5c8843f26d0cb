"""BatchNorm folding for inference: a ``BatchNorm2d`` right after a convolution becomes that convolution's
scale and bias, and the BatchNorm an identity.

In eval mode ``BN(conv(x)) = γ·(W∗x + b − μ)/√(σ² + ε) + β``, the convolution with weight ``W·γ/√(σ² + ε)``
and bias ``(b − μ)·γ/√(σ² + ε) + β``: one pass over the map instead of two, equal up to float rounding. A
BatchNorm *before* a zero-padded convolution is left alone (folding it would change the border).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def _pairs(parent: nn.Module) -> Iterator[tuple[str, str]]:
    """(conv name, BN name) of ``parent``'s children where the BN takes the convolution's output: adjacent
    entries of an ``nn.Sequential``, or ``convK`` / ``bnK`` attributes (ResNet blocks)."""
    children = dict(parent.named_children())
    if isinstance(parent, nn.Sequential):
        names = list(children)
        candidates = zip(names, names[1:])
    else:
        candidates = ((name, "bn" + name[4:]) for name in children if name[:4] == "conv" and name[4:].isdigit())
    for conv_name, bn_name in candidates:
        conv, bn = children.get(conv_name), children.get(bn_name)
        if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and not bn.training \
                and bn.running_mean is not None and bn.num_features == conv.out_channels:
            yield conv_name, bn_name


@torch.no_grad()
def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing ``bn(conv(x))`` of an eval-mode ``bn`` (computed in float64, stored in the
    convolution's dtype, on its device, with its ``requires_grad``)."""
    weight = conv.weight.double()
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = -bn.running_mean.double() if conv.bias is None else conv.bias.double() - bn.running_mean.double()
    bias = bias * scale + (0 if bn.bias is None else bn.bias.double())
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    out.weight.copy_(weight * scale.view(-1, 1, 1, 1))
    out.bias.copy_(bias)
    out.train(conv.training)
    return out.requires_grad_(conv.weight.requires_grad)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """``module`` with every eval-mode ``BatchNorm2d`` that follows a ``Conv2d`` (see :func:`_pairs`) folded
    into it and replaced by ``nn.Identity`` (in place; returned). Train-mode BatchNorms are left alone. The
    state dict changes (the folded BN keys go, the convolutions gain biases): fold only a module loaded for
    inference, never one that is trained or saved."""
    for parent in list(module.modules()):
        for conv_name, bn_name in list(_pairs(parent)):
            setattr(parent, conv_name, folded_conv(getattr(parent, conv_name), getattr(parent, bn_name)))
            setattr(parent, bn_name, nn.Identity())
    return module
