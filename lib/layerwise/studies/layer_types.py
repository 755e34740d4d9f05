"""Study 04 (layer types): do dense, convolutional, recurrent and self-attention layers want
different rates, inside one network and in networks of one type?

The committed notebook and records were made under tuning protocol v1, whose design this
module keeps (the functions below :data:`HYBRID`) until the study is rerun under protocol v2;
:func:`plan` is the v2 design the rerun uses.

A comparison takes one testbed, keeps everything but the per-layer rule fixed, and tunes every
rule's base rate separately (``tuning.tune``): the same log grid of :data:`GRID_POINTS` rates
half a decade apart, extended while the best rate sits on an edge, chosen on validation with
seed 0, then rerun on fresh seeds (five on MNIST-1D, three on Fashion-MNIST).

Budgets are *short*: a quarter or less of the baseline budgets of ``01_baselines`` (MNIST-1D
1,000 steps, Fashion-MNIST MLP 2 epochs, CNN 1 epoch).  Dozens of arms times grids times seeds
must fit a 2-core machine, and a short budget is where a rule that speeds up slow layers would
show most.  Every study that uses them says so next to its numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

import pandas as pd

from .._validate import check_choice, check_positive
from ..harness import comparisons
from ..harness.config import RunConfig
from ..harness.stats import format_ci, paired_difference_ci
from ..harness.store import Store
from ..harness.testbeds import TESTBEDS, V1_TESTBEDS, Testbed, final_seeds, testbed
from ..harness.tuning import TuningResult, log_grid, tune
from ..layers import KINDS

__all__ = [
    "HYBRID",
    "HYBRID_V2",
    "plan",
    "combine",
    "effect_table",
    "kind_arms",
    "kind_verdicts",
    "short_testbed",
    "tune_comparison",
    "with_optimizer",
]

GRID_POINTS = 3
# Each optimizer's starting grid (ends of a decade); it is extended while the best rate is an edge.
OPTIMIZERS: dict[str, dict] = {
    "adamw": {"grid": (1e-3, 1e-2), "options": {"weight_decay": 0.0}},
    "sgd": {"grid": (1e-2, 1e-1), "options": {"momentum": 0.9, "weight_decay": 0.0}},
}
MAX_EXTENSIONS = 4  # a discriminative arm scales most layers down, so its best base rate sits high
SHORT_BUDGETS: dict[str, dict] = {
    "mnist1d": {"steps": 1000, "epochs": None, "eval_every": 250},
    "fashion_mnist/mlp": {"steps": None, "epochs": 2},
    "fashion_mnist/cnn": {"steps": None, "epochs": 1},
}

HYBRID = Testbed(
    "mnist1d/hybrid",
    V1_TESTBEDS["mnist1d/cnn"].config.replace(model="hybrid", steps=1000, eval_every=250),
    "acc",
    None,
    None,
    "no published reference (conv -> GRU -> self-attention -> dense, models.Hybrid)",
)


def short_testbed(name: str, profile: str = "full") -> Testbed:
    """Testbed ``name`` (or ``"mnist1d/hybrid"``) at the comparisons' short budget."""
    check_choice("comparison testbed", name, [*V1_TESTBEDS, HYBRID.name])
    bed = HYBRID if name == HYBRID.name else testbed(name, protocol=1)
    budget = SHORT_BUDGETS.get(name) or SHORT_BUDGETS[bed.config.dataset]
    config = bed.config.replace(**budget)
    if profile == "smoke":
        config = config.replace(steps=20, epochs=None, eval_every=10)
    return dataclasses.replace(bed, config=config)


def with_optimizer(config: RunConfig, optimizer: str) -> RunConfig:
    """``config`` trained by ``"adamw"`` or ``"sgd"`` (momentum 0.9), no weight decay."""
    check_choice("comparison optimizer", optimizer, OPTIMIZERS)
    return config.replace(optimizer=optimizer, optimizer_options=OPTIMIZERS[optimizer]["options"])


def kind_arms(
    config: RunConfig, kinds: Sequence[str], multipliers: Sequence[float]
) -> dict[str, RunConfig]:
    """Uniform plus one arm per (kind, multiplier): that layer type's rate times the multiplier,
    every other parameter at the base rate (``rules.ByKind``).  Names read ``"conv x1/4"``."""
    arms = {"uniform": config.replace(rule={"name": "uniform"})}
    for kind in kinds:
        check_choice("layer kind", kind, KINDS)
        for m in multipliers:
            check_positive("type multiplier", m)
            label = f"x{m:g}" if m >= 1 else f"x1/{1 / m:g}"
            arms[f"{kind} {label}"] = config.replace(
                rule={"name": "by_kind", "multipliers": {kind: float(m)}}
            )
    return arms


