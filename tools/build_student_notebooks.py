"""Build the student notebooks in notebooks/ from the solution notebooks in solutions/.

Every solution notebook marks the code that students must write themselves
with two marker lines::

    def square(x):
        ### BEGIN SOLUTION
        return x * x
        ### END SOLUTION

The student version replaces each marked region (marker lines included) by a
stub at the indentation of the BEGIN marker::

    def square(x):
        # Exercise 1.1: write your solution here.
        raise NotImplementedError("Exercise 1.1: replace this line with your solution")

The exercise label ("1.1") comes from the code cell itself or, if the cell
does not mention an exercise, from the nearest markdown cell above it that
does. The tool also clears outputs and execution counts, and tags every
stubbed cell "raises-exception" so that nbval accepts the NotImplementedError.

Usage::

    python tools/build_student_notebooks.py            # rebuild notebooks/
    python tools/build_student_notebooks.py --check    # only report what is out of date
    python tools/build_student_notebooks.py solutions/03_svd.ipynb   # rebuild one notebook
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOLUTIONS_DIR = REPO_ROOT / "solutions"
DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

BEGIN_MARKER = "### BEGIN SOLUTION"
END_MARKER = "### END SOLUTION"
EXERCISE_PATTERN = re.compile(r"Exercise\s+(\d+\.\d+)")
RAISES_TAG = "raises-exception"

# Cell metadata that only records how the notebook was last run or displayed.
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled")
# Notebook metadata that only records the state of the last session.
VOLATILE_NOTEBOOK_METADATA = ("widgets",)


class NotebookBuildError(ValueError):
    """A solution notebook cannot be turned into a student notebook."""


# ---------------------------------------------------------------------------
# Replacing solution regions in one cell
# ---------------------------------------------------------------------------


def make_stub(indent: str, exercise: str, line_ending: str) -> str:
    """Return the two stub lines that replace one solution region."""
    return (
        f"{indent}# Exercise {exercise}: write your solution here.\n"
        f'{indent}raise NotImplementedError("Exercise {exercise}: '
        f'replace this line with your solution"){line_ending}'
    )


def leading_whitespace(line: str) -> str:
    """Return the spaces and tabs at the start of ``line``."""
    return line[: len(line) - len(line.lstrip(" \t"))]


def line_ending(line: str) -> str:
    """Return the newline characters at the end of ``line`` ("" for the last line)."""
    return line[len(line.rstrip("\r\n")) :]


def stub_solutions(source: str, exercise: str | None, where: str) -> tuple[str, int]:
    """Replace every solution region in ``source`` by a stub.

    ``exercise`` is the label ("N.k") written into the stubs; ``where`` (for
    example "solutions/03_svd.ipynb, cell 12") starts every error message.
    Returns the new source and the number of regions that were replaced.
    Raises NotebookBuildError for unmatched or nested markers, and for a
    region when ``exercise`` is None.
    """
    new_lines: list[str] = []
    region_start = None  # line number of the BEGIN marker of the open region
    region_indent = ""
    region_count = 0

    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker == BEGIN_MARKER:
            if region_start is not None:
                raise NotebookBuildError(
                    f"{where}, line {number}: '{BEGIN_MARKER}' inside the region "
                    f"opened on line {region_start} (regions cannot be nested)"
                )
            if exercise is None:
                raise NotebookBuildError(
                    f"{where}, line {number}: no exercise label ('Exercise N.k') "
                    "in this code cell or in a markdown cell above it"
                )
            region_start = number
            region_indent = leading_whitespace(line)
        elif marker == END_MARKER:
            if region_start is None:
                raise NotebookBuildError(
                    f"{where}, line {number}: '{END_MARKER}' has no matching '{BEGIN_MARKER}'"
                )
            new_lines.append(make_stub(region_indent, exercise, line_ending(line)))
            region_start = None
            region_count += 1
        elif region_start is None:
            new_lines.append(line)

    if region_start is not None:
        raise NotebookBuildError(
            f"{where}, line {region_start}: '{BEGIN_MARKER}' has no matching '{END_MARKER}'"
        )
    return "".join(new_lines), region_count


# ---------------------------------------------------------------------------
# Turning a whole solution notebook into a student notebook
# ---------------------------------------------------------------------------


def cell_source(cell) -> str:
    """Return the source of ``cell`` as one string (it may be stored as a list of lines)."""
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(source)
    return source


def find_exercise_label(cells, index: int) -> str | None:
    """Return the exercise label ("N.k") that belongs to the code cell ``cells[index]``.

    The first "Exercise N.k" in the cell itself wins; otherwise the last one in
    the nearest markdown cell above that mentions an exercise. None if neither exists.
    """
    own_match = EXERCISE_PATTERN.search(cell_source(cells[index]))
    if own_match:
        return own_match.group(1)
    for cell in reversed(cells[:index]):
        if cell.cell_type != "markdown":
            continue
        labels = EXERCISE_PATTERN.findall(cell_source(cell))
        if labels:
            return labels[-1]
    return None


def add_tag(cell, tag: str) -> None:
    """Append ``tag`` to the cell's metadata tags unless it is already there."""
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def clean_code_cell(cell) -> None:
    """Remove outputs, the execution count and volatile metadata from a code cell."""
    cell.outputs = []
    cell.execution_count = None
    for key in VOLATILE_CELL_METADATA:
        cell.metadata.pop(key, None)


