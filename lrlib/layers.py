"""Factorized layers that replace dense ones.

Introduced in notebook ``03_svd_low_rank`` (``LowRankLinear``); the convolution layers
``SVDConv2d``, ``Tucker2Conv2d`` and ``CPConv2d`` in ``05_decomposing_convolutions``.

``LowRankLinear`` replaces ``y = W x + b`` (``W`` of shape ``m×n``) by two thinner maps,
``y = B (A x) + b`` with ``A`` of shape ``r×n`` and ``B`` of shape ``m×r``, built from the
truncated SVD ``W ≈ U_r diag(S_r) V_rᴴ`` (Denton et al. 2014 and Xue, Li & Gong 2013 applied
this to the layers of trained networks). It is literally two ``nn.Linear`` layers in a row,
so PyTorch runs it with two matrix products and the model stays scriptable and exportable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .svd import check_rank, randomized_svd, truncated_svd

__all__ = ["LowRankLinear", "SVDConv2d", "Tucker2Conv2d", "CPConv2d", "check_conv",
           "conv_output_size", "conv_flops", "max_cp_rank", "chain_like", "CHAIN_METHODS"]

METHODS = ("svd", "randomized")
SPLITS = ("balanced", "left", "right")


class LowRankLinear(nn.Module):
    """A Linear layer of rank ``rank``: ``second(first(x))``.

    ``first`` is ``nn.Linear(in_features, rank, bias=False)`` (the matrix ``A``, ``r×n``),
    ``second`` is ``nn.Linear(rank, out_features, bias=bias)`` (the matrix ``B``, ``m×r``).
    It has ``r(m + n)`` weights (plus ``m`` biases) against ``mn`` for the dense layer, and
    ``2r(m + n)`` FLOPs per example against ``2mn``.

    Build one from a trained layer with :meth:`from_linear`; turn it back into an
    ``nn.Linear`` with :meth:`to_dense`.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 *, device=None, dtype=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        check_rank(rank, (out_features, in_features))
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.second = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, *, method: str = "svd",
                    split: str = "balanced", seed=None) -> "LowRankLinear":
        """Factorize a trained ``nn.Linear`` at ``rank``; ``linear`` is not changed.

        Parameters
        ----------
        linear : nn.Linear
        rank : int
            ``1 ≤ rank ≤ min(out_features, in_features)``.
        method : {"svd", "randomized"}
            Exact truncated SVD, or the randomized SVD of Halko, Martinsson & Tropp (2011)
            (``seed`` makes it reproducible).
        split : {"balanced", "left", "right"}
            Where the singular values go: ``A = √S·Vᴴ, B = U·√S`` ("balanced", the two
            factors get similar scales, which suits fine-tuning), ``A = Vᴴ, B = U·S``
            ("left"), or ``A = S·Vᴴ, B = U`` ("right"). All give the same product.

        The SVD is computed in float64 and the factors are cast back to the layer's dtype.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        weight = linear.weight.detach()
        if not bool(torch.isfinite(weight).all()):
            raise ValueError("linear.weight contains NaN or Inf values; cannot factorize it")
        check_rank(rank, weight.shape)

        if method == "svd":
            U, S, Vh = truncated_svd(weight.double(), rank)
        else:
            U, S, Vh = randomized_svd(weight.double(), rank, seed=seed)
        return cls.from_svd(U, S, Vh, linear.bias, rank=rank, split=split, dtype=weight.dtype)

    @classmethod
    def from_svd(cls, U, S, Vh, bias=None, *, rank: int, split: str = "balanced",
                 dtype=None) -> "LowRankLinear":
        """Build the layer from an SVD ``W = U diag(S) Vh`` computed beforehand.

        Useful in a sweep over ranks: compute the SVD of a weight once, then slice it for
        every rank. The first ``rank`` singular triplets are used; ``bias`` (a tensor or
        None) is copied; ``dtype`` defaults to ``U``'s.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if (U.ndim != 2 or S.ndim != 1 or Vh.ndim != 2
                or U.shape[1] != len(S) or len(S) != Vh.shape[0]):
            raise ValueError(f"U, S, Vh must have shapes (m, k), (k,), (k, n); got "
                             f"{tuple(U.shape)}, {tuple(S.shape)}, {tuple(Vh.shape)}")
        check_rank(rank, (U.shape[0], Vh.shape[1]))
        if rank > len(S):
            raise ValueError(f"rank must be at most the {len(S)} singular values given, got {rank}")
        U, S, Vh = U[:, :rank], S[:rank], Vh[:rank]
        if split == "balanced":
            root = S.sqrt()
            first, second = root[:, None] * Vh, U * root
        elif split == "left":
            first, second = Vh, U * S
        else:
            first, second = S[:, None] * Vh, U

        layer = cls(Vh.shape[1], U.shape[0], rank, bias=bias is not None,
                    device=U.device, dtype=dtype or U.dtype)
        with torch.no_grad():
            layer.first.weight.copy_(first)
            layer.second.weight.copy_(second)
            if bias is not None:
                layer.second.bias.copy_(bias)
        return layer

    def to_dense(self) -> nn.Linear:
        """An ``nn.Linear`` computing the same function: ``W = B A``, same bias."""
        weight = self.second.weight
        dense = nn.Linear(self.in_features, self.out_features, bias=self.second.bias is not None,
                          device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            dense.weight.copy_(self.second.weight @ self.first.weight)
            if self.second.bias is not None:
                dense.bias.copy_(self.second.bias)
        return dense

    @property
    def params(self) -> int:
        """Number of parameters: ``r(m + n)`` weights plus the biases."""
        return sum(p.numel() for p in self.parameters())

    @property
    def flops(self) -> int:
        """FLOPs per example (a multiply-add is 2, as ``lrlib.profile.count_flops`` counts):
        ``2r(n + m)``."""
        return 2 * self.rank * (self.in_features + self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, bias={self.second.bias is not None}")


# --------------------------------------------------------------------------- convolutions
#
# Introduced in notebook ``05_decomposing_convolutions``. A convolution's weight is a 4-way
# tensor K of shape (C_out, C_in, k_h, k_w). Each class below replaces one nn.Conv2d by a
# short chain of thinner convolutions built from a decomposition of K, so that the chain
# computes (nearly) the same function:
#
#   SVDConv2d      K_(1) ≈ U S Vᵀ, the kernel unfolded to C_out × (C_in k_h k_w):
#                  k_h×k_w conv C_in→R, then 1×1 conv R→C_out   (channel SVD, Zhang et al. 2016)
#   Tucker2Conv2d  K ≈ G ×_1 U_out ×_2 U_in:
#                  1×1 C_in→R_in, k_h×k_w R_in→R_out, 1×1 R_out→C_out   (Kim et al. 2016)
#   CPConv2d       K ≈ Σ_r λ_r a_r^out ∘ a_r^in ∘ a_r^h ∘ a_r^w:
#                  1×1 C_in→R, depthwise k_h×1, depthwise 1×k_w, 1×1 R→C_out   (Lebedev et al. 2015)
#
# The spatial convolution(s) of each chain take the original stride, padding and dilation;
# the 1×1 convolutions have none, so every chain keeps the original output size.

CONV_IMPLEMENTATIONS = ("separable", "fused")


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def check_conv(conv, name: str = "conv") -> nn.Conv2d:
    """Raise unless ``conv`` is a plain ``nn.Conv2d`` the chains can replace exactly:
    ``groups == 1``, ``padding_mode == "zeros"`` and finite weights."""
    if isinstance(conv, nn.modules.conv._ConvTransposeNd):
        raise TypeError(f"{name} must be an nn.Conv2d; transposed convolutions "
                        f"({type(conv).__name__}) are not supported")
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{name} must be an nn.Conv2d (Conv1d, Conv3d and other layers are not "
                        f"supported), got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"{name} has groups={conv.groups}; only groups=1 convolutions can be "
                         "factorized (a grouped conv is already a block-diagonal factorization)")
    if conv.padding_mode != "zeros":
        raise ValueError(f"{name} has padding_mode={conv.padding_mode!r}; only 'zeros' is "
                         "supported")
    if not bool(torch.isfinite(conv.weight).all()):
        raise ValueError(f"{name}.weight contains NaN or Inf values; cannot factorize it")
    return conv


def _check_channels(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def conv_output_size(input_hw, kernel_size, stride=1, padding=0, dilation=1) -> tuple:
    """Output height and width of a convolution on an ``input_hw = (H, W)`` input:
    ``⌊(H + 2p − d(k − 1) − 1) / s⌋ + 1`` per dimension; ``padding="same"`` keeps the
    size (stride 1) and ``"valid"`` means no padding."""
    (h, w), k, s, d = _pair(input_hw), _pair(kernel_size), _pair(stride), _pair(dilation)
    if padding == "same":
        return h, w
    p = (0, 0) if padding == "valid" else _pair(padding)
    return tuple((size + 2 * pad - dil * (kern - 1) - 1) // step + 1
                 for size, pad, dil, kern, step in zip((h, w), p, d, k, s))


def conv_flops(conv: nn.Conv2d, input_hw) -> int:
    """FLOPs of a dense ``nn.Conv2d`` per example (multiply-add = 2, bias not counted, as
    ``lrlib.profile.count_flops`` counts): ``2 · C_out · H_out W_out · (C_in / groups) · k_h k_w``."""
    h, w = conv_output_size(input_hw, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    k_h, k_w = conv.kernel_size
    return 2 * conv.out_channels * h * w * (conv.in_channels // conv.groups) * k_h * k_w


def _conv_from_weight(weight: torch.Tensor, bias=None, **geometry) -> nn.Conv2d:
    """An nn.Conv2d holding ``weight`` (and ``bias``), with the given stride, padding, …"""
    out_channels, in_per_group, k_h, k_w = weight.shape
    groups = geometry.pop("groups", 1)
    conv = nn.Conv2d(in_per_group * groups, out_channels, (k_h, k_w), groups=groups,
                     bias=bias is not None, device=weight.device, dtype=weight.dtype, **geometry)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


class _ConvChain(nn.Module):
    """What the factorized convolutions share: the original geometry, ``params``,
    ``to_dense()`` (multiply the chain out into one k_h×k_w kernel) and ``flops``."""

    def _keep_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation):
        _check_channels(in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if padding == "same" and self.stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride={stride!r}")

    def _geometry(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}

    @property
    def params(self) -> int:
        """Number of parameters of the chain (weights and bias)."""
        return sum(p.numel() for p in self.parameters())

    def dense_flops(self, input_hw) -> int:
        """FLOPs per example of the dense convolution this chain replaces."""
        h, w = conv_output_size(input_hw, self.kernel_size, **self._geometry())
        return 2 * self.out_channels * h * w * self.in_channels * self.kernel_size[0] * self.kernel_size[1]

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
    def from_conv(cls, conv: nn.Conv2d, rank: int) -> "SVDConv2d":
        """Factorize a trained ``conv`` at channel rank ``rank`` (``1 ≤ R ≤ min(C_out,
        C_in k_h k_w)``) by the SVD of its unfolded kernel, computed in float64, with the
        singular values split evenly (``√S`` into each factor). ``conv`` is not changed."""
        conv = check_conv(conv)
        weight = conv.weight.detach()
        c_out, c_in, k_h, k_w = weight.shape
        check_rank(rank, (c_out, c_in * k_h * k_w))
        U, S, Vh = truncated_svd(weight.double().reshape(c_out, -1), rank)
        root = S.sqrt()
        layer = cls(c_in, c_out, (k_h, k_w), rank, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            layer.first.weight.copy_((root[:, None] * Vh).reshape(rank, c_in, k_h, k_w))
            layer.last.weight.copy_((U * root)[:, :, None, None])
            if conv.bias is not None:
                layer.last.bias.copy_(conv.bias)
        return layer

    def dense_kernel(self) -> torch.Tensor:
        """``K = B · A`` with ``A`` the first conv's kernel as a ``R × (C_in k_h k_w)`` matrix."""
        first = self.first.weight.reshape(self.rank, -1)
        return (self.last.weight[:, :, 0, 0] @ first).reshape(
            self.out_channels, self.in_channels, *self.kernel_size)

    def flops(self, input_hw) -> int:
        """FLOPs per example on an ``input_hw = (H, W)`` input: ``2 H_out W_out R (C_in k_h k_w + C_out)``."""
        h, w = conv_output_size(input_hw, self.kernel_size, **self._geometry())
        k_h, k_w = self.kernel_size
        return 2 * h * w * self.rank * (self.in_channels * k_h * k_w + self.out_channels)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"rank={self.rank}, stride={self.stride}, padding={self.padding}")


class Tucker2Conv2d(_ConvChain):
    """A Tucker-2 convolution (Kim et al. 2016): ``last(core(first(x)))``.

    ``first``: 1×1 conv ``C_in → R_in`` (the input factor ``U_inᵀ``); ``core``: ``k_h×k_w``
    conv ``R_in → R_out`` (the core tensor ``G``, with the original stride, padding and
    dilation); ``last``: 1×1 conv ``R_out → C_out`` (the output factor ``U_out``) with the bias.
    It is the Tucker decomposition ``K ≈ G ×_1 U_out ×_2 U_in`` with the two small spatial
    modes kept whole: ``K[o, i, y, x] ≈ Σ_{s,t} U_out[o, s] G[s, t, y, x] U_in[i, t]``.

    Parameters: ``C_in R_in + R_in R_out k_h k_w + R_out C_out`` (+ bias).
    FLOPs per example: ``2 (H W C_in R_in + H_out W_out (R_in R_out k_h k_w + R_out C_out))``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, ranks, stride=1,
                 padding=0, dilation=1, bias: bool = True, *, device=None, dtype=None):
        super().__init__()
        self._keep_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.ranks = _check_tucker2_ranks(ranks, in_channels, out_channels)
        r_in, r_out = self.ranks
        self.first = nn.Conv2d(in_channels, r_in, 1, bias=False, device=device, dtype=dtype)
        self.core = nn.Conv2d(r_in, r_out, self.kernel_size, bias=False, device=device,
                              dtype=dtype, **self._geometry())
        self.last = nn.Conv2d(r_out, out_channels, 1, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.core(self.first(x)))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, ranks, *, n_iter_max: int = 100,
                  tol: float = 1e-8) -> "Tucker2Conv2d":
        """Factorize a trained ``conv`` with ``ranks = (R_in, R_out)`` (``1 ≤ R_in ≤ C_in``,
        ``1 ≤ R_out ≤ C_out``) by HOOI (:func:`lrlib.tensor.tucker_hooi`, in float64) on the
        two channel modes. ``conv`` is not changed."""
        from .tensor import tucker_hooi

        conv = check_conv(conv)
        weight = conv.weight.detach()
        c_out, c_in, k_h, k_w = weight.shape
        r_in, r_out = _check_tucker2_ranks(ranks, c_in, c_out)
        result = tucker_hooi(weight.double(), (r_out, r_in, k_h, k_w), n_iter_max=n_iter_max, tol=tol)
        core, (u_out, u_in, u_h, u_w) = result.core, result.factors
        # the spatial modes are kept whole (identity factors), so the core is already (R_out, R_in, k_h, k_w)
        return cls.from_tucker(core, u_out, u_in, conv.bias, stride=conv.stride, padding=conv.padding,
                               dilation=conv.dilation, dtype=weight.dtype)

    @classmethod
    def from_tucker(cls, core, u_out, u_in, bias=None, *, stride=1, padding=0, dilation=1,
                    dtype=None) -> "Tucker2Conv2d":
        """Build the chain from a Tucker-2 decomposition computed beforehand: ``core`` of
        shape ``(R_out, R_in, k_h, k_w)``, ``u_out`` ``(C_out, R_out)``, ``u_in`` ``(C_in, R_in)``."""
        if core.ndim != 4 or u_out.ndim != 2 or u_in.ndim != 2 \
                or u_out.shape[1] != core.shape[0] or u_in.shape[1] != core.shape[1]:
            raise ValueError("core, u_out, u_in must have shapes (R_out, R_in, k_h, k_w), "
                             f"(C_out, R_out), (C_in, R_in); got {tuple(core.shape)}, "
                             f"{tuple(u_out.shape)}, {tuple(u_in.shape)}")
        layer = cls(u_in.shape[0], u_out.shape[0], tuple(core.shape[2:]), (core.shape[1], core.shape[0]),
                    stride, padding, dilation, bias=bias is not None, device=core.device,
                    dtype=dtype or core.dtype)
        with torch.no_grad():
            layer.first.weight.copy_(u_in.T[:, :, None, None])
            layer.core.weight.copy_(core)
            layer.last.weight.copy_(u_out[:, :, None, None])
            if bias is not None:
                layer.last.bias.copy_(bias)
        return layer

    def dense_kernel(self) -> torch.Tensor:
        """``K[o, i] = Σ_{s,t} U_out[o, s] G[s, t] U_in[i, t]`` for every tap."""
        return torch.einsum("os,styx,ti->oiyx", self.last.weight[:, :, 0, 0], self.core.weight,
                            self.first.weight[:, :, 0, 0])

    def flops(self, input_hw) -> int:
        """FLOPs per example on an ``input_hw = (H, W)`` input (see the class docstring)."""
        h, w = _pair(input_hw)
        h_out, w_out = conv_output_size(input_hw, self.kernel_size, **self._geometry())
        (r_in, r_out), (k_h, k_w) = self.ranks, self.kernel_size
        return 2 * (h * w * self.in_channels * r_in
                    + h_out * w_out * (r_in * r_out * k_h * k_w + r_out * self.out_channels))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"ranks={self.ranks}, stride={self.stride}, padding={self.padding}")


def _check_tucker2_ranks(ranks, in_channels: int, out_channels: int) -> tuple:
    if not isinstance(ranks, (tuple, list)) or len(ranks) != 2:
        raise ValueError(f"ranks must be a pair (R_in, R_out), got {ranks!r}")
    for name, value, limit in (("ranks[0] (R_in)", ranks[0], in_channels),
                               ("ranks[1] (R_out)", ranks[1], out_channels)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if not 1 <= value <= limit:
            raise ValueError(f"{name} must be between 1 and {limit}, got {value}")
    return int(ranks[0]), int(ranks[1])


def max_cp_rank(shape) -> int:
    """An upper bound on the CP rank of any tensor of ``shape``: the product of all sizes
    but the largest (unfold along the largest mode; its column space has at most that
    dimension, and one rank-one term per column suffices)."""
    shape = sorted(shape)
    return math.prod(shape[:-1])


class CPConv2d(_ConvChain):
    """A CP convolution (Lebedev et al. 2015) of rank ``R``.

    With ``K[o, i, y, x] ≈ Σ_r λ_r A_out[o, r] A_in[i, r] A_h[y, r] A_w[x, r]``, the
    convolution ``Σ_{i,y,x} K[o, i, y, x] · X[i, ·+y, ·+x]`` splits into four cheap steps:

    * ``implementation="separable"``: ``first`` 1×1 conv ``C_in → R`` (``A_in``), ``vertical``
      depthwise ``k_h×1`` conv (``A_h``), ``horizontal`` depthwise ``1×k_w`` conv (``A_w``),
      ``last`` 1×1 conv ``R → C_out`` (``λ·A_out``, with the bias);
    * ``implementation="fused"``: the two depthwise steps as one depthwise ``k_h×k_w`` conv
      ``spatial`` whose filter ``r`` is the outer product ``A_h[:, r] A_w[:, r]ᵀ`` — fewer
      layers to run, ``k_h k_w`` instead of ``k_h + k_w`` multiply-adds per pixel.

    Parameters: ``R (C_in + k_h + k_w + C_out)`` separable, ``R (C_in + k_h k_w + C_out)``
    fused (+ bias). FLOPs per example: ``2 (H W C_in R + H_out W_out R (k_h + k_w + C_out))``
    for separable at stride 1 (see :meth:`flops` for the exact count), ``k_h k_w`` in place of
    ``k_h + k_w`` for fused.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, stride=1,
                 padding=0, dilation=1, bias: bool = True, *, implementation: str = "separable",
                 device=None, dtype=None):
        super().__init__()
        self._keep_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        if implementation not in CONV_IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {CONV_IMPLEMENTATIONS}, got {implementation!r}")
        self.rank, self.implementation = _check_cp_rank(rank, (out_channels, in_channels, *self.kernel_size)), implementation
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
    def from_conv(cls, conv: nn.Conv2d, rank: int, *, implementation: str = "separable",
                  n_iter_max: int = 200, tol: float = 1e-10, seed=0) -> "CPConv2d":
        """Factorize a trained ``conv`` at CP rank ``rank`` with
        :func:`lrlib.tensor.cp_als` (in float64, SVD initialization, line search).
        ``conv`` is not changed. A :class:`lrlib.tensor.DegenerateCPWarning` from the ALS
        is passed on: lower the rank or use :class:`Tucker2Conv2d` then."""
        from .tensor import cp_als

        conv = check_conv(conv)
        weight = conv.weight.detach()
        _check_cp_rank(rank, weight.shape)
        result = cp_als(weight.double(), rank, n_iter_max=n_iter_max, tol=tol, seed=seed)
        return cls.from_cp(result.weights, result.factors, conv.bias, stride=conv.stride,
                           padding=conv.padding, dilation=conv.dilation,
                           implementation=implementation, dtype=weight.dtype)

    @classmethod
    def from_cp(cls, weights, factors, bias=None, *, stride=1, padding=0, dilation=1,
                implementation: str = "separable", dtype=None) -> "CPConv2d":
        """Build the chain from a CP decomposition of a kernel computed beforehand: ``weights``
        ``λ`` (R,) or None, and ``factors = [A_out, A_in, A_h, A_w]`` of shapes ``(C_out, R)``,
        ``(C_in, R)``, ``(k_h, R)``, ``(k_w, R)``. The weight ``λ_r`` is spread evenly, ``λ_r^(1/4)``
        into each factor (sign kept in ``A_out``), so the four kernels have similar scales."""
        factors = list(factors)
        if len(factors) != 4 or any(f.ndim != 2 for f in factors) \
                or len({f.shape[1] for f in factors}) != 1:
            raise ValueError("factors must be four matrices (C_out, R), (C_in, R), (k_h, R), "
                             f"(k_w, R); got {[tuple(f.shape) for f in factors]}")
        a_out, a_in, a_h, a_w = factors
        rank = a_out.shape[1]
        if weights is None:
            weights = torch.ones(rank, dtype=a_out.dtype, device=a_out.device)
        scale = weights.abs() ** 0.25
        a_out, a_in, a_h, a_w = a_out * scale * torch.sign(weights), a_in * scale, a_h * scale, a_w * scale
        layer = cls(a_in.shape[0], a_out.shape[0], (a_h.shape[0], a_w.shape[0]), rank, stride, padding,
                    dilation, bias=bias is not None, implementation=implementation,
                    device=a_out.device, dtype=dtype or a_out.dtype)
        with torch.no_grad():
            layer.first.weight.copy_(a_in.T[:, :, None, None])
            if implementation == "separable":
                layer.vertical.weight.copy_(a_h.T[:, None, :, None])
                layer.horizontal.weight.copy_(a_w.T[:, None, None, :])
            else:
                layer.spatial.weight.copy_(torch.einsum("yr,xr->ryx", a_h, a_w)[:, None])
            layer.last.weight.copy_(a_out[:, :, None, None])
            if bias is not None:
                layer.last.bias.copy_(bias)
        return layer

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
        h_out, w_out = conv_output_size(input_hw, self.kernel_size, **self._geometry())
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
    limit = max_cp_rank(shape)
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise TypeError(f"rank must be an int, got {rank!r} ({type(rank).__name__})")
    if not 1 <= rank <= limit:
        raise ValueError(f"rank must be between 1 and {limit} (no kernel of shape {tuple(shape)} "
                         f"needs a higher CP rank), got {rank}")
    return rank


#: The chains :func:`chain_like` builds, by name.
CHAIN_METHODS = ("svd", "tucker2", "cp-separable", "cp-fused")


def chain_like(conv: nn.Conv2d, method: str, ranks, *, device=None, dtype=None) -> nn.Module:
    """An untrained factorized chain with ``conv``'s channels, kernel size, stride, padding,
    dilation and bias (present or not): ``"svd"`` → :class:`SVDConv2d`, ``"tucker2"`` →
    :class:`Tucker2Conv2d`, ``"cp-separable"`` / ``"cp-fused"`` → :class:`CPConv2d`. For
    counting FLOPs (with ``device="meta"``: shapes only), for timing, and as the structure
    a saved state_dict loads into; to factorize trained weights use each class's
    ``from_conv``."""
    check_conv(conv)
    if method not in CHAIN_METHODS:
        raise ValueError(f"method must be one of {CHAIN_METHODS}, got {method!r}")
    args = (conv.in_channels, conv.out_channels, conv.kernel_size, ranks, conv.stride,
            conv.padding, conv.dilation, conv.bias is not None)
    options = {"device": device, "dtype": dtype}
    if method == "svd":
        return SVDConv2d(*args, **options)
    if method == "tucker2":
        return Tucker2Conv2d(*args, **options)
    return CPConv2d(*args, implementation=method[3:], **options)
