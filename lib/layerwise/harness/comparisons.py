"""Arms of the from-scratch comparisons (studies 03 and 04) and the protocol they are tuned with.

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

import numpy as np
import pandas as pd

from .._validate import check_choice, check_positive
from ..layers import KINDS
from .config import RunConfig
from .stats import format_ci, mean_ci, paired_difference_ci
from .store import Store
from .testbeds import TESTBEDS, Testbed, final_seeds, testbed
from .tuning import TuningResult, log_grid, tune

__all__ = [
    "GRID_POINTS",
    "combine",
    "HYBRID",
    "OPTIMIZERS",
    "discriminative_arms",
    "effect",
    "effect_table",
    "final_seeds",
    "finetune_table",
    "kind_arms",
    "kind_verdicts",
    "finetune_arms",
    "pretrain_config",
    "short_testbed",
    "tune_finetuning",
    "verdict_counts",
    "with_optimizer",
    "tune_comparison",
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
    TESTBEDS["mnist1d/cnn"].config.replace(model="hybrid", steps=1000, eval_every=250),
    "acc",
    None,
    None,
    "no published reference (conv -> GRU -> self-attention -> dense, models.Hybrid)",
)


def short_testbed(name: str, profile: str = "full") -> Testbed:
    """Testbed ``name`` (or ``"mnist1d/hybrid"``) at the comparisons' short budget."""
    check_choice("comparison testbed", name, [*TESTBEDS, HYBRID.name])
    bed = HYBRID if name == HYBRID.name else testbed(name)
    budget = SHORT_BUDGETS.get(name) or SHORT_BUDGETS[bed.config.dataset]
    config = bed.config.replace(**budget)
    if profile == "smoke":
        config = config.replace(steps=20, epochs=None, eval_every=10)
    return dataclasses.replace(bed, config=config)


def with_optimizer(config: RunConfig, optimizer: str) -> RunConfig:
    """``config`` trained by ``"adamw"`` or ``"sgd"`` (momentum 0.9), no weight decay."""
    check_choice("comparison optimizer", optimizer, OPTIMIZERS)
    return config.replace(optimizer=optimizer, optimizer_options=OPTIMIZERS[optimizer]["options"])


def discriminative_arms(
    config: RunConfig, factors: Sequence[float] = (2.6,)
) -> dict[str, RunConfig]:
    """Uniform plus ``Discriminative(factor, toward)`` in both directions for each factor.

    ``toward="input"`` is ULMFiT's rule (Howard & Ruder 2018): each layer down runs ``factor``
    times slower than the one above, ``m_d = factor^-(D - d)``, so the lowest layers are slowest;
    ``toward="output"`` reverses it, ``m_d = factor^-d``, the lowest layers fastest.  Arm names
    read ``"lower slower x2.6"`` / ``"lower faster x2.6"``.
    """
    arms = {"uniform": config.replace(rule={"name": "uniform"})}
    for factor in factors:
        check_positive("discriminative factor", factor)
        for toward, label in (("input", "lower slower"), ("output", "lower faster")):
            arms[f"{label} x{factor:g}"] = config.replace(
                rule={"name": "discriminative", "factor": float(factor), "toward": toward}
            )
    return arms


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


def grid(optimizer: str, profile: str = "full") -> list[float]:
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
        grid(optimizer, profile),
        study,
        metric=bed.metric,
        final_seeds=final_seeds(bed.config.dataset, profile),
        max_extensions=0 if profile == "smoke" else MAX_EXTENSIONS,
        store=store,
        jobs=jobs,
        executor=executor,
    )


# --------------------------------------------------------------------------------------------
# the fine-tuning control (ULMFiT's own setting, docs/references.md#claim-3)

PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
FINETUNE_CLASSES = (5, 6, 7, 8, 9)
SHOTS = 100  # labelled training images per fine-tuning class
FINETUNE_GRID = (1e-4, 1e-1, 7)  # the study plan's 7-point grid, half a decade apart
FINETUNE_SEEDS = tuple(range(1, 11))  # 10 seeds: few-shot variance is high


def pretrain_config(profile: str = "full") -> RunConfig:
    """The pretraining run: the Fashion-MNIST CNN testbed on classes 0-4 for 5 epochs at the
    rate ``01_baselines`` chose for the full CNN (3e-3), seed 0."""
    bed = testbed("fashion_mnist/cnn")
    config = bed.config.replace(
        data_options={"classes": list(PRETRAIN_CLASSES)}, epochs=5, lr=3e-3, seed=0
    )
    if profile == "smoke":
        config = config.replace(steps=20, epochs=None, eval_every=10)
    return config


