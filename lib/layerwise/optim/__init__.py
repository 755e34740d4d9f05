"""Optimizers by name: torch's own plus the layer-wise adaptive ``LARS`` and ``LAMB``.

``build(name, params, lr, **options)`` is what the training loop calls; ``params`` may be
parameters or param-group dicts (each group keeps its own ``lr``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .._validate import check_choice, check_positive
from .lamb import LAMB
from .lars import LARS

__all__ = ["LAMB", "LARS", "OPTIMIZERS", "build"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "lars": LARS,
    "lamb": LAMB,
}


def build(name: str, params: Iterable[Any], lr: float, **options: Any) -> torch.optim.Optimizer:
    """Construct optimizer ``name`` over ``params`` at base rate ``lr``.

    Raises ``ValueError`` naming an unknown optimizer (with the valid names), a non-positive
    ``lr`` or an option the optimizer does not take.
    """
    cls = OPTIMIZERS[check_choice("optimizer", name, OPTIMIZERS)]
    check_positive("learning rate", lr)
    try:
        return cls(params, lr=lr, **options)
    except TypeError as exc:
        raise ValueError(f"bad options {options!r} for optimizer {name!r}: {exc}") from exc
