"""Execute solution notebooks top to bottom, store their outputs, rebuild student notebooks.

    python tools/execute_solutions.py                    # every solutions/*.ipynb
    python tools/execute_solutions.py solutions/00_welcome.ipynb

Each notebook runs in a fresh kernel whose working folder is solutions/, with
LRLIB_QUIET=1 so that progress bars stay out of the stored outputs (nbval runs them the
same way). The result is written with deterministic JSON, then
tools/build_student_notebooks.py regenerates notebooks/.
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

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"


def execute(path: Path, timeout: int) -> float:
    """Run one notebook in place; return the seconds it took."""
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
    path.write_text(nbformat.writes(nb).rstrip("\n") + "\n", encoding="utf-8")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Execute solution notebooks in place.")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: all of solutions/")
    parser.add_argument("--timeout", type=int, default=600, help="per cell, in seconds")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(SOLUTIONS.glob("*.ipynb"))
    for path in paths:
        seconds = execute(path.resolve(), args.timeout)
        print(f"executed {path} in {seconds:.1f} s")
    return subprocess.call([sys.executable, str(ROOT / "tools" / "build_student_notebooks.py")])


if __name__ == "__main__":
    sys.exit(main())
