"""LARS against Algorithm 1 of You, Gitman & Ginsburg (2017) written out in the test.

Every expected value is computed here, in float64, from the formula (norms as Python floats,
one tensor at a time) or by ``torch.optim.SGD``; none is copied from a run of ``LARS``.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch

from layerwise.optim import LARS, build

SHAPES = [(6, 5), (5,), (3, 2, 2), (4,)]
SCALES = [10.0, 0.1, 3.0, 0.5]  # weight scales: LARC clips some tensors and not others


def make_weights(shapes=SHAPES, scales=SCALES, seed=0) -> list[torch.Tensor]:
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


def run(make_optimizer, weights, grad_steps):
    """Step a fresh optimizer over copies of ``weights``; return (params, optimizer)."""
    params = [w.clone().requires_grad_() for w in weights]
    opt = make_optimizer(params)
    for grads in grad_steps:
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.clone()
        opt.step()
    return [p.detach() for p in params], opt


def norm(t: torch.Tensor) -> float:
    return math.sqrt(float((t * t).sum()))


def reference_lars(
    weights,
    grad_steps,
    *,
    lr,
    momentum=0.9,
    weight_decay=0.0,
    eta=1e-3,
    eps=1e-9,
    nesterov=False,
    trust_clip=False,
    exclude_1d=False,
):
    """Algorithm 1 (torch momentum convention): returns final weights and last local rates."""
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


def close(actual, expected, **tol):
    tol = tol or dict(rtol=1e-12, atol=1e-14)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tol)


CONFIGS = [
    dict(lr=0.5, momentum=0.0),
    dict(lr=0.5, momentum=0.9),
    dict(lr=0.5, momentum=0.9, weight_decay=0.01),
    dict(lr=0.5, momentum=0.9, weight_decay=0.01, nesterov=True),
    dict(lr=2e-3, momentum=0.5, weight_decay=0.1, trust_clip=True),
    dict(lr=0.5, momentum=0.9, weight_decay=0.01, exclude_1d=True),
    dict(lr=1e-2, momentum=0.0, weight_decay=0.01, trust_clip=True, exclude_1d=True, eta=2e-3),
]


def lars_options(config):
    options = dict(config)
    options["trust_coefficient"] = options.pop("eta", 1e-3)
    return options


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
)
def test_matches_algorithm_1_over_several_steps(config, foreach):
    weights, steps = make_weights(), make_grads(make_weights(), 3)
    params, opt = run(lambda ps: LARS(ps, foreach=foreach, **lars_options(config)), weights, steps)
    expected, rates = reference_lars(weights, steps, **config)
    close(params, expected)
    close(
        [
            torch.as_tensor(opt.state[p]["trust_ratio"], dtype=torch.float64)
            for p in opt.param_groups[0]["params"]
        ],
        [torch.tensor(r, dtype=torch.float64) for r in rates],
    )


def test_trust_clip_cases_exercise_both_regimes():
    # the LARC configs above are only informative if some tensors clip and others do not
    weights, steps = make_weights(), make_grads(make_weights(), 1)
    for config in (c for c in CONFIGS if c.get("trust_clip")):
        unclipped = dict(config, trust_clip=False)
        _, rates = reference_lars(weights, steps, **unclipped)
        adapted = [
            r / config["lr"]
            for w, r in zip(weights, rates, strict=True)
            if not (config.get("exclude_1d") and w.dim() <= 1)
        ]
        assert min(adapted) < 1 < max(adapted)


def test_first_step_is_the_local_rate_times_the_decayed_gradient():
    w, g = make_weights()[0], make_grads(make_weights(), 1)[0][0]
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
    weights, steps = make_weights(), make_grads(make_weights(), 4)
    _, rates = reference_lars(weights, steps[:1], lr=lr, weight_decay=beta, eta=eta)
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


@pytest.mark.parametrize("foreach", [True, False])
def test_exclude_1d_gives_vectors_plain_sgd_and_still_adapts_matrices(foreach):
    weights, steps = make_weights(), make_grads(make_weights(), 3)
    ours, opt = run(
        lambda ps: LARS(ps, lr=0.1, weight_decay=0.05, exclude_1d=True, foreach=foreach),
        weights,
        steps,
    )
    sgd, _ = run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), weights, steps)
    for w, a, b, p in zip(weights, ours, sgd, opt.param_groups[0]["params"], strict=True):
        if w.dim() == 1:
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
            assert opt.state[p]["trust_ratio"] == 1.0
        else:
            assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    "config", CONFIGS[1:], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
)
def test_foreach_and_single_tensor_paths_agree_in_float64(config):
    shapes = [(7, 3), (3,), (2, 2, 3), (1,), (4,), ()]
    weights = make_weights(shapes, [1.0, 0.3, 2.0, 0.0, 1.0, 0.7])  # a zero tensor among them
    steps = make_grads(weights, 5)
    for grads in steps:
        grads[4] = torch.zeros_like(grads[4])  # a zero gradient as well
    fast, _ = run(lambda ps: LARS(ps, foreach=True, **lars_options(config)), weights, steps)
    slow, _ = run(lambda ps: LARS(ps, foreach=False, **lars_options(config)), weights, steps)
    close(fast, slow, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("nesterov", [False, True])
def test_step_leaves_grad_untouched_and_records_trust_ratio(foreach, nesterov):
    params = [w.requires_grad_() for w in make_weights()]
    grads = make_grads(params, 1)[0]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt = LARS(params, lr=0.1, weight_decay=0.01, nesterov=nesterov, foreach=foreach)
    held = [p.grad for p in params]
    opt.step()
    for p, g, h in zip(params, grads, held, strict=True):
        assert p.grad is h
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
        assert torch.is_tensor(opt.state[p]["trust_ratio"])
        assert 0 < float(opt.state[p]["trust_ratio"]) < 1


@pytest.mark.parametrize("foreach", [True, False])
def test_resumed_optimizer_continues_identically(foreach):
    weights, steps = make_weights(), make_grads(make_weights(), 6)
    options = dict(lr=0.1, weight_decay=0.01, nesterov=True, foreach=foreach)
    params, opt = run(lambda ps: LARS(ps, **options), weights, steps[:3])
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [p.clone().requires_grad_() for p in params]
    resumed = LARS(resumed_params, **options)
    resumed.load_state_dict(saved)
    for params_, opt_ in ((opt.param_groups[0]["params"], opt), (resumed_params, resumed)):
        for grads in steps[3:]:
            for p, g in zip(params_, grads, strict=True):
                p.grad = g.clone()
            opt_.step()
    close(
        [p.detach() for p in resumed_params],
        [p.detach() for p in opt.param_groups[0]["params"]],
        rtol=0,
        atol=0,
    )


def test_param_groups_keep_their_own_lr_and_weight_decay():
    weights, steps = make_weights(), make_grads(make_weights(), 3)
    groups = [dict(idx=[0, 1], lr=0.2, weight_decay=0.05), dict(idx=[2, 3], lr=0.7)]
    params = [w.clone().requires_grad_() for w in weights]
    opt = LARS(
        [
            {"params": [params[i] for i in g["idx"]], **{k: v for k, v in g.items() if k != "idx"}}
            for g in groups
        ],
        lr=0.01,
        weight_decay=0.0,
    )
    for grads in steps:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    for g in groups:
        expected, _ = reference_lars(
            [weights[i] for i in g["idx"]],
            [[s[i] for i in g["idx"]] for s in steps],
            lr=g["lr"],
            weight_decay=g.get("weight_decay", 0.0),
        )
        close([params[i].detach() for i in g["idx"]], expected)


@pytest.mark.parametrize(
    "options, bad",
    [
        (dict(lr=0.0), "0.0"),
        (dict(lr=-0.1), "-0.1"),
        (dict(momentum=-0.5), "-0.5"),
        (dict(momentum=1.0), "1.0"),
        (dict(weight_decay=-1e-4), "-0.0001"),
        (dict(trust_coefficient=0.0), "0.0"),
        (dict(eps=-1e-9), "-1e-09"),
        (dict(momentum=0.0, nesterov=True), "momentum=0"),
    ],
)
def test_invalid_arguments_raise_naming_the_value(options, bad):
    kwargs = dict(lr=0.1) | options
    with pytest.raises(ValueError, match=re.escape(bad)):
        LARS([torch.zeros(2, requires_grad=True)], **kwargs)


def test_invalid_value_in_a_param_group_is_rejected():
    with pytest.raises(ValueError, match=r"LARS lr .*-2"):
        LARS([{"params": [torch.zeros(2, requires_grad=True)], "lr": -2}], lr=0.1)


def test_registered_in_the_optimizer_table():
    opt = build("lars", [torch.zeros(2, requires_grad=True)], lr=0.1, weight_decay=1e-4)
    assert isinstance(opt, LARS) and opt.defaults["weight_decay"] == 1e-4
