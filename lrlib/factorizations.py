"""The registry of factorizations: every method name lrlib knows, and the one place that
turns a name into a factorized layer.

Introduced in notebook ``03_svd_low_rank`` (SVD of Linear layers); the convolution methods
in ``05_decomposing_convolutions``.

A method name (``"svd"``, ``"tucker2"``, …) together with the kind of dense layer it is
applied to picks one :class:`Factorization`: the factorized class from :mod:`lrlib.layers`
and the fixed options it is built with. Everything that needs a method — ``compress``, the
rank rules, ``deploy.rebuild``, the checkers, the benchmarks and the notebooks — asks this
module, so adding a method means one class and one entry in :data:`REGISTRY`.

| name             | Linear                        | Conv2d                                   |
|------------------|-------------------------------|------------------------------------------|
| ``svd``          | ``LowRankLinear``             | ``SVDConv2d`` (channel SVD)              |
| ``randomized``   | ``LowRankLinear``, randomized | ``SVDConv2d``, randomized SVD            |
| ``tucker2``      | –                             | ``Tucker2Conv2d`` (Kim et al. 2016)      |
| ``cp-fused``     | –                             | ``CPConv2d``, one depthwise k×k step     |
| ``cp-separable`` | –                             | ``CPConv2d``, k×1 then 1×k (Lebedev 2015)|
| ``whitened``     | ``LowRankLinear``, whitened   | ``SVDConv2d``, whitened by the patches   |
| ``asvd``         | ``LowRankLinear``, ASVD       | ``SVDConv2d``, ASVD                      |
| ``whitened-tucker2`` | –                         | ``Tucker2Conv2d`` fitted to the outputs  |

``whitened`` (Chen et al. 2021; Wang et al. 2024), ``asvd`` (Yuan et al. 2023) and
``whitened-tucker2`` (:func:`lrlib.data_aware.whitened_tucker2`) are data-aware (:mod:`lrlib.data_aware`): they need the statistics of the layer's calibration
inputs (:mod:`lrlib.calibration`), which ``compress(..., calibration=...)`` collects.

Two more names choose among those: ``"cp"`` is the default CP chain
(:data:`lrlib.layers.DEFAULT_CP_IMPLEMENTATION`), and ``"auto"`` is SVD for Linear layers
and 1×1 convolutions, Tucker-2 for larger kernels; with calibration data, their data-aware
versions (the whitened SVD, the whitened Tucker-2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .layers import DEFAULT_CP_IMPLEMENTATION, CPConv2d, LowRankLinear, SVDConv2d, Tucker2Conv2d
from .validate import check_choice, check_type

__all__ = ["Factorization", "REGISTRY", "METHODS", "check_method", "resolve", "factorize",
           "untrained_like"]


@dataclass(frozen=True)
class Factorization:
    """One factorization method for one kind of dense layer.

    ``structure`` holds the options that shape the factorized layer (given to both
    ``from_dense`` and ``like``, e.g. CP's ``implementation``); ``algorithm`` those that
    only change how the factors are computed (given to ``from_dense`` alone). ``iterative``
    marks the methods computed by sweeps (CP-ALS, HOOI), which take ``n_iter_max``.

    ``spectral_modes`` are the modes of the weight whose unfoldings the rank follows, one
    rank per mode: ``(0,)`` for an SVD (the rank of ``W`` or of ``K_(1)``), ``(0, 1)`` for
    Tucker-2 (a pair ``(R_out, R_in)``), ``()`` for CP, whose rank belongs to no single
    unfolding; the ``Energy`` and ``VBMF`` rules read those spectra. ``fine_tune_lr`` is a
    learning rate that fine-tuning this kind of layer tolerates (CP chains need far gentler
    steps: notebook 05 and ``benchmarks/conv_speedup.py``)."""

    name: str
    layer_class: type
    dense_type: type
    structure: dict = field(default_factory=dict)
    algorithm: dict = field(default_factory=dict)
    iterative: bool = False
    spectral_modes: tuple = (0,)
    fine_tune_lr: float = 3e-4
    calibration: str | None = None

    def build(self, layer: nn.Module, rank, *, seed=0, n_iter_max=None, statistics=None,
              damping: float = 0.0) -> nn.Module:
        """Factorize the trained ``layer`` at ``rank``; ``layer`` is not changed.
        ``n_iter_max`` caps the sweeps of an iterative method (default: its own); the SVDs
        have none and ignore it. A data-aware method (``calibration`` is ``"gram"`` or
        ``"mean_abs"``) needs ``statistics``, the layer's
        :class:`lrlib.calibration.LayerStatistics`; the others ignore them. ``damping``
        goes to the whitened methods (:func:`lrlib.data_aware.damped`)."""
        options = {**self.structure, **self.algorithm}
        if self.iterative and n_iter_max is not None:
            options["n_iter_max"] = n_iter_max
        if self.calibration == "gram":
            options["input_gram"] = self._statistics(statistics).gram
            options["damping"] = damping
        elif self.calibration == "mean_abs":
            options["input_mean_abs"] = self._statistics(statistics).mean_abs
        return self.layer_class.from_dense(layer, rank, seed=seed, **options)

    def _statistics(self, statistics):
        if statistics is None:
            raise ValueError(f"method {self.name!r} is data-aware: it needs the statistics of the "
                             "layer's calibration inputs; pass calibration= to compress (or "
                             "lrlib.calibration.collect_statistics(...)[name] here)")
        return statistics

    def like(self, layer: nn.Module, rank, *, device=None, dtype=None) -> nn.Module:
        """An untrained factorized layer with ``layer``'s geometry and ``rank``."""
        return self.layer_class.like(layer, rank, device=device, dtype=dtype, **self.structure)

    def rank_candidates(self, layer: nn.Module) -> list:
        """Every rank this method can give ``layer``, cheapest first."""
        return self.layer_class.rank_candidates(layer)


#: Every (method name, dense layer type) lrlib can factorize.
REGISTRY = {
    ("svd", nn.Linear): Factorization("svd", LowRankLinear, nn.Linear),
    ("randomized", nn.Linear): Factorization("randomized", LowRankLinear, nn.Linear,
                                             algorithm={"algorithm": "randomized"}),
    ("svd", nn.Conv2d): Factorization("svd", SVDConv2d, nn.Conv2d),
    ("randomized", nn.Conv2d): Factorization("randomized", SVDConv2d, nn.Conv2d,
                                             algorithm={"algorithm": "randomized"}),
    ("tucker2", nn.Conv2d): Factorization("tucker2", Tucker2Conv2d, nn.Conv2d, iterative=True,
                                          spectral_modes=(0, 1)),
    ("cp-fused", nn.Conv2d): Factorization("cp-fused", CPConv2d, nn.Conv2d,
                                           structure={"implementation": "fused"}, iterative=True,
                                           spectral_modes=(), fine_tune_lr=1e-5),
    ("cp-separable", nn.Conv2d): Factorization("cp-separable", CPConv2d, nn.Conv2d,
                                               structure={"implementation": "separable"},
                                               iterative=True, spectral_modes=(), fine_tune_lr=1e-5),
    ("whitened", nn.Linear): Factorization("whitened", LowRankLinear, nn.Linear, calibration="gram"),
    ("whitened", nn.Conv2d): Factorization("whitened", SVDConv2d, nn.Conv2d, calibration="gram"),
    ("asvd", nn.Linear): Factorization("asvd", LowRankLinear, nn.Linear, calibration="mean_abs"),
    ("asvd", nn.Conv2d): Factorization("asvd", SVDConv2d, nn.Conv2d, calibration="mean_abs"),
    ("whitened-tucker2", nn.Conv2d): Factorization("whitened-tucker2", Tucker2Conv2d, nn.Conv2d,
                                                   spectral_modes=(0, 1), calibration="gram"),
}

#: Every name ``method=`` accepts: the registry's, plus ``"cp"`` and ``"auto"``.
METHODS = ("auto", "svd", "randomized", "tucker2", "cp", "cp-separable", "cp-fused", "whitened",
           "asvd", "whitened-tucker2")


def check_method(method, name: str = "method"):
    """``method`` if it is one of :data:`METHODS`, or a dict mapping layer names to them."""
    if isinstance(method, dict):
        for layer_name, value in method.items():
            check_choice(value, f"{name}[{layer_name!r}]", METHODS)
        return method
    return check_choice(method, name, METHODS)


def _dense_type(layer) -> type:
    check_type(layer, "layer", (nn.Linear, nn.Conv2d))
    return nn.Linear if isinstance(layer, nn.Linear) else nn.Conv2d


def resolve(method: str, layer: nn.Module, *, linear_fallback: bool = False,
            data_aware: bool = False) -> Factorization:
    """The :class:`Factorization` that ``method`` means for ``layer``.

    ``"auto"``: SVD for a Linear layer or a 1×1 convolution, Tucker-2 for a larger kernel;
    when ``data_aware`` (calibration data is at hand) their data-aware versions, the
    whitened SVD and the whitened Tucker-2;
    ``"cp"``: the default CP chain. A convolution-only method (Tucker-2, CP) on a Linear
    layer is an error, unless ``linear_fallback=True`` (a method named for a whole model:
    its Linear layers then get SVD, the one factorization of a matrix, whitened when
    ``data_aware``)."""
    check_choice(method, "method", METHODS)
    kind = _dense_type(layer)
    svd = "whitened" if data_aware else "svd"
    if method == "auto":
        tucker2 = "whitened-tucker2" if data_aware else "tucker2"
        method = svd if kind is nn.Linear or layer.kernel_size == (1, 1) else tucker2
    elif method == "cp":
        method = "cp-" + DEFAULT_CP_IMPLEMENTATION
    if (method, kind) not in REGISTRY:
        if not linear_fallback:
            allowed = sorted({name for name, dense in REGISTRY if dense is kind})
            raise ValueError(f"method {method!r} does not apply to an nn.{kind.__name__}; "
                             f"methods for it: {allowed}")
        method = svd
    return REGISTRY[method, kind]


def factorize(layer: nn.Module, rank, *, method: str = "auto", seed=0, n_iter_max=None) -> nn.Module:
    """``layer`` (an ``nn.Linear`` or ``nn.Conv2d``) factorized by ``method`` at ``rank``."""
    return resolve(method, layer).build(layer, rank, seed=seed, n_iter_max=n_iter_max)


def untrained_like(layer: nn.Module, rank, *, method: str = "auto", device=None,
                   dtype=None) -> nn.Module:
    """An untrained factorized layer of ``method`` with ``layer``'s geometry: for counting
    FLOPs and parameters (``device="meta"``: shapes only), for timing, and as the structure
    a saved ``state_dict`` loads into."""
    return resolve(method, layer).like(layer, rank, device=device, dtype=dtype)
