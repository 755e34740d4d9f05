"""Study 08 (FreezeOut): its two-stage design, the compute and stop tables against hand-written
formulas, the wall-clock measurement (rotation, storage, pairing within rounds), the effect
table's relative error and verdict 5's three answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from layerwise.freezeout import freeze_times
from layerwise.harness import comparisons, plots
from layerwise.harness.store import Store
from layerwise.harness.tuning import TuningResult
from layerwise.studies import freezeout_savings as design

# --------------------------------------------------------------------------------------------
# design


def test_baseline_is_tuned_under_protocol_v2_with_ten_fresh_seeds():
    (stage1,) = design.plan("full")
    assert list(stage1.arms) == [design.BASELINE]
    assert stage1.protocol.grid == comparisons.COARSE_GRIDS["adamw"]
    assert stage1.protocol.tune_seeds == comparisons.TUNE_SEEDS
    assert stage1.protocol.final_seeds == tuple(range(1, 11))
    config = stage1.arms[design.BASELINE]
    assert config.freezeout is None and "freezeout" not in config.canonical_json()
    assert config.schedule == "cosine" and config.steps == design.STEPS == 421


def test_variants_run_around_the_baselines_rate_and_change_only_the_freezing():
    (stage2,) = design.freezing_plan(0.004, "full")
    assert stage2.protocol.grid == (0.002, 0.004, 0.008)
    assert stage2.protocol.max_extensions == 0 and stage2.protocol.max_spacing == 2.0
    assert stage2.protocol.tune_seeds == comparisons.TUNE_SEEDS
    assert len(stage2.protocol.final_seeds) == 10
    base = stage2.arms[design.BASELINE]
    assert base == design.plan("full")[0].arms[design.BASELINE]  # stage 1's runs are reused
    assert len(stage2.arms) == 1 + 9
    options = {}
    for arm, config in stage2.arms.items():
        assert config.replace(freezeout=None) == base, arm
        options[arm] = dict(config.freezeout) if config.freezeout else None
    # the paper's t_0 is the k-th root of the first stop: cubic 0.8 -> 0.512, 0.5 -> 0.125
    assert options["cubic scaled t0=0.8"] == {
        "t_0": 0.512,
        "spacing": "cubic",
        "scaled": True,
        "anneal": True,
    }
    assert options["cubic unscaled t0=0.5"]["t_0"] == 0.125
    assert options["linear unscaled t0=0.8"]["t_0"] == 0.8
    # freeze training: seven depths (six convolutions and the head), layer i stops at (i+1)/7
    assert options["freeze training"] == {
        "t_0": round(1 / 7, 6),
        "spacing": "linear",
        "scaled": False,
        "anneal": False,
    }
    assert len({c.key() for c in stage2.arms.values()}) == len(stage2.arms)


def test_compute_table_counts_multiply_adds_by_hand():
    table = design.compute_table(design.TESTBED.config).set_index("layer")
    conv = 3 * 3  # kernel
    expected = {
        "body.0": 28 * 28 * 16 * conv * 1,
        "body.2": 28 * 28 * 16 * conv * 16,
        "body.5": 14 * 14 * 16 * conv * 16,
        "body.7": 14 * 14 * 16 * conv * 16,
        "body.10": 7 * 7 * 16 * conv * 16,
        "body.12": 7 * 7 * 16 * conv * 16,
        "head": 16 * 3 * 3 * 10,
    }
    assert table["macs"].to_dict() == expected
    assert table["depth"].tolist() == list(range(7))
    assert table["share"].sum() == pytest.approx(1.0)
    assert table.loc[["body.0", "body.2"], "share"].sum() > 0.6  # the early convolutions


def _simulated_mac_saving(forward: list[int], stops: list[float], steps: int = 5000) -> float:
    """Step by step: a layer computes its weight gradient while it trains and its input
    gradient while any layer below it trains."""
    total = spent = 0.0
    for s in range(steps):
        t = (s + 0.5) / steps
        trains = [t < t_i for t_i in stops]
        base = sum(forward) + sum(forward) + sum(forward[1:])
        cost = sum(forward)
        for j, f in enumerate(forward):
            cost += f if trains[j] else 0
            cost += f if any(trains[:j]) else 0
        total, spent = total + base, spent + cost
    return 1 - spent / total


def test_mac_savings_match_a_step_by_step_count():
    forward = design.compute_table(design.TESTBED.config)["macs"].tolist()
    table = design.mac_savings("full").set_index("arm")["mac_saving"]
    for arm, config in design.freezing_plan(0.004)[0].arms.items():
        if config.freezeout is None:
            continue
        stops = freeze_times(7, config.freezeout["t_0"], config.freezeout["spacing"])
        assert table[arm] == pytest.approx(_simulated_mac_saving(forward, stops), abs=2e-3), arm
    assert table["linear unscaled t0=0.8"] < table["linear unscaled t0=0.5"]


def test_stop_table_lists_each_layers_stop_in_depth_order():
    table = design.stop_table("full").set_index("arm")
    assert list(table.columns[:7]) == ["body.0", "body.2", "body.5", "body.7", "body.10"] + [
        "body.12",
        "head",
    ]
    assert table.loc["linear unscaled t0=0.5", "body.0"] == pytest.approx(0.5)
    assert table.loc["linear unscaled t0=0.5", "body.2"] == pytest.approx(0.5 + 0.5 / 6)
    assert table.loc["freeze training", "body.5"] == pytest.approx(3 / 7, abs=1e-6)
    assert (table["head"] == 1.0).all()


# --------------------------------------------------------------------------------------------
# wall clock


def _one_thread_arms():
    """Stage 2's arms of the smoke profile, one thread each (what the timing runs)."""
    stage2 = design.freezing_plan(0.004, "smoke")[0]
    return {arm: c.replace(threads=1) for arm, c in stage2.arms.items()}


