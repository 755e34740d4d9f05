"""Batch execution: argument errors before any run, failure summary, quiet metadata."""

from __future__ import annotations

import nbformat
import pytest

from layerwise.__main__ import main
from layerwise.harness import runner as figures
from layerwise.harness.study import start


def _project(tmp_path, cells: dict[str, str]):
    tmp_path.mkdir(parents=True, exist_ok=True)
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


def test_readme_compute_table_is_the_notebooks_reports():
    """The README's runs and core-minutes are copied from the executed notebooks too."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert figures.readme_compute(root) in (root / "README.md").read_text()


def _report(tmp_path, keys, seconds):
    import pandas as pd

    from layerwise.harness.store import Store
    from layerwise.harness.study import Study

    study = Study("01_a", "full", Store(tmp_path / "store"), tmp_path / "figures")
    return study.report_compute(2, pd.DataFrame({"key": keys, "wall_time_s": seconds}))


def test_compute_report_round_trips_through_the_readme(tmp_path):
    # three records of two runs (one stored twice): 2 runs, (90 + 45) s = 2.25 core-minutes
    text = _report(tmp_path, ["a", "b", "b"], [90.0, 45.0, 45.0])
    assert "about 1 min of wall time with 2 worker processes" in text
    root = _project(tmp_path / "project", {"01_a": "pass", "02_b": "pass"})
    nb_path = root / "notebooks" / "01_a.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    nbformat.write(nb, nb_path)
    assert figures.compute_reported(nb_path) == (2, 2.2)  # printed to one decimal
    assert figures.compute_reported(root / "notebooks" / "02_b.ipynb") is None
    readme = root / "README.md"
    readme.write_text(
        f"{figures.VERDICTS_START}\n{figures.VERDICTS_END}\nmiddle\n"
        f"{figures.COMPUTE_START}\nstale\n{figures.COMPUTE_END}\nend\n"
    )
    figures.update_readme(root)
    text = readme.read_text()
    assert "stale" not in text and "\nmiddle\n" in text and text.endswith("\nend\n")
    assert "| 01_a | 2 | 2 |" in text and "| 02_b | not executed | |" in text
    assert "| all executed | 2 | 2 |" in text


def _stored(folder, n):
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{i:020d}.json").write_text("{}")
    return folder


@pytest.mark.slow  # starts a kernel
def test_fresh_deletes_only_the_store_the_notebook_reads(tmp_path, monkeypatch, capsys):
    """With $LAYERWISE_RESULTS set, --fresh empties that store's folder of the notebook, not the
    project's results/ (which the notebook does not read)."""
    root = _project(
        tmp_path / "project",
        {"01_a": "from layerwise.harness.study import start\nprint(start('01_a').store.root)"},
    )
    project_runs = _stored(root / "results" / "01_a", 3)
    elsewhere = tmp_path / "elsewhere"
    used_runs = _stored(elsewhere / "01_a", 2)
    monkeypatch.setenv("LAYERWISE_RESULTS", str(elsewhere))
    monkeypatch.chdir(root)
    assert main(["figures", "01_a", "--fresh"]) == 0
    assert len(list(project_runs.glob("*.json"))) == 3
    assert not used_runs.exists()
    assert f"deleting {used_runs} (2 stored runs of 01_a)" in capsys.readouterr().out
    nb = nbformat.read(root / "notebooks" / "01_a.ipynb", as_version=4)
    assert nb.cells[1].outputs[0]["text"] == f"{elsewhere}\n"  # the store the notebook read


def test_fresh_resolves_a_relative_store_from_the_project_root(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path, {"01_a": "pass"})
    used_runs = _stored(root / "mine" / "01_a", 1)
    monkeypatch.setenv("LAYERWISE_RESULTS", "mine")
    monkeypatch.chdir(tmp_path / "notebooks")  # where the notebook runs
    assert start("01_a").store.root == root / "mine"
    assert figures.discard_stored_runs("01_a", "full", root) == used_runs
    assert not used_runs.exists() and (root / "mine").is_dir()


def test_fresh_with_a_temporary_smoke_store_deletes_nothing(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path, {"01_a": "pass"})
    project_runs = _stored(root / "results" / "01_a", 1)
    monkeypatch.delenv("LAYERWISE_RESULTS", raising=False)
    assert figures.discard_stored_runs("01_a", "smoke", root) is None
    assert project_runs.is_dir() and "temporary store" in capsys.readouterr().out


def test_verdict_text_joins_every_verdict_cell_in_order(tmp_path):
    def cell(source, text=None, markdown=None):
        c = nbformat.v4.new_code_cell(source)
        if text:
            c.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text))
        if markdown:
            c.outputs.append(
                nbformat.v4.new_output("display_data", data={"text/markdown": markdown})
            )
        return c

    nb = nbformat.v4.new_notebook(
        cells=[
            cell("# NBVAL_CHECK_OUTPUT\nprint(a)", text="first table\n"),
            cell("print(b)", text="not a verdict\n"),
            cell("# NBVAL_CHECK_OUTPUT\nprint(c)", text="second table\n", markdown="- answer"),
        ]
    )
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    printed, markdown = figures.verdict_text(path)
    assert printed == "first table\n\nsecond table"
    assert markdown == "- answer"
