"""Calibration statistics: what each layer of a model receives on real data.

Introduced in notebook ``03_svd_low_rank`` (data-aware low rank); used by
:mod:`lrlib.data_aware` and by ``compress(..., calibration=...)``.

A truncated SVD of a weight ``W`` minimises the weight error ``‖W − W_r‖``. What a network
needs is a small error in the layer's *outputs* on the inputs it really sees,
``‖(W − W_r) X‖`` for a matrix ``X`` whose columns are those inputs. Two summaries of ``X``
are enough for the data-aware factorizations of :mod:`lrlib.data_aware`:

* the **Gram matrix** ``G = X Xᵀ = Σ x xᵀ`` (``d × d``, float64), because
  ``‖(W − W') X‖_F² = trace((W − W') G (W − W')ᵀ)`` for any ``W'``
  (whitened SVD: Chen et al. 2021, DRONE; Wang et al. 2024, SVD-LLM);
* the **mean absolute activation** of each input feature, ``mean |x_j|``
  (activation-aware SVD: Yuan et al. 2023, ASVD).

:func:`collect_statistics` runs the model once over the calibration data with a forward
pre-hook on each chosen layer that adds every input vector to these sums; the hooks are
removed afterwards, also when the model raises. What an "input vector" is depends on the
layer:

* ``nn.Linear(n, m)``: each vector of length ``n`` along the last dimension (a batch of
  images gives one per image, a batch of token sequences one per token);
* ``nn.Conv2d`` with a ``k_h × k_w`` kernel: each input **patch** the kernel sees, of length
  ``C_in·k_h·k_w`` (``torch.nn.functional.unfold``, with the layer's stride, padding and
  dilation), because the convolution is the product of its ``C_out × C_in k_h k_w`` unfolded
  kernel with those patches; for a 1×1 convolution that is each pixel's channel vector.

A convolution sees one patch per output pixel: on 2,000 Fashion-MNIST images a 3×3
convolution at 28×28 receives 1.6 million patches, and adding each to its Gram matrix
costs ``2 d²`` FLOPs. ``max_vectors_per_batch`` samples that many of a layer's input
vectors from each forward call (uniformly, without replacement, seeded), which keeps the
Gram matrices' estimates close at a fraction of the cost; the sums then describe the sample.

A Gram matrix takes ``8 d²`` bytes. ``max_bytes`` bounds their sum: layers whose inputs are
too wide are left out, with the reason in the result, rather than exhausting memory.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .validate import check_int, check_type

__all__ = ["LayerStatistics", "CalibrationStatistics", "collect_statistics", "calibration_batches",
           "input_vectors", "DEFAULT_MAX_BYTES"]

#: The default bound on the memory of all Gram matrices together: 1 GiB.
DEFAULT_MAX_BYTES = 2 ** 30


@dataclass
class LayerStatistics:
    """The sums one layer's inputs added up to: ``gram = Σ x xᵀ``, ``total = Σ x`` and
    ``abs_sum = Σ |x|`` over ``count`` input vectors of length ``features``, from ``calls``
    forward calls."""

    name: str
    features: int
    gram: torch.Tensor
    total: torch.Tensor
    abs_sum: torch.Tensor
    count: int = 0
    calls: int = 0

    @property
    def mean_abs(self) -> torch.Tensor:
        """``mean |x_j|`` for each input feature ``j`` (ASVD's activation scale)."""
        return self.abs_sum / max(self.count, 1)

    @property
    def nbytes(self) -> int:
        return self.gram.numel() * self.gram.element_size() + 2 * self.abs_sum.numel() * 8

    def add(self, vectors: torch.Tensor) -> None:
        """Add the rows of ``vectors`` (``N × features``) to the sums, in float64."""
        rows = vectors.detach().to(torch.float64)
        self.gram += rows.T @ rows
        self.total += rows.sum(dim=0)
        self.abs_sum += rows.abs().sum(dim=0)
        self.count += rows.shape[0]
        self.calls += 1


@dataclass
class CalibrationStatistics:
    """What :func:`collect_statistics` returns: ``layers`` maps a layer name to its
    :class:`LayerStatistics`; ``skipped`` maps a layer name to the reason it was left out;
    ``batches`` is the number of calibration batches the model ran on."""

    layers: dict
    skipped: dict = field(default_factory=dict)
    batches: int = 0

    def __getitem__(self, name: str) -> LayerStatistics:
        if name not in self.layers:
            raise KeyError(f"no calibration statistics for layer {name!r}; collected for "
                           f"{sorted(self.layers)}" + (f", skipped {self.skipped}" if self.skipped else ""))
        return self.layers[name]

    def __contains__(self, name) -> bool:
        return name in self.layers

    @property
    def nbytes(self) -> int:
        """Memory held by all the statistics, in bytes."""
        return sum(s.nbytes for s in self.layers.values())

    def __str__(self) -> str:
        lines = [f"calibration statistics: {len(self.layers)} layer(s), {self.batches} batch(es), "
                 f"{self.nbytes / 2 ** 20:.1f} MiB"]
        for name, s in self.layers.items():
            lines.append(f"  {name}: {s.count:,} input vectors of length {s.features} "
                         f"from {s.calls} call(s)")
        for name, reason in self.skipped.items():
            lines.append(f"  {name}: skipped, {reason}")
        return "\n".join(lines)


def input_vectors(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input vectors of ``layer`` in its input ``x``, one per row (see the module
    docstring): for ``nn.Linear`` the last dimension, for ``nn.Conv2d`` the unfolded
    patches."""
    if isinstance(layer, nn.Linear):
        if x.shape[-1] != layer.in_features:
            raise ValueError(f"a Linear layer with in_features={layer.in_features} received an "
                             f"input of shape {tuple(x.shape)}")
        return x.reshape(-1, layer.in_features)
    if x.ndim == 3:                                    # an unbatched image (C, H, W)
        x = x.unsqueeze(0)
    if layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.padding in ((0, 0), "valid"):
        return x.permute(0, 2, 3, 1).reshape(-1, layer.in_channels)
    if isinstance(layer.padding, str):                 # "same": stride 1, pad to keep the size
        total = [d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size)]
        x = F.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
        padding = 0
    else:
        padding = layer.padding
    patches = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=padding,
                       stride=layer.stride)            # (B, C_in k_h k_w, L)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def _features(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]


def _is_dataset_pair(data) -> bool:
    """``(images, labels)``: two tensors with as many rows, the second 1-D (lrlib's datasets)."""
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)
            and data[1].ndim == 1 and data[0].ndim >= 2 and len(data[0]) == len(data[1]))


def calibration_batches(data, *, batch_size: int = 256):
    """The calibration data as ``(args, kwargs)`` pairs, one per forward call, produced one
    at a time (a DataLoader is read as it goes, never held in memory whole).

    Accepted: a tensor (one batch); an lrlib ``ImageSet`` or an ``(images, labels)`` pair of
    tensors (cut into batches of ``batch_size``); or an iterable (a list, a generator, a
    ``DataLoader``) whose items are tensors, ``(input, label)`` pairs (the input is used, the
    label ignored) or dicts of keyword inputs as a tokenizer returns them (the model is then
    called as ``model(**batch)``). A wrong kind of ``data`` is a TypeError at once; a wrong
    item, when it is reached."""
    from .data import ImageSet

    check_int(batch_size, "batch_size", minimum=1)
    if isinstance(data, ImageSet):
        data = (data.images, data.labels)
    if isinstance(data, torch.Tensor):
        return iter([((data,), {})])
    if _is_dataset_pair(data):
        images = data[0]
        return (((images[i:i + batch_size],), {}) for i in range(0, len(images), batch_size))
    if isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise TypeError("calibration must be a tensor, an ImageSet, an (images, labels) pair, an "
                        "iterable of tensors, of (input, label) pairs or of dicts of keyword "
                        f"inputs, or a function that runs the model; got {type(data).__name__}")
    return (_as_call(i, item) for i, item in enumerate(data))


def _as_call(i: int, item) -> tuple:
    """One item of an iterable of calibration batches as ``(args, kwargs)``."""
    if isinstance(item, torch.Tensor):
        return (item,), {}
    if isinstance(item, dict):
        return (), dict(item)
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        return (item[0],), {}
    raise TypeError(f"calibration item {i} is a {type(item).__name__}; expected a tensor, an "
                    "(input, label) pair or a dict of keyword inputs")


def collect_statistics(model: nn.Module, calibration, *, include=None, batch_size: int = 256,
                       max_batches: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                       max_vectors_per_batch: int | None = None, seed: int = 0,
                       progress=None) -> CalibrationStatistics:
    """Run ``model`` over ``calibration`` and collect, for each chosen layer, the Gram
    matrix and the mean absolute value of its input vectors (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        Run in eval mode under ``torch.no_grad()``; its mode is restored and its weights are
        not changed. Nested layers and layers called more than once per forward pass are
        counted on every call.
    calibration
        What :func:`calibration_batches` accepts, or a function ``calibration(model)`` that
        runs the model on the calibration data itself.
    include : str or list of str, optional
        Layer names or shell-style patterns; default every ``nn.Linear`` and ``nn.Conv2d``.
    max_batches : int, optional
        Use only the first ``max_batches`` batches.
    max_bytes : int
        Bound on the memory of all Gram matrices; layers that do not fit are skipped, widest
        first, with the reason in ``skipped``.
    max_vectors_per_batch : int, optional
        Keep at most this many input vectors of each layer from each forward call, a
        uniform sample without replacement drawn with ``seed`` (default: all of them).
    progress : bool, optional
        Draw a progress bar (default as in :mod:`lrlib.train`).
    """
    from tqdm.auto import tqdm

    from .compress import select_layers        # compress uses this module: import it late
    from .train import progress_enabled

    check_type(model, "model", nn.Module)
    check_int(max_bytes, "max_bytes", minimum=1)
    if max_batches is not None:
        check_int(max_batches, "max_batches", minimum=1)
    if max_vectors_per_batch is not None:
        check_int(max_vectors_per_batch, "max_vectors_per_batch", minimum=1)
    generator = torch.Generator().manual_seed(check_int(seed, "seed"))
    runner = calibration if callable(calibration) and not isinstance(calibration, nn.Module) else None
    batches = None if runner else calibration_batches(calibration, batch_size=batch_size)
    if batches is not None and max_batches is not None:
        batches = itertools.islice(batches, max_batches)

    chosen = select_layers(model, [include] if isinstance(include, str) else include)
    if not chosen:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer to collect statistics for")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    statistics, skipped, used = {}, {}, 0
    for name, layer in sorted(chosen, key=lambda item: _features(item[1])):
        d = _features(layer)
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            skipped[name] = f"groups={layer.groups} (only groups=1 convolutions are factorized)"
        elif used + 8 * d * d > max_bytes:
            skipped[name] = (f"its {d}×{d} Gram matrix ({8 * d * d / 2 ** 20:.1f} MiB) does not fit "
                             f"in max_bytes={max_bytes:,}")
        else:
            used += 8 * d * d
            vector = dict(dtype=torch.float64, device=device)
            statistics[name] = LayerStatistics(name, d, torch.zeros(d, d, **vector),
                                               torch.zeros(d, **vector), torch.zeros(d, **vector))
    order = [name for name, _ in chosen]
    statistics = {name: statistics[name] for name in order if name in statistics}
    modules = dict(chosen)

    def hook_for(name):
        def hook(layer, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            vectors = input_vectors(layer, x)
            if max_vectors_per_batch is not None and len(vectors) > max_vectors_per_batch:
                chosen_rows = torch.randperm(len(vectors), generator=generator)[:max_vectors_per_batch]
                vectors = vectors[chosen_rows.to(vectors.device)]
            if not torch.isfinite(vectors).all():
                raise ValueError(f"calibration: the input of layer {name} holds NaN or infinite "
                                 "values")
            statistics[name].add(vectors)
        return hook

    handles = [modules[name].register_forward_pre_hook(hook_for(name), with_kwargs=True)
               for name in statistics]
    was_training = model.training
    count = 0
    try:
        model.eval()
        with torch.no_grad():
            if runner is not None:
                runner(model)
                count = 1
            else:
                for args, kwargs in tqdm(batches, desc="calibration", leave=False,
                                         disable=not progress_enabled(progress)):
                    model(*[a.to(device) for a in args],
                          **{k: v.to(device) if isinstance(v, torch.Tensor) else v
                             for k, v in kwargs.items()})
                    count += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if count == 0:
        raise ValueError("calibration holds no batch: pass at least one input")
    if statistics and all(s.count == 0 for s in statistics.values()):
        raise ValueError("calibration ran the model but none of the chosen layers received an "
                         "input: check that the data reaches them")
    return CalibrationStatistics(statistics, skipped, count)
