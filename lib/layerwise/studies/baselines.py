"""Verdicts computed from results: is a published number reproduced within its tolerance?"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from ..harness.stats import format_ci
from ..harness.testbeds import Testbed

__all__ = ["baseline_summary", "baseline_table", "baseline_verdict"]


def baseline_verdict(
    mean: float, published: float, tolerance: float, larger_is_better: bool, tuned: bool = True
) -> str:
    """``"reproduced"`` when ours is no worse than ``published`` by more than ``tolerance``
    (being better is fine), ``"not reproduced"`` otherwise, ``"not tuned"`` when the best rate
    sat on the edge of its grid, ``"no result"`` when every run failed.

    Worse means lower for accuracy (``larger_is_better``) and higher for a loss.
    """
    if not tuned:
        return "not tuned"
    if not math.isfinite(mean):
        return "no result"
    shortfall = (published - mean) if larger_is_better else (mean - published)
    return "reproduced" if shortfall <= tolerance else "not reproduced"


def baseline_table(summary: pd.DataFrame, testbeds: Mapping[str, Testbed]) -> pd.DataFrame:
    """One row per testbed: published number, ours (test mean with 95% CI), chosen rate, verdict.

    ``summary`` is ``TuningResult.summary`` (one or several concatenated); its ``arm`` column
    names the testbed.
    """
    rows = []
    for _, s in summary.iterrows():
        bed = testbeds[s["arm"]]
        col = f"test_{bed.metric}"
        mean, low, high = s[f"{col}_mean"], s[f"{col}_ci_low"], s[f"{col}_ci_high"]
        larger = bed.metric == "acc"
        if bed.published is None:
            verdict = "no reference" if s["interior"] else "not tuned"
        else:
            verdict = baseline_verdict(mean, bed.published, bed.tolerance, larger, s["interior"])
        rows.append(
            {
                "testbed": bed.name,
                "metric": col,
                "published": "-" if bed.published is None else f"{bed.published:g}",
                "tolerance": "-" if bed.tolerance is None else f"{bed.tolerance:g}",
                "ours (95% CI)": format_ci(mean, low, high),
                "seeds": f"{int(s['seeds']) - int(s['failures'])}/{int(s['seeds'])}",
                "best lr": f"{s['best_lr']:.3g}",
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def baseline_summary(table: pd.DataFrame) -> str:
    """One sentence per verdict class, naming the testbeds in it (from ``baseline_table``)."""
    sentences = []
    for verdict, meaning in (
        ("reproduced", "match their published number within tolerance"),
        ("not reproduced", "fall short of their published number by more than the tolerance"),
        ("not tuned", "had their best rate on the edge of the grid, so they give no verdict"),
        ("no reference", "have no published number; they are reported for later studies"),
        ("no result", "failed on every seed"),
    ):
        names = table.loc[table["verdict"] == verdict, "testbed"].tolist()
        if names:
            sentences.append(f"{len(names)} testbed(s) {meaning}: {', '.join(names)}.")
    return "\n".join(sentences)
