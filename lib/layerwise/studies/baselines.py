"""Study 01: do the testbeds train as well as their published references?

Two questions, one table each.

**Reference recipes** (:data:`RECIPES`, ``docs/references.md#claim-13``).  Each testbed with a
published number is trained with the recipe that number comes with -- its optimizer, rate,
batch, budget and schedule, *not* tuned -- on fresh seeds (ten on MNIST-1D, five on
Fashion-MNIST, three on text, as in the comparisons).  MNIST-1D models train on all 4,000
published training examples and are scored on the published 1,000-example test set, as the
dataset's reference code does (and, beside it, on 10,000 freshly generated test examples).

**The testbeds as the studies use them** (:func:`study_plan`).  One rate for all layers, tuned
under protocol v2 (``harness.comparisons``: three tuning seeds per grid point, a grid refined to
2x around the chosen rate, warmup then cosine decay to zero) at the short budgets of the
depth-wise study (``discriminative_rates.BUDGETS``).  These are exactly the uniform arms of
``03_discriminative_rates``, so their runs are copied from that study's store, not retrained.

Verdict (:func:`band_verdict`), read from the 95% interval of the test metric over seeds and
the published number's tolerance band (no worse than published minus the tolerance for an
accuracy, no higher than published plus it for a loss; being better is fine):
*reproduced* when the whole interval lies in the band, *not reproduced* when the whole interval
lies outside it, *inconclusive* when the interval straddles the band's edge.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import pandas as pd

from ..harness import comparisons, stats
from ..harness.config import RunConfig
from ..harness.testbeds import Testbed, testbed
from ..harness.tuning import TuningResult
from .discriminative_rates import BUDGETS

__all__ = [
    "RECIPES",
    "VERDICTS",
    "Recipe",
    "answer",
    "band_verdict",
    "recipe_configs",
    "readable",
    "recipe_table",
    "study_budget_table",
    "study_plan",
]

VERDICTS: tuple[str, ...] = (
    "reproduced",
    "not reproduced",
    "inconclusive",
    "not tuned",
    "no result",
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The published training recipe of a testbed: its rate (the rest is the testbed's config),
    the test column the published number is measured on, and where the recipe comes from."""

    testbed: str
    lr: float
    metric: str
    source: str


RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "mnist1d/mlp",
        1e-2,
        "reference_test_acc",
        "MNIST-1D reference code: Adam 1e-2, batch 100, 8,000 steps, constant rate",
    ),
    Recipe(
        "mnist1d/cnn",
        1e-2,
        "reference_test_acc",
        "MNIST-1D reference code: Adam 1e-2, batch 100, 8,000 steps, constant rate",
    ),
    Recipe(
        "mnist1d/gru",
        1e-2,
        "reference_test_acc",
        "MNIST-1D reference code: Adam 1e-2, batch 100, 8,000 steps, constant rate",
    ),
    Recipe(
        "fashion_mnist/mlp",
        1e-3,
        "test_acc",
        "no recipe is published with the number: Adam at 1e-3, batch 128, 10 epochs, constant",
    ),
    Recipe(
        "fashion_mnist/cnn",
        1e-3,
        "test_acc",
        "no recipe is published with the number: Adam at 1e-3, batch 128, 5 epochs, constant",
    ),
    Recipe(
        "tinyshakespeare/transformer",
        1e-3,
        "test_loss",
        "nanoGPT's CPU recipe: AdamW 1e-3, 100 warmup steps, cosine to 1e-4, 2,000 steps "
        "(scored on nanoGPT's held-out last 10% of the text)",
    ),
)


