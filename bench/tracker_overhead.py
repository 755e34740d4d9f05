"""Cost of study 02's instruments (convergence tracker + monitor) on a whole run.

Trains the same config with and without ``probe_every`` (30 checkpoints, re-initialisation
table at 8 of them) and ``monitor_every`` (50 monitored steps), alternating the two arms so that
both see the same machine load, and prints the median wall time of each and their ratio.  The
re-initialisation table (one evaluation per layer and kept checkpoint) dominates the cost; the
cap of ``train.REINIT_POINTS`` checkpoints keeps it bounded.  Target: <= 1.5 on the MNIST-1D
models, whose runs are short enough for the probes to matter.

    python bench/tracker_overhead.py [--repeats 3] [--steps 1000]
"""

from __future__ import annotations

import argparse
import statistics

from layerwise.harness import data, testbeds, train
from layerwise.studies import layer_convergence as layer_speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    for name in ("mnist1d/mlp", "mnist1d/cnn", "mnist1d/transformer"):
        bed = testbeds.testbed(name)
        plain = bed.config.replace(steps=args.steps, lr=1e-3, seed=1)
        probed = layer_speed.instrumented(
            bed.__class__(bed.name, plain, bed.metric, None, None, ""), None, lr=1e-3
        )[0]
        dataset = data.load(plain.dataset)
        times: dict[str, list[float]] = {"plain": [], "probed": []}
        for _ in range(args.repeats):
            for label, config in (("plain", plain), ("probed", probed)):
                times[label].append(train.run(config, dataset=dataset)["wall_time_s"])
        a, b = statistics.median(times["plain"]), statistics.median(times["probed"])
        print(f"{name:22s} plain {a:6.1f} s  instrumented {b:6.1f} s  ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
