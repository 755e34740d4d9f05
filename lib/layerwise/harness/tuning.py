"""The tuning protocol every comparison in the project follows (protocol v2, after DeepOBS,
Schneider et al. 2019; Crowded Valley, Schmidt et al. 2021; Nado et al. 2021).

For every arm (method) separately:

1. **Coarse grid.** The arm starts from the same log-spaced grid as every other arm
   (``lrs``, for example four points a factor 4 apart).
2. **Tuning seeds.** Each grid point is trained on every tuning seed (``tune_seeds``, at least
   three in the studies, disjoint from the final seeds) and scored on the **validation** split.
   The score of a run is the mean of its last ``score_evals`` validation evaluations (the final
   one included): with a schedule that decays to zero these sit at the end of training, and
   their mean is less noisy than one end point.  The score of a rate is the mean over tuning
   seeds; a diverged run scores as the worst possible value (a failure, never "missing").
3. **Extension.** While the best rate sits on an edge, the grid grows by one coarse step beyond
   that edge (at most ``max_extensions`` times).
4. **Refinement.** While the spacing on either side of the best rate is wider than
   ``max_spacing`` (2x in the studies), the log-midpoints between it and its neighbours are
   added, so the chosen rate ends with neighbours at most ``max_spacing`` away on both sides.
   Every arm, uniform included, is refined the same way.
5. **Interior.** The chosen rate counts as tuned (``interior``) only when it is not on an edge
   and both neighbours score strictly worse; an arm that is not tuned is reported as such,
   never as a result.
6. **Final runs.** The chosen rate is rerun on fresh ``final_seeds`` and the **test** metric
   reported (mean with a 95% interval; failures counted).

``check_protocol`` refuses a result that was tuned on fewer seeds or a coarser grid than a
study demands, so a verdict can never rest on a single seed or a 3x grid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

import numpy as np
import pandas as pd

from .._validate import check_choice, check_int, check_positive
from . import stats
from .config import RunConfig
from .store import Store, records_frame
from .sweep import run_configs, worker_pool

__all__ = [
    "METRICS",
    "ProtocolError",
    "TuningResult",
    "check_protocol",
    "log_grid",
    "run_score",
    "tune",
]

# metric -> whether larger is better
METRICS = {"acc": True, "loss": False}


class ProtocolError(ValueError):
    """A tuning result does not meet the protocol a comparison demands."""


def log_grid(low: float, high: float, points: int) -> list[float]:
    """``points`` learning rates evenly spaced in log10 from ``low`` to ``high`` (rounded to 4
    significant digits so that configs, and hence store keys, are stable)."""
    check_positive("low", low)
    check_positive("high", high)
    if points < 1 or high < low:
        raise ValueError(f"need points >= 1 and high >= low, got {points}, {low}, {high}")
    return [_round(v) for v in np.logspace(math.log10(low), math.log10(high), points)]


def _round(lr: float) -> float:
    return float(f"{lr:.4g}")


@dataclasses.dataclass
class TuningResult:
    """Outcome of ``tune``: all grid runs, the chosen rate per arm and the final test runs.

    ``curves`` holds the validation curves of the final runs (arm, seed, step, ``val_<metric>``)
    for learning curves and time-to-target.
    """

    metric: str
    sensitivity: pd.DataFrame  # arm, lr, seed, status, score, val_<metric>, test_<metric>
    final: pd.DataFrame  # arm, lr, seed, status, test_<metric>, val_<metric>
    summary: pd.DataFrame  # one row per arm
    curves: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    @property
    def untuned_arms(self) -> list[str]:
        return self.summary.loc[~self.summary["interior"], "arm"].tolist()


def check_protocol(result: TuningResult, *, min_seeds: int = 3, max_spacing: float = 2.0) -> None:
    """Raise ``ProtocolError`` naming every arm of ``result`` whose rate was chosen on fewer
    than ``min_seeds`` tuning seeds or whose grid around the chosen rate is coarser than
    ``max_spacing`` (the ratio to either neighbour)."""
    problems = []
    for _, row in result.summary.iterrows():
        if row["tune_seeds"] < min_seeds:
            problems.append(
                f"{row['arm']!r}: rate chosen on {row['tune_seeds']} tuning seed(s), "
                f"need >= {min_seeds}"
            )
        if row["spacing"] > max_spacing * (1 + 1e-3):
            problems.append(
                f"{row['arm']!r}: grid around the chosen rate {row['best_lr']:g} is "
                f"{row['spacing']:.2f}x apart, need <= {max_spacing:g}x"
            )
    if problems:
        raise ProtocolError("tuning does not meet the protocol:\n  " + "\n  ".join(problems))


def run_score(record: Mapping, column: str, evals: int = 1) -> float:
    """A run's selection score: the mean of its last ``evals`` validation values of ``column``
    (the final evaluation and the ``evals - 1`` curve points before it); ``nan`` unless the
    run finished (``status == "ok"``)."""
    check_int("score evaluations", evals, 1)
    if record["status"] != "ok":
        return math.nan
    tail = []
    if evals > 1:
        curve = record["curves"]
        before = [
            v
            for step, v in zip(curve["step"], curve[column], strict=True)
            if step < record["steps_done"]
        ]
        tail = before[-(evals - 1) :]
    return float(np.mean([*tail, record["final"][column]]))


@dataclasses.dataclass
class _Arm:
    """One arm's state while it is tuned: its base config and the rates on its grid."""

    name: str
    config: RunConfig
    grid: list[float]
    best: float = math.nan
    edge: str | None = None

    def configs(self, seeds: Sequence[int], lrs: Sequence[float] | None = None) -> list[RunConfig]:
        return [self.config.replace(lr=lr, seed=s) for lr in (lrs or self.grid) for s in seeds]


