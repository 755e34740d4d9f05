"""LARS against Algorithm 1 of You, Gitman & Ginsburg (2017) written out in the test.

Every expected value is computed in float64 from the formula (``optim_support.reference_lars``:
norms as Python floats, one tensor at a time) or by ``torch.optim.SGD``; none is copied from a
run of ``LARS``.  What LARS shares with LAMB (agreement with Algorithm 1 in every configuration,
foreach vs single-tensor, resuming, param groups, argument checks) is tested in
``test_optim_common.py``.
"""

from __future__ import annotations

import pytest
import torch

from layerwise.optim import LARS
from optim_support import (
    LARS_CONFIGS,
    LARS_SCALES,
    close,
    make_grads,
    make_weights,
    reference_lars,
    run,
)


def lars_weights() -> list[torch.Tensor]:
    return make_weights(LARS_SCALES)


def test_trust_clip_cases_exercise_both_regimes():
    # the LARC configs in LARS_CONFIGS (test_optim_common.py) are only informative if some
    # tensors clip and others do not
    weights, steps = lars_weights(), make_grads(lars_weights(), 1)
    for config in (c for c in LARS_CONFIGS if c.get("trust_clip")):
        unclipped = dict(config, trust_clip=False)
        _, rates = reference_lars(weights, steps, **unclipped)
        adapted = [
            r / config["lr"]
            for w, r in zip(weights, rates, strict=True)
            if not (config.get("exclude_1d") and w.dim() <= 1)
        ]
        assert min(adapted) < 1 < max(adapted)


def test_first_step_is_the_local_rate_times_the_decayed_gradient():
    w, g = lars_weights()[0], make_grads(lars_weights(), 1)[0][0]
    lr, beta, eta = 0.3, 0.02, 1e-3
    (new,), _ = run(
        lambda ps: LARS(ps, lr=lr, momentum=0.9, weight_decay=beta, trust_coefficient=eta),
        [w],
        [[g]],
    )
    rate = eta * w.norm() / (g.norm() + beta * w.norm() + 1e-9)
    torch.testing.assert_close(new, w - lr * rate * (g + beta * w), rtol=1e-13, atol=0)


@pytest.mark.parametrize("foreach", [True, False])
def test_zero_weight_or_zero_gradient_gives_ratio_one(foreach):
    lr, beta = 0.5, 0.1
    w = [
        torch.zeros(5, dtype=torch.float64),
        torch.linspace(-1, 1, 6, dtype=torch.float64).view(2, 3),
    ]
    g = [torch.linspace(1, 2, 5, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)]
    params, opt = run(
        lambda ps: LARS(ps, lr=lr, momentum=0.0, weight_decay=beta, foreach=foreach), w, [g]
    )
    assert [float(opt.state[p]["trust_ratio"]) for p in opt.param_groups[0]["params"]] == [1.0, 1.0]
    close(params, [-lr * g[0], w[1] - lr * beta * w[1]])


@pytest.mark.parametrize("nesterov", [False, True])
def test_ratio_forced_to_one_by_larc_clipping_is_sgd(nesterov):
    # with eta large, eta*||w||/(||g|| + beta*||w||) >= lr for every tensor, so LARC's
    # min(rate / lr, 1) is exactly 1 and LARS must take torch's SGD step
    lr, beta, eta = 0.05, 1e-3, 1e3
    weights, steps = lars_weights(), make_grads(lars_weights(), 4)
    _, rates = reference_lars(weights, steps[:1], lr=lr, weight_decay=beta, trust_coefficient=eta)
    assert min(rates) / lr > 1
    ours, opt = run(
        lambda ps: LARS(
            ps,
            lr=lr,
            momentum=0.9,
            weight_decay=beta,
            trust_coefficient=eta,
            trust_clip=True,
            nesterov=nesterov,
        ),
        weights,
        steps,
    )
    sgd, _ = run(
        lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=beta, nesterov=nesterov),
        weights,
        steps,
    )
    assert all(float(s["trust_ratio"]) == 1.0 for s in opt.state.values())
    close(ours, sgd)
