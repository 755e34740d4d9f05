"""Comparisons under protocol v2: arms, the protocol, and effects with four outcomes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from layerwise import groups
from layerwise.harness import comparisons as cmp
from layerwise.harness.config import RunConfig
from layerwise.harness.models import build
from layerwise.harness.tuning import TuningResult
from layerwise.rules import rule_from_spec


@pytest.fixture
def base():
    return RunConfig(dataset="mnist1d", model="mlp", lr=1e-3, batch_size=100, steps=1000)


def test_protocol_meets_v2_and_smoke_shrinks_it():
    full = cmp.protocol("mnist1d", "adamw")
    assert len(full.tune_seeds) >= 3 and not set(full.tune_seeds) & set(full.final_seeds)
    assert len(full.final_seeds) >= 10 and full.max_spacing <= 2
    assert len(cmp.protocol("fashion_mnist", "sgd").final_seeds) >= 5
    grid = full.grid
    assert all(b / a == pytest.approx(4) for a, b in zip(grid, grid[1:], strict=False))
    assert len(cmp.protocol("mnist1d", "adamw", "smoke").final_seeds) == 2
    with pytest.raises(ValueError, match="'rmsprop'"):
        cmp.protocol("mnist1d", "rmsprop")


def test_with_decay_warms_up_then_decays_to_zero(base):
    config = cmp.with_decay(base.replace(steps=None, epochs=2), 400)
    assert config.steps == 400 and config.epochs is None
    assert config.schedule == "cosine"
    assert dict(config.schedule_options) == {"warmup": 20, "final": 0.0}


def test_depth_factor_arms_name_direction_and_rule(base):
    arms, design = cmp.depth_factor_arms(base, [1 / 2.6, 1.0, 2.6])
    assert list(arms) == ["uniform", "xi=1/2.6", "xi=2.6"]
    slower, faster = arms["xi=1/2.6"].rule, arms["xi=2.6"].rule
    assert slower["toward"] == "input" and faster["toward"] == "output"
    assert slower["factor"] == pytest.approx(2.6) and faster["factor"] == pytest.approx(2.6)
    # one factor step per block of the reference MLP (input layer, residual layer, head)
    model = build("mlp", "mnist1d", variant="reference")
    example = torch.zeros(2, 40)
    for config, expected in (
        (arms["xi=1/2.6"], [2.6**-2, 2.6**-1, 1]),
        (arms["xi=2.6"], [1, 2.6**-1, 2.6**-2]),
    ):
        table = groups.resolve(model, rule_from_spec(dict(config.rule)), example)
        per_depth = table.groupby("depth")["multiplier"].first().tolist()
        assert per_depth == pytest.approx(expected)
    assert design.set_index("arm").loc["xi=1/2.6", "xi"] == pytest.approx(1 / 2.6)
    assert design.set_index("arm").loc["xi=2.6", "direction"] == "lower faster"


def test_depth_factor_arms_as_layer_decay_match_the_discriminative_rule(base):
    arms, design = cmp.depth_factor_arms(base, [1.0, 0.8, 0.65], rule="layer_decay")
    assert list(arms) == ["uniform", "xi=0.65", "xi=0.8"]
    assert dict(arms["xi=0.8"].rule) == {"name": "layer_decay", "decay": 0.8}
    assert design.set_index("arm")["direction"].to_dict() == {
        "uniform": "uniform",
        "xi=0.65": "lower slower",
        "xi=0.8": "lower slower",
    }
    # the same multipliers as ULMFiT's spelling of the factor, under another run key
    same, _ = cmp.depth_factor_arms(base, [0.8])
    model = build("mlp", "mnist1d", variant="reference")
    example = torch.zeros(2, 40)
    ours, theirs = (
        groups.resolve(model, rule_from_spec(dict(a.rule)), example)["multiplier"]
        for a in (arms["xi=0.8"], same["xi=1/1.25"])
    )
    assert ours.tolist() == pytest.approx(theirs.tolist())
    assert arms["xi=0.8"].key() != same["xi=1/1.25"].key()
    with pytest.raises(ValueError, match=r"layer-decay factor xi must be a number in \(0, 1\]"):
        cmp.depth_factor_arms(base, [2.6], rule="layer_decay")
    with pytest.raises(ValueError, match="'discriminative', 'layer_decay'"):
        cmp.depth_factor_arms(base, [0.8], rule="llrd")


def test_kind_arms_table_keeps_numbers(base):
    arms, design = cmp.kind_arms(base, ["dense"], [0.25, 4])
    assert list(arms) == ["uniform", "dense x1/4", "dense x4"]
    assert design["multiplier"].tolist() == [1.0, 0.25, 4.0]
    with pytest.raises(ValueError, match="'lstm'"):
        cmp.kind_arms(base, ["lstm"], [2])


def _result(
    effects: dict[str, float], noise: float, jitter: float = 0.0, interior: dict | None = None
) -> TuningResult:
    """A tuning result with 10 final seeds per arm: uniform test accuracy 0.80 + seed noise
    shared by all arms (paired), each arm shifted by its effect plus its own jitter; validation curves that rise linearly to the final value."""
    rng = np.random.default_rng(0)
    seeds = range(1, 11)
    base = 0.80 + noise * rng.standard_normal(10)
    final, curves, summary = [], [], []
    for arm, effect in {"uniform": 0.0, **effects}.items():
        values = base + effect + (jitter * rng.standard_normal(10) if effect else 0.0)
        for seed, v in zip(seeds, values, strict=True):
            final.append({"arm": arm, "seed": seed, "status": "ok", "test_acc": v, "val_acc": v})
            for step in (250, 500, 750, 1000):
                curves.append({"arm": arm, "seed": seed, "step": step, "val_acc": v * step / 1000})
        summary.append({"arm": arm, "best_lr": 1e-3, "interior": (interior or {}).get(arm, True)})
    return TuningResult(
        "acc", pd.DataFrame(), pd.DataFrame(final), pd.DataFrame(summary), pd.DataFrame(curves)
    )


def test_compare_gives_the_four_outcomes_over_one_family():
    result = _result({"up": 0.05, "down": -0.05, "same": 0.0}, noise=0.01, jitter=0.002)
    table = cmp.compare({("adamw", "bed"): result}).set_index("arm")
    assert table.loc["up", "outcome"] == "better"
    assert table.loc["down", "outcome"] == "worse"
    # SESOI = 10% of the 20% error = 0.02; "same" differs from uniform by exactly 0 on every seed
    assert table.loc["same", "sesoi"] == pytest.approx(
        0.1 * (1 - table.loc["same", "baseline_mean"])
    )
    assert table.loc["same", "outcome"] == "equivalent"
    assert (table["p_holm"] >= table["p"]).all()
    assert set(table["outcome"]) <= {"better", "worse", "equivalent", "inconclusive"}


def test_an_untuned_arm_is_inconclusive_whatever_its_data():
    result = _result({"up": 0.05}, noise=0.01, jitter=0.002, interior={"up": False})
    row = cmp.compare({("adamw", "bed"): result}).iloc[0]
    assert row["outcome"] == "inconclusive" and not row["tuned"]
    assert row["arm_mean"] > row["baseline_mean"]  # the numbers are still shown


def test_noisy_small_effect_is_inconclusive_not_no_difference():
    result = _result({"small": 0.005}, noise=0.05, jitter=0.05)
    row = cmp.compare({("adamw", "bed"): result}).iloc[0]
    assert row["outcome"] == "inconclusive"
    assert row["ci_low"] < 0 < row["ci_high"] and row["mde"] > row["sesoi"]


def test_time_to_target_ratio():
    result = _result({"fast": 0.4}, noise=0.0)
    ttt = cmp.time_to_target(result, "fast")
    # fast reaches 0.8 at step 0.8/1.2*1000 = 667 -> first evaluation 750; uniform at 1000
    assert ttt.ratio == pytest.approx(0.75)
    assert ttt.arm_never == 0 and math.isfinite(ttt.ratio)


def test_runs_evaluated_once_have_no_time_to_target():
    result = _result({"fast": 0.4}, noise=0.0)
    last = result.curves[result.curves["step"] == result.curves["step"].max()]
    once = dataclasses.replace(result, curves=last.reset_index(drop=True))
    ttt = cmp.time_to_target(once, "fast")
    assert math.isnan(ttt.ratio) and ttt.n == 0 and ttt.arm_never == 0  # not "1.00, all never"
    row = cmp.compare({("adamw", "bed"): once}).iloc[0]
    assert row["outcome"] == "better"  # the test-metric verdict does not need the curve
    shown = cmp.verdict_table(cmp.compare({("adamw", "bed"): once}))
    assert shown.loc[0, "steps to uniform's score"] == "n/a"


def test_compare_of_nothing_has_the_same_columns():
    full = cmp.compare({("adamw", "bed"): _result({"up": 0.05}, noise=0.01, jitter=0.002)})
    empty = cmp.compare({})
    assert list(empty.columns) == list(full.columns) and empty.empty
    assert cmp.sensitivity_of({}).empty and cmp.runs_of({}).empty


def test_verdict_table_names_the_metric_only_where_rows_mix_them(compare_row):
    row = compare_row(group="g", arm="xi=0.8", time_never=0)
    accuracy = cmp.verdict_table(pd.DataFrame([row]))
    assert "metric" not in accuracy and accuracy.loc[0, "arm acc"] == "0.810"
    loss = {**row, "testbed": "text", "metric": "test_loss", "arm_mean": 1.95}
    mixed = cmp.verdict_table(pd.DataFrame([row, loss]))
    assert mixed["metric"].tolist() == ["test_acc", "test_loss"]
    assert mixed["arm mean"].tolist() == ["0.810", "1.950"] and "arm acc" not in mixed


def test_verdict_table_of_no_comparison_is_an_empty_table():
    """While every comparison is pending (CI, training forbidden), the table has no rows."""
    shown = cmp.verdict_table(cmp.compare({}))
    assert len(shown) == 0 and "outcome" in shown and "steps to uniform's score" in shown
