"""The run store: one JSON record per finished run at ``<root>/<study>/<key>.json``.

The store is the source of truth for every number the project reports.  Records are JSON (never
pickle: opening someone's results cannot run code); writes are atomic (a temporary file in the
same folder, then ``os.replace``), so a killed sweep leaves no half-written record.  A record that
cannot be read -- not JSON, another format, one of the ``RECORD_FIELDS`` missing, or a config
that is no longer valid or no longer hashes to the file's name -- is reported by path (a
warning saying why) and treated as missing, so it is rerun rather than silently counted.

A run being trained is *claimed*: ``<root>/<study>/<key>.claim``, created atomically
(``O_EXCL``) before training starts and removed once the record is written or the run fails,
holds its owner's pid, host, start time and a token.  Two sweeps on one store therefore never
train the same run at once.  A claim whose owner is gone -- a dead pid on this host, or a claim
older than ``claim_timeout_s`` (the only test for another host's claims) -- is taken over by
the next sweep that wants the run; a killed sweep's runs in flight are retrained from step 0.
Claims are never committed (``.gitignore``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .config import FORMAT_VERSION, RunConfig

__all__ = [
    "CLAIM_TIMEOUT_S",
    "DEFAULT_ROOT",
    "RECORD_FIELDS",
    "Claim",
    "Store",
    "UnreadableRecordWarning",
    "records_frame",
]

DEFAULT_ROOT = Path("results")
# the fields of every record that ``Store.frame`` reads (training writes more: curves, steps,
# steps_done, env, ...)
RECORD_FIELDS = ("format", "key", "config", "status", "diverged_at", "final", "wall_time_s")
CLAIM_TIMEOUT_S = 24 * 3600.0  # a claim this old is taken over even when its owner may live
CLAIM_WRITE_S = 60.0  # an unreadable claim this young is being written: its owner is alive


class UnreadableRecordWarning(UserWarning):
    """A record file exists but is not a valid record; it is treated as missing."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """A run this process is training: its claim file and the owner written there."""

    path: Path
    owner: dict[str, Any]


class Store:
    """A folder of run records, one sub-folder per study.

    ``root`` defaults to ``$LAYERWISE_RESULTS`` or ``results/`` in the working directory;
    ``claim_timeout_s`` is the age after which any claim counts as abandoned.
    """

    def __init__(
        self, root: str | os.PathLike | None = None, *, claim_timeout_s: float = CLAIM_TIMEOUT_S
    ):
        self.root = Path(root or os.environ.get("LAYERWISE_RESULTS") or DEFAULT_ROOT)
        self.claim_timeout_s = claim_timeout_s

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def path(self, study: str, config: RunConfig) -> Path:
        return self.root / study / f"{config.key()}.json"

    # ---------------------------------------------------------------------------------------
    # reading

    def _read(self, path: Path) -> dict | None:
        try:
            record = _checked_record(json.loads(path.read_text()), path.stem)
        except (OSError, ValueError) as exc:
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

    def find(self, config: RunConfig) -> dict | None:
        """The record of ``config`` in any study of the store (the key names the run, whatever
        study trained it), or ``None``."""
        for path in sorted(self.root.glob(f"*/{config.key()}.json")):
            record = self._read(path)
            if record is not None:
                return record
        return None

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
        path = self.path(study, config)
        try:
            _checked_record(record, config.key())
        except ValueError as exc:
            raise ValueError(f"refusing to write {path}: {exc}") from None
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
    # claims

    def claim_path(self, study: str, config: RunConfig) -> Path:
        """Where the claim on ``config``'s run lives: beside its record, ``<key>.claim``."""
        return self.root / study / f"{config.key()}.claim"

    def claim(self, study: str, config: RunConfig) -> Claim | None:
        """Claim ``config``'s run for this process, taking over an abandoned claim; ``None``
        when a live owner holds it.  Pass the claim to :meth:`release` when done."""
        path = self.claim_path(study, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.time(),
            "token": uuid.uuid4().hex,
        }
        for _ in range(2):  # the second try follows the removal of an abandoned claim
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                seen = _read_text(path)
                if seen is None or not self._abandoned(path, seen):
                    return None
                _remove_abandoned(path, seen)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(owner, handle)
            return Claim(path, owner)
        return None

    def claim_owner(self, study: str, config: RunConfig) -> dict[str, Any] | None:
        """The owner (pid, host, time, token) of a live claim on ``config``'s run (``{}`` while
        the claim is being written); ``None`` when the run is unclaimed or its claim abandoned."""
        path = self.claim_path(study, config)
        seen = _read_text(path)
        if seen is None or self._abandoned(path, seen):
            return None
        return _parse_owner(seen) or {}

    def release(self, claim: Claim) -> None:
        """Remove ``claim``'s file, unless another sweep has taken the claim over since."""
        seen = _read_text(claim.path)
        if seen is not None and _parse_owner(seen) == claim.owner:
            claim.path.unlink(missing_ok=True)

    def _abandoned(self, path: Path, seen: str) -> bool:
        """Whether the claim ``seen`` in ``path`` may be taken over (see the module docstring);
        an unreadable claim is abandoned once it is ``CLAIM_WRITE_S`` old."""
        owner = _parse_owner(seen)
        if owner is None:
            return _age_s(path) > CLAIM_WRITE_S
        if time.time() - owner["time"] > self.claim_timeout_s:
            return True
        return owner["host"] == socket.gethostname() and not _pid_alive(owner["pid"])

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
            if "curves" not in r:
                raise ValueError(f"run record {self.root / study / r['key']}.json has no curves")
            base = _flatten(r)
            curves = r["curves"]
            for i, step in enumerate(curves["step"]):
                rows.append({**base, **{k: v[i] for k, v in curves.items()}, "step": step})
        return pd.DataFrame(rows)


def _checked_record(record: Any, key: str) -> dict:
    """``record`` if it is a complete record of the run with store key ``key``, else
    ``ValueError`` saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {type(record).__name__}")
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if record["format"] != FORMAT_VERSION:
        raise ValueError(f"format {record['format']!r}, expected {FORMAT_VERSION}")
    if record["key"] != key:
        raise ValueError(f"its key field {record['key']!r} is not the file's key {key!r}")
    try:
        config_key = RunConfig.from_dict(record["config"]).key()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"its config is not a valid RunConfig: {exc}") from None
    if config_key != key:
        raise ValueError(f"its config has key {config_key!r}, not the file's key {key!r}")
    return record


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _parse_owner(text: str) -> dict[str, Any] | None:
    """A claim's owner, or ``None`` when the text is not a complete claim."""
    try:
        owner = json.loads(text)
    except ValueError:
        return None
    if not isinstance(owner, dict) or not {"pid", "host", "time", "token"} <= owner.keys():
        return None
    return owner


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (assumed where it cannot be asked)."""
    if os.name == "nt":  # os.kill would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        pass
    return True


def _remove_abandoned(path: Path, seen: str) -> None:
    """Delete the abandoned claim ``seen`` at ``path`` if it is still there.

    A short lock (``<key>.claim.lock``) makes the check and the removal one step, so that two
    sweeps taking over at once cannot remove a claim one of them has just made.  A lock left by a
    killed process is removed once ``CLAIM_WRITE_S`` old.
    """
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        if _age_s(lock) > CLAIM_WRITE_S:
            lock.unlink(missing_ok=True)
        return
    try:
        if _read_text(path) == seen:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)


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
