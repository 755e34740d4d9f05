"""LAMB: Adam moments with a layer-wise trust ratio.

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
ICLR 2020, arXiv:1904.00962 (v5), as implemented in TensorFlow Addons
(``tensorflow_addons/optimizers/lamb.py``); v3, LAMBC, a clamped phi, decoupled decay, the
1-D exemption and a ratio forced to 1 (the AdamW step) as switches.
"""

from __future__ import annotations

import math
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
    foreach_add_scalar_,
    foreach_mul_scalar_,
    paired_norms,
    where_norms_positive,
)

__all__ = ["LAMB", "lamb_trust_ratio"]


class LAMB(TrustRatioOptimizer):
    """LAMB (You et al. 2020, arXiv:1904.00962 v5, Algorithm 2; TF-Addons reference).

    For every parameter tensor ``w`` with gradient ``g`` at its step ``t`` (norms are L2 over
    the whole tensor)::

        m = b1 * m + (1 - b1) * g            v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)              v_hat = v / (1 - b2**t)
        r = m_hat / (sqrt(v_hat) + eps) + wd * w
        ratio = phi(||w||) / ||r||           1 if ||w|| or ||r|| is 0
        w = w - lr * ratio * r

    with ``phi(z) = z`` or, given ``max_weight_norm``, ``phi(z) = min(z, max_weight_norm)``.
    The ratio of each tensor is kept in ``state[p]["trust_ratio"]`` (a 0-dim tensor; the float
    1.0 for a tensor that ``exclude_1d`` exempts).  ``p.grad`` is never written.

    Variant and deviations:

    - v5 / TF-Addons by default: bias-corrected moments, ``eps`` added after the square root,
      weight decay inside the trust ratio, ``phi`` the identity, every tensor adapted.
      ``bias_correction=False`` is the v3 variant (``m`` and ``v`` used as they are).
      pytorch_optimizer's and torch-optimizer's ``Lamb`` follow v3 with ``phi`` clamped at 10;
      pytorch_optimizer corrects ``m`` by enlarging the step after the normalisation.
    - Every tensor adapts, also when ``weight_decay == 0``.  timm's ``Lamb`` (and apex's
      ``FusedLAMB``) adapt only groups with non-zero weight decay unless ``always_adapt``
      (``use_nvlamb``) is set, so with ``weight_decay=0`` they are plain Adam.
    - No global gradient-norm clipping (timm's and apex's ``max_grad_norm=1.0``, NVLAMB); clip
      before ``step()`` if wanted.
    - ``trust_clip=True`` caps the ratio at 1 (LAMBC, as timm's ``trust_clip``).
    - ``decoupled_weight_decay=True`` drops ``wd * w`` from ``r`` and applies
      ``w = w - lr * wd * w`` outside the ratio; the ratio uses ``||w||`` before that decay.
      timm's ``decoupled_decay`` decays first and takes the norm of the decayed weight, so its
      ratio is smaller by the factor ``1 - lr * wd``.
    - ``exclude_1d=True`` gives tensors with ``ndim <= 1`` (biases, norm gains) a plain Adam
      step: no trust ratio and no weight decay.  This is what TF-Addons does for names in
      ``exclude_from_layer_adaptation`` (default: its weight-decay exclusions) and what timm's
      factory groups produce; the paper adapts every tensor, and so does the default here.
    - The step count ``t`` is per tensor, as in ``torch.optim.Adam``; timm counts per group.
    - ``layer_adaptation=False`` sets every ratio to 1 (TF-Addons' name for the trust ratio is
      "layer adaptation"; cybertronai's ``pytorch-lamb`` calls this switch ``adam=True``): the
      step is ``w = w - lr * r``, with ``wd * w`` inside ``r`` -- AdamW's step
      (``torch.optim.AdamW`` with the same ``eps``; its decoupled decay is ``lr * wd * w``).
      The ablation that leaves LAMB's ratio as the only difference from AdamW.

    Args:
        params: parameters or param-group dicts (each group may set its own ``lr``,
            ``weight_decay`` and the other options below).
        lr: learning rate (> 0).
        betas: ``(b1, b2)``, each in [0, 1).
        eps: added to ``sqrt(v_hat)`` (>= 0).
        weight_decay: ``wd`` (>= 0).
        bias_correction: divide the moments by ``1 - b**t`` (v5); ``False`` gives v3.
        trust_clip: cap the ratio at 1 (LAMBC).
        max_weight_norm: upper clamp of ``phi`` (> 0), or ``None`` for the identity.
        exclude_1d: plain Adam for tensors with ``ndim <= 1``.
        decoupled_weight_decay: weight decay outside the trust ratio (see above).
        foreach: multi-tensor path (``None`` or ``True``) or one tensor at a time (``False``).
        layer_adaptation: ``False`` forces every trust ratio to 1 (see above).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
        trust_clip: bool = False,
        max_weight_norm: float | None = None,
        exclude_1d: bool = False,
        decoupled_weight_decay: bool = False,
        foreach: bool | None = None,
        layer_adaptation: bool = True,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            trust_clip=trust_clip,
            max_weight_norm=max_weight_norm,
            exclude_1d=exclude_1d,
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
            layer_adaptation=layer_adaptation,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_positive("LAMB lr", group["lr"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"LAMB betas must be a pair (b1, b2), got {betas!r}")
        check_unit_interval("LAMB betas[0]", betas[0])
        check_unit_interval("LAMB betas[1]", betas[1])
        check_nonnegative("LAMB eps", group["eps"])
        check_nonnegative("LAMB weight_decay", group["weight_decay"])
        if group["max_weight_norm"] is not None:
            check_positive("LAMB max_weight_norm", group["max_weight_norm"])
        if not isinstance(group.get("layer_adaptation", True), bool):
            raise ValueError(
                f"LAMB layer_adaptation must be True or False, got {group['layer_adaptation']!r}"
            )

    def _prepare(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Hashable:
        if not state:
            if p.is_complex():
                raise TypeError("LAMB does not support complex parameters (v uses g * g)")
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        return state["step"]

    def _kernel_inputs(
        self, group: dict[str, Any], batch: Batch
    ) -> tuple[tuple[list[Any], ...], dict[str, Any]]:
        beta1, beta2 = group["betas"]
        step = batch.tag
        bias1, bias2 = (1 - beta1**step, 1 - beta2**step) if group["bias_correction"] else (1, 1)
        weight_decay, decoupled = group["weight_decay"], group["decoupled_weight_decay"]
        options = dict(
            adapt=batch.adapt,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            # m_hat / (sqrt(v_hat) + eps) = scale * m / (sqrt(v) + eps * sqrt(bias2)): the
            # kernels compute u = m / (sqrt(v) + shifted_eps), so that r = scale * u (+ wd * w)
            scale=math.sqrt(bias2) / bias1,
            shifted_eps=group["eps"] * math.sqrt(bias2),
            inner_decay=0.0 if decoupled else weight_decay,
            outer_decay=weight_decay if decoupled else 0.0,
            max_weight_norm=group["max_weight_norm"],
            trust_clip=group["trust_clip"],
            # groups saved before the switch existed adapt, as they did then
            layer_adaptation=group.get("layer_adaptation", True),
        )
        exp_avgs = [s["exp_avg"] for s in batch.states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in batch.states]
        return (batch.params, batch.grads, exp_avgs, exp_avg_sqs), options

    def _kernels(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        return _single_tensor_lamb, _multi_tensor_lamb


def lamb_trust_ratio(
    w_norm: Tensor,
    r_norm: Tensor,
    *,
    max_weight_norm: float | None,
    trust_clip: bool,
    layer_adaptation: bool = True,
) -> Tensor:
    """LAMB ratio ``phi(||w||) / ||r||``, elementwise over norm tensors.

    ``phi`` is the identity or ``min(., max_weight_norm)``; ``trust_clip`` caps the ratio at 1;
    where either norm is 0 the result is 1; ``layer_adaptation=False`` gives 1 everywhere.
    """
    if not layer_adaptation:
        return torch.ones_like(w_norm)
    phi = w_norm if max_weight_norm is None else w_norm.clamp(max=max_weight_norm)
    ratio = phi / r_norm
    if trust_clip:
        ratio = ratio.clamp_(max=1.0)
    return where_norms_positive(ratio, w_norm, r_norm)


def _single_tensor_lamb(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    *,
    adapt: bool,
    lr: float,
    beta1: float,
    beta2: float,
    scale: float,
    shifted_eps: float,
    inner_decay: float,
    outer_decay: float,
    max_weight_norm: float | None,
    trust_clip: bool,
    layer_adaptation: bool = True,
) -> Tensor | None:
    """One tensor's LAMB step in place; returns its ratio (``None``: plain Adam, no decay)."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = exp_avg_sq.sqrt().add_(shifted_eps)
    if not adapt:
        param.addcdiv_(exp_avg, denom, value=-lr * scale)
        return None
    u = denom.reciprocal_().mul_(exp_avg)
    if inner_decay:
        u.add_(param, alpha=inner_decay / scale)
    w_norm = torch.linalg.vector_norm(param)
    ratio = lamb_trust_ratio(
        w_norm,
        scale * torch.linalg.vector_norm(u),
        max_weight_norm=max_weight_norm,
        trust_clip=trust_clip,
        layer_adaptation=layer_adaptation,
    )
    if outer_decay:
        param.mul_(1 - lr * outer_decay)
    param.addcmul_(u, ratio * (-lr * scale))
    return ratio


