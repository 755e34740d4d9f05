"""Tuning protocol, checked on a synthetic trainer whose validation curve is known."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from layerwise.harness import sweep, tuning
from layerwise.harness.store import Store


def _fake_trainer(peak: float, diverge_above: float = math.inf):
    """Records whose val/test accuracy is a bump in log(lr) centred on ``peak``, plus a
    seed-dependent offset, and which diverge above ``diverge_above``."""

    def fake(config):
        score = 0.9 - 0.1 * (math.log10(config.lr) - math.log10(peak)) ** 2 + 0.01 * config.seed
        diverged = config.lr > diverge_above
        final = dict.fromkeys(("val_loss", "val_acc", "test_loss", "test_acc"))
        if not diverged:
            final = {
                "val_loss": 1 - score,
                "val_acc": score,
                "test_loss": 1.1 - score,
                "test_acc": score - 0.05,
            }
        return {
            "format": 1,
            "key": config.key(),
            "config": config.to_dict(),
            "status": "diverged" if diverged else "ok",
            "diverged_at": 3 if diverged else None,
            "steps": 10,
            "steps_done": 10,
            "curves": {"step": [], "train_loss": [], "val_loss": [], "val_acc": []},
            "final": final,
            "wall_time_s": 0.0,
            "env": {},
        }

    return fake


@pytest.fixture
def tune_with(monkeypatch, tmp_path, tiny_config):
    def run(peak, grid, diverge_above=math.inf, **kwargs):
        monkeypatch.setattr(sweep, "_train_one", _fake_trainer(peak, diverge_above))
        return tuning.tune(
            {"arm": tiny_config}, grid, "t", store=Store(tmp_path), jobs=1, progress=False, **kwargs
        )

    return run


def test_log_grid():
    assert tuning.log_grid(1e-4, 1e-2, 3) == [1e-4, 1e-3, 1e-2]
    assert tuning.log_grid(1e-3, 1e-1, 5)[1] == pytest.approx(10**-2.5, rel=1e-3)


def test_interior_optimum_is_chosen_and_reported_on_fresh_seeds(tune_with):
    result = tune_with(1e-2, [1e-3, 1e-2, 1e-1])
    s = result.summary.iloc[0]
    assert s["best_lr"] == 1e-2 and s["interior"] and s["grid_points"] == 3
    assert sorted(result.final["seed"]) == [1, 2, 3]
    tests = [0.9 + 0.01 * seed - 0.05 for seed in (1, 2, 3)]
    low, high = scipy_stats.t.interval(0.95, 2, loc=sum(tests) / 3, scale=scipy_stats.sem(tests))
    assert s["test_acc_mean"] == pytest.approx(sum(tests) / 3)
    assert (s["test_acc_ci_low"], s["test_acc_ci_high"]) == pytest.approx((low, high))


def test_edge_optimum_extends_the_grid(tune_with):
    result = tune_with(1.0, [1e-3, 1e-2, 1e-1], max_extensions=2)
    s = result.summary.iloc[0]
    assert s["grid_high"] == pytest.approx(10.0) and s["grid_points"] == 5
    assert s["best_lr"] == pytest.approx(1.0) and s["interior"]


def test_still_on_the_edge_is_reported_untuned(tune_with):
    result = tune_with(100.0, [1e-3, 1e-2, 1e-1], max_extensions=1)
    assert result.untuned_arms == ["arm"]


def test_diverged_runs_count_as_failures(tune_with):
    # the best validation point would be 1e-1 but it diverges: the tuner must not pick it
    result = tune_with(1e-1, [1e-3, 1e-2, 1e-1, 1.0], diverge_above=5e-2)
    s = result.summary.iloc[0]
    assert s["best_lr"] == 1e-2
    statuses = result.sensitivity.set_index("lr")["status"]
    assert statuses[1e-1] == "diverged" and statuses[1.0] == "diverged"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"metric": "f1"}, "'f1'"),
        ({"final_seeds": ()}, "non-empty"),
        ({"final_seeds": (0, 1)}, "fresh"),
    ],
)
def test_bad_tuning_arguments(tune_with, kwargs, named):
    with pytest.raises(ValueError, match=named):
        tune_with(1e-2, [1e-3, 1e-2, 1e-1], **kwargs)


def test_empty_arms_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least one arm"):
        tuning.tune({}, [1e-3, 1e-2, 1e-1], "t", store=Store(tmp_path))


# --------------------------------------------------------------------------------------------
# protocol v2: several tuning seeds, refinement to a <= 2x grid, a tail-mean score


def test_refinement_leaves_neighbours_at_most_2x_apart(tune_with):
    # peak at 10**-1.7 ~ 0.02: the coarse 4x grid brackets it; refinement must add midpoints
    result = tune_with(
        10**-1.7, tuning.log_grid(1e-3, 6.4e-2, 4), tune_seeds=(10, 11, 12), max_spacing=2.0
    )
    s = result.summary.iloc[0]
    assert s["spacing"] <= 2.0 * 1.001
    assert s["interior"] and s["tune_seeds"] == 3
    grid = sorted(result.sensitivity["lr"].unique())
    i = grid.index(s["best_lr"])
    assert grid[i] / grid[i - 1] <= 2.001 and grid[i + 1] / grid[i] <= 2.001
    assert abs(math.log10(s["best_lr"]) + 1.7) <= math.log10(2) / 2 + 1e-9  # nearest to peak
    tuning.check_protocol(result, min_seeds=3, max_spacing=2.0)  # passes


def test_a_rate_chosen_on_one_seed_fails_the_protocol(tune_with):
    result = tune_with(1e-2, [1e-3, 1e-2, 1e-1], max_spacing=2.0)
    with pytest.raises(tuning.ProtocolError, match="1 tuning seed"):
        tuning.check_protocol(result, min_seeds=3)


def test_a_grid_coarser_than_2x_fails_the_protocol(tune_with):
    result = tune_with(1e-2, [1e-3, 1e-2, 1e-1], tune_seeds=(10, 11, 12))
    assert result.summary.iloc[0]["spacing"] == pytest.approx(10.0)
    with pytest.raises(tuning.ProtocolError, match="10.00x apart"):
        tuning.check_protocol(result, min_seeds=3, max_spacing=2.0)


def test_rate_score_is_the_mean_over_tuning_seeds(tune_with):
    result = tune_with(1e-2, [1e-3, 1e-2, 1e-1], tune_seeds=(10, 11, 12))
    s = result.summary.iloc[0]
    # the fake score is 0.9 + 0.01 * seed at the peak: mean over seeds 10-12 is 1.01
    assert s["val_acc_best"] == pytest.approx(0.9 + 0.11)


def _record(final: float, curve: list[float], steps: list[int], status: str = "ok") -> dict:
    return {
        "status": status,
        "steps_done": 100,
        "final": {"val_acc": final},
        "curves": {"step": steps, "val_acc": curve},
    }


def test_run_score_averages_the_last_evaluations():
    # the curve's last point is the final step itself: it must not be counted twice
    record = _record(0.9, [0.5, 0.7, 0.8, 0.9], [25, 50, 75, 100])
    assert tuning.run_score(record, "val_acc", 1) == pytest.approx(0.9)
    assert tuning.run_score(record, "val_acc", 3) == pytest.approx((0.7 + 0.8 + 0.9) / 3)
    # a curve that stops before the last step: the final evaluation comes on top of it
    record = _record(0.9, [0.5, 0.7, 0.8], [25, 50, 75])
    assert tuning.run_score(record, "val_acc", 2) == pytest.approx((0.8 + 0.9) / 2)
    assert math.isnan(tuning.run_score(_record(0.9, [], [], "diverged"), "val_acc", 2))
