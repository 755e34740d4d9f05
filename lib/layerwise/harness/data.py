"""Benchmarks as in-memory tensors with fixed train / validation / test splits.

``load(name)`` returns a :class:`Dataset` whose ``train``, ``val`` and ``test`` splits are plain
tensors: small benchmarks fit in memory, and batching by indexing a tensor is many times faster
than a per-sample ``DataLoader`` on a CPU.  The validation split is carved from the published
training split with a fixed seed; the published test split is never touched.  (MNIST-1D's
``splits="generated"`` instead generates fresh validation and test splits and keeps the
published test split as ``Dataset.extra["reference_test"]``.)

Sources, in the order they are tried:

* ``mnist1d`` -- generated locally by the ``mnist1d`` package (Greydanus 2020); default arguments
  give the published 4,000 / 1,000 split, ``num_samples`` gives more.  ``splits="generated"``
  trains on all 4,000 published training examples and draws 4,000 validation and 10,000 test
  examples afresh from the same generator and generation arguments with other seeds
  (:data:`MNIST1D_GENERATED`: validation seed 142, test seed 242; the published data's is 42),
  standardised with the published data's mean and deviation, checked to repeat no published
  example, and cached on disk.
* ``fashion_mnist`` -- the four IDX files (Xiao, Rasul, Vollgraf 2017) from ``$LAYERWISE_DATA``,
  then ``/usr/share/datasets/fashion-mnist/`` (Debian ``dataset-fashion-mnist``), then an earlier
  download in the cache, then a download into the cache.  The SHA-256 of the *uncompressed*
  content is checked, so a recompressed Debian copy and an upstream download both pass.
* ``tinyshakespeare`` -- ``$LAYERWISE_DATA/tinyshakespeare.txt``, then the download cache, else a
  download; same check.
  Splits follow nanoGPT: the first 90% of characters is training data (its last ninth is our
  validation split), the last 10% is the test split (nanoGPT's "val").
* ``tinyshakespeare_passages`` -- passages of the same text labelled real (0) or with their
  words reordered (1), as token ids of tiny-shakespeare's vocabulary (``harness.passages``);
  training, validation and test passages are cut from the three regions of ``tinyshakespeare``,
  so a language model pretrained on its training split never reads a held-out passage.
* ``cifar10`` -- the download cache, else a download (the binary version, no pickle).

The download cache is ``$LAYERWISE_CACHE`` if set, else pooch's per-user cache folder for
``layerwise``; ``download=False`` reads what is already there and never touches the network.

Every classification benchmark also takes ``classes`` (keep these original labels, renumbered
0..k-1 in the given order, in all three splits) and ``train_per_class`` (keep only the first N
training examples of each kept class, in the training split's fixed order): the class-split and
few-shot data of a transfer study such as ULMFiT's (Howard & Ruder 2018, arXiv:1801.06146).
Inputs keep the normalisation of the whole training split, so a model pretrained on some
classes sees the same input scale when it is fine-tuned on others.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import random
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .._validate import check_choice, check_int, check_options, check_positive
from .passages import REORDERINGS, passages

__all__ = [
    "DATASETS",
    "MNIST1D_GENERATED",
    "MNIST1D_REFERENCE_SEED",
    "PASSAGE_SEEDS",
    "DataUnavailableError",
    "Dataset",
    "DatasetSpec",
    "Split",
    "TextSplit",
    "example_input",
    "load",
    "spec",
]

DOWNLOAD_TIMEOUT_S = 60
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "md5:c32a1d4ab5d03f1284b67883e8d87530"


class DataUnavailableError(RuntimeError):
    """No source of a dataset worked; the message says in one line what to install or set."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a model needs to know about a dataset without loading it."""

    name: str
    task: str  # "classification" or "language"
    input_shape: tuple[int, ...]  # per example; (block,) is decided by the model for text
    num_classes: int  # classes, or vocabulary size for a language task
    vocab_size: int | None = None  # text classification: inputs are token ids below this


DATASETS: dict[str, DatasetSpec] = {
    "mnist1d": DatasetSpec("mnist1d", "classification", (40,), 10),
    "fashion_mnist": DatasetSpec("fashion_mnist", "classification", (1, 28, 28), 10),
    "cifar10": DatasetSpec("cifar10", "classification", (3, 32, 32), 10),
    "tinyshakespeare": DatasetSpec("tinyshakespeare", "language", (), 65),
    "tinyshakespeare_passages": DatasetSpec(
        "tinyshakespeare_passages", "classification", (64,), 2, vocab_size=65
    ),
}


def spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a dataset name (raises naming the valid names)."""
    return DATASETS[check_choice("dataset", name, DATASETS)]


def example_input(spec: DatasetSpec, batch: int = 2) -> torch.Tensor:
    """A batch of zero inputs a model of ``spec`` accepts (to trace its layers): token ids for
    text (a language task reads windows of 8 characters here), floats otherwise."""
    if spec.task == "language":
        return torch.zeros(batch, 8, dtype=torch.long)
    dtype = torch.long if spec.vocab_size is not None else torch.float32
    return torch.zeros(batch, *spec.input_shape, dtype=dtype)


@dataclass(frozen=True)
class Split:
    """Inputs ``x`` and integer labels ``y`` of one split; ``len()`` counts examples."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class TextSplit:
    """A token stream of one split; ``len()`` counts characters."""

    tokens: torch.Tensor

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Dataset:
    """A loaded benchmark: its spec, three fixed splits, and ``extra`` named splits.

    ``extra`` holds further evaluation splits by name (empty unless an option adds some, e.g.
    MNIST-1D's ``"reference_test"`` under ``splits="generated"``); training never reads them.
    """

    spec: DatasetSpec
    train: Split | TextSplit
    val: Split | TextSplit
    test: Split | TextSplit
    vocab: str | None = field(default=None)  # characters of a language task, index = token id
    extra: dict[str, Split | TextSplit] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


# --------------------------------------------------------------------------------------------
# public entry point


_SUBSET_OPTIONS = {"classes", "train_per_class"}
_OPTIONS = {
    "mnist1d": {"num_samples", "val_fraction", "splits"} | _SUBSET_OPTIONS,
    "fashion_mnist": {"val_fraction"} | _SUBSET_OPTIONS,
    "cifar10": {"val_fraction"} | _SUBSET_OPTIONS,
    "tinyshakespeare": set(),
    "tinyshakespeare_passages": {"length", "reordering", "train_per_class"},
}


def load(name: str, *, download: bool = True, **options) -> Dataset:
    """Load a benchmark as in-memory tensors with fixed train / val / test splits.

    Args:
        name: one of ``DATASETS``.
        download: allow a network download when no local copy exists.  ``False`` never touches
            the network (files already in the download cache are still used).
        **options: ``val_fraction`` (share of the published training split held out for
            validation, default 0.1) for image data; ``num_samples`` for ``mnist1d`` (default
            5000, the published size).  ``mnist1d`` also takes ``splits``: ``"reference"`` (the
            default: validation carved from the published training split, the published test
            split) or ``"generated"`` (all 4,000 published training examples train; validation
            and test are fresh examples of the same generator, :data:`MNIST1D_GENERATED`; the
            published 1,000 test examples are ``extra["reference_test"]``; takes neither
            ``num_samples`` nor ``val_fraction``).  Classification data also take ``classes``
            (a sequence of distinct original labels to keep, at least two; they become labels
            0..k-1 in the given order in every split and ``spec.num_classes`` becomes k) and
            ``train_per_class`` (keep the first N examples of each kept class of the training
            split, after the validation carve-out; validation, test and extra splits stay whole).
            ``tinyshakespeare_passages`` takes ``length`` (characters per passage, default 64),
            ``reordering`` (``"shuffle"``, the default, or ``"swap"``: see
            ``harness.passages``) and ``train_per_class`` (the first N training passages of
            each label; default: all of them).

    Raises:
        ValueError: unknown name or option, or a bad option value.
        DataUnavailableError: no source worked (the message says what to install or set).
    """
    check_choice("dataset", name, DATASETS)
    check_options(f"{name} data", options, _OPTIONS[name])
    val_fraction = options.get("val_fraction", 0.1)
    per_class = options.get("train_per_class")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    if name == "tinyshakespeare":
        return _load_tinyshakespeare(bool(download))
    if name == "tinyshakespeare_passages":
        return _load_passages(
            bool(download),
            check_int("passage length", options.get("length", 64), 2),
            check_choice("reordering", options.get("reordering", "shuffle"), REORDERINGS),
            None if per_class is None else check_int("train_per_class", per_class, 1),
        )
    splits = check_choice(f"{name} splits", options.get("splits", "reference"), _SPLITS)
    if splits == "generated":
        clash = sorted({"num_samples", "val_fraction"} & set(options))
        if clash:
            raise ValueError(
                f"mnist1d splits='generated' uses the published 4,000 training examples and "
                f"fixed generated validation / test sizes; drop {', '.join(map(repr, clash))}"
            )
    num_samples = int(check_positive("num_samples", options.get("num_samples", 5000)))
    classes = _checked_classes(name, options.get("classes"))
    if per_class is not None:
        check_int("train_per_class", per_class, 1)
    whole = (name, bool(download), float(val_fraction), num_samples, splits)
    if classes is None and per_class is None:
        return _load_whole(*whole)
    return _load_subset(*whole, classes, per_class)


