"""The notebooks follow the course's conventions (nbval runs them; this checks their shape).

* every solution notebook was executed top to bottom in one run, outputs stored;
* every student notebook carries no outputs, and each exercise cell holds a stub and a
  checker call and is tagged raises-exception;
* each checker a notebook calls exists in lrlib.checks;
* each notebook has the sections every notebook has (objectives, summary, references).
"""

import json
import re
from pathlib import Path

import pytest

from lrlib import checks

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STUDENT = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _cells(path, kind=None):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if kind is None or c["cell_type"] == kind]


def _source(cell):
    return "".join(cell["source"])


def test_there_is_a_notebook_00_in_both_versions():
    assert (ROOT / "solutions" / "00_welcome.ipynb") in SOLUTIONS
    assert [p.name for p in STUDENT] == [p.name for p in SOLUTIONS]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_was_executed_top_to_bottom(path):
    code = [c for c in _cells(path, "code") if _source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert None not in counts, f"{path.name}: some cells were not executed"
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: not one in-order run"
    for cell in code:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", f"{path.name}: a cell raised"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_has_the_sections_of_a_notebook(path):
    text = "\n".join(_source(c) for c in _cells(path, "markdown"))
    assert re.match(r"# \d\d — ", _source(_cells(path)[0])), "first cell: '# NN — title'"
    for heading in ("## Learning objectives", "## Summary", "## References"):
        assert heading in text, f"{path.name} lacks '{heading}'"
    assert "**Time:**" in text


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_every_exercise_has_a_solution_region_and_an_existing_checker(path):
    number = path.name[:2].lstrip("0") or "0"
    announced = set(re.findall(r"### Exercise (\d+\.\d+)",
                               "\n".join(_source(c) for c in _cells(path, "markdown"))))
    called = set()
    for cell in _cells(path, "code"):
        source = _source(cell)
        for name in re.findall(r"checks\.(exercise_\d+_\d+)\(", source):
            assert hasattr(checks, name), f"{path.name} calls missing checker {name}"
            assert "### BEGIN SOLUTION" in source, f"{name} is called outside an exercise cell"
            called.add(name.removeprefix("exercise_").replace("_", "."))
    assert announced == called, f"exercises announced {announced} vs checked {called}"
    assert all(label.split(".")[0] == number for label in announced)


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_student_notebook_has_no_outputs_and_stubbed_exercises(path):
    for cell in _cells(path, "code"):
        assert cell["outputs"] == [] and cell["execution_count"] is None
        source = _source(cell)
        assert "### BEGIN SOLUTION" not in source
        is_exercise = "checks.exercise_" in source
        tags = cell["metadata"].get("tags", [])
        assert ("raises-exception" in tags) == is_exercise
        if is_exercise:
            assert 'raise NotImplementedError("Exercise ' in source


def _course_map_status(path):
    """{notebook name: status cell} from the course-map table of a Markdown file."""
    status = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| (\d\d) \| `(\d\d_\w+)` \|.*\| ([^|]+) \|\s*$", line)
        if match:
            status[match.group(2)] = match.group(3).strip()
    return status


@pytest.mark.parametrize("document", ["README.md", "lessons/README.md"])
def test_course_maps_mark_exactly_the_existing_notebooks_ready(document):
    status = _course_map_status(ROOT / document)
    assert len(status) == 8, f"{document}: the course map should list notebooks 00-07"
    existing = {p.stem for p in SOLUTIONS}
    for name, cell in status.items():
        assert cell.startswith("ready") == (name in existing), f"{document}: {name} is '{cell}'"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_every_notebook_has_a_lesson_guide(path):
    guide = ROOT / "lessons" / f"{path.stem}.md"
    assert guide.exists(), f"lessons/{path.stem}.md is missing"
    text = guide.read_text(encoding="utf-8")
    for heading in ("objectives", "90-minute", "formulas", "mistakes", "xtension", "reading"):
        assert heading.lower() in text.lower(), f"{guide.name} lacks a section on '{heading}'"
