"""Comparisons under tuning protocol v2: arms that differ only in their per-layer rule, each
tuned separately, then judged against a baseline arm on paired fresh seeds.

A comparison takes one testbed and keeps everything but the per-layer rule fixed.  Every arm
(the uniform baseline included) is tuned with the same :class:`Protocol` (``tuning.tune``):

* the same coarse grid (:data:`COARSE_GRIDS`, four rates a factor 4 apart), extended while the
  best rate sits on an edge, then refined until the chosen rate's neighbours are at most 2x away;
* three tuning seeds (:data:`TUNE_SEEDS`) per grid point, disjoint from the final seeds; a
  run's score is the mean of its last three validation evaluations;
* the chosen rate rerun on fresh seeds: ten on MNIST-1D and on the fine-tuning passages, five
  on Fashion-MNIST and CIFAR-10, three on language modelling (:data:`FINAL_SEEDS`);
* a schedule that decays to zero over the budget (linear warmup over 5% of the steps, then
  cosine to zero, :func:`with_decay`), so a multiplier below 1 is not the only annealing an arm
  gets, and the final weights are a real end point.

An optimizer without an entry in :data:`COARSE_GRIDS` (LARS, whose base rate lives near 1), or
an arm whose grid moves with the batch size, gets the same protocol on a coarse grid of its own
(:func:`grid_protocol`: again four rates a factor 4 apart).  ``check_protocol`` refuses a result
tuned on fewer seeds or a coarser grid, so no effect table can rest on one seed.  Effects,
intervals and the four outcomes come from ``harness.stats``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor

import pandas as pd

from .._validate import check_choice, check_number, check_positive
from ..layers import KINDS, layer_table
from ..rules import rule_from_spec
from . import data, models, stats
from .config import RunConfig
from .store import Store
from .sweep import MissingRunsError, default_jobs, worker_pool
from .testbeds import Testbed
from .tuning import TuningResult, check_protocol, tune

__all__ = [
    "COARSE_GRIDS",
    "DEPTH_FACTOR_RULES",
    "at_budget",
    "Comparison",
    "FINAL_SEEDS",
    "OPTIMIZERS",
    "TUNE_SEEDS",
    "Protocol",
    "compare",
    "depth_factor_arms",
    "grid_protocol",
    "kind_arms",
    "multiplier_table",
    "protocol",
    "runs_of",
    "sensitivity_of",
    "time_to_target",
    "tune_all",
    "tune_arms",
    "verdict_table",
    "with_decay",
    "with_design",
    "with_optimizer",
]

TUNE_SEEDS: tuple[int, ...] = (100, 101, 102)
FINAL_SEEDS: dict[str, tuple[int, ...]] = {
    "mnist1d": tuple(range(1, 11)),
    "fashion_mnist": tuple(range(1, 6)),
    "tinyshakespeare": (1, 2, 3),
    "cifar10": tuple(range(1, 6)),
    "tinyshakespeare_passages": tuple(range(1, 11)),  # fine-tuning runs: seconds each
}
# Four rates a factor 4 apart, centred on each optimizer's usual range; extended by 4x steps
# while the best rate is an edge, then refined to 2x around it.
COARSE_GRIDS: dict[str, tuple[float, ...]] = {
    "adamw": (2.5e-4, 1e-3, 4e-3, 1.6e-2),
    "sgd": (4e-3, 1.6e-2, 6.4e-2, 0.256),
}
OPTIMIZERS: dict[str, dict] = {
    "adamw": {"weight_decay": 0.0},
    "sgd": {"momentum": 0.9, "weight_decay": 0.0},
}
WARMUP_FRACTION = 0.05
# the columns of ``compare``'s table (also when every comparison is pending)
COMPARE_COLUMNS = (
    "group testbed arm metric best_lr tuned arm_mean baseline_mean larger_is_better time_ratio "
    "time_ratio_low time_ratio_high time_never effect ci_low ci_high ci_level p p_holm p_tost "
    "p_tost_holm sd mde sesoi n outcome"
).split()


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How every arm of a comparison is tuned and rerun (see the module docstring)."""

    grid: tuple[float, ...]
    tune_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    max_spacing: float | None = 2.0
    max_extensions: int = 3
    score_evals: int = 3
    min_tune_seeds: int = 3

    def describe(self) -> str:
        """One sentence a notebook prints above its results."""
        spacing = f"refined to <= {self.max_spacing:g}x" if self.max_spacing else "not refined"
        return (
            f"coarse grid {', '.join(f'{lr:g}' for lr in self.grid)} (extended while an edge "
            f"wins, {spacing}); tuning seeds {list(self.tune_seeds)} at every point; a run scores "
            f"the mean of its last {self.score_evals} validation evaluation(s); "
            f"{len(self.final_seeds)} fresh seeds at the chosen rate"
        )


