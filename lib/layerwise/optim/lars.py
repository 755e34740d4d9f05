"""LARS: layer-wise adaptive rate scaling on top of SGD with momentum.

You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", arXiv:1708.03888
(2017), Algorithm 1; optional LARC clipping and the later 1-D exemption as switches.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

import torch
from torch import Tensor

from .._validate import check_positive
from ._trust import (
    Batch,
    TrustRatioOptimizer,
    check_nonnegative,
    check_unit_interval,
    foreach_mul_scalar_,
    paired_norms,
    where_norms_positive,
)

__all__ = ["LARS", "lars_trust_ratio"]


class LARS(TrustRatioOptimizer):
    """LARS (You, Gitman & Ginsburg 2017, arXiv:1708.03888, Algorithm 1), PyTorch momentum.

    For every parameter tensor ``w`` with gradient ``g`` (norms are L2 over the whole tensor)::

        lam = eta * ||w|| / (||g|| + beta * ||w|| + eps)     local rate; 1 if ||w|| or ||g|| is 0
        d   = lam * (g + beta * w)
        v   = m * v + d                                      v starts at 0, so v = d at step 1
        w   = w - lr * v                    (nesterov: w = w - lr * (d + m * v))

    with ``eta = trust_coefficient``, ``beta = weight_decay``, ``m = momentum``.  The ratio
    ``lam`` of each tensor is kept in ``state[p]["trust_ratio"]`` (a 0-dim tensor; the float 1.0
    for a tensor that ``exclude_1d`` exempts).  ``p.grad`` is never written.

    Variant and deviations:

    - Momentum follows ``torch.optim.SGD``: the buffer sums lr-free directions and ``lr``
      multiplies the buffer.  The paper puts the global rate inside the buffer
      (``v = m * v + lr_t * lam * (g + beta * w); w = w - v``); the two agree for a constant
      ``lr`` and differ while ``lr`` is scheduled.  timm, torch-optimizer and pytorch_optimizer
      use the same convention as here; optax accumulates lr-scaled updates like the paper.
    - ``eps`` (paper: none) guards the denominator; timm's ``Lars`` uses 1e-8.
    - A tensor whose weight or gradient norm is 0 gets ratio 1 (the paper leaves it undefined),
      i.e. the plain direction ``g + beta * w``; timm does the same.
    - ``trust_clip=True`` is LARC as in NVIDIA apex ``apex/parallel/LARC.py`` (``clip=True``;
      file removed from apex on 2025-05-08, commit cb65b8ed): ``lam = min(lam / lr, 1)``, so the
      effective rate ``lr * lam`` becomes ``min(lr, eta * ||w|| / (||g|| + beta * ||w|| + eps))``.
      The zero-norm ratio 1 is not clipped (apex leaves such tensors unscaled; timm clips it to
      ``min(1 / lr, 1)``, which differs when ``lr > 1``).
    - ``exclude_1d=True`` gives tensors with ``ndim <= 1`` (biases, norm gains) plain SGD with
      momentum: no trust ratio and no weight decay, the convention of barlowtwins' LARS and
      pytorch_optimizer.  The default adapts every tensor, as the paper does (its Table 2 lists
      biases with their own ratios).
    - Adaptation never depends on ``weight_decay``: timm's ``Lars`` (without ``always_adapt``)
      and torch-optimizer's ``LARS`` become plain SGD when ``weight_decay == 0``.
    - No dampening and no learning-rate schedule: the paper's poly(2) decay of ``lr`` belongs to
      a scheduler.

    Args:
        params: parameters or param-group dicts (each group may set its own ``lr``,
            ``weight_decay`` and the other options below).
        lr: default learning rate (> 0) for groups without their own ``lr``; may be left out
            when every group has one (e.g. the groups of ``layerwise.groups.param_groups``).
        momentum: momentum factor in [0, 1).
        weight_decay: ``beta`` (>= 0), L2 penalty inside the trust ratio.
        trust_coefficient: ``eta`` (> 0), the paper's 0.001 by default.
        eps: added to the ratio's denominator (>= 0).
        nesterov: Nesterov momentum as in ``torch.optim.SGD`` (needs ``momentum > 0``).
        trust_clip: LARC clipping (see above).
        exclude_1d: plain SGD with momentum for tensors with ``ndim <= 1``.
        foreach: multi-tensor path (``None`` or ``True``) or one tensor at a time (``False``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | None = None,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-9,
        nesterov: bool = False,
        trust_clip: bool = False,
        exclude_1d: bool = False,
        foreach: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            nesterov=nesterov,
            trust_clip=trust_clip,
            exclude_1d=exclude_1d,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        if group["lr"] is None:
            raise ValueError(
                "LARS lr must be a positive number, got None: the param group has no 'lr' and "
                "no default lr= was given"
            )
        check_positive("LARS lr", group["lr"])
        check_unit_interval("LARS momentum", group["momentum"])
        check_nonnegative("LARS weight_decay", group["weight_decay"])
        check_positive("LARS trust_coefficient", group["trust_coefficient"])
        check_nonnegative("LARS eps", group["eps"])
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError("LARS nesterov=True needs momentum > 0, got momentum=0")

    def _prepare(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Hashable:
        if group["momentum"] and "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return None

    def _kernel_inputs(
        self, group: dict[str, Any], batch: Batch
    ) -> tuple[tuple[list[Any], ...], dict[str, Any]]:
        bufs = [s.get("momentum_buffer") for s in batch.states]
        options = dict(
            adapt=batch.adapt,
            lr=group["lr"],
            momentum=group["momentum"],
            nesterov=group["nesterov"],
            weight_decay=group["weight_decay"] if batch.adapt else 0.0,
            trust_coefficient=group["trust_coefficient"],
            eps=group["eps"],
            trust_clip=group["trust_clip"],
        )
        return (batch.params, batch.grads, bufs), options

    def _kernels(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        return _single_tensor_lars, _multi_tensor_lars


def lars_trust_ratio(
    w_norm: Tensor,
    g_norm: Tensor,
    *,
    trust_coefficient: float,
    weight_decay: float,
    eps: float,
    lr: float,
    trust_clip: bool,
) -> Tensor:
    """LARS local rate ``eta*||w|| / (||g|| + beta*||w|| + eps)``, elementwise over norm tensors.

    With ``trust_clip`` the rate becomes LARC's ``min(rate / lr, 1)``; where either norm is 0
    the result is 1 (unclipped).
    """
    ratio = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)
    if trust_clip:
        ratio = (ratio / lr).clamp_(max=1.0)
    return where_norms_positive(ratio, w_norm, g_norm)


def _single_tensor_lars(
    param: Tensor,
    grad: Tensor,
    buf: Tensor | None,
    *,
    adapt: bool,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    trust_coefficient: float,
    eps: float,
    trust_clip: bool,
) -> Tensor | None:
    """One tensor's LARS step in place; returns its local rate (``None`` if not adapted)."""
    ratio = None
    if adapt:
        ratio = lars_trust_ratio(
            torch.linalg.vector_norm(param),
            torch.linalg.vector_norm(grad),
            trust_coefficient=trust_coefficient,
            weight_decay=weight_decay,
            eps=eps,
            lr=lr,
            trust_clip=trust_clip,
        )
    d = grad.add(param, alpha=weight_decay) if weight_decay else grad  # direction / ratio
    if momentum:
        buf.mul_(momentum)
        if ratio is None:
            buf.add_(d)
        else:
            buf.addcmul_(d, ratio)
        if not nesterov:
            param.add_(buf, alpha=-lr)
            return ratio
        param.add_(buf, alpha=-lr * momentum)
    if ratio is None:
        param.add_(d, alpha=-lr)
    else:
        param.addcmul_(d, ratio * -lr)
    return ratio


def _multi_tensor_lars(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    *,
    adapt: bool,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    trust_coefficient: float,
    eps: float,
    trust_clip: bool,
) -> list[Tensor] | None:
    """``_single_tensor_lars`` for many tensors of one device and dtype, with foreach ops."""
    ratio = ratios = None
    if adapt:
        ratio = lars_trust_ratio(
            *paired_norms(params, grads),
            trust_coefficient=trust_coefficient,
            weight_decay=weight_decay,
            eps=eps,
            lr=lr,
            trust_clip=trust_clip,
        )
        ratios = ratio.unbind(0)
    # the only temporary is g + wd * w (when wd != 0): the ratio is applied inside addcmul
    d = torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay else grads
    if momentum:
        foreach_mul_scalar_(bufs, momentum)
        if ratios is None:
            torch._foreach_add_(bufs, d)
        else:
            torch._foreach_addcmul_(bufs, d, ratios)
        if not nesterov:
            torch._foreach_add_(params, bufs, alpha=-lr)
            return ratios
        torch._foreach_add_(params, bufs, alpha=-lr * momentum)
    if ratio is None:
        torch._foreach_add_(params, d, alpha=-lr)
    else:
        torch._foreach_addcmul_(params, d, (ratio * -lr).unbind(0))
    return ratios
