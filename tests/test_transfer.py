"""Transfer (ULMFiT's fine-tuning controls): class subsets and few-shot data, initialisation from
a cached pretraining run, gradual unfreezing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from conftest import has_fashion
from layerwise import layers, transfer
from layerwise.harness import data, models, pretraining, train
from layerwise.harness.config import RunConfig

FIRST, LAST = (0, 1, 2, 3, 4), (9, 7, 5, 8, 6)  # LAST is out of order: labels follow the order


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty weight cache (MNIST-1D is loaded first, so it is not generated again there)."""
    data.load("mnist1d")
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def pretrain():
    return RunConfig(
        dataset="mnist1d",
        model="cnn",
        lr=3e-3,
        batch_size=32,
        steps=3,
        eval_every=3,
        data_options={"classes": FIRST},
        model_options={"width": 4, "depth": 2},
    )


def _raw_labels(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Published training and test labels, read without ``load``'s split and relabelling."""
    if name == "mnist1d":
        raw = data._mnist1d_arrays(5000)
        return np.asarray(raw["y"]), np.asarray(raw["y_test"])
    train_y, test_y = (
        data._parse_idx(data._fashion_file(f"{stem}-labels-idx1-ubyte", False))
        for stem in ("train", "t10k")
    )
    return train_y, test_y


IMAGE_DATA = [
    "mnist1d",
    pytest.param(
        "fashion_mnist", marks=pytest.mark.skipif(not has_fashion(), reason="no Fashion-MNIST")
    ),
]


# --------------------------------------------------------------------------------------------
# data: classes and train_per_class


@pytest.mark.parametrize("name", IMAGE_DATA)
def test_classes_keep_and_renumber_the_chosen_labels(name):
    sub = data.load(name, download=False, classes=list(LAST))
    raw_train, raw_test = _raw_labels(name)
    assert sub.spec.num_classes == len(LAST)
    for new, old in enumerate(LAST):
        kept = int((sub.train.y == new).sum() + (sub.val.y == new).sum())
        assert kept == int((raw_train == old).sum())
        assert int((sub.test.y == new).sum()) == int((raw_test == old).sum())
    whole = data.load(name, download=False)
    for part in ("train", "val", "test"):
        s, w = getattr(sub, part), getattr(whole, part)
        assert set(s.y.tolist()) == set(range(len(LAST)))
        for new, old in enumerate(LAST):  # same examples, same order
            assert torch.equal(s.x[s.y == new], w.x[w.y == old])


def test_train_per_class_keeps_the_first_n_and_is_deterministic():
    sub = data.load("mnist1d", classes=LAST, train_per_class=7)
    whole = data.load("mnist1d")
    assert torch.bincount(sub.train.y).tolist() == [7] * len(LAST)
    for new, old in enumerate(LAST):
        assert torch.equal(sub.train.x[sub.train.y == new], whole.train.x[whole.train.y == old][:7])
        assert torch.equal(sub.val.x[sub.val.y == new], whole.val.x[whole.val.y == old])
    first_positions = [int((whole.train.y == old).nonzero()[0]) for old in LAST]
    assert int(sub.train.y[0]) == int(np.argmin(first_positions))  # the split's own order
    data._load_subset.cache_clear()
    again = data.load("mnist1d", classes=list(LAST), train_per_class=7)
    assert again is not sub and torch.equal(again.train.x, sub.train.x)
    assert torch.equal(again.train.y, sub.train.y)
    all_classes = data.load("mnist1d", train_per_class=3)
    assert all_classes.spec.num_classes == 10 and len(all_classes.train) == 30


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"classes": [1, 12]}, "class label 12; valid: 0, 1"),
        ({"classes": [3, 3]}, r"\[3, 3\]"),
        ({"classes": [3]}, r"\[3\]"),
        ({"classes": 3}, "got 3"),
        ({"classes": [0, -1]}, "got -1"),
        ({"train_per_class": 0}, "train_per_class must be an integer >= 1, got 0"),
        ({"train_per_class": 2.5}, "got 2.5"),
        ({"classes": FIRST, "train_per_class": 10**6}, r"1000000 .* valid: 1\.\."),
    ],
)
def test_bad_subset_options_name_the_value(options, named):
    with pytest.raises(ValueError, match=named):
        data.load("mnist1d", **options)


def test_subset_options_from_a_config_load():
    config = RunConfig(
        dataset="mnist1d",
        model="mlp",
        lr=1e-3,
        batch_size=8,
        steps=1,
        data_options={"classes": [2, 1], "train_per_class": 4},
    )
    assert config.data_options["classes"] == (2, 1)  # frozen into a tuple
    ds = data.load(config.dataset, **config.data_options)
    assert ds.spec.num_classes == 2 and len(ds.train) == 8


# --------------------------------------------------------------------------------------------
# config fields


def test_init_from_is_validated_and_canonical(pretrain):
    loose = {**pretrain.to_dict(), "probe_every": None}  # a default spelled out
    a = pretrain.replace(init_from=loose)
    b = pretrain.replace(init_from=pretrain)
    assert a.key() == b.key() != pretrain.key()
    assert RunConfig.from_dict(a.init_from) == pretrain
    assert RunConfig.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError, match="init_from .*'imagenet'"):
        pretrain.replace(init_from={**pretrain.to_dict(), "dataset": "imagenet"})
    with pytest.raises(ValueError, match="needs init_from"):
        pretrain.replace(reinit=("body",))
    with pytest.raises(ValueError, match="reinit must be .* got 'head'"):
        pretrain.replace(init_from=pretrain, reinit="head")
    with pytest.raises(ValueError, match="unfreeze_every .* got 0"):
        pretrain.replace(unfreeze_every=0)


