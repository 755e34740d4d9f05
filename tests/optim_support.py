"""Test support for ``LAMB`` and ``LARS``: float64 data, a step runner and the formulas.

Imported as ``from optim_support import ...`` (as ``timm_reference``, from this folder) by
``test_lamb.py``, ``test_lars.py``, ``test_optim_common.py`` and ``test_timm_comparison.py``.

``reference_lamb`` and ``reference_lars`` write the papers' formulas out one tensor at a time, in
float64 with norms as Python floats; no expected value in the tests is copied from a run of the
optimizers.
"""

from __future__ import annotations

import math

import torch

SHAPES = [(6, 5), (5,), (3, 2, 2), (4,)]
# weight scales: the clipping options bind on some of these tensors only
LAMB_SCALES = [3.0, 0.05, 0.2, 2.0]  # trust_clip and max_weight_norm
LARS_SCALES = [10.0, 0.1, 3.0, 0.5]  # LARC's trust_clip

# options taken by both the optimizer and its reference
LAMB_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, weight_decay=0.1, bias_correction=False),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-3, trust_clip=True),
    dict(lr=0.01, weight_decay=0.1, max_weight_norm=2.0),
    dict(lr=0.05, weight_decay=0.3, decoupled_weight_decay=True),
    dict(lr=0.01, weight_decay=0.1, exclude_1d=True),
    dict(lr=0.05, weight_decay=0.1, exclude_1d=True, decoupled_weight_decay=True, trust_clip=True),
]
LARS_CONFIGS = [
    dict(lr=0.5, momentum=0.0),
    dict(lr=0.5, momentum=0.9),
    dict(lr=0.5, momentum=0.9, weight_decay=0.01),
    dict(lr=0.5, momentum=0.9, weight_decay=0.01, nesterov=True),
    dict(lr=2e-3, momentum=0.5, weight_decay=0.1, trust_clip=True),
    dict(lr=0.5, momentum=0.9, weight_decay=0.01, exclude_1d=True),
    dict(
        lr=1e-2,
        momentum=0.0,
        weight_decay=0.01,
        trust_clip=True,
        exclude_1d=True,
        trust_coefficient=2e-3,
    ),
]


def config_id(config: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in config.items())


def make_weights(scales, shapes=SHAPES, seed=0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        s * torch.randn(shape, generator=gen, dtype=torch.float64)
        for shape, s in zip(shapes, scales, strict=True)
    ]


def make_grads(weights, steps, seed=1) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in weights]
        for _ in range(steps)
    ]


def run(make_optimizer, weights, grad_steps, groups=None):
    """Step a fresh optimizer over copies of ``weights``; return (params, optimizer).

    A ``None`` gradient leaves its tensor without one for that step; ``groups``, a list of
    ``(indices, options)``, splits the tensors into param groups.
    """
    params = [w.clone().requires_grad_() for w in weights]
    if groups is None:
        opt = make_optimizer(params)
    else:
        opt = make_optimizer([{"params": [params[i] for i in idx], **o} for idx, o in groups])
    for grads in grad_steps:
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.clone()
        opt.step()
    return [p.detach() for p in params], opt


def params_after(make_optimizer, weights, grad_steps, groups=None) -> list[torch.Tensor]:
    """The final params of ``run``."""
    return run(make_optimizer, weights, grad_steps, groups)[0]


def norm(t: torch.Tensor) -> float:
    return math.sqrt(float((t * t).sum()))


def close(actual, expected, rtol=1e-12, atol=1e-14):
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)


def recorded_ratios(opt) -> list[torch.Tensor]:
    """``state[p]["trust_ratio"]`` of the first group's params, as float64 tensors."""
    return [
        torch.as_tensor(opt.state[p]["trust_ratio"], dtype=torch.float64)
        for p in opt.param_groups[0]["params"]
    ]


def reference_lamb(
    weights,
    grad_steps,
    *,
    lr,
    betas=(0.9, 0.999),
    eps=1e-6,
    weight_decay=0.0,
    bias_correction=True,
    trust_clip=False,
    max_weight_norm=None,
    exclude_1d=False,
    decoupled_weight_decay=False,
):
    """LAMB per tensor (a ``None`` gradient skips the tensor): final weights and last ratios.

    You et al. (2020, arXiv:1904.00962 v5, Algorithm 2) as in TF-Addons.
    """
    b1, b2 = betas
    ws = [w.clone() for w in weights]
    ms = [torch.zeros_like(w) for w in ws]
    vs = [torch.zeros_like(w) for w in ws]
    steps = [0] * len(ws)
    ratios = [None] * len(ws)
    for grads in grad_steps:
        for i, g in enumerate(grads):
            if g is None:
                continue
            w = ws[i]
            steps[i] += 1
            t = steps[i]
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat, v_hat = ms[i], vs[i]
            if bias_correction:
                m_hat, v_hat = m_hat / (1 - b1**t), v_hat / (1 - b2**t)
            excluded = exclude_1d and w.dim() <= 1
            wd = 0.0 if excluded else weight_decay
            r = m_hat / (v_hat.sqrt() + eps)
            if not decoupled_weight_decay:
                r = r + wd * w
            ratio = 1.0
            if not excluded and norm(w) > 0 and norm(r) > 0:
                phi = norm(w) if max_weight_norm is None else min(norm(w), max_weight_norm)
                ratio = phi / norm(r)
                if trust_clip:
                    ratio = min(ratio, 1.0)
            new = w - lr * ratio * r
            if decoupled_weight_decay:
                new = new - lr * wd * w
            ws[i] = new
            ratios[i] = ratio
    return ws, ratios


def reference_lars(
    weights,
    grad_steps,
    *,
    lr,
    momentum=0.9,
    weight_decay=0.0,
    trust_coefficient=1e-3,
    eps=1e-9,
    nesterov=False,
    trust_clip=False,
    exclude_1d=False,
):
    """LARS per tensor: final weights and last local rates.

    Algorithm 1 of You, Gitman & Ginsburg (2017, arXiv:1708.03888) in torch's momentum
    convention; ``trust_coefficient`` is the paper's ``eta``, ``weight_decay`` its ``beta``.
    """
    eta = trust_coefficient
    ws = [w.clone() for w in weights]
    bufs: list[torch.Tensor | None] = [None] * len(ws)
    rates = [None] * len(ws)
    for grads in grad_steps:
        for i, g in enumerate(grads):
            w = ws[i]
            if exclude_1d and w.dim() <= 1:
                rate, beta = 1.0, 0.0
            else:
                beta = weight_decay
                if norm(w) == 0 or norm(g) == 0:
                    rate = 1.0
                else:
                    rate = eta * norm(w) / (norm(g) + beta * norm(w) + eps)
                    if trust_clip:
                        rate = min(rate / lr, 1.0)
            d = rate * (g + beta * w)
            if momentum:
                bufs[i] = d.clone() if bufs[i] is None else momentum * bufs[i] + d
                d = d + momentum * bufs[i] if nesterov else bufs[i]
            ws[i] = w - lr * d
            rates[i] = rate
    return ws, rates
