"""Evaluation speed of ``train.evaluate`` at its batch size against one pass of 2,048 examples.

For each of the project's evaluation-heavy models (untrained, one thread), the same 2,048
validation examples (or text windows) are evaluated alternately with the batch size
``train.eval_batch_size`` chooses and with a single batch of 2,048 (the size used before
2026-12-02); printed are the median times over the repeats and their ratio (chosen / 2,048,
below 1 is faster).  Large batches lose because the activations of 2,048 examples outgrow the
cache: a Fashion-MNIST CNN's first convolution alone writes 2,048 x 32 x 28 x 28 floats.

    python bench/eval_batch.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from layerwise.harness import data, models, train

OLD_BATCH = 2048
CASES = (
    ("fashion_mnist", "cnn"),
    ("fashion_mnist", "mlp"),
    ("fashion_mnist", "transformer"),
    ("mnist1d", "transformer"),
    ("mnist1d", "gru"),
    ("tinyshakespeare", "transformer"),
)


def validation(dataset: str) -> data.Split:
    """The first 2,048 validation examples (for text: 64-character windows)."""
    loaded = data.load(dataset)
    if isinstance(loaded.val, data.TextSplit):
        return train._text_windows(loaded.val, block=64, limit=OLD_BATCH)
    return data.Split(loaded.val.x[:OLD_BATCH], loaded.val.y[:OLD_BATCH])


def seconds(model: torch.nn.Module, split: data.Split, batch: int) -> float:
    saved = train.EVAL_BATCH, train.EVAL_TOKENS
    if batch == OLD_BATCH:
        train.EVAL_BATCH, train.EVAL_TOKENS = OLD_BATCH, OLD_BATCH * split.x[0].numel()
    try:
        start = time.perf_counter()
        train.evaluate(model, split)
        return time.perf_counter() - start
    finally:
        train.EVAL_BATCH, train.EVAL_TOKENS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"{'model':34} {'batch':>5} {'chosen s':>9} {'2048 s':>8} {'ratio':>6}")
    for dataset, name in CASES:
        split = validation(dataset)
        model = models.build(name, dataset)
        chosen = train.eval_batch_size(split.x)
        times: dict[int, list[float]] = {chosen: [], OLD_BATCH: []}
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            for batch in times:
                times[batch].append(seconds(model, split, batch))
        new, old = (statistics.median(times[b]) for b in (chosen, OLD_BATCH))
        print(f"{dataset + ' ' + name:34} {chosen:5d} {new:9.3f} {old:8.3f} {new / old:6.2f}")


if __name__ == "__main__":
    main()
