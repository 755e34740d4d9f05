"""The ULMFiT text testbed: fine-tuning configs start from the pretraining run they name, the
classifier takes that run's weights, and the feasibility table averages what it is given."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from layerwise import transfer
from layerwise.harness import data, models
from layerwise.harness.config import RunConfig
from layerwise.studies import ulmfit_text


def test_finetuning_starts_from_the_named_pretraining_run():
    config = ulmfit_text.finetuning(2, lr=3e-4, seed=5)
    assert RunConfig.from_dict(config.init_from).key() == ulmfit_text.pretraining(2).key()
    assert ulmfit_text.pretraining(2).seed == 2 and ulmfit_text.pretraining(2).steps == 2000
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
