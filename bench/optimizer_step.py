"""Time ``optimizer.step()`` of LAMB and LARS against the optimizers they should keep up with.

Run from the repository root: ``.venv/bin/python bench/optimizer_step.py [--repeats N]``.

For the parameter sets of the project's MLP, CNN and transformer on Fashion-MNIST and the
transformer on tiny-shakespeare (random gradients, float32, CPU, ``torch.set_num_threads(1)``),
each optimizer steps its own copy of the parameters.  Every repeat times a block of steps of
every optimizer, in a rotating order (interleaved, so that load from other processes hits all
of them alike); the figure is the median over repeats of the per-step time.  Ratios printed
(all measured in this run; targets from the project issue):

- our ``LAMB`` (foreach) / ``torch.optim.AdamW(foreach=True)``, target <= 1.3;
- our ``LAMB`` (foreach) / timm ``Lamb`` set to the same algorithm (``always_adapt=True``,
  ``max_grad_norm=None``) with ``foreach=True``, target <= 1.0; also against timm's default path
  on this device (timm picks foreach only for CUDA tensors, so on CPU it runs one tensor at a
  time);
- our ``LARS`` (foreach) / ``torch.optim.SGD(momentum=0.9, foreach=True)``, target <= 1.3.

Weight decay is 0.01 for LAMB, AdamW and timm's Lamb (AdamW's default) and 0 for LARS and SGD
(their defaults).  timm is loaded through ``tests/timm_reference.py``; without timm those columns
are skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from layerwise.harness import models
from layerwise.optim import LAMB, LARS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import timm_reference  # noqa: E402  (a test helper, importable once tests/ is on the path)

MODELS = [
    ("mlp", "fashion_mnist"),
    ("cnn", "fashion_mnist"),
    ("transformer", "fashion_mnist"),
    ("transformer", "tinyshakespeare"),
]
RATIOS = [  # (label, numerator, denominator, target)
    ("LAMB / AdamW", "LAMB", "AdamW", 1.3),
    ("LAMB / timm Lamb foreach", "LAMB", "timm Lamb foreach", 1.0),
    ("LAMB / timm Lamb default", "LAMB", "timm Lamb default", 1.0),
    ("LARS / SGD", "LARS", "SGD", 1.3),
]


def optimizers() -> dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]]:
    """Constructors by name, each taking a parameter list."""
    makers: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
        "LAMB": lambda ps: LAMB(ps, lr=1e-3, weight_decay=0.01),
        "AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=True),
        "LARS": lambda ps: LARS(ps, lr=0.1, momentum=0.9),
        "SGD": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=True),
    }
    try:
        timm = timm_reference.load()
    except ModuleNotFoundError:
        print("timm is not installed: timm columns skipped")
        return makers
    same = dict(lr=1e-3, weight_decay=0.01, always_adapt=True, max_grad_norm=None)
    makers["timm Lamb foreach"] = lambda ps: timm.Lamb(ps, foreach=True, **same)
    makers["timm Lamb default"] = lambda ps: timm.Lamb(ps, **same)
    return makers


def parameter_copies(model: torch.nn.Module, n: int) -> list[list[torch.Tensor]]:
    """``n`` independent copies of the model's parameters, each with a fixed random gradient."""
    gen = torch.Generator().manual_seed(0)
    copies = []
    for _ in range(n):
        params = [p.detach().clone().requires_grad_() for p in model.parameters()]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        copies.append(params)
    return copies


def time_steps(opt: torch.optim.Optimizer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - start) / steps


def measure(model: torch.nn.Module, makers: dict, repeats: int, steps: int) -> dict[str, float]:
    """Median seconds per ``step()`` for each optimizer, interleaved over ``repeats`` rounds."""
    names = list(makers)
    opts = {
        name: makers[name](ps)
        for name, ps in zip(names, parameter_copies(model, len(names)), strict=True)
    }
    for opt in opts.values():  # warm-up: state allocation, first-call overheads
        time_steps(opt, 10)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(time_steps(opts[name], steps))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=21, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    makers = optimizers()
    print(f"torch {torch.__version__}, 1 thread; median of {args.repeats} x {args.steps} steps")
    for name, dataset in MODELS:
        torch.manual_seed(0)
        model = models.build(name, dataset)
        params = list(model.parameters())
        size = f"{len(params)} tensors, {sum(p.numel() for p in params):,} values"
        print(f"\n{name} / {dataset} ({size})")
        median = measure(model, makers, args.repeats, args.steps)
        for opt_name, seconds in median.items():
            print(f"  {opt_name:<18} {seconds * 1e6:8.1f} us/step")
        for label, num, den, target in RATIOS:
            if num in median and den in median:
                ratio = median[num] / median[den]
                verdict = "ok" if ratio <= target else "ABOVE TARGET"
                print(f"  {label:<26} {ratio:5.2f}  (target <= {target}: {verdict})")


if __name__ == "__main__":
    main()
