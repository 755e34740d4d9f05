"""Sweeps: expand a grid of configs, skip what the store holds, run the rest in parallel.

Each finished run is written to the store as soon as it completes, so a sweep that is killed
(even with SIGKILL) keeps every finished run and, rerun, trains only the others: the runs that
were in flight when it died start again from step 0 (runs keep no mid-run checkpoints).  Its
worker processes die with it.  Any ``concurrent.futures.Executor`` can run the work -- by
default a process pool with one torch thread per worker so the cores are used once;
``dask.distributed.Client(...).get_executor()`` runs the same sweep on a cluster.

Sweeps may share a store: a run is claimed (``Store.claim``) before it is trained, so two
sweeps never train the same run.  A sweep that finds a run claimed by another live sweep trains
its own runs first, then waits for that run's record (saying which run it waits for, and
polling every ``CLAIM_POLL_S`` seconds); if the other sweep dies or its run fails, the claim is
dropped or abandoned and the waiting sweep trains the run itself.

Set ``LAYERWISE_REQUIRE_STORED=1`` (CI does) to forbid training: a sweep with runs missing from
the store then fails at once with the list of missing runs.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from typing import Any

from tqdm.auto import tqdm

from . import pretraining, train
from ._lifeline import die_with_parent
from .config import RunConfig
from .store import Claim, Store

__all__ = [
    "MissingRunsError",
    "default_jobs",
    "grid",
    "run_configs",
    "run_stored",
    "training_forbidden",
    "worker_pool",
]

CLAIM_POLL_S = 5.0  # seconds between looks at runs another sweep is training


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


def training_forbidden() -> bool:
    """Whether ``LAYERWISE_REQUIRE_STORED`` is set (to anything but ``""`` or ``"0"``): every
    run must then come from the store."""
    return os.environ.get("LAYERWISE_REQUIRE_STORED", "") not in ("", "0")


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

    Runs already stored are not recomputed: a run another study of the store already holds
    (same config, same key) is copied into ``study`` instead of trained again.  The rest run on ``executor`` (default: a process
    pool of ``jobs`` workers, ``default_jobs()`` when ``None``), each config's ``threads`` torch
    threads per worker, at most ``jobs`` at a time (so with an external executor pass its number
    of workers as ``jobs``), each under a claim in the store; every record is written as soon as
    its run finishes.  Runs another sweep is training are waited for (see the module
    docstring).  Records come back in the order of ``configs``.
    """
    store = store or Store()
    configs = list(configs)
    found = {c.key(): store.get(study, c) for c in configs}  # each record is read once
    for config in configs:
        if found[config.key()] is None and (elsewhere := store.find(config)) is not None:
            store.put(study, elsewhere)
            found[config.key()] = elsewhere
    todo = list({c.key(): c for c in configs if found[c.key()] is None}.values())
    if todo and training_forbidden():
        raise MissingRunsError(study, todo)
    if todo:
        for record in _execute(todo, study, store, jobs, executor, progress):
            found[record["key"]] = record
    return [found[c.key()] for c in configs]  # type: ignore[misc]


def run_stored(
    configs: Iterable[RunConfig],
    study: str,
    *,
    store: Store | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> list[dict] | None:
    """:func:`run_configs`, or ``None`` while training is forbidden (``LAYERWISE_REQUIRE_STORED``)
    and some of the runs are not stored yet: the caller shows them as *pending*."""
    try:
        return run_configs(configs, study, store=store, jobs=jobs, progress=progress)
    except MissingRunsError:
        return None


@contextlib.contextmanager
def worker_pool(
    jobs: int | None = None, executor: Executor | None = None
) -> Iterator[Executor | None]:
    """A process pool of ``jobs`` spawned workers (``None`` when ``jobs == 1``: run inline), or
    the given ``executor`` unchanged.  Share one pool between several ``run_configs`` calls so
    that workers keep their imported modules and loaded datasets.  The workers end when the
    process that made the pool dies (``_lifeline.die_with_parent``)."""
    jobs = jobs or default_jobs()
    if executor is not None or jobs == 1:
        yield executor
        return
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Inline(Executor):
    """Runs each submitted call at once in this process (a sweep with ``jobs == 1``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # KeyboardInterrupt too: the sweep re-raises it
            future.set_exception(exc)
        return future


def _execute(
    todo: list[RunConfig],
    study: str,
    store: Store,
    jobs: int | None,
    executor: Executor | None,
    progress: bool,
) -> Iterator[dict]:
    """Train ``todo`` and yield each record once it is stored (see ``run_configs``)."""
    with (
        tqdm(total=len(todo), desc=f"{study}: runs", disable=not progress) as bar,
        worker_pool(jobs, executor) as pool,
    ):
        in_flight = 1 if pool is None else jobs or default_jobs()
        for record in _claimed_runs(todo, study, store, pool or _Inline(), in_flight):
            bar.update()
            yield record


def _claimed_runs(
    todo: list[RunConfig], study: str, store: Store, pool: Executor, in_flight: int
) -> Iterator[dict]:
    """Yield the record of every config in ``todo``, training at most ``in_flight`` at once,
    each under a claim; runs claimed by another sweep are waited for once ours are done."""
    queue = collections.deque(todo)
    running: dict[Future, Claim] = {}
    elsewhere: list[RunConfig] = []
    announced = False
    try:
        while queue or running or elsewhere:
            while queue and len(running) < in_flight:
                config = queue.popleft()
                claim = store.claim(study, config)
                if claim is None:
                    elsewhere.append(config)
                elif (record := store.get(study, config)) is not None:  # stored meanwhile
                    store.release(claim)
                    yield record
                else:
                    running[_submit(pool, config, store, claim)] = claim
            if running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    claim = running.pop(future)
                    try:
                        record = future.result()
                        store.put(study, record)
                    finally:
                        store.release(claim)
                    yield record
            elif elsewhere:
                waiting = len(elsewhere)
                elsewhere = yield from _collect(elsewhere, study, store, queue)
                if len(elsewhere) == waiting:  # none finished or was dropped: look again later
                    if not announced:
                        print(_waiting_note(study, store, elsewhere), file=sys.stderr, flush=True)
                        announced = True
                    time.sleep(CLAIM_POLL_S)
    finally:
        for future, claim in running.items():
            future.cancel()
            store.release(claim)


def _submit(pool: Executor, config: RunConfig, store: Store, claim: Claim) -> Future:
    """Start training ``config`` on ``pool``; release its claim if it cannot start."""
    try:
        return pool.submit(_train_one, config)
    except BaseException:
        store.release(claim)
        raise


def _collect(
    elsewhere: list[RunConfig], study: str, store: Store, queue: collections.deque
) -> Iterator[dict]:
    """One look at the runs other sweeps are training: yield the records they have stored, put
    the runs whose claim was dropped or abandoned back in ``queue`` (ours to train now), and
    return the others."""
    still = []
    for config in elsewhere:
        record = store.get(study, config)
        if record is not None:
            yield record
        elif store.claim_owner(study, config) is None:
            queue.append(config)
        else:
            still.append(config)
    return still


def _waiting_note(study: str, store: Store, elsewhere: list[RunConfig]) -> str:
    owner = store.claim_owner(study, elsewhere[0]) or {}
    return (
        f"{study}: waiting for {len(elsewhere)} run(s) that another sweep is training "
        f"(run {elsewhere[0].key()}: pid {owner.get('pid')} on {owner.get('host')})"
    )