def starting_grid(optimizer: str, profile: str = "full") -> list[float]:
    """The starting grid: :data:`GRID_POINTS` rates spanning the optimizer's decade, half a
    decade apart (three points a decade apart in smoke)."""
    check_choice("comparison optimizer", optimizer, OPTIMIZERS)
    low, high = OPTIMIZERS[optimizer]["grid"]
    if profile == "smoke":
        return log_grid(low / math.sqrt(10), high * math.sqrt(10), 3)
    return log_grid(low, high, GRID_POINTS)


def tune_comparison(
    arms: Mapping[str, RunConfig],
    bed: Testbed,
    optimizer: str,
    study: str,
    profile: str = "full",
    *,
    store: Store | None = None,
    jobs: int | None = None,
    executor: Executor | None = None,
) -> TuningResult:
    """Tune every arm of one testbed and optimizer with the comparisons' protocol."""
    return tune(
        arms,
        starting_grid(optimizer, profile),
        study,
        metric=bed.metric,
        final_seeds=final_seeds(bed.config.dataset, profile),
        max_extensions=0 if profile == "smoke" else MAX_EXTENSIONS,
        store=store,
        jobs=jobs,
        executor=executor,
    )


# --------------------------------------------------------------------------------------------
# effect sizes against the uniform arm


def _paired(final: pd.DataFrame, arm: str, baseline: str, column: str) -> tuple[list, list]:
    ok = final[final["status"] == "ok"]
    a = ok[ok["arm"] == arm].set_index("seed")[column]
    b = ok[ok["arm"] == baseline].set_index("seed")[column]
    seeds = sorted(set(a.index) & set(b.index))
    return [float(a[s]) for s in seeds], [float(b[s]) for s in seeds]


def effect(a: Sequence[float], b: Sequence[float], tuned: bool) -> str:
    """``"better"`` / ``"worse"`` when the 95% interval of the paired difference ``a - b``
    excludes 0, ``"no detectable difference"`` when it contains 0, ``"not tuned"`` when either
    arm's best rate sat on the edge of its grid, ``"too few seeds"`` below two pairs."""
    if not tuned:
        return "not tuned"
    if len(a) < 2:
        return "too few seeds"
    _, low, high = paired_difference_ci(a, b)
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no detectable difference"


def effect_table(
    results: Mapping[tuple[str, str], TuningResult], baseline: str = "uniform"
) -> pd.DataFrame:
    """One row per (optimizer or group, testbed, arm) of ``results``, keyed
    ``(group, testbed)``: chosen rate, test accuracy (mean, 95% CI) over the fresh seeds, the
    paired difference to ``baseline`` (same seeds) with its 95% t interval and the verdict of
    :func:`effect`, and the tolerance to the base rate -- the mean validation accuracy over the
    starting grid shared by all arms (higher: less sensitive to the rate)."""
    rows = []
    for (group, bed), result in results.items():
        summary = result.summary.set_index("arm")
        col = f"test_{result.metric}"
        shared = _shared_grid(result.sensitivity)
        for arm, s in summary.iterrows():
            a, b = _paired(result.final, arm, baseline, col)
            diff = paired_difference_ci(a, b) if len(a) >= 2 and arm != baseline else None
            tuned = bool(s["interior"] and summary.loc[baseline, "interior"])
            grid_rows = result.sensitivity[
                (result.sensitivity["arm"] == arm) & result.sensitivity["lr"].isin(shared)
            ]
            grid_mean = grid_rows[f"val_{result.metric}"].where(grid_rows["status"] == "ok")
            rows.append(
                {
                    "group": group,
                    "testbed": bed,
                    "arm": arm,
                    "best lr": f"{s['best_lr']:.3g}" + ("" if s["interior"] else " (edge)"),
                    "seeds": f"{int(s['seeds']) - int(s['failures'])}/{int(s['seeds'])}",
                    f"{col} (95% CI)": format_ci(
                        s[f"{col}_mean"], s[f"{col}_ci_low"], s[f"{col}_ci_high"]
                    ),
                    "vs uniform (95% CI)": "-" if diff is None else format_ci(*diff),
                    "effect": math.nan if diff is None else diff[0],
                    "ci_low": math.nan if diff is None else diff[1],
                    "ci_high": math.nan if diff is None else diff[2],
                    "tuned": tuned,
                    "grid-mean val": round(float(grid_mean.fillna(0).mean()), 3),
                    "verdict": "baseline" if arm == baseline else effect(a, b, tuned),
                }
            )
    return pd.DataFrame(rows)


