"""FreezeOut: anneal each layer's rate to zero at its own time, then freeze it.

Brock, Lim, Ritchie & Weston 2017, "FreezeOut: Accelerate Training by Progressively Freezing
Layers", arXiv:1706.04983.  With ``L`` layers (the distinct ``depth`` values of the optimizer's
groups, 0 = nearest the input), layer ``i`` stops at the fraction of training ``t_i``::

    t_i = (t_0^(1/k) + (1 - t_0^(1/k)) * i / (L - 1))^k,   k = 1 (linear), 2, 3 (cubic)

so the first layer stops at ``t_0`` and the last at 1 (a single layer stops at 1).  Note that
the paper's code cubes its ``t_0`` (its default 0.8 stops the first layer at 0.512); here
``t_0`` is the first layer's actual stop.  Until then the group's rate is cosine-annealed::

    lr_i(t) = lr_i(0) * (1 + cos(pi * t / t_i)) / 2,   t = step / total_steps

(the paper's README notes the missing factor 1/2 in its equation), with ``lr_i(0)`` the group's
rate when FreezeOut was created, divided by ``t_i`` if ``scaled`` (the paper's "scaled"
variant, which keeps the area under each layer's schedule like that of the last layer).  From
``t >= t_i`` the rate is 0 and the group's parameters get ``requires_grad=False`` and
``grad=None``: autograd no longer computes their gradients (the saving FreezeOut is after) and
every torch optimizer skips them, so neither momentum nor weight decay moves them again.

With ``warmup`` steps (the project's runs warm up linearly over the first 5%), every layer
first warms up as the run's own schedule does, ``lr_i = lr_i(0) * (step + 1) / warmup``, and its
cosine then runs over the rest of its time, ``p_i = (step - warmup) / (t_i * T - warmup)``::

    lr_i = lr_i(0) * (1 + cos(pi * p_i)) / 2

so the last layer (``t_i = 1``) follows exactly the warmup-then-cosine schedule of a run without
FreezeOut, and every other layer follows the same schedule compressed to end at ``t_i``: FreezeOut
replaces the run's cosine, it does not multiply it (``warmup=0`` is the paper's formula above).

``anneal=False`` keeps only the freezing: the rates are left to the run's own scheduler, and
each group just stops at ``t_i`` -- the "freeze training" of Raghu et al. 2017 (SVCCA,
arXiv:1706.05806), who freeze lower layers one after another, linearly in layer index, while
training goes on as before; :func:`freeze_training_t0` gives its first stop, ``1 / L``, so
that layer ``i`` stops at ``(i + 1) / L`` and the top layer trains to the end.

Groups stay in the optimizer, so optimizer checkpoints keep their shape; ``state_dict()`` is
JSON-able and ``load_state_dict`` on a fresh model + optimizer + FreezeOut restores the rates
and the frozen set.  A tensor shared between depths (a tied embedding and output layer) sits at
the depth of its last use (``layers.layer_table``), the output side, and freezes with it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._validate import check_choice, check_int, check_number

__all__ = ["SPACINGS", "FreezeOut", "freeze_times", "freeze_training_t0"]

SPACINGS: dict[str, int] = {"linear": 1, "squared": 2, "cubic": 3}


def _check_schedule(t_0: float, spacing: str) -> None:
    check_number("t_0", t_0, 0, 1, open_low=True)
    check_choice("FreezeOut spacing", spacing, SPACINGS)


def freeze_training_t0(layers: int) -> float:
    """Raghu et al.'s freeze training as a linear FreezeOut schedule: the first of ``layers``
    layers stops at ``1 / layers``, so layer ``i`` stops at ``(i + 1) / layers``."""
    return 1.0 / check_int("layers", layers, 1)


def freeze_times(layers: int, t_0: float, spacing: str = "linear") -> list[float]:
    """The stop fraction ``t_i`` of each of ``layers`` layers, first layer first."""
    check_int("layers", layers, 1)
    _check_schedule(t_0, spacing)
    k = SPACINGS[spacing]
    if layers == 1:
        return [1.0]
    root = t_0 ** (1.0 / k)
    times = [(root + (1.0 - root) * i / (layers - 1)) ** k for i in range(layers)]
    times[0], times[-1] = t_0, 1.0  # exact end points, whatever the rounding of the k-th root
    return times


class FreezeOut:
    """Per-layer cosine annealing to zero and progressive freezing, as a scheduler.

    Build the optimizer from ``groups.param_groups(...)``, whose groups carry ``depth``; call
    ``step()`` after each ``optimizer.step()``, like a torch scheduler.

    Args:
        optimizer: any torch optimizer whose groups have an integer ``depth`` key.
        total_steps: the number of optimizer steps in the run.
        t_0: the fraction of training at which the first layer stops, in (0, 1].
        spacing: ``"linear"``, ``"squared"`` or ``"cubic"`` spacing of the stop times.
        scaled: start each layer at ``lr / t_i`` instead of ``lr``.
        warmup: steps of linear warmup before each layer's cosine (the run's own warmup).
        anneal: ``False``: leave the rates to the run's scheduler and only freeze (freeze
            training); then ``scaled`` and ``warmup`` must keep their defaults' meaning
            (``scaled=False``, ``warmup=0``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        t_0: float = 0.5,
        spacing: str = "linear",
        scaled: bool = True,
        warmup: int = 0,
        anneal: bool = True,
    ):
        check_int("total_steps", total_steps, 1)
        _check_schedule(t_0, spacing)
        check_int("warmup", warmup, 0)
        if not anneal and (scaled or warmup):
            raise ValueError(
                f"anneal=False leaves the rates to the run's schedule, so scaled must be False "
                f"and warmup 0 (got scaled={scaled!r}, warmup={warmup!r})"
            )
        depths = []
        for i, group in enumerate(optimizer.param_groups):
            depth = group.get("depth")
            if isinstance(depth, bool) or not isinstance(depth, int):
                raise ValueError(
                    f"param group {i} has no integer 'depth' (got {depth!r}); build the "
                    "optimizer from layerwise.groups.param_groups(...)"
                )
            depths.append(depth)
        self.optimizer = optimizer
        self.total_steps, self.t_0, self.spacing, self.scaled = total_steps, t_0, spacing, scaled
        self.warmup, self.anneal = warmup, anneal
        self.depths = depths
        first_stop = min(self.stop_times) * total_steps
        if warmup and first_stop <= warmup:
            raise ValueError(
                f"the first layer stops at step {first_stop:g} (t_0={t_0!r} of {total_steps} "
                f"steps), within the warmup of {warmup} steps; use a later t_0 or a shorter warmup"
            )
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    @property
    def stop_times(self) -> list[float]:
        """``t_i`` of each param group (groups at the same depth share it)."""
        layers = sorted(set(self.depths))
        times = dict(zip(layers, freeze_times(len(layers), self.t_0, self.spacing), strict=True))
        return [times[d] for d in self.depths]

    @property
    def frozen(self) -> list[bool]:
        """Whether each param group is frozen at the current step."""
        t = self.step_count / self.total_steps
        return [t >= t_i for t_i in self.stop_times]

    def get_last_lr(self) -> list[float]:
        """The rate of each param group at the current step."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one optimizer step: set the new rates and freeze groups whose time is up."""
        self.step_count += 1
        self._apply()

    def _multiplier(self, t_i: float) -> float:
        """The warmup-then-cosine multiplier of a layer that stops at ``t_i``, at this step."""
        step, warmup = self.step_count, self.warmup
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / (t_i * self.total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * p))

    def _apply(self) -> None:
        t = self.step_count / self.total_steps
        groups = self.optimizer.param_groups
        for group, base, t_i in zip(groups, self.base_lrs, self.stop_times, strict=True):
            if t >= t_i:
                if self.anneal:
                    group["lr"] = 0.0
                for p in group["params"]:
                    p.requires_grad_(False)
                    p.grad = None
            elif self.anneal:
                start = base / t_i if self.scaled else base
                group["lr"] = start * self._multiplier(t_i)

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot: the settings, each group's starting rate and depth, the step."""
        return {
            "total_steps": self.total_steps,
            "t_0": self.t_0,
            "spacing": self.spacing,
            "scaled": self.scaled,
            "warmup": self.warmup,
            "anneal": self.anneal,
            "depths": list(self.depths),
            "base_lrs": list(self.base_lrs),
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot and re-apply its rates and frozen set to the optimizer."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(
                f"FreezeOut state keys {sorted(state)} differ from the expected {sorted(expected)}"
            )
        if list(state["depths"]) != self.depths:
            raise ValueError(
                f"FreezeOut state is for groups at depths {state['depths']}, but the optimizer's "
                f"groups are at {self.depths}"
            )
        _check_schedule(state["t_0"], state["spacing"])
        self.total_steps, self.t_0 = state["total_steps"], state["t_0"]
        self.spacing, self.scaled = state["spacing"], state["scaled"]
        self.warmup, self.anneal = state["warmup"], state["anneal"]
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self.step_count = state["step_count"]
        self._apply()
