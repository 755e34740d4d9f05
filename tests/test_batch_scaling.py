"""``harness.batch_scaling``: the batch-size machinery studies 06 (LARS) and 07 (LAMB) share --
budgets in examples or tokens, grids and rates moved by a scaling rule, scaled arms, pairs of
arms judged by the four outcomes with accuracy or loss, drop contrasts, monitored reruns.

Expected values are computed here by hand (square roots, means of per-seed differences),
never copied from a run of the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from layerwise.harness import batch_scaling as bs
from layerwise.harness import comparisons, testbeds
from layerwise.harness.config import RunConfig
from layerwise.harness.tuning import TuningResult

# --------------------------------------------------------------------------------------------
# budgets, grids, rates


def test_a_token_budget_is_spent_in_full_at_every_batch_size():
    budget = bs.Budget(1_638_400, "tokens", 64)
    for batch in (8, 16, 32, 64, 128, 256):
        steps = budget.steps(batch)
        assert steps * batch * 64 == 1_638_400  # the same tokens, fewer steps
    assert (budget.steps(8), budget.steps(256)) == (3200, 100)
    assert budget.per_step(256) == 16_384
    assert budget.fraction(0.05).steps(256) == 5  # 5% of 100 steps
    assert "1,638,400 tokens (25,600 sequences of 64)" == budget.describe()


def test_an_example_budget_rounds_to_the_nearest_step():
    budget = bs.Budget(15 * 54_000)  # 15 epochs of Fashion-MNIST's training split
    assert budget.steps(128) == round(810_000 / 128) == 6328
    assert budget.steps(8192) == 99
    assert abs(budget.steps(8192) * 8192 - 810_000) <= 8192 / 2
    assert bs.Budget(10).steps(1000) == 1  # never zero steps


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0,), "budget must be a positive number, got 0"),
        ((100, "epochs"), r"unknown budget unit 'epochs'; valid: 'examples', 'tokens'"),
        ((100, "examples", 64), "a budget in examples reads one example per item, got block=64"),
        ((100, "tokens", 0), r"tokens per sequence \(block\) must be a whole number >= 1, got 0"),
    ],
)
def test_budget_errors_name_the_bad_value(args, message):
    with pytest.raises(ValueError, match=message):
        bs.Budget(*args)


@pytest.mark.parametrize(
    ("batch", "shift"), [(128, 1), (256, 1), (512, 4), (1024, 4), (4096, 4), (8192, 16)]
)
def test_grid_shift_is_square_root_scaling_on_the_factor_4_lattice(batch, shift):
    assert bs.grid_shift(batch, 128) == shift
    k = round(math.log(shift, 4))
    assert abs(math.log(math.sqrt(batch / 128), 4) - k) <= 0.5


def test_grid_shift_with_another_base_and_exponent():
    # from B0 = 8: sqrt(32) = 5.7 is 4^1.25, so x4 at 256; x1 at 16 (4^0.25)
    assert [bs.grid_shift(b, 8) for b in (8, 16, 32, 64, 128, 256)] == [1, 1, 4, 4, 4, 4]
    # linear scaling on the lattice: 4^round(log4 (B / B0)), halves up (32 = 4^2.5 -> 64)
    assert [bs.grid_shift(b, 8, exponent=1.0) for b in (8, 16, 32, 128, 256)] == [1, 4, 4, 16, 64]
    with pytest.raises(ValueError, match="batch size must be a whole number >= 1, got 0"):
        bs.grid_shift(64, 0)


def test_grid_at_moves_every_point_and_keeps_the_factor_4():
    arm = bs.Arm("lamb", {}, (2.5e-3, 1e-2, 4e-2, 0.16), "x")
    assert bs.grid_at(arm, 8, 8) == arm.grid
    assert bs.grid_at(arm, 256, 8) == (0.01, 0.04, 0.16, 0.64)


@pytest.mark.parametrize("batch", [16, 32, 64, 128, 256])
def test_square_root_scaling_multiplies_the_rate_by_sqrt_b_over_b0(batch):
    lr = bs.scaled_rate(0.0123, batch, 8, "sqrt")
    assert lr == pytest.approx(0.0123 * math.sqrt(batch / 8), rel=5e-4)  # 4 digits kept
    assert lr == float(f"{lr:.4g}")
    linear = bs.scaled_rate(0.0123, batch, 8, "linear")
    assert linear == pytest.approx(0.0123 * batch / 8, rel=5e-4)
    assert linear / lr == pytest.approx(math.sqrt(batch / 8), rel=1e-3)


def test_scaling_rule_errors_list_the_valid_rules():
    with pytest.raises(ValueError, match=r"unknown scaling rule 'cube'; valid: 'linear', 'sqrt'"):
        bs.scaled_rate(0.01, 16, 8, "cube")
    with pytest.raises(ValueError, match="learning rate must be a positive number, got -0.1"):
        bs.scaled_rate(-0.1, 16, 8, "sqrt")


def _base() -> RunConfig:
    return RunConfig(
        dataset="mnist1d", model="mlp", lr=1e-3, batch_size=16, steps=10, model_options={"width": 8}
    )


def test_batch_config_spends_the_budget_with_warmup_and_decay():
    arm = bs.Arm("adamw", {"weight_decay": 0.0}, (1e-3, 4e-3, 1.6e-2, 6.4e-2), "x")
    budget = bs.Budget(81_920)
    config = bs.batch_config(_base(), arm, 512, budget, warmup=budget.fraction(0.05), power=1.0)
    assert (config.steps, config.batch_size, config.epochs) == (160, 512, None)
    assert config.schedule == "polynomial"
    assert dict(config.schedule_options) == {"power": 1.0, "warmup": 8}
    assert config.eval_every == 20 and config.lr == 1e-3
    assert (config.optimizer, dict(config.optimizer_options)) == ("adamw", {"weight_decay": 0.0})
    smoke = bs.batch_config(_base(), arm, 512, None, warmup=None, power=1.0, profile="smoke")
    assert (smoke.steps, smoke.schedule_options["warmup"]) == (comparisons.SMOKE_STEPS, 2)
    gpu = bs.batch_config(_base(), arm, 16, budget, warmup=budget, power=2.0, device="cuda")
    assert gpu.device == "cuda"


def test_tuned_comparison_uses_the_moved_grid_and_the_full_protocol():
    arm = bs.Arm("adamw", {}, (2.5e-4, 1e-3, 4e-3, 1.6e-2), "x")
    bed = testbeds.Testbed("t", _base().replace(batch_size=256), "acc", None, None, "")
    c = bs.tuned_comparison(bed, "adamw", arm, 8, design={"optimizer": "adamw"})
    assert c.group == "adamw · B=256" and bs.batch_of(c.group) == 256
    assert c.protocol.grid == (1e-3, 4e-3, 1.6e-2, 6.4e-2)
    assert c.protocol.tune_seeds == comparisons.TUNE_SEEDS and c.protocol.max_spacing == 2
    assert c.protocol.final_seeds == comparisons.FINAL_SEEDS["mnist1d"]
    assert c.design.to_dict("records") == [
        {"arm": "adamw", "batch_size": 256, "optimizer": "adamw"}
    ]
    smoke = bs.tuned_comparison(bed, "adamw", arm, 8, profile="smoke")
    assert smoke.protocol.tune_seeds == (100,) and len(smoke.protocol.grid) == 3


# --------------------------------------------------------------------------------------------
# results made up by hand


def _result(values, best, metric="loss", interior=True):
    """A TuningResult of final runs on seeds 1..n with the given test metric; None: diverged."""
    final, summary, curves = [], [], []
    for arm, per_seed in values.items():
        for seed, v in enumerate(per_seed, 1):
            final.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "lr": best[arm],
                    "status": "ok" if v is not None else "diverged",
                    f"test_{metric}": v,
                    f"val_{metric}": v,
                }
            )
            for step in (10, 20):
                curves.append({"arm": arm, "seed": seed, "step": step, f"val_{metric}": v or 9.0})
        summary.append(
            {
                "arm": arm,
                "best_lr": best[arm],
                "interior": interior,
                "failures": sum(v is None for v in per_seed),
                "tune_seeds": 3,
                "spacing": 2.0,
            }
        )
    return TuningResult(
        metric, pd.DataFrame(), pd.DataFrame(final), pd.DataFrame(summary), pd.DataFrame(curves)
    )


BEST = {"adamw": 1e-3, "lamb": 4e-2, "abl": 4e-2, "lamb s": 0.2, "adamw s": 0.005}
NOISE = [0.004, -0.003, 0.001, -0.002, 0.0, 0.002]


def _losses(level, wiggle=1.0):
    return [level + wiggle * e for e in NOISE]


def test_compare_pairs_reads_a_loss_as_lower_is_better_across_baselines():
    merged = {
        ("B=256", "text"): _result(
            {
                "adamw": _losses(2.50),
                "lamb": _losses(2.40, 0.5),  # 0.1 nats lower: better
                "abl": _losses(2.60, 0.7),  # 0.2 nats above LAMB: worse against LAMB
            },
            BEST,
        )
    }
    table = bs.compare_pairs(merged, [("lamb", "adamw"), ("abl", "lamb")]).set_index("arm")
    assert table.loc["lamb", "baseline"] == "adamw" and table.loc["abl", "baseline"] == "lamb"
    assert table.loc["lamb", "effect"] == pytest.approx(-0.1 + np.mean(NOISE) * -0.5)
    assert table.loc["lamb", "outcome"] == "better"
    assert table.loc["abl", "outcome"] == "worse"
    assert (table["group"] == "B=256").all()
    assert table.loc["lamb", "sesoi"] == 0.02  # nats, for a loss
    assert not table.loc["lamb", "larger_is_better"]
    assert np.allclose(np.sort(table["p_holm"].to_numpy()), _holm(table["p"].to_numpy()))


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values in ascending order, by hand."""
    p = np.sort(p)
    m = len(p)
    return np.maximum.accumulate(np.minimum(1.0, p * (m - np.arange(m))))


