"""MNIST-1D ``splits="generated"``: all published training examples train; validation and test
are fresh examples of the same generator, on the same scale, cached and deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerwise.harness import data


@pytest.fixture(scope="module")
def published():
    from mnist1d.data import get_dataset_args, make_dataset

    return make_dataset(get_dataset_args())


@pytest.fixture(scope="module")
def generated():
    return data.load("mnist1d", splits="generated")


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


def test_training_keeps_all_published_examples_and_reference_test_is_extra(generated, published):
    ds = generated
    assert (len(ds.train), len(ds.val), len(ds.test)) == (4000, 4000, 10000)
    assert set(ds.extra) == {"reference_test"}
    assert torch.equal(ds.train.x, _f32(published["x"]))  # all 4,000, in the published order
    assert torch.equal(ds.train.y, torch.as_tensor(published["y"]))
    assert torch.equal(ds.extra["reference_test"].x, _f32(published["x_test"]))
    assert torch.equal(ds.extra["reference_test"].y, torch.as_tensor(published["y_test"]))
    # make_dataset's per-template loop: num_samples // 10 examples of each label
    assert torch.bincount(ds.val.y).tolist() == [400] * 10
    assert torch.bincount(ds.test.y).tolist() == [1000] * 10


def test_generated_examples_duplicate_no_published_or_other_generated_example(generated):
    ds = generated
    seeds = [seed for seed, _ in data.MNIST1D_GENERATED.values()]
    assert len(set(seeds + [data.MNIST1D_REFERENCE_SEED])) == len(seeds) + 1 == 3

    def rows(x: torch.Tensor) -> set[bytes]:
        return {r.numpy().tobytes() for r in x}

    published = rows(ds.train.x) | rows(ds.extra["reference_test"].x)
    assert len(rows(ds.val.x)) == 4000 and len(rows(ds.test.x)) == 10000  # none repeated
    assert not rows(ds.val.x) & published
    assert not rows(ds.test.x) & published
    assert not rows(ds.val.x) & rows(ds.test.x)
    # not even near-duplicates: a generated example is no closer to its nearest training
    # example than training examples are to each other
    within = torch.cdist(ds.train.x, ds.train.x)
    within.fill_diagonal_(float("inf"))
    closest_within = float(within.min())
    for split in (ds.val, ds.test):
        assert float(torch.cdist(split.x, ds.train.x).min()) > 0.5 * closest_within


def test_the_generator_loop_reproduces_the_published_data_bit_for_bit(published):
    raw, labels = data._mnist1d_raw(data.MNIST1D_REFERENCE_SEED, 5000)
    standardised = (raw - raw.mean()) / raw.std()
    assert np.array_equal(standardised, np.concatenate([published["x"], published["x_test"]]))
    assert np.array_equal(labels, np.concatenate([published["y"], published["y_test"]]))


def test_generated_splits_share_the_published_scale(generated):
    # standardised with the published data's mean and deviation, not their own
    mean, std = data._mnist1d_reference_scale()
    raw, _ = data._mnist1d_raw(data.MNIST1D_GENERATED["val"][0], 4000)
    assert torch.equal(generated.val.x, _f32((raw - mean) / std))
    assert not torch.equal(generated.val.x, _f32((raw - raw.mean()) / raw.std()))
    for split in (generated.val, generated.test):
        assert abs(float(split.x.mean())) < 0.05 and abs(float(split.x.std()) - 1) < 0.05


def test_generation_is_cached_on_disk_and_deterministic(tmp_path, monkeypatch):
    data._mnist1d_reference_scale()  # published scale computed once (default cache)
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path))
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (mnist1d reseeds this stream)
    first = data._mnist1d_generated(7, 200)
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002 (left alone)
    (path,) = tmp_path.glob("mnist1d-*-generated-seed7-200.npz")
    again = data._mnist1d_generated(7, 200)  # from the cache
    path.unlink()
    regenerated = data._mnist1d_generated(7, 200)  # from scratch
    for k in ("x", "y"):
        assert np.array_equal(first[k], again[k]) and np.array_equal(first[k], regenerated[k])
    other = data._mnist1d_generated(8, 200)
    assert first["x"].shape == other["x"].shape == (200, 40)
    assert not np.allclose(first["x"], other["x"])
    with pytest.raises(ValueError, match="published data's seed"):
        data._mnist1d_generated(data.MNIST1D_REFERENCE_SEED, 200)


def test_two_loads_are_equal(generated):
    data._load_mnist1d_generated.cache_clear()
    again = data.load("mnist1d", splits="generated")
    assert again is not generated
    for a, b in [(generated.val, again.val), (generated.test, again.test)]:
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_reference_splits_are_the_default_and_unchanged():
    default = data.load("mnist1d")
    explicit = data.load("mnist1d", splits="reference")
    assert default.extra == {}
    assert (len(default.train), len(default.val), len(default.test)) == (3600, 400, 1000)
    assert torch.equal(default.val.x, explicit.val.x)


def test_class_subsets_relabel_the_extra_split_too():
    ds = data.load("mnist1d", splits="generated", classes=[3, 5], train_per_class=10)
    assert len(ds.train) == 20 and ds.spec.num_classes == 2
    whole = data.load("mnist1d", splits="generated")
    ref, whole_ref = ds.extra["reference_test"], whole.extra["reference_test"]
    kept = (whole_ref.y == 3) | (whole_ref.y == 5)
    assert torch.equal(ref.x, whole_ref.x[kept])
    assert torch.equal(ref.y, (whole_ref.y[kept] == 5).long())  # 3 -> 0, 5 -> 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"splits": "fresh"}, "'generated'"),
        ({"splits": "generated", "val_fraction": 0.2}, "'val_fraction'"),
        ({"splits": "generated", "num_samples": 6000}, "'num_samples'"),
    ],
)
def test_bad_split_options_are_named(options, named):
    with pytest.raises(ValueError, match=named):
        data.load("mnist1d", **options)


def test_splits_is_an_mnist1d_option_only():
    with pytest.raises(ValueError, match="'splits'"):
        data.load("fashion_mnist", splits="generated")