def _multi_tensor_lamb(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    adapt: bool,
    lr: float,
    beta1: float,
    beta2: float,
    scale: float,
    shifted_eps: float,
    inner_decay: float,
    outer_decay: float,
    max_weight_norm: float | None,
    trust_clip: bool,
    layer_adaptation: bool = True,
) -> list[Tensor] | None:
    """``_single_tensor_lamb`` for many tensors of one device and dtype, with foreach ops."""
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    foreach_mul_scalar_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    # u = m / (sqrt(v) + shifted_eps), built in one temporary per tensor (as torch's Adam)
    u = torch._foreach_sqrt(exp_avg_sqs)
    foreach_add_scalar_(u, shifted_eps)
    if not adapt:
        torch._foreach_addcdiv_(params, exp_avgs, u, value=-lr * scale)
        return None
    torch._foreach_reciprocal_(u)
    torch._foreach_mul_(u, exp_avgs)
    if inner_decay:
        torch._foreach_add_(u, params, alpha=inner_decay / scale)
    w_norm, u_norm = paired_norms(params, u)
    ratio = lamb_trust_ratio(
        w_norm,
        scale * u_norm,
        max_weight_norm=max_weight_norm,
        trust_clip=trust_clip,
        layer_adaptation=layer_adaptation,
    )
    if outer_decay:
        foreach_mul_scalar_(params, 1 - lr * outer_decay)
    torch._foreach_addcmul_(params, u, (ratio * (-lr * scale)).unbind(0))
    return ratio.unbind(0)