def test_compare_pairs_is_one_holm_family_and_keeps_only_the_batches_asked_for():
    merged = {
        (f"B={b}", net): _result({"adamw": _losses(2.5), "lamb": _losses(2.5 + d, 0.9)}, BEST)
        for net in ("text", "image")
        for b, d in ((8, 0.0), (128, -0.003), (256, -0.004))
    }
    table = bs.compare_pairs(merged, [("lamb", "adamw")], batches={"text": (128, 256)})
    assert set(table["testbed"]) == {"text"}
    assert sorted(table["group"].map(bs.batch_of)) == [128, 256]
    assert np.allclose(np.sort(table["p_holm"].to_numpy()), _holm(table["p"].to_numpy()))
    both = bs.compare_pairs(merged, [("lamb", "adamw")], batches=(256,))
    assert sorted(both["testbed"]) == ["image", "text"]


def test_compare_pairs_names_the_side_whose_runs_all_diverged():
    merged = {
        ("B=256", "text"): _result(
            {
                "adamw s": [None] * 3,
                "lamb s": [2.4, 2.41, 2.39],
                "adamw": [2.5, 2.51, 2.49],
                "lamb": [None] * 3,
            },
            BEST,
        )
    }
    pairs = [("lamb s", "adamw s"), ("lamb", "adamw")]
    table = bs.compare_pairs(merged, pairs).set_index("arm")
    assert (table["outcome"] == bs.FAILED).all()
    assert table.loc["lamb s", "failed"] == "baseline"
    assert table.loc["lamb", "failed"] == "arm"
    shown = bs.level_verdict_table(table.reset_index())
    assert list(shown.columns[:4]) == ["testbed", "B", "arm", "vs"]
    assert shown.loc[shown["arm"] == "lamb", "arm loss"].item() == "-"


