"""Machinery shared by the layer-wise trust-ratio optimizers ``LARS`` and ``LAMB``.

A trust ratio rescales the update of one parameter tensor by a ratio of norms.  This module
holds what both optimizers need around that ratio: the step loop, which sorts a group's tensors
into batches for the multi-tensor (``torch._foreach_*``) path and records every tensor's ratio in
``state[p]["trust_ratio"]``; the norms of many tensors from one ``torch._foreach_norm`` call; the
rule that a ratio involving a zero norm is 1; and argument checks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Batch",
    "TrustRatioOptimizer",
    "check_nonnegative",
    "check_unit_interval",
    "foreach_add_scalar_",
    "foreach_mul_scalar_",
    "paired_norms",
    "where_norms_positive",
]


def check_nonnegative(what: str, value: Any) -> Any:
    """Return ``value`` if it is a number >= 0; otherwise raise ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{what} must be a number >= 0, got {value!r}")
    return value


def check_unit_interval(what: str, value: Any) -> Any:
    """Return ``value`` if it is a number in [0, 1); otherwise raise ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}")
    return value


def where_norms_positive(ratio: Tensor, norm_a: Tensor, norm_b: Tensor) -> Tensor:
    """``ratio`` where both norms are > 0, else 1: a zero tensor or zero update is not rescaled."""
    return torch.where(torch.minimum(norm_a, norm_b) > 0, ratio, 1.0)


def paired_norms(a: Sequence[Tensor], b: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """L2 norms of every ``a[i]`` and ``b[i]`` as two vectors, from one ``_foreach_norm`` call."""
    norms = torch.stack(torch._foreach_norm([*a, *b]))
    return norms[: len(a)], norms[len(a) :]


def _cpu_operand(value: float, tensors: Sequence[Tensor]) -> Tensor | None:
    # With a Python number, CPU foreach ops (torch 2.13) wrap it into a tensor once per list
    # element, about 3x the cost of the op itself on small tensors; a 0-dim tensor made once
    # avoids that.  Not for other devices: a CPU operand takes CUDA foreach ops off their
    # fused path.
    if tensors[0].device.type != "cpu":
        return None
    return torch.tensor(value, dtype=tensors[0].dtype)


def foreach_mul_scalar_(tensors: Sequence[Tensor], value: float) -> None:
    """``torch._foreach_mul_(tensors, value)``, avoiding the slow CPU path for numbers."""
    operand = _cpu_operand(value, tensors)
    torch._foreach_mul_(tensors, value if operand is None else operand)


def foreach_add_scalar_(tensors: Sequence[Tensor], value: float) -> None:
    """``torch._foreach_add_(tensors, value)``, avoiding the slow CPU path for numbers."""
    operand = _cpu_operand(value, tensors)
    if operand is None:
        torch._foreach_add_(tensors, value)
    else:  # alpha selects the Tensor overload; without it the operand is read as a number
        torch._foreach_add_(tensors, operand, alpha=1)


@dataclass
class Batch:
    """Tensors of one param group that share device, dtype and treatment, for one kernel call.

    ``adapt`` is False for tensors that ``exclude_1d`` exempts from the trust ratio; ``tag`` is
    whatever else the optimizer needs to be uniform within a batch (LAMB: the step count).
    """

    adapt: bool
    tag: Hashable
    params: list[Tensor] = field(default_factory=list)
    grads: list[Tensor] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)


class TrustRatioOptimizer(torch.optim.Optimizer):
    """Step loop for optimizers that rescale each tensor's update by a trust ratio.

    Subclasses implement ``_check_group`` (validate one param group's settings; runs for every
    group added), ``_prepare`` (create or advance one tensor's state before its update; returns
    its batching tag), ``_kernel_inputs`` (a batch's per-tensor lists and the keyword options)
    and ``_kernels`` (the single-tensor and the multi-tensor update functions).  Both kernels
    update in place and return the trust ratio(s): one 0-dim tensor, or a list of them, or
    ``None`` for a batch that is not adapted.  Groups need the keys ``foreach`` (``None`` means
    on) and ``exclude_1d``.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; return ``closure()`` if one is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            foreach = group["foreach"] is not False
            for batch in self._batches(group):
                ratios = self._update(group, batch, foreach)
                if ratios is None:
                    for state in batch.states:
                        state["trust_ratio"] = 1.0
                else:
                    for state, ratio in zip(batch.states, ratios, strict=True):
                        state["trust_ratio"] = ratio
        return loss

    def _batches(self, group: dict[str, Any]) -> list[Batch]:
        batches: dict[tuple[Any, ...], Batch] = {}
        exclude_1d = group["exclude_1d"]
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            tag = self._prepare(p, state, group)
            adapt = not (exclude_1d and p.ndim <= 1)
            key = (p.device, p.dtype, adapt, tag)
            batch = batches.get(key)
            if batch is None:
                batch = batches[key] = Batch(adapt, tag)
            batch.params.append(p)
            batch.grads.append(grad)
            batch.states.append(state)
        return list(batches.values())

    def _update(self, group: dict[str, Any], batch: Batch, foreach: bool) -> Sequence[Any] | None:
        tensors, options = self._kernel_inputs(group, batch)
        single, multi = self._kernels()
        if foreach:
            return multi(*tensors, **options)
        ratios = [single(*one, **options) for one in zip(*tensors, strict=True)]
        return ratios if batch.adapt else None

    def _check_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _prepare(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Hashable:
        raise NotImplementedError

    def _kernel_inputs(
        self, group: dict[str, Any], batch: Batch
    ) -> tuple[tuple[list[Any], ...], dict[str, Any]]:
        raise NotImplementedError

    def _kernels(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        raise NotImplementedError
