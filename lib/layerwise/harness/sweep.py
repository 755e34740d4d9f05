"""Sweeps: expand a grid of configs, skip what the store holds, run the rest in parallel.

Each finished run is written to the store as soon as it completes, so a sweep that is killed
(even with SIGKILL) resumes where it stopped.  Any ``concurrent.futures.Executor`` can run the
work -- by default a process pool with one torch thread per worker so the cores are used once;
``dask.distributed.Client(...).get_executor()`` runs the same sweep on a cluster.

Set ``LAYERWISE_REQUIRE_STORED=1`` (CI does) to forbid training: a sweep with runs missing from
the store then fails at once with the list of missing runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from typing import Any

from . import pretraining, train
from .config import RunConfig
from .store import Store

__all__ = ["MissingRunsError", "default_jobs", "grid", "run_configs", "worker_pool"]


class MissingRunsError(RuntimeError):
    """Runs are missing from the store while training is forbidden."""

    def __init__(self, study: str, missing: Sequence[RunConfig]):
        self.missing = list(missing)
        lines = [
            f"  {c.key()}: {c.model}/{c.dataset} {c.optimizer} lr={c.lr:g} seed={c.seed}"
            for c in self.missing[:50]
        ]
        more = f"\n  ... and {len(self.missing) - 50} more" if len(self.missing) > 50 else ""
        super().__init__(
            f"{len(self.missing)} run(s) of study {study!r} are not in the store and "
            "LAYERWISE_REQUIRE_STORED is set, so they will not be trained:\n"
            + "\n".join(lines)
            + more
        )


def grid(base: Mapping[str, Any] | RunConfig, **axes: Iterable[Any]) -> list[RunConfig]:
    """Every combination of ``axes`` applied to ``base`` (a config or a dict of its fields).

    ``grid(base, lr=[1e-3, 1e-2], seed=range(3))`` gives 6 configs.  An axis may name a nested
    option with a dot: ``**{"model_options.width": [64, 128]}``.
    """
    base_dict = base.to_dict() if isinstance(base, RunConfig) else dict(base)
    names = list(axes)
    values = [list(v) for v in axes.values()]
    for name, vals in zip(names, values, strict=True):
        if not vals:
            raise ValueError(f"grid axis {name!r} is empty")
    configs = []
    for combo in itertools.product(*values):
        fields = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base_dict.items()}
        for name, value in zip(names, combo, strict=True):
            if "." in name:
                outer, inner = name.split(".", 1)
                fields[outer] = {**(fields.get(outer) or {}), inner: value}
            else:
                fields[name] = value
        configs.append(RunConfig.from_dict(fields))
    return configs


def default_jobs() -> int:
    """Worker processes for this machine: one per core (``os.sched_getaffinity`` when known)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _train_one(config: RunConfig) -> dict:
    """Train ``config`` (from its pretrained weights when it has ``init_from``); its record."""
    return train.run(config, initial_state=pretraining.initial_state(config))


def run_configs(
    configs: Iterable[RunConfig],
    study: str,
    *,
    store: Store | None = None,
    jobs: int | None = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> list[dict]:
    """Make sure every config has a record in ``store`` under ``study``; return the records.

    Runs already stored are not recomputed.  The rest run on ``executor`` (default: a process
    pool of ``jobs`` workers, ``default_jobs()`` when ``None``), each config's ``threads`` torch
    threads per worker; every record is written as soon as its run finishes.  Records come back
    in the order of ``configs``.
    """
    store = store or Store()
    configs = list(configs)
    found = {c.key(): store.get(study, c) for c in configs}  # each record is read once
    todo = list({c.key(): c for c in configs if found[c.key()] is None}.values())
    if todo and os.environ.get("LAYERWISE_REQUIRE_STORED", "") not in ("", "0"):
        raise MissingRunsError(study, todo)
    if todo:
        for record in _execute(todo, study, store, jobs, executor, progress):
            found[record["key"]] = record
    return [found[c.key()] for c in configs]  # type: ignore[misc]


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 1.0  # how often a worker polls its parent where prctl is not available


def _die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when the process that started it dies, even by
    SIGKILL, so a killed sweep leaves no worker training on.

    Linux: the kernel sends the worker SIGKILL when its parent exits (``PR_SET_PDEATHSIG``;
    the pool starts its workers from the thread that submits, which outlives the pool).
    Elsewhere a daemon thread polls ``os.getppid()`` every ``PARENT_POLL_S`` seconds.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


@contextlib.contextmanager
def worker_pool(
    jobs: int | None = None, executor: Executor | None = None
) -> Iterator[Executor | None]:
    """A process pool of ``jobs`` spawned workers (``None`` when ``jobs == 1``: run inline), or
    the given ``executor`` unchanged.  Share one pool between several ``run_configs`` calls so
    that workers keep their imported modules and loaded datasets.  The workers end when the
    process that made the pool dies (:func:`_die_with_parent`)."""
    jobs = jobs or default_jobs()
    if executor is not None or jobs == 1:
        yield executor
        return
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _execute(
    todo: list[RunConfig],
    study: str,
    store: Store,
    jobs: int | None,
    executor: Executor | None,
    progress: bool,
) -> Iterator[dict]:
    """Train ``todo``, write each record as it finishes and yield it."""
    from tqdm.auto import tqdm

    with (
        tqdm(total=len(todo), desc=f"{study}: runs", disable=not progress) as bar,
        worker_pool(jobs, executor) as pool,
    ):
        if pool is None:
            for config in todo:
                record = _train_one(config)
                store.put(study, record)
                bar.update()
                yield record
            return
        futures = [pool.submit(_train_one, c) for c in todo]
        try:
            for future in as_completed(futures):
                record = future.result()
                store.put(study, record)
                bar.update()
                yield record
        except BaseException:
            for future in futures:
                future.cancel()
            raise
