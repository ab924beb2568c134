"""Tests for tools/build_student_notebooks.py."""

import copy
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL_PATH = REPO_ROOT / "tools" / "build_student_notebooks.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "notebooks"
GOOD_FIXTURE = FIXTURES / "01_fixture.ipynb"
BROKEN_FIXTURE = FIXTURES / "broken_unmatched_end.ipynb"


def load_tool():
    """Import the tool from its file (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_student_notebooks", TOOL_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def read_fixture(path=GOOD_FIXTURE):
    return nbformat.read(path, as_version=4)


def cell_by_id(nb, cell_id):
    return next(cell for cell in nb.cells if cell.id == cell_id)


def built_fixture():
    return tool.build_student_notebook(read_fixture(), "tests/01_fixture.ipynb")


def notebook(*cells):
    """A small notebook with deterministic cell ids."""
    nb = v4.new_notebook(cells=list(cells))
    for number, cell in enumerate(nb.cells, start=1):
        cell.id = f"cell-{number}"
    return nb


def stub_lines(label, indent=""):
    return [
        f"{indent}# Exercise {label}: write your solution here.",
        f'{indent}raise NotImplementedError("Exercise {label}: replace this line with your solution")',
    ]


def make_folders(tmp_path, *solution_files):
    """Create solutions/ holding copies of ``solution_files`` and an empty notebooks/."""
    solutions = tmp_path / "solutions"
    notebooks = tmp_path / "notebooks"
    solutions.mkdir()
    notebooks.mkdir()
    for path in solution_files:
        shutil.copy(path, solutions / path.name)
    return solutions, notebooks


def folder_args(solutions, notebooks):
    return ["--solutions", str(solutions), "--notebooks", str(notebooks)]


# ---------------------------------------------------------------------------
# stub_solutions
# ---------------------------------------------------------------------------


def test_region_mid_cell_keeps_code_around_it_and_indents_stub():
    source = (
        "import math\n"
        "def square(x):\n"
        "    ### BEGIN SOLUTION\n"
        "    return x * x\n"
        "    ### END SOLUTION\n"
        "\n"
        "assert square(3) == 9"
    )
    new_source, count = tool.stub_solutions(source, "2.3", "nb.ipynb, cell 1")

    assert count == 1
    assert new_source.splitlines() == [
        "import math",
        "def square(x):",
        *stub_lines("2.3", indent="    "),
        "",
        "assert square(3) == 9",
    ]
    # The checker call at the end of the cell reaches the stub.
    with pytest.raises(NotImplementedError, match=r"Exercise 2\.3"):
        exec(new_source, {})


def test_stub_inside_function_raises_only_when_called():
    source = "def half(x):\n    ### BEGIN SOLUTION\n    return x / 2\n    ### END SOLUTION\n"
    new_source, _ = tool.stub_solutions(source, "1.4", "nb.ipynb, cell 1")

    namespace = {}
    exec(new_source, namespace)  # defining the function works
    with pytest.raises(NotImplementedError, match=r"Exercise 1\.4: replace this line"):
        namespace["half"](4)


def test_markers_with_surrounding_whitespace_are_recognised():
    source = "x = 1\n  ### BEGIN SOLUTION   \ny = 2\n\t### END SOLUTION\t\nprint(x)\n"
    new_source, count = tool.stub_solutions(source, "1.1", "nb.ipynb, cell 1")

    assert count == 1
    assert new_source.splitlines() == ["x = 1", *stub_lines("1.1", indent="  "), "print(x)"]


def test_source_without_region_is_returned_unchanged():
    source = "x = 1  # ### BEGIN SOLUTION is only a marker when alone on its line\n"
    assert tool.stub_solutions(source, None, "nb.ipynb, cell 1") == (source, 0)


# ---------------------------------------------------------------------------
# build_student_notebook on the fixture notebook
# ---------------------------------------------------------------------------


def test_fixture_region_in_function_becomes_stub():
    cell = cell_by_id(built_fixture(), "square")
    assert cell.source.splitlines() == [
        "def square(x):",
        '    """Return x squared."""',
        *stub_lines("1.1", indent="    "),
        "",
        "",
        "assert square(3) == 9",
    ]


def test_two_regions_in_one_cell_become_two_labelled_stubs():
    cell = cell_by_id(built_fixture(), "two-regions")
    assert cell.source.splitlines() == [
        *stub_lines("1.2"),
        "",
        "",
        "def half(x):",
        *stub_lines("1.2", indent="    "),
    ]
    assert "return" not in cell.source


def test_cell_without_region_keeps_source_and_gets_no_tag():
    solution_cell = cell_by_id(read_fixture(), "imports")
    student_cell = cell_by_id(built_fixture(), "imports")
    assert student_cell.source == solution_cell.source
    assert "raises-exception" not in student_cell.metadata.get("tags", [])


def test_label_from_code_cell_itself_wins_over_markdown():
    # The markdown cell above says "Exercise 1.2"; the cell says "Exercise 1.3".
    cell = cell_by_id(built_fixture(), "own-label")
    assert cell.source.splitlines() == [
        "# Exercise 1.3: a constant.",
        *stub_lines("1.3"),
        "assert ANSWER == 42",
    ]


def test_label_from_markdown_uses_its_last_match():
    # The markdown cell mentions "Exercise 1.1" first and "Exercise 1.2" last.
    cell = cell_by_id(built_fixture(), "two-regions")
    assert "Exercise 1.2:" in cell.source
    assert "Exercise 1.1" not in cell.source


def test_label_from_nearest_markdown_that_mentions_an_exercise():
    nb = notebook(
        v4.new_markdown_cell("## Exercise 4.1"),
        v4.new_markdown_cell("## Exercise 4.2"),
        v4.new_markdown_cell("Some hints, no label."),
        v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
    )
    student_nb = tool.build_student_notebook(nb, "nb.ipynb")
    assert student_nb.cells[3].source.splitlines() == stub_lines("4.2")


def test_markdown_cells_are_unchanged_even_with_markers():
    markdown = "## Exercise 5.1\n\n### BEGIN SOLUTION\nnot code\n"
    nb = notebook(v4.new_markdown_cell(markdown))
    student_nb = tool.build_student_notebook(nb, "nb.ipynb")
    assert student_nb.cells[0] == nb.cells[0]


def test_outputs_counts_and_volatile_metadata_are_cleared():
    solution_nb = read_fixture()
    assert any(cell.get("outputs") for cell in solution_nb.cells)  # the fixture has outputs
    assert "widgets" in solution_nb.metadata

    student_nb = built_fixture()
    for cell in student_nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None
            for key in ("execution", "collapsed", "scrolled"):
                assert key not in cell.metadata
    assert "widgets" not in student_nb.metadata
    assert student_nb.metadata["kernelspec"]["name"] == "python3"


def test_raises_exception_tag_added_exactly_once_keeping_other_tags():
    student_nb = built_fixture()
    # "square" had the tag "keep-me"; "two-regions" already had "raises-exception".
    assert cell_by_id(student_nb, "square").metadata["tags"] == ["keep-me", "raises-exception"]
    assert cell_by_id(student_nb, "two-regions").metadata["tags"] == ["raises-exception"]
    assert cell_by_id(student_nb, "own-label").metadata["tags"] == ["raises-exception"]


def test_cell_ids_are_kept():
    assert [cell.id for cell in built_fixture().cells] == [cell.id for cell in read_fixture().cells]


def test_build_does_not_modify_its_argument():
    solution_nb = read_fixture()
    before = copy.deepcopy(solution_nb)
    tool.build_student_notebook(solution_nb, "nb.ipynb")
    assert solution_nb == before


def test_build_accepts_plain_json_with_list_sources():
    nb_dict = json.loads(GOOD_FIXTURE.read_text(encoding="utf-8"))
    assert isinstance(nb_dict["cells"][0]["source"], list)
    student_nb = tool.build_student_notebook(nb_dict, "nb.ipynb")
    assert tool.render(student_nb) == tool.render(built_fixture())


def test_built_notebook_is_valid():
    nbformat.validate(built_fixture())


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


ERROR_CASES = {
    "unmatched END": ("x = 1\ny = 2\n### END SOLUTION", "line 3", "has no matching '### BEGIN"),
    "unmatched BEGIN": ("x = 1\n### BEGIN SOLUTION\ny = 2", "line 2", "has no matching '### END"),
    "nested BEGIN": (
        "### BEGIN SOLUTION\n    ### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
        "line 2",
        "cannot be nested",
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES, ids=list(ERROR_CASES))
def test_marker_errors_name_notebook_cell_and_line(case):
    source, line, reason = ERROR_CASES[case]
    nb = notebook(
        v4.new_markdown_cell("## Exercise 3.1"),
        v4.new_code_cell("print('fine')"),
        v4.new_code_cell(source),
    )
    with pytest.raises(tool.NotebookBuildError) as error:
        tool.build_student_notebook(nb, "solutions/03_test.ipynb")
    assert str(error.value).startswith(f"solutions/03_test.ipynb, cell 3, {line}: ")
    assert reason in str(error.value)


def test_unmatched_end_message_matches_documented_format():
    with pytest.raises(tool.NotebookBuildError) as error:
        tool.stub_solutions("x\n\n\n### END SOLUTION\n", "1.1", "solutions/03_svd.ipynb, cell 12")
    assert str(error.value) == (
        "solutions/03_svd.ipynb, cell 12, line 4: "
        "'### END SOLUTION' has no matching '### BEGIN SOLUTION'"
    )


def test_region_without_exercise_label_is_an_error():
    nb = notebook(
        v4.new_markdown_cell("No label here."),
        v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
        v4.new_markdown_cell("## Exercise 9.9 (comes too late)"),
    )
    with pytest.raises(tool.NotebookBuildError, match=r"^nb\.ipynb, cell 2, line 1: no exercise label"):
        tool.build_student_notebook(nb, "nb.ipynb")


def test_error_is_a_value_error():
    assert issubclass(tool.NotebookBuildError, ValueError)


def test_cell_without_id_is_an_error():
    nb_dict = json.loads(GOOD_FIXTURE.read_text(encoding="utf-8"))
    del nb_dict["cells"][1]["id"]
    with pytest.raises(tool.NotebookBuildError, match=r"^nb\.ipynb, cell 2: the cell has no 'id'"):
        tool.build_student_notebook(nb_dict, "nb.ipynb")


# ---------------------------------------------------------------------------
# render and determinism
# ---------------------------------------------------------------------------


def test_render_is_deterministic():
    assert tool.render(built_fixture()) == tool.render(built_fixture())


def test_render_matches_what_nbformat_writes(tmp_path):
    student_nb = built_fixture()
    path = tmp_path / "written.ipynb"
    nbformat.write(student_nb, path)
    text = tool.render(student_nb)
    assert text == path.read_text(encoding="utf-8")
    assert text.endswith("}\n")


def test_building_a_built_notebook_changes_nothing():
    text = tool.render(built_fixture())
    rebuilt = tool.build_student_notebook(nbformat.reads(text, as_version=4), "nb.ipynb")
    assert tool.render(rebuilt) == text


# ---------------------------------------------------------------------------
# main: building and checking folders
# ---------------------------------------------------------------------------


def test_main_builds_student_notebook_and_then_check_passes(tmp_path, capsys):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE)

    assert tool.main(folder_args(solutions, notebooks)) == 0
    written = (notebooks / GOOD_FIXTURE.name).read_text(encoding="utf-8")
    assert written == tool.render(built_fixture())

    capsys.readouterr()
    assert tool.main(["--check", *folder_args(solutions, notebooks)]) == 0
    assert capsys.readouterr().out.startswith("OK")


def test_main_build_is_byte_stable(tmp_path):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE)
    student_path = notebooks / GOOD_FIXTURE.name
    tool.main(folder_args(solutions, notebooks))
    first = student_path.read_bytes()
    tool.main(folder_args(solutions, notebooks))
    assert student_path.read_bytes() == first


def test_main_build_removes_nothing_else(tmp_path):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE)
    extra = notebooks / "99_extra.ipynb"
    extra.write_text("not touched", encoding="utf-8")
    assert tool.main(folder_args(solutions, notebooks)) == 0
    assert extra.read_text(encoding="utf-8") == "not touched"


def test_check_reports_stale_student_notebook(tmp_path, capsys):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE)
    tool.main(folder_args(solutions, notebooks))
    student_path = notebooks / GOOD_FIXTURE.name
    student_path.write_text(student_path.read_text(encoding="utf-8") + " ", encoding="utf-8")
    capsys.readouterr()

    assert tool.main(["--check", *folder_args(solutions, notebooks)]) == 1
    out = capsys.readouterr().out
    assert "stale" in out and GOOD_FIXTURE.name in out
    assert student_path.read_text(encoding="utf-8").endswith(" ")  # --check writes nothing


def test_check_reports_missing_student_notebook(tmp_path, capsys):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE)
    assert tool.main(["--check", *folder_args(solutions, notebooks)]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and GOOD_FIXTURE.name in out
    assert not (notebooks / GOOD_FIXTURE.name).exists()


def test_check_reports_orphan_student_notebook(tmp_path, capsys):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE)
    tool.main(folder_args(solutions, notebooks))
    (notebooks / "07_orphan.ipynb").write_text("{}", encoding="utf-8")
    capsys.readouterr()

    assert tool.main(["--check", *folder_args(solutions, notebooks)]) == 1
    out = capsys.readouterr().out
    assert "orphan" in out and "07_orphan.ipynb" in out
    assert GOOD_FIXTURE.name not in out


def test_check_with_missing_folders(tmp_path, capsys):
    solutions = tmp_path / "no_solutions"
    notebooks = tmp_path / "no_notebooks"
    assert tool.main(["--check", *folder_args(solutions, notebooks)]) == 0

    solutions.mkdir()
    shutil.copy(GOOD_FIXTURE, solutions)
    capsys.readouterr()
    assert tool.main(["--check", *folder_args(solutions, notebooks)]) == 1
    assert "missing" in capsys.readouterr().out


def test_main_builds_only_the_named_notebook(tmp_path):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE)
    shutil.copy(GOOD_FIXTURE, solutions / "02_other.ipynb")
    assert tool.main([*folder_args(solutions, notebooks), "02_other.ipynb"]) == 0
    assert [path.name for path in notebooks.iterdir()] == ["02_other.ipynb"]


def test_main_reports_source_error_with_exit_code_2(tmp_path, capsys):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE, BROKEN_FIXTURE)
    assert tool.main(folder_args(solutions, notebooks)) == 2
    captured = capsys.readouterr()
    assert "broken_unmatched_end.ipynb, cell 3, line 2" in captured.err
    assert "Traceback" not in captured.err
    assert list(notebooks.iterdir()) == []  # nothing is written when any notebook fails


def test_main_reports_unreadable_notebook(tmp_path, capsys):
    solutions, notebooks = make_folders(tmp_path)
    (solutions / "01_bad.ipynb").write_text("not json", encoding="utf-8")
    assert tool.main(["--check", *folder_args(solutions, notebooks)]) == 2
    assert "01_bad.ipynb" in capsys.readouterr().err


def test_help_mentions_check(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0
    assert "--check" in capsys.readouterr().out


def test_script_runs_from_the_command_line(tmp_path):
    solutions, notebooks = make_folders(tmp_path, GOOD_FIXTURE)
    command = [sys.executable, str(TOOL_PATH), "--check", *folder_args(solutions, notebooks)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "missing" in result.stdout


def test_repository_student_notebooks_are_in_sync_with_solutions(capsys):
    exit_code = tool.main(["--check"])
    assert exit_code == 0, capsys.readouterr().out
