"""Batch-size scaling under tuning protocol v2: what studies 06 (LARS) and 07 (LAMB) share.

A batch-scaling study trains one testbed at growing batch sizes ``B0 < B1 < ...`` on the same
**budget** of examples (or, for a language model, tokens): a larger batch takes fewer steps,
not less compute per epoch (:class:`Budget`, ``steps(B) = round(budget / (B * block))``).  Every
run warms up linearly and then decays as ``(1 - p)^power`` to zero (:func:`batch_config`).

Two ways to set an arm's rate at ``B > B0``, the two protocols of the large-batch literature:

* **retuned** at every batch size (Nado et al. 2021, ``docs/references.md#nado2021reality``):
  one ``comparisons.Comparison`` per (testbed, batch size, arm), each on a coarse grid moved to
  where square-root scaling would put the ``B0`` optimum (:func:`grid_shift`, :func:`grid_at`;
  a starting point only: the protocol extends and refines it);
* **scaled** from ``B0`` and not tuned again (:func:`scaled_rate`): the rate tuned at ``B0``
  times ``B / B0`` (the linear scaling rule, Goyal et al. 2017, ``#goyal2017accurate``, LARS's
  baseline) or times ``sqrt(B / B0)`` (square-root scaling, You et al. 2020, ``#you2020lamb``),
  rerun on the retuned arm's final seeds (:func:`add_scaled`).

Results are gathered per batch size (:func:`by_batch`), summarised per arm with 95% intervals
(:func:`score_table`), and judged on paired final seeds in Holm families of the four outcomes
(``harness.stats``): an arm against a baseline at the same batch size (:func:`compare_pairs`),
and the **drop contrast** -- does an arm lose less than its baseline from ``B0`` to ``B``
(:func:`drop_contrasts`)?  Monitored reruns of final runs give per-tensor trust ratios and
relative updates over training (:func:`monitored_configs`, :func:`trust_frame`).

The metric is a testbed's: test accuracy (larger is better, in [0, 1]; smallest effect of
interest a fraction of the baseline's test error) or test loss in nats (smaller is better;
smallest effect of interest in nats).  Group labels are ``"<arm> · B=<batch>"`` for a tuned
comparison and ``"B=<batch>"`` for a batch size's merged result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .._validate import check_choice, check_positive
from ..probes import monitor_frame
from . import comparisons, stats
from .config import RunConfig
from .store import Store, records_frame
from .sweep import run_stored
from .testbeds import Testbed
from .tuning import TuningResult, run_score

__all__ = [
    "DROP_COLUMNS",
    "FAILED",
    "SCALING_RULES",
    "Arm",
    "Budget",
    "add_scaled",
    "batch_config",
    "batch_of",
    "by_batch",
    "check_batch",
    "compare_pairs",
    "drop_contrasts",
    "drop_verdict_table",
    "effect_text",
    "grid_at",
    "grid_shift",
    "group_name",
    "level_verdict_table",
    "monitored_configs",
    "plot_metric_vs_batch",
    "plot_rates",
    "round_rate",
    "scaled_configs",
    "scaled_rate",
    "score_table",
    "trust_frame",
    "tuned_comparison",
    "verdict_of",
]

# exponent of B / B0 that each scaling rule multiplies a rate by
SCALING_RULES: dict[str, float] = {"linear": 1.0, "sqrt": 0.5}
UNITS = ("examples", "tokens")
FAILED = "failed"  # every final run of the arm (or of its baseline) diverged: nothing to pair


def round_rate(lr: float) -> float:
    """Four significant digits, as ``tuning`` rounds the rates it adds (stable store keys)."""
    return float(f"{lr:.4g}")


def check_batch(batch: int) -> int:
    """``batch`` if it is a whole number >= 1; otherwise a ``ValueError`` naming it."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch size must be a whole number >= 1, got {batch!r}")
    return batch


def _check_rule(rule: str) -> float:
    return SCALING_RULES[check_choice("scaling rule", rule, SCALING_RULES)]


