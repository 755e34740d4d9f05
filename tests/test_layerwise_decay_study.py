"""Study 05's design (layer-wise decay from scratch), its multipliers and its answer sentences."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from layerwise import groups
from layerwise.harness import comparisons, data, testbeds
from layerwise.harness.models import build
from layerwise.rules import rule_from_spec
from layerwise.studies import discriminative_rates
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


def test_smoke_plan_is_small_and_the_finetuning_part_is_pending():
    smoke = design.plan("smoke")
    assert [c.bed.name for c in smoke] == ["mnist1d/cnn", "mnist1d/transformer"]
    assert all(len(c.arms) == 3 for c in smoke)
    with pytest.raises(NotImplementedError, match="fine-tuning testbed"):
        design.plan("full", part="finetune")
    with pytest.raises(ValueError, match="'finetune', 'scratch'"):
        design.plan("full", part="transfer")


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
        "  - mnist1d/transformer (test accuracy): better at 0.95, worse at 0.65; "
        "xi=0.95 better (0.020 [0.010, 0.030]), xi=0.8 equivalent (0.001 [-0.004, 0.006]), "
        "xi=0.65 worse (-0.030 [-0.050, -0.010])." in text
    )
    assert (
        "tinyshakespeare/transformer (test loss in nats, lower is better): better at no xi, "
        "worse at no xi; xi=0.9 inconclusive (not tuned) (-0.010 [-0.050, 0.030])." in text
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
