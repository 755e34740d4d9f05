"""The baseline verdict rule (the statistics themselves are tested in test_stats.py)."""

from __future__ import annotations

import math

import pytest

from layerwise.studies import baselines as verdicts


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