_SPLITS = ("reference", "generated")


def _load_whole(
    name: str, download: bool, val_fraction: float, num_samples: int, splits: str = "reference"
) -> Dataset:
    if name == "mnist1d":
        if splits == "generated":
            return _load_mnist1d_generated()
        return _load_mnist1d(num_samples, val_fraction)
    if name == "fashion_mnist":
        return _load_fashion_mnist(download, val_fraction)
    return _load_cifar10(download, val_fraction)


# --------------------------------------------------------------------------------------------
# class subsets and few-shot training data


def _checked_classes(name: str, classes: object) -> tuple[int, ...] | None:
    """``classes`` as a hashable tuple (``None`` stays ``None``); raises naming a bad label."""
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise ValueError(f"{name} classes must be a sequence of labels, got {classes!r}")
    labels = tuple(classes)
    for label in labels:
        check_int(f"{name} class label", label, 0)
        check_choice(f"{name} class label", label, range(DATASETS[name].num_classes))
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ValueError(
            f"{name} classes must be at least two distinct labels, got {list(labels)!r}"
        )
    return labels


def _relabel(split: Split, lookup: torch.Tensor) -> Split:
    """Keep the examples whose label maps to a new label (>= 0 in ``lookup``), relabelled."""
    new = lookup[split.y]
    keep = new >= 0
    return Split(split.x[keep], new[keep])


def _first_per_class(split: Split, k: int, per_class: int) -> Split:
    """The first ``per_class`` examples of each of labels 0..k-1, in the split's order."""
    counts = torch.bincount(split.y, minlength=k)
    if int(counts.min()) < per_class:
        label = int(counts.argmin())
        raise ValueError(
            f"train_per_class={per_class!r} exceeds the {int(counts[label])} training examples "
            f"of class {label} (after relabelling); valid: 1..{int(counts.min())}"
        )
    rank = torch.zeros_like(split.y)  # position of each example among those of its class
    for label in range(k):
        where = (split.y == label).nonzero().squeeze(1)
        rank[where] = torch.arange(len(where))
    keep = rank < per_class
    return Split(split.x[keep], split.y[keep])


@functools.lru_cache(maxsize=4)
def _load_subset(
    name: str,
    download: bool,
    val_fraction: float,
    num_samples: int,
    splits: str,
    classes: tuple[int, ...] | None,
    per_class: int | None,
) -> Dataset:
    whole = _load_whole(name, download, val_fraction, num_samples, splits)
    classes = classes or tuple(range(whole.spec.num_classes))
    lookup = torch.full((whole.spec.num_classes,), -1, dtype=torch.long)
    lookup[list(classes)] = torch.arange(len(classes))
    train, val, test = (_relabel(s, lookup) for s in (whole.train, whole.val, whole.test))
    if per_class is not None:
        train = _first_per_class(train, len(classes), per_class)
    extra = {k: _relabel(s, lookup) for k, s in whole.extra.items()}
    spec_ = replace(whole.spec, num_classes=len(classes))
    return Dataset(spec_, train, val, test, extra=extra)


# --------------------------------------------------------------------------------------------
# helpers shared by the loaders