class _Tuner:
    """Runs the protocol for every arm; holds the records it has read or trained."""

    def __init__(self, study, metric, tune_seeds, score_evals, run_options):
        self.study = study
        self.larger = METRICS[metric]
        self.column = f"val_{metric}"
        self.tune_seeds = tuple(tune_seeds)
        self.score_evals = score_evals
        self.run_options = run_options
        self.records: dict[str, dict] = {}

    def ensure(self, configs: Sequence[RunConfig]) -> None:
        """Read or train every config (one sweep, so the workers stay busy)."""
        missing = [c for c in configs if c.key() not in self.records]
        if missing:
            for record in run_configs(missing, self.study, **self.run_options):
                self.records[record["key"]] = record

    def frame(self, arm: _Arm, configs: Sequence[RunConfig]) -> pd.DataFrame:
        records = [self.records[c.key()] for c in configs]
        worst = -math.inf if self.larger else math.inf
        scores = [run_score(r, self.column, self.score_evals) for r in records]
        return records_frame(records).assign(
            arm=arm.name, score=[worst if math.isnan(v) else v for v in scores]
        )

    def rate_scores(self, arm: _Arm) -> pd.Series:
        """Mean score over tuning seeds per grid rate (index sorted)."""
        frame = self.frame(arm, arm.configs(self.tune_seeds))
        return frame.groupby("lr")["score"].mean().sort_index()

    def choose(self, arm: _Arm) -> pd.Series:
        """Set ``arm.best`` (ties: the smaller rate) and ``arm.edge``; return the rate scores."""
        means = self.rate_scores(arm)
        arm.best = float(means.idxmax() if self.larger else means.idxmin())
        arm.edge = _edge(arm.best, arm.grid)
        return means

    def extend(self, arms: Sequence[_Arm], step: float, max_extensions: int) -> None:
        """Grow each arm's grid by one coarse ``step`` beyond the edge its best rate sits on."""
        for _ in range(max_extensions):
            for arm in arms:
                self.choose(arm)
            to_extend = [a for a in arms if a.edge]
            if not to_extend:
                return
            for arm in to_extend:
                new = arm.grid[0] / step if arm.edge == "low" else arm.grid[-1] * step
                arm.grid = sorted({*arm.grid, _round(new)})
            self.ensure([c for a in to_extend for c in a.configs(self.tune_seeds)])

    def refine(self, arms: Sequence[_Arm], max_spacing: float | None) -> None:
        """Add log-midpoints beside each arm's best rate until its neighbours are at most
        ``max_spacing`` away (no refinement beside an edge)."""
        while max_spacing is not None:
            for arm in arms:
                self.choose(arm)
            added = {}
            for arm in arms:
                mids = [
                    _round(math.sqrt(arm.best * n))
                    for n in _neighbours(arm.best, arm.grid)
                    if _ratio(arm.best, n) > max_spacing * (1 + 1e-3)
                ]
                if mids:
                    arm.grid = sorted({*arm.grid, *mids})
                    added[arm.name] = arm.configs(self.tune_seeds, mids)
            if not added:
                return
            self.ensure([c for configs in added.values() for c in configs])

    def summary_row(self, arm: _Arm, final: pd.DataFrame, test_col: str) -> dict:
        means = self.rate_scores(arm)
        neighbours = _neighbours(arm.best, arm.grid)
        worse = all(
            (means[n] < means[arm.best]) if self.larger else (means[n] > means[arm.best])
            for n in neighbours
        )
        ok = final[final["status"] == "ok"]
        mean, low, high = stats.mean_ci(ok[test_col].tolist()) if len(ok) else (math.nan,) * 3
        return {
            "arm": arm.name,
            "best_lr": arm.best,
            "grid_low": arm.grid[0],
            "grid_high": arm.grid[-1],
            "grid_points": len(arm.grid),
            "tune_seeds": len(self.tune_seeds),
            "spacing": max((_ratio(arm.best, n) for n in neighbours), default=math.inf),
            "interior": arm.edge is None and len(neighbours) == 2 and worse,
            "seeds": len(final),
            "failures": int((final["status"] != "ok").sum()),
            "grid_runs": len(arm.grid) * len(self.tune_seeds),
            f"{test_col}_mean": mean,
            f"{test_col}_ci_low": low,
            f"{test_col}_ci_high": high,
            f"{self.column}_best": float(means[arm.best]),
        }

    def curves(self, arm: _Arm, configs: Sequence[RunConfig]) -> pd.DataFrame:
        rows = []
        for config in configs:
            record = self.records[config.key()]
            curve = record["curves"]
            for step, value in zip(curve["step"], curve[self.column], strict=True):
                rows.append(
                    {"arm": arm.name, "seed": config.seed, "step": step, self.column: value}
                )
        return pd.DataFrame(rows)


