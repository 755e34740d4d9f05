"""Study 01's verdict rule, its recipes and its tables (the statistics themselves are tested in
test_stats.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from layerwise.harness import comparisons
from layerwise.studies import baselines as design
from layerwise.studies import discriminative_rates


@pytest.mark.parametrize(
    ("low", "high", "published", "larger", "expected"),
    [
        (0.93, 0.95, 0.94, True, "reproduced"),  # whole interval above 0.92
        (0.92, 0.93, 0.94, True, "reproduced"),  # touching the edge counts as inside
        (0.96, 0.99, 0.94, True, "reproduced"),  # better is fine
        (0.90, 0.93, 0.94, True, "inconclusive"),  # straddles 0.92
        (0.85, 0.91, 0.94, True, "not reproduced"),  # whole interval below 0.92
        (1.85, 1.92, 1.88, False, "reproduced"),  # loss: whole interval below 1.93
        (1.90, 1.97, 1.88, False, "inconclusive"),
        (1.94, 1.99, 1.88, False, "not reproduced"),
    ],
)
def test_band_verdict_reads_the_whole_interval(low, high, published, larger, expected):
    tolerance = 0.02 if larger else 0.05
    assert design.band_verdict(low, high, published, tolerance, larger) == expected


def test_band_verdict_without_an_interval_is_no_result_and_bad_input_is_refused():
    assert design.band_verdict(math.nan, math.nan, 0.9, 0.02, True) == "no result"
    with pytest.raises(ValueError, match=r"\[0.95, 0.9\]"):
        design.band_verdict(0.95, 0.9, 0.9, 0.02, True)
    with pytest.raises(ValueError, match="-0.1"):
        design.band_verdict(0.9, 0.95, 0.9, -0.1, True)


def test_mnist1d_recipes_are_the_reference_training():
    """The reference code: Adam 1e-2, batch 100, 8,000 steps, constant rate, all 4,000
    training examples, scored on the published test set; ten fresh seeds."""
    for name in ("mnist1d/mlp", "mnist1d/cnn", "mnist1d/gru"):
        configs = design.recipe_configs()[name]
        assert [c.seed for c in configs] == list(range(1, 11))
        c = configs[0]
        assert (c.optimizer, c.lr, c.batch_size, c.steps, c.schedule) == (
            "adamw",
            1e-2,
            100,
            8000,
            "constant",
        )
        assert c.optimizer_options["weight_decay"] == 0.0
        assert c.model_options == {"variant": "reference"}
        assert c.data_options == {"splits": "generated"}
    metric = {r.testbed: r.metric for r in design.RECIPES}
    assert metric["mnist1d/gru"] == "reference_test_acc"
    assert metric["tinyshakespeare/transformer"] == "test_loss"


def test_study_plan_is_study_03s_uniform_arms():
    """01 reads these runs from 03's store, so the configs must be the same keys."""
    uniform_03 = {
        c.bed.name: c.arms["uniform"].key()
        for c in discriminative_rates.plan()
        if c.group == "adamw"
    }
    ours = {c.bed.name: c.arms["uniform"].key() for c in design.study_plan()}
    assert ours == uniform_03
    assert all(
        c.protocol == comparisons.protocol(c.bed.config.dataset, "adamw")
        for c in design.study_plan()
    )


def _runs(name: str, values: list[float], column: str, failed: int = 0) -> pd.DataFrame:
    configs = design.recipe_configs()[name]
    rows = [
        {"key": c.key(), "status": "ok", column: v, "test_acc": v - 0.01}
        for c, v in zip(configs, values, strict=False)
    ]
    rows += [
        {"key": c.key(), "status": "diverged", column: math.nan, "test_acc": math.nan}
        for c in configs[len(values) : len(values) + failed]
    ]
    return pd.DataFrame(rows)


def test_recipe_table_counts_failures_and_keeps_the_interval_in_range():
    runs = pd.concat(
        [
            _runs("mnist1d/mlp", [0.70, 0.72, 0.71, 0.69, 0.73], "reference_test_acc", failed=1),
            _runs("fashion_mnist/cnn", [0.999, 1.0, 0.97], "test_acc"),
        ],
        ignore_index=True,
    )
    table = design.recipe_table(runs).set_index("testbed")
    mlp = table.loc["mnist1d/mlp"]
    assert (mlp["seeds"], mlp["failures"]) == (6, 1)
    assert mlp["mean"] == pytest.approx(0.71)
    assert mlp["verdict"] == "reproduced"  # published 0.68 - 0.02 lies below the interval
    assert mlp["fresh_test"] == pytest.approx(0.70)
    cnn = table.loc["fashion_mnist/cnn"]
    assert cnn["ci_high"] <= 1.0 and cnn["ci_low"] < cnn["mean"]
    assert math.isnan(cnn["fresh_test"])  # Fashion-MNIST has one test set
    assert table.loc["mnist1d/gru", "verdict"] == "no result"  # no runs at all


def test_answer_names_each_testbed_under_its_verdict():
    recipes = pd.DataFrame(
        {"testbed": ["a", "b", "c"], "verdict": ["reproduced", "not reproduced", "reproduced"]}
    )
    budgets = pd.DataFrame(
        [
            {
                "testbed": "d",
                "steps": 1000,
                "mean": 0.9,
                "ci_low": 0.88,
                "ci_high": 0.92,
                "published": 0.94,
                "verdict": "inconclusive",
            }
        ]
    )
    lines = design.answer(recipes, budgets).splitlines()
    assert lines[1].startswith("- 2 reach") and lines[1].endswith(": a, c.")
    assert lines[2].startswith("- 1 fall short") and lines[2].endswith(": b.")
    assert lines[-1] == "- d, 1000 steps: 0.900 [0.880, 0.920] (published 0.94) -- inconclusive."
