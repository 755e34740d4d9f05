"""LAMB against the formula of You et al. (2020, v5 / TF-Addons) written out in the test.

Every expected value is computed here, in float64, from the formula (norms as Python floats,
one tensor at a time) or by ``torch.optim.Adam`` / ``AdamW``; none is copied from a run of
``LAMB``.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch

from layerwise.optim import LAMB, build

SHAPES = [(6, 5), (5,), (3, 2, 2), (4,)]
SCALES = [3.0, 0.05, 0.2, 2.0]  # weight scales: trust_clip / max_weight_norm bind on some only


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
    """LAMB per tensor (a ``None`` gradient skips the tensor): final weights and last ratios."""
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


def close(actual, expected, **tol):
    tol = tol or dict(rtol=1e-12, atol=1e-14)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tol)


def recorded_ratios(opt):
    return [
        torch.as_tensor(opt.state[p]["trust_ratio"], dtype=torch.float64)
        for p in opt.param_groups[0]["params"]
    ]


CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, weight_decay=0.1, bias_correction=False),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-3, trust_clip=True),
    dict(lr=0.01, weight_decay=0.1, max_weight_norm=2.0),
    dict(lr=0.05, weight_decay=0.3, decoupled_weight_decay=True),
    dict(lr=0.01, weight_decay=0.1, exclude_1d=True),
    dict(lr=0.05, weight_decay=0.1, exclude_1d=True, decoupled_weight_decay=True, trust_clip=True),
]
IDS = [",".join(f"{k}={v}" for k, v in c.items()) for c in CONFIGS]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_matches_the_formula_over_several_steps(config, foreach):
    weights, steps = make_weights(), make_grads(make_weights(), 3)
    params, opt = run(lambda ps: LAMB(ps, foreach=foreach, **config), weights, steps)
    expected, ratios = reference_lamb(weights, steps, **config)
    close(params, expected)
    close(recorded_ratios(opt), [torch.tensor(r, dtype=torch.float64) for r in ratios])


def test_clip_and_clamp_cases_exercise_both_regimes():
    # trust_clip and max_weight_norm are only tested above if they bind on some tensors only
    weights, steps = make_weights(), make_grads(make_weights(), 1)
    _, ratios = reference_lamb(weights, steps, lr=0.01, betas=(0.8, 0.99), eps=1e-3)
    assert min(ratios) < 1 < max(ratios)
    assert min(map(norm, weights)) < 2.0 < max(map(norm, weights))


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("foreach", [True, False])
def test_step_length_is_lr_times_weight_norm_without_decay(bias_correction, foreach):
    # phi = identity and wd = 0: the update is lr * ||w|| * r / ||r||, whatever r is
    lr = 0.03
    params = [w.clone().requires_grad_() for w in make_weights()]
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
    weights = make_weights()
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
    weights = [100 * w / w.abs().max() for w in make_weights()]
    steps = make_grads(weights, 5)
    ours, opt = run(lambda ps: LAMB(ps, lr=0.01, trust_clip=True, **options), weights, steps)
    theirs, _ = run(reference, weights, steps)
    assert all(float(s["trust_ratio"]) == 1.0 for s in opt.state.values())
    close(ours, theirs)


@pytest.mark.parametrize("foreach", [True, False])
def test_exclude_1d_gives_vectors_plain_adam_and_still_adapts_matrices(foreach):
    weights, steps = make_weights(), make_grads(make_weights(), 3)
    ours, opt = run(
        lambda ps: LAMB(ps, lr=0.01, weight_decay=0.1, exclude_1d=True, foreach=foreach),
        weights,
        steps,
    )
    adam, _ = run(lambda ps: torch.optim.Adam(ps, lr=0.01, eps=1e-6), weights, steps)
    for w, a, b, p in zip(weights, ours, adam, opt.param_groups[0]["params"], strict=True):
        if w.dim() == 1:
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
            assert opt.state[p]["trust_ratio"] == 1.0
        else:
            assert not torch.allclose(a, b)


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
    w = make_weights()[:2]
    zero = [[torch.zeros_like(t) for t in w]]
    still, opt = run(lambda ps: LAMB(ps, lr=0.01, foreach=foreach), w, zero)
    close(still, w, rtol=0, atol=0)
    assert all(float(s["trust_ratio"]) == 1.0 for s in opt.state.values())
    decayed, _ = run(lambda ps: LAMB(ps, lr=0.01, weight_decay=0.1, foreach=foreach), w, zero)
    close(decayed, [t * (1 - 0.01) for t in w])


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_foreach_and_single_tensor_paths_agree_in_float64(config):
    shapes = [(7, 3), (3,), (2, 2, 3), (1,), (4,), ()]
    weights = make_weights(shapes, [1.0, 0.3, 2.0, 0.0, 1.0, 0.7])  # a zero tensor among them
    steps = make_grads(weights, 5)
    for i, grads in enumerate(steps):
        grads[4] = torch.zeros_like(grads[4])  # a zero gradient as well
        if i == 0:
            grads[2] = None  # a tensor that starts a step late (its own step count)
    fast, _ = run(lambda ps: LAMB(ps, foreach=True, **config), weights, steps)
    slow, _ = run(lambda ps: LAMB(ps, foreach=False, **config), weights, steps)
    close(fast, slow, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("foreach", [True, False])
def test_each_tensor_counts_its_own_steps(foreach):
    weights = make_weights()
    steps = make_grads(weights, 3)
    steps[0][1] = steps[1][1] = None  # tensor 1 first gets a gradient at the third step
    params, opt = run(
        lambda ps: LAMB(ps, lr=0.01, weight_decay=0.1, foreach=foreach), weights, steps
    )
    expected, _ = reference_lamb(weights, steps, lr=0.01, weight_decay=0.1)
    close(params, expected)
    assert [s["step"] for s in map(opt.state.get, opt.param_groups[0]["params"])] == [3, 1, 3, 3]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("decoupled", [False, True])
def test_step_leaves_grad_untouched_and_records_trust_ratio(foreach, decoupled):
    params = [w.requires_grad_() for w in make_weights()]
    grads = make_grads(params, 1)[0]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt = LAMB(params, weight_decay=0.1, decoupled_weight_decay=decoupled, foreach=foreach)
    held = [p.grad for p in params]
    opt.step()
    for p, g, h in zip(params, grads, held, strict=True):
        assert p.grad is h
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
        assert torch.is_tensor(opt.state[p]["trust_ratio"])
        assert float(opt.state[p]["trust_ratio"]) > 0


@pytest.mark.parametrize("foreach", [True, False])
def test_resumed_optimizer_continues_identically(foreach):
    weights, steps = make_weights(), make_grads(make_weights(), 6)
    options = dict(lr=0.01, weight_decay=0.1, max_weight_norm=2.0, foreach=foreach)
    params, opt = run(lambda ps: LAMB(ps, **options), weights, steps[:3])
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [p.clone().requires_grad_() for p in params]
    resumed = LAMB(resumed_params, **options)
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
    groups = [dict(idx=[0, 1], lr=0.02, weight_decay=0.2), dict(idx=[2, 3], lr=0.005)]
    params = [w.clone().requires_grad_() for w in weights]
    opt = LAMB(
        [
            {"params": [params[i] for i in g["idx"]], **{k: v for k, v in g.items() if k != "idx"}}
            for g in groups
        ],
        lr=0.1,
    )
    for grads in steps:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    for g in groups:
        expected, _ = reference_lamb(
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
        (dict(lr=-1e-3), "-0.001"),
        (dict(betas=(1.0, 0.999)), "1.0"),
        (dict(betas=(0.9, -0.5)), "-0.5"),
        (dict(betas=(0.9,)), "(0.9,)"),
        (dict(eps=-1e-8), "-1e-08"),
        (dict(weight_decay=-0.1), "-0.1"),
        (dict(max_weight_norm=0.0), "0.0"),
    ],
)
def test_invalid_arguments_raise_naming_the_value(options, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        LAMB([torch.zeros(2, requires_grad=True)], **options)


def test_invalid_value_in_a_param_group_is_rejected():
    with pytest.raises(ValueError, match=r"LAMB weight_decay .*-3"):
        LAMB([{"params": [torch.zeros(2, requires_grad=True)], "weight_decay": -3}])


def test_registered_in_the_optimizer_table():
    opt = build("lamb", [torch.zeros(2, requires_grad=True)], lr=0.01, trust_clip=True)
    assert isinstance(opt, LAMB) and opt.defaults["trust_clip"] is True


def test_complex_parameters_are_rejected():
    p = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.ones_like(p)
    with pytest.raises(TypeError, match="complex"):
        LAMB([p]).step()
