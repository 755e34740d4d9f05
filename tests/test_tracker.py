"""ConvergenceTracker: checkpoints (periodic and log-spaced), measures checked against hand
computations, frames, settling times, re-randomisation, and the run integration
(``probe_every``, ``probe_points``) that must leave old keys alone."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from layerwise.harness import train
from layerwise.harness.config import RunConfig
from layerwise.harness.store import Store
from layerwise.probes import (
    ConvergenceTracker,
    convergence_frames,
    log_checkpoints,
    settling_times,
)

# The key of the conftest ``tiny_config`` computed with the code as it was before the probe fields
# were added to RunConfig; it must never change.
TINY_CONFIG_KEY = "07bf4981ee090baec353"
RESULTS = Path(__file__).resolve().parents[1] / "results"


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(frozen: str | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 48), nn.Tanh(), nn.Linear(48, 3), nn.Tanh(), nn.Linear(3, 2))
    if frozen is not None:
        for p in model.get_submodule(frozen).parameters():
            p.requires_grad_(False)
    return model


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 5, generator=g), torch.randn(64, 2, generator=g)


def neg_mse(model: nn.Module) -> float:
    x, y = data()
    with torch.no_grad():
        return -nn.functional.mse_loss(model(x), y).item()


def weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}


def train_tracked(model, steps, every, evaluate=None, **options):
    """SGD on a fixed regression batch; returns the record, the model and every step's weights."""
    x, y = data()
    tracker = ConvergenceTracker(model, x[:16], every, evaluate, **options)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.2)
    saved = {0: weights(model)}
    tracker.observe(0)
    for step in range(1, steps + 1):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tracker.observe(step)
        saved[step] = weights(model)
    return tracker.to_record(steps), model, saved


def outputs(w: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
    """The three Linear outputs of ``make_model`` by hand."""
    z0 = x @ w["0.weight"].T + w["0.bias"]
    z2 = np.tanh(z0) @ w["2.weight"].T + w["2.bias"]
    z4 = np.tanh(z2) @ w["4.weight"].T + w["4.bias"]
    return {"0": z0, "2": z2, "4": z4}


def cka(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(0), b - b.mean(0)
    return np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))


# --------------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.parametrize(("steps", "expected"), [(30, [0, 10, 20, 30]), (25, [0, 10, 20, 25])])
def test_checkpoints_at_every_step_multiple_and_the_end(steps, expected):
    record, _, _ = train_tracked(make_model(), steps, every=10)
    assert record["step"] == expected
    assert all(len(v["cka"]) == len(expected) for v in record["layers"].values())
    assert all(len(v["distance"]) == len(expected) for v in record["params"].values())


@pytest.mark.parametrize(
    ("steps", "expected"), [(20, [0, 4, 8, 12, 16, 20]), (19, [0, 4, 8, 12, 16, 19])]
)
def test_too_many_checkpoints_are_thinned_to_a_coarser_grid(steps, expected):
    record, _, _ = train_tracked(make_model(), steps, every=1, max_checkpoints=8)
    assert record["step"] == expected and record["stride"] == 4 and record["every"] == 1


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 5), nn.Linear(5, 5)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def test_depths_are_per_layer_not_per_block():
    """Convergence is compared layer by layer, so the tracker asks layer_table for
    granularity="layer" although rules count blocks by default: a and b of a block differ."""
    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block(), nn.Linear(5, 2))
    tracker = ConvergenceTracker(model, torch.randn(8, 5), every=1)
    assert tracker.layer_depth == {"0.a": 0, "0.b": 1, "1.a": 2, "1.b": 3, "2": 4}


def test_a_constant_representation_is_recorded_as_none_without_a_warning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight.zero_()  # the last layer's output is its bias for every example
    x, _ = data()
    tracker = ConvergenceTracker(model, x[:8], every=1)
    tracker.observe(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = tracker.to_record(1)
    assert record["layers"]["2"]["cka"] == [None, None]
    assert record["layers"]["0"]["cka"][-1] == pytest.approx(1.0)


def test_record_is_strict_json_with_none_for_undefined():
    record, _, _ = train_tracked(make_model(frozen="2"), 12, every=4, evaluate=neg_mse)
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text) == record
    assert record["params"]["2.weight"]["distance"] == [None] * 4  # 0 / 0 for a frozen tensor


# --------------------------------------------------------------------------------------------
# the measures, against hand computations


def test_cka_is_one_at_the_end_and_matches_the_formula():
    record, _, saved = train_tracked(make_model(), 20, every=5)
    x = data()[0][:16].double().numpy()
    final = outputs(saved[20], x)
    for layer in ("0", "2", "4"):  # layer 0 (48 features > 16 examples) is stored compacted
        series = record["layers"][layer]["cka"]
        assert series[-1] == pytest.approx(1.0, abs=1e-12)
        for i, step in enumerate(record["step"]):
            assert series[i] == pytest.approx(
                cka(outputs(saved[step], x)[layer], final[layer]), abs=1e-5
            )
    assert record["examples"] == 16


