"""Passages of tiny-shakespeare labelled *real* or *words reordered*: a text-classification task
on which a pretrained character language model has something to transfer.

ULMFiT (Howard & Ruder 2018, arXiv:1801.06146, ``docs/references.md#howard2018ulmfit``)
fine-tunes a pretrained language model into a classifier with few labels.  Labels that
tiny-shakespeare carries (speaker, play) make weak tasks at small scale: topic words decide
them, so a bag-of-words model does as well as a small fine-tuned model, and both sit near chance
on short passages.  Here the label is whether a passage is the text as written (label 0) or the
same passage with its words in another order (label 1).  A reordered passage keeps the words,
the characters and the whitespace runs between words (in their order) of the original, so a bag
of words carries no signal and a bag of character n-grams only what crosses word boundaries;
telling the classes apart takes the knowledge of word order that language-model pretraining
gives.

Construction (:func:`passages`), deterministic for a given text and seed:

* windows of ``length`` characters that start at a word start (a non-space after a space or a
  newline), non-overlapping, in text order;
* the words of a window are its maximal runs of non-space characters; the last one may be cut
  by the window's end, so it stays where it is (moving it would be a cue of its own); the
  others are the *movable* words, and the whitespace runs between words stay in their order;
* a window that cannot be changed (fewer than two different words to move) is dropped, whatever
  its label would be, so the classes stay balanced;
* a seeded half of the remaining windows (rounded down) gets label 1 and is reordered
  (:func:`reorder`): ``"shuffle"`` permutes all movable words (a permutation that leaves the
  passage unchanged is redrawn); ``"shuffle_lowercase"`` permutes only the movable words made of
  lowercase letters alone, among their own places, so capitals and punctuation -- the cues a bag
  of character n-grams reads most easily (a lowercase word at a line start, a full stop inside
  a clause) -- stay where they were; ``"swap"`` exchanges two movable words that differ;
  ``"letters"`` exchanges two neighbouring, different letters inside one movable word made of
  lowercase letters (``"then"`` -> ``"tehn"``): a misspelling that keeps every character;
* the passages come out in a seeded random order, so the first N of a class are spread over
  the whole region they were cut from.

``data.load("tinyshakespeare_passages")`` cuts the training, validation and test passages from
the three regions of ``data.load("tinyshakespeare")`` (nanoGPT's split): a language model
pretrained on that dataset's training split never reads a validation or test passage.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from .._validate import check_choice, check_int

__all__ = ["REORDERINGS", "Passages", "passages", "reorder", "window_starts"]

REORDERINGS: tuple[str, ...] = ("shuffle", "shuffle_lowercase", "swap", "letters")
_WORD = re.compile(r"\S+")
_LOWERCASE = re.compile(r"[a-z]+")
_REDRAWS = 20  # permutations tried before a window counts as one that cannot be shuffled


@dataclasses.dataclass(frozen=True)
class Passages:
    """Passages of one region: the text, its label (1: words reordered) and where it was cut."""

    texts: tuple[str, ...]
    labels: np.ndarray  # int64, 0 or 1
    starts: np.ndarray  # int64, offset of each window in the text it was cut from

    def __len__(self) -> int:
        return len(self.texts)


def window_starts(text: str, length: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Offsets of non-overlapping ``length``-character windows of ``text[start:stop]`` that begin
    at a word start; each window lies inside ``[start, stop)``."""
    check_int("passage length", length, 2)
    stop = len(text) if stop is None else stop
    out, pos = [], start
    while True:
        match = _WORD.search(text, pos, stop)
        if match is None or match.start() + length > stop:
            return np.array(out, dtype=np.int64)
        if match.start() == 0 or text[match.start() - 1].isspace():
            out.append(match.start())
            pos = match.start() + length
        else:  # the window edge cut a word: the next word start follows it
            pos = match.end()


def _movable(passage: str, how: str) -> list[tuple[int, int]]:
    """Where the words that ``how`` may move lie in ``passage`` (start, end)."""
    check_choice("reordering", how, REORDERINGS)
    spans = [m.span() for m in _WORD.finditer(passage)][:-1]
    if how in ("shuffle_lowercase", "letters"):
        spans = [(a, b) for a, b in spans if _LOWERCASE.fullmatch(passage, a, b)]
    return spans


def _pairs(word: str) -> list[int]:
    """Positions ``i`` where ``word[i]`` and ``word[i + 1]`` differ (exchanging them changes it)."""
    return [i for i in range(len(word) - 1) if word[i] != word[i + 1]]


def _changeable(passage: str, how: str) -> bool:
    """Whether ``how`` can change ``passage``: two different words to move (``"letters"``: one
    lowercase word with two different neighbouring letters)."""
    words = [passage[a:b] for a, b in _movable(passage, how)]
    if how == "letters":
        return any(_pairs(w) for w in words)
    return len(set(words)) >= 2


def reorder(passage: str, how: str, rng: np.random.Generator) -> str | None:
    """``passage`` with its movable words (all but the last) reordered as ``how`` says (one of
    :data:`REORDERINGS`, see the module docstring); ``None`` when no reordering changes
    it.  The whitespace runs and the last word keep their order, so the length never changes."""
    if not _changeable(passage, how):
        return None
    spans = _movable(passage, how)
    words = [passage[a:b] for a, b in spans]
    if how == "letters":
        eligible = [(a, w) for (a, _), w in zip(spans, words, strict=True) if _pairs(w)]
        a, word = eligible[int(rng.integers(len(eligible)))]
        i = int(rng.choice(_pairs(word)))
        return passage[: a + i] + word[i + 1] + word[i] + passage[a + i + 2 :]
    if how == "swap":
        i = int(rng.integers(len(words)))
        others = [j for j, w in enumerate(words) if w != words[i]]
        j = others[int(rng.integers(len(others)))]
        order = list(range(len(words)))
        order[i], order[j] = j, i
    else:
        for _ in range(_REDRAWS):
            order = rng.permutation(len(words)).tolist()
            if any(words[k] != words[n] for n, k in enumerate(order)):
                break
        else:  # pragma: no cover - twenty unchanged draws of two or more distinct words
            return None
    pieces, pos = [], 0
    for (a, b), k in zip(spans, order, strict=True):
        pieces += [passage[pos:a], words[k]]
        pos = b
    return "".join(pieces) + passage[pos:]


def passages(
    text: str, length: int, how: str, seed: int, start: int = 0, stop: int | None = None
) -> Passages:
    """The labelled passages of ``text[start:stop]`` (see the module docstring): windows of
    ``length`` characters, a seeded half of them reordered as ``how`` says, in a seeded order."""
    check_choice("reordering", how, REORDERINGS)
    rng = np.random.default_rng(seed)
    starts = window_starts(text, length, start, stop)
    starts = starts[[_changeable(text[s : s + length], how) for s in starts]]
    labels = np.zeros(len(starts), dtype=np.int64)
    labels[rng.permutation(len(starts))[: len(starts) // 2]] = 1
    texts, kept = [], []
    for i, (offset, label) in enumerate(zip(starts, labels, strict=True)):
        window = text[offset : offset + length]
        if label:
            window = reorder(window, how, rng)
        if window is not None:
            texts.append(window)
            kept.append(i)
    order = rng.permutation(len(kept))
    kept_ = np.array(kept, dtype=np.int64)[order]
    return Passages(tuple(texts[i] for i in order), labels[kept_], starts[kept_])
