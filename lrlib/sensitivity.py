"""Sensitivity scan: how much accuracy each layer loses when it alone is factorized.

Introduced in notebook ``05_decomposing_convolutions``; used to choose ranks in ``07_capstone``.

A layer whose accuracy barely moves can be compressed hard; a sensitive layer needs a high
rank or should stay dense. This is the per-layer scan that Han, Pool, Tran & Dally (2015,
"Learning both weights and connections for efficient neural networks", NeurIPS) run for
pruning, and that MIT 6.5940's labs run for ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ._table import html_table, text_table
from .compress import compress, select_layers
from .rank_rules import check_rule
from .factorizations import check_method
from .train import evaluate
from .validate import check_number, check_type

__all__ = ["SensitivityScan", "sensitivity_scan"]

@dataclass
class SensitivityScan:
    """Accuracy after factorizing one layer at a time, with everything else left dense.

    ``baseline`` is the dense model's accuracy; ``rows`` has one dict per (layer, rule):
    ``layer``, ``rule``, ``rank``, ``params_after``, ``accuracy``, ``drop`` (baseline −
    accuracy). Prints as a table; :meth:`choose` turns it into a per-layer rank dict."""

    baseline: float
    rows: list

    def choose(self, max_drop: float) -> dict:
        """For each layer, the rule with the fewest parameters whose accuracy drop is at
        most ``max_drop`` (layers where no rule qualifies are left out, i.e. stay dense)."""
        check_number(max_drop, "max_drop", low=0)
        choice = {}
        for layer in dict.fromkeys(row["layer"] for row in self.rows):
            good = [row for row in self.rows if row["layer"] == layer and row["rank"] is not None
                    and row["drop"] <= max_drop]
            if good:
                choice[layer] = min(good, key=lambda row: row["params_after"])["rule"]
        return choice

    def _cells(self) -> list:
        return [[row["layer"], str(row["rule"]), "dense" if row["rank"] is None else str(row["rank"]),
                 f"{row['params_after']:,}", f"{row['accuracy']:.4f}", f"{row['drop']:+.4f}"]
                for row in self.rows]

    columns = ("layer", "rule", "rank", "params after", "accuracy", "drop")

    def __str__(self) -> str:
        return f"dense accuracy {self.baseline:.4f}\n" + text_table(self.columns, self._cells(), left_aligned=(0, 1, 2))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<p>dense accuracy {self.baseline:.4f}</p>" + html_table(self.columns, self._cells())


def sensitivity_scan(model: nn.Module, data, *, rules=(0.1, 0.25, 0.5), method="auto",
                     include=None, exclude=None, batch_size: int = 500, seed: int = 0) -> SensitivityScan:
    """How much accuracy each layer loses when it alone is factorized, for each rank rule.

    A layer whose accuracy barely moves can be compressed hard; a sensitive layer needs a
    high rank or should stay dense. ``model`` is not changed.

    Parameters
    ----------
    model : nn.Module
    data : ImageSet, (inputs, labels) or DataLoader
        What :func:`lrlib.train.evaluate` accepts; a few hundred examples are enough to
        rank layers.
    rules : sequence of rank rules
        Tried for every layer (see :func:`compress`; e.g. fractions of parameters to keep).
    method, include, exclude, seed
        As in :func:`compress`.
    """
    if isinstance(rules, (str, bytes)) or not hasattr(rules, "__iter__"):
        raise TypeError(f"rules must be a sequence of rank rules, got {rules!r}")
    rules = list(rules)
    if not rules:
        raise ValueError("rules must not be empty")
    for i, rule in enumerate(rules):
        check_rule(rule, f"rules[{i}]")
    check_type(model, "model", nn.Module)
    check_method(method)
    layers = [name for name, _ in select_layers(model, include, exclude)]
    baseline = evaluate(model, data, batch_size=batch_size).accuracy
    rows = []
    for name in layers:
        for rule in rules:
            compressed, report = compress(model, rank={name: rule}, method=method, seed=seed)
            (row,) = report.rows
            accuracy = evaluate(compressed, data, batch_size=batch_size).accuracy
            rows.append({"layer": name, "rule": rule, "rank": row["rank"],
                         "params_after": row["params_after"], "accuracy": accuracy,
                         "drop": baseline - accuracy})
    return SensitivityScan(baseline, rows)
