"""The statistics of protocol v2, on constructed data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from layerwise.harness import stats

Z95, Z80 = 1.959963984540054, 0.8416212335729143  # normal quantiles, from tables


def shaped(mean: float, sd: float, n: int = 5) -> np.ndarray:
    """``n`` values with exactly this mean and sample SD (so t statistics are known)."""
    z = np.arange(n) - (n - 1) / 2
    return mean + sd * z / z.std(ddof=1)


BASE = np.array([0.90, 0.91, 0.89, 0.92, 0.90])


def four_cases() -> pd.DataFrame:
    """One comparison per outcome, accuracies (larger is better), SESOI one point."""
    return pd.DataFrame(
        {
            "name": ["better", "worse", "equivalent", "inconclusive"],
            "a": [
                BASE + shaped(0.05, 0.002),
                BASE,
                BASE + shaped(0.0, 1e-4),
                BASE + shaped(0.02, 0.1),
            ],
            "b": [BASE, BASE + shaped(0.05, 0.002), BASE, BASE],
            "sesoi": 0.01,
            "bounds": [(0.0, 1.0)] * 4,
        }
    )


# ------------------------------------------------------------------------------ means over seeds


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
    mean, low, high = stats.mean_ci([0.5], bounds=(0, 1))
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="non-finite"):
        stats.mean_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_ci([])
    with pytest.raises(ValueError, match="outside"):
        stats.mean_ci([0.5, 1.2], bounds=(0, 1))


def test_paired_difference():
    mean, low, high = stats.paired_difference_ci([1.0, 2.0, 3.0], [0.5, 1.0, 2.5])
    assert mean == pytest.approx((0.5 + 1.0 + 0.5) / 3) and low < mean < high
    with pytest.raises(ValueError, match="differ in size"):
        stats.paired_difference_ci([1.0], [1.0, 2.0])


def test_format_ci():
    assert stats.format_ci(0.5, math.nan, math.nan) == "0.500"
    assert stats.format_ci(0.5, 0.4, 0.6) == "0.500 [0.400, 0.600]"
    assert stats.format_ci(math.nan, 0.4, 0.6) == "n/a"


@pytest.mark.parametrize(
    "values",
    [[0.99, 1.0], [1.0, 0.99, 1.0], [0.99, 1.0, 1.0, 1.0], [1.0, 1.0, 0.99, 1.0, 1.0], [0.0, 0.02]],
)
def test_bounded_mean_interval_stays_in_range(values):
    _, t_low, t_high = stats.mean_ci(values)
    assert t_low < 0 or t_high > 1  # the plain t interval does leave [0, 1] here
    mean, low, high = stats.mean_ci(values, bounds=(0.0, 1.0))
    assert 0.0 <= low <= mean <= high <= 1.0
    # inside the range it is the t interval itself (intersection, same coverage)
    assert (low, high) == (max(t_low, 0.0), min(t_high, 1.0))


def test_paired_intervals_stay_in_difference_range():
    a, b = [1.0, 0.99], [0.5, 0.0]  # differences 0.5 and 0.99; two pairs: t_{0.975,1} = 12.7
    _, t_low, t_high = stats.paired_difference_ci(a, b)
    assert t_high > 1
    _, low, high = stats.paired_difference_ci(a, b, bounds=(0, 1))
    assert -1 <= low and high == 1.0
    result = stats.compare_paired(a, b, sesoi=0.01, bounds=(0, 1))
    assert -1 <= result.ci_low <= result.ci_high <= 1
    assert -1 <= result.tost_low <= result.tost_high <= 1
    for n in range(2, 6):  # accuracies near 1, every interval of the family table in range
        table = pd.DataFrame(
            {
                "a": [[1.0, 0.99] * n, [0.99] * (2 * n - 1) + [1.0]],
                "b": [[0.0, 1.0] * n, [1.0] * (2 * n)],
                "sesoi": 0.01,
                "bounds": [(0.0, 1.0)] * 2,
            }
        )
        out = stats.compare_family(table)
        assert ((out["ci_low"] >= -1) & (out["ci_high"] <= 1)).all()


# ------------------------------------------------------------------------- paired comparisons


def test_compare_paired_matches_scipy_and_tost_duality():
    a, b = BASE + shaped(0.004, 0.003), BASE
    r = stats.compare_paired(a, b, sesoi=0.01)
    assert r.n == 5 and r.effect == pytest.approx(0.004) and r.sd == pytest.approx(0.003)
    assert r.p == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert (r.effect, r.ci_low, r.ci_high) == pytest.approx(stats.paired_difference_ci(a, b))
    # TOST by hand: two one-sided t-tests at the margins
    se = 0.003 / math.sqrt(5)
    p_lower = scipy_stats.t.sf((0.004 + 0.01) / se, 4)
    p_upper = scipy_stats.t.cdf((0.004 - 0.01) / se, 4)
    assert r.p_tost == pytest.approx(max(p_lower, p_upper), rel=1e-9)
    # equivalent at 5% exactly when the 90% interval lies inside (-sesoi, sesoi)
    assert (r.p_tost < 0.05) == (-0.01 < r.tost_low and r.tost_high < 0.01)
    assert r.p_tost < 0.05
    wide = stats.compare_paired(BASE + shaped(0.004, 0.02), BASE, sesoi=0.01)
    assert wide.p_tost > 0.05 and not (-0.01 < wide.tost_low and wide.tost_high < 0.01)


def test_sesoi_from_relative_error():
    assert stats.sesoi_from_error(0.08) == pytest.approx(0.008)
    assert stats.sesoi_from_error(0.25, relative=0.2) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        stats.sesoi_from_error(0.0)


def test_holm_hand_computed_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert (adjusted < 0.05).tolist() == [True, False, False, True]
    # untestable comparisons (nan) stay nan and do not count in m
    with_nan = stats.holm([0.01, math.nan, 0.02])
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.02])
    assert stats.holm([0.9, 0.3]) == pytest.approx([0.9, 0.6])  # 0.3*2, then 0.9*1
    assert stats.holm([0.6, 0.7]).tolist() == [1.0, 1.0]  # 0.6*2 capped; monotone


def test_four_outcomes_on_constructed_data():
    out = stats.compare_family(four_cases())
    assert out["outcome"].tolist() == ["better", "worse", "equivalent", "inconclusive"]
    assert out["name"].tolist() == ["better", "worse", "equivalent", "inconclusive"]
    assert list(out.columns[-13:]) == [
        "effect", "ci_low", "ci_high", "ci_level", "p", "p_holm", "p_tost", "p_tost_holm",
        "sd", "mde", "sesoi", "n", "outcome",
    ]  # fmt: skip
    assert out["effect"].tolist() == pytest.approx([0.05, -0.05, 0.0, 0.02], abs=1e-12)
    assert (out["n"] == 5).all() and set(out["outcome"]) <= set(stats.OUTCOMES)


def test_lower_is_better_flips_direction():
    losses = pd.DataFrame(
        {
            "a": [BASE + shaped(0.05, 0.002), BASE],
            "b": [BASE, BASE + shaped(0.05, 0.002)],
            "sesoi": 0.02,
            "larger_is_better": False,
        }
    )
    assert stats.compare_family(losses)["outcome"].tolist() == ["worse", "better"]


def test_zero_spread_cases():
    same = stats.compare_family(pd.DataFrame({"a": [BASE], "b": [BASE.copy()], "sesoi": 0.01}))
    assert same["outcome"].item() == "equivalent" and same["p"].item() == 1.0
    shifted = stats.compare_family(pd.DataFrame({"diff": [[0.25] * 4], "sesoi": 0.01}))
    assert shifted["outcome"].item() == "better"
    assert (shifted["ci_low"].item(), shifted["ci_high"].item()) == (0.25, 0.25)


def test_one_pair_is_inconclusive_and_not_counted_in_the_family():
    table = pd.DataFrame({"diff": [[0.3], shaped(0.05, 0.002).tolist()], "sesoi": 0.01})
    out = stats.compare_family(table)
    assert out["outcome"].tolist() == ["inconclusive", "better"]
    assert math.isnan(out["p"][0]) and math.isnan(out["ci_low"][0])
    assert out["p_holm"][1] == out["p"][1]  # m = 1: the one-pair row is not a test
    empty = stats.compare_family(pd.DataFrame({"name": [], "diff": [], "sesoi": []}))
    assert empty.empty and list(empty.columns)[-1] == "outcome"


def test_diff_column_gives_the_same_as_paired_columns():
    table = four_cases()
    via_diff = table.drop(columns=["a", "b"]).assign(
        diff=[np.asarray(a) - np.asarray(b) for a, b in zip(table["a"], table["b"], strict=True)]
    )
    pd.testing.assert_frame_equal(stats.compare_family(table), stats.compare_family(via_diff))


def test_reported_intervals_agree_with_outcomes():
    # rows 2 and 3 have p ~ 0.03: each alone would be "better" at 5%, but Holm needs
    # p_(1) < 0.025 first, so both are inconclusive -- and their intervals must contain 0
    t3 = scipy_stats.t.isf(0.015, 4)  # two-sided p = 0.03 with n = 5
    table = pd.DataFrame(
        {
            "name": ["strong", "p=0.030", "p=0.031", "equal"],
            "diff": [
                shaped(0.05, 0.002),
                shaped(t3 / math.sqrt(5), 1.0),
                shaped(scipy_stats.t.isf(0.0155, 4) / math.sqrt(5), 1.0),
                shaped(0.0, 1e-4),
            ],
            "sesoi": [0.01, 0.1, 0.1, 0.01],
        }
    )
    out = stats.compare_family(table).set_index("name")
    assert out.loc["p=0.030", "p"] == pytest.approx(0.03)
    plain = stats.compare_paired(table["diff"][1], np.zeros(5), sesoi=0.1)
    assert plain.ci_low > 0  # the unadjusted 95% interval excludes 0 ...
    assert out.loc["p=0.030", "outcome"] == "inconclusive"  # ... but Holm does not reject
    assert out.loc["p=0.031", "outcome"] == "inconclusive"
    for _, row in out.iterrows():
        low, high, sesoi = row["ci_low"], row["ci_high"], row["sesoi"]
        if row["outcome"] == "better":
            assert low > 0
        elif row["outcome"] == "equivalent":
            assert -sesoi < low and high < sesoi
        else:
            assert low <= 0 <= high and (low <= -sesoi or high >= sesoi)
    assert out.loc["strong", "outcome"] == "better" and out.loc["equal", "outcome"] == "equivalent"
    # the smallest p-value gets the Bonferroni level 1 - alpha/m
    assert out.loc["strong", "ci_level"] == pytest.approx(1 - 0.05 / 4)


def test_outcomes_do_not_flip_under_1e9_perturbations():
    table = four_cases()
    base = stats.compare_family(table)["outcome"].tolist()
    rng = np.random.default_rng(7)
    for _ in range(5):
        nudged = table.assign(a=[np.asarray(a) + 1e-9 * rng.standard_normal(5) for a in table["a"]])
        assert stats.compare_family(nudged)["outcome"].tolist() == base


def test_results_are_deterministic():
    first, second = stats.compare_family(four_cases()), stats.compare_family(four_cases())
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    x, y = np.arange(10), np.array([1, 0, 2, 2, 4, 3, 6, 6, 5, 9])
    runs = [stats.kendall_tau_b(x, y, method="permutation", permutations=500) for _ in range(2)]
    assert runs[0] == runs[1]


def test_format_outcome():
    row = {"effect": 0.013, "ci_low": 0.004, "ci_high": 0.022, "outcome": "better", "mde": 0.008}
    assert stats.format_outcome(row) == "+0.013 [+0.004, +0.022] better, MDE 0.008"
    row = {"effect": 0.3, "ci_low": math.nan, "ci_high": math.nan, "outcome": "inconclusive"}
    assert stats.format_outcome({**row, "mde": math.nan}) == "+0.300 inconclusive"
    with pytest.raises(ValueError, match="unknown outcome"):
        stats.format_outcome({**row, "mde": 0.1, "outcome": "no difference"})
    texts = [stats.format_outcome(r) for _, r in stats.compare_family(four_cases()).iterrows()]
    assert texts[0].endswith("better, MDE 0.005") and not any("no difference" in t for t in texts)


def test_count_outcomes_lists_every_outcome_in_order():
    outcomes = pd.Series(["inconclusive", "better", "better"])
    assert stats.count_outcomes(outcomes) == "2 better, 0 worse, 0 equivalent, 1 inconclusive"
    assert stats.count_outcomes([]) == "0 better, 0 worse, 0 equivalent, 0 inconclusive"
    with pytest.raises(ValueError, match="'no difference'"):
        stats.count_outcomes(["better", "no difference"])


def test_unresolved_note_counts_rows_whose_mde_exceeds_the_sesoi():
    table = pd.DataFrame({"mde": [0.05, 0.01, 0.02, float("nan")], "sesoi": [0.02] * 4})
    note = stats.unresolved_note(table)  # 0.02 > 0.02 is false; nan counts as resolved
    assert note.startswith("- 1 of 4 comparisons could not resolve") and note.endswith(").")
    meant = stats.unresolved_note(table, noun="contrasts", not_that="nothing happens")
    assert meant.startswith("- 1 of 4 contrasts")
    assert meant.endswith(
        "): an *inconclusive* there means the seeds were too few, not that nothing happens."
    )
    trials = stats.unresolved_note(table, not_that="it is flat", seeds="fine-tuning seeds")
    assert "means the fine-tuning seeds were too few, not that it is flat." in trials
    with pytest.raises(ValueError, match="'sesoi'"):
        stats.unresolved_note(table[["mde"]])


# ---------------------------------------------------------------------------------------- power


def test_mde_normal_approximation_matches_hand_formula():
    for sd, n in [(1.0, 5), (0.02, 3), (0.3, 40)]:
        expected = (Z95 + Z80) * sd / math.sqrt(n)
        assert stats.minimum_detectable_effect(sd, n, method="normal") == pytest.approx(expected)


def test_mde_has_80_percent_power_by_simulation():
    n, sd = 5, 1.0
    mde = stats.minimum_detectable_effect(sd, n)
    assert mde > stats.minimum_detectable_effect(sd, n, method="normal")  # t is stricter
    rng = np.random.default_rng(0)
    d = rng.normal(mde, sd, size=(40_000, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    power = np.mean(np.abs(t) > scipy_stats.t.isf(0.025, n - 1))
    assert power == pytest.approx(0.8, abs=0.01)  # Monte Carlo SE 0.002
    # and at a Holm-corrected level with two seeds, where scipy's nct is unreliable
    mde2 = stats.minimum_detectable_effect(1.0, 2, alpha=0.05 / 8)
    d = rng.normal(mde2, 1.0, size=(40_000, 2))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(2))
    assert np.mean(np.abs(t) > scipy_stats.t.isf(0.05 / 16, 1)) == pytest.approx(0.8, abs=0.01)


def test_mde_t_approaches_normal_for_many_pairs_and_scales_with_sd():
    t_mde = stats.minimum_detectable_effect(1.0, 2000)
    assert t_mde == pytest.approx((Z95 + Z80) / math.sqrt(2000), rel=2e-3)
    assert stats.minimum_detectable_effect(3.0, 7) == pytest.approx(
        3 * stats.minimum_detectable_effect(1.0, 7)
    )
    assert stats.minimum_detectable_effect(0.0, 5) == 0.0
    assert math.isnan(stats.minimum_detectable_effect(1.0, 1))


@pytest.mark.parametrize(("sd", "sesoi", "alpha"), [(1.0, 0.5, 0.05), (0.01, 0.004, 0.05 / 6)])
def test_seeds_needed_inverts_mde(sd, sesoi, alpha):
    n = stats.seeds_needed(sd, sesoi, alpha=alpha)
    assert stats.minimum_detectable_effect(sd, n, alpha) <= sesoi
    assert stats.minimum_detectable_effect(sd, n - 1, alpha) > sesoi
    # the normal approximation's answer is the textbook ceil(((z + z) sd / sesoi)^2)
    z = scipy_stats.norm.isf(alpha / 2) + Z80
    assert stats.seeds_needed(sd, sesoi, alpha=alpha, method="normal") == math.ceil(
        (z * sd / sesoi) ** 2
    )


def test_seeds_needed_small_cases():
    assert stats.seeds_needed(1.0, 0.5) == 34  # a standardized effect of 0.5: 34 pairs (t test)
    assert stats.seeds_needed(0.0, 0.01) == 2


# ----------------------------------------------------------------------------- rank agreement


def test_kendall_tau_b_on_tied_data_matches_scipy_and_counts_ties():
    x = [1, 2, 3, 4, 5, 6]
    y = [10, 10, 20, 30, 30, 30]  # ties: one pair among the 10s, three among the 30s
    r = stats.kendall_tau_b(x, y)
    assert r.tau == pytest.approx(scipy_stats.kendalltau(x, y).statistic, rel=1e-12)
    assert (r.tied_x, r.tied_y, r.n, r.method) == (0, 4, 6, "exact")
    x2 = [1, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9]  # ties on both sides, n beyond exact enumeration
    y2 = [3, 1, 2, 2, 5, 4, 4, 8, 6, 9, 9, 7]
    r2 = stats.kendall_tau_b(x2, y2, permutations=2000)
    assert r2.tau == pytest.approx(scipy_stats.kendalltau(x2, y2).statistic, rel=1e-12)
    assert r2.method == "permutation" and (r2.tied_x, r2.tied_y) == (3, 3)


def test_exact_enumeration_matches_scipy_exact_without_ties():
    x, y = np.arange(7), [2, 1, 4, 3, 7, 5, 6]
    ours = stats.kendall_tau_b(x, y, method="exact")
    ref = scipy_stats.kendalltau(x, y, method="exact")
    assert ours.tau == pytest.approx(ref.statistic) and ours.p == pytest.approx(ref.pvalue)


def test_permutation_p_is_close_to_exact_p():
    rng = np.random.default_rng(3)
    x = np.arange(11)
    y = x + rng.normal(0, 4, size=11)  # untied, moderate agreement
    exact = scipy_stats.kendalltau(x, y, method="exact").pvalue
    perm = stats.kendall_tau_b(x, y, method="permutation", permutations=4000).p
    assert 0.001 < exact < 0.5 and perm == pytest.approx(exact, abs=0.02)
    # with ties: Monte Carlo against the full enumeration
    xt, yt = [1, 2, 3, 4, 5, 6, 7, 8], [1, 1, 3, 2, 5, 5, 5, 4]
    full = stats.kendall_tau_b(xt, yt, method="exact").p
    assert stats.kendall_tau_b(xt, yt, method="permutation", permutations=4000).p == pytest.approx(
        full, abs=0.02
    )


def test_all_tied_is_undefined_and_summary_counts_seeds():
    flat = stats.kendall_tau_b([1, 2, 3, 4], [5, 5, 5, 5])
    assert math.isnan(flat.tau) and math.isnan(flat.p) and flat.method == "undefined"
    summary = stats.summarize_rank_agreement([0.5, 0.8, flat, -0.2, 0.0, 1.0])
    assert (summary.seeds, summary.positive, summary.negative, summary.zero, summary.undefined) == (
        6,
        3,
        1,
        1,
        1,
    )
    assert summary.median == pytest.approx(0.5) and summary.mean == pytest.approx(0.42)
    high = stats.summarize_rank_agreement([1.0, 1.0, 0.6])  # t interval would pass 1
    assert stats.mean_ci([1.0, 1.0, 0.6])[2] > 1
    assert -1 <= high.ci_low <= high.mean <= high.ci_high == 1.0


# ----------------------------------------------------------------------------- time to target


def test_steps_to_target_on_a_hand_built_curve():
    steps = [0, 100, 200, 300, 400]
    acc = [0.1, 0.5, 0.7, 0.69, 0.9]
    assert stats.steps_to_target(steps, acc, 0.7) == 200  # reached exactly counts
    assert stats.steps_to_target(steps, acc, 0.8) == 400
    assert math.isnan(stats.steps_to_target(steps, acc, 0.95))  # never reached
    loss = [2.0, float("nan"), 1.0, 0.8, 0.5]  # a nan evaluation never reaches
    assert stats.steps_to_target(steps, loss, 1.5, larger_is_better=False) == 200
    assert stats.steps_to_target(steps, loss, 0.8, larger_is_better=False) == 300
    with pytest.raises(ValueError, match="increasing"):
        stats.steps_to_target([0, 200, 100], [0, 1, 2], 1)


def test_compare_times_to_target_and_never_reached():
    arm = [100, 200, math.nan, 400, math.nan, 150]
    base = [200, 400, 300, math.nan, math.nan, 300]
    r = stats.compare_times_to_target(arm, base)
    assert (r.n, r.arm_never, r.baseline_never, r.both_never) == (3, 1, 1, 1)
    assert r.ratio == pytest.approx(0.5) and (r.ci_low, r.ci_high) == pytest.approx((0.5, 0.5))
    censored = stats.compare_times_to_target(arm, base, budget=1000)
    expected = [math.log(0.5)] * 2 + [math.log(1000 / 300), math.log(400 / 1000), math.log(0.5)]
    assert censored.log_ratios == pytest.approx(expected) and censored.n == 5
    assert censored.ratio == pytest.approx(math.exp(np.mean(expected)))
    assert censored.ci_low < censored.ratio < censored.ci_high
    # log ratios go into the family table as differences (lower is better, SESOI 10%)
    table = pd.DataFrame(
        {"diff": [censored.log_ratios], "sesoi": math.log(1.1), "larger_is_better": False}
    )
    assert stats.compare_family(table)["outcome"].item() == "inconclusive"


# ----------------------------------------------------------------------- times against depth


def settling_frame(t0: float, fold: float, depths: int, seed_scales: list[float]) -> pd.DataFrame:
    """Convergence times ``t0 * fold**(d / (D - 1)) * scale_seed`` for depths 0..D-1: on the
    log scale a line in relative depth with slope ``ln(fold)`` plus a per-seed offset."""
    rows = [
        {"seed": s, "unit": f"l{d}", "depth": d, "step": t0 * fold ** (d / (depths - 1)) * scale}
        for s, scale in enumerate(seed_scales)
        for d in range(depths)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("depths", [3, 8])
def test_depth_trend_recovers_a_known_slope_whatever_the_number_of_layers(depths):
    frame = settling_frame(20.0, 4.0, depths, [1.0, 1.5, 0.7, 1.2, 0.9])
    trend = stats.depth_trend(frame)
    # seed offsets shift the intercept only: every fit gives ln 4 exactly, so does every resample
    assert trend.slope == pytest.approx(math.log(4.0), abs=1e-12)
    assert trend.fold == pytest.approx(4.0)
    assert trend.ci_low == pytest.approx(math.log(4.0)) == pytest.approx(trend.ci_high)
    assert trend.per_seed == pytest.approx([math.log(4.0)] * 5)
    assert (trend.seeds, trend.points, trend.missing) == (5, 5 * depths, 0)


def test_depth_trend_interval_is_a_seed_bootstrap_of_the_pooled_fit():
    rng = np.random.default_rng(5)
    frame = settling_frame(10.0, 3.0, 4, [1.0] * 6)
    frame["step"] *= np.exp(rng.normal(0, 0.3, len(frame)))
    frame.loc[3, "step"] = np.nan  # one unit never settled
    trend = stats.depth_trend(frame, resamples=500, rng_seed=1)
    rows = frame.dropna()
    x, y = rows["depth"] / 3, np.log(rows["step"])
    assert trend.slope == pytest.approx(np.polyfit(x, y, 1)[0], abs=1e-12)
    assert trend.missing == 1 and trend.points == len(frame) - 1
    # the same bootstrap done by hand: resample seeds with replacement, pooled polyfit
    draws = np.random.default_rng(1).integers(0, 6, size=(500, 6))
    boot = []
    for drawn in draws:
        sample = pd.concat([rows[rows["seed"] == s] for s in drawn])
        boot.append(np.polyfit(sample["depth"] / 3, np.log(sample["step"]), 1)[0])
    assert (trend.ci_low, trend.ci_high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    assert trend.ci_low < trend.slope < trend.ci_high


def test_depth_trend_edge_cases():
    one_seed = settling_frame(10.0, 2.0, 3, [1.0])
    trend = stats.depth_trend(one_seed)
    assert trend.slope == pytest.approx(math.log(2.0)) and math.isnan(trend.ci_low)
    flat = one_seed.assign(depth=0)
    assert math.isnan(stats.depth_trend(flat).slope)
    with pytest.raises(ValueError, match="positive"):
        stats.depth_trend(one_seed.assign(step=0.0))
    with pytest.raises(ValueError, match="'seed'"):
        stats.depth_trend(one_seed.drop(columns="seed"))


def test_geometric_mean_ci_is_the_t_interval_on_logs():
    values = [10.0, 40.0, 20.0, 80.0]
    logs = np.log(values)
    half = scipy_stats.t.ppf(0.975, 3) * logs.std(ddof=1) / 2
    mean, low, high = stats.geometric_mean_ci(values)
    assert mean == pytest.approx(math.exp(logs.mean()))
    assert (low, high) == pytest.approx(
        (math.exp(logs.mean() - half), math.exp(logs.mean() + half))
    )
    with pytest.raises(ValueError, match="positive"):
        stats.geometric_mean_ci([1.0, 0.0])
