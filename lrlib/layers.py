"""Factorized layers: modules that replace a dense Linear or Conv2d by a chain of thinner ones.

Introduced in notebook ``03_svd_low_rank`` (``LowRankLinear``); the convolution layers
``SVDConv2d``, ``Tucker2Conv2d`` and ``CPConv2d`` in ``05_decomposing_convolutions``.

Every class here follows one protocol, which :mod:`lrlib.factorizations` (the registry of
methods) and everything built on it rely on:

* ``from_dense(layer, rank, ...)`` factorizes a trained dense layer (``from_linear`` /
  ``from_conv`` are the same method under its familiar name); the dense layer is not changed;
* ``like(layer, rank, ...)`` makes an *untrained* copy with the dense layer's geometry, for
  counting (``device="meta"``: shapes only), timing, or loading a saved ``state_dict``;
* ``rank_candidates(layer)`` lists every rank the layer can take, cheapest first;
* ``params`` (a property) and ``flops(input_hw)`` (FLOPs per example; a multiply-add is 2,
  as ``lrlib.profile.count_flops`` counts) describe what the chain costs;
* ``to_dense()`` multiplies the chain back out into one dense layer;
* the first step is called ``first`` and the step that produces the output, and holds the
  bias, is called ``last``.

Ranks follow the mode order of the weight, as in tensorly: a Linear weight is ``(m, n) =
(out, in)`` and a conv kernel ``(C_out, C_in, k_h, k_w)``, so a Tucker-2 pair is ``(R_out, R_in)``.

References: Denton, Zaremba, Bruna, LeCun & Fergus 2014, "Exploiting linear structure within
convolutional networks for efficient evaluation", NeurIPS; Xue, Li & Gong 2013, "Restructuring
of deep neural network acoustic models with singular value decomposition", Interspeech;
Zhang, Zou, He & Sun 2016, "Accelerating very deep convolutional networks for classification
and detection", IEEE TPAMI; Kim, Park, Yoo, Choi, Yang & Shin 2016, "Compression of deep
convolutional neural networks for fast and low power mobile applications", ICLR; Lebedev,
Ganin, Rakhuba, Oseledets & Lempitsky 2015, "Speeding-up convolutional neural networks using
fine-tuned CP-decomposition", ICLR.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .data_aware import DEFAULT_ALPHA, activation_aware_factors, whitened_factors, whitened_tucker2
from .svd import check_rank, randomized_svd, truncated_svd
from .validate import check_choice, check_finite, check_int, check_positive_ints, check_type

__all__ = ["LowRankLinear", "SVDConv2d", "Tucker2Conv2d", "CPConv2d", "check_conv",
           "conv_output_size", "conv_flops", "dense_flops", "max_cp_rank", "SVD_ALGORITHMS",
           "CP_IMPLEMENTATIONS", "DEFAULT_CP_IMPLEMENTATION"]

#: How the truncated SVD of a weight is computed: exactly, or by the randomized SVD of
#: Halko, Martinsson & Tropp (2011).
SVD_ALGORITHMS = ("svd", "randomized")


def _svd_factors(matrix: torch.Tensor, rank: int, algorithm: str, seed, *, input_gram=None,
                 input_mean_abs=None, alpha: float = DEFAULT_ALPHA, damping: float = 0.0):
    """``(first, last)`` with ``last @ first`` a rank-``rank`` approximation of ``matrix``
    (float64), the singular values split evenly: ``first = √S Vᴴ``, ``last = U √S``, so both
    factors get similar scales (which suits fine-tuning).

    Without calibration statistics it is the best approximation of the weights (the truncated
    SVD, exact or randomized). With ``input_gram`` it is the whitened SVD, the best
    approximation of the outputs on the calibration inputs; with ``input_mean_abs`` the
    activation-aware SVD (see :mod:`lrlib.data_aware`)."""
    check_choice(algorithm, "algorithm", SVD_ALGORITHMS)
    if input_gram is not None and input_mean_abs is not None:
        raise ValueError("pass input_gram (whitened SVD) or input_mean_abs (activation-aware SVD), "
                         "not both")
    if input_gram is not None:
        return whitened_factors(matrix, input_gram, rank, damping=damping)
    if input_mean_abs is not None:
        return activation_aware_factors(matrix, input_mean_abs, rank, alpha=alpha)
    if algorithm == "svd":
        U, S, Vh = truncated_svd(matrix, rank)
    else:
        U, S, Vh = randomized_svd(matrix, rank, seed=seed)
    root = S.sqrt()
    return root[:, None] * Vh, U * root


def _count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class LowRankLinear(nn.Module):
    """A Linear layer of rank ``rank``: ``last(first(x))``.

    ``y = W x + b`` (``W`` of shape ``m×n``) becomes ``y = B (A x) + b`` with ``A`` of shape
    ``r×n`` and ``B`` of shape ``m×r``, built from the truncated SVD
    ``W ≈ U_r diag(S_r) V_rᴴ`` as ``A = √S_r V_rᴴ`` and ``B = U_r √S_r`` (Denton et al. 2014
    and Xue, Li & Gong 2013 applied this to the layers of trained networks). ``first`` is
    ``nn.Linear(in_features, rank, bias=False)`` (``A``), ``last`` is
    ``nn.Linear(rank, out_features, bias=bias)`` (``B``): two matrix products, so the model
    stays scriptable and exportable.

    Parameters: ``r(m + n)`` weights (plus ``m`` biases) against ``mn``. FLOPs per example:
    ``2r(m + n)`` against ``2mn``.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 *, device=None, dtype=None):
        super().__init__()
        check_int(in_features, "in_features", minimum=1)
        check_int(out_features, "out_features", minimum=1)
        check_rank(rank, (out_features, in_features))
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.last = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.first(x))

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, *, algorithm: str = "svd",
                    seed=0, input_gram=None, input_mean_abs=None,
                    alpha: float = DEFAULT_ALPHA, damping: float = 0.0) -> "LowRankLinear":
        """Factorize a trained ``nn.Linear`` at ``rank`` (``1 ≤ rank ≤ min(m, n)``);
        ``linear`` is not changed.

        ``algorithm="svd"`` truncates the exact SVD; ``"randomized"`` uses the randomized
        SVD of Halko, Martinsson & Tropp (2011), reproducible through ``seed``. The SVD is
        computed in float64 and the factors are cast back to the layer's dtype.

        Data-aware (:mod:`lrlib.data_aware`, statistics from
        :func:`lrlib.calibration.collect_statistics`): ``input_gram`` (``n × n``, the Gram
        matrix of the layer's calibration inputs) gives the whitened SVD, the rank-``rank``
        layer with the smallest output error on those inputs (``damping`` adds a share of
        the weight error, :func:`lrlib.data_aware.damped`); ``input_mean_abs`` (``n``)
        gives the activation-aware SVD with exponent ``alpha``.
        """
        check_type(linear, "linear", nn.Linear)
        weight = check_finite(linear.weight.detach(), "linear.weight")
        check_rank(rank, weight.shape)
        first, last = _svd_factors(weight.double(), rank, algorithm, seed, input_gram=input_gram,
                                   input_mean_abs=input_mean_abs, alpha=alpha, damping=damping)
        layer = cls.like(linear, rank)
        with torch.no_grad():
            layer.first.weight.copy_(first)
            layer.last.weight.copy_(last)
            if linear.bias is not None:
                layer.last.bias.copy_(linear.bias)
        return layer

    from_dense = from_linear

    @classmethod
    def from_svd(cls, U, S, Vh, bias=None, *, rank: int, dtype=None) -> "LowRankLinear":
        """Build the layer from an SVD ``W = U diag(S) Vh`` computed beforehand, keeping its
        first ``rank`` triplets (split ``A = √S Vᴴ``, ``B = U √S`` as in :meth:`from_linear`).

        Useful in a sweep over ranks: compute the SVD of a weight once, then slice it for
        every rank. ``bias`` (a tensor or None) is copied; ``dtype`` defaults to ``U``'s.
        """
        if (U.ndim != 2 or S.ndim != 1 or Vh.ndim != 2
                or U.shape[1] != len(S) or len(S) != Vh.shape[0]):
            raise ValueError(f"U, S, Vh must have shapes (m, k), (k,), (k, n); got "
                             f"{tuple(U.shape)}, {tuple(S.shape)}, {tuple(Vh.shape)}")
        check_rank(rank, (U.shape[0], Vh.shape[1]))
        if rank > len(S):
            raise ValueError(f"rank must be at most the {len(S)} singular values given, got {rank}")
        root = S[:rank].sqrt()
        layer = cls(Vh.shape[1], U.shape[0], rank, bias=bias is not None,
                    device=U.device, dtype=dtype or U.dtype)
        with torch.no_grad():
            layer.first.weight.copy_(root[:, None] * Vh[:rank])
            layer.last.weight.copy_(U[:, :rank] * root)
            if bias is not None:
                layer.last.bias.copy_(bias)
        return layer

    @classmethod
    def like(cls, linear: nn.Linear, rank: int, *, device=None, dtype=None) -> "LowRankLinear":
        """An untrained ``LowRankLinear`` of ``rank`` with ``linear``'s features and bias
        (present or not); on ``linear``'s device and dtype unless given."""
        check_type(linear, "linear", nn.Linear)
        return cls(linear.in_features, linear.out_features, rank, bias=linear.bias is not None,
                   device=device or linear.weight.device, dtype=dtype or linear.weight.dtype)

    @staticmethod
    def rank_candidates(linear: nn.Linear) -> list:
        """Every rank a factorization of ``linear`` can have: ``1 … min(m, n)``."""
        return list(range(1, min(linear.in_features, linear.out_features) + 1))

    def to_dense(self) -> nn.Linear:
        """An ``nn.Linear`` computing the same function: ``W = B A``, same bias."""
        weight = self.last.weight
        dense = nn.Linear(self.in_features, self.out_features, bias=self.last.bias is not None,
                          device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            dense.weight.copy_(self.last.weight @ self.first.weight)
            if self.last.bias is not None:
                dense.bias.copy_(self.last.bias)
        return dense

    @property
    def params(self) -> int:
        """Number of parameters: ``r(m + n)`` weights plus the biases."""
        return _count_params(self)

    def flops(self, input_hw=None) -> int:
        """FLOPs per example: ``2r(n + m)`` for each input vector. ``input_hw`` is the shape
        between the batch and the feature dimension, if any (e.g. ``(T,)`` for ``T`` tokens):
        the layer runs once per position."""
        positions = 1 if input_hw is None else math.prod(_tuple(input_hw))
        return 2 * self.rank * (self.in_features + self.out_features) * positions

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, bias={self.last.bias is not None}")


# --------------------------------------------------------------------------- convolutions
#
# Introduced in notebook ``05_decomposing_convolutions``. A convolution's weight is a 4-way
# tensor K of shape (C_out, C_in, k_h, k_w). Each class below replaces one nn.Conv2d by a
# short chain of thinner convolutions built from a decomposition of K, so that the chain
# computes (nearly) the same function:
#
#   SVDConv2d      K_(1) ≈ U S Vᵀ, the kernel unfolded to C_out × (C_in k_h k_w):
#                  k_h×k_w conv C_in→R, then 1×1 conv R→C_out   (channel SVD, Zhang et al. 2016)
#   Tucker2Conv2d  K ≈ G ×_1 U_out ×_2 U_in, ranks (R_out, R_in):
#                  1×1 C_in→R_in, k_h×k_w R_in→R_out, 1×1 R_out→C_out   (Kim et al. 2016)
#   CPConv2d       K ≈ Σ_r λ_r a_r^out ∘ a_r^in ∘ a_r^h ∘ a_r^w:
#                  1×1 C_in→R, depthwise k_h×k_w (or k_h×1 then 1×k_w), 1×1 R→C_out
#                  (Lebedev et al. 2015)
#
# The spatial convolution(s) of each chain take the original stride, padding and dilation;
# the 1×1 convolutions have none, so every chain keeps the original output size.

#: The two ways :class:`CPConv2d` runs its spatial step.
CP_IMPLEMENTATIONS = ("fused", "separable")

#: The CP chain built when none is named. Chosen by ``benchmarks/conv_speedup.py``: on the
#: 2-core CPU it was measured on, the fused chain (one depthwise k×k conv) ran faster than
#: the separable one (two depthwise convs) on most of the grid; see that script's output.
DEFAULT_CP_IMPLEMENTATION = "fused"


def _tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list, torch.Size)) else (value,)


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def check_conv(conv, name: str = "conv", *, finite: bool = True) -> nn.Conv2d:
    """Raise unless ``conv`` is a plain ``nn.Conv2d`` the chains can replace exactly:
    ``groups == 1``, ``padding_mode == "zeros"`` and (with ``finite``, when its weights are
    to be factorized) finite weights."""
    if isinstance(conv, nn.modules.conv._ConvTransposeNd):
        raise TypeError(f"{name} must be an nn.Conv2d; transposed convolutions "
                        f"({type(conv).__name__}) are not supported")
    check_type(conv, name, nn.Conv2d, "an nn.Conv2d (Conv1d, Conv3d and other layers are not "
                                      "supported)")
    if conv.groups != 1:
        raise ValueError(f"{name} has groups={conv.groups}; only groups=1 convolutions can be "
                         "factorized (a grouped conv is already a block-diagonal factorization)")
    if conv.padding_mode != "zeros":
        raise ValueError(f"{name} has padding_mode={conv.padding_mode!r}; only 'zeros' is "
                         "supported")
    if finite:
        check_finite(conv.weight, f"{name}.weight")
    return conv


