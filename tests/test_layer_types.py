"""Arms of the from-scratch comparisons and their effect sizes against uniform."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from layerwise import groups
from layerwise.harness.models import build
from layerwise.harness.tuning import TuningResult
from layerwise.studies import layer_types as cmp


def _rates(config):
    """Per-parameter lr of a config's model under its rule, from the library's param groups."""
    model = build(config.model, config.dataset, **config.model_options)
    table = groups.describe(groups.param_groups(model, 1.0, config.rule, torch.zeros(2, 40)))
    return table.groupby("depth")["lr"].max()


def test_kind_arms_change_only_the_named_kind():
    bed = cmp.short_testbed("mnist1d/hybrid")
    arms = cmp.kind_arms(bed.config, ["recurrent"], [0.25, 4])
    assert list(arms) == ["uniform", "recurrent x1/4", "recurrent x4"]
    model = build("hybrid", "mnist1d")
    rule = arms["recurrent x4"].rule
    table = groups.describe(groups.param_groups(model, 1.0, rule, torch.zeros(2, 40)))
    assert (table.loc[table["kind"] == "recurrent", "lr"] == 4.0).all()
    assert (table.loc[table["kind"] != "recurrent", "lr"] == 1.0).all()
    with pytest.raises(ValueError, match="layer kind"):
        cmp.kind_arms(bed.config, ["lstm"], [2])


def test_short_budgets_and_grids():
    assert cmp.short_testbed("mnist1d/gru").config.steps == 1000
    assert cmp.short_testbed("fashion_mnist/cnn").config.epochs == 1
    assert cmp.short_testbed("mnist1d/mlp", "smoke").config.steps == 20
    assert cmp.starting_grid("adamw") == pytest.approx([1e-3, 10**-2.5, 1e-2], rel=1e-3)
    assert cmp.starting_grid("sgd")[0] == pytest.approx(1e-2)
    with pytest.raises(ValueError, match="sgdw"):
        cmp.starting_grid("sgdw")
    with pytest.raises(ValueError, match="testbed"):
        cmp.short_testbed("mnist1d/rnn")


def test_effect_uses_the_paired_t_interval():
    a, b = [0.80, 0.82, 0.81, 0.83, 0.80], [0.78, 0.79, 0.80, 0.80, 0.77]
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert d.mean() - half > 0  # the data are built to be clearly better
    assert cmp.effect(a, b, tuned=True) == "better"
    assert cmp.effect(b, a, tuned=True) == "worse"
    assert cmp.effect(a, [x + 0.01 * (-1) ** i for i, x in enumerate(a)], True) == (
        "no detectable difference"
    )
    assert cmp.effect(a, b, tuned=False) == "not tuned"
    assert cmp.effect(a[:1], b[:1], tuned=True) == "too few seeds"


def _result(final_acc: dict[str, list[float]], interior: dict[str, bool]) -> TuningResult:
    final = pd.DataFrame(
        [
            {"arm": arm, "seed": s + 1, "status": "ok", "test_acc": v, "lr": 0.01}
            for arm, values in final_acc.items()
            for s, v in enumerate(values)
        ]
    )
    sensitivity = pd.DataFrame(
        [
            {"arm": arm, "lr": lr, "seed": 0, "status": "ok", "val_acc": 0.5 + lr}
            for arm in final_acc
            for lr in (0.001, 0.01, 0.1)
        ]
    )
    summary = pd.DataFrame(
        [
            {
                "arm": arm,
                "best_lr": 0.01,
                "interior": interior[arm],
                "seeds": len(v),
                "failures": 0,
                "test_acc_mean": float(np.mean(v)),
                "test_acc_ci_low": np.nan,
                "test_acc_ci_high": np.nan,
            }
            for arm, v in final_acc.items()
        ]
    )
    return TuningResult("acc", sensitivity, final, summary)


def test_effect_table_reports_paired_differences_to_uniform():
    accs = {"uniform": [0.7, 0.72, 0.71], "x": [0.75, 0.78, 0.76], "y": [0.7, 0.7, 0.7]}
    result = _result(accs, {"uniform": True, "x": True, "y": False})
    table = cmp.effect_table({("adamw", "bed"): result}).set_index("arm")
    assert table.loc["x", "effect"] == pytest.approx(
        np.mean(np.subtract(accs["x"], accs["uniform"]))
    )
    assert table.loc["x", "verdict"] == "better"
    assert table.loc["y", "verdict"] == "not tuned"  # its best rate sat on an edge
    assert table.loc["uniform", "verdict"] == "baseline"
    # grid-mean validation over the shared grid: (0.501 + 0.51 + 0.6) / 3
    assert table.loc["x", "grid-mean val"] == pytest.approx(0.537, abs=1e-3)


def test_combine_keeps_every_arm_and_refuses_mixed_metrics():
    a = _result({"uniform": [0.7, 0.7]}, {"uniform": True})
    b = _result({"x": [0.8, 0.8]}, {"x": True})
    both = cmp.combine(a, b)
    assert set(both.summary["arm"]) == {"uniform", "x"}
    assert len(both.final) == 4
    with pytest.raises(ValueError, match="metric"):
        cmp.combine(a, TuningResult("loss", a.sensitivity, a.final, a.summary))


# --------------------------------------------------------------------------------------------
# the protocol-v2 design


def test_v2_plan_shares_03s_uniform_runs_and_multiplies_one_kind():
    from layerwise.rules import rule_from_spec
    from layerwise.studies import discriminative_rates

    plan = cmp.plan("full")
    keys_03 = {a.key() for c in discriminative_rates.plan() for a in c.arms.values()}
    single = [c for c in plan if c.group == "single-type families"]
    assert [c.arms["uniform"].key() in keys_03 for c in single] == [True] * 3
    hybrid = plan[0]
    assert len(hybrid.arms) == 1 + len(cmp.KINDS_V2) * len(cmp.MULTIPLIERS_V2)
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
        assert c.bed.config.schedule == "cosine" and c.bed.config.steps == cmp.STEPS_V2
