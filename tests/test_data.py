"""Data loaders: published splits, fixed validation carving, checksums, offline behaviour."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile

import numpy as np
import pytest
import torch

from conftest import has_fashion, has_shakespeare
from layerwise.harness import data


def test_mnist1d_matches_the_package_and_published_split():
    from mnist1d.data import get_dataset_args, make_dataset

    ds = data.load("mnist1d")
    reference = make_dataset(get_dataset_args())
    # published 4,000 / 1,000 split; validation carved from the 4,000
    assert (len(ds.train), len(ds.val), len(ds.test)) == (3600, 400, 1000)
    assert torch.equal(ds.test.x, torch.as_tensor(reference["x_test"], dtype=torch.float32))
    assert torch.equal(ds.test.y, torch.as_tensor(reference["y_test"]))
    # train + val is a permutation of the published training split
    pooled = torch.cat([ds.train.x, ds.val.x])
    ref = torch.as_tensor(reference["x"], dtype=torch.float32)
    assert sorted(map(tuple, pooled.tolist())) == sorted(map(tuple, ref.tolist()))


def test_validation_is_disjoint_from_training_and_fixed():
    a, b = data.load("mnist1d"), data.load("mnist1d", val_fraction=0.1)
    train_rows = {tuple(r) for r in a.train.x.tolist()}
    assert not any(tuple(r) in train_rows for r in a.val.x.tolist())
    assert torch.equal(a.val.x, b.val.x)


def test_mnist1d_size_option():
    ds = data.load("mnist1d", num_samples=6000)
    assert len(ds.train) + len(ds.val) == 4800 and len(ds.test) == 1200


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: data.load("mnist2d"), "'mnist2d'"),
        (lambda: data.load("mnist1d", size=3), "'size'"),
        (lambda: data.load("mnist1d", val_fraction=1.5), "1.5"),
    ],
)
def test_bad_arguments_name_the_value_and_valid_ones(call, named):
    with pytest.raises(ValueError) as err:
        call()
    assert named in str(err.value)
    if "mnist2d" in named:
        assert "fashion_mnist" in str(err.value) and "tinyshakespeare" in str(err.value)


def _idx(array: np.ndarray) -> bytes:
    """Encode an unsigned-byte IDX file by hand (magic 0x0000 08 ndim, big-endian sizes)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_parser_reads_hand_written_files():
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert np.array_equal(data._parse_idx(_idx(images)), images)
    with pytest.raises(ValueError):
        data._parse_idx(_idx(images)[:-1])


def test_fashion_checksum_mismatch_refuses_the_file(tmp_path, monkeypatch):
    stem = "t10k-labels-idx1-ubyte"
    (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(_idx(np.zeros(10))))
    monkeypatch.setenv("LAYERWISE_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=f"checksum mismatch for .*{stem}"):
        data._fashion_file(stem, download=False)


def test_fashion_offline_without_files_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_DATA", str(tmp_path))
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "none")

    def no_network(*args, **kwargs):
        raise AssertionError("download=False touched the network")

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(data.DataUnavailableError) as err:
        data._fashion_file("train-images-idx3-ubyte", download=False)
    message = str(err.value)
    assert "\n" not in message and "dataset-fashion-mnist" in message


def test_failed_download_becomes_one_line_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_DATA", str(tmp_path))
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "none")

    def refused(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(data, "_download", refused)
    with pytest.raises(data.DataUnavailableError, match="dataset-fashion-mnist"):
        data._fashion_file("train-labels-idx1-ubyte", download=True)


@pytest.mark.skipif(not has_fashion(), reason="Fashion-MNIST files not installed")
def test_fashion_mnist_published_split():
    ds = data.load("fashion_mnist", download=False)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    assert ds.train.x.shape[1:] == (1, 28, 28)
    assert torch.bincount(ds.test.y).tolist() == [1000] * 10  # the test set is balanced
    assert abs(float(ds.train.x.mean())) < 1e-3 and abs(float(ds.train.x.std()) - 1) < 1e-3


@pytest.mark.skipif(not has_shakespeare(), reason="tinyshakespeare.txt not in LAYERWISE_DATA")
def test_tinyshakespeare_splits_follow_nanogpt():
    ds = data.load("tinyshakespeare", download=False)
    total = len(ds.train) + len(ds.val) + len(ds.test)
    assert total == 1_115_394 and len(ds.vocab) == 65 == ds.spec.num_classes
    assert len(ds.test) == 1_115_394 - int(1_115_394 * 0.9)  # nanoGPT's last 10%
    text = (data._data_dir() / "tinyshakespeare.txt").read_text()
    decoded = "".join(ds.vocab[i] for i in ds.train.tokens[:200].tolist())
    assert decoded == text[:200]


def test_tinyshakespeare_checksum_and_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_DATA", str(tmp_path))
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(data.DataUnavailableError, match="LAYERWISE_DATA"):
        data._shakespeare_text(download=False)
    (tmp_path / "tinyshakespeare.txt").write_text("To be, or not to be\n")
    with pytest.raises(ValueError, match="checksum mismatch"):
        data._shakespeare_text(download=False)


def _cifar_batch(labels: list[int], seed: int) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    records = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], pixels], axis=1)
    return records.tobytes(), pixels


