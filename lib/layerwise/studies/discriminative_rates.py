"""Study 03: discriminative (depth-wise) rates trained from scratch, under tuning protocol v2.

ULMFiT (Howard & Ruder 2018) fine-tunes with each layer running 2.6 times slower than the one
above.  This study asks whether that rule -- or its mirror, lower layers faster -- helps when a
network is trained **from scratch**, with one factor step per block and every arm's base rate
tuned separately (``harness.comparisons``).

Design:

* **Main comparison**: ``xi`` in {1/2.6, 2.6} against uniform on every testbed of the baselines
  (but the language model) with AdamW, and on the MNIST-1D MLP and CNN and the Fashion-MNIST MLP
  with SGD + momentum (:data:`PLAN`).
* **Effect against the factor**: ``xi`` in :data:`CURVE_FACTORS` on the MNIST-1D MLP and CNN and
  the Fashion-MNIST MLP (AdamW), each with its own tuned base rate.
* **Budget check**: the main comparison on the MNIST-1D MLP at 4x the budget
  (:data:`LONG_BUDGET`), to see whether the verdicts hold when training runs longer.

Budgets are short and stated (:data:`BUDGETS`): MNIST-1D 1,000 steps (25 epochs of its 4,000
training examples), Fashion-MNIST MLP 842 steps (2 epochs), CNN 421 steps (1 epoch); the
schedule decays to zero over each of them.
"""

from __future__ import annotations

import pandas as pd

from .._validate import check_choice
from ..harness import comparisons, stats
from ..harness.testbeds import testbed

__all__ = [
    "BUDGETS",
    "CURVE_FACTORS",
    "LONG_BUDGET",
    "MAIN_FACTORS",
    "PLAN",
    "answer",
    "plan",
]

MAIN_FACTORS: tuple[float, ...] = (1 / 2.6, 2.6)
CURVE_FACTORS: tuple[float, ...] = (1 / 4, 1 / 2.6, 1 / 1.6, 1.6, 2.6, 4)
CURVE_TESTBEDS: tuple[str, ...] = ("mnist1d/mlp", "mnist1d/cnn", "fashion_mnist/mlp")
BUDGETS: dict[str, int] = {
    "mnist1d/mlp": 1000,
    "mnist1d/cnn": 1000,
    "mnist1d/gru": 1000,
    "mnist1d/transformer": 1000,
    "fashion_mnist/mlp": 842,
    "fashion_mnist/cnn": 421,
}
LONG_BUDGET: tuple[str, int] = ("mnist1d/mlp", 4000)
# (optimizer, testbed, steps) in the order they are swept: cheap comparisons first.
PLAN: tuple[tuple[str, str, int], ...] = (
    ("adamw", "mnist1d/mlp", BUDGETS["mnist1d/mlp"]),
    ("sgd", "mnist1d/mlp", BUDGETS["mnist1d/mlp"]),
    ("adamw", "mnist1d/cnn", BUDGETS["mnist1d/cnn"]),
    ("sgd", "mnist1d/cnn", BUDGETS["mnist1d/cnn"]),
    ("adamw", *LONG_BUDGET),
    ("adamw", "fashion_mnist/mlp", BUDGETS["fashion_mnist/mlp"]),
    ("sgd", "fashion_mnist/mlp", BUDGETS["fashion_mnist/mlp"]),
    ("adamw", "mnist1d/gru", BUDGETS["mnist1d/gru"]),
    ("adamw", "mnist1d/transformer", BUDGETS["mnist1d/transformer"]),
    ("adamw", "fashion_mnist/cnn", BUDGETS["fashion_mnist/cnn"]),
)


def plan(profile: str = "full") -> list[comparisons.Comparison]:
    """Every comparison of the study, in :data:`PLAN` order.  A comparison's group is its
    optimizer, with the budget added where it is not the testbed's short budget."""
    check_choice("profile", profile, ("full", "smoke"))
    out = []
    for optimizer, name, steps in PLAN if profile == "full" else PLAN[:2]:
        long = steps != BUDGETS[name]
        factors = (
            CURVE_FACTORS
            if optimizer == "adamw" and name in CURVE_TESTBEDS and not long
            else MAIN_FACTORS
        )
        bed = comparisons.at_budget(testbed(name), steps, optimizer, profile)
        arms, design = comparisons.depth_factor_arms(bed.config, factors)
        group = f"{optimizer}, {steps} steps" if long else optimizer
        proto = comparisons.protocol(bed.config.dataset, optimizer, profile)
        out.append(comparisons.Comparison(group, bed, arms, design, proto))
    return out


# --------------------------------------------------------------------------------------------
# what each arm does, and what came out


def answer(table: pd.DataFrame) -> str:
    """The study's answer as Markdown sentences, computed from ``comparisons.with_design(compare(...))``."""
    main = table[table["xi"].round(6).isin([round(x, 6) for x in MAIN_FACTORS])]
    short = main[~main["group"].str.contains("steps")]
    lines = []
    for direction, rows in short.groupby("direction", sort=False):
        lines.append(
            f"- **{direction}** (xi = {rows['xi'].iloc[0]:.3g} per block) against one tuned rate, "
            f"over {len(rows)} testbed/optimizer pairs: {stats.count_outcomes(rows['outcome'])}; "
            f"effects on test accuracy {rows['effect'].min():+.3f} to {rows['effect'].max():+.3f}."
        )
    lines.append(
        stats.unresolved_note(
            table,
            not_that="the rule does nothing",
        )
    )
    for bed, rows in table[table["testbed"].isin(CURVE_TESTBEDS)].groupby("testbed", sort=False):
        rows = rows[rows["group"] == "adamw"]
        better = rows.loc[rows["outcome"] == "better", "arm"].tolist()
        worse = rows.loc[rows["outcome"] == "worse", "arm"].tolist()
        lines.append(
            f"- {bed}, effect against xi: better than uniform at {', '.join(better) or 'no factor'}"
            f"; worse at {', '.join(worse) or 'no factor'}."
        )
    name, steps = LONG_BUDGET
    long = main[(main["testbed"] == name) & main["group"].str.contains("steps")]
    base = short[(short["testbed"] == name) & (short["group"] == "adamw")]
    if len(long) and len(base):
        pairs = base.set_index("arm")["outcome"], long.set_index("arm")["outcome"]
        held = [
            f"{arm}: {pairs[0][arm]} at {BUDGETS[name]} steps, {pairs[1][arm]} at {steps}"
            for arm in pairs[1].index
        ]
        lines.append(f"- Budget check on {name}: " + "; ".join(held) + ".")
    faster = table[table["time_ratio_high"] < 1]
    lines.append(
        f"- Reached uniform's final validation score in fewer steps (time-ratio interval below 1): "
        f"{', '.join(f'{r.testbed} {r.group} {r.arm}' for r in faster.itertuples()) or 'no arm'}."
    )
    return "\n".join(lines)
