"""Weight movement measures against their formulas, computed here with numpy."""

import math

import numpy as np
import pytest
import torch

from layerwise.probes import distance_to_final, layer_rotation, relative_movement


@pytest.fixture
def checkpoints():
    torch.manual_seed(0)
    w0 = {"w": torch.randn(3, 4), "b": torch.zeros(4), "n": torch.tensor(0)}
    steps = [w0]
    for k in range(1, 4):
        steps.append(
            {
                "w": w0["w"] + k * torch.randn(3, 4),
                "b": torch.full((4,), 0.1 * k),
                "n": torch.tensor(k),
            }
        )
    return steps


def column(frame, name, value):
    rows = frame[frame["name"] == name].sort_values("step")
    return rows[value].to_numpy()


def test_distance_to_final(checkpoints):
    frame = distance_to_final(checkpoints, steps=[0, 5, 10, 20])
    assert set(frame["name"]) == {"w", "b"}  # integer entries are skipped
    assert list(frame[frame["name"] == "w"]["step"]) == [0, 5, 10, 20]
    ws = [c["w"].numpy().astype(np.float64) for c in checkpoints]
    expected = [np.linalg.norm(w - ws[-1]) / np.linalg.norm(ws[0] - ws[-1]) for w in ws]
    np.testing.assert_allclose(column(frame, "w", "distance"), expected, rtol=1e-12)
    assert column(frame, "w", "distance")[0] == pytest.approx(1.0)
    assert column(frame, "w", "distance")[-1] == 0.0


def test_relative_movement(checkpoints):
    frame = relative_movement(checkpoints)
    ws = [c["w"].numpy().astype(np.float64) for c in checkpoints]
    expected = [np.linalg.norm(w - ws[0]) / np.linalg.norm(ws[0]) for w in ws]
    np.testing.assert_allclose(column(frame, "w", "movement"), expected, rtol=1e-12)
    assert all(math.isnan(v) for v in column(frame, "b", "movement"))  # zero initial norm


def test_layer_rotation(checkpoints):
    frame = layer_rotation(checkpoints)
    ws = [c["w"].numpy().astype(np.float64).ravel() for c in checkpoints]
    expected = [1 - w @ ws[0] / (np.linalg.norm(w) * np.linalg.norm(ws[0])) for w in ws]
    np.testing.assert_allclose(column(frame, "w", "rotation"), expected, rtol=1e-12, atol=1e-15)
    flipped = layer_rotation([{"w": torch.ones(2)}, {"w": -torch.ones(2)}])
    assert list(flipped["rotation"]) == pytest.approx([0.0, 2.0])


def test_step_labels_must_match():
    with pytest.raises(ValueError, match="2 steps given for 4 checkpoints"):
        distance_to_final([{"w": torch.ones(1)}] * 4, steps=[0, 1])