def test_timing_rotates_the_order_stores_the_times_and_reads_them_back(tmp_path, monkeypatch):
    monkeypatch.delenv("LAYERWISE_REQUIRE_STORED", raising=False)
    configs = _one_thread_arms()
    arms = list(configs)
    calls = []

    def fake_run(config):
        arm = next(a for a, c in configs.items() if c == config)
        calls.append(arm)
        return {"step_time_s": 1.0 + arms.index(arm), "status": "ok"}

    store = Store(tmp_path)
    times = design.measure_step_times(configs, "08", store=store, repeats=3, run=fake_run)
    assert calls == arms + arms[1:] + arms[:1] + arms[2:] + arms[:2]
    assert len(times) == 9 and set(times["round"]) == {0, 1, 2}
    saved = json.loads((tmp_path / "08" / "timing" / "step_times.json").read_text())
    assert saved["threads"] == 1 and saved["keys"] == {a: c.key() for a, c in configs.items()}

    def must_not_run(config):
        raise AssertionError("timed again although the store holds the times")

    again = design.measure_step_times(configs, "08", store=store, repeats=3, run=must_not_run)
    pd.testing.assert_frame_equal(again, times)
    changed = {**configs, arms[0]: configs[arms[0]].replace(lr=0.5)}
    monkeypatch.setenv("LAYERWISE_REQUIRE_STORED", "1")
    assert design.measure_step_times(changed, "08", store=store, repeats=3) is None


