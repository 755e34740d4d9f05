"""RunConfig: validation before compute, stable keys, immutability, serialisation."""

from __future__ import annotations

import json
import pickle

import pytest

from layerwise.harness.config import FORMAT_VERSION, RunConfig


def test_key_is_stable_and_sensitive(tiny_config):
    same = RunConfig.from_dict(json.loads(json.dumps(tiny_config.to_dict())))
    assert same.key() == tiny_config.key()
    assert tiny_config.replace(seed=1).key() != tiny_config.key()
    assert tiny_config.replace(model_options={"width": 33}).key() != tiny_config.key()


def test_equal_values_give_equal_keys(tiny_config):
    a = tiny_config.replace(lr=1, optimizer_options={"betas": [0.9, 0.99], "eps": 1e-8})
    b = tiny_config.replace(lr=1.0, optimizer_options={"eps": 1e-8, "betas": (0.9, 0.99)})
    assert a.key() == b.key() and a == b and hash(a) == hash(b)


def test_key_covers_the_results_format_version(tiny_config, monkeypatch):
    import layerwise.harness.config as config

    before = tiny_config.key()
    monkeypatch.setattr(config, "FORMAT_VERSION", FORMAT_VERSION + 1)
    assert tiny_config.key() != before


def test_options_are_read_only_and_picklable(tiny_config):
    with pytest.raises(TypeError):
        tiny_config.model_options["width"] = 64
    clone = pickle.loads(pickle.dumps(tiny_config))
    assert clone == tiny_config and clone.key() == tiny_config.key()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"dataset": "imagenet"}, "'imagenet'"),
        ({"model": "resnet"}, "'resnet'"),
        ({"optimizer": "adagrad"}, "'adagrad'"),
        ({"schedule": "staircase"}, "'staircase'"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 2.0}, "exactly one budget"),
    ],
)
def test_bad_values_fail_before_compute_naming_them(tiny_config, change, named):
    with pytest.raises(ValueError, match=named) as err:
        tiny_config.replace(**change)
    if "dataset" in change:
        assert "mnist1d" in str(err.value)  # the valid names are listed
    if "optimizer" in change:
        assert "adamw" in str(err.value) and "sgd" in str(err.value)


def test_unknown_field_is_named():
    with pytest.raises(ValueError, match="'learning_rate'"):
        RunConfig.from_dict({"dataset": "mnist1d", "model": "mlp", "learning_rate": 1e-3})
