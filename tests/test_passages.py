"""tiny-shakespeare passages labelled real or reordered: construction on hand-made text, the
loaded dataset's regions (no held-out passage in the pretraining text) and determinism."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import has_shakespeare
from layerwise.harness import data
from layerwise.harness.passages import passages, reorder, window_starts

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\nFirst Citizen:\nFirst, you know Caius Marcius is chief enemy "
    "to the people.\n\nAll:\nWe know't, we know't.\n"
) * 6


def _words(s: str) -> list[str]:
    return s.split()


def _gaps(s: str) -> list[str]:
    """The whitespace runs between (and around) the words, in order."""
    return re.findall(r"\s+", s)


def test_window_starts_are_word_starts_inside_the_region_and_disjoint():
    start, stop, length = 7, len(TEXT) - 11, 24
    starts = window_starts(TEXT, length, start, stop)
    assert len(starts) > 10
    for s in starts:
        assert start <= s and s + length <= stop
        assert not TEXT[s].isspace() and (s == 0 or TEXT[s - 1].isspace())
    assert np.all(np.diff(starts) >= length)
    # no word start is skipped: the next window starts at the first word start after one
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        skipped = [
            i for i in range(a + length, b) if not TEXT[i].isspace() and TEXT[i - 1].isspace()
        ]
        assert skipped == []


@pytest.mark.parametrize("how", ["shuffle", "shuffle_lowercase", "swap", "letters"])
def test_labels_match_the_text(how):
    length = 40
    cut = passages(TEXT, length, how, seed=3)
    assert len(cut) == len(cut.labels) == len(cut.starts) > 20
    assert int(cut.labels.sum()) == len(cut) // 2  # half reordered
    for text, label, start in zip(cut.texts, cut.labels, cut.starts, strict=True):
        original = TEXT[start : start + length]
        assert len(text) == length
        if label == 0:
            assert text == original
            continue
        assert text != original
        # the same whitespace runs in the same order, the same characters, the last word in place
        assert _gaps(text) == _gaps(original)
        assert sorted(text) == sorted(original)
        assert _words(text)[-1] == _words(original)[-1]
        moved = [a != b for a, b in zip(_words(text), _words(original), strict=True)]
        if how == "letters":  # one lowercase word with two neighbouring letters exchanged
            (new, old), *others = [
                (a, b) for a, b in zip(_words(text), _words(original), strict=True) if a != b
            ]
            i = next(i for i in range(len(old)) if new[i] != old[i])
            assert others == [] and re.fullmatch("[a-z]+", old)
            assert new == old[:i] + old[i + 1] + old[i] + old[i + 2 :]
            continue
        assert Counter(_words(text)) == Counter(_words(original))
        if how == "swap":
            assert sum(moved) == 2
        if how == "shuffle_lowercase":  # words with a capital, digit or punctuation stay put
            pairs = zip(_words(text), _words(original), strict=True)
            assert all(a == b for a, b in pairs if not re.fullmatch("[a-z]+", b))


def test_reorder_refuses_passages_it_cannot_change():
    rng = np.random.default_rng(0)
    assert reorder("la la la la end", "shuffle", rng) is None  # one distinct movable word
    assert reorder("la la la la end", "swap", rng) is None
    assert reorder("to be or", "swap", rng) == "be to or"
    lowered = reorder("to be, or not to be", "shuffle_lowercase", rng)
    assert lowered != "to be, or not to be" and _words(lowered)[1::4] == ["be,", "be"]
    assert reorder("O Romeo, Romeo! wherefore", "shuffle_lowercase", rng) is None
    assert reorder("Sir, I do so", "letters", rng) == "Sir, I od so"
    assert reorder("a bee see", "letters", rng) == "a ebe see"  # "ee" is no change
    assert reorder("Sir, I am! ho", "letters", rng) is None  # no lowercase word to misspell
    with pytest.raises(ValueError, match="'letters', 'shuffle', 'shuffle_lowercase', 'swap'"):
        reorder("to be or", "reverse", rng)


def test_passages_are_deterministic_and_seeded():
    a, b = passages(TEXT, 32, "shuffle", 0), passages(TEXT, 32, "shuffle", 0)
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    c = passages(TEXT, 32, "shuffle", 1)
    assert a.texts != c.texts


needs_text = pytest.mark.skipif(not has_shakespeare(), reason="tinyshakespeare.txt not found")


@needs_text
def test_loaded_passages_come_from_the_held_out_regions():
    ds = data.load("tinyshakespeare_passages", download=False)
    lm = data.load("tinyshakespeare", download=False)
    assert ds.vocab == lm.vocab and ds.spec.vocab_size == len(lm.vocab)
    assert ds.spec.input_shape == (64,) and ds.spec.num_classes == 2
    text = (data._data_dir() / "tinyshakespeare.txt").read_text()
    n_fit = len(lm.train)
    pretraining_text = text[:n_fit]
    assert data._encode(pretraining_text, lm.vocab).equal(lm.train.tokens)
    held_out = {"val": text[n_fit : n_fit + len(lm.val)], "test": text[n_fit + len(lm.val) :]}
    for name, region in held_out.items():
        split = getattr(ds, name)
        decoded = ["".join(ds.vocab[i] for i in row) for row in split.x]
        real = [t for t, y in zip(decoded, split.y.tolist(), strict=True) if y == 0]
        assert len(real) > 500
        assert all(t in region for t in real)  # cut from its own region ...
        assert not any(t in pretraining_text for t in real)  # ... never read in pretraining
        assert abs(split.y.float().mean().item() - 0.5) < 0.01


@needs_text
def test_loaded_passages_are_deterministic_and_take_the_first_per_class():
    full = data.load("tinyshakespeare_passages", download=False, reordering="swap")
    few = data.load(
        "tinyshakespeare_passages", download=False, reordering="swap", train_per_class=50
    )
    assert torch.bincount(few.train.y).tolist() == [50, 50]
    for label in (0, 1):
        assert torch.equal(
            few.train.x[few.train.y == label], full.train.x[full.train.y == label][:50]
        )
    data._load_passages.cache_clear()
    again = data.load("tinyshakespeare_passages", download=False, reordering="swap")
    assert torch.equal(full.test.x, again.test.x) and torch.equal(full.test.y, again.test.y)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"reordering": "reverse"}, "'letters', 'shuffle', 'shuffle_lowercase', 'swap'"),
        ({"length": 1}, "1"),
        ({"classes": [0, 1]}, "'classes'"),
    ],
)
def test_bad_passage_options_name_the_value(options, named):
    with pytest.raises(ValueError) as err:
        data.load("tinyshakespeare_passages", download=False, **options)
    assert named in str(err.value)
