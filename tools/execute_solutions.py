"""Execute solution notebooks top to bottom, store their outputs, rebuild student notebooks.

    python tools/execute_solutions.py                    # every solutions/*.ipynb
    python tools/execute_solutions.py solutions/00_welcome.ipynb

Each notebook runs in a fresh kernel whose working folder is solutions/, with
LRLIB_QUIET=1 so that progress bars stay out of the stored outputs (nbval runs them the
same way).

Notebooks state what their measurements show as claims (``lrlib.claims.claim``), which
print "✗ claim does not hold: ..." when the run contradicts the text. After each run the
outputs are searched for that line. A notebook with a failed claim is run again (a busy
moment of the machine is the usual cause), up to ``--attempts`` times; if its claims still
fail, its outputs are not stored, the old file stays, and the command exits with status 1.
Execute on a quiet machine: nothing else running.

Stored notebooks are written with deterministic JSON, then tools/build_student_notebooks.py
regenerates notebooks/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from lrlib import claims

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"


def run(path: Path, timeout: int):
    """Run one notebook in a fresh kernel; return it with its outputs, and the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    os.environ["LRLIB_QUIET"] = "1"  # the kernel inherits this process's environment
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,  # nbclient needs it for Output widgets; dropped below
        record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    nbformat.validate(nb)
    return nb, seconds


def failed_claims(nb) -> list:
    """``(cell index, statement)`` for every failed claim printed in the notebook's outputs."""
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            if not text and "data" in output:
                text = output["data"].get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            found.extend((index, statement) for statement in claims.failed_claims(text))
    return found


def execute(path: Path, timeout: int, attempts: int = 3) -> float:
    """Run a notebook until its claims hold (at most ``attempts`` runs) and store it.
    Raises ClaimsFailed, leaving the stored file as it was, when they never do."""
    for attempt in range(1, attempts + 1):
        nb, seconds = run(path, timeout)
        failures = failed_claims(nb)
        if not failures:
            path.write_text(nbformat.writes(nb).rstrip("\n") + "\n", encoding="utf-8")
            return seconds
        for index, statement in failures:
            print(f"{path.name}, run {attempt}: cell {index}: claim does not hold: {statement}")
    raise ClaimsFailed(f"{path.name}: claims failed in all {attempts} runs; outputs not stored")


class ClaimsFailed(RuntimeError):
    """A notebook's measurements contradicted its text in every run."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Execute solution notebooks in place.")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: all of solutions/")
    parser.add_argument("--timeout", type=int, default=600, help="per cell, in seconds")
    parser.add_argument("--attempts", type=int, default=3,
                        help="runs of a notebook whose claims fail before giving up")
    args = parser.parse_args(argv)
    if args.attempts < 1:
        parser.error(f"--attempts must be at least 1, got {args.attempts}")
    paths = args.notebooks or sorted(SOLUTIONS.glob("*.ipynb"))
    refused = []
    for path in paths:
        try:
            seconds = execute(path.resolve(), args.timeout, args.attempts)
        except ClaimsFailed as failure:
            print(failure)
            refused.append(path)
            continue
        print(f"executed {path} in {seconds:.1f} s")
    status = subprocess.call([sys.executable, str(ROOT / "tools" / "build_student_notebooks.py")])
    if refused:
        print("not stored (claims failed): " + ", ".join(str(path) for path in refused))
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
