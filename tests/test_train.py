"""One run: determinism, divergence as a result, budgets, evaluation, the record."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from layerwise.harness import data, train


def test_same_seed_same_record(tiny_config):
    a, b = train.run(tiny_config), train.run(tiny_config)
    assert a["curves"] == b["curves"] and a["final"] == b["final"]
    c = train.run(tiny_config.replace(seed=1))
    assert c["curves"]["train_loss"] != a["curves"]["train_loss"]


def test_record_is_json_and_complete(tiny_config):
    record = train.run(tiny_config)
    text = json.dumps(record, allow_nan=False)  # strict JSON: no NaN or Infinity
    assert json.loads(text)["config"] == tiny_config.to_dict()
    assert record["key"] == tiny_config.key() and record["status"] == "ok"
    assert record["curves"]["step"] == [10, 20, 30]
    assert record["env"]["torch"] == torch.__version__ and record["env"]["threads"] == 1
    assert record["wall_time_s"] > 0


def test_divergence_is_recorded_not_raised(tiny_config):
    config = tiny_config.replace(optimizer="sgd", lr=1e4)
    record = train.run(config)
    assert record["status"] == "diverged"
    assert 1 < record["diverged_at"] <= config.steps
    assert record["final"]["test_acc"] is None and record["final"]["val_acc"] is None
    json.dumps(record, allow_nan=False)


def test_an_update_that_breaks_the_weights_before_an_evaluation_is_divergence(tiny_config):
    # step 1's loss is finite (initial weights); its update makes the validation loss NaN
    config = tiny_config.replace(optimizer="sgd", lr=1e38, steps=3, eval_every=1)
    record = train.run(config)
    assert record["status"] == "diverged" and record["diverged_at"] == 1
    assert record["steps_done"] == 0 and record["curves"]["step"] == []
    assert record["final"]["val_loss"] is None
    json.dumps(record, allow_nan=False)  # the store writes strict JSON


def test_epoch_budget_counts_steps_per_epoch(tiny_config):
    config = tiny_config.replace(steps=None, epochs=0.5, eval_every=1000)
    record = train.run(config)
    assert record["steps"] == round(0.5 * (3600 // 64))  # 3,600 training examples


def test_learning_happens(tiny_config):
    record = train.run(
        tiny_config.replace(steps=300, eval_every=100, model="cnn", model_options={})
    )
    assert record["final"]["val_acc"] > 0.3  # chance is 0.1
    assert record["curves"]["train_loss"][-1] < record["curves"]["train_loss"][0]


class _Oracle(nn.Module):
    """Predicts the label stored in the input's first feature."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), 10).float() * 50


def test_evaluate_counts_correct_predictions():
    y = torch.arange(10).repeat(300)  # more than one evaluation batch
    x = torch.zeros(len(y), 4)
    x[:, 0] = y.float()
    x[::3, 0] = (y[::3] + 1) % 10  # every third example is predicted wrongly
    metrics = train.evaluate(_Oracle(), data.Split(x, y))
    assert abs(metrics["acc"] - 2 / 3) < 1e-9
    expected_loss = nn.functional.cross_entropy(_Oracle()(x), y).item()
    assert abs(metrics["loss"] - expected_loss) < 1e-5


def test_eval_batch_caps_tokens_for_sequences_only():
    assert train.eval_batch_size(torch.zeros(10, 784)) == train.EVAL_BATCH  # images: examples
    assert train.eval_batch_size(torch.zeros(10, 40, 1)) == train.EVAL_BATCH  # real sequences
    windows = torch.zeros(10, 64, dtype=torch.long)
    assert train.eval_batch_size(windows) == train.EVAL_TOKENS // 64
    assert train.eval_batch_size(windows) * 64 <= train.EVAL_TOKENS
    huge = torch.zeros(10, 10 * train.EVAL_TOKENS, dtype=torch.long)
    assert train.eval_batch_size(huge) == 1  # never zero examples per pass


class _NextToken(nn.Module):
    """Predicts token + 1 at every position (a language model's target), confidently."""

    def forward(self, x):
        return nn.functional.one_hot((x + 1) % 50, 50).float() * 20


