"""Study 04's design under protocol v2, its multiplier table and its answer sentences."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from layerwise import groups
from layerwise.harness import comparisons
from layerwise.harness.models import build
from layerwise.harness.tuning import TuningResult
from layerwise.rules import rule_from_spec
from layerwise.studies import discriminative_rates
from layerwise.studies import layer_types as design


def test_plan_shares_03s_uniform_runs_and_multiplies_one_kind():
    plan = design.plan("full")
    keys_03 = {a.key() for c in discriminative_rates.plan() for a in c.arms.values()}
    single = [c for c in plan if c.group == design.SINGLE_GROUP]
    assert [c.arms["uniform"].key() in keys_03 for c in single] == [True] * 3
    hybrid = plan[0]
    assert len(hybrid.arms) == 1 + len(design.KINDS) * len(design.MULTIPLIERS)
    model = build("hybrid", "mnist1d")
    for arm, row in hybrid.design.set_index("arm").iterrows():
        if arm == "uniform":
            continue
        table = groups.resolve(
            model, rule_from_spec(dict(hybrid.arms[arm].rule)), torch.zeros(2, 40)
        )
        hit = table["kind"] == row["kind"]
        assert hit.any(), arm
        assert table.loc[hit, "multiplier"].tolist() == pytest.approx(
            [row["multiplier"]] * hit.sum()
        )
        assert (table.loc[~hit, "multiplier"] == 1.0).all()
    for c in plan:
        assert c.bed.config.schedule == "cosine" and c.bed.config.steps == design.STEPS
        assert c.protocol == comparisons.protocol("mnist1d", "adamw")


def test_multiplier_table_by_kind_shows_each_arms_intervention():
    hybrid = design.plan("full")[0]
    table = comparisons.multiplier_table(hybrid, by="kind").set_index("kind")
    assert set(design.KINDS) <= set(table.index)  # plus the norms, which no arm scales
    for arm, row in hybrid.design.set_index("arm").iterrows():
        expected = {k: (row["multiplier"] if k == row["kind"] else 1.0) for k in table.index}
        assert table[arm].to_dict() == pytest.approx(expected), arm
    with pytest.raises(ValueError, match="'layer'"):
        comparisons.multiplier_table(hybrid, by="layer")


def _row(group, testbed, kind, multiplier, outcome, effect, mde=0.01, ratio_high=1.2):
    arm = f"{kind} x{multiplier:g}" if multiplier >= 1 else f"{kind} x1/{1 / multiplier:g}"
    return {
        "group": group,
        "testbed": testbed,
        "arm": arm,
        "kind": kind,
        "multiplier": multiplier,
        "outcome": outcome,
        "effect": effect,
        "mde": mde,
        "sesoi": 0.02,
        "time_ratio_high": ratio_high,
    }


def test_answer_counts_outcomes_per_kind_and_family():
    table = pd.DataFrame(
        [
            _row("hybrid network", "mnist1d/hybrid", "conv", 4.0, "worse", -0.05),
            _row("hybrid network", "mnist1d/hybrid", "conv", 0.25, "equivalent", 0.001),
            _row("hybrid network", "mnist1d/hybrid", "dense", 2.0, "inconclusive", 0.01, 0.03),
            _row(
                "single-type families", "mnist1d/gru", "recurrent", 4.0, "better", 0.04, 0.01, 0.8
            ),
        ]
    )
    lines = design.answer(table).splitlines()
    assert lines[0].startswith("- **Inside the hybrid network**")
    assert "3 arms: 0 better, 1 worse, 1 equivalent, 1 inconclusive" in lines[0]
    assert lines[1] == "  - conv: x1/4 equivalent (+0.001), x4 worse (-0.050)."
    assert lines[2] == "  - dense: x2 inconclusive (+0.010)."
    assert lines[3] == "- **mnist1d/gru**, its recurrent layers' rate: x4 better (+0.040)."
    assert lines[4].startswith("- 1 of 4 comparisons could not resolve")
    assert lines[5].endswith("interval below 1): mnist1d/gru recurrent x4.")


def test_sensitivity_by_kind_puts_each_kind_beside_uniform():
    plan = design.plan("full")[:2]  # the hybrid and the CNN
    runs = {
        c.key: TuningResult(
            "acc",
            pd.DataFrame([{"arm": arm, "lr": 0.01, "score": 0.5} for arm in c.arms]),
            pd.DataFrame(),
            pd.DataFrame(),
        )
        for c in plan
    }
    frame = design.sensitivity_by_kind(runs, plan)
    hybrid_conv = frame[frame["panel"] == "mnist1d/hybrid · conv"]
    assert hybrid_conv["arm"].tolist() == [
        "conv x1/4",
        "conv x1/2",
        "uniform",
        "conv x2",
        "conv x4",
    ]
    assert hybrid_conv["multiplier"].tolist() == ["x1/4", "x1/2", "x1", "x2", "x4"]
    assert set(frame["panel"]) == {f"mnist1d/hybrid · {k}" for k in design.KINDS} | {
        "mnist1d/cnn · conv"
    }
    assert len(frame) == (len(design.KINDS) * 5) + 3
