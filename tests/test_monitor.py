"""Monitor: recorded values equal norms computed here, only on monitored steps."""

import json
import math

import pytest
import torch
from torch import nn

from layerwise.probes import Monitor, monitor_frame


class TrustSGD(torch.optim.SGD):
    """SGD that stores a LARS-style trust ratio for every tensor with a gradient."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.state[p]["trust_ratio"] = torch.tensor(0.5 + p.numel() / 100)
        return super().step(closure)


def norm(t: torch.Tensor) -> float:
    return math.sqrt(sum(v * v for v in t.double().flatten().tolist()))


def setup(optimizer_cls=torch.optim.SGD):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Linear(3, 2))
    model[0].bias.requires_grad_(False)  # frozen, but still in the optimizer
    opt = optimizer_cls(
        [
            {"params": [model[0].weight, model[0].bias], "lr": 0.1},
            {"params": model[2].parameters(), "lr": 0.02},
        ],
        lr=1.0,
        momentum=0.9,
    )
    # model[3] is not in the optimizer at all
    return model, opt


def run(model, opt, monitor, steps):
    """Train, and compute what the monitor should record, independently."""
    torch.manual_seed(1)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    expected = {}
    for step in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
        monitor.before_step(step)
        opt.step()
        monitor.after_step(step)
        expected[step] = {
            n: {
                "w_norm": norm(before[n]),
                "g_norm": None if grads[n] is None else norm(grads[n]),
                "update_ratio": norm(p.detach() - before[n]) / norm(before[n]),
            }
            for n, p in model.named_parameters()
        }
    return expected


def test_records_norms_on_monitored_steps_only():
    model, opt = setup()
    monitor = Monitor(model, opt, every=3)
    expected = run(model, opt, monitor, steps=8)
    record = monitor.to_record()
    assert record["step"] == [0, 3, 6]
    assert list(record["params"]) == [n for n, _ in model.named_parameters()]
    for name, series in record["params"].items():
        for quantity in ("w_norm", "g_norm", "update_ratio", "lr", "trust_ratio"):
            assert len(series[quantity]) == 3
        for k, step in enumerate(record["step"]):
            for quantity in ("w_norm", "g_norm", "update_ratio"):
                want, got = expected[step][name][quantity], series[quantity][k]
                assert got == (None if want is None else pytest.approx(want, rel=1e-5, abs=1e-12))
    params = record["params"]
    assert params["0.bias"]["g_norm"] == [None] * 3  # frozen: no gradient
    assert params["0.bias"]["update_ratio"] == [0.0] * 3
    assert params["0.weight"]["lr"] == [0.1] * 3
    assert params["2.weight"]["lr"] == [0.02] * 3
    assert params["3.weight"]["lr"] == [None] * 3  # not in the optimizer
    assert params["2.weight"]["update_ratio"][0] > 0
    assert params["2.weight"]["trust_ratio"] == [None] * 3
    json.loads(json.dumps(record))


def test_effective_rate_includes_the_trust_ratio():
    model, opt = setup(TrustSGD)
    monitor = Monitor(model, opt, every=2)
    run(model, opt, monitor, steps=3)
    params = monitor.to_record()["params"]
    trust = 0.5 + 18 / 100  # 2.weight has 3 x 6 entries
    assert params["2.weight"]["trust_ratio"] == pytest.approx([trust] * 2)
    assert params["2.weight"]["lr"] == pytest.approx([0.02 * trust] * 2)
    assert params["0.bias"]["trust_ratio"] == [None] * 2
    assert params["0.bias"]["lr"] == [0.1] * 2


def test_snapshots_only_on_monitored_steps(monkeypatch):
    model, opt = setup()
    copies = []
    real_copy = torch._foreach_copy_
    monkeypatch.setattr(torch, "_foreach_copy_", lambda *a: copies.append(1) or real_copy(*a))
    monitor = Monitor(model, opt, every=4)
    run(model, opt, monitor, steps=9)
    assert len(copies) == 3  # steps 0, 4, 8


def test_after_step_needs_before_step():
    model, opt = setup()
    monitor = Monitor(model, opt, every=2)
    monitor.after_step(1)  # off step: nothing to do
    with pytest.raises(RuntimeError, match="before_step"):
        monitor.after_step(2)
    with pytest.raises(ValueError, match="every"):
        Monitor(model, opt, every=0)


def test_monitor_frame_is_tidy():
    model, opt = setup()
    monitor = Monitor(model, opt, every=5)
    run(model, opt, monitor, steps=6)
    record = monitor.to_record()
    frame = monitor_frame(record)
    assert list(frame.columns) == ["step", "name", "quantity", "value"]
    defined = sum(
        v is not None
        for series in record["params"].values()
        for values in series.values()
        for v in values
    )
    assert len(frame) == defined
    row = frame[
        (frame["step"] == 5) & (frame["name"] == "2.bias") & (frame["quantity"] == "g_norm")
    ]
    assert row["value"].item() == record["params"]["2.bias"]["g_norm"][1]
