"""Batch execution of the study notebooks with papermill (``python -m layerwise figures``).

Each notebook runs in place (outputs are committed), reading its runs from the store and
writing ``figures/<notebook>/``.  Afterwards papermill's timing metadata is stripped so that
re-running an unchanged study leaves a quiet diff.  A summary names every notebook that failed.
"""

from __future__ import annotations

import ast
import dataclasses
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._validate import check_choice
from .study import PROFILES, parse_compute_report, project_root, store_root

__all__ = [
    "NotebookOutcome",
    "available",
    "clean_metadata",
    "compute_reported",
    "discard_stored_runs",
    "readme_compute",
    "readme_verdicts",
    "run_notebooks",
    "update_readme",
    "verdict_text",
]

VERDICTS_START = "<!-- verdicts:start (written by `python -m layerwise figures`) -->"
VERDICTS_END = "<!-- verdicts:end -->"
COMPUTE_START = "<!-- compute:start (written by `python -m layerwise figures`) -->"
COMPUTE_END = "<!-- compute:end -->"


@dataclasses.dataclass
class NotebookOutcome:
    name: str
    ok: bool
    seconds: float
    error: str = ""


def available(root: Path | None = None) -> dict[str, Path]:
    """Study notebooks by name (``NN_name``), in order."""
    folder = (root or project_root()) / "notebooks"
    return {p.stem: p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))}


def clean_metadata(nb: Any) -> Any:
    """Drop papermill's and nbclient's per-execution metadata (timings, paths, status) and the
    ``injected-parameters`` cell papermill adds (committed, it would override the notebook's
    own ``parameters`` cell when a reader runs the notebook)."""
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    return nb


def _checked_profile(path: Path, parameters: Mapping[str, Any]) -> str:
    """Check that the notebook declares every given parameter; return the profile it will run
    in (the ``profile`` parameter given, else the notebook's default, else ``"full"``)."""
    import papermill

    declared = {p["name"]: p["default"] for p in papermill.inspect_notebook(str(path)).values()}
    for name in parameters:
        check_choice(f"parameter of {path.stem}", name, declared)
    default = ast.literal_eval(declared["profile"]) if "profile" in declared else "full"
    return check_choice("profile", parameters.get("profile", default), PROFILES)


def discard_stored_runs(name: str, profile: str, root: Path) -> Path | None:
    """Delete notebook ``name``'s folder in the run store it reads in ``profile``
    (``study.store_root``: ``$LAYERWISE_RESULTS`` when set) after printing which; return it.

    ``None`` when that store is a fresh temporary one (smoke profile): nothing to discard.
    """
    folder = store_root(profile, root)
    if folder is None:
        print(f"--fresh: {name} ({profile}) starts from an empty temporary store", flush=True)
        return None
    target = folder / name
    stored = len(list(target.glob("*.json"))) if target.is_dir() else 0
    print(f"--fresh: deleting {target} ({stored} stored runs of {name})", flush=True)
    shutil.rmtree(target, ignore_errors=True)
    return target


def run_notebooks(
    names: Sequence[str] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    fresh: bool = False,
    root: Path | None = None,
    progress: bool = True,
) -> list[NotebookOutcome]:
    """Execute notebooks in place (all when ``names`` is empty) and return their outcomes.

    ``fresh`` discards each notebook's stored runs first (``<store>/<notebook>/`` of the store the
    notebook reads, :func:`discard_stored_runs`), so every number is retrained.  Unknown notebook
    or parameter names raise before anything runs.
    """
    import nbformat
    import papermill

    root = root or project_root()
    notebooks = available(root)
    chosen = [Path(n).stem for n in names] if names else list(notebooks)
    for name in chosen:
        check_choice("notebook", name, notebooks)
    parameters = dict(parameters or {})
    profiles = {name: _checked_profile(notebooks[name], parameters) for name in chosen}

    outcomes = []
    for name in chosen:
        path = notebooks[name]
        if fresh:
            discard_stored_runs(name, profiles[name], root)
        started = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(path),
                str(path),
                parameters=parameters,
                cwd=str(path.parent),
                progress_bar=progress,
            )
            outcome = NotebookOutcome(name, True, time.perf_counter() - started)
        except Exception as exc:  # report every failure in the summary, keep going
            outcome = NotebookOutcome(name, False, time.perf_counter() - started, _first_line(exc))
        nb = nbformat.read(path, as_version=4)
        nbformat.write(clean_metadata(nb), path)
        outcomes.append(outcome)
    update_readme(root)
    return outcomes


