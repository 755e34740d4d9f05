"""FreezeOut inside a run: the ``freezeout`` option of ``RunConfig`` (left out of the key when
unset, checked against the run) and ``train.run`` honouring it -- stopped depths get no
gradient and do not move, the others follow their own schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from layerwise import schedules
from layerwise.harness import comparisons, train
from layerwise.harness.config import RunConfig

TINY_CONFIG_KEY = "07bf4981ee090baec353"  # tests/test_tracker.py: the key every stored run kept


def test_config_without_freezeout_keeps_its_key(tiny_config):
    assert tiny_config.replace(freezeout=None).key() == TINY_CONFIG_KEY
    assert "freezeout" not in tiny_config.canonical_json()


def freezing(tiny_config, **options) -> RunConfig:
    config = comparisons.with_decay(tiny_config.replace(rule={"name": "uniform"}), 20)
    return config.replace(freezeout=options)


def test_freezeout_options_are_spelled_out_in_the_key(tiny_config):
    short = freezing(tiny_config, t_0=0.5)
    full = freezing(tiny_config, t_0=0.5, spacing="linear", scaled=False, anneal=True)
    assert short.key() == full.key() and short.key() != short.replace(freezeout=None).key()
    assert short.to_dict()["freezeout"] == {
        "t_0": 0.5,
        "spacing": "linear",
        "scaled": False,
        "anneal": True,
    }
    assert RunConfig.from_dict(short.to_dict()) == short
    assert freezing(tiny_config, t_0=0.5, scaled=True).key() != short.key()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"freezeout": {"t_0": 0.5, "speed": 2}}, r"'speed'"),
        ({"freezeout": {"spacing": "cubic"}}, "freezeout needs t_0"),
        ({"freezeout": {"t_0": 1.5}}, r"t_0 must be a number in \(0, 1\], got 1.5"),
        ({"freezeout": {"t_0": 0.5, "spacing": "quartic"}}, "'quartic'"),
        ({"freezeout": {"t_0": 0.5, "scaled": 1}}, "scaled must be True or False, got 1"),
        ({"freezeout": {"t_0": 0.5, "anneal": False, "scaled": True}}, "needs anneal=True"),
        ({"freezeout": {"t_0": 0.5}, "rule": None}, "freezeout needs a rule"),
        ({"freezeout": {"t_0": 0.5}, "schedule": "constant", "schedule_options": {}}, "'cosine'"),
        ({"freezeout": {"t_0": 0.01}}, r"stops the first layer at step 0.2, within the warmup"),
        ({"freezeout": {"t_0": 0.5}, "unfreeze_every": 5}, "cannot be combined"),
    ],
)
def test_bad_freezeout_settings_are_named(tiny_config, change, message):
    base = comparisons.with_decay(tiny_config.replace(rule={"name": "uniform"}), 20)
    with pytest.raises(ValueError, match=message):
        base.replace(**change)


def stop_step(t_i: float, total: int) -> int:
    """The first optimizer step (1-based) a depth stopping at ``t_i`` no longer takes."""
    return math.ceil(t_i * total - 1e-9) + 1


@pytest.fixture
def watched_steps():
    """Every optimizer step of the run: each group's depth, rate, whether its parameters had a
    gradient, and their values after the step."""
    seen = []

    def hook(optimizer, args, kwargs):
        seen.append(
            [
                {
                    "depth": g["depth"],
                    "lr": g["lr"],
                    "grad": [p.grad is not None for p in g["params"]],
                    "values": [p.detach().clone() for p in g["params"]],
                }
                for g in optimizer.param_groups
            ]
        )

    handle = register_optimizer_step_post_hook(hook)
    yield seen
    handle.remove()


def test_stopped_depths_get_no_gradient_and_do_not_move(tiny_config, watched_steps):
    total = 20
    config = freezing(tiny_config, t_0=0.5, scaled=True).replace(steps=total)
    record, model = train.train(config)
    assert record["status"] == "ok" and 0 < record["step_time_s"] < record["wall_time_s"]
    depths = sorted({g["depth"] for g in watched_steps[0]})
    assert depths == [0, 1, 2]  # the MLP: two hidden layers and the head
    stops = {0: 0.5, 1: 0.75, 2: 1.0}  # linear from t_0 = 0.5 to 1 over three depths
    for step in range(2, total + 1):  # optimizer steps, 1-based
        now, before = watched_steps[step - 1], watched_steps[step - 2]
        for group, previous in zip(now, before, strict=True):
            trains = step < stop_step(stops[group["depth"]], total)
            assert group["grad"] == [trains] * len(group["grad"]), (step, group["depth"])
            moved = [
                not torch.equal(a, b)
                for a, b in zip(group["values"], previous["values"], strict=True)
            ]
            assert any(moved) == trains, (step, group["depth"])
    # the head stops at t = 1: after the last step no depth trains
    assert not any(p.requires_grad for p in model.parameters())


def test_rates_are_freezeouts_own_cosines_with_the_runs_warmup(tiny_config, watched_steps):
    total = 20
    config = freezing(tiny_config, t_0=0.5, spacing="cubic").replace(steps=total)
    train.run(config)
    warmup = config.schedule_options["warmup"]
    stops = {d: (0.5 ** (1 / 3) + (1 - 0.5 ** (1 / 3)) * d / 2) ** 3 for d in range(3)}
    for step, groups in enumerate(watched_steps):  # the rate used by optimizer step ``step``
        for group in groups:
            t_i = stops[group["depth"]]
            if step < warmup:
                want = config.lr * (step + 1) / warmup
            else:
                p = (step - warmup) / (t_i * total - warmup)
                want = config.lr * 0.5 * (1 + math.cos(math.pi * p))
            if step < t_i * total:
                assert group["lr"] == pytest.approx(want, abs=1e-12), (step, group["depth"])


def test_freeze_training_keeps_the_runs_schedule(tiny_config, watched_steps):
    total = 20
    config = freezing(tiny_config, t_0=1 / 3, anneal=False).replace(steps=total)
    train.run(config)
    schedule = schedules.multiplier("cosine", total, **config.schedule_options)
    for step, groups in enumerate(watched_steps):
        for group in groups:
            assert group["lr"] == pytest.approx(config.lr * schedule(step), abs=1e-12), step
            stop = stop_step((group["depth"] + 1) / 3, total)
            assert all(group["grad"]) == (step + 1 < stop), (step, group["depth"])
