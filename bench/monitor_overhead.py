"""Cost of the per-layer Monitor on a training step, against the same loop without it.

Times forward + backward + AdamW step on random batches for two of the project's models --
``build("cnn", "fashion_mnist")`` (batch 128) and ``build("transformer", "tinyshakespeare")``
(12 sequences of 64 characters) -- on one thread.  Blocks of 10 steps with the Monitor
(``every=10``: one monitored step per block) alternate with blocks without it on the same model
and optimizer, so both arms see the same machine load; printed are the median step times, their
ratio, and -- less sensitive to a busy machine -- the median time spent inside the Monitor's
calls per block as a share of the median plain block.  Target: overhead <= 5%.

    python bench/monitor_overhead.py [--blocks 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from layerwise.harness import models
from layerwise.probes import Monitor

EVERY = 10


def cnn_case() -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    model = models.build("cnn", "fashion_mnist")
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    return model, lambda m: F.cross_entropy(m(x), y)


def transformer_case() -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    model = models.build("transformer", "tinyshakespeare")
    x, y = torch.randint(0, 65, (12, 64)), torch.randint(0, 65, (12, 64))
    return model, lambda m: F.cross_entropy(m(x).flatten(0, 1), y.flatten())


def block(model, optimizer, loss_fn, monitor: Monitor | None, start: int) -> tuple[float, float]:
    """Seconds for EVERY training steps numbered from ``start`` (a multiple of EVERY), and the
    seconds of those spent in the Monitor."""
    begin, in_monitor = time.perf_counter(), 0.0
    for step in range(start, start + EVERY):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        if monitor is None:
            optimizer.step()
            continue
        t0 = time.perf_counter()
        monitor.before_step(step)
        t1 = time.perf_counter()
        optimizer.step()
        t2 = time.perf_counter()
        monitor.after_step(step)
        in_monitor += (t1 - t0) + (time.perf_counter() - t2)
    return time.perf_counter() - begin, in_monitor


def measure(case: Callable, blocks: int) -> tuple[float, float, float]:
    """Median block time without and with the Monitor (interleaved, after one warm-up pair) and
    the median time inside the Monitor per block."""
    torch.manual_seed(0)
    model, loss_fn = case()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    monitor = Monitor(model, optimizer, every=EVERY)
    times: dict[bool, list[float]] = {False: [], True: []}
    inside: list[float] = []
    for i in range(blocks + 1):
        for monitored in (i % 2 == 0, i % 2 == 1):  # alternate which arm goes first
            seconds, in_monitor = block(
                model, optimizer, loss_fn, monitor if monitored else None, i * EVERY
            )
            if i:
                times[monitored].append(seconds)
                if monitored:
                    inside.append(in_monitor)
    return (
        statistics.median(times[False]),
        statistics.median(times[True]),
        statistics.median(inside),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=15, help="timed blocks per arm")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, Monitor every {EVERY} steps, AdamW")
    print(f"{'model':<30}{'step ms':>9}{'+monitor ms':>13}{'ratio':>7}{'in monitor':>12}")
    cases = (("cnn / fashion_mnist", cnn_case), ("transformer / tinyshakespeare", transformer_case))
    for name, case in cases:
        plain, monitored, inside = measure(case, args.blocks)
        print(
            f"{name:<30}{1e3 * plain / EVERY:>9.2f}{1e3 * monitored / EVERY:>13.2f}"
            f"{monitored / plain:>7.3f}{inside / plain:>11.2%}"
        )


if __name__ == "__main__":
    main()