def _carve_validation(x: torch.Tensor, y: torch.Tensor, val_fraction: float) -> tuple[Split, Split]:
    """Split the published training set into train / val with a fixed seed (0)."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_val = int(round(len(y) * val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verified(path: Path, content: bytes, expected: str) -> bytes:
    actual = _sha256(content)
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {path}: SHA-256 of its content is {actual}, expected "
            f"{expected}; refusing the file (delete or replace it)"
        )
    return content


def _data_dir() -> Path | None:
    value = os.environ.get("LAYERWISE_DATA")
    return Path(value) if value else None


def _cache_dir() -> Path:
    import pooch

    return Path(os.environ.get("LAYERWISE_CACHE") or pooch.os_cache("layerwise"))


def _download(url: str, fname: str, known_hash: str | None = None) -> Path:
    """Fetch ``url`` into the cache with a timeout (pooch); returns the local path."""
    import pooch

    downloader = pooch.HTTPDownloader(timeout=DOWNLOAD_TIMEOUT_S, progressbar=False)
    return Path(
        pooch.retrieve(
            url, known_hash=known_hash, fname=fname, path=_cache_dir(), downloader=downloader
        )
    )


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


# --------------------------------------------------------------------------------------------
# MNIST-1D


def _mnist1d_arrays(num_samples: int) -> dict[str, np.ndarray]:
    """Generate MNIST-1D once per size and keep the arrays in the cache (an ``.npz``, no pickle);
    generation is seeded (mnist1d's default seed 42), so the cache only saves time."""
    import mnist1d
    from mnist1d.data import get_dataset_args, make_dataset

    version = getattr(mnist1d, "__version__", "0")
    path = _cache_dir() / f"mnist1d-{version}-{num_samples}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return dict(cached)
    args = get_dataset_args()
    args.num_samples = num_samples
    made = make_dataset(args)
    arrays = {k: np.asarray(made[k]) for k in ("x", "y", "x_test", "y_test")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


@functools.lru_cache(maxsize=4)
def _load_mnist1d(num_samples: int, val_fraction: float) -> Dataset:
    raw = _mnist1d_arrays(num_samples)
    x = torch.as_tensor(np.asarray(raw["x"]), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(raw["y"]), dtype=torch.long)
    train, val = _carve_validation(x, y, val_fraction)
    test = Split(
        torch.as_tensor(np.asarray(raw["x_test"]), dtype=torch.float32),
        torch.as_tensor(np.asarray(raw["y_test"]), dtype=torch.long),
    )
    return Dataset(DATASETS["mnist1d"], train, val, test)


# Fresh MNIST-1D splits (``splits="generated"``): split name -> (generator seed, examples).  The
# published data use seed 42 (``get_dataset_args().seed``); these seeds differ from it and from
# each other, so their random streams -- template choice order, scale, translation, shear and
# both noises -- share nothing with the published examples.
MNIST1D_GENERATED: dict[str, tuple[int, int]] = {"val": (142, 4000), "test": (242, 10000)}
MNIST1D_REFERENCE_SEED = 42


def _mnist1d_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist1d")
    except PackageNotFoundError:  # pragma: no cover - an uninstalled source checkout
        return "0"


def _mnist1d_raw(seed: int, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised MNIST-1D examples drawn as ``mnist1d.data.make_dataset`` draws them -- the
    default generation arguments (``get_dataset_args()``), ``num_samples // 10`` examples per
    template in label order, then one shuffle -- but from ``seed``.  ``make_dataset`` itself
    standardises by the statistics of whatever it generated, so it cannot give examples on the
    published data's scale; this loop can.  Python's and NumPy's global random states (which
    ``mnist1d`` reseeds) are restored afterwards."""
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import transform
    from mnist1d.utils import set_seed

    args = get_dataset_args()
    if args.shuffle_seq:  # make_dataset would permute positions; the defaults never do
        raise RuntimeError("mnist1d default arguments changed: shuffle_seq is set")
    templates = get_templates()
    # mnist1d draws from NumPy's global stream, so this loop must too (NPY002 is deliberate)
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        set_seed(seed)
        xs, ys = [], []
        for label_ix in range(len(templates["y"])):
            for _ in range(num_samples // len(templates["y"])):
                x, _t = transform(templates["x"][label_ix], templates["t"], args)
                xs.append(x)
                ys.append(templates["y"][label_ix])
        order = np.random.permutation(len(ys))  # noqa: NPY002
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    return np.stack(xs)[order], np.stack(ys)[order]


@functools.lru_cache(maxsize=1)
def _mnist1d_reference_scale() -> tuple[float, float]:
    """Mean and standard deviation by which the published 5,000 examples were standardised,
    from regenerating them with seed 42; raises if the regeneration is not bit-identical to
    ``make_dataset``'s published data (then the generator is not the one the data came from)."""
    raw, labels = _mnist1d_raw(MNIST1D_REFERENCE_SEED, 5000)
    mean, std = raw.mean(), raw.std()
    published = _mnist1d_arrays(5000)
    x = np.concatenate([published["x"], published["x_test"]])
    y = np.concatenate([published["y"], published["y_test"]])
    if not (np.array_equal((raw - mean) / std, x) and np.array_equal(labels, y)):
        raise RuntimeError(
            "regenerating MNIST-1D with seed 42 did not reproduce the published data; the "
            f"installed mnist1d ({_mnist1d_version()}) draws examples differently"
        )
    return float(mean), float(std)


def _mnist1d_generated(seed: int, num_samples: int) -> dict[str, np.ndarray]:
    """``num_samples`` fresh MNIST-1D examples from ``seed``, standardised with the published
    data's mean and deviation (so they lie on the training data's scale); cached on disk."""
    if seed == MNIST1D_REFERENCE_SEED:
        raise ValueError(f"seed {seed} is the published data's seed; generated splits need others")
    path = _cache_dir() / f"mnist1d-{_mnist1d_version()}-generated-seed{seed}-{num_samples}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return dict(cached)
    mean, std = _mnist1d_reference_scale()
    raw, labels = _mnist1d_raw(seed, num_samples)
    arrays = {"x": (raw - mean) / std, "y": labels}
    published = _mnist1d_arrays(5000)
    _check_disjoint(arrays["x"], published["x"], f"generated seed {seed}", "published training")
    _check_disjoint(arrays["x"], published["x_test"], f"generated seed {seed}", "published test")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def _check_disjoint(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    """Raise if any example (row) of ``a`` equals one of ``b`` exactly."""
    rows = {r.tobytes() for r in np.ascontiguousarray(b, dtype=np.float64)}
    shared = sum(r.tobytes() in rows for r in np.ascontiguousarray(a, dtype=np.float64))
    if shared:
        raise RuntimeError(f"{shared} {a_name} examples duplicate {b_name} examples")


@functools.lru_cache(maxsize=1)
def _load_mnist1d_generated() -> Dataset:
    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))

    raw = _mnist1d_arrays(5000)
    made = {name: _mnist1d_generated(*seed_size) for name, seed_size in MNIST1D_GENERATED.items()}
    _check_disjoint(made["val"]["x"], made["test"]["x"], "generated validation", "generated test")
    return Dataset(
        DATASETS["mnist1d"],
        split(raw["x"], raw["y"]),
        split(made["val"]["x"], made["val"]["y"]),
        split(made["test"]["x"], made["test"]["y"]),
        extra={"reference_test": split(raw["x_test"], raw["y_test"])},
    )


# --------------------------------------------------------------------------------------------
# Fashion-MNIST


def _parse_idx(content: bytes) -> np.ndarray:
    """Decode an IDX file (LeCun's MNIST format): magic, dimension sizes, then uint8 data."""
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    ndim = content[3]
    dims = np.frombuffer(content, dtype=">u4", count=ndim, offset=4).astype(int)
    offset = 4 + 4 * ndim
    data = np.frombuffer(content, dtype=np.uint8, offset=offset)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"IDX header promises {tuple(dims)} values, file holds {data.size}")
    return data.reshape(tuple(dims))