def _shared_grid(sensitivity: pd.DataFrame) -> list[float]:
    """The rates every arm was run at (the starting grid)."""
    per_arm = sensitivity.groupby("arm")["lr"].apply(lambda s: set(s.round(12)))
    shared = set.intersection(*per_arm) if len(per_arm) else set()
    return sorted(shared)


def combine(*results: TuningResult) -> TuningResult:
    """One ``TuningResult`` holding the arms of several (same metric), e.g. a uniform arm read
    from another study's store next to this study's arms."""
    metrics = {r.metric for r in results}
    if len(metrics) != 1:
        raise ValueError(f"cannot combine tuning results of different metrics {sorted(metrics)}")
    return TuningResult(
        metrics.pop(),
        *(
            pd.concat([getattr(r, part) for r in results], ignore_index=True)
            for part in ("sensitivity", "final", "summary")
        ),
    )


def kind_verdicts(table: pd.DataFrame) -> str:
    """Per layer kind of a type-wise table (arms named ``"<kind> x<m>"``): the multipliers that
    beat uniform and those that lost to it, per testbed."""
    lines = []
    arms = table[table["verdict"] != "baseline"].assign(
        kind=lambda t: t["arm"].str.split(" ").str[0],
        mult=lambda t: t["arm"].str.split(" ").str[1],
    )
    for (bed, kind), rows in arms.groupby(["testbed", "kind"], sort=False):
        better = rows.loc[rows["verdict"] == "better", "mult"].tolist()
        worse = rows.loc[rows["verdict"] == "worse", "mult"].tolist()
        untuned = rows.loc[rows["verdict"] == "not tuned", "mult"].tolist()
        parts = [
            f"better than uniform at {', '.join(better)}" if better else "never better",
            f"worse at {', '.join(worse)}" if worse else "never worse",
        ]
        if untuned:
            parts.append(f"not tuned at {', '.join(untuned)}")
        effects = rows["effect"].dropna()
        span = f" (effects {effects.min():+.3f} to {effects.max():+.3f})" if len(effects) else ""
        lines.append(f"- {bed}, {kind} rate: " + "; ".join(parts) + span + ".")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the protocol-v2 design (the notebook moves to it once its runs are in the store)

KINDS_V2: tuple[str, ...] = ("conv", "recurrent", "attention", "dense")
MULTIPLIERS_V2: tuple[float, ...] = (1 / 4, 1 / 2, 2, 4)
SINGLE_TYPE: dict[str, str] = {
    "mnist1d/cnn": "conv",
    "mnist1d/gru": "recurrent",
    "mnist1d/transformer": "attention",
}
SINGLE_MULTIPLIERS: tuple[float, ...] = (1 / 4, 4)
STEPS_V2 = 1000  # the budget of 03's MNIST-1D comparisons: single-type uniform arms are shared

HYBRID_V2 = Testbed(
    "mnist1d/hybrid",
    TESTBEDS["mnist1d/cnn"].config.replace(model="hybrid", model_options={}),
    "acc",
    None,
    None,
    "no published reference (conv -> GRU -> self-attention -> dense, models.Hybrid)",
)


def plan(profile: str = "full") -> list[comparisons.Comparison]:
    """Study 04 under protocol v2: each layer type's rate times each multiplier inside the
    hybrid network, then the same multipliers in the single-type families, AdamW at 1,000 steps
    with warmup and cosine decay, every arm's base rate tuned by ``comparisons.protocol``.

    The single-type families use exactly the configs of ``03_discriminative_rates``'s uniform
    arms, so those runs are read from its store instead of trained again."""
    check_choice("profile", profile, ("full", "smoke"))
    kinds = KINDS_V2 if profile == "full" else KINDS_V2[:1]
    multipliers = MULTIPLIERS_V2 if profile == "full" else MULTIPLIERS_V2[-1:]
    hybrid = comparisons.at_budget(HYBRID_V2, STEPS_V2, "adamw", profile)
    arms, design = comparisons.kind_arms(hybrid.config, kinds, multipliers)
    proto = comparisons.protocol("mnist1d", "adamw", profile)
    out = [comparisons.Comparison("hybrid network", hybrid, arms, design, proto)]
    for name, kind in SINGLE_TYPE.items() if profile == "full" else ():
        bed = comparisons.at_budget(testbed(name), STEPS_V2, "adamw", profile)
        arms, design = comparisons.kind_arms(bed.config, [kind], SINGLE_MULTIPLIERS)
        out.append(comparisons.Comparison("single-type families", bed, arms, design, proto))
    return out
