"""Study 03: discriminative (depth-wise) rates trained from scratch, under tuning protocol v2.

ULMFiT (Howard & Ruder 2018) fine-tunes with each layer running 2.6 times slower than the one
above.  This study asks whether that rule -- or its mirror, lower layers faster -- helps when a
network is trained **from scratch**, with one factor step per block and every arm's base rate
tuned separately (``harness.comparisons``).

Design:

* **Main comparison**: ``xi`` in {1/2.6, 2.6} against uniform on every testbed of the baselines
  (but the language model) with AdamW, and on the MNIST-1D MLP and CNN and the Fashion-MNIST MLP
  with SGD + momentum (:data:`PLAN`).
* **Effect against the factor**: ``xi`` in :data:`CURVE_FACTORS` on the MNIST-1D MLP and CNN and
  the Fashion-MNIST MLP (AdamW), each with its own tuned base rate.
* **Budget check**: the main comparison on the MNIST-1D MLP at 4x the budget
  (:data:`LONG_BUDGET`), to see whether the verdicts hold when training runs longer.

Budgets are short and stated (:data:`BUDGETS`): MNIST-1D 1,000 steps (25 epochs of its 4,000
training examples), Fashion-MNIST MLP 842 steps (2 epochs), CNN 421 steps (1 epoch); the
schedule decays to zero over each of them.
"""

from __future__ import annotations

import dataclasses

from .._validate import check_choice
from ..harness import comparisons
from ..harness.testbeds import Testbed, testbed

__all__ = [
    "BUDGETS",
    "CURVE_FACTORS",
    "LONG_BUDGET",
    "MAIN_FACTORS",
    "PLAN",
    "plan",
]

MAIN_FACTORS: tuple[float, ...] = (1 / 2.6, 2.6)
CURVE_FACTORS: tuple[float, ...] = (1 / 4, 1 / 2.6, 1 / 1.6, 1.6, 2.6, 4)
CURVE_TESTBEDS: tuple[str, ...] = ("mnist1d/mlp", "mnist1d/cnn", "fashion_mnist/mlp")
BUDGETS: dict[str, int] = {
    "mnist1d/mlp": 1000,
    "mnist1d/cnn": 1000,
    "mnist1d/gru": 1000,
    "mnist1d/transformer": 1000,
    "fashion_mnist/mlp": 842,
    "fashion_mnist/cnn": 421,
}
LONG_BUDGET: tuple[str, int] = ("mnist1d/mlp", 4000)
PLAN: tuple[tuple[str, str], ...] = (
    ("adamw", "mnist1d/mlp"),
    ("adamw", "mnist1d/cnn"),
    ("adamw", "mnist1d/gru"),
    ("adamw", "mnist1d/transformer"),
    ("adamw", "fashion_mnist/mlp"),
    ("adamw", "fashion_mnist/cnn"),
    ("sgd", "mnist1d/mlp"),
    ("sgd", "mnist1d/cnn"),
    ("sgd", "fashion_mnist/mlp"),
)
SMOKE_STEPS = 20


def _at_budget(name: str, steps: int, optimizer: str, profile: str) -> Testbed:
    bed = testbed(name)
    steps = SMOKE_STEPS if profile == "smoke" else steps
    config = comparisons.with_decay(comparisons.with_optimizer(bed.config, optimizer), steps)
    config = config.replace(eval_every=max(1, steps // 8))
    return dataclasses.replace(bed, config=config)


def plan(profile: str = "full") -> list[comparisons.Comparison]:
    """Every comparison of the study, in the order the notebook shows them."""
    check_choice("profile", profile, ("full", "smoke"))
    out = []
    for optimizer, name in PLAN:
        curve = optimizer == "adamw" and name in CURVE_TESTBEDS
        factors = CURVE_FACTORS if curve else MAIN_FACTORS
        bed = _at_budget(name, BUDGETS[name], optimizer, profile)
        arms, design = comparisons.depth_factor_arms(bed.config, factors)
        proto = comparisons.protocol(bed.config.dataset, optimizer, profile)
        out.append(comparisons.Comparison(optimizer, bed, arms, design, proto))
    name, steps = LONG_BUDGET
    bed = _at_budget(name, steps, "adamw", profile)
    arms, design = comparisons.depth_factor_arms(bed.config, MAIN_FACTORS)
    proto = comparisons.protocol(bed.config.dataset, "adamw", profile)
    out.append(comparisons.Comparison(f"adamw, {steps} steps", bed, arms, design, proto))
    if profile == "smoke":
        out = out[:2]
    return out