def _fashion_cache_name(stem: str) -> str:
    """The file name a download of ``stem`` gets in the cache."""
    return f"fashion-mnist-{stem}.gz"


def _fashion_file(stem: str, download: bool) -> bytes:
    candidates = []
    if _data_dir() is not None:
        candidates += [_data_dir() / f"{stem}.gz", _data_dir() / stem]
    candidates += [DEBIAN_FASHION_DIR / f"{stem}.gz", DEBIAN_FASHION_DIR / stem]
    candidates.append(_cache_dir() / _fashion_cache_name(stem))  # an earlier download
    for path in candidates:
        if path.is_file():
            return _verified(path, _read_maybe_gzip(path), FASHION_SHA256[stem])
    if not download:
        raise DataUnavailableError(
            f"Fashion-MNIST file {stem} not found: install the Debian package "
            "dataset-fashion-mnist, or put the IDX files in $LAYERWISE_DATA, or allow download=True"
        )
    try:
        path = _download(FASHION_URL + f"{stem}.gz", _fashion_cache_name(stem))
    except Exception as exc:  # network errors come in many types; one message says what to do
        raise DataUnavailableError(
            f"Fashion-MNIST file {stem} could not be downloaded ({type(exc).__name__}): install "
            "the Debian package dataset-fashion-mnist, or put the IDX files in $LAYERWISE_DATA"
        ) from exc
    return _verified(path, _read_maybe_gzip(path), FASHION_SHA256[stem])


