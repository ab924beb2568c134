"""Efficient building blocks made of 1×1 convolutions: the Fire module, the depthwise
separable convolution and the bottleneck, with the formulas for what each one costs.

Introduced in notebook ``06_one_by_one_convolutions``.

A 1×1 convolution applies one and the same Linear layer to the channel vector of every
pixel (Lin, Chen & Yan 2014, "Network in Network"): ``y[:, :, h, w] = W x[:, :, h, w] + b``.
It mixes channels and sees no neighbours. The blocks below spend most of their parameters
and FLOPs in such layers and keep only a few cheap spatial filters:

* :class:`Fire` (Iandola et al. 2016, SqueezeNet): squeeze the channels with a 1×1
  convolution, then expand them again with 1×1 and 3×3 filters side by side;
* :class:`DepthwiseSeparableConv2d` (Howard et al. 2017, MobileNets; Chollet 2017): one
  k×k filter per input channel, then a 1×1 convolution that mixes the channels;
* :class:`Bottleneck` (Szegedy et al. 2015; He et al. 2016): 1×1 reduce, 3×3 at the
  narrow width, 1×1 expand.

FLOPs follow :func:`lrlib.profile.count_flops` (PyTorch's ``FlopCounterMode``): a
multiply-add counts as 2 FLOPs; biases, ReLU, BatchNorm in eval mode and additions are not
counted. A convolution with ``C_in`` inputs, ``C_out`` outputs, a k×k kernel and an output
of ``H'×W'`` pixels costs ``2·b·H'·W'·C_out·C_in·k²`` FLOPs on a batch of ``b`` and has
``C_out·C_in·k²`` weights (``+ C_out`` biases); ``H' = (H + 2·padding - k) // stride + 1``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .validate import check_bool, check_finite, check_int, check_tensor, check_type

__all__ = [
    "conv1x1_as_matmul",
    "Fire",
    "fire_params",
    "fire_flops",
    "DepthwiseSeparableConv2d",
    "separable_params",
    "separable_flops",
    "separable_cost_ratio",
    "Bottleneck",
    "bottleneck_params",
    "bottleneck_flops",
]


# --------------------------------------------------------------------------- checks
def _image_size(height, width, batch) -> tuple:
    """``(height, width, batch)`` if all three are positive ints."""
    return (check_int(height, "height", minimum=1), check_int(width, "width", minimum=1),
            check_int(batch, "batch", minimum=1))


def _output_size(name: str, size: int, kernel_size: int, stride: int, padding: int) -> int:
    """``(size + 2·padding - kernel_size) // stride + 1``, the output size of a convolution."""
    out = (size + 2 * padding - kernel_size) // stride + 1
    if out < 1:
        raise ValueError(
            f"{name}={size} is too small for kernel_size={kernel_size} with padding={padding}: "
            f"the output would be empty (need {name} + 2·padding >= kernel_size)"
        )
    return out


# --------------------------------------------------------------------------- 1×1 = matmul
def conv1x1_as_matmul(x: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """A 1×1 convolution computed as a matrix product at every pixel.

    For ``x`` of shape ``(B, C_in, H, W)`` and ``weight`` of shape ``(C_out, C_in)`` (or the
    ``(C_out, C_in, 1, 1)`` of an ``nn.Conv2d``), the result is
    ``y[b, :, h, w] = weight @ x[b, :, h, w] + bias``: the Linear layer ``(weight, bias)``
    applied to the channel vector of each pixel (Lin, Chen & Yan 2014). It equals
    ``F.conv2d(x, weight.view(C_out, C_in, 1, 1), bias)``.
    """
    check_tensor(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be a 4-d tensor (batch, channels, height, width), got shape "
                         f"{tuple(x.shape)}")
    check_tensor(weight, "weight")
    if bias is not None:
        check_tensor(bias, "bias")
    if weight.ndim == 4 and weight.shape[2:] == (1, 1):
        weight = weight[:, :, 0, 0]
    if weight.ndim != 2 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight must have shape (C_out, {x.shape[1]}) or (C_out, {x.shape[1]}, 1, 1) for "
            f"an input with {x.shape[1]} channels, got {tuple(weight.shape)}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), one entry per output "
                         f"channel, got {tuple(bias.shape)}")
    pixels = x.movedim(1, -1)                        # (B, H, W, C_in): one vector per pixel
    y = pixels @ weight.T                            # (B, H, W, C_out)
    if bias is not None:
        y = y + bias
    return y.movedim(-1, 1)                          # back to (B, C_out, H, W)