def test_distance_movement_rotation_match_the_definitions():
    record, _, saved = train_tracked(make_model(), 20, every=5)
    for name, info in record["params"].items():
        w0, wT = saved[0][name], saved[20][name]
        assert info["distance"][0] == 1.0 and info["distance"][-1] == 0.0
        for i, step in enumerate(record["step"]):
            w = saved[step][name]
            expected = np.linalg.norm(w - wT) / np.linalg.norm(w0 - wT)
            assert info["distance"][i] == pytest.approx(expected, rel=1e-6)
            cos = (w * w0).sum() / (np.linalg.norm(w) * np.linalg.norm(w0))
            assert info["rotation"][i] == pytest.approx(1 - cos, abs=1e-6)
        assert info["movement"][-1] == pytest.approx(
            np.linalg.norm(wT - w0) / np.linalg.norm(w0), rel=1e-6
        )
        assert info["movement"][-1] > 0


def test_a_frozen_layer_does_not_move():
    record, _, _ = train_tracked(make_model(frozen="2"), 12, every=4, evaluate=neg_mse)
    frozen = [record["params"][n] for n in ("2.weight", "2.bias")]
    assert all(info["movement"] == [0.0] * 4 for info in frozen)
    assert all(info["depth"] is None for info in frozen)  # layer_table ranks trainable tensors
    assert record["params"]["4.weight"]["depth"] == 1  # ... so the head is depth 1
    assert record["params"]["0.weight"]["movement"][-1] > 0
    reinit = record["layers"]["2"]["reinit"]
    assert reinit == [reinit[-1]] * 4  # resetting an unchanged layer changes nothing


def test_reinit_resets_one_layer_to_its_checkpoint_value():
    record, model, saved = train_tracked(make_model(), 12, every=4, evaluate=neg_mse)
    assert record["metric"] == "metric"
    after = weights(model)
    assert all(np.array_equal(after[n], saved[12][n]) for n in after)  # model restored
    baseline = neg_mse(model)
    for layer in ("0", "2", "4"):
        series = record["layers"][layer]["reinit"]
        assert series[-1] == pytest.approx(baseline, rel=1e-6)
        reset = copy.deepcopy(model)
        with torch.no_grad():
            for kind in ("weight", "bias"):
                reset.get_submodule(layer).get_parameter(kind).copy_(
                    torch.from_numpy(saved[4][f"{layer}.{kind}"])
                )
        assert series[1] == pytest.approx(neg_mse(reset), rel=1e-6)  # checkpoint step 4


# --------------------------------------------------------------------------------------------
# frames and the bottom-up helper


def test_frames_are_tidy_and_follow_the_record():
    record, _, _ = train_tracked(make_model(), 12, every=4, evaluate=neg_mse)
    frames = convergence_frames({"key": "k", "convergence": record})
    assert frames.keys() == convergence_frames(record).keys()
    assert list(frames["cka"].columns) == [
        "step",
        "layer",
        "depth",
        "order",
        "cka",
        "cka_normalised",
    ]
    assert len(frames["cka"]) == 3 * 4 and len(frames["reinit"]) == 3 * 4
    assert len(frames["distance"]) == len(frames["rotation"]) == 6 * 4
    assert list(frames["movement"].columns) == ["name", "layer", "depth", "movement"]
    movement = frames["movement"].set_index("name")["movement"]
    assert movement["0.weight"] == record["params"]["0.weight"]["movement"][-1]
    assert frames["cka"].groupby("layer")["depth"].first().to_dict() == {"0": 0, "2": 1, "4": 2}
    assert list(frames["reinit"].columns) == ["layer", "depth", "checkpoint", "metric"]
    with pytest.raises(ValueError, match="convergence"):
        convergence_frames({"key": "k", "config": {}})


def curve_frame(curves: dict[str, list[float]], steps=(0, 1, 3, 10, 30)) -> pd.DataFrame:
    rows = [
        (step, unit, depth, value)
        for depth, (unit, values) in enumerate(curves.items())
        for step, value in zip(steps, values, strict=True)
    ]
    return pd.DataFrame(rows, columns=["step", "layer", "depth", "v"])


