"""Weights-only against data-aware low rank, before any fine-tuning (issue: data-aware low rank).

    python benchmarks/data_aware.py [--calibration-images N] [--output FILE]

For the reference MLP (fc1 and fc2 at a fraction of their parameters) and the reference
CNN (conv2–conv4 as channel-SVD chains at a FLOP reduction, BatchNorm folded first), each
budget is compressed three ways at the same ranks: the truncated SVD of the weights
(``svd``), the activation-aware SVD (``asvd``, Yuan et al. 2023) and the whitened SVD
(``whitened``, Chen et al. 2021; Wang et al. 2024), the last two on the first N training
images. It prints and saves the test accuracy (2,000 images) of each, its drop from the
dense model, and the seconds that compressing took (statistics collected once per model,
timed separately).

Goal: at every budget, the whitened SVD's accuracy drop is at most half of weights-only
SVD's. EfficientNet-Lite0 is not measured yet.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lrlib import calibration, compress, data, env, models, optimize, rank_rules, train

HERE = Path(__file__).resolve().parent
METHODS = ("svd", "asvd", "whitened")
CASES = {
    "mlp": {"layers": ["fc1", "fc2"], "budgets": [0.1, 0.05, 0.025],
            "rule": lambda budget: budget, "label": "params kept"},
    "cnn": {"layers": ["conv2", "conv3", "conv4"], "budgets": [2, 4, 8],
            "rule": lambda budget: rank_rules.FlopReduction(budget), "label": "FLOPs ÷"},
}


def run_case(name: str, case: dict, calibration_data, test_set) -> list:
    model = models.load_reference(name)
    if name == "cnn":
        model = optimize.fold_batchnorms(model)       # the chains then see what the dense convs saw
    dense = train.evaluate(model, test_set, progress=False).accuracy
    start = time.perf_counter()
    statistics = calibration.collect_statistics(model, calibration_data, include=case["layers"],
                                                progress=False)
    statistics_seconds = time.perf_counter() - start
    example = test_set.images[:8]
    rows = []
    for budget in case["budgets"]:
        rule = case["rule"](budget)
        for method in METHODS:
            start = time.perf_counter()
            compressed, report = compress.compress(
                model, rank={layer: rule for layer in case["layers"]}, method=method,
                calibration=statistics, example_input=example)
            seconds = time.perf_counter() - start
            accuracy = train.evaluate(compressed, test_set, progress=False).accuracy
            rows.append({"model": name, "budget": budget, "budget_label": case["label"],
                         "method": method, "dense_accuracy": dense, "accuracy": accuracy,
                         "drop": dense - accuracy, "seconds": seconds,
                         "statistics_seconds": statistics_seconds,
                         "ranks": {row["layer"]: row["rank"] for row in report.rows},
                         "calibration_errors": {row["layer"]: row["calibration_error"] for row in report.rows}})
            print(f"{name} {case['label']} {budget:<6} {method:<9} accuracy {100 * accuracy:5.1f}% "
                  f"(drop {100 * (dense - accuracy):5.1f} points), {seconds:.2f} s", flush=True)
    return rows


def summary(rows: list) -> dict:
    """For each model and budget, whitened drop / weights-only drop; the goal holds when
    that ratio is at most 0.5 everywhere."""
    ratios = {}
    for row in rows:
        if row["method"] == "whitened":
            plain = next(r for r in rows if r["model"] == row["model"] and r["budget"] == row["budget"]
                         and r["method"] == "svd")
            key = f"{row['model']} {row['budget_label']} {row['budget']}"
            ratios[key] = row["drop"] / plain["drop"] if plain["drop"] > 0 else None
    met = all(r is not None and r <= 0.5 for r in ratios.values())
    return {"drop_ratios": ratios, "goal": "whitened drop ≤ 0.5 × weights-only drop at every budget",
            "met": met}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-images", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "data_aware.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    train_set, test_set = data.fashion_mnist("train"), data.fashion_mnist("test")
    calibration_data = (train_set.images[:args.calibration_images], train_set.labels[:args.calibration_images])
    rows = []
    for name, case in CASES.items():
        rows += run_case(name, case, calibration_data, test_set)
    result = {"environment": env.report(), "calibration_images": args.calibration_images, "rows": rows,
              "summary": summary(rows)}
    for key, ratio in result["summary"]["drop_ratios"].items():
        print(f"{key}: whitened drop / weights-only drop = " + ("–" if ratio is None else f"{ratio:.2f}"))
    print(f"goal ({result['summary']['goal']}): {'met' if result['summary']['met'] else 'not met'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
