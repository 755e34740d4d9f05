"""Per-tensor training statistics recorded every few steps: the "measurement kit" of the study.

For every parameter tensor ``w`` (keyed by its name in ``model.named_parameters()``) a monitored
step records

* ``w_norm`` -- ``||w||`` before the update;
* ``g_norm`` -- ``||g||``, the gradient the optimizer is about to use; with ``w_norm`` this gives
  the ratio ``||w|| / ||g||`` of LARS (You, Gitman, Ginsburg 2017, Table 2);
* ``update_ratio`` -- ``||Δw|| / ||w||`` with ``Δw`` the change made by that step, which
  LARS / LAMB / Fromage hold near ``lr * trust`` by design;
* ``lr`` -- the effective rate: the group's ``lr`` times the trust ratio
  ``optimizer.state[p]["trust_ratio"]`` when the optimizer (LARS, LAMB) stores one;
* ``trust_ratio`` -- that trust ratio.

On every monitored step the monitor also runs :func:`layerwise.groups.check` on the optimizer
(off with ``check_rates=False``): if the groups were built by ``groups.param_groups`` and their
rates no longer stand in the ratios the rule set (e.g. ``OneCycleLR`` with a scalar ``max_lr``),
it warns once.

Norms are Frobenius norms gathered with ``torch._foreach_norm`` (one fused call per quantity)
and moved to Python with one transfer per monitored step; weights are snapshotted only on
monitored steps, into buffers allocated once.  Undefined values -- no gradient (a frozen
parameter), no trust ratio, a parameter not in the optimizer, a zero weight norm -- are ``None``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from .._validate import check_positive
from ..groups import check

__all__ = ["QUANTITIES", "Monitor", "monitor_frame"]

QUANTITIES: tuple[str, ...] = ("w_norm", "g_norm", "update_ratio", "lr", "trust_ratio")


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch._foreach_norm(tensors, 2, dtype=torch.float32)) if tensors else []


class Monitor:
    """Record per-tensor norms, relative updates and rates every ``every`` steps.

    The training loop calls ``before_step(step)`` just before ``optimizer.step()`` (gradients
    ready) and ``after_step(step)`` right after it (``check_rates``: see the module docstring); steps with ``step % every == 0`` are recorded,
    the others return at once.  ``to_record()`` gives the JSON-serialisable result and
    :func:`monitor_frame` a tidy DataFrame of it.

    Example::

        monitor = Monitor(model, optimizer, every=10)
        for step in range(steps):
            loss_fn(model(x), y).backward()
            monitor.before_step(step)
            optimizer.step()
            monitor.after_step(step)
            optimizer.zero_grad()
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        every: int,
        check_rates: bool = True,
    ):
        if not isinstance(every, int):
            raise ValueError(f"every must be a positive integer, got {every!r}")
        check_positive("every", every)
        self.every = every
        self.optimizer = optimizer
        self.check_rates = check_rates  # cleared after the first warning
        named = list(model.named_parameters())
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        self._groups = [group_of.get(id(p)) for p in self.params]
        self._snapshot: list[torch.Tensor] | None = None
        self._pending: tuple[int, list[int], list[torch.Tensor]] | None = None
        self._steps: list[int] = []
        self._series = {name: {q: [] for q in QUANTITIES} for name in self.names}

    def before_step(self, step: int) -> None:
        """Take the gradient norms and a weight snapshot if ``step`` is monitored."""
        if step % self.every:
            return
        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        g_norms = _norms([self.params[i].grad for i in with_grad])
        with torch.no_grad():
            if self._snapshot is None:
                self._snapshot = [torch.empty_like(p) for p in self.params]
            torch._foreach_copy_(self._snapshot, self.params)
        self._pending = (step, with_grad, g_norms)

    def after_step(self, step: int) -> None:
        """Record ``step`` if it is monitored (``before_step(step)`` must have run)."""
        if step % self.every:
            return
        if self._pending is None or self._pending[0] != step:
            raise RuntimeError(f"after_step({step}) without before_step({step})")
        _, with_grad, g_norms = self._pending
        self._pending = None
        with torch.no_grad():
            w_norms = _norms(self._snapshot)
            torch._foreach_sub_(self._snapshot, self.params)  # now -Δw; rewritten next time
            d_norms = _norms(self._snapshot)
        trust = [self._trust(p) for p in self.params]
        trust_tensors = [t.reshape(()).float() for t in trust if isinstance(t, torch.Tensor)]
        values = iter(torch.stack([*w_norms, *g_norms, *d_norms, *trust_tensors]).tolist())
        n = len(self.params)
        w = [next(values) for _ in range(n)]
        g: list[float | None] = [None] * n
        for i in with_grad:
            g[i] = next(values)
        d = [next(values) for _ in range(n)]
        trust = [next(values) if isinstance(t, torch.Tensor) else t for t in trust]

        self._steps.append(step)
        if self.check_rates and not check(self.optimizer):
            self.check_rates = False
        for i, name in enumerate(self.names):
            group = self._groups[i]
            lr = None if group is None else float(group["lr"])
            series = self._series[name]
            series["w_norm"].append(w[i])
            series["g_norm"].append(g[i])
            series["update_ratio"].append(d[i] / w[i] if w[i] else None)
            series["lr"].append(lr if lr is None or trust[i] is None else lr * trust[i])
            series["trust_ratio"].append(trust[i])

    def _trust(self, p: torch.Tensor) -> torch.Tensor | float | None:
        state = self.optimizer.state.get(p)
        ratio = state.get("trust_ratio") if state else None
        return ratio if ratio is None or isinstance(ratio, torch.Tensor) else float(ratio)

    def to_record(self) -> dict[str, Any]:
        """``{"every": k, "step": [...], "params": {name: {quantity: [...]}}}``, JSON-ready.

        Every list is aligned with ``"step"``; quantities are those of :data:`QUANTITIES`.
        """
        return {
            "every": self.every,
            "step": list(self._steps),
            "params": {
                name: {q: list(values) for q, values in series.items()}
                for name, series in self._series.items()
            },
        }


def monitor_frame(record: dict[str, Any]) -> pd.DataFrame:
    """A tidy frame (``step``, ``name``, ``quantity``, ``value``) of a :meth:`Monitor.to_record`
    dict; undefined (``None``) values are left out."""
    rows = [
        (step, name, quantity, value)
        for name, series in record["params"].items()
        for quantity, values in series.items()
        for step, value in zip(record["step"], values, strict=True)
        if value is not None
    ]
    return pd.DataFrame(rows, columns=["step", "name", "quantity", "value"])