# --------------------------------------------------------------------------------------------
# the budget, the grids, the rates


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every batch size spends in full: ``amount`` examples, or ``amount`` tokens of text
    read ``block`` tokens per sequence (``unit="tokens"``).  ``steps(B)`` is the number of
    optimizer steps that spends it at batch ``B``: ``round(amount / (B * block))`` (``block``
    is 1 for examples), at least 1."""

    amount: float
    unit: str = "examples"
    block: int = 1

    def __post_init__(self) -> None:
        check_positive("budget", self.amount)
        check_choice("budget unit", self.unit, UNITS)
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
            raise ValueError(
                f"tokens per sequence (block) must be a whole number >= 1, got {self.block!r}"
            )
        if self.unit == "examples" and self.block != 1:
            raise ValueError(
                f"a budget in examples reads one example per item, got block={self.block}"
            )

    def per_step(self, batch: int) -> int:
        """Examples (or tokens) one step at batch ``batch`` reads."""
        return check_batch(batch) * self.block

    def steps(self, batch: int) -> int:
        """Optimizer steps that spend the budget at batch ``batch``."""
        return max(1, round(self.amount / self.per_step(batch)))

    def fraction(self, share: float) -> Budget:
        """``share`` of this budget (a warmup, say), in the same unit."""
        check_positive("budget share", share)
        return dataclasses.replace(self, amount=self.amount * share)

    def describe(self) -> str:
        per = (
            f" ({self.amount / self.block:,.0f} sequences of {self.block})"
            if self.block > 1
            else ""
        )
        return f"{self.amount:,.0f} {self.unit}{per}"


def grid_shift(batch: int, base_batch: int, exponent: float = 0.5) -> float:
    """The factor a coarse grid moves by at batch ``batch``: ``4^k`` with ``k`` the nearest whole
    number to ``log4 (B / B0)^exponent`` (halves round up) -- square-root scaling
    (``exponent=0.5``) on the grids' own factor-4 lattice: with ``B0 = 128``, 1 at 128 and 256,
    4 from 512 to 4096, 16 at 8192."""
    ratio = check_batch(batch) / check_batch(base_batch)
    k = math.floor(math.log2(ratio) * exponent / 2 + 0.5)
    return 4.0**k


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way to train at a batch size: the optimizer with its options, the coarse grid its
    base rate is tuned on at ``B0`` (:func:`grid_at` moves it with the batch size) and what it
    stands for."""

    optimizer: str
    options: Mapping[str, Any]
    grid: tuple[float, ...]
    what: str


def grid_at(arm: Arm, batch: int, base_batch: int, exponent: float = 0.5) -> tuple[float, ...]:
    """The coarse grid ``arm`` starts from at batch ``batch`` (:func:`grid_shift`)."""
    shift = grid_shift(batch, base_batch, exponent)
    return tuple(round_rate(lr * shift) for lr in arm.grid)


def scaled_rate(lr: float, batch: int, base_batch: int, rule: str) -> float:
    """The rate ``lr`` tuned at ``B0`` carried to ``B`` by a scaling rule, not tuned again:

    * ``"linear"``: ``lr * B / B0`` (Goyal et al. 2017; LARS's Table 1 baseline);
    * ``"sqrt"``: ``lr * sqrt(B / B0)`` (You et al. 2020: LAMB's rate at every batch size).

    Rounded to four significant digits (stable store keys)."""
    check_positive("learning rate", lr)
    check_batch(batch)
    check_batch(base_batch)
    if _check_rule(rule) == 1.0:
        return round_rate(lr * batch / base_batch)
    return round_rate(lr * math.sqrt(batch / base_batch))


