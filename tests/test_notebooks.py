"""Every study notebook runs end to end in its smoke profile, into a temporary store.

(``pytest --nbval-lax notebooks/`` separately re-executes the committed notebooks from the
committed store and compares their verdict cells.)
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_smoke_profile_runs(path, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("LAYERWISE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LAYERWISE_FIGURES", str(tmp_path / "figures"))
    monkeypatch.delenv("LAYERWISE_REQUIRE_STORED", raising=False)  # smoke runs do train
    out = tmp_path / path.name
    papermill.execute_notebook(
        str(path),
        str(out),
        parameters={"profile": "smoke"},
        cwd=str(path.parent),
        progress_bar=False,
    )
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    figures = list((tmp_path / "figures" / path.stem).glob("*.png"))
    assert figures, "the smoke run wrote no figure"
    assert list((tmp_path / "results" / path.stem).glob("*.json")), "no run was stored"


def test_notebooks_follow_the_conventions():
    assert NOTEBOOKS, "no study notebooks found"
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        assert any("parameters" in c.metadata.get("tags", []) for c in cells), path
        assert any("NBVAL_CHECK_OUTPUT" in c.source for c in cells if c.cell_type == "code"), path
