"""Our ``LAMB`` / ``LARS`` against timm's ``Lamb`` / ``Lars`` (timm 1.0.31, ``timm/optim/``).

timm is loaded by ``timm_reference.load()`` (its ``__init__`` imports torchvision, which may
not load beside this torch); the module is skipped when timm is not installed.

Where they agree (tested below, float64, both of timm's paths):

- timm ``Lamb(always_adapt=True, max_grad_norm=None)`` with the same ``lr``, ``betas``, ``eps``,
  ``weight_decay``, ``bias_correction`` and ``trust_clip`` equals our ``LAMB``.
- timm ``Lars(always_adapt=True)`` with the same ``lr`` (<= 1), ``momentum``, ``weight_decay``,
  ``nesterov``, ``trust_clip`` and ``eps`` (``trust_coeff`` = our ``trust_coefficient``) equals
  our ``LARS``.
- Our ``exclude_1d=True`` equals timm fed two param groups, tensors with ``ndim <= 1`` at
  ``weight_decay=0`` (timm's factory does this split): timm then skips the trust ratio on those
  because their group's weight decay is 0.

Where they differ (setting -> what differs -> why), each shown by a test below:

1. timm ``Lamb`` or ``Lars`` with ``weight_decay=0`` and the default ``always_adapt=False`` ->
   timm takes a plain Adam / plain SGD step (no trust ratio) while ours adapts every tensor ->
   timm gates adaptation on the group's weight decay (apex NVLAMB's convention, used to exempt
   the no-decay group); the papers adapt every layer.
2. timm ``Lamb`` default ``max_grad_norm=1.0`` -> timm divides all gradients by
   ``max(1, global_norm)`` before the moments; ours uses the raw gradients -> NVLAMB's global
   pre-normalisation is not part of LAMB's Algorithm 2.  The moments' ratio hides the scale
   except through ``eps``, so the difference shows where scaled gradients come near ``eps``.
3. timm ``Lamb(decoupled_decay=True)`` vs our ``decoupled_weight_decay=True`` -> timm's trust
   ratio is ``(1 - lr * wd)`` times ours -> timm shrinks the weight first and takes the norm of
   the shrunk weight; ours takes ``||w||`` of the current iterate, as the paper's ratio does.
4. A tensor that first receives a gradient after the group has stepped -> timm bias-corrects
   it with the group's step count, ours with the tensor's own count (1 at its first step) ->
   timm keeps one step counter per group; ours, like ``torch.optim.Adam``, one per tensor.
5. timm ``Lars(trust_clip=True)`` with ``lr > 1`` on a tensor whose weight or gradient norm is
   0 -> timm clips the fallback ratio 1 to ``1 / lr`` (step ``g`` instead of ``lr * g``) ->
   timm applies LARC's ``min(ratio / lr, 1)`` after the fallback; ours, like apex's LARC,
   leaves such tensors unscaled.

Differences in defaults and features only (not tested): timm ``Lars`` defaults to ``lr=1.0``,
``momentum=0``, ``eps=1e-8`` and has ``dampening``; ours requires ``lr`` and defaults to
``momentum=0.9``, ``eps=1e-9`` (no dampening).  timm ``Lamb`` defaults to ``weight_decay=0.01``
and ``max_grad_norm=1.0`` and has ``grad_averaging``, ``caution`` and
``corrected_weight_decay``; ours has ``max_weight_norm`` (clamped phi) and ``exclude_1d``.
Neither timm optimizer records trust ratios in its state.  timm picks its foreach path only
for CUDA tensors (single-tensor on CPU); ours uses foreach unless ``foreach=False``.
"""

from __future__ import annotations

import math

import pytest
import torch

import optim_support
import timm_reference
from layerwise.optim import LAMB, LARS
from optim_support import make_grads, params_after

try:
    timm = timm_reference.load()
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"timm reference unavailable: {exc}", allow_module_level=True)

SHAPES = [(6, 5), (5,), (3, 2, 2), (4,), (1,)]
SCALES = [1.0, 0.3, 2.0, 0.5, 1.0]


def make_weights() -> list[torch.Tensor]:
    return optim_support.make_weights(SCALES, SHAPES)


