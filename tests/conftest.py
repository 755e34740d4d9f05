"""Shared test set-up: data beside the checkout, a headless plotting backend, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
if "LAYERWISE_DATA" not in os.environ and (SHARED_DATA / "tinyshakespeare.txt").is_file():
    os.environ["LAYERWISE_DATA"] = str(SHARED_DATA)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def training_allowed(monkeypatch):
    """CI sets LAYERWISE_REQUIRE_STORED for the notebook checks; unit tests train tiny models
    (a test of the switch sets it again itself)."""
    monkeypatch.delenv("LAYERWISE_REQUIRE_STORED", raising=False)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (and the machine is shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config():
    """A run that trains in well under a second (MNIST-1D MLP, 30 steps)."""
    from layerwise.harness.config import RunConfig

    return RunConfig(
        dataset="mnist1d",
        model="mlp",
        lr=3e-3,
        batch_size=64,
        steps=30,
        eval_every=10,
        model_options={"width": 32},
    )


def has_shakespeare() -> bool:
    data_dir = os.environ.get("LAYERWISE_DATA")
    return bool(data_dir) and (Path(data_dir) / "tinyshakespeare.txt").is_file()


def has_fashion() -> bool:
    from layerwise.harness import data

    try:
        data.load("fashion_mnist", download=False)
    except data.DataUnavailableError:
        return False
    return True