def tune(
    arms: Mapping[str, RunConfig],
    lrs: Sequence[float],
    study: str,
    *,
    metric: str = "acc",
    tune_seeds: Sequence[int] = (0,),
    final_seeds: Sequence[int] = (1, 2, 3),
    max_extensions: int = 2,
    max_spacing: float | None = None,
    score_evals: int = 1,
    store: Store | None = None,
    jobs: int | None = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> TuningResult:
    """Tune each arm's learning rate on validation and report test metrics on fresh seeds.

    Args:
        arms: arm name -> base config (its ``lr`` and ``seed`` are replaced).
        lrs: the log-spaced grid every arm starts from (see ``log_grid``); same for all arms.
        metric: ``"acc"`` (larger is better) or ``"loss"``.
        tune_seeds / final_seeds: seeds for the grid and for the reruns; they must not overlap.
        max_extensions: coarse steps added beyond an edge while the best rate sits on it.
        max_spacing: refine around the best rate until its neighbours are at most this factor
            away (``None``: no refinement, the grid stays as extended).
        score_evals: validation evaluations averaged into a run's score (``run_score``).
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
    if max_spacing is not None and max_spacing <= 1:
        raise ValueError(f"max_spacing must be a factor > 1, got {max_spacing!r}")
    check_int("score_evals", score_evals, 1)
    store = store or Store()
    with worker_pool(jobs, executor) as pool:
        options = dict(store=store, jobs=jobs, executor=pool, progress=progress)
        tuner = _Tuner(study, metric, tune_seeds, score_evals, options)
        state = [_Arm(name, config, list(lrs)) for name, config in arms.items()]
        tuner.ensure([c for arm in state for c in arm.configs(tune_seeds)])
        tuner.extend(state, lrs[1] / lrs[0], max_extensions)
        tuner.refine(state, max_spacing)
        for arm in state:
            tuner.choose(arm)
        finals = {arm.name: arm.configs(final_seeds, [arm.best]) for arm in state}
        tuner.ensure([c for configs in finals.values() for c in configs])
    test_col = f"test_{metric}"
    final = {arm.name: tuner.frame(arm, finals[arm.name]) for arm in state}
    return TuningResult(
        metric,
        sensitivity=pd.concat(
            [tuner.frame(arm, arm.configs(tune_seeds)) for arm in state], ignore_index=True
        ),
        final=pd.concat(final.values(), ignore_index=True),
        summary=pd.DataFrame([tuner.summary_row(a, final[a.name], test_col) for a in state]),
        curves=pd.concat([tuner.curves(a, finals[a.name]) for a in state], ignore_index=True),
    )


def _edge(best: float, grid: Sequence[float]) -> str | None:
    if math.isclose(best, grid[0]):
        return "low"
    if math.isclose(best, grid[-1]):
        return "high"
    return None


def _neighbours(lr: float, grid: Sequence[float]) -> list[float]:
    """The grid rates just below and just above ``lr`` (one or none at an edge)."""
    i = min(range(len(grid)), key=lambda j: abs(math.log(grid[j] / lr)))
    return [grid[j] for j in (i - 1, i + 1) if 0 <= j < len(grid)]


def _ratio(a: float, b: float) -> float:
    return max(a, b) / min(a, b)