def verdict_text(path: Path) -> tuple[str, str]:
    """The verdict cells' output (every cell marked NBVAL_CHECK_OUTPUT, in order): their
    printed text and the Markdown they display (a study's answer sentences)."""
    import nbformat

    printed, markdown = [], []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in cell.source:
            text = "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
            if text.strip():
                printed.append(text.rstrip("\n"))
            markdown += [
                o["data"]["text/markdown"]
                for o in cell.outputs
                if o["output_type"] in ("display_data", "execute_result")
                and "text/markdown" in o.get("data", {})
            ]
    return "\n\n".join(printed), "\n".join(markdown)


def readme_verdicts(root: Path) -> str:
    """The README's verdict section, rebuilt from the executed notebooks' verdict cells."""
    parts = [VERDICTS_START]
    for name, path in available(root).items():
        printed, markdown = (part.rstrip() for part in verdict_text(path))
        if printed or markdown:
            parts += [f"**{name}** ([notebook](notebooks/{path.name}))", ""]
            if printed:
                parts += ["```", printed, "```", ""]
            if markdown:
                parts += [markdown, ""]
    parts.append(VERDICTS_END)
    return "\n".join(parts)


def compute_reported(path: Path) -> tuple[int, float] | None:
    """``(runs, core-minutes)`` that an executed notebook's ``study.report_compute`` cell
    printed; ``None`` when the notebook holds no such output (not executed, or pending)."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output["output_type"] == "stream":
                reported = parse_compute_report(output.get("text", ""))
                if reported:
                    return reported
    return None


def readme_compute(root: Path) -> str:
    """The README's compute table: the runs and training core-minutes each executed notebook
    reports (copied from its output, like the verdicts), and their total."""
    lines = [
        COMPUTE_START,
        "| notebook | runs | training compute (core-minutes) |",
        "| --- | ---: | ---: |",
    ]
    total_runs, total_minutes = 0, 0.0
    for name, path in available(root).items():
        reported = compute_reported(path)
        if reported is None:
            lines.append(f"| {name} | not executed | |")
            continue
        runs, minutes = reported
        total_runs, total_minutes = total_runs + runs, total_minutes + minutes
        lines.append(f"| {name} | {runs} | {minutes:.0f} |")
    lines += [f"| all executed | {total_runs} | {total_minutes:.0f} |", COMPUTE_END]
    return "\n".join(lines)


def _replace_between(text: str, start: str, end: str, body: str) -> str:
    """``text`` with the section from marker ``start`` to marker ``end`` replaced by ``body``
    (which carries the markers); unchanged when either marker is missing."""
    if start not in text or end not in text:
        return text
    head, rest = text.split(start, 1)
    return head + body + rest.split(end, 1)[1]


def update_readme(root: Path) -> None:
    """Rewrite the README's generated sections (between their markers): the verdicts
    (``readme_verdicts``) and the compute table (``readme_compute``)."""
    readme = root / "README.md"
    if not readme.is_file():
        return
    text = readme.read_text()
    text = _replace_between(text, VERDICTS_START, VERDICTS_END, readme_verdicts(root))
    text = _replace_between(text, COMPUTE_START, COMPUTE_END, readme_compute(root))
    readme.write_text(text)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]
