"""LAMB against the formula of You et al. (2020, v5 / TF-Addons) written out in the test.

Every expected value is computed in float64 from the formula (``optim_support.reference_lamb``:
norms as Python floats, one tensor at a time) or by ``torch.optim.Adam`` / ``AdamW``; none is
copied from a run of ``LAMB``.  What LAMB shares with LARS (agreement with the formula in every
configuration, foreach vs single-tensor, resuming, param groups, argument checks) is tested in
``test_optim_common.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from layerwise.optim import LAMB
from optim_support import LAMB_SCALES, close, make_grads, make_weights, norm, reference_lamb, run


def lamb_weights() -> list[torch.Tensor]:
    return make_weights(LAMB_SCALES)


def test_clip_and_clamp_cases_exercise_both_regimes():
    # trust_clip and max_weight_norm in LAMB_CONFIGS (test_optim_common.py) are only tested if
    # they bind on some tensors only
    weights, steps = lamb_weights(), make_grads(lamb_weights(), 1)
    _, ratios = reference_lamb(weights, steps, lr=0.01, betas=(0.8, 0.99), eps=1e-3)
    assert min(ratios) < 1 < max(ratios)
    assert min(map(norm, weights)) < 2.0 < max(map(norm, weights))


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("foreach", [True, False])
def test_step_length_is_lr_times_weight_norm_without_decay(bias_correction, foreach):
    # phi = identity and wd = 0: the update is lr * ||w|| * r / ||r||, whatever r is
    lr = 0.03
    params = [w.clone().requires_grad_() for w in lamb_weights()]
    opt = LAMB(params, lr=lr, bias_correction=bias_correction, foreach=foreach)
    for grads in make_grads(params, 4):
        before = [p.detach().clone() for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        for p, w in zip(params, before, strict=True):
            assert math.isclose(norm(p.detach() - w), lr * norm(w), rel_tol=1e-12)


@pytest.mark.parametrize("foreach", [True, False])
def test_direction_is_adams_rescaled_to_lr_times_weight_norm(foreach):
    # wd = 0: Adam's step -lr * r does not depend on the weights, so a separate torch Adam run
    # on the same gradients gives r at every step; LAMB's step is it rescaled per tensor
    lr = 0.02
    weights = lamb_weights()
    ours = [w.clone().requires_grad_() for w in weights]
    ref = [w.clone().requires_grad_() for w in weights]
    lamb = LAMB(ours, lr=lr, foreach=foreach)
    adam = torch.optim.Adam(ref, lr=lr, eps=1e-6, foreach=False)
    for grads in make_grads(weights, 4):
        before = [p.detach().clone() for p in ours]
        adam_before = [p.detach().clone() for p in ref]
        for p, q, g in zip(ours, ref, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        lamb.step()
        adam.step()
        for p, w, q, wq in zip(ours, before, ref, adam_before, strict=True):
            adam_step = q.detach() - wq
            expected = adam_step * lr * norm(w) / norm(adam_step)
            torch.testing.assert_close(p.detach() - w, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "options, reference",
    [
        (dict(), lambda ps: torch.optim.Adam(ps, lr=0.01, eps=1e-6)),
        (
            dict(weight_decay=0.1),
            lambda ps: torch.optim.AdamW(ps, lr=0.01, eps=1e-6, weight_decay=0.1),
        ),
        (
            dict(weight_decay=0.1, decoupled_weight_decay=True),
            lambda ps: torch.optim.AdamW(ps, lr=0.01, eps=1e-6, weight_decay=0.1),
        ),
    ],
    ids=["adam", "adamw-inner-decay", "adamw-decoupled"],
)
def test_ratio_capped_at_one_by_trust_clip_is_adam(options, reference):
    # weights ~100 per entry make ||w|| far above ||r|| (Adam's direction is O(1) per entry),
    # so LAMBC's min(||w|| / ||r||, 1) is exactly 1 and LAMB must take torch's Adam(W) step:
    # w - lr * (adam + wd * w) is AdamW's w * (1 - lr * wd) - lr * adam
    weights = [100 * w / w.abs().max() for w in lamb_weights()]
    steps = make_grads(weights, 5)
    ours, opt = run(lambda ps: LAMB(ps, lr=0.01, trust_clip=True, **options), weights, steps)
    theirs, _ = run(reference, weights, steps)
    assert all(float(s["trust_ratio"]) == 1.0 for s in opt.state.values())
    close(ours, theirs)


@pytest.mark.parametrize("foreach", [True, False])
def test_zero_weight_takes_the_adam_step_with_ratio_one(foreach):
    w, g = torch.zeros(2, 3, dtype=torch.float64), make_grads([torch.zeros(2, 3)], 2)[0]
    ours, opt = run(lambda ps: LAMB(ps, lr=0.01, weight_decay=0.1, foreach=foreach), [w], [g])
    adam, _ = run(lambda ps: torch.optim.Adam(ps, lr=0.01, eps=1e-6), [w], [g])
    close(ours, adam)
    assert float(next(iter(opt.state.values()))["trust_ratio"]) == 1.0


@pytest.mark.parametrize("foreach", [True, False])
def test_zero_gradient_leaves_only_the_normalised_decay(foreach):
    # m = v = 0, so r = wd * w: without decay ||r|| = 0 (ratio 1, no move); with decay the
    # ratio is ||w|| / (wd ||w||) and the step is lr * w
    w = lamb_weights()[:2]
    zero = [[torch.zeros_like(t) for t in w]]
    still, opt = run(lambda ps: LAMB(ps, lr=0.01, foreach=foreach), w, zero)
    close(still, w, rtol=0, atol=0)
    assert all(float(s["trust_ratio"]) == 1.0 for s in opt.state.values())
    decayed, _ = run(lambda ps: LAMB(ps, lr=0.01, weight_decay=0.1, foreach=foreach), w, zero)
    close(decayed, [t * (1 - 0.01) for t in w])


@pytest.mark.parametrize("foreach", [True, False])
def test_each_tensor_counts_its_own_steps(foreach):
    weights = lamb_weights()
    steps = make_grads(weights, 3)
    steps[0][1] = steps[1][1] = None  # tensor 1 first gets a gradient at the third step
    params, opt = run(
        lambda ps: LAMB(ps, lr=0.01, weight_decay=0.1, foreach=foreach), weights, steps
    )
    expected, _ = reference_lamb(weights, steps, lr=0.01, weight_decay=0.1)
    close(params, expected)
    assert [s["step"] for s in map(opt.state.get, opt.param_groups[0]["params"])] == [3, 1, 3, 3]


def test_complex_parameters_are_rejected():
    p = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.ones_like(p)
    with pytest.raises(TypeError, match="complex"):
        LAMB([p]).step()