# --------------------------------------------------------------------------- Fire
def fire_params(in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> int:
    """Parameters of :class:`Fire`, biases included:
    ``s·C_in + s  +  e1·s + e1  +  e3·s·9 + e3``, i.e. ``s·(C_in + e1 + 9·e3) + s + e1 + e3``
    with ``s = squeeze``, ``e1 = expand1x1``, ``e3 = expand3x3``."""
    c, s, e1, e3 = _fire_arguments(in_channels, squeeze, expand1x1, expand3x3)
    return s * (c + e1 + 9 * e3) + s + e1 + e3


def fire_flops(in_channels: int, squeeze: int, expand1x1: int, expand3x3: int,
               height: int, width: int, *, batch: int = 1) -> int:
    """FLOPs of one :class:`Fire` call on a ``(batch, in_channels, height, width)`` input:
    ``2·b·H·W·s·(C_in + e1 + 9·e3)`` (every convolution keeps the ``H×W`` size)."""
    c, s, e1, e3 = _fire_arguments(in_channels, squeeze, expand1x1, expand3x3)
    height, width, batch = _image_size(height, width, batch)
    return 2 * batch * height * width * s * (c + e1 + 9 * e3)


def _fire_arguments(in_channels, squeeze, expand1x1, expand3x3) -> tuple:
    in_channels = check_int(in_channels, "in_channels", minimum=1)
    squeeze = check_int(squeeze, "squeeze", minimum=1)
    expand1x1 = check_int(expand1x1, "expand1x1", minimum=1)
    expand3x3 = check_int(expand3x3, "expand3x3", minimum=1)
    if squeeze >= in_channels:
        raise ValueError(
            f"squeeze must be smaller than in_channels={in_channels} (the squeeze layer "
            f"reduces the channels), got squeeze={squeeze}"
        )
    return in_channels, squeeze, expand1x1, expand3x3


class Fire(nn.Module):
    """The Fire module of SqueezeNet (Iandola et al. 2016).

    ``squeeze``: a 1×1 convolution ``C_in → s``; then, on its output, ``expand1x1``
    (1×1, ``s → e1``) and ``expand3x3`` (3×3 with padding 1, ``s → e3``) side by side. Each
    of the three convolutions has a bias and is followed by a ReLU, and the two expand
    outputs are concatenated along the channels:

    ``y = concat(relu(E1 ∗ z), relu(E3 ∗ z)),   z = relu(S ∗ x)``

    so the output has ``e1 + e3`` channels and the input's height and width.

    Cost (:func:`fire_params`, :func:`fire_flops`): ``s·(C_in + e1 + 9·e3) + s + e1 + e3``
    parameters and ``2·b·H·W·s·(C_in + e1 + 9·e3)`` FLOPs, against ``9·C_in·(e1 + e3)``
    weights for one 3×3 convolution with the same input and output channels. The savings
    come from SqueezeNet's three strategies: many filters are 1×1 (9× cheaper), the 3×3
    filters see only ``s`` input channels, and ``s`` is small.

    Parameters
    ----------
    in_channels : int
        ``C_in``, positive.
    squeeze : int
        ``s``, the channels after the squeeze layer: positive and smaller than
        ``in_channels`` (otherwise nothing is squeezed). SqueezeNet also keeps it below
        ``e1 + e3``.
    expand1x1, expand3x3 : int
        ``e1`` and ``e3``, the output channels of the two expand layers, positive.
    """

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int,
                 *, device=None, dtype=None):
        super().__init__()
        c, s, e1, e3 = _fire_arguments(in_channels, squeeze, expand1x1, expand3x3)
        self.in_channels, self.out_channels = c, e1 + e3
        options = dict(device=device, dtype=dtype)
        self.squeeze = nn.Conv2d(c, s, kernel_size=1, **options)
        self.expand1x1 = nn.Conv2d(s, e1, kernel_size=1, **options)
        self.expand3x3 = nn.Conv2d(s, e3, kernel_size=3, padding=1, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(z)), F.relu(self.expand3x3(z))], dim=1)


# --------------------------------------------------------------------------- separable
def separable_params(in_channels: int, out_channels: int, kernel_size: int, *,
                     bias: bool = True) -> int:
    """Parameters of :class:`DepthwiseSeparableConv2d`: ``C_in·k²`` (depthwise) ``+
    C_in·C_out`` (pointwise) ``+ C_out`` if ``bias``; a dense convolution has
    ``C_in·C_out·k²``."""
    c = check_int(in_channels, "in_channels", minimum=1)
    n = check_int(out_channels, "out_channels", minimum=1)
    k = check_int(kernel_size, "kernel_size", minimum=1)
    check_bool(bias, "bias")
    return c * k * k + c * n + (n if bias else 0)


