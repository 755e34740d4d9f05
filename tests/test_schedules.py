"""Schedules: multipliers at chosen steps worked out by hand from each paper's formula, torch's
OneCycleLR as an independent reference, option validation, per-group ratios kept."""

from __future__ import annotations

import math

import pytest
import torch

from layerwise import schedules
from layerwise.schedules import SCHEDULES, build, multiplier


def values(name: str, total: int, steps, **options) -> list[float]:
    m = multiplier(name, total, **options)
    return [m(s) for s in steps]


def test_constant_with_linear_warmup():
    assert values("constant", 10, [0, 1, 3, 4, 9], warmup=4) == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert values("constant", 10, [0, 9]) == [1.0, 1.0]


def test_cosine():
    assert values("cosine", 10, [0, 5, 10, 12]) == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert values("cosine", 10, [5], final=0.1) == pytest.approx([0.55])
    # warmup 2: steps 0, 1 rise; the decay covers the remaining 8 steps
    assert values("cosine", 10, [0, 1, 2, 6], warmup=2) == pytest.approx([0.5, 1.0, 1.0, 0.5])


def test_polynomial_is_lars_power_two():
    # (1 - t/T)^2
    assert values("polynomial", 10, [0, 5, 7, 10]) == pytest.approx([1.0, 0.25, 0.09, 0.0])
    assert values("polynomial", 10, [5], power=1.0) == pytest.approx([0.5])
    assert values("polynomial", 12, [0, 1, 7], warmup=2) == pytest.approx([0.5, 1.0, 0.25])


def test_noam_is_normalised_to_peak_one():
    # min(t^-0.5, t w^-1.5) / w^-0.5 with t = step + 1, w = 4
    assert values("noam", 100, [0, 1, 3, 15, 99], warmup=4) == pytest.approx(
        [0.25, 0.5, 1.0, 0.5, 0.2]
    )
    d, w = 512, 4000
    raw = [d**-0.5 * min(t**-0.5, t * w**-1.5) for t in range(1, 20001)]
    peak = max(raw)
    assert values("noam", 1, range(20000)) == pytest.approx([r / peak for r in raw])


def test_slanted_triangular_is_ulmfit_eq3():
    # T = 100, cut_frac 0.1 -> cut = 10; ratio 32
    got = values("slanted_triangular", 100, [0, 5, 10, 55, 100, 120])
    assert got == pytest.approx([1 / 32, 16.5 / 32, 1.0, 16.5 / 32, 1 / 32, 1 / 32])
    got = values("slanted_triangular", 20, [0, 10, 20], cut_frac=0.5, ratio=2)
    assert got == pytest.approx([0.5, 1.0, 0.5])


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_matches_torch(anneal):
    total = 20
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1.0, total_steps=total, anneal_strategy=anneal, cycle_momentum=False
    )
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        reference.step()
    assert values("one_cycle", total, range(total), anneal=anneal) == pytest.approx(expected)


def test_one_cycle_end_points():
    m = multiplier("one_cycle", 100, pct_start=0.25, div_factor=10, final_div_factor=100)
    assert m(0) == pytest.approx(0.1)
    assert m(24) == pytest.approx(1.0)  # the rise ends at pct_start * T - 1
    assert m(99) == pytest.approx(1 / 1000)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_peaks_at_one(name):
    peak = max(values(name, 200, range(200), **({"warmup": 20} if name == "noam" else {})))
    assert peak == pytest.approx(1.0)


def test_build_keeps_per_group_ratios():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    scheduler = build("cosine", opt, 10, warmup=2)
    for _ in range(5):
        opt.step()
        scheduler.step()
    # step 5: warmup over, decay progress (5 - 2) / 8
    factor = (1 + math.cos(math.pi * 3 / 8)) / 2
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * factor, 0.01 * factor])


def test_unknown_schedule_and_option_are_named():
    with pytest.raises(ValueError, match=r"'triangle'.*'cosine'.*'slanted_triangular'"):
        multiplier("triangle", 10)
    with pytest.raises(ValueError, match=r"'decay'.*valid: cut_frac, ratio"):
        multiplier("slanted_triangular", 10, decay=0.5)
    with pytest.raises(ValueError, match=r"'power'.*valid: final, warmup"):
        multiplier("cosine", 10, power=2)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cosine", {"warmup": -1}, "warmup must be an integer >= 0, got -1"),
        ("cosine", {"final": 2.0}, r"final must be a number in \[0, 1\], got 2\.0"),
        ("polynomial", {"power": 0}, "power must be a positive number, got 0"),
        ("noam", {"warmup": 0}, "warmup must be an integer >= 1, got 0"),
        ("slanted_triangular", {"cut_frac": 1.5}, r"cut_frac must be .*got 1\.5"),
        ("slanted_triangular", {"ratio": 0.5}, r"ratio must be a number >= 1, got 0\.5"),
        ("slanted_triangular", {"cut_frac": 0.01}, r"total_steps \* cut_frac must be >= 1"),
        ("one_cycle", {"anneal": "step"}, r"'step'; valid: 'cos', 'linear'"),
        ("one_cycle", {"div_factor": -1}, "div_factor must be a positive number, got -1"),
        ("one_cycle", {"pct_start": 0.05}, r"got 0\.05 \* 10"),
    ],
)
def test_bad_option_values_are_named(name, options, message):
    with pytest.raises(ValueError, match=message):
        multiplier(name, 10, **options)


def test_total_steps_is_checked():
    with pytest.raises(ValueError, match="total_steps must be an integer >= 1, got 0"):
        schedules.multiplier("cosine", 0)
