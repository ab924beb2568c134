"""Factorized layers that replace dense ones.

Introduced in notebook ``03_svd_low_rank`` (``LowRankLinear``).

``LowRankLinear`` replaces ``y = W x + b`` (``W`` of shape ``m×n``) by two thinner maps,
``y = B (A x) + b`` with ``A`` of shape ``r×n`` and ``B`` of shape ``m×r``, built from the
truncated SVD ``W ≈ U_r diag(S_r) V_rᴴ`` (Denton et al. 2014 and Xue, Li & Gong 2013 applied
this to the layers of trained networks). It is literally two ``nn.Linear`` layers in a row,
so PyTorch runs it with two matrix products and the model stays scriptable and exportable.
"""

from __future__ import annotations

import torch
from torch import nn

from .svd import check_rank, randomized_svd, truncated_svd

__all__ = ["LowRankLinear"]

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
