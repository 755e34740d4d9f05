"""The ULMFiT text testbed: fine-tuning configs start from the pretraining run they name, the
classifier takes that run's weights, and the feasibility table averages what it is given."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from layerwise import transfer
from layerwise.harness import data, models, pretraining, sweep
from layerwise.harness.config import RunConfig
from layerwise.harness.store import Store
from layerwise.harness.tuning import TuningResult
from layerwise.studies import ulmfit_text


def test_finetuning_starts_from_the_named_pretraining_run():
    config = ulmfit_text.finetuning(2, lr=3e-4, seed=5)
    assert RunConfig.from_dict(config.init_from).key() == ulmfit_text.pretraining(2).key()
    lm = ulmfit_text.pretraining(2)
    assert lm.seed == 2 and lm.steps == 6000 and lm.schedule_options["final"] == 0.0
    assert lm.optimizer_options["weight_decay"] == 0.1  # the language model's own AdamW
    assert config.reinit == ("head",) and config.lr == 3e-4 and config.seed == 5
    scratch = ulmfit_text.finetuning(None, lr=3e-4, seed=5)
    assert scratch.init_from is None
    assert scratch.replace(init_from=config.init_from) == config
    # the schedule decays to zero over the budget
    assert config.schedule == "cosine" and config.schedule_options["final"] == 0.0
    smoke = ulmfit_text.finetuning(1, lr=1e-3, seed=1, profile="smoke")
    assert smoke.steps == ulmfit_text.SMOKE_STEPS
    assert smoke.init_from["steps"] == ulmfit_text.SMOKE_STEPS


def test_the_classifier_takes_the_language_model_weights():
    lm_config = ulmfit_text.pretraining(0)
    clf_config = ulmfit_text.finetuning(0, lr=1e-3, seed=1)
    torch.manual_seed(0)
    lm = models.build(lm_config.model, lm_config.dataset, **lm_config.model_options)
    spec = data.DATASETS[clf_config.dataset]
    clf = models.build(clf_config.model, spec, **clf_config.model_options)
    transfer.load_pretrained(clf, lm.state_dict(), clf_config.reinit)
    assert torch.equal(clf.blocks[3].mlp[2].weight, lm.blocks[3].mlp[2].weight)
    assert torch.equal(clf.embed.weight, lm.embed.weight) and clf.head.out_features == 2


def test_feasibility_configs_pair_pretrained_and_scratch_runs():
    configs = ulmfit_text.feasibility_configs(pretrain_seeds=(0, 1), seeds=(1, 2))
    assert len(configs) == 6
    scratch = [c for c in configs if c.init_from is None]
    assert [c.seed for c in scratch] == [1, 2]
    assert sorted((c.init_from["seed"], c.seed) for c in configs if c.init_from) == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]


def _record(seed: int, test_acc: float, init_from: dict | None) -> dict:
    config = {"seed": seed, **({"init_from": init_from} if init_from else {})}
    return {"config": config, "final": {"test_acc": test_acc, "val_acc": test_acc - 0.01}}


def test_feasibility_table_averages_by_condition():
    records = [
        _record(1, 0.8, {"seed": 0}),
        _record(2, 0.9, {"seed": 0}),
        _record(1, 0.5, None),
        _record(2, 0.6, None),
    ]
    baselines = pd.DataFrame([{"condition": "bag", "test_acc": 0.55, "val_acc": 0.54, "l2": 1}])
    table = ulmfit_text.feasibility_table(records, baselines).set_index("condition")
    pre = table.loc["pretrained (LM seed 0), fine-tuned"]
    assert pre["test_acc"] == pytest.approx(0.85) and pre["seeds"] == 2
    assert pre["test_acc_sd"] == pytest.approx(0.1 / 2**0.5)
    assert table.loc["from scratch", "test_acc"] == pytest.approx(0.55)
    assert table.loc["bag", "test_acc"] == 0.55 and table.loc["chance", "test_acc"] == 0.5


def test_arms_change_only_what_their_names_say():
    base = ulmfit_text.finetuning(0, lr=1e-3, seed=1)
    arms, design = ulmfit_text.arms(base, epoch_steps=7)
    one = arms["one rate"]
    assert one.rule == {"name": "uniform"} and one.schedule == "cosine"
    discr = arms["discriminative"]
    assert discr == one.replace(rule={"name": "discriminative", "factor": 2.6, "toward": "input"})
    stlr = arms["discr + STLR"]
    assert stlr.schedule == "slanted_triangular" and stlr.rule == discr.rule
    assert stlr.schedule_options == {"cut_frac": 0.1, "ratio": 32.0}
    assert arms["discr + STLR + unfreezing"] == stlr.replace(unfreeze_every=7)
    for m in ulmfit_text.HEAD_MULTIPLIERS:
        assert arms[f"head x{m:g}"] == one.replace(rule={"name": "head", "multiplier": m})
    # every arm starts from the same pretrained model and differs from every other
    assert {c.init_from["seed"] for c in arms.values()} == {0}
    assert len({c.key() for c in arms.values()}) == len(arms)
    assert list(design["arm"]) == list(arms)


def test_plan_has_one_comparison_per_language_model():
    plan = ulmfit_text.plan(pretrain_seeds=(0, 2))
    assert [c.group for c in plan] == ["LM seed 0", "LM seed 2"]
    assert [c.arms["one rate"].init_from["seed"] for c in plan] == [0, 2]
    # ULMFiT unfreezes a depth per epoch: 2 classes x LABELS_PER_CLASS passages per epoch
    epoch = -(-2 * ulmfit_text.LABELS_PER_CLASS // plan[0].bed.config.batch_size)
    assert plan[0].arms["discr + STLR + unfreezing"].unfreeze_every == epoch
    assert len(plan[0].protocol.final_seeds) >= 10
    smoke = ulmfit_text.plan("smoke")  # every arm's schedule is valid at the smoke budget
    assert [c.group for c in smoke] == ["LM seed 0"]
    assert smoke[0].arms["discr + STLR"].steps == ulmfit_text.SMOKE_STEPS


def _tuned(summary_rows: list[tuple[str, float]], finals: dict[str, float]) -> TuningResult:
    summary = pd.DataFrame(
        [{"arm": a, "best_lr": 1e-3, "interior": True, "val_acc_best": s} for a, s in summary_rows]
    )
    final = pd.DataFrame(
        [
            {"arm": a, "lr": 1e-3, "seed": seed, "status": "ok", "test_acc": acc + 0.01 * seed}
            for a, acc in finals.items()
            for seed in (1, 2)
        ]
    )
    return TuningResult("acc", final.assign(score=0.5), final, summary, final.assign(step=1))


def test_two_rates_keeps_the_multiplier_the_tuning_seeds_chose():
    # head x16 tunes best but tests worst: the final seeds must not choose
    result = _tuned(
        [("one rate", 0.70), ("head x4", 0.72), ("head x16", 0.75), ("head x64", 0.60)],
        {"one rate": 0.70, "head x4": 0.90, "head x16": 0.65, "head x64": 0.95},
    )
    reduced = ulmfit_text.two_rates(result)
    assert list(reduced.summary["arm"]) == ["one rate", "two rates"]
    assert reduced.summary.set_index("arm").loc["two rates", "head_multiplier"] == 16.0
    for frame in (reduced.final, reduced.sensitivity, reduced.curves):
        assert set(frame["arm"]) == {"one rate", "two rates"}
    two = reduced.final[reduced.final["arm"] == "two rates"]["test_acc"]
    assert two.tolist() == pytest.approx([0.66, 0.67])


def test_language_models_are_stored_once_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "cache"))
    store = Store(tmp_path / "results")
    monkeypatch.setenv("LAYERWISE_REQUIRE_STORED", "1")
    with pytest.raises(sweep.MissingRunsError):
        ulmfit_text.language_models(store, (0,), "smoke", jobs=1)
    monkeypatch.delenv("LAYERWISE_REQUIRE_STORED")
    (record,) = ulmfit_text.language_models(store, (0,), "smoke", jobs=1)
    assert record["key"] == ulmfit_text.pretraining(0, "smoke").key()
    assert store.get(ulmfit_text.STUDY, ulmfit_text.pretraining(0, "smoke")) == record

    def no_training(config):
        raise AssertionError("a stored language model was trained again")

    monkeypatch.setattr(pretraining, "pretrain", no_training)
    monkeypatch.setenv("LAYERWISE_REQUIRE_STORED", "1")
    assert ulmfit_text.language_models(store, (0,), "smoke", jobs=1) == [record]


def _check_table(pretrained: float, char_ngrams: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"condition": "pretrained (LM seed 0), fine-tuned", "test_acc": pretrained - 0.01},
            {"condition": "pretrained (LM seed 1), fine-tuned", "test_acc": pretrained + 0.01},
            {"condition": "from scratch", "test_acc": 0.50},
            {"condition": "bag of char 1-5-grams", "test_acc": char_ngrams},
            {"condition": "bag of word 1-2-grams", "test_acc": 0.52},
            {"condition": "chance", "test_acc": 0.5},
        ]
    )


def test_feasibility_needs_a_clear_margin_over_scratch_and_the_bag_of_words():
    ok, text = ulmfit_text.feasibility_verdict(_check_table(0.80, 0.74))
    assert ok and text.startswith("**the control can work**")
    assert "from scratch (0.500) by +0.300 (yes)" in text
    assert "bag of word 1-2-grams (0.520) by +0.280 (yes)" in text
    assert "bag of char 1-5-grams (0.740): +0.060, a clear margin" in text
    # the character n-grams within 0.03 are reported, not decisive
    ok, text = ulmfit_text.feasibility_verdict(_check_table(0.80, 0.78))
    assert ok and "bag of char 1-5-grams (0.780): +0.020, not a clear margin" in text
    ok, text = ulmfit_text.feasibility_verdict(_check_table(0.54, 0.60))  # 0.04 above chance
    assert not ok and "fails: above chance (0.50) by at least 0.10" in text
    ok, _ = ulmfit_text.feasibility_verdict(_check_table(0.97, 0.60))  # at the ceiling
    assert not ok
    words = _check_table(0.80, 0.60)
    words.loc[words["condition"] == "bag of word 1-2-grams", "test_acc"] = 0.78
    ok, text = ulmfit_text.feasibility_verdict(words)
    assert not ok and "fails: above the bag of word 1-2-grams (0.780) by +0.020" in text


def _arm_rows(outcomes: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "group": f"LM seed {i}",
                "arm": "discr + STLR",
                "outcome": o,
                "effect": 0.01,
                "ci_low": 0.0,
                "ci_high": 0.02,
                "mde": 0.05 if i == 0 else 0.01,
                "sesoi": 0.02,
            }
            for i, o in enumerate(outcomes)
        ]
    )


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        (["better", "better", "better"], "**reproduced**"),
        (["equivalent", "worse", "equivalent"], "**not reproduced**"),
        (["better", "equivalent", "better"], "**inconclusive**"),
        (["inconclusive", "equivalent", "equivalent"], "**inconclusive**"),
    ],
)
def test_the_claim_needs_the_arm_better_on_every_language_model(outcomes, verdict):
    text = ulmfit_text.answer(_arm_rows(outcomes), feasible=True)
    assert f"beat one rate in fine-tuning)**: {verdict} (discr + STLR" in text
    assert "no verdict" not in ulmfit_text.answer(_arm_rows(outcomes), feasible=True)
    assert f"- 1 of {len(outcomes)} comparisons could not resolve" in text


def test_no_verdict_without_a_feasible_control():
    text = ulmfit_text.answer(_arm_rows(["better"] * 3), feasible=False)
    assert "no verdict" in text and "**reproduced**" not in text