# --------------------------------------------------------------------------------------------
# initialisation from a pretrained run


def test_fine_tune_starts_from_the_pretrained_weights_but_the_head(cache, pretrain, monkeypatch):
    finetune = pretrain.replace(
        seed=5, data_options={"classes": LAST, "train_per_class": 10}, init_from=pretrain
    )
    started = {}
    load = transfer.load_pretrained

    def spy(model, state, reinit):
        load(model, state, reinit)
        started.update({n: t.clone() for n, t in model.state_dict().items()})

    monkeypatch.setattr(transfer, "load_pretrained", spy)
    record = train.run(finetune, initial_state=pretraining.initial_state(finetune))
    assert record["status"] == "ok" and record["key"] == finetune.key()

    state = pretraining.pretrained_state(pretrain)
    assert pretraining.weights_path(pretrain) == cache / "weights" / f"{pretrain.key()}.pt"
    _, model = train.train(pretrain)  # the pretraining run's final weights
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[n], t) for n, t in model.state_dict().items())
    torch.manual_seed(finetune.seed)
    fresh = models.build("cnn", data.load("mnist1d", classes=LAST).spec, width=4, depth=2)
    for name, tensor in started.items():
        expected = fresh.state_dict()[name] if name.startswith("head.") else state[name]
        assert torch.equal(tensor, expected), name
    assert not torch.equal(started["head.weight"], state["head.weight"])

    def no_training(*args, **kwargs):
        raise AssertionError("pretraining ran again instead of reading the cache")

    monkeypatch.setattr(train, "train", no_training)
    cached = pretraining.pretrained_state(pretrain)
    assert all(torch.equal(cached[n], t) for n, t in state.items())


def test_pretrain_keeps_the_record_and_trains_once_for_concurrent_callers(
    cache, pretrain, monkeypatch
):
    expected = train.run(pretrain)["final"]  # the run's own record, trained here first
    calls = []
    real = train.train

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train", counted)
    with ThreadPoolExecutor(3) as pool:  # three workers that need the same pretrained model
        records = list(pool.map(lambda _: pretraining.pretrain(pretrain), range(3)))
    assert len(calls) == 1
    assert all(r == records[0] for r in records)
    assert records[0]["key"] == pretrain.key() and records[0]["status"] == "ok"
    assert records[0]["final"] == expected
    pretraining.pretrained_state(pretrain)
    assert len(calls) == 1


def test_initial_state_is_required_exactly_with_init_from(cache, pretrain):
    finetune = pretrain.replace(init_from=pretrain)
    with pytest.raises(ValueError, match="initial_state must be given exactly"):
        train.run(finetune)
    with pytest.raises(ValueError, match="initial_state must be given exactly"):
        train.run(pretrain, initial_state=pretraining.pretrained_state(pretrain))
    assert pretraining.initial_state(pretrain) is None


def test_train_does_not_import_pretraining():
    """``pretraining`` trains through ``train``; ``train`` receives pretrained weights as an
    argument, so the two modules do not import each other."""
    import ast
    import inspect

    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(train))):
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module or ""} | {alias.name for alias in node.names}
    assert not any("pretraining" in name for name in imported)


def test_pretrained_weights_must_fit(cache, pretrain):
    ten_classes = pretrain.replace(data_options={})
    model = models.build("cnn", data.load("mnist1d", classes=LAST).spec, width=4, depth=2)
    state = pretraining.pretrained_state(ten_classes)
    with pytest.raises(ValueError, match=r"'head.weight' has shape \(10, 40\)"):
        transfer.load_pretrained(model, state, reinit=())
    with pytest.raises(ValueError, match="reinit module 'classifier'"):
        transfer.load_pretrained(model, state, reinit=("classifier",))
    with pytest.raises(ValueError, match=r"missing \['body.0.bias'\]"):
        transfer.load_pretrained(model, {n: t for n, t in state.items() if n != "body.0.bias"})
    transfer.load_pretrained(model, state)  # a new head fits any number of classes
    assert torch.equal(model.body[0].weight, state["body.0.weight"])


# --------------------------------------------------------------------------------------------
# gradual unfreezing


@pytest.mark.parametrize("steps", [2, 4, 5])
def test_gradual_unfreezing_moves_each_depth_only_from_its_turn(pretrain, steps):
    config = pretrain.replace(
        steps=steps, unfreeze_every=2, optimizer_options={"weight_decay": 0.1}
    )
    _, model = train.train(config)
    spec = data.load("mnist1d", classes=FIRST).spec
    torch.manual_seed(config.seed)
    start = models.build("cnn", spec, width=4, depth=2)
    table = layers.layer_table(start, torch.zeros(2, 40))
    assert table["depth"].max() == 2
    lowest = 2 - (steps - 1) // 2  # depths >= lowest have trained at least once
    after, before = dict(model.named_parameters()), dict(start.named_parameters())
    for name, depth in zip(table["name"], table["depth"], strict=True):
        moved = not torch.equal(after[name], before[name])
        assert moved == (depth >= lowest), (name, depth, steps)


def test_unfreezing_schedule_counts_steps_from_the_top():
    model = models.build("cnn", "mnist1d", width=4, depth=2)
    unfreezing = transfer.GradualUnfreezing(model, torch.zeros(2, 40), every=3)
    assert [unfreezing.lowest_depth(s) for s in range(1, 11)] == [2, 2, 2, 1, 1, 1, 0, 0, 0, 0]
    model(torch.randn(4, 40)).sum().backward()
    unfreezing.apply(4)
    assert model.body[0].weight.grad is None and model.body[0].bias.grad is None
    assert model.body[2].weight.grad is not None and model.head.weight.grad is not None
