"""Learning-rate schedules that multiply each param group's own initial rate.

Every schedule here is a multiplier ``m(step)`` applied to each group's ``initial_lr`` through
``torch.optim.lr_scheduler.LambdaLR``, so per-layer rate ratios set by ``groups.param_groups``
survive the schedule unchanged.  ``step`` counts optimizer steps from 0 (the multiplier in
force for the first step is ``m(0)``), ``T`` is ``total_steps`` and ``p`` the fraction of the
decay phase done.  A group's ``lr`` is its peak rate: every schedule's largest multiplier is 1.

Names and options (defaults in brackets):

* ``constant`` (``warmup`` [0]): linear warmup, then a constant rate.
* ``cosine`` (``warmup`` [0], ``final`` [0]): linear warmup, then cosine decay.
* ``polynomial`` (``power`` [2], ``warmup`` [0]): linear warmup, then ``(1 - p)^power``.
* ``noam`` (``warmup`` [4000]): inverse-square-root decay after a linear warmup.
* ``slanted_triangular`` (``cut_frac`` [0.1], ``ratio`` [32]): ULMFiT's short rise, long fall.
* ``one_cycle`` (``pct_start`` [0.3], ``div_factor`` [25], ``final_div_factor`` [1e4],
  ``anneal`` ["cos"]): Smith's one-cycle policy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch

from ._validate import check_choice, check_int, check_number, check_options, check_positive

__all__ = ["SCHEDULES", "build", "multiplier"]

Multiplier = Callable[[int], float]


def _warmup_then(total_steps: int, warmup: int, decay: Callable[[float], float]) -> Multiplier:
    """``(step + 1) / warmup`` for the first ``warmup`` steps (Goyal et al. 2017, "Accurate,
    Large Minibatch SGD", arXiv:1706.02677), then ``decay(p)`` with
    ``p = min(1, (step - warmup) / (T - warmup))``."""
    check_int("warmup", warmup, 0)

    def m(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return decay(min(1.0, (step - warmup) / max(1, total_steps - warmup)))

    return m


def _constant(total_steps: int, warmup: int = 0) -> Multiplier:
    """Linear warmup to a constant rate (Goyal et al. 2017): ``m = min(1, (step + 1) / warmup)``."""
    return _warmup_then(total_steps, warmup, lambda p: 1.0)


def _cosine(total_steps: int, warmup: int = 0, final: float = 0.0) -> Multiplier:
    """Linear warmup, then cosine decay to ``final`` (Loshchilov & Hutter 2017, SGDR,
    arXiv:1608.03983): ``m = final + (1 - final) * (1 + cos(pi * p)) / 2``."""
    check_number("final", final, 0, 1)
    return _warmup_then(
        total_steps, warmup, lambda p: final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))
    )


def _polynomial(total_steps: int, power: float = 2.0, warmup: int = 0) -> Multiplier:
    """Polynomial decay, LARS's schedule (You, Gitman & Ginsburg 2017, arXiv:1708.03888,
    Algorithm 1, power 2): ``m = (1 - p)^power``, i.e. ``(1 - t/T)^power`` without warmup."""
    check_positive("power", power)
    return _warmup_then(total_steps, warmup, lambda p: (1.0 - p) ** power)


def _noam(total_steps: int, warmup: int = 4000) -> Multiplier:
    """The Transformer schedule (Vaswani et al. 2017, "Attention Is All You Need",
    arXiv:1706.03762, eq. 3): ``lr = d^-0.5 * min(t^-0.5, t * w^-1.5)`` with ``t = step + 1``.

    Normalised so that the peak, at ``t = w``, is 1: ``m = min(sqrt(w / t), t / w)``.  The
    model width ``d`` only scales the peak, so it is not an option: set the peak with the
    groups' ``lr`` (the paper's peak is ``d^-0.5 * w^-0.5``).  ``total_steps`` is not used.
    """
    check_int("warmup", warmup, 1)
    return lambda step: min(math.sqrt(warmup / (step + 1)), (step + 1) / warmup)


def _slanted_triangular(total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> Multiplier:
    """Slanted triangular rates (Howard & Ruder 2018, ULMFiT, arXiv:1801.06146, eq. 3)::

        cut = floor(T * cut_frac)
        p   = t / cut                                  if t < cut
              1 - (t - cut) / (cut * (1/cut_frac - 1))  otherwise
        m   = (1 + p * (ratio - 1)) / ratio

    with ``t = step``: a rise from ``1/ratio`` to 1 over the first ``cut`` steps and a linear
    fall back to ``1/ratio`` at ``t = T`` (held there after ``T``).
    """
    check_number("cut_frac", cut_frac, 0, 1, open_low=True, open_high=True)
    check_number("ratio", ratio, 1)
    cut = math.floor(total_steps * cut_frac)
    if cut < 1:
        raise ValueError(f"total_steps * cut_frac must be >= 1, got {total_steps} * {cut_frac}")

    def m(step: int) -> float:
        p = step / cut if step < cut else 1.0 - (step - cut) / (cut * (1.0 / cut_frac - 1.0))
        return (1.0 + max(p, 0.0) * (ratio - 1.0)) / ratio

    return m


def _one_cycle(
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
) -> Multiplier:
    """One-cycle policy (Smith 2018, "A disciplined approach to neural network
    hyper-parameters", arXiv:1803.09820; Smith & Topin 2019, "Super-convergence").

    A rise from ``1/div_factor`` to 1 over steps ``0 .. a`` with ``a = pct_start * T - 1``, then
    a fall to ``1/(div_factor * final_div_factor)`` at step ``T - 1``, interpolating with
    ``anneal(x, y, f) = y + (x - y) * (1 + cos(pi f)) / 2`` (``"cos"``) or ``x + (y - x) f``
    (``"linear"``, Smith's original).  The same phases as ``torch.optim.lr_scheduler.OneCycleLR``
    (without momentum cycling), but as a multiplier of each group's own peak, so per-layer
    ratios are kept.
    """
    check_number("pct_start", pct_start, 0, 1, open_low=True, open_high=True)
    check_positive("div_factor", div_factor)
    check_positive("final_div_factor", final_div_factor)
    check_choice("one_cycle anneal", anneal, ("cos", "linear"))
    rise_end, fall_end = pct_start * total_steps - 1, total_steps - 1
    if not 0 < rise_end < fall_end:
        raise ValueError(
            f"one_cycle needs 1 < pct_start * total_steps < total_steps, "
            f"got {pct_start} * {total_steps}"
        )
    low, final = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

    def interpolate(x: float, y: float, f: float) -> float:
        if anneal == "cos":
            return y + (x - y) * 0.5 * (1.0 + math.cos(math.pi * f))
        return x + (y - x) * f

    def m(step: int) -> float:
        if step <= rise_end:
            return interpolate(low, 1.0, step / rise_end)
        return interpolate(1.0, final, min(1.0, (step - rise_end) / (fall_end - rise_end)))

    return m


SCHEDULES: dict[str, Callable[..., Multiplier]] = {
    "constant": _constant,
    "cosine": _cosine,
    "polynomial": _polynomial,
    "noam": _noam,
    "slanted_triangular": _slanted_triangular,
    "one_cycle": _one_cycle,
}


def multiplier(name: str, total_steps: int, **options) -> Multiplier:
    """The multiplier function ``m(step)`` of schedule ``name`` (see the module docstring).

    Raises ``ValueError`` naming an unknown schedule or option (with the valid ones) or a bad
    value.
    """
    factory = SCHEDULES[check_choice("schedule", name, SCHEDULES)]
    check_options(f"{name} schedule", options, list(inspect.signature(factory).parameters)[1:])
    check_int("total_steps", total_steps, 1)
    return factory(total_steps, **options)


def build(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int, **options
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying schedule ``name`` to every group of ``optimizer``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier(name, total_steps, **options))
