"""Run every benchmark, then write benchmarks/results.json and a Markdown table.

    python benchmarks/run_all.py [--quick] [--update-readme]

Each script runs in its own process (one after the other: on a small machine two timings
at once spoil both) and writes its JSON into benchmarks/results/. This script then reads
them back and summarizes each in one row — what was compared, the headline number, the
goal and whether it was met — into ``benchmarks/results.json`` and
``benchmarks/results.md``, with the machine they ran on. ``--update-readme`` also copies
the table into README.md between the ``<!-- benchmarks:start -->`` and
``<!-- benchmarks:end -->`` markers. ``--summarize-only`` skips the runs and summarizes
the JSON files already in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"

# script → (arguments for a full run, arguments for --quick)
SCRIPTS = {
    "bench_harness": ([], ["--repeats", "2", "--min-run-time", "0.1"]),
    "linear_speedup": ([], ["--sizes", "1024", "--batches", "32", "--skip-svd"]),
    "decompositions": ([], ["--n-iter-max", "20"]),
    "conv_speedup": ([], ["--quick", "--skip-end-to-end", "--seconds", "0.05"]),
    "data_aware": ([], ["--calibration-images", "500"]),
}


def summarize_bench_harness(data: dict) -> dict:
    ratios = [row["ratio"] for row in data["rows"]]
    inside = sum(0.9 <= r <= 1.1 for r in ratios)
    return {"headline": f"lrlib/Timer median ratio {min(ratios):.2f}–{max(ratios):.2f} "
                        f"({inside} of {len(ratios)} rows within 0.9–1.1)",
            "goal": "ratio within 0.9–1.1", "met": inside == len(ratios)}


def summarize_linear_speedup(data: dict) -> dict:
    ratio = data["summary"]["median_ratio_goal_rows"]
    return {"headline": f"median measured/predicted speedup {ratio:.2f} "
                        f"({data['summary']['goal_rows']} rows ≥ 1024 wide, batch ≥ 32)",
            "goal": "≥ 0.9", "met": ratio >= 0.9}


def summarize_decompositions(data: dict) -> dict:
    error = max(row["error_ratio"] for row in data["rows"])
    seconds = max(row["time_ratio"] for row in data["rows"])
    return {"headline": f"worst error ratio {error:.4f}, worst time ratio {seconds:.3f} vs TensorLy",
            "goal": "error ≤ 1.00, time ≤ 0.5", "met": error <= 1.0 + 1e-4 and seconds <= 0.5}


def summarize_conv_speedup(data: dict) -> dict:
    best = {method: max(data["grid_median"][fmt][method] for fmt in data["grid_median"])
            for method in ("cp-separable", "cp-fused", "tucker2")}
    cp = max(best["cp-separable"], best["cp-fused"])
    verdict = {True: "met", False: "missed"}
    parts = {"tucker2": best["tucker2"] >= 0.8, "cp": cp >= 0.6}
    headline = (f"median measured/predicted: Tucker-2 {best['tucker2']:.2f} ({verdict[parts['tucker2']]}), "
                f"better CP {cp:.2f} ({verdict[parts['cp']]})")
    if "end_to_end" in data:
        runs = data["end_to_end"]
        good = [r for r in runs if r["accuracy_drop_points"] <= 1.0] or runs
        top = max(good, key=lambda r: r["speedup"])
        parts["cnn"] = top["speedup"] >= 4 and top["accuracy_drop_points"] <= 1.0
        headline += (f"; CNN end to end {top['speedup']:.2f}× at batch 32, "
                     f"{top['accuracy_drop_points']:.2f} points lower accuracy ({top['method']}, "
                     f"{verdict[parts['cnn']]})")
    if "allocator" in data:
        headline += f"; allocator: {data['allocator']}"
    return {"headline": headline, "goal": "Tucker-2 ≥ 0.8, CP ≥ 0.6; CNN ≥ 4×, ≤ 1 point",
            "met": all(parts.values())}


def summarize_data_aware(data: dict) -> dict:
    rows = data["rows"]

    def row(model, budget, method):
        return next(r for r in rows if r["model"] == model and r["budget"] == budget and r["method"] == method)

    parts = []
    for model, pair in (("mlp", ("svd", "whitened")), ("cnn-tucker2", ("tucker2", "whitened-tucker2"))):
        budgets = list(dict.fromkeys(r["budget"] for r in rows if r["model"] == model))
        last = budgets[-1]
        label = row(model, last, pair[0])["budget_label"]
        parts.append(f"{model} at {label} {last}: accuracy drop {100 * row(model, last, pair[0])['drop']:.1f} "
                     f"({pair[0]}) / {100 * row(model, last, pair[1])['drop']:.1f} ({pair[1]}) points")
    effnet = [r for r in rows if r["model"] == "efficientnet-lite0" and r["method"] == "whitened"]
    if effnet:
        best = max((r for r in effnet if r["flop_reduction"] > 1.01), key=lambda r: r["agreement"],
                   default=effnet[0])
        plain = row("efficientnet-lite0", best["budget"], "svd")
        parts.append(f"EfficientNet-Lite0 at {best['flop_reduction']:.2f}× fewer FLOPs: top-1 agreement "
                     f"{100 * plain['agreement']:.0f}% (weights only) / {100 * best['agreement']:.0f}% (whitened)")
    ratios = [r for r in data["summary"]["drop_ratios"].values() if r is not None]
    headline = "; ".join(parts) + (f"; data-aware/weights-only drop ratio {min(ratios):.2f}–{max(ratios):.2f} "
                                   f"over {len(ratios)} budgets, before fine-tuning")
    met = data["summary"]["met"] and data["summary"].get("efficientnet_met", False)
    return {"headline": headline,
            "goal": "data-aware drop ≤ ½ weights-only at every budget; EfficientNet-Lite0 ≥ 90% agreement",
            "met": met}


SUMMARIES = {name: globals()[f"summarize_{name}"] for name in SCRIPTS}


def run(name: str, quick: bool) -> float:
    full, short = SCRIPTS[name]
    command = [sys.executable, str(HERE / f"{name}.py"), *(short if quick else full),
               "--output", str(RESULTS / f"{name}.json")]
    print(f"$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def markdown(summaries: dict, environment: dict) -> str:
    lines = ["| benchmark | result | goal | met |", "|---|---|---|---|"]
    for name, summary in summaries.items():
        lines.append(f"| `{name}.py` | {summary['headline']} | {summary['goal']} | "
                     f"{'yes' if summary['met'] else 'no'} |")
    machine = ", ".join(f"{key} {value}" for key, value in environment.items()
                        if key in ("cpu", "logical_cpus", "torch_threads", "platform", "python", "torch"))
    when = time.strftime("%Y-%m-%d", time.gmtime())
    return "\n".join(lines) + f"\n\nMeasured on {when} on: {machine}.\n"


def update_readme(table: str) -> None:
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} … {END} block to update")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    README.write_text(f"{before}{START}\n{table}{END}{after}", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="run every benchmark and summarize them")
    parser.add_argument("--quick", action="store_true", help="small settings (a smoke test, not a result)")
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    seconds = {}
    if not args.summarize_only:
        for name in SCRIPTS:
            seconds[name] = run(name, args.quick)
    summaries, environment = {}, {}
    for name, summarize in SUMMARIES.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            print(f"{path} is missing: run benchmarks/{name}.py first", file=sys.stderr)
            return 1
        data = json.loads(path.read_text())
        summaries[name] = summarize(data)
        environment = data.get("environment", environment)
    table = markdown(summaries, environment)
    (HERE / "results.json").write_text(json.dumps(
        {"quick": args.quick, "seconds": seconds, "environment": environment,
         "summaries": summaries}, indent=2) + "\n")
    (HERE / "results.md").write_text(table)
    print(table)
    if args.update_readme:
        if args.quick:
            print("--update-readme ignored with --quick: README shows full runs only", file=sys.stderr)
        else:
            update_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
