"""A bag-of-n-grams linear classifier: the baseline a text-classification task must beat before a
pretrained model's advantage on it means anything (ULMFiT's own comparison, Howard & Ruder
2018, ``docs/references.md#howard2018ulmfit``, is against such baselines).

Features.  A passage's n-grams are its runs of ``n`` consecutive characters (``"char"``) or
words, maximal runs of non-space characters (``"word"``), for every ``n`` in ``orders``.  The
vocabulary is every n-gram that occurs in at least ``min_count`` training passages; with
``c_g`` the count of n-gram ``g`` in a passage, its feature is ``log(1 + c_g)``, standardised
by the training passages' mean and deviation.

Model.  Multinomial logistic regression, ``p(y | x) = softmax(W x + b)``, fitted by L-BFGS on
the training passages' mean cross-entropy plus ``(l2 / 2) * ||W||^2``; ``l2`` is chosen from
``l2_grid`` by validation accuracy (ties: the larger penalty), and the test accuracy is that of
the chosen fit.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._validate import check_choice, check_int
from . import data

__all__ = ["ANALYZERS", "L2_GRID", "decode", "fit", "ngrams"]

ANALYZERS = ("char", "word")
L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
_WORD = re.compile(r"\S+")


def ngrams(text: str, analyzer: str, orders: Sequence[int]) -> Counter:
    """The n-grams of ``text`` for every ``n`` in ``orders``, counted (word n-grams joined by a
    space)."""
    check_choice("analyzer", analyzer, ANALYZERS)
    units = list(text) if analyzer == "char" else _WORD.findall(text)
    joiner = "" if analyzer == "char" else " "
    counts: Counter = Counter()
    for n in orders:
        check_int("n-gram order", n, 1)
        counts.update(joiner.join(units[i : i + n]) for i in range(len(units) - n + 1))
    return counts


def decode(split: data.Split, vocab: str) -> list[str]:
    """The passages of a text-classification split as strings."""
    return ["".join(vocab[int(i)] for i in row) for row in split.x]


def _features(bags: list[Counter], index: dict[str, int]) -> torch.Tensor:
    x = torch.zeros(len(bags), len(index))
    for row, bag in enumerate(bags):
        for gram, count in bag.items():
            if gram in index:
                x[row, index[gram]] = count
    return torch.log1p(x)


def _logistic(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float) -> torch.nn.Linear:
    linear = torch.nn.Linear(x.shape[1], classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(x), y) + 0.5 * l2 * linear.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return linear


def fit(
    dataset: data.Dataset,
    analyzer: str = "char",
    orders: Sequence[int] = (1, 2, 3, 4, 5),
    min_count: int = 2,
    l2_grid: Sequence[float] = L2_GRID,
) -> dict[str, float]:
    """Fit the baseline on ``dataset`` (a text-classification dataset: token-id passages and its
    ``vocab``) and return ``{"l2", "val_acc", "test_acc", "features"}`` for the chosen penalty."""
    check_int("min_count", min_count, 1)
    if not l2_grid or any(not l2 > 0 for l2 in l2_grid):
        raise ValueError(f"l2_grid must hold penalties > 0, got {list(l2_grid)!r}")
    if dataset.vocab is None or dataset.spec.vocab_size is None:
        raise ValueError(f"{dataset.name} is not a text-classification dataset (no vocab_size)")
    bags = {
        name: [ngrams(t, analyzer, orders) for t in decode(getattr(dataset, name), dataset.vocab)]
        for name in ("train", "val", "test")
    }
    seen = Counter(g for bag in bags["train"] for g in bag)
    index = {g: i for i, g in enumerate(sorted(g for g, n in seen.items() if n >= min_count))}
    x = {name: _features(b, index) for name, b in bags.items()}
    mean, std = x["train"].mean(0), x["train"].std(0).clamp_min(1e-6)
    x = {name: (v - mean) / std for name, v in x.items()}
    best: dict[str, float] = {"val_acc": -1.0}
    for l2 in sorted(l2_grid, reverse=True):
        model = _logistic(x["train"], dataset.train.y, dataset.spec.num_classes, l2)
        with torch.no_grad():
            acc = {
                name: float((model(x[name]).argmax(1) == getattr(dataset, name).y).float().mean())
                for name in ("val", "test")
            }
        if acc["val"] > best["val_acc"]:
            best = {"l2": l2, "val_acc": acc["val"], "test_acc": acc["test"]}
    return {**best, "features": len(index)}