def test_timing_killed_mid_way_times_only_the_rounds_it_lacks(tmp_path, monkeypatch):
    monkeypatch.delenv("LAYERWISE_REQUIRE_STORED", raising=False)
    configs = _one_thread_arms()
    arms = list(configs)
    calls = []

    def dies_in_round_two(config):
        if len(calls) == len(arms) + 1:  # the second arm of round 1
            raise KeyboardInterrupt
        calls.append(config)
        return {"step_time_s": 2.0, "status": "ok"}

    store = Store(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        design.measure_step_times(configs, "08", store=store, repeats=3, run=dies_in_round_two)
    saved = json.loads((tmp_path / "08" / "timing" / "step_times.json").read_text())
    assert saved["rounds_done"] == 1 and len(saved["rows"]) == len(arms)
    monkeypatch.setenv("LAYERWISE_REQUIRE_STORED", "1")
    assert design.measure_step_times(configs, "08", store=store, repeats=3) is None  # pending
    monkeypatch.delenv("LAYERWISE_REQUIRE_STORED")
    resumed = []

    def fake_run(config):
        resumed.append(next(a for a, c in configs.items() if c == config))
        return {"step_time_s": 1.0, "status": "ok"}

    times = design.measure_step_times(configs, "08", store=store, repeats=3, run=fake_run)
    assert resumed == arms[1:] + arms[:1] + arms[2:] + arms[:2]  # rounds 1 and 2 only
    assert sorted(times["round"].unique()) == [0, 1, 2] and len(times) == 3 * len(arms)
    assert (times[times["round"] == 0]["step_time_s"] == 2.0).all()
    # fewer rounds asked for than stored: the first ones, without timing
    fewer = design.measure_step_times(configs, "08", store=store, repeats=2, run=None)
    assert sorted(fewer["round"].unique()) == [0, 1]


def test_saving_is_paired_within_rounds():
    baseline = [1.0, 1.3, 0.8, 1.1, 0.9]  # the machine drifts from round to round
    rows = [
        {"arm": arm, "round": r, "step_time_s": t * factor}
        for r, t in enumerate(baseline)
        for arm, factor in (("baseline", 1.0), ("fast", 0.8))
    ]
    table = design.saving_table(pd.DataFrame(rows)).set_index("arm")
    # the drift cancels: the saving is exactly 20% in every round, so the interval is a point
    assert table.loc["fast", "saving"] == pytest.approx(0.2)
    assert table.loc["fast", ["saving_low", "saving_high"]].tolist() == pytest.approx([0.2, 0.2])
    assert table.loc["baseline", "noise_cv"] == pytest.approx(
        np.std(baseline, ddof=1) / np.mean(baseline)
    )
    noisy = pd.DataFrame(rows).assign(
        step_time_s=lambda f: f["step_time_s"] * np.where(f["round"] % 2, 1.05, 1.0)
    )
    noisy.loc[noisy["arm"] == "baseline", "step_time_s"] = np.repeat(baseline, 1)
    row = design.saving_table(noisy).set_index("arm").loc["fast"]
    logs = np.log([0.8 * (1.05 if r % 2 else 1.0) for r in range(5)])
    half = 2.7764451051977987 * logs.std(ddof=1) / math.sqrt(5)  # t(0.975, 4)
    assert row["saving"] == pytest.approx(1 - math.exp(logs.mean()))
    assert row["saving_low"] == pytest.approx(1 - math.exp(logs.mean() + half))
    assert row["saving_high"] == pytest.approx(1 - math.exp(logs.mean() - half))
    assert design.saving_table(None) is None


# --------------------------------------------------------------------------------------------
# effects and verdict


def _tuned(base_acc: list[float], arm_acc: list[float], arm_interior: bool = True) -> design.Tuned:
    """A stage-2 result with one variant, its test accuracies given per seed."""
    stage2 = design.freezing_plan(0.004, "smoke")[0]
    arm = "linear unscaled t0=0.8"
    stage2 = comparisons.Comparison(
        stage2.group,
        stage2.bed,
        {a: stage2.arms[a] for a in (design.BASELINE, arm)},
        stage2.design[stage2.design["arm"].isin([design.BASELINE, arm])],
        stage2.protocol,
    )
    final, curves = [], []
    for name, accs in ((design.BASELINE, base_acc), (arm, arm_acc)):
        for seed, acc in enumerate(accs, start=1):
            final.append(
                {"arm": name, "seed": seed, "status": "ok", "test_acc": acc, "val_acc": acc}
            )
            curves += [
                {"arm": name, "seed": seed, "step": s, "val_acc": acc * s / 20} for s in (10, 20)
            ]
    summary = pd.DataFrame(
        [
            {"arm": design.BASELINE, "best_lr": 0.004, "interior": True},
            {"arm": arm, "best_lr": 0.004, "interior": arm_interior},
        ]
    )
    result = TuningResult("acc", pd.DataFrame(), pd.DataFrame(final), summary, pd.DataFrame(curves))
    return design.Tuned(None, stage2, {stage2.key: result}, [])


def test_pending_figures_are_placeholders_that_are_not_saved():
    assert plots.is_placeholder(design.plot_step_times(pd.DataFrame()))
    assert plots.is_placeholder(design.plot_saving_vs_error(pd.DataFrame()))


def test_effect_table_gives_the_relative_change_in_test_error():
    base = [0.90, 0.91, 0.89, 0.90, 0.90]
    arm = [0.89, 0.905, 0.885, 0.893, 0.897]
    table = design.effect_table(_tuned(base, arm)).set_index("arm")
    row = table.loc["linear unscaled t0=0.8"]
    base_error = 1 - np.mean(base)
    assert row["error_change"] == pytest.approx((np.mean(base) - np.mean(arm)) / base_error)
    assert row["error_change_low"] == pytest.approx(-row["ci_high"] / base_error)
    assert row["error_change_high"] == pytest.approx(-row["ci_low"] / base_error)
    assert row["error_change_low"] < row["error_change"] < row["error_change_high"]
    assert row["sesoi"] == pytest.approx(0.03 * base_error)  # 3% of the baseline's error
    assert row["spacing"] == "linear"
    assert design.effect_table(design.Tuned(None, None, {}, ["pending"])) is None


def _verdict_row(arm, saving, low, high, error, error_low, error_high, tuned=True):
    return (
        {
            "arm": arm,
            "spacing": "linear",
            "best_lr": 0.004,
            "tuned": tuned,
            "error_change": error,
            "error_change_low": error_low,
            "error_change_high": error_high,
            "outcome": "equivalent",
        },
        {"arm": arm, "saving": saving, "saving_low": low, "saving_high": high},
    )


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (("a", 0.15, 0.12, 0.18, 0.01, -0.01, 0.025), "yes"),
        (("a", 0.15, 0.12, 0.18, 0.01, -0.01, 0.025, False), "partly"),  # not tuned
        (("a", 0.15, 0.08, 0.22, 0.01, -0.01, 0.025), "partly"),  # saving interval reaches 8%
        (("a", 0.15, 0.12, 0.18, 0.02, -0.01, 0.05), "partly"),  # error interval reaches 5%
        (("a", 0.15, 0.12, 0.18, 0.04, 0.035, 0.05), "no"),
        (("a", 0.08, 0.07, 0.09, 0.0, -0.01, 0.01), "no"),
    ],
)
def test_verdict5_needs_both_intervals_inside_the_target(row, expected):
    effect, saving = _verdict_row(*row)
    verdict = design.verdict5(pd.DataFrame([effect]), pd.DataFrame([saving]))
    assert verdict["meets target"].tolist() == [expected]
    assert design.answer(verdict).startswith(
        f"**Verdict 5 (FreezeOut saves >= 10% of the training time for <= 3% more relative test "
        f"error): {expected}.**"
    )


def test_answer_names_the_variants_and_the_largest_saving():
    rows = [
        _verdict_row("slow", 0.04, 0.03, 0.05, 0.0, -0.01, 0.01),
        _verdict_row("fast", 0.30, 0.25, 0.35, 0.10, 0.05, 0.15),
    ]
    verdict = design.verdict5(
        pd.DataFrame([e for e, _ in rows]), pd.DataFrame([s for _, s in rows])
    )
    lines = design.answer(verdict).splitlines()
    assert lines[0].endswith(": no.**")
    assert lines[2].startswith("- Largest saving: fast, +30.0% [+25.0, +35.0]")
    assert "test error +10.0% [+5.0, +15.0] relative" in lines[2]
    assert lines[3].endswith(
        "0 better, 0 worse, 2 equivalent, 0 inconclusive; 0 not tuned at the baseline's rate."
    )
    pending = design.verdict5(None, None)
    assert not len(pending) and "pending" in design.answer(pending)
