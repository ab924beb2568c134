"""Optimizations that keep the maths: the same function, computed faster.

Introduced in notebook ``02_compression_vs_optimization``, as the counterpart of
compression (lessons 03–06), which changes the function to make the model smaller.

Folding BatchNorm into the convolution before it is the classic example. In eval mode
BatchNorm is a fixed per-channel affine map,
``bn(y) = γ · (y − μ) / √(σ² + ε) + β``, so after a convolution ``y = W * x + b`` it can
be merged into the convolution's own weights (Jacob et al. 2018 describe it for
quantized inference):

    s = γ / √(σ² + ε)          (one scale per output channel)
    W' = s · W                  (scale each output channel's filter)
    b' = s · (b − μ) + β

One layer fewer to run, the same outputs up to rounding.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["fold_batchnorm", "fold_batchnorms"]


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``nn.Conv2d`` equal to ``bn(conv(x))`` with ``bn`` in eval mode.

    Neither argument is changed. The result always has a bias.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"bn must be an nn.BatchNorm2d, got {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise ValueError(
            f"bn has {bn.num_features} features but conv has {conv.out_channels} output "
            "channels; they must match"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn must track running statistics (track_running_stats=True)")

    folded = copy.deepcopy(conv)
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        folded.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
    return folded


def fold_batchnorms(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d inside an ``nn.Sequential``.

    Works on models built from ``nn.Sequential`` containers (such as
    ``lrlib.models.CNN``; pairs inside other modules are left alone, since their order of
    use is not known): each folded BatchNorm is replaced by ``nn.Identity``. The
    result is in eval mode. The caller's model is left unchanged unless ``inplace=True``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    target = model if inplace else copy.deepcopy(model)
    _fold_children(target)
    return target.eval()


def _fold_children(module: nn.Module) -> None:
    """Fold conv → bn pairs among the children of every nn.Sequential inside ``module``.

    Only Sequential containers run their children in the order they are listed, so only
    there does "a BatchNorm2d right after a Conv2d" mean that one is applied to the
    other's output.
    """
    previous_name, previous = None, None
    for name, child in list(module.named_children()):
        if (isinstance(module, nn.Sequential) and isinstance(child, nn.BatchNorm2d)
                and isinstance(previous, nn.Conv2d)):
            setattr(module, previous_name, fold_batchnorm(previous, child))
            setattr(module, name, nn.Identity())
            previous_name, previous = name, None
            continue
        _fold_children(child)
        previous_name, previous = name, child