def conv_output_size(input_hw, kernel_size, stride=1, padding=0, dilation=1) -> tuple:
    """Output height and width of a convolution on an ``input_hw = (H, W)`` input:
    ``⌊(H + 2p − d(k − 1) − 1) / s⌋ + 1`` per dimension; ``padding="same"`` keeps the
    size (stride 1) and ``"valid"`` means no padding."""
    (h, w), k, s, d = _pair(input_hw), _pair(kernel_size), _pair(stride), _pair(dilation)
    for name, value in (("input_hw", (h, w)), ("kernel_size", k), ("stride", s), ("dilation", d)):
        check_positive_ints(value, name, length=2)
    if padding == "same":
        return h, w
    p = (0, 0) if padding == "valid" else _pair(padding)
    return tuple((size + 2 * pad - dil * (kern - 1) - 1) // step + 1
                 for size, pad, dil, kern, step in zip((h, w), p, d, k, s))


def conv_flops(conv: nn.Conv2d, input_hw) -> int:
    """FLOPs of a dense ``nn.Conv2d`` per example (multiply-add = 2, bias not counted, as
    ``lrlib.profile.count_flops`` counts): ``2 · C_out · H_out W_out · (C_in / groups) · k_h k_w``."""
    check_type(conv, "conv", nn.Conv2d)
    h, w = conv_output_size(input_hw, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    k_h, k_w = conv.kernel_size
    return 2 * conv.out_channels * h * w * (conv.in_channels // conv.groups) * k_h * k_w


def dense_flops(layer: nn.Module, input_hw=None) -> int:
    """FLOPs per example of a dense ``nn.Linear`` (``2mn`` per position; ``input_hw`` as in
    :meth:`LowRankLinear.flops`) or ``nn.Conv2d`` (:func:`conv_flops`, ``input_hw`` needed)."""
    if isinstance(layer, nn.Conv2d):
        if input_hw is None:
            raise ValueError("input_hw must be given for a convolution: its FLOPs depend on "
                             "the input's height and width")
        return conv_flops(layer, input_hw)
    check_type(layer, "layer", (nn.Linear, nn.Conv2d))
    if input_hw is not None:
        check_positive_ints(_tuple(input_hw), "input_hw")
    positions = 1 if input_hw is None else math.prod(_tuple(input_hw))
    return 2 * layer.in_features * layer.out_features * positions


def _conv_from_weight(weight: torch.Tensor, bias=None, **geometry) -> nn.Conv2d:
    """An nn.Conv2d holding ``weight`` (and ``bias``), with the given stride, padding, …"""
    out_channels, in_channels, k_h, k_w = weight.shape
    conv = nn.Conv2d(in_channels, out_channels, (k_h, k_w), bias=bias is not None,
                     device=weight.device, dtype=weight.dtype, **geometry)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


def _geometry_of(conv: nn.Conv2d) -> dict:
    """The arguments a chain takes from the convolution it replaces."""
    return {"in_channels": conv.in_channels, "out_channels": conv.out_channels,
            "kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding,
            "dilation": conv.dilation, "bias": conv.bias is not None}


class _ConvChain(nn.Module):
    """What the factorized convolutions share: the original geometry, ``params``,
    ``to_dense()`` (multiply the chain out into one k_h×k_w kernel) and ``like``."""

    def _keep_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation):
        check_int(in_channels, "in_channels", minimum=1)
        check_int(out_channels, "out_channels", minimum=1)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if padding == "same" and self.stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride={stride!r}")

    def _geometry(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    def _output_hw(self, input_hw) -> tuple:
        return conv_output_size(input_hw, self.kernel_size, **self._geometry())

    @classmethod
    def like(cls, conv: nn.Conv2d, rank, *, device=None, dtype=None, **options) -> "_ConvChain":
        """An untrained chain of ``rank`` with ``conv``'s channels, kernel size, stride,
        padding, dilation and bias (present or not); on ``conv``'s device and dtype unless
        given. ``options`` go to the constructor (``implementation=`` for CP)."""
        check_conv(conv, finite=False)          # only its geometry is used
        return cls(rank=rank, **_geometry_of(conv), **options,
                   device=device or conv.weight.device, dtype=dtype or conv.weight.dtype)

    @property
    def params(self) -> int:
        """Number of parameters of the chain (weights and bias)."""
        return _count_params(self)

    def dense_kernel(self) -> torch.Tensor:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def to_dense(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` computing the same function: the chain multiplied out into one
        ``(C_out, C_in, k_h, k_w)`` kernel, with the same bias, stride, padding and dilation."""
        with torch.no_grad():
            return _conv_from_weight(self.dense_kernel(), self.last.bias, **self._geometry())


class SVDConv2d(_ConvChain):
    """A convolution of channel rank ``rank``: ``last(first(x))``.

    ``first`` is a ``k_h×k_w`` conv ``C_in → R`` (no bias, the original stride, padding and
    dilation), ``last`` a 1×1 conv ``R → C_out`` with the bias. It comes from the truncated
    SVD of the kernel unfolded to a ``C_out × (C_in k_h k_w)`` matrix, ``K_(1) ≈ U_R S_R V_Rᵀ``
    (Zhang et al. 2016 call it channel decomposition): every output channel's filter is a
    combination of ``R`` filters. For a 1×1 convolution this is exactly lesson 03's SVD of
    a Linear layer, applied at every pixel.

    Parameters: ``R (C_in k_h k_w + C_out)`` (+ bias) against ``C_out C_in k_h k_w``.
    FLOPs per output pixel: ``2R (C_in k_h k_w + C_out)`` against ``2 C_out C_in k_h k_w``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, stride=1,
                 padding=0, dilation=1, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        self._keep_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        k_h, k_w = self.kernel_size
        check_rank(rank, (out_channels, in_channels * k_h * k_w))
        self.rank = rank
        self.first = nn.Conv2d(in_channels, rank, self.kernel_size, bias=False, device=device,
                               dtype=dtype, **self._geometry())
        self.last = nn.Conv2d(rank, out_channels, 1, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.first(x))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int, *, algorithm: str = "svd",
                  seed=0, input_gram=None, input_mean_abs=None,
                  alpha: float = DEFAULT_ALPHA, damping: float = 0.0) -> "SVDConv2d":
        """Factorize a trained ``conv`` at channel rank ``rank`` (``1 ≤ R ≤ min(C_out,
        C_in k_h k_w)``) by the SVD of its unfolded kernel (exact, or ``algorithm=
        "randomized"``), computed in float64, with the singular values split evenly
        (``√S`` into each factor). ``conv`` is not changed.

        Data-aware, as for :meth:`LowRankLinear.from_linear`: the convolution is the product
        of its unfolded kernel with the input patches, so ``input_gram`` is the
        ``C_in k_h k_w``-square Gram matrix of the patches (``lrlib.calibration``) and the
        whitened channel SVD is the rank-``R`` chain of this form with the smallest output
        error on the calibration inputs; ``input_mean_abs`` gives ASVD."""
        conv = check_conv(conv)
        weight = conv.weight.detach()
        c_out, c_in, k_h, k_w = weight.shape
        check_rank(rank, (c_out, c_in * k_h * k_w))
        first, last = _svd_factors(weight.double().reshape(c_out, -1), rank, algorithm, seed,
                                   input_gram=input_gram, input_mean_abs=input_mean_abs,
                                   alpha=alpha, damping=damping)
        layer = cls.like(conv, rank)
        with torch.no_grad():
            layer.first.weight.copy_(first.reshape(rank, c_in, k_h, k_w))
            layer.last.weight.copy_(last[:, :, None, None])
            if conv.bias is not None:
                layer.last.bias.copy_(conv.bias)
        return layer

    from_dense = from_conv

    @staticmethod
    def rank_candidates(conv: nn.Conv2d) -> list:
        """Every channel rank: ``1 … min(C_out, C_in k_h k_w)``."""
        c_out, c_in, k_h, k_w = conv.weight.shape
        return list(range(1, min(c_out, c_in * k_h * k_w) + 1))

    def dense_kernel(self) -> torch.Tensor:
        """``K = B · A`` with ``A`` the first conv's kernel as a ``R × (C_in k_h k_w)`` matrix."""
        first = self.first.weight.reshape(self.rank, -1)
        return (self.last.weight[:, :, 0, 0] @ first).reshape(
            self.out_channels, self.in_channels, *self.kernel_size)

    def flops(self, input_hw) -> int:
        """FLOPs per example on an ``input_hw = (H, W)`` input: ``2 H_out W_out R (C_in k_h k_w + C_out)``."""
        h, w = self._output_hw(input_hw)
        k_h, k_w = self.kernel_size
        return 2 * h * w * self.rank * (self.in_channels * k_h * k_w + self.out_channels)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"rank={self.rank}, stride={self.stride}, padding={self.padding}")


class Tucker2Conv2d(_ConvChain):
    """A Tucker-2 convolution (Kim et al. 2016) of ranks ``(R_out, R_in)``: ``last(core(first(x)))``.

    ``first``: 1×1 conv ``C_in → R_in`` (the input factor ``U_inᵀ``); ``core``: ``k_h×k_w``
    conv ``R_in → R_out`` (the core tensor ``G``, with the original stride, padding and
    dilation); ``last``: 1×1 conv ``R_out → C_out`` (the output factor ``U_out``) with the bias.
    It is the Tucker decomposition ``K ≈ G ×_1 U_out ×_2 U_in`` with the two small spatial
    modes kept whole: ``K[o, i, y, x] ≈ Σ_{s,t} U_out[o, s] G[s, t, y, x] U_in[i, t]``.
    The ranks are in the kernel's mode order, output channels first, as
    :func:`lrlib.tensor.tucker_hooi` takes them.

    Parameters: ``C_in R_in + R_in R_out k_h k_w + R_out C_out`` (+ bias).
    FLOPs per example: ``2 (H W C_in R_in + H_out W_out (R_in R_out k_h k_w + R_out C_out))``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank, stride=1,
                 padding=0, dilation=1, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        self._keep_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.rank = _check_tucker2_rank(rank, in_channels, out_channels)
        r_out, r_in = self.rank
        self.first = nn.Conv2d(in_channels, r_in, 1, bias=False, device=device, dtype=dtype)
        self.core = nn.Conv2d(r_in, r_out, self.kernel_size, bias=False, device=device,
                              dtype=dtype, **self._geometry())
        self.last = nn.Conv2d(r_out, out_channels, 1, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.core(self.first(x)))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank, *, n_iter_max: int = 100, tol: float = 1e-8,
                  seed=None, input_gram=None, damping: float = 0.0) -> "Tucker2Conv2d":
        """Factorize a trained ``conv`` with ``rank = (R_out, R_in)`` (``1 ≤ R_out ≤ C_out``,
        ``1 ≤ R_in ≤ C_in``) by HOOI (:func:`lrlib.tensor.tucker_hooi`, in float64, with its
        defaults: it starts from the HOSVD, so ``seed`` changes nothing unless HOOI is given
        a random start) on the two channel modes. ``conv`` is not changed.

        With ``input_gram``, the Gram matrix of the layer's unfolded input patches on
        calibration data (``C_in k_h k_w`` square, :func:`lrlib.calibration.collect_statistics`),
        the factors are fitted to the layer's outputs instead
        (:func:`lrlib.data_aware.whitened_tucker2`, with ``damping``; ``n_iter_max``, ``tol``
        and ``seed`` are then unused)."""
        from .tensor import tucker_hooi

        conv = check_conv(conv)
        weight = conv.weight.detach()
        c_out, c_in, k_h, k_w = weight.shape
        r_out, r_in = _check_tucker2_rank(rank, c_in, c_out)
        if input_gram is not None:
            core, u_out, u_in = whitened_tucker2(weight, input_gram, (r_out, r_in), damping=damping)
        else:
            result = tucker_hooi(weight.double(), (r_out, r_in, k_h, k_w), n_iter_max=n_iter_max,
                                 tol=tol, seed=seed)
            core, (u_out, u_in, _, _) = result.core, result.factors
        # the spatial modes are kept whole (identity factors), so the core is (R_out, R_in, k_h, k_w)
        layer = cls.like(conv, (r_out, r_in))
        layer._load_tucker(core, u_out, u_in, conv.bias)
        return layer

    from_dense = from_conv

    @classmethod
    def from_tucker(cls, core, u_out, u_in, bias=None, *, stride=1, padding=0, dilation=1,
                    dtype=None) -> "Tucker2Conv2d":
        """Build the chain from a Tucker-2 decomposition computed beforehand, in mode order:
        ``core`` of shape ``(R_out, R_in, k_h, k_w)``, ``u_out`` ``(C_out, R_out)``,
        ``u_in`` ``(C_in, R_in)``."""
        if core.ndim != 4 or u_out.ndim != 2 or u_in.ndim != 2 \
                or u_out.shape[1] != core.shape[0] or u_in.shape[1] != core.shape[1]:
            raise ValueError("core, u_out, u_in must have shapes (R_out, R_in, k_h, k_w), "
                             f"(C_out, R_out), (C_in, R_in); got {tuple(core.shape)}, "
                             f"{tuple(u_out.shape)}, {tuple(u_in.shape)}")
        layer = cls(u_in.shape[0], u_out.shape[0], tuple(core.shape[2:]), tuple(core.shape[:2]),
                    stride, padding, dilation, bias=bias is not None, device=core.device,
                    dtype=dtype or core.dtype)
        layer._load_tucker(core, u_out, u_in, bias)
        return layer

    def _load_tucker(self, core, u_out, u_in, bias) -> None:
        with torch.no_grad():
            self.first.weight.copy_(u_in.T[:, :, None, None])
            self.core.weight.copy_(core)
            self.last.weight.copy_(u_out[:, :, None, None])
            if bias is not None:
                self.last.bias.copy_(bias)

    @staticmethod
    def rank_candidates(conv: nn.Conv2d) -> list:
        """Pairs ``(R_out, R_in)`` growing together in the ratio ``C_out : C_in`` (Kim et
        al. 2016 keep the two ranks proportional to the channels), smallest first."""
        c_out, c_in = conv.weight.shape[:2]
        largest = max(c_in, c_out)
        pairs = []
        for t in range(1, largest + 1):
            pair = (max(1, min(c_out, round(t * c_out / largest))),
                    max(1, min(c_in, round(t * c_in / largest))))
            if not pairs or pairs[-1] != pair:
                pairs.append(pair)
        return pairs

    def dense_kernel(self) -> torch.Tensor:
        """``K[o, i] = Σ_{s,t} U_out[o, s] G[s, t] U_in[i, t]`` for every tap."""
        return torch.einsum("os,styx,ti->oiyx", self.last.weight[:, :, 0, 0], self.core.weight,
                            self.first.weight[:, :, 0, 0])

    def flops(self, input_hw) -> int:
        """FLOPs per example on an ``input_hw = (H, W)`` input (see the class docstring)."""
        h, w = _pair(input_hw)
        h_out, w_out = self._output_hw(input_hw)
        (r_out, r_in), (k_h, k_w) = self.rank, self.kernel_size
        return 2 * (h * w * self.in_channels * r_in
                    + h_out * w_out * (r_in * r_out * k_h * k_w + r_out * self.out_channels))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"rank={self.rank}, stride={self.stride}, padding={self.padding}")


def _check_tucker2_rank(rank, in_channels: int, out_channels: int) -> tuple:
    if not isinstance(rank, (tuple, list)):
        raise TypeError(f"rank must be a pair (R_out, R_in) for a Tucker-2 layer, got {rank!r}")
    if len(rank) != 2:
        raise ValueError(f"rank must be a pair (R_out, R_in) for a Tucker-2 layer, got {rank!r}")
    check_int(rank[0], "rank[0] (R_out)", minimum=1, maximum=out_channels)
    check_int(rank[1], "rank[1] (R_in)", minimum=1, maximum=in_channels)
    return int(rank[0]), int(rank[1])


def max_cp_rank(shape) -> int:
    """An upper bound on the CP rank of any tensor of ``shape``: the product of all sizes
    but the largest (unfold along the largest mode; its column space has at most that
    dimension, and one rank-one term per column suffices)."""
    shape = sorted(check_positive_ints(shape, "shape"))
    return math.prod(shape[:-1])


class CPConv2d(_ConvChain):
    """A CP convolution (Lebedev et al. 2015) of rank ``R``.

    With ``K[o, i, y, x] ≈ Σ_r λ_r A_out[o, r] A_in[i, r] A_h[y, r] A_w[x, r]``, the
    convolution ``Σ_{i,y,x} K[o, i, y, x] · X[i, ·+y, ·+x]`` splits into cheap steps:

    * ``implementation="fused"`` (the default, :data:`DEFAULT_CP_IMPLEMENTATION`): ``first``
      1×1 conv ``C_in → R`` (``A_in``), ``spatial`` one depthwise ``k_h×k_w`` conv whose
      filter ``r`` is the outer product ``A_h[:, r] A_w[:, r]ᵀ``, ``last`` 1×1 conv
      ``R → C_out`` (``λ·A_out``, with the bias);
    * ``implementation="separable"``: the spatial step as two depthwise convs, ``vertical``
      ``k_h×1`` (``A_h``) then ``horizontal`` ``1×k_w`` (``A_w``) — ``k_h + k_w`` instead of
      ``k_h k_w`` multiply-adds per pixel, but one more layer to run.

    Parameters: ``R (C_in + k_h k_w + C_out)`` fused, ``R (C_in + k_h + k_w + C_out)``
    separable (+ bias). FLOPs per example: ``2 (H W C_in R + H_out W_out R (k_h k_w + C_out))``
    fused; see :meth:`flops` for the separable count.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, stride=1,
                 padding=0, dilation=1, bias: bool = True, *,
                 implementation: str = DEFAULT_CP_IMPLEMENTATION, device=None, dtype=None):
        super().__init__()
        self._keep_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.implementation = check_choice(implementation, "implementation", CP_IMPLEMENTATIONS)
        self.rank = _check_cp_rank(rank, (out_channels, in_channels, *self.kernel_size))
        k_h, k_w = self.kernel_size
        options = {"bias": False, "device": device, "dtype": dtype}
        self.first = nn.Conv2d(in_channels, rank, 1, **options)
        if implementation == "separable":
            (s_h, s_w), (d_h, d_w) = self.stride, self.dilation
            if isinstance(self.padding, str):
                p_v = p_h = self.padding
            else:
                p_v, p_h = (self.padding[0], 0), (0, self.padding[1])
            self.vertical = nn.Conv2d(rank, rank, (k_h, 1), stride=(s_h, 1), padding=p_v,
                                      dilation=(d_h, 1), groups=rank, **options)
            self.horizontal = nn.Conv2d(rank, rank, (1, k_w), stride=(1, s_w), padding=p_h,
                                        dilation=(1, d_w), groups=rank, **options)
        else:
            self.spatial = nn.Conv2d(rank, rank, self.kernel_size, groups=rank, **options,
                                     **self._geometry())
        self.last = nn.Conv2d(rank, out_channels, 1, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        if self.implementation == "separable":
            x = self.horizontal(self.vertical(x))
        else:
            x = self.spatial(x)
        return self.last(x)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int, *,
                  implementation: str = DEFAULT_CP_IMPLEMENTATION, n_iter_max: int = 100,
                  tol: float = 1e-8, seed=0) -> "CPConv2d":
        """Factorize a trained ``conv`` at CP rank ``rank`` with
        :func:`lrlib.tensor.cp_als` (in float64, SVD initialization, line search, the same
        ``n_iter_max`` and ``tol`` defaults). ``conv`` is not changed. A
        :class:`lrlib.tensor.DegenerateCPWarning` from the ALS is passed on: lower the rank
        or use :class:`Tucker2Conv2d` then."""
        from .tensor import cp_als

        conv = check_conv(conv)
        weight = conv.weight.detach()
        _check_cp_rank(rank, weight.shape)
        result = cp_als(weight.double(), rank, n_iter_max=n_iter_max, tol=tol, seed=seed)
        layer = cls.like(conv, rank, implementation=implementation)
        layer._load_cp(result.weights, result.factors, conv.bias)
        return layer

    from_dense = from_conv

    @classmethod
    def from_cp(cls, weights, factors, bias=None, *, stride=1, padding=0, dilation=1,
                implementation: str = DEFAULT_CP_IMPLEMENTATION, dtype=None) -> "CPConv2d":
        """Build the chain from a CP decomposition of a kernel computed beforehand: ``weights``
        ``λ`` (R,) or None, and ``factors = [A_out, A_in, A_h, A_w]`` of shapes ``(C_out, R)``,
        ``(C_in, R)``, ``(k_h, R)``, ``(k_w, R)``."""
        factors = list(factors)
        if len(factors) != 4 or any(f.ndim != 2 for f in factors) \
                or len({f.shape[1] for f in factors}) != 1:
            raise ValueError("factors must be four matrices (C_out, R), (C_in, R), (k_h, R), "
                             f"(k_w, R); got {[tuple(f.shape) for f in factors]}")
        a_out, a_in, a_h, a_w = factors
        layer = cls(a_in.shape[0], a_out.shape[0], (a_h.shape[0], a_w.shape[0]), a_out.shape[1],
                    stride, padding, dilation, bias=bias is not None, implementation=implementation,
                    device=a_out.device, dtype=dtype or a_out.dtype)
        layer._load_cp(weights, factors, bias)
        return layer

    def _load_cp(self, weights, factors, bias) -> None:
        """Copy a CP decomposition into the chain. The weight ``λ_r`` is spread evenly,
        ``λ_r^(1/4)`` into each factor (sign kept in ``A_out``), so the kernels have similar
        scales."""
        a_out, a_in, a_h, a_w = factors
        if weights is None:
            weights = torch.ones(self.rank, dtype=a_out.dtype, device=a_out.device)
        scale = weights.abs() ** 0.25
        a_out, a_in, a_h, a_w = a_out * scale * torch.sign(weights), a_in * scale, a_h * scale, a_w * scale
        with torch.no_grad():
            self.first.weight.copy_(a_in.T[:, :, None, None])
            if self.implementation == "separable":
                self.vertical.weight.copy_(a_h.T[:, None, :, None])
                self.horizontal.weight.copy_(a_w.T[:, None, None, :])
            else:
                self.spatial.weight.copy_(torch.einsum("yr,xr->ryx", a_h, a_w)[:, None])
            self.last.weight.copy_(a_out[:, :, None, None])
            if bias is not None:
                self.last.bias.copy_(bias)

    @staticmethod
    def rank_candidates(conv: nn.Conv2d) -> list:
        """Every CP rank a kernel of this shape can need: ``1 …`` :func:`max_cp_rank`."""
        return list(range(1, max_cp_rank(conv.weight.shape) + 1))

    def _spatial_filters(self) -> torch.Tensor:
        """The R depthwise filters as an ``(R, k_h, k_w)`` tensor."""
        if self.implementation == "separable":
            return self.vertical.weight[:, 0, :, :] * self.horizontal.weight[:, 0, :, :]
        return self.spatial.weight[:, 0]

    def dense_kernel(self) -> torch.Tensor:
        """``K[o, i, y, x] = Σ_r A_out[o, r] A_in[i, r] F_r[y, x]`` with ``F_r`` the r-th spatial filter."""
        return torch.einsum("or,ri,ryx->oiyx", self.last.weight[:, :, 0, 0],
                            self.first.weight[:, :, 0, 0], self._spatial_filters())

    def flops(self, input_hw) -> int:
        """FLOPs per example on an ``input_hw = (H, W)`` input, step by step: the first 1×1
        conv at the input size, the depthwise step(s) at their output sizes, the last 1×1
        conv at the output size."""
        h, w = _pair(input_hw)
        (k_h, k_w), r = self.kernel_size, self.rank
        h_out, w_out = self._output_hw(input_hw)
        total = h * w * self.in_channels * r
        if self.implementation == "separable":
            h_mid, w_mid = conv_output_size(input_hw, self.vertical.kernel_size, self.vertical.stride,
                                            self.vertical.padding, self.vertical.dilation)
            total += h_mid * w_mid * r * k_h + h_out * w_out * r * k_w
        else:
            total += h_out * w_out * r * k_h * k_w
        return 2 * (total + h_out * w_out * r * self.out_channels)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"rank={self.rank}, implementation={self.implementation!r}, stride={self.stride}, "
                f"padding={self.padding}")


def _check_cp_rank(rank, shape) -> int:
    """``rank`` if it is an int from 1 to :func:`max_cp_rank` of the kernel's shape (no
    kernel of that shape needs a higher CP rank)."""
    return check_int(rank, "rank", minimum=1, maximum=max_cp_rank(shape))