def test_cifar10_loader_reads_an_archive_in_the_binary_format(tmp_path):
    parts = {
        "data_batch_1.bin": _cifar_batch([0, 1, 2, 3, 4], 1),
        "data_batch_2.bin": _cifar_batch([5, 6, 7, 8, 9], 2),
        "test_batch.bin": _cifar_batch([9, 8, 7], 3),
    }
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, (content, _) in parts.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    ds = data._cifar10_from_archive(archive, val_fraction=0.2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 2, 3)
    assert ds.test.y.tolist() == [9, 8, 7]
    assert sorted(ds.train.y.tolist() + ds.val.y.tolist()) == list(range(10))
    # standardisation is affine per channel, so each channel stays perfectly correlated with
    # the bytes written (this fails if channels or rows were mixed up)
    assert ds.test.x.shape[1:] == (3, 32, 32)
    written = torch.from_numpy(parts["test_batch.bin"][1].reshape(3, 3, 32, 32) / 255.0)
    for channel in range(3):
        got, want = ds.test.x[:, channel].flatten(), written[:, channel].flatten()
        assert np.corrcoef(got, want)[0, 1] > 0.9999


def test_cifar10_offline_without_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path))
    data._load_cifar10.cache_clear()
    with pytest.raises(data.DataUnavailableError, match="download"):
        data.load("cifar10", download=False)


# --------------------------------------------------------------------------------------------
# download=False still reads files an earlier download left in the cache


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty $LAYERWISE_DATA, no Debian copy, a fresh cache folder, and no network."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("LAYERWISE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LAYERWISE_CACHE", str(cache))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "none")

    def no_network(*args, **kwargs):
        raise AssertionError("download=False touched the network")

    monkeypatch.setattr(data, "_download", no_network)
    for loader in (data._load_fashion_mnist, data._load_cifar10, data._load_tinyshakespeare):
        loader.cache_clear()
    yield cache
    for loader in (data._load_fashion_mnist, data._load_cifar10, data._load_tinyshakespeare):
        loader.cache_clear()  # later tests must not see the fake data


def test_fashion_offline_uses_files_in_the_download_cache(offline, monkeypatch):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(20, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(20) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(5, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([9, 8, 7, 6, 5]),
    }
    for stem, array in files.items():
        content = _idx(array)
        # the name pooch gives a download; gzipped as downloaded
        (offline / data._fashion_cache_name(stem)).write_bytes(gzip.compress(content))
        monkeypatch.setitem(data.FASHION_SHA256, stem, data._sha256(content))
    ds = data.load("fashion_mnist", download=False, val_fraction=0.25)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (15, 5, 5)
    assert ds.test.y.tolist() == [9, 8, 7, 6, 5]
    # a cached file is still checked
    monkeypatch.setitem(data.FASHION_SHA256, "t10k-labels-idx1-ubyte", "0" * 64)
    with pytest.raises(ValueError, match="checksum mismatch"):
        data._fashion_file("t10k-labels-idx1-ubyte", download=False)


def test_tinyshakespeare_offline_uses_the_download_cache(offline, monkeypatch):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    (offline / "tinyshakespeare.txt").write_text(text)
    monkeypatch.setattr(data, "SHAKESPEARE_SHA256", data._sha256(text.encode()))
    ds = data.load("tinyshakespeare", download=False)
    assert len(ds.train) + len(ds.val) + len(ds.test) == len(text)
    assert "".join(ds.vocab[i] for i in ds.train.tokens[:14].tolist()) == "First Citizen:"


def test_cifar10_offline_uses_the_cached_archive_and_checks_it(offline, monkeypatch):
    content, _ = _cifar_batch(list(range(10)), 4)
    test_content, _ = _cifar_batch([1, 2], 5)
    archive = offline / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, blob in [("data_batch_1.bin", content), ("test_batch.bin", test_content)]:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    import hashlib

    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(data, "CIFAR10_MD5", f"md5:{md5}")
    ds = data.load("cifar10", download=False, val_fraction=0.2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 2, 2)
    # a corrupt cached archive is refused without going to the network (pooch would re-fetch)
    data._load_cifar10.cache_clear()
    monkeypatch.setattr(data, "CIFAR10_MD5", "md5:" + "0" * 32)
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.load("cifar10", download=False)