def protocol(dataset: str, optimizer: str, profile: str = "full") -> Protocol:
    """The study protocol for ``dataset`` and ``optimizer``; ``profile="smoke"`` shrinks it to a
    3-point grid, one tuning seed and two final seeds (seconds, for checks only)."""
    check_choice("comparison optimizer", optimizer, OPTIMIZERS)
    return grid_protocol(dataset, COARSE_GRIDS[optimizer], profile)


def grid_protocol(
    dataset: str,
    grid: Sequence[float],
    profile: str = "full",
    final_seeds: Sequence[int] | None = None,
) -> Protocol:
    """:func:`protocol` on a coarse ``grid`` of the caller's own: for an optimizer that has no
    entry in :data:`COARSE_GRIDS`, or a grid moved for a batch size.

    ``grid`` must look like every coarse grid here -- four increasing rates, each a factor 4
    above the one before (``grid[i] = grid[0] * 4**i``) -- so that no arm starts from a larger
    grid budget than another.  ``final_seeds`` replaces the dataset's :data:`FINAL_SEEDS` (for a
    study that needs more, never fewer, than the protocol's minimum; it must not overlap the
    tuning seeds).  ``profile="smoke"`` shrinks it as :func:`protocol` does.
    """
    check_choice("dataset", dataset, FINAL_SEEDS)
    check_choice("profile", profile, ("full", "smoke"))
    grid = tuple(float(lr) for lr in grid)
    points = len(COARSE_GRIDS["sgd"])
    factor = COARSE_GRIDS["sgd"][1] / COARSE_GRIDS["sgd"][0]
    if len(grid) != points or not all(lr > 0 and math.isfinite(lr) for lr in grid):
        raise ValueError(f"a coarse grid is {points} positive rates, got {list(grid)}")
    steps = [b / a for a, b in zip(grid[:-1], grid[1:], strict=True)]
    if not all(math.isclose(s, factor, rel_tol=1e-3) for s in steps):
        raise ValueError(
            f"a coarse grid's rates must rise by a factor {factor:g} each, got {list(grid)}"
        )
    seeds = tuple(FINAL_SEEDS[dataset] if final_seeds is None else final_seeds)
    if final_seeds is not None:
        if len(seeds) < len(FINAL_SEEDS[dataset]) or set(seeds) & set(TUNE_SEEDS):
            raise ValueError(
                f"final seeds {list(seeds)} for {dataset}: need at least "
                f"{len(FINAL_SEEDS[dataset])}, none of them a tuning seed {list(TUNE_SEEDS)}"
            )
    if profile == "smoke":
        return Protocol(grid[1:], (100,), (1, 2), None, 0, 1, 1)
    return Protocol(grid, TUNE_SEEDS, seeds)


def with_optimizer(config: RunConfig, optimizer: str) -> RunConfig:
    """``config`` trained by ``"adamw"`` or ``"sgd"`` (momentum 0.9), no weight decay."""
    check_choice("comparison optimizer", optimizer, OPTIMIZERS)
    return config.replace(optimizer=optimizer, optimizer_options=OPTIMIZERS[optimizer])


def with_decay(config: RunConfig, steps: int) -> RunConfig:
    """``config`` trained for ``steps`` steps with linear warmup over 5% of them, then cosine
    decay to zero (Loshchilov & Hutter 2017): ``m = (1 + cos(pi p)) / 2`` after warmup."""
    check_positive("steps", steps)
    warmup = max(1, round(WARMUP_FRACTION * steps))
    return config.replace(
        steps=int(steps),
        epochs=None,
        schedule="cosine",
        schedule_options={"warmup": warmup, "final": 0.0},
    )


SMOKE_STEPS = 20