def separable_flops(in_channels: int, out_channels: int, kernel_size: int, height: int,
                    width: int, *, stride: int = 1, padding: int = 0, batch: int = 1) -> int:
    """FLOPs of one :class:`DepthwiseSeparableConv2d` call on a ``(b, C_in, H, W)`` input:
    ``2·b·H'·W'·C_in·(k² + C_out)``, with ``H' = (H + 2·padding - k) // stride + 1`` and
    the same for ``W'``; the dense convolution needs ``2·b·H'·W'·C_in·C_out·k²``."""
    c = check_int(in_channels, "in_channels", minimum=1)
    n = check_int(out_channels, "out_channels", minimum=1)
    k = check_int(kernel_size, "kernel_size", minimum=1)
    stride = check_int(stride, "stride", minimum=1)
    padding = check_int(padding, "padding", minimum=0)
    height, width, batch = _image_size(height, width, batch)
    h_out = _output_size("height", height, k, stride, padding)
    w_out = _output_size("width", width, k, stride, padding)
    return 2 * batch * h_out * w_out * c * (k * k + n)


def separable_cost_ratio(out_channels: int, kernel_size: int) -> float:
    """``1/C_out + 1/k²``: FLOPs (and, without biases, parameters) of a depthwise separable
    convolution divided by those of the dense k×k convolution it replaces (Howard et al.
    2017). For ``k = 3`` and many output channels it approaches 1/9."""
    n = check_int(out_channels, "out_channels", minimum=1)
    k = check_int(kernel_size, "kernel_size", minimum=1)
    return 1 / n + 1 / (k * k)