def close(actual, expected):
    """``optim_support.close`` at a tolerance for two implementations' orders of operations."""
    optim_support.close(actual, expected, rtol=1e-11, atol=1e-14)


def far(actual, expected, rtol=1e-3):
    """At least one tensor differs by more than ``rtol`` (so the difference is not rounding)."""
    return any(
        not torch.allclose(a, e, rtol=rtol, atol=0) for a, e in zip(actual, expected, strict=True)
    )


def one_d_split(weights, decayed: dict):
    matrices = [i for i, w in enumerate(weights) if w.dim() > 1]
    vectors = [i for i, w in enumerate(weights) if w.dim() <= 1]
    return [(matrices, decayed), (vectors, {"weight_decay": 0.0})]


# ---------------------------------------------------------------------------------------------
# agreement


@pytest.mark.parametrize("timm_foreach", [True, False])
@pytest.mark.parametrize(
    "options",
    [
        dict(weight_decay=0.0),
        dict(weight_decay=0.05),
        dict(weight_decay=0.05, bias_correction=False),
        dict(weight_decay=0.05, trust_clip=True, betas=(0.8, 0.99), eps=1e-4),
    ],
    ids=["wd0", "wd", "v3", "lambc"],
)
def test_lamb_equals_timm_lamb_always_adapt_without_grad_clipping(options, timm_foreach):
    weights, steps = make_weights(), make_grads(make_weights(), 4)
    ours = params_after(lambda ps: LAMB(ps, lr=0.02, **options), weights, steps)
    theirs = params_after(
        lambda ps: timm.Lamb(
            ps, lr=0.02, always_adapt=True, max_grad_norm=None, foreach=timm_foreach, **options
        ),
        weights,
        steps,
    )
    close(ours, theirs)


@pytest.mark.parametrize("timm_foreach", [True, False])
@pytest.mark.parametrize(
    "options",
    [
        dict(momentum=0.0),
        dict(momentum=0.9, weight_decay=0.01),
        dict(momentum=0.9, weight_decay=0.01, nesterov=True),
        dict(momentum=0.5, weight_decay=0.1, trust_clip=True),
    ],
    ids=["plain", "momentum-wd", "nesterov", "larc"],
)
def test_lars_equals_timm_lars_always_adapt(options, timm_foreach):
    lr = 0.5 if not options.get("trust_clip") else 2e-3
    weights, steps = make_weights(), make_grads(make_weights(), 4)
    ours = params_after(lambda ps: LARS(ps, lr=lr, eps=1e-8, **options), weights, steps)
    theirs = params_after(
        lambda ps: timm.Lars(
            ps,
            lr=lr,
            trust_coeff=1e-3,
            eps=1e-8,
            always_adapt=True,
            foreach=timm_foreach,
            **options,
        ),
        weights,
        steps,
    )
    close(ours, theirs)


def test_exclude_1d_equals_timm_with_a_no_decay_group_for_vectors():
    weights, steps = make_weights(), make_grads(make_weights(), 4)
    decayed = {"weight_decay": 0.05}
    groups = one_d_split(weights, decayed)
    close(
        params_after(lambda ps: LAMB(ps, lr=0.02, exclude_1d=True, **decayed), weights, steps),
        params_after(lambda ps: timm.Lamb(ps, lr=0.02, max_grad_norm=None), weights, steps, groups),
    )
    close(
        params_after(
            lambda ps: LARS(ps, lr=0.5, eps=1e-8, exclude_1d=True, **decayed), weights, steps
        ),
        params_after(lambda ps: timm.Lars(ps, lr=0.5, momentum=0.9), weights, steps, groups),
    )


# ---------------------------------------------------------------------------------------------
# differences


