"""Confidence intervals against scipy's own interval, and the baseline verdict rule."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from layerwise.harness import stats
from layerwise.studies import baselines as verdicts


def test_mean_ci_matches_scipy_t_interval():
    values = [0.91, 0.93, 0.92, 0.95, 0.90]
    mean, low, high = stats.mean_ci(values)
    ref = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / 5, scale=scipy_stats.sem(values)
    )
    assert mean == pytest.approx(0.922) and (low, high) == pytest.approx(ref)


def test_one_value_has_no_interval_and_bad_input_fails():
    mean, low, high = stats.mean_ci([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="non-finite"):
        stats.mean_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_ci([])


def test_paired_difference():
    mean, low, high = stats.paired_difference_ci([1.0, 2.0, 3.0], [0.5, 1.0, 2.5])
    assert mean == pytest.approx((0.5 + 1.0 + 0.5) / 3) and low < mean < high
    with pytest.raises(ValueError, match="differ in size"):
        stats.paired_difference_ci([1.0], [1.0, 2.0])


@pytest.mark.parametrize(
    ("mean", "published", "larger", "expected"),
    [
        (0.93, 0.94, True, "reproduced"),  # 1 point worse: within 2
        (0.97, 0.94, True, "reproduced"),  # better is fine
        (0.91, 0.94, True, "not reproduced"),  # 3 points worse
        (1.90, 1.88, False, "reproduced"),  # loss 0.02 higher: within 0.05
        (1.95, 1.88, False, "not reproduced"),
    ],
)
def test_baseline_verdict(mean, published, larger, expected):
    tolerance = 0.02 if larger else 0.05
    assert verdicts.baseline_verdict(mean, published, tolerance, larger) == expected


def test_untuned_and_empty_results_are_not_verdicts():
    assert verdicts.baseline_verdict(0.99, 0.9, 0.02, True, tuned=False) == "not tuned"
    assert verdicts.baseline_verdict(math.nan, 0.9, 0.02, True) == "no result"
    assert stats.format_ci(0.5, math.nan, math.nan) == "0.500"
    assert stats.format_ci(0.5, 0.4, 0.6) == "0.500 [0.400, 0.600]"


def test_baseline_summary_names_each_testbed_once():
    import pandas as pd

    table = pd.DataFrame(
        {"testbed": ["a", "b", "c"], "verdict": ["reproduced", "not reproduced", "reproduced"]}
    )
    text = verdicts.baseline_summary(table)
    lines = text.splitlines()
    assert lines[0].startswith("2 testbed(s) match") and lines[0].endswith(": a, c.")
    assert lines[1].startswith("1 testbed(s) fall short") and lines[1].endswith(": b.")
    assert len(lines) == 2
