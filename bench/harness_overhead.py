"""Harness overhead: steps per second of ``layerwise.harness.train.run`` against a minimal hand-written
PyTorch loop on the same model, data, batch size and thread count, measured in one process.

Prints the ratio (target >= 0.95).  Both loops include the same periodic validation pass, so the
ratio isolates what the harness adds (batching, divergence check, scheduler, curve records).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from layerwise.harness import data, models, train
from layerwise.harness.config import RunConfig


def minimal_loop(config: RunConfig, dataset: data.Dataset) -> float:
    """The shortest honest loop: shuffled batches by indexing, AdamW, evaluation every k steps."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    model = models.build(config.model, dataset.spec, **config.model_options)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    x, y = dataset.train.x, dataset.train.y
    g = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(y), generator=g)
    pos = 0
    for step in range(1, config.steps + 1):
        if pos + config.batch_size > len(y):
            order, pos = torch.randperm(len(y), generator=g), 0
        idx = order[pos : pos + config.batch_size]
        pos += config.batch_size
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % config.eval_every == 0 or step == config.steps:
            with torch.inference_mode():
                model.eval()
                F.cross_entropy(model(dataset.val.x), dataset.val.y)
                model.train()
    return config.steps / (time.perf_counter() - start)


def harness(config: RunConfig, dataset: data.Dataset) -> float:
    record = train.run(config, dataset=dataset)
    return config.steps / record["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for model in ("mlp", "cnn"):
        config = RunConfig(
            dataset="mnist1d",
            model=model,
            lr=1e-3,
            batch_size=100,
            steps=args.steps,
            eval_every=500,
            optimizer_options={"weight_decay": 0.0},
        )
        dataset = data.load("mnist1d")
        harness(config.replace(steps=50), dataset)  # warm-up
        ours, base = [], []
        for _ in range(args.repeats):  # interleaved so drifts in machine load hit both
            ours.append(harness(config, dataset))
            base.append(minimal_loop(config, dataset))
        o, b = statistics.median(ours), statistics.median(base)
        print(
            f"mnist1d/{model}: train.run {o:8.1f} steps/s, minimal loop {b:8.1f} steps/s, "
            f"ratio {o / b:.3f} (target >= 0.95)"
        )


if __name__ == "__main__":
    main()