def test_score_table_keeps_a_loss_interval_above_zero_and_names_the_metric():
    merged = {("B=16", "t"): _result({"adamw": [0.01, 0.5, 0.02], "lamb": [None] * 3}, BEST)}
    table = bs.score_table(merged).set_index("arm")
    assert table.loc["adamw", "metric"] == "test_loss"
    assert table.loc["adamw", "mean"] == pytest.approx(0.53 / 3)
    assert table.loc["adamw", "ci_low"] == 0.0  # the t interval reaches below zero
    assert (table.loc["lamb", "seeds"], table.loc["lamb", "failures"]) == (0, 3)


def test_drop_contrast_of_a_loss_by_hand_with_a_scaled_arm_at_b0():
    rng = np.random.default_rng(0)
    e = rng.normal(0, 0.002, 4)
    adamw_small, lamb_small = 2.0 + e, 2.02 - e
    adamw_big, lamb_big = 2.5 + 2 * e, 2.3 + e / 2
    merged = {
        ("B=8", "t"): _result({"adamw": list(adamw_small), "lamb": list(lamb_small)}, BEST),
        ("B=256", "t"): _result(
            {"adamw s": list(adamw_big), "lamb s": list(lamb_big), "abl": [2.0] * 4}, BEST
        ),
    }
    drops = bs.drop_contrasts(
        merged,
        [("lamb s", "adamw s"), ("abl", "lamb")],  # abl has no B0 result: skipped
        {"t": 8},
        at_base={"lamb s": "lamb", "adamw s": "adamw"},
    )
    assert list(drops["arm"]) == ["lamb s"]
    row = drops.iloc[0]
    by_hand = np.mean((lamb_big - lamb_small) - (adamw_big - adamw_small))
    assert row["effect"] == pytest.approx(by_hand)  # about -0.22: LAMB's loss rose less
    assert row["change_arm"] == pytest.approx(np.mean(lamb_big - lamb_small))
    assert row["outcome"] == "better" and row["sesoi"] == 0.02
    assert row["baseline"] == "adamw s"


