"""FreezeOut: stop times and rates against the paper's formulas, real freezing (no grad, no
update), and resuming from a JSON state dict with a fresh model and optimizer."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from layerwise.freezeout import FreezeOut, freeze_times, freeze_training_t0
from layerwise.groups import Discriminative, Uniform, param_groups

X = torch.randn(8, 6)
Y = torch.randn(8, 2)


def net(seed: int = 0) -> nn.Module:
    """Four dense layers: depths 0, 1, 2, 3."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 4), nn.Linear(4, 2)
    )


def train_step(model, opt, freezeout):
    opt.zero_grad()
    nn.functional.mse_loss(model(X), Y).backward()
    opt.step()
    freezeout.step()


def test_freeze_times_linear_and_cubic():
    assert freeze_times(5, 0.5) == pytest.approx([0.5, 0.625, 0.75, 0.875, 1.0])
    # cubic: (0.8 + 0.2 i / 2)^3 -- the paper's t_0 = 0.8, "pre-cubed" to 0.512
    assert freeze_times(3, 0.512, "cubic") == pytest.approx([0.512, 0.729, 1.0])
    assert freeze_times(2, 0.25, "squared") == pytest.approx([0.25, 1.0])
    assert freeze_times(1, 0.3) == [1.0]


def expected_rate(base: float, t_i: float, t: float, scaled: bool) -> float:
    if t >= t_i:
        return 0.0
    start = base / t_i if scaled else base
    return 0.5 * start * (1 + math.cos(math.pi * t / t_i))


@pytest.mark.parametrize("scaled", [True, False])
def test_rates_follow_per_layer_cosine_annealing(scaled):
    model = net()
    opt = torch.optim.SGD(param_groups(model, 0.1, Uniform(), X))
    fo = FreezeOut(opt, total_steps=12, t_0=0.5, scaled=scaled)
    stops = [0.5, 0.5 + 0.5 / 3, 0.5 + 1 / 3, 1.0]  # linear from t_0 to 1, four depths
    assert fo.stop_times == pytest.approx(stops)
    for step in range(13):
        t = step / 12
        want = [expected_rate(0.1, t_i, t, scaled) for t_i in stops]
        assert fo.get_last_lr() == pytest.approx(want, abs=1e-12), step
        if step < 12:
            train_step(model, opt, fo)


def test_rule_ratios_are_the_starting_points():
    model = net()
    opt = torch.optim.SGD(param_groups(model, 0.8, Discriminative(2.0), X))
    fo = FreezeOut(opt, total_steps=10, t_0=0.5, spacing="linear", scaled=True)
    stops = [0.5, 0.5 + 0.5 / 3, 0.5 + 1 / 3, 1.0]
    assert fo.get_last_lr() == pytest.approx([0.1 / stops[0], 0.2 / stops[1], 0.4 / stops[2], 0.8])


def test_frozen_layers_get_no_grad_and_do_not_move():
    model = net()
    groups = param_groups(model, 0.05, Uniform(), X, weight_decay=0.1)  # 2 groups per depth
    opt = torch.optim.SGD(groups, momentum=0.9)
    fo = FreezeOut(opt, total_steps=10, t_0=0.5)
    for _ in range(5):  # step 5 -> t = 0.5: depth 0 stops; momentum buffers are non-zero
        train_step(model, opt, fo)
    first, second = model[0], model[2]
    assert fo.frozen == [True, True, False, False, False, False, False, False]
    assert not first.weight.requires_grad and not first.bias.requires_grad
    assert second.weight.requires_grad
    before = copy.deepcopy(model.state_dict())

    opt.zero_grad()
    nn.functional.mse_loss(model(X), Y).backward()
    assert first.weight.grad is None and first.bias.grad is None
    assert second.weight.grad is not None
    opt.step()
    after = model.state_dict()
    assert torch.equal(after["0.weight"], before["0.weight"])
    assert torch.equal(after["0.bias"], before["0.bias"])
    assert not torch.equal(after["2.weight"], before["2.weight"])


