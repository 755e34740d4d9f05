"""What ``LAMB`` and ``LARS`` share, each test parametrised over both optimizers.

Expected values come from the formulas in ``optim_support`` (``reference_lamb``,
``reference_lars``) or from ``torch.optim.Adam`` / ``SGD``; none is copied from a run of the
optimizers.  Tests of one optimizer only are in ``test_lamb.py`` and ``test_lars.py``.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from layerwise.optim import LAMB, LARS, build
from optim_support import (
    LAMB_CONFIGS,
    LAMB_SCALES,
    LARS_CONFIGS,
    LARS_SCALES,
    close,
    config_id,
    make_grads,
    make_weights,
    recorded_ratios,
    reference_lamb,
    reference_lars,
    run,
)


@dataclass(frozen=True)
class Subject:
    """An optimizer under test, its float64 reference and the weight scales its tests use."""

    cls: type[torch.optim.Optimizer]
    reference: Callable[..., tuple[list[torch.Tensor], list[float | None]]]
    scales: list[float]

    def weights(self) -> list[torch.Tensor]:
        return make_weights(self.scales)


LAMB_ = Subject(LAMB, reference_lamb, LAMB_SCALES)
LARS_ = Subject(LARS, reference_lars, LARS_SCALES)


def cases(*rows):
    """``pytest.param`` per row ``(subject, options, ...)``, named by subject and options."""
    return [pytest.param(*row, id=f"{row[0].cls.__name__}-{config_id(row[1])}") for row in rows]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    "subject, config",
    cases(*((LAMB_, c) for c in LAMB_CONFIGS), *((LARS_, c) for c in LARS_CONFIGS)),
)
def test_matches_the_reference_over_several_steps(subject, config, foreach):
    weights, steps = subject.weights(), make_grads(subject.weights(), 3)
    params, opt = run(lambda ps: subject.cls(ps, foreach=foreach, **config), weights, steps)
    expected, ratios = subject.reference(weights, steps, **config)
    close(params, expected)
    close(recorded_ratios(opt), [torch.tensor(r, dtype=torch.float64) for r in ratios])


@pytest.mark.parametrize(
    "subject, config, late_tensor",
    # LAMB counts steps per tensor, so a tensor that first gets a gradient at the second step
    # is batched apart from the others; LARS has no step count
    cases(
        *((LAMB_, c, True) for c in LAMB_CONFIGS), *((LARS_, c, False) for c in LARS_CONFIGS[1:])
    ),
)
def test_foreach_and_single_tensor_paths_agree_in_float64(subject, config, late_tensor):
    shapes = [(7, 3), (3,), (2, 2, 3), (1,), (4,), ()]
    weights = make_weights([1.0, 0.3, 2.0, 0.0, 1.0, 0.7], shapes)  # a zero tensor among them
    steps = make_grads(weights, 5)
    for i, grads in enumerate(steps):
        grads[4] = torch.zeros_like(grads[4])  # a zero gradient as well
        if late_tensor and i == 0:
            grads[2] = None  # a tensor that starts a step late (its own step count)
    fast, _ = run(lambda ps: subject.cls(ps, foreach=True, **config), weights, steps)
    slow, _ = run(lambda ps: subject.cls(ps, foreach=False, **config), weights, steps)
    close(fast, slow, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    "subject, options, plain",
    cases(
        (
            LAMB_,
            dict(lr=0.01, weight_decay=0.1),
            lambda ps: torch.optim.Adam(ps, lr=0.01, eps=1e-6),
        ),
        (
            LARS_,
            dict(lr=0.1, weight_decay=0.05),
            lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        ),
    ),
)
def test_exclude_1d_gives_vectors_the_plain_step_and_still_adapts_matrices(
    subject, options, plain, foreach
):
    # the plain step is LAMB's Adam / LARS's SGD with momentum, without weight decay
    weights, steps = subject.weights(), make_grads(subject.weights(), 3)
    ours, opt = run(
        lambda ps: subject.cls(ps, exclude_1d=True, foreach=foreach, **options), weights, steps
    )
    theirs, _ = run(plain, weights, steps)
    for w, a, b, p in zip(weights, ours, theirs, opt.param_groups[0]["params"], strict=True):
        if w.dim() == 1:
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
            assert opt.state[p]["trust_ratio"] == 1.0
        else:
            assert not torch.allclose(a, b)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    "subject, options, ratio_below",
    cases(
        *(
            (LAMB_, dict(weight_decay=0.1, decoupled_weight_decay=d), math.inf)
            for d in (False, True)
        ),
        *((LARS_, dict(lr=0.1, weight_decay=0.01, nesterov=n), 1.0) for n in (False, True)),
    ),
)
def test_step_leaves_grad_untouched_and_records_trust_ratio(subject, options, ratio_below, foreach):
    params = [w.requires_grad_() for w in subject.weights()]
    grads = make_grads(params, 1)[0]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt = subject.cls(params, foreach=foreach, **options)
    held = [p.grad for p in params]
    opt.step()
    for p, g, h in zip(params, grads, held, strict=True):
        assert p.grad is h
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
        assert torch.is_tensor(opt.state[p]["trust_ratio"])
        assert 0 < float(opt.state[p]["trust_ratio"]) < ratio_below


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize(
    "subject, options",
    cases(
        (LAMB_, dict(lr=0.01, weight_decay=0.1, max_weight_norm=2.0)),
        (LARS_, dict(lr=0.1, weight_decay=0.01, nesterov=True)),
    ),
)
def test_resumed_optimizer_continues_identically(subject, options, foreach):
    weights, steps = subject.weights(), make_grads(subject.weights(), 6)
    params, opt = run(lambda ps: subject.cls(ps, foreach=foreach, **options), weights, steps[:3])
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [p.clone().requires_grad_() for p in params]
    resumed = subject.cls(resumed_params, foreach=foreach, **options)
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


@pytest.mark.parametrize(
    "subject, defaults, groups",
    cases(
        (
            LAMB_,
            dict(lr=0.1),
            [([0, 1], dict(lr=0.02, weight_decay=0.2)), ([2, 3], dict(lr=0.005))],
        ),
        (
            LARS_,
            dict(lr=0.01, weight_decay=0.0),
            [([0, 1], dict(lr=0.2, weight_decay=0.05)), ([2, 3], dict(lr=0.7))],
        ),
    ),
)
def test_param_groups_keep_their_own_lr_and_weight_decay(subject, defaults, groups):
    weights, steps = subject.weights(), make_grads(subject.weights(), 3)
    params, _ = run(lambda gs: subject.cls(gs, **defaults), weights, steps, groups)
    for idx, options in groups:
        expected, _ = subject.reference(
            [weights[i] for i in idx],
            [[s[i] for i in idx] for s in steps],
            lr=options["lr"],
            weight_decay=options.get("weight_decay", 0.0),
        )
        close([params[i] for i in idx], expected)


INVALID_ARGUMENTS = [  # (optimizer, arguments it requires, a bad option, how it is named)
    (LAMB, {}, dict(lr=0.0), "0.0"),
    (LAMB, {}, dict(lr=-1e-3), "-0.001"),
    (LAMB, {}, dict(betas=(1.0, 0.999)), "1.0"),
    (LAMB, {}, dict(betas=(0.9, -0.5)), "-0.5"),
    (LAMB, {}, dict(betas=(0.9,)), "(0.9,)"),
    (LAMB, {}, dict(eps=-1e-8), "-1e-08"),
    (LAMB, {}, dict(weight_decay=-0.1), "-0.1"),
    (LAMB, {}, dict(max_weight_norm=0.0), "0.0"),
    (LARS, dict(lr=0.1), dict(lr=0.0), "0.0"),
    (LARS, dict(lr=0.1), dict(lr=-0.1), "-0.1"),
    (LARS, dict(lr=0.1), dict(momentum=-0.5), "-0.5"),
    (LARS, dict(lr=0.1), dict(momentum=1.0), "1.0"),
    (LARS, dict(lr=0.1), dict(weight_decay=-1e-4), "-0.0001"),
    (LARS, dict(lr=0.1), dict(trust_coefficient=0.0), "0.0"),
    (LARS, dict(lr=0.1), dict(eps=-1e-9), "-1e-09"),
    (LARS, dict(lr=0.1), dict(momentum=0.0, nesterov=True), "momentum=0"),
]


@pytest.mark.parametrize(
    "cls, required, options, bad",
    [pytest.param(*row, id=f"{row[0].__name__}-{config_id(row[2])}") for row in INVALID_ARGUMENTS],
)
def test_invalid_arguments_raise_naming_the_value(cls, required, options, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        cls([torch.zeros(2, requires_grad=True)], **(required | options))


@pytest.mark.parametrize(
    "cls, required, group, message",
    [
        (LAMB, {}, {"weight_decay": -3}, r"LAMB weight_decay .*-3"),
        (LARS, dict(lr=0.1), {"lr": -2}, r"LARS lr .*-2"),
    ],
)
def test_invalid_value_in_a_param_group_is_rejected(cls, required, group, message):
    with pytest.raises(ValueError, match=message):
        cls([{"params": [torch.zeros(2, requires_grad=True)], **group}], **required)


@pytest.mark.parametrize(
    "name, cls, options",
    [
        ("lamb", LAMB, dict(lr=0.01, trust_clip=True)),
        ("lars", LARS, dict(lr=0.1, weight_decay=1e-4)),
    ],
)
def test_registered_in_the_optimizer_table(name, cls, options):
    opt = build(name, [torch.zeros(2, requires_grad=True)], **options)
    assert isinstance(opt, cls)
    for key, value in options.items():
        assert type(opt.defaults[key]) is type(value) and opt.defaults[key] == value