def at_budget(bed: Testbed, steps: int, optimizer: str, profile: str = "full") -> Testbed:
    """``bed`` trained by ``optimizer`` for ``steps`` steps with warmup and cosine decay to zero
    (:func:`with_decay`), evaluated 8 times; ``profile="smoke"``: :data:`SMOKE_STEPS` steps."""
    check_choice("profile", profile, ("full", "smoke"))
    steps = SMOKE_STEPS if profile == "smoke" else steps
    config = with_decay(with_optimizer(bed.config, optimizer), steps)
    return dataclasses.replace(bed, config=config.replace(eval_every=max(1, steps // 8)))


# --------------------------------------------------------------------------------------------
# arms: name -> config, with a table of what each arm changes (numbers stay numbers)


DEPTH_FACTOR_RULES: tuple[str, ...] = ("discriminative", "layer_decay")


def _depth_factor_arm(xi: float, rule: str) -> tuple[str, dict, str]:
    """Label, rule spec and direction of the depth-factor arm ``xi`` written as ``rule``."""
    if rule == "layer_decay":  # BEiT / ELECTRA's spelling: the decay itself, lower slower only
        check_number("layer-decay factor xi", xi, 0, 1, open_low=True)
        return f"xi={xi:g}", {"name": "layer_decay", "decay": round(float(xi), 6)}, "lower slower"
    slower = xi < 1
    factor = 1 / xi if slower else xi
    label = f"xi=1/{factor:.3g}" if slower else f"xi={factor:.3g}"
    spec = {
        "name": "discriminative",
        "factor": round(float(factor), 6),
        "toward": "input" if slower else "output",
    }
    return label, spec, "lower slower" if slower else "lower faster"


def depth_factor_arms(
    config: RunConfig, factors: Sequence[float], rule: str = "discriminative"
) -> tuple[dict[str, RunConfig], pd.DataFrame]:
    """Uniform plus one depth-wise arm per factor ``xi``, one factor step per **block**.

    ``xi`` is the ratio of a block's rate to the rate of the block above it: ULMFiT's rule
    (Howard & Ruder 2018), ``eta^(l-1) = eta^l / 2.6``, is ``xi = 1/2.6`` (lower blocks slower);
    ``xi > 1`` is its mirror (lower blocks faster).  Multipliers are normalised so the fastest
    block runs at the base rate: ``m_d = xi^(D - d)`` for ``xi < 1`` and ``m_d = xi^-d`` for
    ``xi > 1``, with ``d`` the block depth (``layers.layer_table``'s default granularity: one
    depth per block, the input layer and the head one each) and ``D`` the top one.  ``xi = 1``
    is the uniform arm.

    ``rule`` names how an arm's config spells the factor (the run keys differ, the multipliers
    do not): ``"discriminative"`` (``rules.Discriminative(1/xi)`` toward the input, or ``(xi)``
    toward the output; arms ``"xi=1/2.6"``, ``"xi=2.6"``) or ``"layer_decay"`` (layer-wise rate
    decay as ELECTRA and BEiT write it, ``rules.LayerDecay(xi)``, only ``0 < xi <= 1``; arms
    ``"xi=0.8"``).  Returns the arms and a table (arm, xi, direction).
    """
    check_choice("depth-factor rule", rule, DEPTH_FACTOR_RULES)
    arms = {"uniform": config.replace(rule={"name": "uniform"})}
    rows = [{"arm": "uniform", "xi": 1.0, "direction": "uniform"}]
    for xi in sorted(set(factors)):
        check_positive("depth factor xi", xi)
        if math.isclose(xi, 1.0):
            continue
        label, spec, direction = _depth_factor_arm(float(xi), rule)
        arms[label] = config.replace(rule=spec)
        rows.append({"arm": label, "xi": float(xi), "direction": direction})
    return arms, pd.DataFrame(rows)


def kind_arms(
    config: RunConfig, kinds: Sequence[str], multipliers: Sequence[float]
) -> tuple[dict[str, RunConfig], pd.DataFrame]:
    """Uniform plus one arm per (kind, multiplier): that layer type's rate times the multiplier,
    every other parameter at the base rate (``rules.ByKind``).  Returns the arms and a table
    (arm, kind, multiplier)."""
    arms = {"uniform": config.replace(rule={"name": "uniform"})}
    rows = [{"arm": "uniform", "kind": None, "multiplier": 1.0}]
    for kind in kinds:
        check_choice("layer kind", kind, KINDS)
        for m in multipliers:
            check_positive("type multiplier", m)
            label = f"{kind} x{m:g}" if m >= 1 else f"{kind} x1/{1 / m:g}"
            arms[label] = config.replace(rule={"name": "by_kind", "multipliers": {kind: float(m)}})
            rows.append({"arm": label, "kind": kind, "multiplier": float(m)})
    return arms, pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# tuning


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One comparison: a group label (optimizer, budget), the testbed at its budget, the arms
    (name -> config), what each arm changes (``design``) and the tuning protocol."""

    group: str
    bed: Testbed
    arms: Mapping[str, RunConfig]
    design: pd.DataFrame
    protocol: Protocol

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.bed.name)


def multiplier_table(comparison: Comparison, by: str = "depth") -> pd.DataFrame:
    """The rate multiplier each block (``by="depth"``) or each layer type (``by="kind"``) of
    the comparison's model receives under every arm: one row per depth or kind (with the layers
    in it), one column per arm -- the intervention, not only its name."""
    check_choice("multiplier table rows", by, ("depth", "kind"))
    config = comparison.bed.config
    spec = data.spec(config.dataset)
    model = models.build(config.model, spec, **config.model_options)
    table = layer_table(model, data.example_input(spec))  # traced once for all arms
    rows = table.groupby(by, sort=by == "depth")
    columns = {"layers": rows["layer"].agg(lambda s: ", ".join(dict.fromkeys(s)))}
    for arm, arm_config in comparison.arms.items():
        multipliers = rule_from_spec(dict(arm_config.rule)).multipliers(table)
        columns[arm] = (
            pd.Series(multipliers, index=table.index).groupby(table[by], sort=by == "depth").first()
        )
    return pd.DataFrame(columns).rename_axis(by).reset_index()


def tune_arms(
    arms: Mapping[str, RunConfig],
    bed: Testbed,
    study: str,
    proto: Protocol,
    *,
    store: Store | None = None,
    jobs: int | None = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> TuningResult:
    """Tune every arm of one testbed with ``proto`` and check that the result meets it."""
    result = tune(
        arms,
        proto.grid,
        study,
        metric=bed.metric,
        tune_seeds=proto.tune_seeds,
        final_seeds=proto.final_seeds,
        max_extensions=proto.max_extensions,
        max_spacing=proto.max_spacing,
        score_evals=proto.score_evals,
        store=store,
        jobs=jobs,
        executor=executor,
        progress=progress,
    )
    check_protocol(
        result, min_seeds=proto.min_tune_seeds, max_spacing=proto.max_spacing or math.inf
    )
    return result


def tune_all(
    plan: Sequence[Comparison],
    study: str,
    *,
    store: Store | None = None,
    jobs: int | None = None,
    concurrent: int = 3,
    progress: bool = True,
) -> tuple[dict[tuple[str, str], TuningResult], list[tuple[Comparison, int]]]:
    """Tune the comparisons of ``plan`` on one pool of workers, ``concurrent`` at a time in
    plan order (so a plan that lists its cheap comparisons first finishes those first).

    Each comparison walks the protocol's stages (grid, extensions, refinement, final seeds) in
    its own thread; they feed the same worker processes, so the cores stay busy while one
    comparison waits for its stage to finish.  Returns the results by ``(group, testbed)``
    and the comparisons still *pending* with the number of runs they miss at their current
    stage -- only where training is forbidden (``LAYERWISE_REQUIRE_STORED``) and the store is
    incomplete.
    """
    store = store or Store()
    results: dict[tuple[str, str], TuningResult] = {}
    pending: list[tuple[Comparison, int]] = []
    inline = (jobs or default_jobs()) == 1
    # the threads outlive the process pool: workers a thread started get the kernel's
    # parent-death signal when that thread exits (``sweep.worker_pool``)
    with ThreadPoolExecutor(1 if inline else concurrent) as threads, worker_pool(jobs) as pool:
        futures = {
            c.key: threads.submit(
                tune_arms,
                c.arms,
                c.bed,
                study,
                c.protocol,
                store=store,
                jobs=jobs,
                executor=pool,
                progress=progress,
            )
            for c in plan
        }
        for c in plan:
            try:
                results[c.key] = futures[c.key].result()
            except MissingRunsError as missing:
                pending.append((c, len(missing.missing)))
    return results, pending


# --------------------------------------------------------------------------------------------
# effects against the baseline arm: four outcomes over the notebook's family


def _per_seed(frame: pd.DataFrame, arm: str, column: str) -> pd.Series:
    rows = frame[(frame["arm"] == arm) & (frame["status"] == "ok")]
    return rows.set_index("seed")[column].astype(float)


def _sesoi(metric: str, baseline_mean: float, relative_error: float, nats: float) -> float:
    """The smallest effect of interest: ``relative_error`` of the baseline's test error for an
    accuracy (``stats.sesoi_from_error``), ``nats`` for a loss."""
    if metric == "acc":
        return stats.sesoi_from_error(1.0 - baseline_mean, relative_error)
    return nats


def sensitivity_of(results: Mapping[tuple[str, str], TuningResult]) -> pd.DataFrame:
    """Every tuning run of ``results`` with a ``panel`` label ``"<testbed> · <group>"``, for
    ``plots.lr_sensitivity`` (an empty frame while every comparison is pending)."""
    frames = [r.sensitivity.assign(panel=f"{bed} · {group}") for (group, bed), r in results.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def runs_of(results: Mapping[tuple[str, str], TuningResult]) -> pd.DataFrame:
    """Every run (grid and final) behind ``results``, once each: key, wall time, status."""
    frames = [r.sensitivity for r in results.values()] + [r.final for r in results.values()]
    columns = ["key", "wall_time_s", "status"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat([f[columns] for f in frames], ignore_index=True).drop_duplicates("key")


def time_to_target(result: TuningResult, arm: str, baseline: str = "uniform") -> stats.TimeRatio:
    """Steps for ``arm`` to reach, on each final seed, the final validation score the
    ``baseline`` reached on the same seed, as a geometric-mean ratio over seeds (< 1: the arm
    gets there faster; ``stats.compare_times_to_target``).  A seed where the arm never gets
    there counts at the full budget (a bound in the arm's favour; the count is reported).

    Runs evaluated once, at their last step (short fine-tuning), have no curve to read a time
    from: the ratio is then undefined (nan, no pairs), not 1."""
    column = f"val_{result.metric}"
    larger = result.metric == "acc"
    targets = _per_seed(result.final, baseline, column)
    curves = result.curves
    if curves["step"].nunique() < 2:
        nan = math.nan
        return stats.TimeRatio(nan, nan, nan, nan, 0, 0, 0, 0, ())
    budget = float(curves["step"].max())

    def steps(name: str, seed: int) -> float:
        c = curves[(curves["arm"] == name) & (curves["seed"] == seed)].sort_values("step")
        return stats.steps_to_target(c["step"], c[column], targets[seed], larger)

    seeds = sorted(set(targets.index) & set(_per_seed(result.final, arm, column).index))
    return stats.compare_times_to_target(
        [steps(arm, s) for s in seeds], [steps(baseline, s) for s in seeds], budget=budget
    )


def compare(
    results: Mapping[tuple[str, str], TuningResult],
    *,
    baseline: str = "uniform",
    sesoi_relative_error: float = 0.10,
    sesoi_nats: float = 0.02,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every arm of ``results`` (keyed ``(group, testbed)``) against ``baseline`` on paired
    final seeds, as one family corrected by Holm-Bonferroni (``stats.compare_family``).

    One row per (group, testbed, arm): the chosen rate and whether it is interior (an arm or a
    baseline that is not tuned gives *inconclusive*, whatever its data), the test metric's mean
    for arm and baseline, the effect (arm minus baseline) with its interval, p-values, the
    minimum detectable effect and the smallest effect of interest, the outcome (better / worse
    / equivalent / inconclusive, read with the metric's direction), and the time to target
    (:func:`time_to_target`: ratio with its 95% interval and the seeds that never got there).
    """
    rows = []
    for (group, bed), result in results.items():
        test_col = f"test_{result.metric}"
        summary = result.summary.set_index("arm")
        if baseline not in summary.index:
            raise ValueError(f"{group}/{bed}: no {baseline!r} arm among {list(summary.index)}")
        base = _per_seed(result.final, baseline, test_col)
        for arm in summary.index.drop(baseline):
            ours = _per_seed(result.final, arm, test_col)
            seeds = sorted(set(base.index) & set(ours.index))
            tuned = bool(summary.loc[arm, "interior"] and summary.loc[baseline, "interior"])
            ttt = time_to_target(result, arm, baseline)
            rows.append(
                {
                    "group": group,
                    "testbed": bed,
                    "arm": arm,
                    "metric": test_col,
                    "best_lr": float(summary.loc[arm, "best_lr"]),
                    "tuned": tuned,
                    "arm_mean": float(ours.mean()),
                    "baseline_mean": float(base.mean()),
                    "a": [ours[s] for s in seeds],
                    "b": [base[s] for s in seeds],
                    "sesoi": _sesoi(
                        result.metric, float(base.mean()), sesoi_relative_error, sesoi_nats
                    ),
                    "larger_is_better": result.metric == "acc",
                    "bounds": (0.0, 1.0) if result.metric == "acc" else None,
                    "time_ratio": ttt.ratio,
                    "time_ratio_low": ttt.ci_low,
                    "time_ratio_high": ttt.ci_high,
                    "time_never": ttt.arm_never,
                }
            )
    if not rows:
        return pd.DataFrame(columns=COMPARE_COLUMNS)
    frame = pd.DataFrame(rows).rename_axis("row").reset_index()
    # an untuned comparison keeps its numbers but is no claim: it stays out of the family
    parts = [stats.compare_family(frame[frame["tuned"]].reset_index(drop=True), alpha=alpha)]
    if not frame["tuned"].all():
        untuned = frame[~frame["tuned"]].reset_index(drop=True)
        parts.append(stats.compare_family(untuned, alpha=alpha).assign(outcome="inconclusive"))
    table = pd.concat([p for p in parts if len(p)]).sort_values("row")
    return table.drop(columns=["row"]).reset_index(drop=True)


def verdict_table(table: pd.DataFrame) -> pd.DataFrame:
    """``comparisons.compare``'s table as a reader sees it: one row per comparison with the
    chosen rate, the test accuracies, the effect with its interval, the minimum detectable
    effect beside the smallest effect of interest, the outcome and the time to target.  Where
    some comparison is scored by another metric than test accuracy (a language model's test
    loss), a ``metric`` column names each row's and the arm's mean is ``arm mean``."""

    def ratio(row: pd.Series) -> str:
        never = f", {int(row['time_never'])} never" if row["time_never"] else ""
        return (
            stats.format_ci(row["time_ratio"], row["time_ratio_low"], row["time_ratio_high"], 2)
            + never
        )

    accuracy_only = set(table["metric"]) <= {"test_acc"}
    metric = {} if accuracy_only else {"metric": table["metric"]}
    return pd.DataFrame(
        {
            "group": table["group"],
            "testbed": table["testbed"],
            "arm": table["arm"],
            **metric,
            "best lr": table["best_lr"].map("{:.3g}".format),
            "uniform": table["baseline_mean"].map("{:.3f}".format),
            "arm acc" if accuracy_only else "arm mean": table["arm_mean"].map("{:.3f}".format),
            "effect [CI]": [
                stats.format_ci(e, lo, hi)
                for e, lo, hi in zip(
                    table["effect"], table["ci_low"], table["ci_high"], strict=True
                )
            ],
            "CI level": table["ci_level"].map("{:.3f}".format),
            "MDE": table["mde"].map("{:.3f}".format),
            "SESOI": table["sesoi"].map("{:.3f}".format),
            "outcome": [
                o if t else f"{o} (not tuned)"
                for o, t in zip(table["outcome"], table["tuned"], strict=True)
            ],
            "steps to uniform's score": [ratio(row) for _, row in table.iterrows()],
        }
    )


def with_design(table: pd.DataFrame, plan: Sequence[Comparison]) -> pd.DataFrame:
    """``table`` (from :func:`compare`) with the columns of each comparison's ``design`` (what
    each arm changes: a factor, a layer kind, a multiplier) merged in by group, testbed, arm."""
    designs = pd.concat(
        [c.design.assign(group=c.group, testbed=c.bed.name) for c in plan], ignore_index=True
    )
    return table.merge(designs, on=["group", "testbed", "arm"], how="left")