def test_drop_contrast_failed_row_names_the_side():
    merged = {
        ("B=8", "t"): _result({"adamw": [2.0] * 3, "lamb": [2.0] * 3}, BEST),
        ("B=256", "t"): _result({"adamw": [None] * 3, "lamb": [2.3] * 3}, BEST),
    }
    drops = bs.drop_contrasts(merged, [("lamb", "adamw")], 8)
    assert (drops["outcome"].item(), drops["failed"].item()) == (bs.FAILED, "baseline")


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        (["better", "better"], "reproduced"),
        (["better", "worse"], "partly reproduced"),
        (["inconclusive", "better"], "partly reproduced"),
        (["equivalent", "worse"], "not reproduced"),
        (["failed", "equivalent"], "not reproduced"),
        (["equivalent", "inconclusive"], "undecided"),
        ([], "undecided"),
    ],
)
def test_verdict_of_gives_every_verdict(outcomes, verdict):
    assert bs.verdict_of(outcomes) == verdict


# --------------------------------------------------------------------------------------------
# scaled arms and monitored reruns


def _plan():
    arm = bs.Arm("adamw", {}, (2.5e-4, 1e-3, 4e-3, 1.6e-2), "x")
    out = []
    for net, sizes in (("text", (8, 64, 256)), ("image", (16, 512))):
        for batch in sizes:
            bed = testbeds.Testbed(net, _base().replace(batch_size=batch), "loss", None, None, "")
            out.append(bs.tuned_comparison(bed, "adamw", arm, sizes[0]))
    return out


def _merged_for_plan():
    return {
        ("B=8", "text"): _result({"adamw": [2.0] * 3}, {"adamw": 0.002}),
        ("B=64", "text"): _result({"adamw": [2.1] * 3}, {"adamw": 0.006}),
        ("B=256", "text"): _result({"adamw": [2.2] * 2}, {"adamw": 0.008}),
        ("B=16", "image"): _result({"adamw": [0.3] * 3}, {"adamw": 0.001}),
        ("B=512", "image"): _result({"adamw": [0.4] * 3}, {"adamw": 0.004}),
    }


