"""What every study notebook needs: its profile, store, figure folder and wall time.

``study = start("01_baselines", profile)`` picks the run store and the figure folder:

* ``profile="full"`` (the study itself): ``results/`` and ``figures/<notebook>/`` of the project
  (``$LAYERWISE_RESULTS`` / ``$LAYERWISE_FIGURES`` override them);
* ``profile="smoke"`` (seconds, for checks): a fresh temporary store and figure folder unless
  those variables are set, so a smoke run never touches the committed results.

A relative ``$LAYERWISE_RESULTS`` or ``$LAYERWISE_FIGURES`` counts from the project root, so the
notebook (which runs in ``notebooks/``) and ``python -m layerwise figures --fresh`` (run from
anywhere) mean the same folder; :func:`store_root` says which.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import time
from pathlib import Path

import pandas as pd

from .._validate import check_choice
from . import plots
from .store import Store
from .sweep import default_jobs

__all__ = ["PROFILES", "Study", "parse_compute_report", "project_root", "start", "store_root"]

PROFILES = ("full", "smoke")
_COMPUTE = "runs: {runs}; training compute they hold: {core_minutes:.1f} core-minutes"
_COMPUTE_PATTERN = re.compile(r"runs: (\d+); training compute they hold: (\d+\.\d) core-minutes")


def project_root(start_dir: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start_dir`` (default: cwd) holding ``pyproject.toml`` and
    ``notebooks/``; the current directory when there is none."""
    here = Path(start_dir or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return here


def _env_folder(variable: str, root: Path) -> Path | None:
    """The folder ``$variable`` names (relative to ``root``), ``None`` when it is unset."""
    value = os.environ.get(variable)
    return root / value if value else None


def store_root(profile: str = "full", root: Path | None = None) -> Path | None:
    """The folder of the run store a notebook of the project at ``root`` reads in ``profile``:
    ``$LAYERWISE_RESULTS`` when set, else the project's ``results/`` for ``"full"`` and ``None``
    for ``"smoke"`` (a fresh temporary folder each time)."""
    check_choice("profile", profile, PROFILES)
    root = root or project_root()
    folder = _env_folder("LAYERWISE_RESULTS", root)
    if folder is None and profile == "full":
        folder = root / "results"
    return folder


@dataclasses.dataclass
class Study:
    """A notebook's context: name, profile, run store, figure folder and start time."""

    name: str
    profile: str
    store: Store
    figures: Path
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"

    def savefig(self, fig, stem: str) -> Path | None:
        """Save ``fig`` as ``<figures>/<stem>.png`` (for reading) and ``.pdf`` (for papers);
        a placeholder that says nothing is stored yet (:func:`plots.is_placeholder`) is shown
        in the notebook but not saved, so a study not yet swept leaves ``figures/`` alone."""
        if plots.is_placeholder(fig):
            return None
        self.figures.mkdir(parents=True, exist_ok=True)
        png = self.figures / f"{stem}.png"
        fig.savefig(png, dpi=110, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(
            self.figures / f"{stem}.pdf",
            bbox_inches="tight",
            metadata={"Creator": None, "Producer": None, "CreationDate": None},
        )
        return png

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def report_compute(self, jobs: int | None = None, runs: pd.DataFrame | None = None) -> str:
        """Print (and return) what the study cost: the training compute its runs hold (``runs``,
        a frame with ``key`` and ``wall_time_s``; default: every run of the study in the store)
        as core-minutes and as wall time on ``jobs`` workers, and this execution's wall time."""
        runs = self.store.frame(self.name) if runs is None else runs.drop_duplicates("key")
        core_minutes = float(runs["wall_time_s"].sum()) / 60 if len(runs) else 0.0
        workers = jobs or default_jobs()
        text = (
            _COMPUTE.format(runs=len(runs), core_minutes=core_minutes)
            + f", about {core_minutes / workers:.0f} min of wall time with {workers} worker "
            f"processes when trained from an empty store\n"
            f"this execution took {self.elapsed_s() / 60:.1f} min of wall time"
        )
        print(text)
        return text


def parse_compute_report(text: str) -> tuple[int, float] | None:
    """``(runs, core-minutes)`` from the text :meth:`Study.report_compute` printed; ``None``
    when ``text`` holds no such report."""
    found = _COMPUTE_PATTERN.search(text)
    return (int(found[1]), float(found[2])) if found else None


def start(name: str, profile: str = "full") -> Study:
    """Context for notebook ``name`` in ``profile`` (``"full"`` or ``"smoke"``)."""
    root = project_root()
    results = store_root(profile, root)
    figures = _env_folder("LAYERWISE_FIGURES", root)
    if profile == "smoke":
        scratch = Path(tempfile.mkdtemp(prefix=f"layerwise-{name}-smoke-"))
        results, figures = results or scratch / "results", figures or scratch / "figures"
    return Study(name, profile, Store(results), (figures or root / "figures") / name)
