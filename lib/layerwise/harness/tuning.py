"""The tuning protocol every comparison in the project follows (after DeepOBS, Schneider et al.
2019, and Schmidt et al. 2021):

1. every arm (method) gets its own log-spaced learning-rate grid of the same size;
2. each grid point is trained on the tuning seed(s) and scored on the **validation** split;
   a diverged run scores as the worst possible value (a failure, never "missing");
3. while the best rate sits on an edge of its grid, the grid is extended by one step beyond that
   edge (at most ``max_extensions`` times); an arm whose best rate is still on an edge is
   reported as *not tuned* (``interior == False``), not as a result;
4. the best rate is rerun on fresh seeds and the **test** metric reported as mean with a 95%
   Student-t confidence interval (failures counted).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

import numpy as np
import pandas as pd

from .._validate import check_choice, check_positive
from . import stats
from .config import RunConfig
from .store import Store, records_frame
from .sweep import run_configs, worker_pool

__all__ = ["METRICS", "TuningResult", "log_grid", "stored_best_lr", "tune"]

# metric -> whether larger is better
METRICS = {"acc": True, "loss": False}


def log_grid(low: float, high: float, points: int) -> list[float]:
    """``points`` learning rates evenly spaced in log10 from ``low`` to ``high`` (rounded to 4
    significant digits so that configs, and hence store keys, are stable)."""
    check_positive("low", low)
    check_positive("high", high)
    if points < 1 or high < low:
        raise ValueError(f"need points >= 1 and high >= low, got {points}, {low}, {high}")
    return [float(f"{v:.4g}") for v in np.logspace(math.log10(low), math.log10(high), points)]


@dataclasses.dataclass
class TuningResult:
    """Outcome of ``tune``: all grid runs, the chosen rate per arm and the final test runs."""

    metric: str
    sensitivity: pd.DataFrame  # arm, lr, seed, status, val_<metric>, test_<metric>
    final: pd.DataFrame  # arm, lr, seed, status, test_<metric>, val_<metric>
    summary: pd.DataFrame  # one row per arm

    @property
    def untuned_arms(self) -> list[str]:
        return self.summary.loc[~self.summary["interior"], "arm"].tolist()


def _score(frame: pd.DataFrame, column: str, larger_is_better: bool) -> pd.Series:
    worst = -math.inf if larger_is_better else math.inf
    ok = frame["status"] == "ok"
    return frame[column].where(ok, worst).astype(float)


def _pick(rows: pd.DataFrame, column: str, larger_is_better: bool) -> float:
    """The grid rate with the best mean score over tuning seeds (ties: the smaller rate)."""
    scored = rows.assign(score=_score(rows, column, larger_is_better))
    means = scored.groupby("lr")["score"].mean().sort_index()
    return float(means.idxmax() if larger_is_better else means.idxmin())


def tune(
    arms: Mapping[str, RunConfig],
    lrs: Sequence[float],
    study: str,
    *,
    metric: str = "acc",
    tune_seeds: Sequence[int] = (0,),
    final_seeds: Sequence[int] = (1, 2, 3),
    max_extensions: int = 2,
    store: Store | None = None,
    jobs: int | None = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> TuningResult:
    """Tune each arm's learning rate on validation and report test metrics on fresh seeds.

    Args:
        arms: arm name -> base config (its ``lr`` and ``seed`` are replaced).
        lrs: the log-spaced grid every arm starts from (see ``log_grid``); same size for all.
        metric: ``"acc"`` (larger is better) or ``"loss"``.
        tune_seeds / final_seeds: seeds for the grid and for the reruns; they must not overlap.
        max_extensions: grid steps added beyond an edge while the best rate sits on it.
    """
    check_choice("metric", metric, METRICS)
    if not arms:
        raise ValueError("tune needs at least one arm")
    if not tune_seeds or not final_seeds:
        raise ValueError(f"seed lists must be non-empty: {tune_seeds!r}, {final_seeds!r}")
    if set(tune_seeds) & set(final_seeds):
        raise ValueError(f"final seeds {final_seeds!r} must be fresh, not in {tune_seeds!r}")
    lrs = sorted(float(lr) for lr in lrs)
    if len(lrs) < 3:
        raise ValueError(f"a grid needs >= 3 learning rates to have an interior, got {lrs}")
    for lr in lrs:
        check_positive("learning rate", lr)
    store = store or Store()
    with worker_pool(jobs, executor) as pool:
        return _tune(
            arms,
            lrs,
            study,
            metric,
            tune_seeds,
            final_seeds,
            max_extensions,
            dict(store=store, jobs=jobs, executor=pool, progress=progress),
        )


def _tune(arms, lrs, study, metric, tune_seeds, final_seeds, max_extensions, run):
    larger = METRICS[metric]
    val_col, test_col = f"val_{metric}", f"test_{metric}"
    step = math.log10(lrs[1] / lrs[0])

    grids = {name: list(lrs) for name in arms}
    records: dict[str, dict] = {}  # key -> record of every run this tuning needs

    def ensure(configs: Sequence[RunConfig]) -> None:
        records.update((r["key"], r) for r in run_configs(configs, study, **run))

    def rows(configs: Sequence[RunConfig], arm: str) -> pd.DataFrame:
        return records_frame(records[c.key()] for c in configs).assign(arm=arm)

    def grid_configs(names: Sequence[str]) -> list[RunConfig]:
        return [
            arms[n].replace(lr=lr, seed=s) for n in names for lr in grids[n] for s in tune_seeds
        ]

    ensure(grid_configs(list(arms)))
    edges = {}
    for extension in range(max_extensions + 1):
        frames = {n: rows(grid_configs([n]), n) for n in arms}
        best = {n: _pick(frames[n], val_col, larger) for n in arms}
        edges = {n: _edge(best[n], grids[n]) for n in arms}
        to_extend = [n for n, e in edges.items() if e]
        if not to_extend or extension == max_extensions:
            break
        for n in to_extend:
            lo, hi = grids[n][0], grids[n][-1]
            new = lo / 10**step if edges[n] == "low" else hi * 10**step
            grids[n] = sorted(grids[n] + [float(f"{new:.4g}")])
        ensure(grid_configs(to_extend))

    finals = {n: [arms[n].replace(lr=best[n], seed=s) for s in final_seeds] for n in arms}
    ensure([c for configs in finals.values() for c in configs])
    sensitivity = pd.concat([frames[n] for n in arms], ignore_index=True)
    final = pd.concat([rows(finals[n], n) for n in arms], ignore_index=True)
    rows = []
    for n in arms:
        f = final[final["arm"] == n]
        ok = f[f["status"] == "ok"]
        mean, low, high = stats.mean_ci(ok[test_col].tolist()) if len(ok) else (math.nan,) * 3
        rows.append(
            {
                "arm": n,
                "best_lr": best[n],
                "grid_low": grids[n][0],
                "grid_high": grids[n][-1],
                "grid_points": len(grids[n]),
                "interior": edges[n] is None,
                "seeds": len(f),
                "failures": int((f["status"] != "ok").sum()),
                f"{test_col}_mean": mean,
                f"{test_col}_ci_low": low,
                f"{test_col}_ci_high": high,
                f"{val_col}_best": float(
                    _score(frames[n], val_col, larger)[frames[n]["lr"] == best[n]].mean()
                ),
            }
        )
    return TuningResult(metric, sensitivity, final, pd.DataFrame(rows))


def _edge(best: float, grid: Sequence[float]) -> str | None:
    if math.isclose(best, grid[0]):
        return "low"
    if math.isclose(best, grid[-1]):
        return "high"
    return None


def stored_best_lr(
    store: Store,
    study: str,
    config: RunConfig,
    metric: str = "acc",
    tune_seeds: Sequence[int] = (0,),
) -> float | None:
    """The rate ``tune`` chose for ``config`` in ``study``, read from the store without training.

    Among the stored grid runs of ``study`` that equal ``config`` except for ``lr`` and
    ``seed`` (seed in ``tune_seeds``), the one with the best mean validation ``metric``
    (diverged runs count as failures, as in ``tune``); ``None`` when the store holds none.
    """
    check_choice("metric", metric, METRICS)
    probe = config.replace(lr=1.0, seed=0).key()
    records = [
        r
        for r in store.records(study)
        if r["config"]["seed"] in tune_seeds
        and RunConfig.from_dict(r["config"]).replace(lr=1.0, seed=0).key() == probe
    ]
    if not records:
        return None
    return _pick(records_frame(records), f"val_{metric}", METRICS[metric])