def batch_config(
    base: RunConfig,
    arm: Arm,
    batch: int,
    budget: Budget,
    *,
    warmup: Budget,
    power: float,
    profile: str = "full",
    evals: int = 8,
    device: str = "cpu",
) -> RunConfig:
    """``base`` trained by ``arm`` at batch ``batch`` on ``budget``: ``budget.steps(B)`` steps,
    linear warmup over ``warmup.steps(B)`` of them, then ``(1 - p)^power`` to zero
    (``schedules``: ``polynomial``), ``evals`` evaluations; ``profile="smoke"``:
    ``comparisons.SMOKE_STEPS`` steps, a tenth of them warmup.  The rate is the arm's first
    grid point, a placeholder the tuner replaces."""
    check_batch(batch)
    if profile == "smoke":
        steps = comparisons.SMOKE_STEPS
        warmup_steps = max(1, steps // 10)
    else:
        steps, warmup_steps = budget.steps(batch), warmup.steps(batch)
    return base.replace(
        optimizer=arm.optimizer,
        optimizer_options=dict(arm.options),
        lr=arm.grid[0],
        batch_size=batch,
        steps=steps,
        epochs=None,
        schedule="polynomial",
        schedule_options={"power": power, "warmup": warmup_steps},
        eval_every=max(1, steps // evals),
        device=device,
    )


def group_name(arm: str, batch: int) -> str:
    """The group label of arm ``arm``'s tuned comparison at batch ``batch``."""
    return f"{arm} · B={check_batch(batch)}"


def batch_of(group: str) -> int:
    """The batch size a group label names (``"lamb · B=256"`` or ``"B=256"``)."""
    return int(group.split("B=")[-1])


def tuned_comparison(
    bed: Testbed,
    arm: str,
    spec: Arm,
    base_batch: int,
    *,
    profile: str = "full",
    final_seeds: Sequence[int] | None = None,
    design: Mapping[str, Any] | None = None,
    exponent: float = 0.5,
) -> comparisons.Comparison:
    """One tuned arm of a batch-scaling plan: ``bed`` (its config at the batch size, from
    :func:`batch_config`) with the single arm ``arm``, on its own coarse grid moved to the
    batch (:func:`grid_at`) under ``comparisons.grid_protocol`` (``profile="smoke"`` shrinks
    it; any other profile is the full protocol, with ``final_seeds`` if given); group
    ``"<arm> · B=<batch>"``; ``design`` (what the arm changes, as numbers) becomes its design
    row beside ``arm`` and ``batch_size``."""
    batch = bed.config.batch_size
    smoke = profile == "smoke"
    proto = comparisons.grid_protocol(
        bed.config.dataset,
        grid_at(spec, batch, base_batch, exponent),
        "smoke" if smoke else "full",
        final_seeds=None if smoke else final_seeds,
    )
    row = pd.DataFrame([{"arm": arm, "batch_size": batch, **(design or {})}])
    return comparisons.Comparison(group_name(arm, batch), bed, {arm: bed.config}, row, proto)


# --------------------------------------------------------------------------------------------
# results by batch size, scaled arms, monitored reruns


def _concat(parts: Sequence[TuningResult]) -> TuningResult:
    """Tuning results of several arms of one batch size as one result."""

    def cat(name: str) -> pd.DataFrame:
        frames = [getattr(p, name) for p in parts if len(getattr(p, name))]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return TuningResult(
        parts[0].metric, cat("sensitivity"), cat("final"), cat("summary"), cat("curves")
    )


def by_batch(
    results: Mapping[tuple[str, str], TuningResult], plan: Sequence[comparisons.Comparison]
) -> dict[tuple[str, str], TuningResult]:
    """``tune_all``'s per-arm results as one result per (``"B=<batch>"``, testbed) holding every
    arm -- only batch sizes whose every arm is tuned (the others are still pending)."""
    groups: dict[tuple[str, str], list[comparisons.Comparison]] = {}
    for c in plan:
        groups.setdefault((f"B={c.bed.config.batch_size}", c.bed.name), []).append(c)
    return {
        key: _concat([results[c.key] for c in members])
        for key, members in groups.items()
        if all(c.key in results for c in members)
    }


def _summary(result: TuningResult, arm: str) -> pd.Series:
    return result.summary.set_index("arm").loc[arm]


def _base_of(base_batch: int | Mapping[str, int], testbed: str) -> int:
    """``B0`` of ``testbed``: one number for every testbed, or a number per testbed."""
    if isinstance(base_batch, Mapping):
        return int(base_batch[check_choice("testbed", testbed, base_batch)])
    return int(base_batch)


def scaled_configs(
    merged: Mapping[tuple[str, str], TuningResult],
    plan: Sequence[comparisons.Comparison],
    source: str,
    rule: str,
    base_batch: int | Mapping[str, int],
) -> dict[tuple[str, str], list[RunConfig]]:
    """The final runs of ``source`` scaled from ``B0`` by ``rule``: ``source``'s config at each
    batch above ``B0`` at :func:`scaled_rate` of the rate it chose at ``B0``, on its final seeds
    there.  Keyed like ``merged``; only where both batch sizes are tuned."""
    _check_rule(rule)
    configs = {}
    for c in plan:
        batch, net = c.bed.config.batch_size, c.bed.name
        base = _base_of(base_batch, net)
        key, base_key = (f"B={batch}", net), (f"B={base}", net)
        if source not in c.arms or batch == base:
            continue
        if key not in merged or base_key not in merged:
            continue
        best = float(_summary(merged[base_key], source)["best_lr"])
        lr = scaled_rate(best, batch, base, rule)
        final = merged[key].final
        seeds = sorted(final.loc[final["arm"] == source, "seed"].astype(int).unique())
        configs[key] = [c.arms[source].replace(lr=lr, seed=s) for s in seeds]
    return configs


def _result_rows(
    result: TuningResult,
    base: pd.Series,
    arm: str,
    lr: float,
    records: Sequence[Mapping[str, Any]],
    score_evals: int,
) -> TuningResult:
    """``result`` with ``arm``'s untuned final runs added (summary row, finals, curves)."""
    column = f"val_{result.metric}"
    test_col = f"test_{result.metric}"
    final = records_frame(records).assign(
        arm=arm, score=[run_score(r, column, score_evals) for r in records]
    )
    ok = final[final["status"] == "ok"]
    mean, low, high = stats.mean_ci(ok[test_col].tolist()) if len(ok) else (math.nan,) * 3
    row = {
        "arm": arm,
        "best_lr": lr,
        "grid_low": math.nan,
        "grid_high": math.nan,
        "grid_points": 0,
        "tune_seeds": int(base["tune_seeds"]),
        "spacing": float(base["spacing"]),
        "interior": bool(base["interior"]),  # the rule's rate is as tuned as B0's
        "seeds": len(final),
        "failures": int((final["status"] != "ok").sum()),
        "grid_runs": 0,
        f"{test_col}_mean": mean,
        f"{test_col}_ci_low": low,
        f"{test_col}_ci_high": high,
        f"{column}_best": math.nan,
    }
    curves = pd.DataFrame(
        [
            {"arm": arm, "seed": r["config"]["seed"], "step": step, column: value}
            for r in records
            for step, value in zip(r["curves"]["step"], r["curves"][column], strict=True)
        ]
    )
    return TuningResult(
        result.metric,
        result.sensitivity,
        pd.concat([result.final, final], ignore_index=True),
        pd.concat([result.summary, pd.DataFrame([row])], ignore_index=True),
        pd.concat([result.curves, curves], ignore_index=True),
    )


def add_scaled(
    merged: Mapping[tuple[str, str], TuningResult],
    plan: Sequence[comparisons.Comparison],
    study: str,
    scaled: Mapping[str, str],
    rule: str,
    base_batch: int | Mapping[str, int],
    *,
    store: Store | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> dict[tuple[str, str], TuningResult]:
    """``merged`` with a scaled arm for every entry ``name -> source`` of ``scaled`` at every
    batch above ``B0``: ``source``'s rate at ``B0`` carried by ``rule`` (:func:`scaled_rate`),
    rerun on ``source``'s final seeds (one sweep for all of them).  A scaled arm counts as tuned
    where ``source`` is at ``B0``.  Unchanged while its runs are pending."""
    by_arm = {
        name: scaled_configs(merged, plan, source, rule, base_batch)
        for name, source in scaled.items()
    }
    flat = [c for configs in by_arm.values() for group in configs.values() for c in group]
    records = run_stored(flat, study, store=store, jobs=jobs, progress=progress) if flat else []
    if records is None:
        return dict(merged)
    found = {r["key"]: r for r in records}
    score_evals = plan[0].protocol.score_evals if plan else 1
    out = dict(merged)
    for name, configs in by_arm.items():
        for key, group in configs.items():
            base_key = (f"B={_base_of(base_batch, key[1])}", key[1])
            base = _summary(merged[base_key], scaled[name])
            out[key] = _result_rows(
                out[key], base, name, group[0].lr, [found[c.key()] for c in group], score_evals
            )
    return out


def _largest(sizes: Sequence[int]) -> list[int]:
    return [max(sizes)]


def monitored_configs(
    merged: Mapping[tuple[str, str], TuningResult],
    plan: Sequence[comparisons.Comparison],
    seeds: int,
    *,
    arms: Collection[str] | None = None,
    pick: Callable[[Sequence[int]], Iterable[int]] = _largest,
    sources: Mapping[str, str] | None = None,
    points: int = 40,
) -> list[tuple[str, RunConfig]]:
    """(arm, config) of final runs rerun with the per-tensor monitor on, about ``points`` times
    (the monitor only reads, so each is its final run again): at the batch sizes ``pick``
    chooses among each testbed's (default: the largest), the first ``seeds`` final seeds of
    every arm (or of ``arms``) at its chosen rate.  ``sources`` names the tuned arm whose config
    a scaled arm reuses (``{"sgd linear-scaled": "sgd"}``)."""
    sources = dict(sources or {})
    out = []
    for net in dict.fromkeys(c.bed.name for c in plan):
        mine = [c for c in plan if c.bed.name == net]
        sizes = sorted({c.bed.config.batch_size for c in mine})
        for batch in pick(sizes):
            result = merged.get((f"B={batch}", net))
            if result is None:
                continue
            configs = {
                arm: config
                for c in mine
                if c.bed.config.batch_size == batch
                for arm, config in c.arms.items()
            }
            final = result.final
            for arm, row in result.summary.set_index("arm").iterrows():
                if arms is not None and arm not in arms:
                    continue
                config = configs[sources.get(arm, arm)]
                chosen = sorted(final.loc[final["arm"] == arm, "seed"].astype(int).unique())
                every = max(1, config.steps // points)
                out += [
                    (arm, config.replace(lr=float(row["best_lr"]), seed=s, monitor_every=every))
                    for s in chosen[:seeds]
                ]
    return out


TRUST_COLUMNS = "testbed batch_size arm seed step name label ndim quantity value".split()


def trust_frame(
    pairs: Sequence[tuple[str, RunConfig]],
    records: Sequence[Mapping[str, Any]] | None,
    describe: Callable[[Mapping[str, Any]], tuple[str, pd.DataFrame]],
) -> pd.DataFrame:
    """The monitored reruns of :func:`monitored_configs` (``records`` in the same order; ``None``
    while they are pending gives an empty frame) as a tidy frame: testbed, batch size, arm,
    seed, step, name, label, ndim, quantity (``probes.QUANTITIES``: ``lr`` is the tensor's
    effective rate, the group's rate times its trust ratio), value.  ``describe`` maps a
    record's config to its testbed name and a table of its tensors (name, label, ndim)."""
    frames = []
    for (arm, config), record in zip(pairs, records or [], strict=bool(records)):
        net, tensors = describe(record["config"])
        frame = monitor_frame(record["layers"]).merge(
            tensors[["name", "label", "ndim"]], on="name", how="left"
        )
        frames.append(
            frame.assign(testbed=net, batch_size=config.batch_size, arm=arm, seed=config.seed)
        )
    if not frames:
        return pd.DataFrame(columns=TRUST_COLUMNS)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# tables and the families of comparisons


def _per_seed(result: TuningResult, arm: str) -> pd.Series:
    rows = result.final[(result.final["arm"] == arm) & (result.final["status"] == "ok")]
    return rows.set_index("seed")[f"test_{result.metric}"].astype(float)


def _bounds(metric: str) -> tuple[float, float]:
    """The range of a test metric: accuracy in [0, 1], a loss in [0, inf)."""
    return (0.0, 1.0) if metric == "acc" else (0.0, math.inf)


SCORE_COLUMNS = (
    "testbed batch_size arm metric best_lr tuned seeds failures mean ci_low ci_high".split()
)


def score_table(merged: Mapping[tuple[str, str], TuningResult]) -> pd.DataFrame:
    """Per testbed, batch size and arm: the test metric's name (``test_acc``, ``test_loss``),
    the rate, whether it is tuned (interior), the final seeds that finished and failed, and the
    metric's mean with its 95% t interval over the final seeds (kept inside the metric's
    range)."""
    rows = []
    for (group, net), result in merged.items():
        summary = result.summary.set_index("arm")
        for arm in summary.index:
            values = _per_seed(result, arm)
            mean, low, high = (
                stats.mean_ci(values.tolist(), bounds=_bounds(result.metric))
                if len(values)
                else (math.nan,) * 3
            )
            rows.append(
                {
                    "testbed": net,
                    "batch_size": batch_of(group),
                    "arm": arm,
                    "metric": f"test_{result.metric}",
                    "best_lr": float(summary.loc[arm, "best_lr"]),
                    "tuned": bool(summary.loc[arm, "interior"]),
                    "seeds": len(values),
                    "failures": int(summary.loc[arm, "failures"]),
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    table = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    return table.sort_values(["testbed", "batch_size"], kind="stable").reset_index(drop=True)


def _family(frame: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """``stats.compare_family`` over the tuned rows of ``frame`` (one Holm family); rows not
    tuned are computed alike but kept out of the family and made *inconclusive*."""
    parts = [stats.compare_family(frame[frame["tuned"]].reset_index(drop=True), alpha=alpha)]
    if not frame["tuned"].all():
        untuned = frame[~frame["tuned"]].reset_index(drop=True)
        parts.append(stats.compare_family(untuned, alpha=alpha).assign(outcome="inconclusive"))
    return pd.concat([p for p in parts if len(p)])


def _dead(result: TuningResult) -> set[str]:
    """Arms of ``result`` none of whose final runs finished."""
    ok = result.final[result.final["status"] == "ok"]
    return {a for a in result.summary["arm"] if not (ok["arm"] == a).any()}


def _failed_side(arm_dead: bool, base_dead: bool) -> str:
    return "both" if arm_dead and base_dead else ("arm" if arm_dead else "baseline")


_BASELINE = "\x00baseline"  # an arm name no study uses: the baseline of each pair below


def _two_arms(result: TuningResult, arm: str, baseline: str) -> TuningResult:
    """``result`` cut to ``arm`` and ``baseline``, the baseline renamed :data:`_BASELINE`."""

    def cut(frame: pd.DataFrame) -> pd.DataFrame:
        if not len(frame):
            return frame
        frame = frame[frame["arm"].isin([arm, baseline])].copy()
        frame["arm"] = frame["arm"].replace({baseline: _BASELINE})
        return frame

    return TuningResult(
        result.metric,
        cut(result.sensitivity),
        cut(result.final),
        cut(result.summary),
        cut(result.curves),
    )


Batches = Collection[int] | Mapping[str, Collection[int]] | None


def _in_batches(batches: Batches, testbed: str, batch: int) -> bool:
    """Whether ``batch`` is among ``batches``: every batch (``None``), a set for every testbed,
    or a set per testbed (a testbed it does not name has none)."""
    if batches is None:
        return True
    if isinstance(batches, Mapping):
        return batch in batches.get(testbed, ())
    return batch in batches


def _pairs_in(
    summary_arms: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The ``(arm, baseline)`` pairs both of whose arms a result holds, in the result's order."""
    present = set(summary_arms)
    return [
        (arm, base) for arm in summary_arms for a, base in pairs if a == arm and base in present
    ]


def compare_pairs(
    merged: Mapping[tuple[str, str], TuningResult],
    pairs: Sequence[tuple[str, str]],
    *,
    batches: Batches = None,
    sesoi_relative_error: float = 0.10,
    sesoi_nats: float = 0.02,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Each ``(arm, baseline)`` of ``pairs`` at the same batch size (every batch, or those in
    ``batches``: one set for every testbed or a set per testbed), paired by final seed, as
    **one** Holm family (``comparisons.compare``: effect = arm minus baseline with its
    interval, MDE, the smallest effect of interest -- a share of the baseline's test error for
    accuracy, ``sesoi_nats`` for a loss -- the outcome read with the metric's direction, and
    the time to the baseline's final validation score).

    A pair whose arm or baseline has no finished final run is a row outside the family with
    outcome *failed* and ``failed`` naming the side (``arm``, ``baseline`` or ``both``).  Rows
    are sorted by testbed and batch size; group labels are ``"B=<batch>"`` and a column
    ``baseline`` names each row's baseline."""
    jobs: dict[tuple[str, str], TuningResult] = {}
    labels: dict[str, tuple[str, str]] = {}
    failed = []
    for (group, net), result in merged.items():
        if not _in_batches(batches, net, batch_of(group)):
            continue
        dead = _dead(result)
        summary = result.summary.set_index("arm")
        for arm, base in _pairs_in(list(summary.index), pairs):
            if arm in dead or base in dead:
                failed.append(
                    {
                        "group": group,
                        "testbed": net,
                        "arm": arm,
                        "baseline": base,
                        "metric": f"test_{result.metric}",
                        "best_lr": float(summary.loc[arm, "best_lr"]),
                        "tuned": bool(summary.loc[arm, "interior"]),
                        "n": 0,
                        "outcome": FAILED,
                        "failed": _failed_side(arm in dead, base in dead),
                    }
                )
                continue
            label = f"{group} · {arm} vs {base}"
            labels[label] = (group, base)
            jobs[(label, net)] = _two_arms(result, arm, base)
    table = comparisons.compare(
        jobs,
        baseline=_BASELINE,
        sesoi_relative_error=sesoi_relative_error,
        sesoi_nats=sesoi_nats,
        alpha=alpha,
    )
    if len(table):
        table = table.assign(
            baseline=table["group"].map(lambda g: labels[g][1]),
            group=table["group"].map(lambda g: labels[g][0]),
        )
    else:
        table = table.assign(baseline=pd.Series(dtype=object))
    if failed:
        table = pd.concat([table, pd.DataFrame(failed)], ignore_index=True)
    order = table["group"].map(batch_of) if len(table) else table["group"]
    return (
        table.assign(_b=order)
        .sort_values(["testbed", "_b"], kind="stable")
        .drop(columns="_b")
        .reset_index(drop=True)
    )


DROP_COLUMNS = (
    "testbed arm baseline batch_size change_arm change_baseline tuned effect ci_low ci_high "
    "ci_level p p_holm p_tost p_tost_holm sd mde sesoi n outcome failed"
).split()


def drop_contrasts(
    merged: Mapping[tuple[str, str], TuningResult],
    pairs: Sequence[tuple[str, str]],
    base_batch: int | Mapping[str, int],
    *,
    at_base: Mapping[str, str] | None = None,
    batches: Batches = None,
    sesoi_relative_error: float = 0.10,
    sesoi_nats: float = 0.02,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Does an arm lose less than its baseline when the batch grows from ``B0`` to ``B``?  Per
    ``(arm, baseline)`` of ``pairs`` and final seed ``s``, with ``a`` the arm's and ``b`` the
    baseline's test metric::

        c(B, s) = [a(B, s) - a(B0, s)] - [b(B, s) - b(B0, s)]

    (``at_base`` names the arm that stands for a scaled arm at ``B0``, where it *is* its source:
    ``{"sgd linear-scaled": "sgd"}``).  One row per testbed, pair and batch above ``B0`` (or in
    ``batches``) with the mean changes (``change_arm``, ``change_baseline``), the contrast's
    mean (``effect``) and the four outcomes of ``stats.compare_family`` over all tuned rows as
    one Holm family, read with the metric's direction (accuracy: > 0 is *better*, the arm loses
    less; loss: < 0 is *better*).  The smallest effect of interest is ``sesoi_relative_error`` of
    the baseline's test error at ``B0`` for accuracy, ``sesoi_nats`` for a loss.  A row where
    any of the four rates is not tuned (not interior) stays out of the family and is
    *inconclusive*.  Seeds are those with all four runs finished; a row with none stays out of
    the family as *failed* (``failed`` names the side whose runs all diverged).  Pairs whose
    arm has no result at ``B0`` are skipped."""
    at_base = dict(at_base or {})
    rows, failed = [], []
    for (group, net), result in merged.items():
        batch = batch_of(group)
        base = _base_of(base_batch, net)
        base_result = merged.get((f"B={base}", net))
        if batch == base or base_result is None:
            continue
        if not _in_batches(batches, net, batch):
            continue
        small_arms = set(base_result.summary["arm"])
        larger = result.metric == "acc"
        for arm, baseline in _pairs_in(list(result.summary["arm"]), pairs):
            small_arm, small_base = at_base.get(arm, arm), at_base.get(baseline, baseline)
            if small_arm not in small_arms or small_base not in small_arms:
                continue
            a_big, a_small = _per_seed(result, arm), _per_seed(base_result, small_arm)
            b_big, b_small = _per_seed(result, baseline), _per_seed(base_result, small_base)
            seeds = sorted(
                set(a_big.index) & set(a_small.index) & set(b_big.index) & set(b_small.index)
            )
            tuned = all(
                bool(_summary(r, name)["interior"])
                for r, name in (
                    (result, arm),
                    (base_result, small_arm),
                    (result, baseline),
                    (base_result, small_base),
                )
            )
            row = {
                "testbed": net,
                "arm": arm,
                "baseline": baseline,
                "batch_size": batch,
                "tuned": tuned,
            }
            if not seeds:
                arm_dead = not (len(a_big) and len(a_small))
                base_dead = not (len(b_big) and len(b_small))
                side = _failed_side(arm_dead, base_dead) if arm_dead or base_dead else "both"
                failed.append({**row, "n": 0, "outcome": FAILED, "failed": side})
                continue
            change_a = [a_big[s] - a_small[s] for s in seeds]
            change_b = [b_big[s] - b_small[s] for s in seeds]
            sesoi = (
                stats.sesoi_from_error(1.0 - b_small.mean(), sesoi_relative_error)
                if larger
                else sesoi_nats
            )
            rows.append(
                {
                    **row,
                    "change_arm": float(np.mean(change_a)),
                    "change_baseline": float(np.mean(change_b)),
                    "a": change_a,
                    "b": change_b,
                    "sesoi": sesoi,
                    "larger_is_better": larger,
                    "bounds": (-1.0, 1.0) if larger else None,  # each change of an accuracy
                }
            )
    parts = [_family(pd.DataFrame(rows), alpha)] if rows else []
    parts += [pd.DataFrame(failed)] if failed else []
    if not parts:
        return pd.DataFrame(columns=DROP_COLUMNS)
    table = pd.concat(parts, ignore_index=True).reindex(columns=DROP_COLUMNS)
    return table.sort_values(["testbed", "batch_size"], kind="stable").reset_index(drop=True)


def verdict_of(outcomes: Sequence[str]) -> str:
    """A claim judged by its comparisons' outcomes (where *better* is what the claim says):
    ``"reproduced"`` when every one is *better*; ``"partly reproduced"`` when some are;
    ``"not reproduced"`` when every one is *equivalent*, *worse* or *failed*; ``"undecided"``
    otherwise (some *inconclusive*, none *better*), and for no outcome at all."""
    outcomes = list(outcomes)
    if outcomes and all(o == "better" for o in outcomes):
        return "reproduced"
    if "better" in outcomes:
        return "partly reproduced"
    if outcomes and all(o in ("equivalent", "worse", FAILED) for o in outcomes):
        return "not reproduced"
    return "undecided"


# --------------------------------------------------------------------------------------------
# tables as a reader sees them


def effect_text(row: Mapping[str, Any] | pd.Series) -> str:
    """The effect with its interval, ``n/a`` where there is none (a failed row)."""
    return stats.format_ci(row["effect"], row["ci_low"], row["ci_high"])


def _num(values: pd.Series, spec: str) -> pd.Series:
    """``values`` formatted with ``spec``, ``-`` where a value is missing (a failed row)."""
    return values.map(lambda v: "-" if pd.isna(v) else format(v, spec))


def _outcomes(frame: pd.DataFrame) -> list[str]:
    return [
        o if t or o == FAILED else f"{o} (not tuned)"
        for o, t in zip(frame["outcome"], frame["tuned"], strict=True)
    ]


def _metric_word(frame: pd.DataFrame) -> str:
    """``acc`` or ``loss``: the metric of a table's rows (``metric`` column, else accuracy)."""
    if "metric" in frame and frame["metric"].notna().any():
        return str(frame["metric"].dropna().iloc[0]).removeprefix("test_")
    return "acc"


def drop_verdict_table(drops: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """:func:`drop_contrasts` as a reader sees it: per testbed, arm and batch size the mean
    change of the arm's and of the baseline's test metric from ``B0``, the contrast with its
    interval at the level that matches its outcome, the minimum detectable effect beside the
    smallest effect of interest, and the outcome (*not tuned* where a rate is not interior).
    ``baseline``: the name of the one baseline of every row (its change column is
    ``"<baseline> change"``); ``None``: a ``vs`` column names each row's."""
    name = baseline or "baseline"
    columns: dict[str, Any] = {"testbed": drops["testbed"], "arm": drops["arm"]}
    if baseline is None:
        columns["vs"] = drops["baseline"]
    columns |= {
        "B": drops["batch_size"],
        "arm change": _num(drops["change_arm"], "+.3f"),
        f"{name} change": _num(drops["change_baseline"], "+.3f"),
        "contrast [CI]": [effect_text(r) for _, r in drops.iterrows()],
        "CI level": _num(drops["ci_level"], ".3f"),
        "MDE": _num(drops["mde"], ".3f"),
        "SESOI": _num(drops["sesoi"], ".3f"),
        "seeds": drops["n"],
        "outcome": _outcomes(drops),
    }
    return pd.DataFrame(columns)


def level_verdict_table(levels: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """:func:`compare_pairs` as a reader sees it: per testbed and batch size, each arm's chosen
    rate and test metric against its baseline's on the same seeds, the effect with its interval,
    MDE, SESOI, outcome, and the steps the arm needs to reach the baseline's final validation
    score on the same seed (geometric-mean ratio; < 1: faster; ``n never``: seeds that never
    got there).  ``baseline``: the name of the one baseline of every row (columns
    ``"<baseline> acc"``, ``"steps to <baseline>'s score"``); ``None``: a ``vs`` column."""
    metric = _metric_word(levels)
    name = baseline or "baseline"

    def ratio(row: pd.Series) -> str:
        never = row["time_never"]
        note = f", {int(never)} never" if pd.notna(never) and never else ""
        low, high = row["time_ratio_low"], row["time_ratio_high"]
        return stats.format_ci(row["time_ratio"], low, high, 2) + note

    columns: dict[str, Any] = {
        "testbed": levels["testbed"],
        "B": levels["group"].map(batch_of),
        "arm": levels["arm"],
    }
    if baseline is None:
        columns["vs"] = levels["baseline"]
    columns |= {
        "best lr": _num(levels["best_lr"], ".3g"),
        f"{name} {metric}": _num(levels["baseline_mean"], ".3f"),
        f"arm {metric}": _num(levels["arm_mean"], ".3f"),
        "effect [CI]": [effect_text(r) for _, r in levels.iterrows()],
        "CI level": _num(levels["ci_level"], ".3f"),
        "MDE": _num(levels["mde"], ".3f"),
        "SESOI": _num(levels["sesoi"], ".3f"),
        "outcome": _outcomes(levels),
        f"steps to {name}'s score": [ratio(r) for _, r in levels.iterrows()],
    }
    return pd.DataFrame(columns)


# --------------------------------------------------------------------------------------------
# figures

_YLABEL = {"test_acc": "test accuracy", "test_loss": "test loss (nats)"}


def plot_metric_vs_batch(
    table: pd.DataFrame, at_base: Mapping[str, str] | None = None
) -> plt.Figure:
    """The test metric against batch size per arm, mean with its 95% interval over the final
    seeds (:func:`score_table`), one panel per testbed; a hollow marker is an arm whose rate is
    not tuned, a cross at the edge an arm whose every final run diverged.  ``at_base``
    (scaled arm -> source) starts a scaled arm's line at its source's point at ``B0``."""
    from .plots import panel_grid

    table = table.copy()
    for scaled, source in (at_base or {}).items():
        for _, rows in table.groupby("testbed", sort=False):
            if not (rows["arm"] == scaled).any():
                continue
            first = rows[rows["arm"] == source].sort_values("batch_size").head(1)
            table = pd.concat([table, first.assign(arm=scaled)], ignore_index=True)
    nets = list(dict.fromkeys(table["testbed"]))
    fig, axes = panel_grid(max(1, len(nets)), ncols=3, size=4.5)
    arms = list(dict.fromkeys(table["arm"]))
    palette = dict(zip(arms, sns.color_palette("tab10", len(arms)), strict=True))
    for ax, net in zip(axes, nets, strict=False):
        rows = table[table["testbed"] == net]
        metric = rows["metric"].iloc[0] if "metric" in rows else "test_acc"
        bad_edge = "ci_low" if metric == "test_acc" else "ci_high"
        edge = rows[bad_edge].min() if metric == "test_acc" else rows[bad_edge].max()
        edge = edge if pd.notna(edge) else (0.0 if metric == "test_acc" else 1.0)
        for i, arm in enumerate(arms):
            mine = rows[rows["arm"] == arm].sort_values("batch_size")
            if not len(mine):
                continue
            x = mine["batch_size"] * 1.04 ** (i - len(arms) / 2)  # spread the arms apart
            low = (mine["mean"] - mine["ci_low"]).fillna(0)
            high = (mine["ci_high"] - mine["mean"]).fillna(0)
            ax.errorbar(
                x, mine["mean"], yerr=[low, high], color=palette[arm], lw=1, capsize=2, label=arm
            )
            ax.scatter(
                x,
                mine["mean"],
                color=[palette[arm] if t else "white" for t in mine["tuned"]],
                edgecolor=palette[arm],
                zorder=3,
                s=18,
            )
            dead = mine[mine["seeds"] == 0]  # every final run diverged: a cross at the edge
            if len(dead):
                ax.scatter(x[dead.index], np.full(len(dead), edge), marker="x", color=palette[arm])
        sizes = sorted(rows["batch_size"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(b) for b in sizes])
        label = _YLABEL.get(metric, metric)
        ax.set(xlabel="batch size", ylabel=f"{label} (95% CI)", title=net)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_rates(
    frame: pd.DataFrame, quantity: str = "lr", *, ylabel: str | None = None, ncols: int = 3
) -> plt.Figure:
    """A monitored quantity (``lr``: each tensor's effective rate; ``trust_ratio``;
    ``update_ratio``: ``||dw|| / ||w||``) against the step, one panel per testbed, arm (and batch
    size, when the frame holds several), one line per tensor (median over seeds, log axis),
    coloured in the model's order (dark: the input end); 1-D tensors dashed.  A legend names
    the tensors where there are at most 16."""
    from .plots import panel_grid, tensor_lines

    rows = frame[frame["quantity"] == quantity]
    rows = rows[np.isfinite(rows["value"].astype(float)) & (rows["value"] > 0)]
    several = "batch_size" in rows and rows["batch_size"].nunique() > 1
    keys = ["testbed", "batch_size", "arm"] if several else ["testbed", "arm"]
    panels = list(dict.fromkeys(zip(*(rows[k] for k in keys), strict=True)))
    fig, axes = panel_grid(max(1, len(panels)), ncols=ncols, size=3.8)
    for ax, panel in zip(axes, panels, strict=False):
        mine = rows[np.logical_and.reduce([rows[k] == v for k, v in zip(keys, panel, strict=True)])]
        tensor_lines(ax, mine, "step", "value")
        ax.set(yscale="log", xlabel="step", ylabel=ylabel or quantity)
        net, arm = panel[0], panel[-1]
        title = f"{arm} ({net}, B={panel[1]})" if several else f"{arm} ({net})"
        ax.set_title(title, fontsize=9)
        if mine["label"].nunique() <= 16:
            ax.legend(fontsize=6, ncols=2)
    fig.tight_layout()
    return fig