def test_settling_time_is_where_a_curve_stays_past_the_threshold():
    frame = curve_frame(
        {
            "steady": [0.0, 0.5, 0.95, 0.97, 1.0],  # crosses at 3 and stays: 3
            "dips": [0.0, 0.95, 0.5, 0.92, 1.0],  # first crossing 1, falls back: 10
            "late": [0.0, 0.1, 0.2, 0.3, 0.9],  # reaches 0.9 (>=) only at the end: 30
            "never": [0.0, 0.1, 0.2, 0.3, 0.8],  # misses at the end: never
            "hole": [0.0, 0.95, math.nan, 0.95, 1.0],  # undefined after a hit: 10
        }
    )
    times = settling_times(frame, "v", 0.9, unit="layer")
    assert times["unit"].tolist() == ["steady", "dips", "late", "never", "hole"]
    assert times["depth"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(times["step"], [3, 10, 30, np.nan, 10])


def test_settling_time_below_a_threshold_for_distances():
    frame = curve_frame({"w": [1.0, 0.5, 0.09, 0.1, 0.0], "u": [1.0, 0.05, 0.02, 0.0, 0.0]})
    times = settling_times(frame, "v", 0.1, unit="layer", below=True)
    np.testing.assert_array_equal(times["step"], [30, 1])  # 0.1 is not below 0.1
    with pytest.raises(ValueError, match="'name'"):
        settling_times(frame, "v", 0.1, unit="name")


def test_log_checkpoints_are_log_spaced_distinct_and_keep_both_ends():
    steps = log_checkpoints(1000, 20)
    assert len(steps) == 20 and steps[0] == 0 and steps[-1] == 1000
    assert steps == sorted(set(steps))
    inner = np.log(steps[1:])
    gaps = np.diff(inner)
    # evenly spaced in log(step) where rounding allows: the late gaps equal log(1000)/k
    assert gaps[-5:] == pytest.approx(np.full(5, gaps[-1]), rel=0.05)
    assert np.mean(np.array(steps) <= 100) > 0.5  # dense early
    assert log_checkpoints(5, 20) == [0, 1, 2, 3, 4, 5]
    assert log_checkpoints(30, 2) == [0, 30]
    with pytest.raises(ValueError, match="points"):
        log_checkpoints(30, 1)


def test_tracker_keeps_checkpoints_at_the_given_steps_and_redraws_seeded():
    model = make_model()
    x, y = data()
    tracker = ConvergenceTracker(
        model, x, None, neg_mse, at_steps=[0, 2, 5], redraw=True, redraw_seed=3
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(9):
        tracker.observe(step)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    record = tracker.to_record(9)
    assert record["step"] == [0, 2, 5, 9] and record["reinit_step"] == [0, 2, 5, 9]
    for n, p in model.named_parameters():  # every reset was undone
        assert torch.equal(p, before[n])
    # layers are redrawn one after another from one stream seeded with 3, each alone
    torch.manual_seed(3)
    expected = {}
    for name in ("0", "2", "4"):
        probe = copy.deepcopy(model)
        probe.get_submodule(name).reset_parameters()
        expected[name] = neg_mse(probe)
    got = {name: record["layers"][name]["redraw"] for name in ("0", "2", "4")}
    assert got == pytest.approx(expected)
    assert got["2"] != pytest.approx(neg_mse(model))  # a redraw changes the model
    frames = convergence_frames(record)
    assert list(frames["redraw"].columns) == ["layer", "depth", "metric"]
    assert frames["redraw"]["layer"].tolist() == ["0", "2", "4"]
    with pytest.raises(ValueError, match="exactly one"):
        ConvergenceTracker(model, x, 2, at_steps=[0, 2])
    with pytest.raises(ValueError, match="step 0"):
        ConvergenceTracker(model, x, None, at_steps=[2, 5])


# --------------------------------------------------------------------------------------------
# RunConfig and train.run


def test_config_without_probing_keeps_its_key(tiny_config):
    assert tiny_config.key() == TINY_CONFIG_KEY
    assert "probe" not in tiny_config.canonical_json()
    probed = tiny_config.replace(probe_every=10)
    assert probed.key() != TINY_CONFIG_KEY and probed.to_dict()["probe_every"] == 10
    assert RunConfig.from_dict(probed.to_dict()) == probed
    assert tiny_config.replace(probe_examples=64).to_dict()["probe_examples"] == 64


def test_config_without_transfer_keeps_its_key(tiny_config):
    spelled_out = tiny_config.replace(init_from=None, reinit=("head",), unfreeze_every=None)
    assert spelled_out.key() == TINY_CONFIG_KEY == train.run(tiny_config)["key"]
    assert not {"init_from", "reinit", "unfreeze_every"} & set(tiny_config.to_dict())
    assert tiny_config.replace(unfreeze_every=5).key() != TINY_CONFIG_KEY
    fine_tune = tiny_config.replace(init_from=tiny_config, reinit=())
    assert fine_tune.key() != tiny_config.replace(init_from=tiny_config).key()


@pytest.mark.skipif(not RESULTS.is_dir(), reason="no committed results/ store")
def test_committed_records_keep_their_keys():
    paths = sorted(RESULTS.glob("*/*.json"))
    for path in paths:
        record = json.loads(path.read_text())
        assert RunConfig.from_dict(record["config"]).key() == record["key"] == path.stem


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"probe_every": 0}, "probe_every"),
        ({"probe_every": 2.5}, "probe_every"),
        ({"probe_examples": 0}, "probe_examples"),
    ],
)
def test_bad_probe_settings_fail_naming_them(tiny_config, change, named):
    with pytest.raises(ValueError, match=named):
        tiny_config.replace(**change)