def band_verdict(
    low: float, high: float, published: float, tolerance: float, larger_is_better: bool
) -> str:
    """Where the interval ``[low, high]`` lies against the tolerance band of ``published``.

    The band's edge is ``published - tolerance`` for an accuracy (``larger_is_better``) and
    ``published + tolerance`` for a loss.  *reproduced*: the whole interval is on the good side
    of the edge (or on it); *not reproduced*: the whole interval is on the bad side;
    *inconclusive*: the edge lies inside the interval; *no result*: the interval is undefined
    (fewer than two finished seeds).
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no result"
    if low > high:
        raise ValueError(f"interval ends in the wrong order: [{low}, {high}]")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    sign = 1.0 if larger_is_better else -1.0
    edge = published - sign * tolerance
    worst, best = (low, high) if larger_is_better else (high, low)
    if sign * (worst - edge) >= 0:
        return "reproduced"
    if sign * (best - edge) < 0:
        return "not reproduced"
    return "inconclusive"


def _recipes(profile: str) -> list[tuple[Recipe, Testbed]]:
    return [(r, testbed(r.testbed, profile)) for r in RECIPES]


def recipe_configs(profile: str = "full") -> dict[str, list[RunConfig]]:
    """Every run of the reference recipes: testbed name -> one config per final seed."""
    out = {}
    for recipe, bed in _recipes(profile):
        seeds = comparisons.protocol(bed.config.dataset, "adamw", profile).final_seeds
        out[recipe.testbed] = [bed.config.replace(lr=recipe.lr, seed=s) for s in seeds]
    return out


def _row(bed: Testbed, metric: str, values: pd.Series, failures: int) -> dict:
    larger = metric.endswith("_acc")
    bounds = (0.0, 1.0) if larger else (0.0, math.inf)
    if len(values):
        mean, low, high = stats.mean_ci(values.tolist(), bounds=bounds)
    else:
        mean, low, high = (math.nan,) * 3
    if bed.published is None:
        verdict = "no reference" if len(values) else "no result"
    else:
        verdict = band_verdict(low, high, bed.published, bed.tolerance or 0.0, larger)
    return {
        "testbed": bed.name,
        "metric": metric,
        "published": bed.published,
        "tolerance": bed.tolerance,
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "seeds": len(values) + failures,
        "failures": failures,
        "verdict": verdict,
    }


def recipe_table(runs: pd.DataFrame, profile: str = "full") -> pd.DataFrame:
    """One row per recipe from ``runs`` (``Store.frame`` of the recipe configs): the published
    number and tolerance, ours on the published test split (mean, 95% interval over seeds,
    kept inside the metric's range), the verdict, and -- on MNIST-1D -- the mean on the
    10,000 freshly generated test examples (``fresh_test``)."""
    configs = recipe_configs(profile)  # built once, not once per recipe
    rows = []
    for recipe, bed in _recipes(profile):
        keys = {c.key() for c in configs[recipe.testbed]}
        mine = runs[runs["key"].isin(keys)]
        ok = mine[mine["status"] == "ok"]
        ok = ok if recipe.metric in ok else ok.assign(**{recipe.metric: math.nan})
        row = _row(bed, recipe.metric, ok[recipe.metric].astype(float), len(mine) - len(ok))
        row["lr"] = recipe.lr
        row["recipe"] = recipe.source
        fresh = recipe.metric == "reference_test_acc" and len(ok)
        row["fresh_test"] = float(ok["test_acc"].mean()) if fresh else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def study_plan(profile: str = "full") -> list[comparisons.Comparison]:
    """The testbeds as the depth-wise and layer-type studies use them: AdamW, one rate for all
    layers, at ``discriminative_rates.BUDGETS`` with warmup and cosine decay, tuned under
    protocol v2 (the same configs as study 03's uniform arms)."""
    out = []
    for name, steps in BUDGETS.items():
        bed = comparisons.at_budget(testbed(name), steps, "adamw", profile)
        arms = {"uniform": bed.config.replace(rule={"name": "uniform"})}
        design = pd.DataFrame([{"arm": "uniform"}])
        proto = comparisons.protocol(bed.config.dataset, "adamw", profile)
        out.append(comparisons.Comparison(f"{steps} steps", bed, arms, design, proto))
    return out


def study_budget_table(
    results: Mapping[tuple[str, str], TuningResult], plan: list[comparisons.Comparison]
) -> pd.DataFrame:
    """One row per testbed of :func:`study_plan` that is tuned: budget, chosen rate, test
    accuracy over the final seeds against the published number (the verdict reads "not tuned"
    when the chosen rate is not interior to its grid)."""
    rows = []
    for comparison in plan:
        if comparison.key not in results:
            continue
        result = results[comparison.key]
        final = result.final[result.final["arm"] == "uniform"]
        ok = final[final["status"] == "ok"]
        metric = f"test_{result.metric}"
        row = _row(comparison.bed, metric, ok[metric].astype(float), len(final) - len(ok))
        summary = result.summary.set_index("arm").loc["uniform"]
        if not summary["interior"]:
            row["verdict"] = "not tuned"
        row["steps"] = int(comparison.bed.config.steps or 0)
        row["lr"] = float(summary["best_lr"])
        rows.append(row)
    return pd.DataFrame(rows)


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A recipe or study-budget table as printed: numbers as text, one interval column."""
    out = pd.DataFrame(
        {
            "testbed": table["testbed"],
            "metric": table["metric"],
            "published": [_num(p) for p in table["published"]],
            "tolerance": [_num(t) for t in table["tolerance"]],
            "ours (95% CI)": [
                stats.format_ci(m, lo, hi)
                for m, lo, hi in zip(table["mean"], table["ci_low"], table["ci_high"], strict=True)
            ],
            "seeds ok": [
                f"{s - f}/{s}" for s, f in zip(table["seeds"], table["failures"], strict=True)
            ],
            "lr": [f"{lr:.3g}" for lr in table["lr"]],
        }
    )
    if "steps" in table:
        out.insert(2, "steps", table["steps"])
    if "fresh_test" in table:
        out["fresh test (10,000)"] = [_num(v, ".3f") for v in table["fresh_test"]]
    out["verdict"] = table["verdict"]
    return out


def _num(value: float | None, fmt: str = "g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def answer(recipes: pd.DataFrame, budgets: pd.DataFrame) -> str:
    """The notebook's answer in Markdown, computed from the two tables."""

    def names(table: pd.DataFrame, verdict: str) -> list[str]:
        return table.loc[table["verdict"] == verdict, "testbed"].tolist()

    lines = ["**Reference recipes.**"]
    for verdict, meaning in (
        ("reproduced", "reach their published number: the whole interval lies in the band"),
        ("not reproduced", "fall short: the whole interval lies below the band"),
        ("inconclusive", "cannot be told apart from the band's edge: the interval straddles it"),
        ("no result", "have fewer than two finished seeds"),
    ):
        if found := names(recipes, verdict):
            lines.append(f"- {len(found)} {meaning}: {', '.join(found)}.")
    lines.append("")
    lines.append("**At the studies' short budgets** (one rate tuned under protocol v2):")
    for _, row in budgets.iterrows():
        ours = stats.format_ci(row["mean"], row["ci_low"], row["ci_high"])
        reference = (
            "no published number"
            if row["published"] is None or not math.isfinite(row["published"])
            else f"published {row['published']:g}"
        )
        lines.append(
            f"- {row['testbed']}, {row['steps']} steps: {ours} ({reference}) -- {row['verdict']}."
        )
    return "\n".join(lines)
