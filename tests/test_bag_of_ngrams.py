"""The bag-of-n-grams baseline: n-gram counts by hand, a separable task it must solve, and a
word-order task a bag of words cannot see."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from layerwise.harness import bag_of_ngrams, data
from layerwise.harness.passages import reorder


def test_ngrams_count_by_hand():
    assert bag_of_ngrams.ngrams("abab", "char", (1, 2)) == Counter(
        {"a": 2, "b": 2, "ab": 2, "ba": 1}
    )
    assert bag_of_ngrams.ngrams("to be or\nnot to be", "word", (2,)) == Counter(
        {"to be": 2, "be or": 1, "or not": 1, "not to": 1}
    )
    with pytest.raises(ValueError, match="'char', 'word'"):
        bag_of_ngrams.ngrams("x", "byte", (1,))


def _dataset(splits: dict[str, tuple[list[str], list[int]]]) -> data.Dataset:
    vocab = "".join(sorted({c for texts, _ in splits.values() for t in texts for c in t}))
    length = len(next(iter(splits.values()))[0][0])

    def split(texts: list[str], labels: list[int]) -> data.Split:
        x = torch.tensor([[vocab.index(c) for c in t] for t in texts])
        return data.Split(x, torch.tensor(labels))

    spec = dataclasses.replace(
        data.DATASETS["tinyshakespeare_passages"], input_shape=(length,), vocab_size=len(vocab)
    )
    made = {name: split(*s) for name, s in splits.items()}
    return data.Dataset(spec, made["train"], made["val"], made["test"], vocab=vocab)


def _random_words(rng: np.random.Generator, n: int, marker: str) -> str:
    words = ["hark", "lord", "thee", "sweet", "night", "crown", "grave", "honour"]
    body = " ".join(rng.choice(words, size=n))
    return f"{body} {marker}"


def test_a_separable_task_is_solved():
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[list[str], list[int]]:
        labels = [i % 2 for i in range(n)]
        texts = [_random_words(rng, 5, "zq" if y else "qz") for y in labels]
        width = max(map(len, texts))
        return [t.ljust(width) for t in texts], labels

    splits = {name: make(n) for name, n in (("train", 40), ("val", 20), ("test", 20))}
    width = max(len(t) for texts, _ in splits.values() for t in texts)
    splits = {k: ([t.ljust(width) for t in v[0]], v[1]) for k, v in splits.items()}
    result = bag_of_ngrams.fit(_dataset(splits), "char", (1, 2))
    assert result["val_acc"] == 1.0 and result["test_acc"] == 1.0


def test_a_bag_of_words_cannot_tell_a_passage_from_its_reordering():
    """Each test passage is there with label 0 and, reordered, with label 1: their word counts are
    equal, so the model predicts the same class for both and gets exactly half right."""
    rng = np.random.default_rng(1)

    def pairs(n: int) -> tuple[list[str], list[int]]:
        texts, labels = [], []
        while len(texts) < 2 * n:
            real = _random_words(rng, 6, "end")[:30]
            fake = reorder(real, "shuffle", rng)
            if fake is not None:
                texts += [real, fake]
                labels += [0, 1]
        return texts, labels

    splits = {name: pairs(n) for name, n in (("train", 30), ("val", 10), ("test", 10))}
    result = bag_of_ngrams.fit(_dataset(splits), "word", (1,))
    assert result["test_acc"] == 0.5 and result["val_acc"] == 0.5


def test_fit_refuses_a_dataset_without_a_vocabulary_and_bad_penalties():
    lm = dataclasses.replace(data.DATASETS["mnist1d"])
    split = data.Split(torch.zeros(2, 40), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="not a text-classification dataset"):
        bag_of_ngrams.fit(data.Dataset(lm, split, split, split))
    text = _dataset({n: (["ab", "ba"], [0, 1]) for n in ("train", "val", "test")})
    with pytest.raises(ValueError, match="l2_grid"):
        bag_of_ngrams.fit(text, l2_grid=(0.0,))
