"""Arms of the from-scratch comparisons (studies 03 and 04) and the protocol they are tuned with.

A comparison takes one testbed, keeps everything but the per-layer rule fixed, and tunes every
rule's base rate separately (``tuning.tune``): the same log grid of :data:`GRID_POINTS` rates
half a decade apart, extended while the best rate sits on an edge, chosen on validation with
seed 0, then rerun on fresh seeds (five on MNIST-1D, three on Fashion-MNIST).

Budgets are *short*: a quarter or less of the baseline budgets of ``01_baselines`` (MNIST-1D
1,500 steps, Fashion-MNIST MLP 2 epochs, CNN 1 epoch).  Dozens of arms times grids times seeds
must fit a 2-core machine, and a short budget is where a rule that speeds up slow layers would
show most.  Every study that uses them says so next to its numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

from ._validate import check_choice, check_positive
from .config import RunConfig
from .layers import KINDS
from .store import Store
from .testbeds import TESTBEDS, Testbed, testbed
from .tuning import TuningResult, log_grid, tune

__all__ = [
    "GRID_POINTS",
    "HYBRID",
    "OPTIMIZERS",
    "discriminative_arms",
    "final_seeds",
    "kind_arms",
    "short_testbed",
    "tune_comparison",
]

GRID_POINTS = 3
# Each optimizer's starting grid (ends of a decade); it is extended while the best rate is an edge.
OPTIMIZERS: dict[str, dict] = {
    "adamw": {"grid": (1e-3, 1e-2), "options": {"weight_decay": 0.0}},
    "sgd": {"grid": (1e-2, 1e-1), "options": {"momentum": 0.9, "weight_decay": 0.0}},
}
MAX_EXTENSIONS = 2
SHORT_BUDGETS: dict[str, dict] = {
    "mnist1d": {"steps": 1500, "epochs": None, "eval_every": 250},
    "fashion_mnist/mlp": {"steps": None, "epochs": 2},
    "fashion_mnist/cnn": {"steps": None, "epochs": 1},
}

HYBRID = Testbed(
    "mnist1d/hybrid",
    TESTBEDS["mnist1d/cnn"].config.replace(model="hybrid", steps=1500, eval_every=250),
    "acc",
    None,
    None,
    "no published reference (conv -> GRU -> self-attention -> dense, models.Hybrid)",
)


def short_testbed(name: str, profile: str = "full") -> Testbed:
    """Testbed ``name`` (or ``"mnist1d/hybrid"``) at the comparisons' short budget."""
    check_choice("comparison testbed", name, [*TESTBEDS, HYBRID.name])
    bed = HYBRID if name == HYBRID.name else testbed(name)
    budget = SHORT_BUDGETS.get(name) or SHORT_BUDGETS[bed.config.dataset]
    config = bed.config.replace(**budget)
    if profile == "smoke":
        config = config.replace(steps=20, epochs=None, eval_every=10)
    return dataclasses.replace(bed, config=config)


def final_seeds(dataset: str, profile: str = "full") -> tuple[int, ...]:
    """Fresh seeds for the reruns: five on MNIST-1D, three elsewhere, two in smoke."""
    if profile == "smoke":
        return (1, 2)
    return (1, 2, 3, 4, 5) if dataset == "mnist1d" else (1, 2, 3)


def with_optimizer(config: RunConfig, optimizer: str) -> RunConfig:
    """``config`` trained by ``"adamw"`` or ``"sgd"`` (momentum 0.9), no weight decay."""
    check_choice("comparison optimizer", optimizer, OPTIMIZERS)
    return config.replace(optimizer=optimizer, optimizer_options=OPTIMIZERS[optimizer]["options"])


def discriminative_arms(
    config: RunConfig, factors: Sequence[float] = (2.6,)
) -> dict[str, RunConfig]:
    """Uniform plus ``Discriminative(factor, toward)`` in both directions for each factor.

    ``toward="input"`` is ULMFiT's rule (Howard & Ruder 2018): each layer down runs ``factor``
    times slower than the one above, ``m_d = factor^-(D - d)``, so the lowest layers are slowest;
    ``toward="output"`` reverses it, ``m_d = factor^-d``, the lowest layers fastest.  Arm names
    read ``"lower slower x2.6"`` / ``"lower faster x2.6"``.
    """
    arms = {"uniform": config.replace(rule={"name": "uniform"})}
    for factor in factors:
        check_positive("discriminative factor", factor)
        for toward, label in (("input", "lower slower"), ("output", "lower faster")):
            arms[f"{label} x{factor:g}"] = config.replace(
                rule={"name": "discriminative", "factor": float(factor), "toward": toward}
            )
    return arms


def kind_arms(
    config: RunConfig, kinds: Sequence[str], multipliers: Sequence[float]
) -> dict[str, RunConfig]:
    """Uniform plus one arm per (kind, multiplier): that layer type's rate times the multiplier,
    every other parameter at the base rate (``rules.ByKind``).  Names read ``"conv x1/4"``."""
    arms = {"uniform": config.replace(rule={"name": "uniform"})}
    for kind in kinds:
        check_choice("layer kind", kind, KINDS)
        for m in multipliers:
            check_positive("type multiplier", m)
            label = f"x{m:g}" if m >= 1 else f"x1/{1 / m:g}"
            arms[f"{kind} {label}"] = config.replace(
                rule={"name": "by_kind", "multipliers": {kind: float(m)}}
            )
    return arms


def grid(optimizer: str, profile: str = "full") -> list[float]:
    """The starting grid: :data:`GRID_POINTS` rates spanning the optimizer's decade, half a
    decade apart (three points a decade apart in smoke)."""
    check_choice("comparison optimizer", optimizer, OPTIMIZERS)
    low, high = OPTIMIZERS[optimizer]["grid"]
    if profile == "smoke":
        return log_grid(low / math.sqrt(10), high * math.sqrt(10), 3)
    return log_grid(low, high, GRID_POINTS)


def tune_comparison(
    arms: Mapping[str, RunConfig],
    bed: Testbed,
    optimizer: str,
    study: str,
    profile: str = "full",
    *,
    store: Store | None = None,
    jobs: int | None = None,
    executor: Executor | None = None,
) -> TuningResult:
    """Tune every arm of one testbed and optimizer with the comparisons' protocol."""
    return tune(
        arms,
        grid(optimizer, profile),
        study,
        metric=bed.metric,
        final_seeds=final_seeds(bed.config.dataset, profile),
        max_extensions=0 if profile == "smoke" else MAX_EXTENSIONS,
        store=store,
        jobs=jobs,
        executor=executor,
    )