def check_cell_ids(nb, path) -> None:
    """Require a unique id on every cell (nbformat 4.5 and later).

    nbformat would otherwise invent random ids, and the student notebooks
    would change on every build.
    """
    if nb.nbformat_minor < 5:
        return
    seen_ids = set()
    for number, cell in enumerate(nb.cells, start=1):
        cell_id = cell.get("id")
        if not cell_id:
            raise NotebookBuildError(
                f"{path}, cell {number}: the cell has no 'id' "
                "(open and save the notebook in Jupyter to add one)"
            )
        if cell_id in seen_ids:
            raise NotebookBuildError(
                f"{path}, cell {number}: the cell id {cell_id!r} is used by an earlier cell"
            )
        seen_ids.add(cell_id)


def validate_notebook(nb, path) -> None:
    """Raise NotebookBuildError unless ``nb`` is a valid notebook."""
    try:
        # validate() may repair what it checks, so give it a copy.
        nbformat.validate(copy.deepcopy(nb))
    except nbformat.ValidationError as error:
        raise NotebookBuildError(f"{path}: not a valid notebook: {error.message}") from None


def build_student_notebook(nb, path):
    """Return the student version of the solution notebook ``nb``.

    ``path`` only names the notebook in error messages. ``nb`` itself is not changed.
    """
    student_nb = nbformat.from_dict(copy.deepcopy(nb))
    for key in VOLATILE_NOTEBOOK_METADATA:
        student_nb.metadata.pop(key, None)
    check_cell_ids(student_nb, path)

    cells = student_nb.cells
    for index, cell in enumerate(cells):
        cell.source = cell_source(cell)
        if cell.cell_type != "code":
            continue
        where = f"{path}, cell {index + 1}"
        exercise = find_exercise_label(cells, index)
        cell.source, region_count = stub_solutions(cell.source, exercise, where)
        if region_count:
            add_tag(cell, RAISES_TAG)
        clean_code_cell(cell)

    validate_notebook(student_nb, path)
    return student_nb


def render(nb) -> str:
    """Return the file text of ``nb`` exactly as nbformat writes it, ending in a newline."""
    text = nbformat.v4.writes(nbformat.from_dict(nb))
    if not text.endswith("\n"):
        text += "\n"
    return text


# ---------------------------------------------------------------------------
# Files and folders
# ---------------------------------------------------------------------------


