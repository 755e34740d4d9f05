"""Sweep scaling: runs per hour with 2 worker processes against 1, in one process.

Each worker uses one torch thread, so on a 2-core machine the ideal ratio is 2 (target >= 1.7).
Both sweeps use a fresh temporary store and the same eight MNIST-1D CNN runs; worker start-up
(spawn, imports, data generation) is included, as a user would pay it.
"""

from __future__ import annotations

import tempfile
import time

from layerwise.harness.config import RunConfig
from layerwise.harness.store import Store
from layerwise.harness.sweep import grid, run_configs


def runs_per_hour(jobs: int, runs: int) -> float:
    base = RunConfig(
        dataset="mnist1d", model="cnn", lr=1e-3, batch_size=100, steps=1500, eval_every=500
    )
    configs = grid(base, seed=range(runs))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_configs(configs, "bench", store=Store(tmp), jobs=jobs, progress=False)
        return runs / (time.perf_counter() - start) * 3600


def main() -> None:
    runs = 8
    runs_per_hour(2, 2)  # warm the data cache so neither measurement pays generation
    one = runs_per_hour(1, runs)
    two = runs_per_hour(2, runs)
    print(
        f"1 worker: {one:7.0f} runs/h; 2 workers: {two:7.0f} runs/h; "
        f"ratio {two / one:.2f} (target >= 1.7)"
    )


if __name__ == "__main__":
    main()
