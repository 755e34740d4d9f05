"""Every input of the harness is checked when it is given: a bad name or number in a RunConfig
fails at construction (not when a worker starts the run), naming the bad value and the valid
ones; equal runs get equal keys; the store names every record it cannot use."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from layerwise.harness.config import (
    RunConfig,
    data_option_names,
    optimizer_option_names,
    schedule_option_names,
)
from layerwise.harness.store import RECORD_FIELDS, Store, UnreadableRecordWarning

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        # names: the bad one and the valid ones
        ({"rule": {"name": "discrimnative"}}, ["'discrimnative'", "'discriminative'"]),
        ({"rule": {"name": "discriminative", "factr": 2}}, ["'factr'", "factor"]),
        ({"rule": "discriminative"}, ["'discriminative'", "'name'"]),
        ({"model_options": {"widht": 32}}, ["'widht'", "width"]),
        ({"model": "hybrid", "dataset": "tinyshakespeare", "model_options": {}}, ["hybrid"]),
        ({"data_options": {"classe": [1, 2]}}, ["'classe'", "classes"]),
        ({"optimizer_options": {"betaz": [0.9, 0.9]}}, ["'betaz'", "betas"]),
        ({"schedule": "cosine", "schedule_options": {"warmpu": 3}}, ["'warmpu'", "warmup"]),
        # values
        ({"optimizer_options": {"betas": (2, 3)}}, ["betas", "2"]),
        ({"optimizer": "sgd", "optimizer_options": {"momentum": -1}}, ["momentum", "-1"]),
        ({"model_options": {"width": -4}}, ["width", "-4"]),
        ({"schedule": "slanted_triangular", "schedule_options": {"cut_frac": 0.01}}, ["0.01"]),
        ({"optimizer_options": {"weight_decay": math.inf}}, ["weight_decay", "inf"]),
        ({"model_options": {"width": np.int64(32)}}, ["model_options", "32"]),
        # numbers
        ({"batch_size": 63.5}, ["batch_size", "63.5"]),
        ({"batch_size": True}, ["batch_size", "True"]),
        ({"steps": 2.5}, ["steps", "2.5"]),
        ({"steps": 0}, ["steps", "got 0"]),
        ({"steps": -3}, ["steps", "-3"]),
        ({"steps": None, "epochs": 0.0}, ["epochs", "0.0"]),
        ({"steps": None, "epochs": math.inf}, ["epochs", "inf"]),
        ({"lr": math.inf}, ["lr", "inf"]),
        ({"lr": math.nan}, ["lr", "nan"]),
        ({"lr": "0.1"}, ["lr", "'0.1'"]),
        ({"eval_every": 2.5}, ["eval_every", "2.5"]),
        ({"seed": -1}, ["seed", "-1"]),
        ({"threads": 0}, ["threads", "0"]),
        ({"monitor_every": 0.5}, ["monitor_every", "0.5"]),
        ({"grad_clip": math.inf}, ["grad_clip", "inf"]),
        ({"diverge_factor": -1}, ["diverge_factor", "-1"]),
    ],
    ids=lambda v: ",".join(f"{k}={v[k]}" for k in v)[:48] if isinstance(v, dict) else "",
)
def test_bad_input_fails_at_construction_naming_it(tiny_config, change, named):
    with pytest.raises(ValueError) as err:
        tiny_config.replace(**change)
    for text in named:
        assert text in str(err.value), (text, str(err.value))


def test_whole_numbers_are_canonical_ints(tiny_config):
    spelled = tiny_config.replace(steps=30.0, batch_size=64.0, seed=np.int64(0), eval_every=10.0)
    assert spelled.key() == tiny_config.key() and spelled == tiny_config
    assert type(spelled.steps) is int and type(spelled.batch_size) is int
    assert type(spelled.seed) is int and type(tiny_config.replace(lr=1).lr) is float
    assert tiny_config.replace(diverge_factor=5).key() == tiny_config.key()


def test_option_names_come_from_the_modules_that_take_them():
    assert {"num_samples", "classes"} <= data_option_names("mnist1d")
    assert data_option_names("tinyshakespeare") == frozenset()
    assert {"betas", "weight_decay"} <= optimizer_option_names("adamw")
    assert "lr" not in optimizer_option_names("sgd") and "momentum" in optimizer_option_names("sgd")
    assert schedule_option_names("cosine") == {"warmup", "final"}
    with pytest.raises(ValueError, match="'cosin'"):
        schedule_option_names("cosin")


def test_checking_a_config_leaves_the_global_rng_alone(tiny_config):
    state = torch.get_rng_state()
    tiny_config.replace(model_options={"width": 17})  # a model not built before
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.skipif(not RESULTS.is_dir(), reason="no committed results/ store")
def test_every_committed_record_keeps_its_key():
    """Stricter checks must not move stored runs: each committed config still gives its key."""
    paths = sorted(RESULTS.glob("*/*.json"))
    assert paths
    for path in paths:
        config = json.loads(path.read_text())["config"]
        assert RunConfig.from_dict(config).key() == path.stem, path


# --------------------------------------------------------------------------------------------
# the store


def _fake_record(config: RunConfig) -> dict:
    return {
        "format": 1,
        "key": config.key(),
        "config": config.to_dict(),
        "status": "ok",
        "diverged_at": None,
        "steps": 30,
        "steps_done": 30,
        "curves": {"step": [30], "train_loss": [1.0], "val_loss": [1.0], "val_acc": [0.5]},
        "final": {"val_loss": 1.0, "val_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5},
        "wall_time_s": 1.0,
        "env": {},
    }


@pytest.mark.parametrize("field", RECORD_FIELDS)
def test_record_missing_a_field_is_named_with_its_file(tmp_path, tiny_config, field):
    store = Store(tmp_path)
    path = store.put("study", _fake_record(tiny_config))
    store.put("study", _fake_record(tiny_config.replace(seed=1)))
    broken = json.loads(path.read_text())
    del broken[field]
    path.write_text(json.dumps(broken))
    with pytest.warns(UnreadableRecordWarning, match=f"{path}.*missing field.*{field}"):
        frame = store.frame("study")
    assert frame["seed"].tolist() == [1]  # the other record is still read


def test_record_whose_config_moved_away_from_its_key_is_named(tmp_path, tiny_config):
    store = Store(tmp_path)
    path = store.put("study", _fake_record(tiny_config))
    edited = json.loads(path.read_text())
    edited["config"]["seed"] = 7  # hand-edited: the file name is the key of seed 0
    path.write_text(json.dumps(edited))
    with pytest.warns(UnreadableRecordWarning, match=f"{path}.*config has key"):
        assert store.get("study", tiny_config) is None
    with pytest.warns(UnreadableRecordWarning, match=str(path)):
        assert store.frame("study").empty


def test_record_with_an_invalid_config_is_named(tmp_path, tiny_config):
    store = Store(tmp_path)
    path = store.put("study", _fake_record(tiny_config))
    edited = json.loads(path.read_text())
    edited["config"]["steps"] = 2.5
    path.write_text(json.dumps(edited))
    with pytest.warns(UnreadableRecordWarning, match=f"{path}.*not a valid RunConfig.*2.5"):
        assert store.get("study", tiny_config) is None


def test_incomplete_record_is_refused_when_written(tmp_path, tiny_config):
    record = _fake_record(tiny_config)
    del record["final"]
    with pytest.raises(ValueError, match="refusing to write .* missing field.*final"):
        Store(tmp_path).put("study", record)


def test_complete_records_read_without_warnings(tmp_path, tiny_config):
    store = Store(tmp_path)
    store.put("study", _fake_record(tiny_config))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(store.frame("study")) == 1


def test_curves_of_a_record_without_curves_name_it(tmp_path, tiny_config):
    store = Store(tmp_path)
    record = _fake_record(tiny_config)
    del record["curves"]
    path = store.put("study", record)
    with pytest.raises(ValueError, match=f"{path} has no curves"):
        store.curves("study")