def read_notebook(path: Path):
    """Read a version 4 notebook from ``path``, raising NotebookBuildError on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
        nb = nbformat.reader.reads(text)
    except (OSError, UnicodeDecodeError) as error:
        raise NotebookBuildError(f"{path}: cannot read the file: {error}") from None
    except (ValueError, KeyError, nbformat.ValidationError) as error:
        raise NotebookBuildError(f"{path}: not a notebook: {error}") from None
    if nb.get("nbformat") != 4:
        raise NotebookBuildError(
            f"{path}: nbformat {nb.get('nbformat')} is not supported; save it as version 4"
        )
    return nb


def read_text_if_exists(path: Path) -> str | None:
    """Return the exact text of ``path`` (newlines untranslated), or None if it is missing."""
    if not path.is_file():
        return None
    return path.read_bytes().decode("utf-8", errors="replace")


def shown(path: Path) -> str:
    """Return ``path`` relative to the current folder when possible, for messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def find_solution_notebooks(solutions_dir: Path, names: list[str]) -> list[Path]:
    """Return the solution notebooks to build: those named, or all in ``solutions_dir``.

    A name may be a path to a notebook or a file name inside ``solutions_dir``.
    A missing ``solutions_dir`` simply holds no notebooks.
    """
    if not names:
        if not solutions_dir.is_dir():
            return []
        return sorted(solutions_dir.glob("*.ipynb"))
    paths = []
    for name in names:
        path = Path(name)
        if not path.is_file():
            path = solutions_dir / name
        if not path.is_file():
            raise NotebookBuildError(f"{name}: no such solution notebook")
        paths.append(path)
    return paths


def build_texts(solution_paths: list[Path], notebooks_dir: Path) -> dict[Path, str]:
    """Build every student notebook in memory: {student notebook path: file text}."""
    texts = {}
    for solution_path in solution_paths:
        label = shown(solution_path)
        student_nb = build_student_notebook(read_notebook(solution_path), label)
        texts[notebooks_dir / solution_path.name] = render(student_nb)
    return texts


def find_orphans(notebooks_dir: Path, solution_paths: list[Path]) -> list[Path]:
    """Return the notebooks in ``notebooks_dir`` that have no solution notebook."""
    if not notebooks_dir.is_dir():
        return []
    solution_names = {path.name for path in solution_paths}
    return [
        path
        for path in sorted(notebooks_dir.glob("*.ipynb"))
        if path.name not in solution_names
    ]


def check(texts: dict[Path, str], orphans: list[Path], solutions_dir: Path) -> int:
    """Print every out-of-date student notebook; return 1 if there is one, else 0."""
    problems = []
    for path, text in texts.items():
        existing = read_text_if_exists(path)
        if existing is None:
            problems.append(f"missing: {shown(path)}")
        elif existing != text:
            problems.append(f"stale: {shown(path)}")
    for path in orphans:
        problems.append(
            f"orphan: {shown(path)} (no {shown(solutions_dir / path.name)})"
        )

    if not problems:
        print(f"OK: {len(texts)} student notebook(s) match the solution notebooks")
        return 0
    for problem in problems:
        print(problem)
    print("Run 'python tools/build_student_notebooks.py' to rebuild the student notebooks.")
    return 1


def write(texts: dict[Path, str], notebooks_dir: Path) -> None:
    """Write the student notebooks whose text changed, and say which ones."""
    notebooks_dir.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        if read_text_if_exists(path) == text:
            continue
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {shown(path)}")
    print(f"{len(texts)} student notebook(s) up to date")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Read the command-line options."""
    parser = argparse.ArgumentParser(
        description="Build the student notebooks in notebooks/ from the solution "
        "notebooks in solutions/ (solution regions become NotImplementedError stubs, "
        "outputs are cleared).",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NOTEBOOK",
        help="solution notebooks to build (paths or file names in the solutions folder); "
        "default: all of them",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list stale, missing and orphan student notebooks and "
        "exit 1 if there are any, else exit 0",
    )
    parser.add_argument(
        "--solutions",
        type=Path,
        default=DEFAULT_SOLUTIONS_DIR,
        metavar="DIR",
        help="folder of solution notebooks (default: solutions/ in the repository)",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=DEFAULT_NOTEBOOKS_DIR,
        metavar="DIR",
        help="folder of student notebooks (default: notebooks/ in the repository)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the tool; return 0 (done / in sync), 1 (--check found problems) or 2 (error)."""
    args = parse_arguments(argv)
    try:
        solution_paths = find_solution_notebooks(args.solutions, args.names)
        texts = build_texts(solution_paths, args.notebooks)
    except NotebookBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.check:
        # Orphans are only meaningful when the whole folder is checked.
        orphans = [] if args.names else find_orphans(args.notebooks, solution_paths)
        return check(texts, orphans, args.solutions)
    write(texts, args.notebooks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
