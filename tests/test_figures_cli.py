"""Batch execution: argument errors before any run, failure summary, quiet metadata."""

from __future__ import annotations

import nbformat
import pytest

from layerwise.__main__ import main
from layerwise.harness import runner as figures


def _project(tmp_path, cells: dict[str, str]):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "notebooks").mkdir()
    for name, source in cells.items():
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("value = 1", metadata={"tags": ["parameters"]})
        nb.cells = [params, nbformat.v4.new_code_cell(source)]
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(nb, tmp_path / "notebooks" / f"{name}.ipynb")
    return tmp_path


def test_unknown_notebook_exits_with_the_valid_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["figures", "99_nothing"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'99_nothing'" in err and "01_baselines" in err


def test_unknown_parameter_is_rejected_before_running(tmp_path):
    root = _project(tmp_path, {"01_a": "raise SystemExit('must not run')"})
    with pytest.raises(ValueError, match="'jbos'"):
        figures.run_notebooks(["01_a"], parameters={"jbos": 2}, root=root, progress=False)


def test_failures_are_summarised_and_metadata_is_stripped(tmp_path):
    root = _project(tmp_path, {"01_ok": "print(value * 2)", "02_bad": "1 / 0"})
    outcomes = figures.run_notebooks(None, root=root, progress=False)
    assert [(o.name, o.ok) for o in outcomes] == [("01_ok", True), ("02_bad", False)]
    assert "ZeroDivisionError" in outcomes[1].error
    nb = nbformat.read(root / "notebooks" / "01_ok.ipynb", as_version=4)
    assert "papermill" not in nb.metadata
    assert all("papermill" not in c.metadata and "execution" not in c.metadata for c in nb.cells)
    assert nb.cells[1].outputs[0]["text"] == "2\n"
    assert len(nb.cells) == 2  # no injected-parameters cell when defaults are used


def test_readme_verdicts_are_the_notebooks_verdicts():
    """The README's answer table is copied from the executed notebooks, never typed by hand."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert figures.readme_verdicts(root) in (root / "README.md").read_text()


def test_update_readme_rewrites_only_the_marked_section(tmp_path):
    root = _project(tmp_path, {"01_a": "print('verdict')"})
    nb_path = root / "notebooks" / "01_a.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].source = "# NBVAL_CHECK_OUTPUT\nprint('verdict')"
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="a | b\n")]
    nbformat.write(nb, nb_path)
    readme = root / "README.md"
    readme.write_text(f"intro\n{figures.VERDICTS_START}\nstale\n{figures.VERDICTS_END}\noutro\n")
    figures.update_readme(root)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n")
    assert "stale" not in text and "a | b" in text and "01_a" in text