def test_resume_from_state_dict_gives_the_same_rates_frozen_set_and_weights():
    def setup(seed):
        model = net(seed)
        opt = torch.optim.SGD(param_groups(model, 0.1, Uniform(), X), momentum=0.9)
        return model, opt

    model, opt = setup(0)
    fo = FreezeOut(opt, total_steps=12, t_0=0.4, spacing="cubic")
    for _ in range(7):
        train_step(model, opt, fo)
    saved = {
        "model": copy.deepcopy(model.state_dict()),
        "opt": copy.deepcopy(opt.state_dict()),
        "freezeout": json.loads(json.dumps(fo.state_dict())),
    }

    resumed, opt2 = setup(1)  # different initial weights, all trainable
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    fo2 = FreezeOut(opt2, total_steps=12, t_0=0.4, spacing="cubic")
    fo2.load_state_dict(saved["freezeout"])

    assert fo2.get_last_lr() == fo.get_last_lr()
    assert fo2.frozen == fo.frozen
    assert any(fo.frozen) and not all(fo.frozen)
    assert [p.requires_grad for p in resumed.parameters()] == [
        p.requires_grad for p in model.parameters()
    ]
    for _ in range(4):
        train_step(model, opt, fo)
        train_step(resumed, opt2, fo2)
        assert fo2.get_last_lr() == fo.get_last_lr()
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_optimizer_without_depths_is_refused():
    opt = torch.optim.SGD(net().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="param group 0 has no integer 'depth'"):
        FreezeOut(opt, total_steps=10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"t_0": 0}, r"t_0 must be a number in \(0, 1\], got 0"),
        ({"t_0": 1.5}, r"got 1\.5"),
        ({"spacing": "quartic"}, r"'quartic'; valid: 'cubic', 'linear', 'squared'"),
        ({"total_steps": 0}, "total_steps must be an integer >= 1, got 0"),
    ],
)
def test_bad_settings_are_named(options, message):
    opt = torch.optim.SGD(param_groups(net(), 0.1, Uniform(), X))
    with pytest.raises(ValueError, match=message):
        FreezeOut(opt, **({"total_steps": 10} | options))


def test_state_for_other_groups_is_refused():
    fo = FreezeOut(torch.optim.SGD(param_groups(net(), 0.1, Uniform(), X)), total_steps=10)
    other = torch.optim.SGD(param_groups(nn.Linear(6, 2), 0.1, Uniform(), X))
    with pytest.raises(ValueError, match=r"depths \[0, 1, 2, 3\].*\[0\]"):
        FreezeOut(other, total_steps=10).load_state_dict(fo.state_dict())


@pytest.mark.parametrize("scaled", [True, False])
def test_warmup_then_each_layer_runs_the_runs_own_schedule_compressed_to_its_stop(scaled):
    from layerwise import schedules

    total, warmup = 40, 4
    model = net()
    opt = torch.optim.SGD(param_groups(model, 0.1, Uniform(), X))
    fo = FreezeOut(opt, total_steps=total, t_0=0.5, scaled=scaled, warmup=warmup)
    stops = [0.5, 0.5 + 0.5 / 3, 0.5 + 1 / 3, 1.0]
    last = schedules.multiplier("cosine", total, warmup=warmup, final=0.0)
    for step in range(total):
        rates = fo.get_last_lr()
        # the top layer (t_i = 1) follows the run's warmup-then-cosine schedule exactly
        assert rates[-1] == pytest.approx(0.1 * last(step), abs=1e-12), step
        for rate, t_i in zip(rates, stops, strict=True):
            start = 0.1 / t_i if scaled else 0.1
            if step < warmup:
                want = start * (step + 1) / warmup
            elif step >= t_i * total:
                want = 0.0
            else:
                want = (
                    start * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (t_i * total - warmup)))
                )
            assert rate == pytest.approx(want, abs=1e-12), (step, t_i)
        train_step(model, opt, fo)


def test_freeze_training_only_freezes_and_leaves_the_rates_to_the_run():
    model = net()
    opt = torch.optim.SGD(param_groups(model, 0.1, Uniform(), X))
    cosine = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 20)
    # four depths: Raghu et al.'s freeze training stops depth i at (i + 1) / 4
    fo = FreezeOut(opt, 20, t_0=freeze_training_t0(4), scaled=False, anneal=False)
    assert fo.stop_times == pytest.approx([0.25, 0.5, 0.75, 1.0])
    for step in range(1, 20):
        opt.zero_grad()
        nn.functional.mse_loss(model(X), Y).backward()
        opt.step()
        cosine.step()
        fo.step()
        assert fo.get_last_lr() == pytest.approx([0.1 * (1 - step / 20)] * 4), step
        assert fo.frozen == [step / 20 >= t for t in (0.25, 0.5, 0.75, 1.0)]
    assert [p.requires_grad for p in model.parameters()] == [False] * 6 + [True] * 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"anneal": False}, r"scaled must be False and warmup 0 \(got scaled=True, warmup=0\)"),
        ({"warmup": 5, "t_0": 0.5}, r"first layer stops at step 5 .* warmup of 5 steps"),
        ({"warmup": -1}, "warmup must be an integer >= 0, got -1"),
    ],
)
def test_bad_warmup_or_anneal_settings_are_named(options, message):
    opt = torch.optim.SGD(param_groups(net(), 0.1, Uniform(), X))
    with pytest.raises(ValueError, match=message):
        FreezeOut(opt, total_steps=10, **options)
