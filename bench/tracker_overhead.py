"""Cost of study 02's instruments (convergence tracker + monitor) on a whole run.

Trains the same config with and without study 02's instruments -- ``probe_points`` (30
log-spaced checkpoints, the re-initialisation table at every one of them, re-randomisation) and
``monitor_every`` (50 monitored steps) -- alternating the two arms so that both see the same
machine load, and prints the median wall time of each and their ratio.  The
re-initialisation table (one evaluation per layer and checkpoint) dominates the cost.

    python bench/tracker_overhead.py [--repeats 3] [--steps 1000]
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd

from layerwise.harness import data, train
from layerwise.studies import layer_convergence as layer_speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    for name in ("mnist1d/mlp", "mnist1d/cnn", "mnist1d/transformer"):
        rates = pd.DataFrame(
            [{"optimizer": "adamw", "testbed": name, "steps": args.steps, "lr": 1e-3}]
        )
        probed = layer_speed.instrumented(rates)[0].configs[0]
        plain = probed.replace(probe_points=None, monitor_every=None)
        dataset = data.load(plain.dataset)
        times: dict[str, list[float]] = {"plain": [], "probed": []}
        for _ in range(args.repeats):
            for label, config in (("plain", plain), ("probed", probed)):
                times[label].append(train.run(config, dataset=dataset)["wall_time_s"])
        a, b = statistics.median(times["plain"]), statistics.median(times["probed"])
        print(f"{name:22s} plain {a:6.1f} s  instrumented {b:6.1f} s  ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
