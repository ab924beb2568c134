"""The course's learning outcomes are each checked by at least three exercises.

lessons/README.md holds the table "Learning outcomes and the exercises that check them";
this test reads it and checks that every outcome 1–7 lists at least three exercises, and
that each listed exercise exists: a "### Exercise N.k" heading in its solution notebook and
a checker ``lrlib.checks.exercise_N_k``.
"""

import json
import re
from pathlib import Path

from lrlib import checks

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Learning outcomes and the exercises that check them"


def _outcome_table() -> dict:
    text = (ROOT / "lessons" / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"lessons/README.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*(\d+)\.\s.*\|\s*([\d., ]+)\s*\|\s*$", line)
        if match:
            table[int(match.group(1))] = [e.strip() for e in match.group(2).split(",") if e.strip()]
    return table


def _exercise_headings() -> set:
    found = set()
    for path in (ROOT / "solutions").glob("*.ipynb"):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        for cell in notebook["cells"]:
            if cell["cell_type"] == "markdown":
                found.update(re.findall(r"^### Exercise (\d+\.\d+)\b", "".join(cell["source"]), re.M))
    return found


def test_every_outcome_has_at_least_three_checked_exercises():
    table = _outcome_table()
    assert sorted(table) == list(range(1, 8)), f"outcomes found: {sorted(table)}"
    for outcome, exercises in table.items():
        assert len(set(exercises)) >= 3, f"outcome {outcome} lists only {exercises}"


def test_every_listed_exercise_exists_with_its_checker():
    headings = _exercise_headings()
    for outcome, exercises in _outcome_table().items():
        for exercise in exercises:
            assert exercise in headings, f"outcome {outcome}: no '### Exercise {exercise}' in solutions/"
            checker = "exercise_" + exercise.replace(".", "_")
            assert checker in checks.__all__, f"outcome {outcome}: lrlib.checks has no {checker}"