def test_run_records_convergence_only_when_asked(tiny_config, tmp_path):
    plain = train.run(tiny_config)
    record = train.run(tiny_config.replace(probe_every=10, probe_examples=64))
    assert "convergence" not in plain
    json.dumps(record, allow_nan=False)
    conv = record["convergence"]
    assert conv["step"] == [0, 10, 20, 30] and conv["examples"] == 64
    assert conv["metric"] == "val_acc"
    assert list(conv["layers"]) == ["body.0", "body.2", "head"]
    assert [conv["layers"][m]["depth"] for m in conv["layers"]] == [0, 1, 2]
    assert all(v["reinit"][-1] == record["final"]["val_acc"] for v in conv["layers"].values())
    assert record["curves"] == plain["curves"]  # probing does not change training
    assert record["final"] == plain["final"]
    store = Store(tmp_path)
    store.put("probe", record)
    assert store.get("probe", tiny_config.replace(probe_every=10, probe_examples=64)) == record


def test_run_with_log_spaced_checkpoints(tiny_config):
    plain = train.run(tiny_config)
    config = tiny_config.replace(probe_points=8, probe_examples=64)
    assert "probe_points" not in tiny_config.to_dict() and config.to_dict()["probe_points"] == 8
    record = train.run(config)
    conv = record["convergence"]
    assert conv["step"] == log_checkpoints(30, 8) == conv["reinit_step"]
    assert all("redraw" in info for info in conv["layers"].values())
    # a fresh draw is not the initial weights: its error differs from the reset to step 0
    assert any(info["redraw"] != info["reinit"][0] for info in conv["layers"].values())
    assert record["curves"] == plain["curves"] and record["final"] == plain["final"]
    json.dumps(record, allow_nan=False)
    with pytest.raises(ValueError, match="probe_every"):
        tiny_config.replace(probe_points=8, probe_every=5)
    with pytest.raises(ValueError, match="probe_points"):
        tiny_config.replace(probe_points=1)


def test_a_diverged_run_still_gives_a_strict_json_record(tiny_config):
    record = train.run(tiny_config.replace(optimizer="sgd", lr=1e4, probe_every=1))
    assert record["status"] == "diverged"
    conv = record["convergence"]
    assert conv["step"][-1] == record["steps_done"]
    json.dumps(record, allow_nan=False)


def test_reinit_checkpoints_are_capped_dense_early_and_keep_both_ends():
    from layerwise.probes.tracker import _spread

    assert _spread(5, None) == [0, 1, 2, 3, 4]
    assert _spread(5, 9) == [0, 1, 2, 3, 4]
    chosen = _spread(30, 8)
    assert chosen[0] == 0 and chosen[-1] == 29 and len(chosen) <= 8
    # geometric: 1, 29^(1/6), ... rounded -- computed here independently of the tracker
    expected = sorted({0, 29, *(round(29 ** (k / 6)) for k in range(7))})
    assert chosen == expected
    gaps = [b - a for a, b in zip(chosen, chosen[1:], strict=False)]
    assert gaps == sorted(gaps)  # dense early, sparse late


def test_capped_reinit_table_is_aligned_with_its_own_steps():
    x, y = data()

    def evaluate(m):
        with torch.no_grad():
            return float(nn.functional.mse_loss(m(x), y))

    record, model, _ = train_tracked(
        make_model(), 12, every=1, evaluate=evaluate, max_checkpoints=20, reinit_points=4
    )
    steps = record["step"]
    assert len(steps) == 13 and len(record["reinit_step"]) == 4
    assert record["reinit_step"][0] == 0 and record["reinit_step"][-1] == 12
    assert set(record["reinit_step"]) <= set(steps)
    trained = evaluate(model)
    for info in record["layers"].values():
        assert len(info["reinit"]) == 4
        assert info["reinit"][-1] == pytest.approx(trained)  # reset to final = unchanged
        assert len(info["cka"] or steps) == len(steps)  # CKA keeps every checkpoint
    frame = convergence_frames(record)["reinit"]
    assert sorted(frame["checkpoint"].unique()) == record["reinit_step"]
