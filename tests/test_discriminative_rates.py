"""Study 03's design and tables: the plan, each block's multiplier, the answer sentences."""

from __future__ import annotations

import pandas as pd
import pytest

from layerwise.harness import comparisons
from layerwise.studies import discriminative_rates as design


def test_plan_follows_the_protocol_and_decays():
    plan = design.plan("full")
    keys = [c.key for c in plan]
    assert len(keys) == len(set(keys)) == len(design.PLAN)
    for c in plan:
        assert c.bed.config.schedule == "cosine"
        assert c.bed.config.schedule_options["final"] == 0.0
        assert c.bed.config.steps == (
            design.LONG_BUDGET[1] if "steps" in c.group else design.BUDGETS[c.bed.name]
        )
        assert len(c.protocol.tune_seeds) >= 3 and c.protocol.max_spacing <= 2
        assert set(c.design["arm"]) == set(c.arms)
    curve = {c.bed.name for c in plan if len(c.arms) == 1 + len(design.CURVE_FACTORS)}
    assert curve == set(design.CURVE_TESTBEDS)


def test_multiplier_table_steps_by_xi_per_block():
    mlp = next(c for c in design.plan("full") if c.key == ("adamw", "mnist1d/mlp"))
    table = comparisons.multiplier_table(mlp).set_index("depth")
    top = table.index.max()
    for arm, xi in mlp.design.set_index("arm")["xi"].items():
        expected = [xi ** (top - d) if xi < 1 else xi**-d for d in table.index]
        assert table[arm].tolist() == pytest.approx(expected), arm
    assert table.loc[top, "layers"] == "head"


def _table() -> pd.DataFrame:
    rows = []
    for group, bed, arm, xi, direction, outcome, effect in [
        ("adamw", "mnist1d/mlp", "xi=1/2.6", 1 / 2.6, "lower slower", "better", 0.02),
        ("adamw", "mnist1d/mlp", "xi=2.6", 2.6, "lower faster", "worse", -0.03),
        ("adamw", "mnist1d/mlp", "xi=4", 4.0, "lower faster", "worse", -0.05),
        ("sgd", "mnist1d/mlp", "xi=1/2.6", 1 / 2.6, "lower slower", "equivalent", 0.001),
        ("sgd", "mnist1d/mlp", "xi=2.6", 2.6, "lower faster", "inconclusive", -0.01),
        (
            "adamw, 4000 steps",
            "mnist1d/mlp",
            "xi=1/2.6",
            1 / 2.6,
            "lower slower",
            "inconclusive",
            0.0,
        ),
        ("adamw, 4000 steps", "mnist1d/mlp", "xi=2.6", 2.6, "lower faster", "worse", -0.02),
    ]:
        rows.append(
            {
                "group": group,
                "testbed": bed,
                "arm": arm,
                "xi": xi,
                "direction": direction,
                "outcome": outcome,
                "effect": effect,
                "mde": 0.01,
                "sesoi": 0.02 if group != "sgd" else 0.005,
                "time_ratio_high": 0.9 if outcome == "better" else 1.2,
            }
        )
    return pd.DataFrame(rows)


def test_answer_counts_outcomes_per_direction_and_reports_the_budget_check():
    text = design.answer(_table())
    assert (
        "**lower slower** (xi = 0.385 per block) against one tuned rate, over 2 testbed/optimizer pairs: 1 better, 0 worse, 1 equivalent, 0 inconclusive"
        in text
    )
    assert (
        "**lower faster** (xi = 2.6 per block) against one tuned rate, over 2 testbed/optimizer pairs: 0 better, 1 worse, 0 equivalent, 1 inconclusive"
        in text
    )
    assert "2 of 7 comparisons could not resolve" in text  # the two sgd rows: mde 0.01 > 0.005
    assert (
        "mnist1d/mlp, effect against xi: better than uniform at xi=1/2.6; worse at xi=2.6, xi=4."
        in text
    )
    assert "xi=2.6: worse at 1000 steps, worse at 4000" in text
    assert "xi=1/2.6: better at 1000 steps, inconclusive at 4000" in text
    assert "fewer steps (time-ratio interval below 1): mnist1d/mlp adamw xi=1/2.6." in text


def test_verdict_table_marks_untuned_comparisons(compare_row):
    row = compare_row(tuned=False)
    shown = comparisons.verdict_table(pd.DataFrame([row])).iloc[0]
    assert shown["outcome"] == "inconclusive (not tuned)"
    assert shown["effect [CI]"] == "0.010 [-0.010, 0.030]"
    assert shown["steps to uniform's score"] == "0.80 [0.60, 1.10], 1 never"


def test_protocol_is_the_comparisons_protocol():
    c = design.plan("full")[0]
    assert c.protocol == comparisons.protocol("mnist1d", "adamw")
