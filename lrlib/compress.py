"""Model surgery: replace chosen Linear layers by low-rank ones and report what changed.

Introduced in notebook ``03_svd_low_rank``.

``compress(model, rank=...)`` walks the model's ``nn.Linear`` layers, picks a rank for each
(one int for all, a fraction of parameters to keep, an energy rule, or a per-layer dict),
replaces each layer where that saves something by a :class:`lrlib.layers.LowRankLinear`,
and returns the new model with a report: per layer, its shape, rank, parameters and FLOPs
before and after, and the relative error ``‖W − W_r‖_F / ‖W‖_F``. Layers where factorizing
would not save anything are left dense, and the report says why.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from ._table import html_table, text_table
from .layers import METHODS, LowRankLinear
from .svd import break_even_rank, rank_for_energy, rank_for_params

__all__ = ["Energy", "CompressionReport", "compress"]


@dataclass(frozen=True)
class Energy:
    """Rank rule: the smallest rank keeping a fraction ``energy`` of ``Σ S_i²``
    (see :func:`lrlib.svd.rank_for_energy`). Use as ``compress(model, rank=Energy(0.9))``."""

    energy: float

    def __post_init__(self):
        if isinstance(self.energy, bool) or not isinstance(self.energy, (int, float)) \
                or not 0 < self.energy <= 1:
            raise ValueError(f"energy must be a number in (0, 1], got {self.energy!r}")


def _check_rule(rule, where: str = "rank"):
    """A rank rule is a positive int, a float in (0, 1] or an Energy."""
    if isinstance(rule, bool):
        raise TypeError(f"{where} must be an int, a float in (0, 1] or an Energy, got {rule!r}")
    if isinstance(rule, int):
        if rule < 1:
            raise ValueError(f"{where} must be a positive int, got {rule}")
    elif isinstance(rule, float):
        if not 0 < rule <= 1:
            raise ValueError(f"{where} as a float is the fraction of parameters to keep and must "
                             f"be in (0, 1], got {rule}")
    elif not isinstance(rule, Energy):
        raise TypeError(f"{where} must be an int, a float in (0, 1], an Energy or a dict of "
                        f"those, got {type(rule).__name__}")
    return rule


@dataclass
class CompressionReport:
    """One row per Linear layer considered. Prints as a table; HTML in notebooks."""

    rows: list

    columns = ("layer", "shape", "rank", "params before", "params after", "MFLOPs before",
               "MFLOPs after", "rel. error", "note")

    @property
    def params_before(self) -> int:
        return sum(row["params_before"] for row in self.rows)

    @property
    def params_after(self) -> int:
        return sum(row["params_after"] for row in self.rows)

    @property
    def flops_before(self) -> int:
        return sum(row["flops_before"] for row in self.rows)

    @property
    def flops_after(self) -> int:
        return sum(row["flops_after"] for row in self.rows)

    def _cells(self) -> list:
        cells = []
        for row in self.rows:
            cells.append([
                row["layer"], f"{row['shape'][0]}×{row['shape'][1]}",
                "dense" if row["rank"] is None else str(row["rank"]),
                f"{row['params_before']:,}", f"{row['params_after']:,}",
                f"{row['flops_before'] / 1e6:.3f}", f"{row['flops_after'] / 1e6:.3f}",
                f"{row['relative_error']:.4f}", row["note"],
            ])
        cells.append(["total", "", "", f"{self.params_before:,}", f"{self.params_after:,}",
                      f"{self.flops_before / 1e6:.3f}", f"{self.flops_after / 1e6:.3f}", "", ""])
        return cells

    def __str__(self) -> str:
        return text_table(self.columns, self._cells(), left_aligned=(0, 1, 8))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return html_table(self.columns, self._cells())


def _selected(name: str, include, exclude) -> bool:
    if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not (exclude is not None and any(fnmatch.fnmatchcase(name, p) for p in exclude))


def _choose_rank(rule, weight: torch.Tensor, singular_values) -> tuple:
    """(rank or None, note) for one layer under ``rule``."""
    m, n = weight.shape
    limit = break_even_rank((m, n))
    if isinstance(rule, int):
        rank = rule
    elif isinstance(rule, float):
        try:
            rank = rank_for_params((m, n), rule)
        except ValueError:
            return None, f"keep={rule} leaves less than rank 1"
    else:
        rank = rank_for_energy(singular_values, rule.energy)
    if rank > min(m, n):
        return None, f"rank {rank} > min({m}, {n})"
    if rank > limit:
        return None, f"rank {rank} > break-even {limit}: no saving"
    return rank, ""


def compress(model: nn.Module, *, rank, method: str = "svd", include=None, exclude=None,
             inplace: bool = False, seed: int = 0):
    """Replace the model's Linear layers by :class:`~lrlib.layers.LowRankLinear`.

    Parameters
    ----------
    model : nn.Module
    rank : int, float, Energy, or dict
        The rank rule: an int (the same rank for every layer), a float in ``(0, 1]`` (the
        fraction of each layer's weights to keep, :func:`lrlib.svd.rank_for_params`), an
        :class:`Energy` (the smallest rank keeping that fraction of ``Σ S_i²``), or a dict
        mapping layer names to such rules (layers not named are left alone).
    method : {"svd", "randomized"}
        How to factorize (see :meth:`LowRankLinear.from_linear`).
    include, exclude : list of str, optional
        Layer names or shell-style patterns (``"fc*"``) to consider / to skip.
    inplace : bool
        Change ``model`` itself. By default a deep copy is compressed and ``model`` is
        left exactly as it was.
    seed : int
        Seed of the randomized SVD.

    Returns
    -------
    (nn.Module, CompressionReport)
        A layer is left dense, with the reason in the report's ``note``, when its rank
        would exceed ``min(m, n)`` or the break-even rank (no saving).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(rank, dict):
        rules = {name: _check_rule(rule, f"rank[{name!r}]") for name, rule in rank.items()}
    else:
        rules = None
        _check_rule(rank)
    for name, patterns in (("include", include), ("exclude", exclude)):
        if patterns is not None and (isinstance(patterns, str)
                                     or not all(isinstance(p, str) for p in patterns)):
            raise TypeError(f"{name} must be a list of layer names or patterns, got {patterns!r}")

    if isinstance(model, nn.Linear):
        raise TypeError("model is a single nn.Linear; compress works on models that contain "
                        "Linear layers -- use LowRankLinear.from_linear(layer, rank) for one layer")
    target = model if inplace else copy.deepcopy(model)
    linears = [(name, module) for name, module in target.named_modules()
               if isinstance(module, nn.Linear)]
    if rules is not None:
        unknown = sorted(set(rules) - {name for name, _ in linears})
        if unknown:
            raise ValueError(f"rank names layers that are not Linear layers of the model: {unknown}")

    rows = []
    for name, linear in linears:
        if not _selected(name, include, exclude) or (rules is not None and name not in rules):
            continue
        rule = rules[name] if rules is not None else rank
        weight = linear.weight.detach()
        if not bool(torch.isfinite(weight).all()):
            raise ValueError(f"layer {name!r} has NaN or Inf weights; cannot factorize it")
        m, n = weight.shape
        U, singular_values, Vh = torch.linalg.svd(weight.double(), full_matrices=False)
        chosen, note = _choose_rank(rule, weight, singular_values)
        bias = linear.out_features if linear.bias is not None else 0
        row = {"layer": name, "shape": (m, n), "rank": chosen,
               "params_before": m * n + bias, "flops_before": 2 * m * n}
        if chosen is None:
            row.update(params_after=row["params_before"], flops_after=row["flops_before"],
                       relative_error=0.0, note=note)
        else:
            if method == "svd":  # reuse the SVD computed above
                layer = LowRankLinear.from_svd(U, singular_values, Vh, linear.bias, rank=chosen,
                                               dtype=weight.dtype)
            else:
                layer = LowRankLinear.from_linear(linear, chosen, method=method, seed=seed)
            with torch.no_grad():
                error = torch.linalg.matrix_norm(layer.to_dense().weight.double() - weight.double())
            row.update(params_after=layer.params, flops_after=layer.flops,
                       relative_error=float(error / torch.linalg.matrix_norm(weight.double())),
                       note=note)
            _replace(target, name, layer)
        rows.append(row)
    return target, CompressionReport(rows)


def _replace(root: nn.Module, dotted_name: str, new: nn.Module) -> None:
    parent_name, _, child = dotted_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
