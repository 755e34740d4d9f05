"""Re-initialisation robustness: each reset is what the test computes by hand, and the model is
restored bit for bit afterwards."""

import copy

import pytest
import torch
from torch import nn

from layerwise.probes import reinit_robustness


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def train(model, steps, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.fixture
def trained():
    torch.manual_seed(1)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    model = make_model()
    checkpoints = [copy.deepcopy(model.state_dict())]
    for _ in range(2):
        train(model, 5, x, y)
        checkpoints.append(copy.deepcopy(model.state_dict()))

    def evaluate(m):
        m.eval()
        with torch.no_grad():
            return nn.functional.cross_entropy(m(x), y).item()

    return model, checkpoints, evaluate


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def test_checkpoint_mode_matches_manual_resets(trained):
    model, checkpoints, evaluate = trained
    before = state(model)
    frame = reinit_robustness(model, checkpoints, evaluate, steps=[0, 5, 10])
    assert list(frame.columns) == ["layer", "checkpoint", "metric"]
    assert list(frame["layer"].unique()) == ["0", "1", "3"]
    assert list(frame["checkpoint"].unique()) == [0, 5, 10]
    assert_same_state(model, before)
    for layer in ("0", "1", "3"):
        for k, step in enumerate([0, 5, 10]):
            manual = copy.deepcopy(model)
            merged = dict(before)
            merged.update({n: v for n, v in checkpoints[k].items() if n.startswith(layer + ".")})
            manual.load_state_dict(merged)  # BatchNorm running statistics included
            got = frame[(frame["layer"] == layer) & (frame["checkpoint"] == step)]["metric"]
            assert got.item() == pytest.approx(evaluate(manual), rel=1e-12)
    final = frame[frame["checkpoint"] == 10]["metric"]
    assert final.to_numpy() == pytest.approx(evaluate(model))  # last checkpoint = trained model


def test_redraw_mode_uses_reset_parameters(trained):
    model, checkpoints, evaluate = trained
    before = state(model)
    torch.manual_seed(7)
    frame = reinit_robustness(model, checkpoints, evaluate, layers=["3"], mode="redraw")
    assert_same_state(model, before)
    manual = copy.deepcopy(model)
    torch.manual_seed(7)
    manual[3].reset_parameters()
    assert frame["checkpoint"].tolist() == ["redraw"]
    assert frame["metric"].item() == pytest.approx(evaluate(manual), rel=1e-12)
    assert frame["metric"].item() != pytest.approx(evaluate(model))


def test_restores_when_evaluate_raises(trained):
    model, checkpoints, _ = trained
    before = state(model)

    def broken(_):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        reinit_robustness(model, checkpoints, broken, layers=["0"])
    assert_same_state(model, before)


def test_rejects_unknown_layers_and_modes(trained):
    model, checkpoints, evaluate = trained
    with pytest.raises(ValueError, match="'9'"):
        reinit_robustness(model, checkpoints, evaluate, layers=["9"])
    with pytest.raises(ValueError, match="mode"):
        reinit_robustness(model, checkpoints, evaluate, mode="shuffle")
