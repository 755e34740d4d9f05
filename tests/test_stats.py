"""Summaries with uncertainty: t intervals, paired differences, formatting."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from layerwise.harness import stats


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


def test_format_ci():
    assert stats.format_ci(0.5, math.nan, math.nan) == "0.500"
    assert stats.format_ci(0.5, 0.4, 0.6) == "0.500 [0.400, 0.600]"
    assert stats.format_ci(math.nan, 0.4, 0.6) == "n/a"