def test_difference_1_without_weight_decay_timm_is_plain_adam_and_sgd():
    weights, steps = make_weights(), make_grads(make_weights(), 3)
    timm_lamb = params_after(
        lambda ps: timm.Lamb(ps, lr=0.02, weight_decay=0.0, max_grad_norm=None), weights, steps
    )
    adam = params_after(lambda ps: torch.optim.Adam(ps, lr=0.02, eps=1e-6), weights, steps)
    ours = params_after(lambda ps: LAMB(ps, lr=0.02), weights, steps)
    close(timm_lamb, adam)
    assert far(ours, timm_lamb)

    timm_lars = params_after(lambda ps: timm.Lars(ps, lr=0.5, momentum=0.9), weights, steps)
    sgd = params_after(lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9), weights, steps)
    ours = params_after(lambda ps: LARS(ps, lr=0.5), weights, steps)
    close(timm_lars, sgd)
    assert far(ours, timm_lars)


def test_difference_2_timm_lamb_clips_the_global_gradient_norm_by_default():
    # tensor 0 has huge gradients, the others tiny ones: after dividing by the global norm
    # the tiny ones fall below eps, which changes their Adam direction
    weights = make_weights()
    steps = make_grads(weights, 3)
    for grads in steps:
        grads[0].mul_(1e3)
        for g in grads[1:]:
            g.mul_(1e-3)
    clipped = [
        [g / max(1.0, math.sqrt(sum(float((x * x).sum()) for x in grads))) for g in grads]
        for grads in steps
    ]
    theirs = params_after(
        lambda ps: timm.Lamb(ps, lr=0.02, weight_decay=0.05, always_adapt=True), weights, steps
    )
    close(theirs, params_after(lambda ps: LAMB(ps, lr=0.02, weight_decay=0.05), weights, clipped))
    assert far(
        theirs, params_after(lambda ps: LAMB(ps, lr=0.02, weight_decay=0.05), weights, steps)
    )


def test_difference_3_timm_decoupled_decay_takes_the_norm_after_decaying():
    lr, wd = 0.1, 0.5
    weights, steps = make_weights(), make_grads(make_weights(), 1)
    ours = params_after(
        lambda ps: LAMB(ps, lr=lr, weight_decay=wd, decoupled_weight_decay=True), weights, steps
    )
    theirs = params_after(
        lambda ps: timm.Lamb(
            ps, lr=lr, weight_decay=wd, decoupled_decay=True, always_adapt=True, max_grad_norm=None
        ),
        weights,
        steps,
    )
    shrink = 1 - lr * wd
    # both apply w * shrink - lr * ratio * r; timm's ratio is shrink times ours
    close(
        [t - shrink * w for t, w in zip(theirs, weights, strict=True)],
        [shrink * (o - shrink * w) for o, w in zip(ours, weights, strict=True)],
    )
    assert far(ours, theirs)


def test_difference_4_timm_counts_steps_per_group_ours_per_tensor():
    lr, wd, (b1, b2), eps = 0.02, 0.1, (0.9, 0.999), 1e-6
    weights = make_weights()[:2]
    steps = make_grads(weights, 2)
    steps[0][1] = None  # tensor 1 first gets a gradient at the group's second step
    ours = params_after(lambda ps: LAMB(ps, lr=lr, weight_decay=wd), weights, steps)
    theirs = params_after(
        lambda ps: timm.Lamb(ps, lr=lr, weight_decay=wd, max_grad_norm=None), weights, steps
    )

    def first_step(w, g, t):  # one LAMB step from zero moments, bias-corrected as at step t
        m, v = (1 - b1) * g / (1 - b1**t), (1 - b2) * g * g / (1 - b2**t)
        r = m / (v.sqrt() + eps) + wd * w
        return w - lr * (w.norm() / r.norm()) * r

    w, g = weights[1], steps[1][1]
    close([ours[1], theirs[1]], [first_step(w, g, 1), first_step(w, g, 2)])
    assert far([ours[1]], [theirs[1]])


def test_difference_5_timm_larc_clips_the_zero_norm_fallback():
    lr = 2.0
    w = [torch.zeros(4, dtype=torch.float64), make_weights()[0]]
    g = make_grads(w, 1)
    ours = params_after(lambda ps: LARS(ps, lr=lr, momentum=0.0, eps=1e-8, trust_clip=True), w, g)
    theirs = params_after(lambda ps: timm.Lars(ps, lr=lr, trust_clip=True, always_adapt=True), w, g)
    close([ours[0], theirs[0]], [-lr * g[0][0], -g[0][0]])
    close(ours[1:], theirs[1:])