@functools.lru_cache(maxsize=2)
def _load_fashion_mnist(download: bool, val_fraction: float) -> Dataset:
    def images(stem: str) -> torch.Tensor:
        pixels = _parse_idx(_fashion_file(stem, download))
        return torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(1)

    def labels(stem: str) -> torch.Tensor:
        return torch.from_numpy(_parse_idx(_fashion_file(stem, download)).astype(np.int64))

    x, y = images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte")
    x_test, y_test = images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte")
    train, val = _carve_validation(x, y, val_fraction)
    mean, std = train.x.mean(), train.x.std()  # statistics of the training split only

    def norm(s: Split) -> Split:
        return Split((s.x - mean) / std, s.y)

    return Dataset(DATASETS["fashion_mnist"], norm(train), norm(val), norm(Split(x_test, y_test)))


# --------------------------------------------------------------------------------------------
# CIFAR-10 (binary version: per record one label byte, then 3 x 32 x 32 pixel bytes)

CIFAR10_RECORD = 1 + 3 * 32 * 32


def _parse_cifar10_archive(archive: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train_parts, test_part = [], None
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            base = Path(member.name).name
            if not member.isfile() or not base.endswith(".bin"):
                continue
            content = tar.extractfile(member).read()  # type: ignore[union-attr]
            if len(content) % CIFAR10_RECORD:
                raise ValueError(f"{member.name} in {archive} is not a CIFAR-10 binary batch")
            records = np.frombuffer(content, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
            if base.startswith("data_batch_"):
                train_parts.append((base, records))
            elif base == "test_batch.bin":
                test_part = records
    if not train_parts or test_part is None:
        raise ValueError(f"{archive} holds no data_batch_*.bin and test_batch.bin files")
    train = np.concatenate([r for _, r in sorted(train_parts, key=lambda p: p[0])])

    def split(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return r[:, 1:].reshape(-1, 3, 32, 32), r[:, 0].astype(np.int64)

    return (*split(train), *split(test_part))


def _cifar10_from_archive(archive: Path, val_fraction: float) -> Dataset:
    x, y, x_test, y_test = _parse_cifar10_archive(archive)

    def to_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0)

    train, val = _carve_validation(to_tensor(x), torch.from_numpy(y), val_fraction)
    mean = train.x.mean(dim=(0, 2, 3), keepdim=True)
    std = train.x.std(dim=(0, 2, 3), keepdim=True)

    def norm(s: Split) -> Split:
        return Split((s.x - mean) / std, s.y)

    test = Split(to_tensor(x_test), torch.from_numpy(y_test))
    return Dataset(DATASETS["cifar10"], norm(train), norm(val), norm(test))


def _check_md5(path: Path, expected: str) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise ValueError(
            f"checksum mismatch for {path}: MD5 of its content is {digest.hexdigest()}, "
            f"expected {expected}; refusing the file (delete or replace it)"
        )


@functools.lru_cache(maxsize=2)
def _load_cifar10(download: bool, val_fraction: float) -> Dataset:
    cached = _cache_dir() / "cifar-10-binary.tar.gz"
    if not download:
        if not cached.is_file():
            raise DataUnavailableError(
                f"CIFAR-10 is download-only and {cached} does not exist: allow download=True "
                "(about 160 MB) or set $LAYERWISE_CACHE to a folder holding cifar-10-binary.tar.gz"
            )
        # checked here, not by pooch: pooch would download again over a file that mismatches
        _check_md5(cached, CIFAR10_MD5.removeprefix("md5:"))
        return _cifar10_from_archive(cached, val_fraction)
    try:
        archive = _download(CIFAR10_URL, "cifar-10-binary.tar.gz", known_hash=CIFAR10_MD5)
    except ValueError:  # pooch's checksum mismatch: refuse the file, do not mask it
        raise
    except Exception as exc:
        raise DataUnavailableError(
            f"CIFAR-10 could not be downloaded from {CIFAR10_URL} ({type(exc).__name__}); "
            "place cifar-10-binary.tar.gz in $LAYERWISE_CACHE"
        ) from exc
    return _cifar10_from_archive(archive, val_fraction)


# --------------------------------------------------------------------------------------------
# tiny-shakespeare


def _shakespeare_text(download: bool) -> str:
    candidates = [_data_dir() / "tinyshakespeare.txt"] if _data_dir() is not None else []
    candidates.append(_cache_dir() / "tinyshakespeare.txt")  # an earlier download
    for local in candidates:
        if local.is_file():
            return _verified(local, local.read_bytes(), SHAKESPEARE_SHA256).decode("utf-8")
    if not download:
        raise DataUnavailableError(
            "tinyshakespeare.txt not found: set $LAYERWISE_DATA to a folder holding it "
            "or allow download=True"
        )
    try:
        path = _download(SHAKESPEARE_URL, "tinyshakespeare.txt")
    except Exception as exc:
        raise DataUnavailableError(
            f"tiny-shakespeare could not be downloaded ({type(exc).__name__}): set "
            "$LAYERWISE_DATA to a folder holding tinyshakespeare.txt"
        ) from exc
    return _verified(path, path.read_bytes(), SHAKESPEARE_SHA256).decode("utf-8")


def _shakespeare_bounds(n: int) -> tuple[int, int]:
    """Where tiny-shakespeare's validation and test regions start in a text of ``n`` characters:
    nanoGPT holds out the last 10%, and the last ninth of the rest is our validation split."""
    n_train = int(n * 0.9)
    return n_train - n_train // 9, n_train


def _encode(text: str, vocab: str) -> torch.Tensor:
    """``text`` as token ids, a character's id being its index in ``vocab``."""
    lookup = np.zeros(max(map(ord, vocab)) + 1, dtype=np.int64)
    lookup[[ord(c) for c in vocab]] = np.arange(len(vocab))
    return torch.from_numpy(lookup[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)])


@functools.lru_cache(maxsize=1)
def _load_tinyshakespeare(download: bool) -> Dataset:
    text = _shakespeare_text(download)
    vocab = "".join(sorted(set(text)))
    tokens = _encode(text, vocab)
    n_fit, n_train = _shakespeare_bounds(len(tokens))
    spec_ = DatasetSpec("tinyshakespeare", "language", (), len(vocab))
    return Dataset(
        spec_,
        TextSplit(tokens[:n_fit]),
        TextSplit(tokens[n_fit:n_train]),
        TextSplit(tokens[n_train:]),
        vocab=vocab,
    )


# Seeds of the passage regions' labels and order (``passages.passages``), one per split.
PASSAGE_SEEDS = {"train": 0, "val": 1, "test": 2}


@functools.lru_cache(maxsize=4)
def _load_passages(download: bool, length: int, reordering: str, per_class: int | None) -> Dataset:
    text = _shakespeare_text(download)
    vocab = "".join(sorted(set(text)))
    n_fit, n_train = _shakespeare_bounds(len(text))
    regions = {"train": (0, n_fit), "val": (n_fit, n_train), "test": (n_train, len(text))}

    def split(name: str) -> Split:
        cut = passages(text, length, reordering, PASSAGE_SEEDS[name], *regions[name])
        x = _encode("".join(cut.texts), vocab).view(len(cut), length)
        return Split(x, torch.from_numpy(cut.labels))

    train = split("train")
    if per_class is not None:
        train = _first_per_class(train, 2, per_class)
    spec_ = replace(
        DATASETS["tinyshakespeare_passages"], input_shape=(length,), vocab_size=len(vocab)
    )
    return Dataset(spec_, train, split("val"), split("test"), vocab=vocab)