def finetune_arms(profile: str = "full") -> dict[str, RunConfig]:
    """ULMFiT's four fine-tuning arms on classes 5-9 with :data:`SHOTS` images per class.

    All start from :func:`pretrain_config`'s weights with a fresh head, AdamW without weight
    decay, batch 50 (10 steps per epoch), 30 epochs:

    1. ``one rate``: the same rate for every layer, constant;
    2. ``discriminative /2.6``: ``eta^(l-1) = eta^l / 2.6`` (``Discriminative(2.6, "input")``);
    3. ``discr. + STLR``: 2 with the slanted triangular schedule (cut_frac 0.1, ratio 32);
    4. ``discr. + STLR + unfreezing``: 3 with gradual unfreezing, one more layer (depth) every
       epoch from the top.
    """
    pretrain = pretrain_config(profile)
    base = pretrain.replace(
        data_options={"classes": list(FINETUNE_CLASSES), "train_per_class": SHOTS},
        batch_size=50,
        steps=None,
        epochs=30,
        eval_every=30,
        init_from=pretrain.to_dict(),
        rule={"name": "uniform"},
    )
    if profile == "smoke":
        base = base.replace(steps=20, epochs=None, eval_every=10)
    discriminative = base.replace(rule={"name": "discriminative", "factor": 2.6})
    stlr = discriminative.replace(
        schedule="slanted_triangular", schedule_options={"cut_frac": 0.1, "ratio": 32}
    )
    return {
        "one rate": base,
        "discriminative /2.6": discriminative,
        "discr. + STLR": stlr,
        "discr. + STLR + unfreezing": stlr.replace(unfreeze_every=SHOTS * 5 // 50),
    }


def tune_finetuning(
    arms: Mapping[str, RunConfig],
    study: str,
    profile: str = "full",
    *,
    store: Store | None = None,
    jobs: int | None = None,
) -> TuningResult:
    """Tune the fine-tuning arms: the 7-point grid per arm, validation accuracy on seed 0, then
    :data:`FINETUNE_SEEDS`.  The pretraining weights are trained (and cached) once here, before
    the workers start, unless every grid run is already stored."""
    low, high, points = FINETUNE_GRID
    lrs = log_grid(low, high, points) if profile == "full" else log_grid(1e-3, 1e-2, 3)
    store = store or Store()
    grid_runs = [c.replace(lr=lr, seed=0) for c in arms.values() for lr in lrs]
    if store.missing(study, grid_runs):
        from .pretraining import pretrained_state

        for pretrain in {RunConfig.from_dict(c.init_from) for c in arms.values()}:
            pretrained_state(pretrain)
    return tune(
        arms,
        lrs,
        study,
        metric="acc",
        final_seeds=FINETUNE_SEEDS if profile == "full" else (1, 2),
        max_extensions=0 if profile == "smoke" else MAX_EXTENSIONS,
        store=store,
        jobs=jobs,
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
                    "diff": math.nan if diff is None else diff[0],
                    "diff_low": math.nan if diff is None else diff[1],
                    "diff_high": math.nan if diff is None else diff[2],
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


def verdict_counts(table: pd.DataFrame) -> str:
    """Per non-baseline arm: in how many testbeds (and optimizers) it was better, worse, or
    indistinguishable from uniform, and the range of its effect on test accuracy."""
    lines = []
    arms = table[table["verdict"] != "baseline"]
    for arm, rows in arms.groupby("arm", sort=False):
        counts = rows["verdict"].value_counts()
        parts = [f"{counts.get(v, 0)} {v}" for v in ("better", "worse", "no detectable difference")]
        extra = [f"{counts[v]} {v}" for v in ("not tuned", "too few seeds") if v in counts]
        effects = rows["diff"].dropna()
        span = (
            f"; mean effect on test accuracy {effects.min():+.3f} to {effects.max():+.3f}"
            if len(effects)
            else ""
        )
        lines.append(
            f"- {arm} vs uniform, over {len(rows)} testbed/optimizer pairs: "
            + ", ".join(parts + extra)
            + span
            + "."
        )
    return "\n".join(lines)


def finetune_table(result: TuningResult, baseline: str = "one rate") -> pd.DataFrame:
    """ULMFiT's ablation as measured: per arm, test error (mean, 95% CI) over the fresh seeds,
    the paired reduction in error against ``baseline`` (baseline error minus arm error: > 0 is
    an improvement) with its 95% interval and its paired standard error, and the verdict of
    claim 3 (docs/references.md#claim-3): *reproduced* when the reduction exceeds one paired standard
    error, else *not reproduced*; *not tuned* when either best rate sat on the grid's edge."""
    rows = []
    summary = result.summary.set_index("arm")
    for arm, s in summary.iterrows():
        ours, base = _paired(result.final, arm, baseline, "test_acc")
        reduction = [o - b for o, b in zip(ours, base, strict=True)]  # acc gain = error drop
        errors = [1 - v for v in ours]
        row = {
            "arm": arm,
            "best lr": f"{s['best_lr']:.3g}" + ("" if s["interior"] else " (edge)"),
            "seeds": len(errors),
            "test error (95% CI)": format_ci(*mean_ci(errors)) if errors else "n/a",
        }
        if arm == baseline:
            row.update({"error reduction (95% CI)": "-", "paired s.e.": "-", "claim 3": "-"})
        else:
            mean, low, high = mean_ci(reduction)
            se = float(np.std(reduction, ddof=1) / math.sqrt(len(reduction)))
            tuned = bool(s["interior"] and summary.loc[baseline, "interior"])
            verdict = "reproduced" if mean > se else "not reproduced"
            row.update(
                {
                    "error reduction (95% CI)": format_ci(mean, low, high),
                    "paired s.e.": f"{se:.3f}",
                    "claim 3": verdict if tuned else "not tuned",
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


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
        effects = rows["diff"].dropna()
        span = f" (effects {effects.min():+.3f} to {effects.max():+.3f})" if len(effects) else ""
        lines.append(f"- {bed}, {kind} rate: " + "; ".join(parts) + span + ".")
    return "\n".join(lines)