def test_evaluate_over_token_batches_matches_one_pass():
    tokens = torch.randint(0, 50, (300, 64))  # several token-capped batches
    targets = (tokens + 1) % 50
    targets[::7] = 0  # some positions predicted wrongly
    metrics = train.evaluate(_NextToken(), data.Split(tokens, targets))
    logits = _NextToken()(tokens)
    assert abs(metrics["acc"] - (logits.argmax(-1) == targets).double().mean().item()) < 1e-9
    expected_loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()
    assert abs(metrics["loss"] - expected_loss) < 1e-5


def test_text_windows_are_shifted_by_one():
    tokens = torch.arange(100)
    windows = train._text_windows(data.TextSplit(tokens), block=8, limit=None)
    assert windows.x.shape == (12, 8)
    assert torch.equal(windows.y, windows.x + 1)
    assert torch.equal(windows.x[1], torch.arange(8, 16))
    capped = train._text_windows(data.TextSplit(tokens), block=8, limit=3)
    assert capped.x[:, 0].tolist() == [0, 40, 88]  # windows 0, floor(5.5), 11


def test_per_layer_rule_and_monitor_reach_the_record(tiny_config):
    """A discriminative rule in the config sets each layer's rate (lr / factor^(D - d)), and the
    monitor records it per parameter every ``monitor_every`` steps."""
    config = tiny_config.replace(
        rule={"name": "discriminative", "factor": 2.0}, monitor_every=10, optimizer="sgd"
    )
    record = train.run(config)
    layers = record["layers"]
    assert layers["step"] == [10, 20, 30]
    # the MLP has three linear layers at depths 0, 1, 2 (body.0, body.2, head)
    expected = {"body.0.weight": 3e-3 / 4, "body.2.weight": 3e-3 / 2, "head.weight": 3e-3}
    for name, lr in expected.items():
        assert layers["params"][name]["lr"] == pytest.approx([lr] * 3)
    json.dumps(record, allow_nan=False)


def test_gradient_clipping_bounds_the_global_norm(tiny_config):
    clip = 1e-3
    record = train.run(tiny_config.replace(grad_clip=clip, monitor_every=10, optimizer="sgd"))
    params = record["layers"]["params"]
    for i in range(3):  # global norm over all tensors at each monitored step
        total = sum(p["g_norm"][i] ** 2 for p in params.values()) ** 0.5
        assert total <= clip * (1 + 1e-4)
    unclipped = train.run(tiny_config.replace(monitor_every=10, optimizer="sgd"))
    first = sum(p["g_norm"][0] ** 2 for p in unclipped["layers"]["params"].values()) ** 0.5
    assert first > 10 * clip  # so the bound above is the clipping at work


def test_extra_splits_are_evaluated_at_the_end(tiny_config):
    # MNIST-1D on generated splits keeps the published test set as an extra split
    config = tiny_config.replace(data_options={"splits": "generated"})
    record = train.run(config)
    final = record["final"]
    assert set(final) >= {"reference_test_acc", "reference_test_loss"}
    assert 0.0 <= final["reference_test_acc"] <= 1.0
    assert final["reference_test_acc"] != final["test_acc"]  # a different split, not a copy


def test_final_validation_reuses_the_last_curve_evaluation(tiny_config, monkeypatch):
    # the last curve point is the final model on the full validation split: not evaluated twice
    seen = []
    real = train.evaluate

    def counted(model, split):
        seen.append(len(split))
        return real(model, split)

    monkeypatch.setattr(train, "evaluate", counted)
    record, model = train.train(tiny_config)
    dataset = data.load("mnist1d")
    assert seen == [len(dataset.val)] * 3 + [len(dataset.test)]  # steps 10, 20, 30; then test
    again = real(model, dataset.val)  # an independent evaluation of the final weights
    assert record["final"]["val_acc"] == again["acc"] == record["curves"]["val_acc"][-1]
    assert record["final"]["val_loss"] == pytest.approx(again["loss"], rel=1e-12)