def test_scaled_configs_carry_each_testbeds_b0_rate_by_the_rule():
    plan, merged = _plan(), _merged_for_plan()
    configs = bs.scaled_configs(merged, plan, "adamw", "sqrt", {"text": 8, "image": 16})
    assert set(configs) == {("B=64", "text"), ("B=256", "text"), ("B=512", "image")}
    assert configs[("B=256", "text")][0].lr == pytest.approx(0.002 * math.sqrt(32), rel=5e-4)
    assert configs[("B=64", "text")][0].lr == pytest.approx(0.002 * math.sqrt(8), rel=5e-4)
    assert configs[("B=512", "image")][0].lr == pytest.approx(0.001 * math.sqrt(32), rel=5e-4)
    assert [c.seed for c in configs[("B=256", "text")]] == [1, 2]  # the source's final seeds
    source = {(c.bed.name, c.bed.config.batch_size): c.arms["adamw"] for c in plan}
    for (group, net), runs in configs.items():
        for c in runs:
            assert c.replace(lr=1.0, seed=0) == source[(net, bs.batch_of(group))].replace(
                lr=1.0, seed=0
            )


def test_add_scaled_adds_an_untuned_arm_that_is_as_tuned_as_its_source(monkeypatch):
    plan, merged = _plan(), _merged_for_plan()

    def fake_run(configs, study, **kwargs):
        return [
            {
                "key": c.key(),
                "config": c.to_dict(),
                "status": "ok",
                "diverged_at": None,
                "steps_done": c.steps,
                "curves": {"step": [5, 10], "val_loss": [2.5, 2.4]},
                "final": {"val_loss": 2.4, "test_loss": 2.45, "val_acc": 0.3, "test_acc": 0.3},
                "wall_time_s": 1.0,
            }
            for c in configs
        ]

    monkeypatch.setattr(bs, "run_stored", fake_run)
    out = bs.add_scaled(merged, plan, "s", {"adamw s": "adamw"}, "sqrt", {"text": 8, "image": 16})
    row = out[("B=256", "text")].summary.set_index("arm").loc["adamw s"]
    assert row["best_lr"] == pytest.approx(0.002 * math.sqrt(32), rel=5e-4)
    assert bool(row["interior"]) and row["grid_points"] == 0
    final = out[("B=256", "text")].final
    assert (final[final["arm"] == "adamw s"]["test_loss"] == 2.45).all()
    assert "adamw s" not in out[("B=8", "text")].summary["arm"].tolist()  # not at B0
    monkeypatch.setattr(bs, "run_stored", lambda *a, **k: None)  # pending: unchanged
    assert bs.add_scaled(merged, plan, "s", {"adamw s": "adamw"}, "sqrt", 8) == merged


def test_monitored_configs_pick_batches_and_arms():
    plan, merged = _plan(), _merged_for_plan()
    pairs = bs.monitored_configs(merged, plan, 1, pick=lambda s: (s[0], s[-1]), points=10)
    got = {(c.batch_size, arm, c.seed) for arm, c in pairs}
    assert got == {(8, "adamw", 1), (256, "adamw", 1), (16, "adamw", 1), (512, "adamw", 1)}
    for _, c in pairs:
        assert c.monitor_every == max(1, c.steps // 10)
    largest = bs.monitored_configs(merged, plan, 2, arms=("lamb",))
    assert largest == []


def test_trust_frame_labels_tensors_and_records_the_batch():
    config = _base().replace(batch_size=32, monitor_every=1)
    record = {
        "config": config.to_dict(),
        "layers": {
            "every": 1,
            "step": [1, 2],
            "params": {"w": {"trust_ratio": [0.5, 0.25], "lr": [None, None]}},
        },
    }
    tensors = pd.DataFrame([{"name": "w", "label": "W", "ndim": 2}])
    frame = bs.trust_frame([("lamb", config)], [record], lambda cfg: ("net", tensors))
    assert set(frame["batch_size"]) == {32} and set(frame["label"]) == {"W"}
    assert frame.loc[frame["quantity"] == "trust_ratio", "value"].tolist() == [0.5, 0.25]
    assert list(bs.trust_frame([], None, lambda cfg: ("net", tensors)).columns) == bs.TRUST_COLUMNS
