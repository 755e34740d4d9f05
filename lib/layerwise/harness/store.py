"""The run store: one JSON record per finished run at ``<root>/<study>/<key>.json``.

The store is the source of truth for every number the project reports.  Records are JSON (never
pickle: opening someone's results cannot run code); writes are atomic (a temporary file in the
same folder, then ``os.replace``), so a killed sweep leaves no half-written record.  A record that
cannot be read is reported by path (a warning) and treated as missing, so it is rerun rather
than silently counted.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .config import FORMAT_VERSION, RunConfig

__all__ = ["DEFAULT_ROOT", "Store", "UnreadableRecordWarning", "records_frame"]

DEFAULT_ROOT = Path("results")


class UnreadableRecordWarning(UserWarning):
    """A record file exists but is not a valid record; it is treated as missing."""


class Store:
    """A folder of run records, one sub-folder per study.

    ``root`` defaults to ``$LAYERWISE_RESULTS`` or ``results/`` in the working directory.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or os.environ.get("LAYERWISE_RESULTS") or DEFAULT_ROOT)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def path(self, study: str, config: RunConfig) -> Path:
        return self.root / study / f"{config.key()}.json"

    # ---------------------------------------------------------------------------------------
    # reading

    def _read(self, path: Path) -> dict | None:
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or record.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {record.get('format')!r}, expected {FORMAT_VERSION}")
            if record.get("key") != path.stem or "config" not in record:
                raise ValueError("key does not match the file name")
        except (OSError, ValueError, AttributeError) as exc:
            warnings.warn(
                f"unreadable run record {path} ({exc}); treated as missing and will be rerun",
                UnreadableRecordWarning,
                stacklevel=3,
            )
            return None
        return record

    def get(self, study: str, config: RunConfig) -> dict | None:
        """The record of ``config`` in ``study``, or ``None`` when absent or unreadable."""
        path = self.path(study, config)
        return self._read(path) if path.exists() else None

    def has(self, study: str, config: RunConfig) -> bool:
        return self.get(study, config) is not None

    def missing(self, study: str, configs: Iterable[RunConfig]) -> list[RunConfig]:
        """The configs (deduplicated, order kept) that have no readable record yet."""
        seen: dict[str, RunConfig] = {}
        for c in configs:
            seen.setdefault(c.key(), c)
        return [c for c in seen.values() if not self.has(study, c)]

    def records(self, study: str) -> Iterator[dict]:
        """Every readable record of a study (unreadable ones are reported and skipped)."""
        folder = self.root / study
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            record = self._read(path)
            if record is not None:
                yield record

    # ---------------------------------------------------------------------------------------
    # writing

    def put(self, study: str, record: dict[str, Any]) -> Path:
        """Write a record atomically and return its path."""
        config = RunConfig.from_dict(record["config"])
        if record.get("key") != config.key():
            raise ValueError("record key does not match its config")
        path = self.path(study, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle, indent=1, sort_keys=True, allow_nan=False)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    # ---------------------------------------------------------------------------------------
    # tidy views

    def frame(self, study: str, configs: Iterable[RunConfig] | None = None) -> pd.DataFrame:
        """One row per run: flattened config columns, final metrics, status, wall time.

        ``configs`` restricts the frame to those runs (missing ones are simply absent).
        """
        records = (
            list(self.records(study))
            if configs is None
            else [r for r in (self.get(study, c) for c in configs) if r is not None]
        )
        return records_frame(records)

    def curves(self, study: str, configs: Iterable[RunConfig] | None = None) -> pd.DataFrame:
        """Long frame of the learning curves: key, step, metric columns, plus config columns."""
        rows = []
        records = self.records(study) if configs is None else (self.get(study, c) for c in configs)
        for r in records:
            if r is None:
                continue
            base = _flatten(r)
            curves = r["curves"]
            for i, step in enumerate(curves["step"]):
                rows.append({**base, **{k: v[i] for k, v in curves.items()}, "step": step})
        return pd.DataFrame(rows)


def records_frame(records: Iterable[dict]) -> pd.DataFrame:
    """The tidy frame of ``Store.frame`` built from records already in memory."""
    return pd.DataFrame([_flatten(r) for r in records])


def _flatten(record: dict) -> dict[str, Any]:
    """Config fields as columns (options as ``model.width`` etc.), then results."""
    row: dict[str, Any] = {"key": record["key"]}
    for name, value in record["config"].items():
        if isinstance(value, dict):
            prefix = name.removesuffix("_options")
            for k, v in value.items():
                row[f"{prefix}.{k}"] = json.dumps(v) if isinstance(v, (dict, list)) else v
        else:
            row[name] = value
    row["rule"] = json.dumps(record["config"].get("rule")) if record["config"].get("rule") else None
    row.update(record["final"])
    row["status"] = record["status"]
    row["diverged_at"] = record["diverged_at"]
    row["wall_time_s"] = record["wall_time_s"]
    return row