class DepthwiseSeparableConv2d(nn.Module):
    """A k×k convolution split into a depthwise and a pointwise convolution
    (Howard et al. 2017; Chollet 2017).

    ``depthwise``: ``nn.Conv2d(C_in, C_in, k, stride, padding, groups=C_in, bias=False)``,
    one k×k filter per input channel, which filters space but mixes no channels;
    ``pointwise``: ``nn.Conv2d(C_in, C_out, 1, bias=bias)``, which mixes channels but sees
    no neighbours. Together they map ``(B, C_in, H, W)`` to ``(B, C_out, H', W')`` exactly
    like ``nn.Conv2d(C_in, C_out, k, stride, padding)``, with
    ``H' = (H + 2·padding - k) // stride + 1``.

    The pair is a dense convolution whose kernel is restricted to
    ``K[o, i, :, :] = P[o, i] · D[i, :, :]``: for every input channel ``i``, the
    ``C_out × k²`` slice ``K[:, i]`` has rank one. :meth:`to_dense` builds that convolution;
    :meth:`from_conv` finds the closest such kernel to a trained one with one rank-1
    truncated SVD per input channel (lesson 03). This class is the plain, linear
    factorization; MobileNets put BatchNorm and a ReLU after each of the two convolutions.

    Cost (:func:`separable_params`, :func:`separable_flops`): ``C_in·k² + C_in·C_out``
    weights and ``2·b·H'·W'·C_in·(k² + C_out)`` FLOPs, a fraction
    ``1/C_out + 1/k²`` (:func:`separable_cost_ratio`) of the dense convolution's.

    Parameters
    ----------
    in_channels, out_channels : int
        Positive.
    kernel_size : int
        Side of the square depthwise kernel, positive.
    stride : int
        Stride of the depthwise convolution, positive (default 1).
    padding : int
        Zero padding of the depthwise convolution, ``>= 0`` (default 0, as in
        ``nn.Conv2d``; ``kernel_size // 2`` keeps the size at stride 1 for odd kernels).
    bias : bool
        Whether the pointwise convolution has a bias (the depthwise one never has: a
        bias there would only add a constant that the pointwise bias can absorb).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int = 0, *, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        c = check_int(in_channels, "in_channels", minimum=1)
        n = check_int(out_channels, "out_channels", minimum=1)
        k = check_int(kernel_size, "kernel_size", minimum=1)
        stride = check_int(stride, "stride", minimum=1)
        padding = check_int(padding, "padding", minimum=0)
        check_bool(bias, "bias")
        self.in_channels, self.out_channels = c, n
        self.kernel_size, self.stride, self.padding = k, stride, padding
        options = dict(device=device, dtype=dtype)
        self.depthwise = nn.Conv2d(c, c, k, stride=stride, padding=padding, groups=c,
                                   bias=False, **options)
        self.pointwise = nn.Conv2d(c, n, 1, bias=bias, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")

    def to_dense(self) -> nn.Conv2d:
        """The ``nn.Conv2d`` that computes the same function, with kernel
        ``K[o, i] = P[o, i] · D[i]`` (``P`` the pointwise, ``D`` the depthwise weights)."""
        depthwise = self.depthwise.weight.detach()               # (C_in, 1, k, k)
        pointwise = self.pointwise.weight.detach()[:, :, 0, 0]   # (C_out, C_in)
        has_bias = self.pointwise.bias is not None
        dense = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                          stride=self.stride, padding=self.padding, bias=has_bias,
                          device=depthwise.device, dtype=depthwise.dtype)
        with torch.no_grad():
            dense.weight.copy_(pointwise[:, :, None, None] * depthwise[:, 0][None])
            if has_bias:
                dense.bias.copy_(self.pointwise.bias)
        return dense

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "DepthwiseSeparableConv2d":
        """The depthwise separable convolution closest to a trained ``conv``.

        For each input channel ``i`` the slice ``K[:, i]``, reshaped to a
        ``C_out × k²`` matrix ``M_i``, is replaced by its best rank-1 approximation
        ``σ₁ u₁ v₁ᵀ`` (Eckart & Young 1936): ``D[i] = √σ₁ v₁`` (reshaped to k×k) and
        ``P[:, i] = √σ₁ u₁``. Since the squared Frobenius error is the sum over the slices,
        no other depthwise separable kernel is closer to ``K``; the error is
        ``Σ_i Σ_{j≥2} σ_j(M_i)²``. The bias is kept. ``conv`` is not changed.
        """
        check_type(conv, "conv", nn.Conv2d)
        k_h, k_w = conv.kernel_size
        problems = []
        if k_h != k_w:
            problems.append(f"kernel_size={conv.kernel_size} (must be square)")
        if conv.groups != 1:
            problems.append(f"groups={conv.groups} (must be 1)")
        if conv.dilation != (1, 1):
            problems.append(f"dilation={conv.dilation} (must be 1)")
        if conv.stride[0] != conv.stride[1]:
            problems.append(f"stride={conv.stride} (must be the same in both directions)")
        if isinstance(conv.padding, str) or conv.padding[0] != conv.padding[1]:
            problems.append(f"padding={conv.padding!r} (must be one int for both directions)")
        if conv.padding_mode != "zeros":
            problems.append(f"padding_mode={conv.padding_mode!r} (must be 'zeros')")
        if problems:
            raise ValueError("conv cannot be turned into a DepthwiseSeparableConv2d: "
                             + ", ".join(problems))
        weight = check_finite(conv.weight.detach(), "conv.weight")
        n, c = conv.out_channels, conv.in_channels
        slices = weight.double().permute(1, 0, 2, 3).reshape(c, n, k_h * k_w)   # M_i, (C_in, C_out, k²)
        U, S, Vh = torch.linalg.svd(slices, full_matrices=False)
        root = S[:, 0].sqrt()                                                     # √σ₁ per channel
        block = cls(c, n, k_h, stride=conv.stride[0], padding=conv.padding[0],
                    bias=conv.bias is not None, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            block.depthwise.weight.copy_((root[:, None] * Vh[:, 0, :]).reshape(c, 1, k_h, k_w))
            block.pointwise.weight.copy_((U[:, :, 0] * root[:, None]).T.reshape(n, c, 1, 1))
            if conv.bias is not None:
                block.pointwise.bias.copy_(conv.bias.detach())
        return block


# --------------------------------------------------------------------------- bottleneck
def _bottleneck_arguments(in_channels, mid_channels, out_channels, stride) -> tuple:
    c = check_int(in_channels, "in_channels", minimum=1)
    m = check_int(mid_channels, "mid_channels", minimum=1)
    n = check_int(out_channels, "out_channels", minimum=1)
    stride = check_int(stride, "stride", minimum=1)
    if m > min(c, n):
        raise ValueError(
            f"mid_channels must be at most min(in_channels, out_channels) = {min(c, n)} "
            f"(the middle is the narrow part), got mid_channels={m}"
        )
    return c, m, n, stride


def bottleneck_params(in_channels: int, mid_channels: int, out_channels: int) -> int:
    """Parameters of :class:`Bottleneck`: ``C_in·m + 9·m² + m·C_out`` convolution weights
    plus ``2·(m + m + C_out)`` BatchNorm scales and shifts (the residual adds none)."""
    c, m, n, _ = _bottleneck_arguments(in_channels, mid_channels, out_channels, 1)
    return c * m + 9 * m * m + m * n + 2 * (2 * m + n)


def bottleneck_flops(in_channels: int, mid_channels: int, out_channels: int, height: int,
                     width: int, *, stride: int = 1, batch: int = 1) -> int:
    """FLOPs of one :class:`Bottleneck` call on a ``(b, C_in, H, W)`` input:
    ``2·b·(H·W·C_in·m + H'·W'·(9·m² + m·C_out))`` with ``H' = (H - 1) // stride + 1``
    (the 3×3 convolution has padding 1 and carries the stride)."""
    c, m, n, stride = _bottleneck_arguments(in_channels, mid_channels, out_channels, stride)
    height, width, batch = _image_size(height, width, batch)
    h_out = _output_size("height", height, 3, stride, 1)
    w_out = _output_size("width", width, 3, stride, 1)
    return 2 * batch * (height * width * c * m + h_out * w_out * (9 * m * m + m * n))


class Bottleneck(nn.Module):
    """A channel bottleneck: 1×1 reduce → 3×3 → 1×1 expand (Szegedy et al. 2015;
    He et al. 2016).

    ``reduce`` (1×1, ``C_in → m``), ``conv`` (3×3, padding 1, stride ``stride``,
    ``m → m``) and ``expand`` (1×1, ``m → C_out``), each without bias and followed by
    BatchNorm (``bn1``, ``bn2``, ``bn3``); a ReLU follows ``bn1`` and ``bn2``, and one
    follows the end of the block. With ``residual=True`` the input is added before that last
    ReLU, as in He et al.'s bottleneck with an identity shortcut:
    ``y = relu(x + bn3(expand(relu(bn2(conv(relu(bn1(reduce(x)))))))))``.

    The expensive 3×3 filters see only ``m`` channels. Cost (:func:`bottleneck_params`,
    :func:`bottleneck_flops`): ``C_in·m + 9·m² + m·C_out`` weights (+ ``2·(2m + C_out)``
    BatchNorm parameters) against ``9·C_in·C_out`` for one 3×3 convolution; He et al.'s
    256 → 64 → 256 block has 69,632 weights where a 3×3 convolution 256 → 256 has 589,824.
    Without BatchNorm and ReLU the chain is exactly the shape of a Tucker-2 convolution
    (Kim et al. 2016) with both ranks equal to ``m``.

    Parameters
    ----------
    in_channels, out_channels : int
        Positive.
    mid_channels : int
        ``m``, positive and at most ``min(in_channels, out_channels)``.
    stride : int
        Stride of the 3×3 convolution, positive (default 1).
    residual : bool
        Add the input to the output (default False). Needs ``in_channels ==
        out_channels`` and ``stride == 1``, so that the shapes match.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, *,
                 stride: int = 1, residual: bool = False, device=None, dtype=None):
        super().__init__()
        c, m, n, stride = _bottleneck_arguments(in_channels, mid_channels, out_channels, stride)
        check_bool(residual, "residual")
        if residual and (c != n or stride != 1):
            raise ValueError(
                "residual=True needs in_channels == out_channels and stride == 1 so that the "
                f"input can be added to the output, got in_channels={c}, out_channels={n}, "
                f"stride={stride}"
            )
        self.in_channels, self.mid_channels, self.out_channels = c, m, n
        self.stride, self.residual = stride, residual
        options = dict(device=device, dtype=dtype)
        self.reduce = nn.Conv2d(c, m, 1, bias=False, **options)
        self.bn1 = nn.BatchNorm2d(m, **options)
        self.conv = nn.Conv2d(m, m, 3, stride=stride, padding=1, bias=False, **options)
        self.bn2 = nn.BatchNorm2d(m, **options)
        self.expand = nn.Conv2d(m, n, 1, bias=False, **options)
        self.bn3 = nn.BatchNorm2d(n, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.reduce(x)))
        y = F.relu(self.bn2(self.conv(y)))
        y = self.bn3(self.expand(y))
        if self.residual:
            y = y + x
        return F.relu(y)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} → {self.mid_channels} → {self.out_channels}, "
                f"stride={self.stride}, residual={self.residual}")
