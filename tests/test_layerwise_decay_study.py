"""Study 05's design (layer-wise decay from scratch and in fine-tuning), its multipliers and its
answer sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from layerwise import groups
from layerwise.harness import comparisons, data, testbeds
from layerwise.harness.config import RunConfig
from layerwise.harness.models import build
from layerwise.rules import rule_from_spec
from layerwise.studies import discriminative_rates, ulmfit_text
from layerwise.studies import layerwise_decay as design


def test_plan_tunes_every_decay_under_the_protocol_with_a_decaying_schedule():
    plan = design.plan("full")
    assert [c.bed.name for c in plan] == list(design.BUDGETS)
    for c in plan:
        config = c.bed.config
        assert config.optimizer == "adamw" and config.steps == design.BUDGETS[c.bed.name]
        assert config.schedule == "cosine" and config.schedule_options["final"] == 0.0
        assert c.protocol == comparisons.protocol(config.dataset, "adamw")
        assert set(c.design["arm"]) == set(c.arms)
        decays = {a.rule["decay"] for a in c.arms.values() if a.rule["name"] == "layer_decay"}
        assert decays == set(design.DECAYS)
        assert c.arms["uniform"].rule == {"name": "uniform"}
    # the factors: {1, 0.95, 0.9, 0.8, 0.65}
    assert sorted(plan[0].design["xi"]) == [0.65, 0.8, 0.9, 0.95, 1.0]


def test_mnist1d_uniform_arms_are_study_03s_runs():
    keys_03 = {a.key() for c in discriminative_rates.plan() for a in c.arms.values()}
    shared = {c.bed.name: c.arms["uniform"].key() in keys_03 for c in design.plan("full")}
    assert shared == {
        "mnist1d/cnn": True,
        "mnist1d/transformer": True,
        "fashion_mnist/transformer": False,  # a new testbed
        "tinyshakespeare/transformer": False,  # 03 has no text comparison
    }


def _per_layer(config, example) -> pd.Series:
    """Each layer's multiplier under ``config``'s rule, by layer name."""
    spec = data.spec(config.dataset)
    model = build(config.model, spec, **config.model_options)
    table = groups.resolve(model, rule_from_spec(dict(config.rule)), example)
    return table.groupby("layer")["multiplier"].first()


def test_decay_counts_blocks_as_beit_does():
    """BEiT's layer ids: patch projection and position embedding 0, block k at k + 1, the rest
    (final norm excepted: it shares the last block's depth here) at the top."""
    mnist1d = next(c for c in design.plan("full") if c.bed.name == "mnist1d/transformer")
    xi = 0.8
    got = _per_layer(mnist1d.arms[f"xi={xi:g}"], torch.zeros(2, 40))
    expected = {"embed": xi**3, "pos": xi**3, "blocks.0": xi**2, "blocks.1": xi, "head": 1.0}
    assert got[list(expected)].to_dict() == pytest.approx(expected)


def test_tied_token_embedding_keeps_the_heads_rate():
    text = next(c for c in design.plan("full") if c.bed.name == "tinyshakespeare/transformer")
    xi = 0.65
    config = text.arms[f"xi={xi:g}"]
    got = _per_layer(config, torch.zeros(2, config.block, dtype=torch.long))
    # four blocks: position embedding at depth 0, block k at k + 1, head (tied embedding) at 5
    expected = {"pos": xi**5, "blocks.0": xi**4, "blocks.3": xi, "head": 1.0}
    assert got[list(expected)].to_dict() == pytest.approx(expected)
    assert "embed" not in got.index  # the token embedding is the head's tensor


def test_multiplier_table_of_the_character_model_traces_token_ids():
    text = next(c for c in design.plan("full") if c.bed.name == "tinyshakespeare/transformer")
    table = comparisons.multiplier_table(text).set_index("depth")
    assert table["layers"].tolist() == [
        "pos",
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "blocks.3, ln_f",
        "head",
    ]
    for xi in design.DECAYS:
        assert table[f"xi={xi:g}"].tolist() == pytest.approx([xi**k for k in (5, 4, 3, 2, 1, 0)])


def test_fashion_mnist_transformer_reads_sixteen_patches_of_seven_by_seven():
    config = testbeds.testbed("fashion_mnist/transformer").config
    model = build(config.model, config.dataset, **config.model_options)
    assert model.embed.in_features == 7 * 7
    assert tuple(model.pos.shape) == (1, 16, 64)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_smoke_plan_is_small():
    smoke = design.plan("smoke")
    assert [c.bed.name for c in smoke] == ["mnist1d/cnn", "mnist1d/transformer"]
    assert all(len(c.arms) == 3 for c in smoke)
    with pytest.raises(ValueError, match="'finetune', 'scratch'"):
        design.plan("full", part="transfer")


# --------------------------------------------------------------------------------------------
# the fine-tuning part


def test_finetune_plan_runs_three_and_thirty_epochs_of_the_labelled_passages():
    plan = design.plan("full", part="finetune")
    batch = ulmfit_text.PASSAGES.config.batch_size
    labelled = 2 * ulmfit_text.LABELS_PER_CLASS
    epoch = -(-labelled // batch)  # ceil: 200 passages at batch 32 -> 7 steps
    assert epoch == 7
    assert [c.bed.config.steps for c in plan] == [3 * epoch, 30 * epoch] == [21, 210]
    assert [c.group for c in plan] == ["fine-tuning, 3 epochs", "fine-tuning, 30 epochs"]
    for c, epochs in zip(plan, (3, 30), strict=True):
        config = c.bed.config
        assert c.bed.name == "tinyshakespeare_passages/transformer"
        assert config.eval_every == config.steps  # one evaluation, at the end
        assert config.schedule == "cosine" and config.schedule_options["final"] == 0.0
        assert config.schedule_options["warmup"] == max(1, round(0.05 * config.steps))
        assert c.protocol == comparisons.protocol("tinyshakespeare_passages", "adamw")
        assert len(c.protocol.final_seeds) == 10
        assert set(c.design["epochs"]) == {epochs}
    assert len({c.key for c in plan}) == 2


def test_every_finetuning_arm_starts_from_language_model_zero_and_differs_only_in_its_rule():
    lm = ulmfit_text.pretraining(0)
    for c in design.plan("full", part="finetune"):
        for arm in c.arms.values():
            assert RunConfig.from_dict(arm.init_from).key() == lm.key()
            assert arm.reinit == ("head",) and arm.dataset == "tinyshakespeare_passages"
            assert arm.replace(rule=None) == c.bed.config.replace(rule=None)


def test_finetuning_arms_are_uniform_and_one_layer_decay_per_xi():
    for c in design.plan("full", part="finetune"):
        assert c.arms["uniform"].rule == {"name": "uniform"}
        specs = {name: a.rule for name, a in c.arms.items() if name != "uniform"}
        assert specs == {f"xi={xi:g}": {"name": "layer_decay", "decay": xi} for xi in design.DECAYS}
        assert sorted(c.design["xi"]) == [0.65, 0.8, 0.9, 0.95, 1.0]
        assert set(c.design["arm"]) == set(c.arms)


def test_the_classifiers_token_embedding_decays_with_the_input_layer():
    """The classifier's head is new (not tied to the embedding): token and position embeddings
    at depth 0, four blocks, the head at depth 5 with the base rate."""
    short = design.plan("full", part="finetune")[0]
    table = comparisons.multiplier_table(short).set_index("depth")
    assert table["layers"].tolist() == [
        "pos, embed",
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "blocks.3, ln_f",
        "head",
    ]
    assert table["xi=0.8"].tolist() == pytest.approx([0.8**k for k in (5, 4, 3, 2, 1, 0)])


def test_smoke_finetune_plan_is_valid_and_small():
    smoke = design.plan("smoke", part="finetune")
    assert [c.bed.config.steps for c in smoke] == [10, 20]  # two lengths, distinct runs
    lm = ulmfit_text.pretraining(0, "smoke")
    keys = set()
    for c in smoke:
        assert list(c.arms) == ["uniform", "xi=0.65", "xi=0.9"]
        assert c.protocol == comparisons.protocol("tinyshakespeare_passages", "adamw", "smoke")
        for arm in c.arms.values():
            RunConfig.from_dict(arm.to_dict())  # a valid, serialisable config
            assert RunConfig.from_dict(arm.init_from).key() == lm.key()
            keys.add(arm.key())
    assert len(keys) == 6


def _row(bed, xi, outcome, effect, ci, metric="test_acc", mde=0.01, ratio_high=1.2, tuned=True):
    return {
        "tuned": tuned,
        "group": design.GROUP,
        "testbed": bed,
        "arm": f"xi={xi:g}",
        "xi": xi,
        "metric": metric,
        "outcome": outcome,
        "effect": effect,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "mde": mde,
        "sesoi": 0.02,
        "time_ratio_high": ratio_high,
    }


def test_answer_reports_every_effect_with_its_interval_per_testbed():
    table = pd.DataFrame(
        [
            _row("mnist1d/transformer", 0.65, "worse", -0.03, (-0.05, -0.01)),
            _row("mnist1d/transformer", 0.95, "better", 0.02, (0.01, 0.03), ratio_high=0.9),
            _row("mnist1d/transformer", 0.8, "equivalent", 0.001, (-0.004, 0.006)),
            _row(
                "tinyshakespeare/transformer",
                0.9,
                "inconclusive",
                -0.01,
                (-0.05, 0.03),
                metric="test_loss",
                mde=0.06,
                tuned=False,
            ),
        ]
    )
    text = design.answer(table, pending=["fashion_mnist/transformer"])
    assert "over 4 testbed/decay pairs: 1 better, 1 worse, 1 equivalent, 1 inconclusive" in text
    assert (
        "  - mnist1d/transformer (test accuracy): better at xi=0.95; worse at xi=0.65; "
        "xi=0.95 better (0.020 [0.010, 0.030]), xi=0.8 equivalent (0.001 [-0.004, 0.006]), "
        "xi=0.65 worse (-0.030 [-0.050, -0.010])." in text
    )
    assert (
        "tinyshakespeare/transformer (test loss in nats, lower is better): no xi better or "
        "worse; xi=0.9 inconclusive (not tuned) (-0.010 [-0.050, 0.030])." in text
    )
    assert "1 of 4 comparisons could not resolve" in text  # the text row: mde 0.06 > 0.02
    assert "fewer steps (time-ratio interval below 1): mnist1d/transformer xi=0.95." in text
    assert "pending** (runs not in the store yet): fashion_mnist/transformer." in text
    assert "**Verdict 4 (fine-tuning, short against long)**: pending" in text


def test_answer_while_every_comparison_is_pending():
    plan = design.plan("full")
    empty = comparisons.with_design(comparisons.compare({}), plan)
    text = design.answer(empty, [c.bed.name for c in plan])
    assert "testbed/decay pairs" not in text
    assert "mnist1d/cnn, mnist1d/transformer, fashion_mnist/transformer, tinyshakespeare" in text
    assert text.endswith(design.FINETUNE_PENDING + ".")


def _ft(xi, epochs, outcome, effect, sd=0.02, n=10, tuned=True):
    """A fine-tuning row of ``with_design(compare(...))``; the interval is not read by the
    verdict (only the paired effect's mean, sd and n are)."""
    return {
        "group": design.finetune_group(epochs),
        "testbed": "tinyshakespeare_passages/transformer",
        "arm": f"xi={xi:g}",
        "xi": xi,
        "epochs": epochs,
        "metric": "test_acc",
        "tuned": tuned,
        "outcome": outcome,
        "effect": effect,
        "ci_low": effect - 0.02,
        "ci_high": effect + 0.02,
        "sd": sd,
        "n": n,
    }


def _verdict4(text: str) -> str:
    line = next(x for x in text.splitlines() if x.startswith("- **Verdict 4"))
    return line.split("**: ", 1)[1]


def test_verdict_4_reproduced_when_a_short_gain_at_least_halves():
    table = pd.DataFrame(
        [
            _ft(0.95, 3, "better", 0.05),
            _ft(0.95, 30, "equivalent", 0.0),
            _ft(0.8, 3, "inconclusive", 0.01),
            _ft(0.8, 30, "inconclusive", 0.01),
        ]
    )
    text = design.answer(pd.DataFrame(), finetune=table)
    assert _verdict4(text).startswith("**reproduced**: xi=0.95 better than one rate after 3")
    assert "after 3 epochs 1 better, 0 worse, 0 equivalent, 1 inconclusive" in text
    assert "  - xi=0.95: 3 epochs better (0.050 [0.030, 0.070]), 30 epochs equivalent" in text
    assert ": the gain at least halved." in text
    assert "pending" not in text


def test_verdict_4_not_reproduced_when_no_decay_is_better_after_the_short_fine_tuning():
    table = pd.DataFrame(
        [
            _ft(0.95, 3, "equivalent", 0.0),
            _ft(0.95, 30, "better", 0.05),  # a long gain does not count
            _ft(0.65, 3, "worse", -0.05),
            _ft(0.65, 30, "worse", -0.04),
        ]
    )
    text = design.answer(pd.DataFrame(), finetune=table)
    assert _verdict4(text).startswith(
        "**not reproduced**: no xi < 1 is better than one rate after 3 epochs "
        "(0 better, 1 worse, 1 equivalent, 0 inconclusive)"
    )
    # an untuned comparison (a best rate on the grid's edge) is inconclusive, never better
    untuned = [_ft(0.9, 3, "inconclusive", 0.05, tuned=False), _ft(0.9, 30, "equivalent", 0.0)]
    text = design.answer(pd.DataFrame(), finetune=pd.DataFrame(untuned))
    assert _verdict4(text).startswith("**not reproduced**")
    assert "3 epochs inconclusive (not tuned) (0.050 [0.030, 0.070])" in text


def test_verdict_4_inconclusive_when_the_gain_is_not_shown_to_halve():
    kept = [_ft(0.9, 3, "better", 0.05), _ft(0.9, 30, "better", 0.05)]  # no shrinking at all
    noisy = [_ft(0.9, 3, "better", 0.05), _ft(0.9, 30, "inconclusive", 0.02, sd=0.1)]
    for rows, why in (
        (kept, "xi=0.9: the gain did not halve"),
        (noisy, "xi=0.9: halving not resolved"),  # 0.02 - 0.025 with a wide interval
    ):
        verdict = _verdict4(design.answer(pd.DataFrame(), finetune=pd.DataFrame(rows)))
        assert verdict.startswith("**inconclusive**: better than one rate after 3 epochs")
        assert f"({why})" in verdict


def test_halving_is_judged_on_a_welch_interval_bonferroni_over_the_better_decays():
    rng = np.random.default_rng(0)
    short, long = rng.normal(0.04, 0.02, 10), rng.normal(0.01, 0.03, 8)
    rows = [
        _ft(xi, e, "better" if e == 3 else "inconclusive", d.mean(), d.std(ddof=1), d.size)
        for xi in (0.9, 0.8)
        for e, d in ((3, short), (30, long))
    ]
    effects = design.finetune_effects(pd.DataFrame(rows)).set_index("xi")
    level = 1 - 0.05 / 2  # two decays better after 3 epochs
    assert effects["level"].tolist() == [level, level]
    welch = stats.ttest_ind(short, long, equal_var=False).confidence_interval(level)
    assert effects.loc[0.9, ["shrink_low", "shrink_high"]].tolist() == pytest.approx(
        [welch.low, welch.high]
    )
    # long - short/2 is the mean difference of long against short/2
    welch = stats.ttest_ind(long, short / 2, equal_var=False).confidence_interval(level)
    assert effects.loc[0.8, ["excess_low", "excess_high"]].tolist() == pytest.approx(
        [welch.low, welch.high]
    )
    assert effects.loc[0.8, "excess"] == pytest.approx(long.mean() - short.mean() / 2)


def test_verdict_4_is_pending_while_the_finetuning_runs_are_missing():
    plan = design.plan("full", part="finetune")
    empty = comparisons.with_design(comparisons.compare({}), plan)
    groups_ = [c.group for c in plan]
    text = design.answer(pd.DataFrame(), finetune=empty, finetune_pending=groups_)
    assert _verdict4(text) == (
        f"{design.FINETUNE_PENDING} (missing: fine-tuning, 3 epochs; fine-tuning, 30 epochs)."
    )
    # one length stored: its effects are shown, the verdict waits for the other
    short_only = pd.DataFrame([_ft(0.95, 3, "better", 0.05)])
    text = design.answer(pd.DataFrame(), finetune=short_only, finetune_pending=groups_[1:])
    assert "  - xi=0.95: 3 epochs better (0.050 [0.030, 0.070]), 30 epochs pending." in text
    assert _verdict4(text).startswith(design.FINETUNE_PENDING)
