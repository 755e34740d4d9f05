"""Shared test set-up: data beside the checkout, a headless plotting backend, tiny configs, and
the ``slow`` mark on notebook executions and reruns of stored runs (``make test-fast`` leaves
out every slow test)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
if "LAYERWISE_DATA" not in os.environ and (SHARED_DATA / "tinyshakespeare.txt").is_file():
    os.environ["LAYERWISE_DATA"] = str(SHARED_DATA)
os.environ.setdefault("MPLBACKEND", "Agg")


# Modules whose every test is slow (reruns of stored runs).  Notebook executions (the
# ``notebook`` mark) are slow too; slow tests elsewhere carry @pytest.mark.slow themselves,
# except these, measured at over 3 s each on two cores:
SLOW_MODULES = {"test_reproducibility"}
SLOW_TESTS = {"test_hf_models.py::test_optimizers_train_gpt2_with_per_block_rates"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of ``SLOW_MODULES``, ``SLOW_TESTS`` and every ``notebook`` test ``slow``."""
    for item in items:
        module = getattr(item, "module", None)
        test = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        if (
            item.get_closest_marker("notebook")
            or (module and module.__name__ in SLOW_MODULES)
            or test in SLOW_TESTS
        ):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def compare_row():
    """A factory of one row of ``comparisons.compare``'s table (an inconclusive accuracy
    comparison, tuned, one seed never reaching the target), with the given fields changed."""

    def row(**changes):
        base = {
            "group": "adamw",
            "testbed": "t",
            "arm": "xi=2.6",
            "metric": "test_acc",
            "best_lr": 0.004,
            "baseline_mean": 0.8,
            "arm_mean": 0.81,
            "effect": 0.01,
            "ci_low": -0.01,
            "ci_high": 0.03,
            "ci_level": 0.95,
            "mde": 0.02,
            "sesoi": 0.02,
            "outcome": "inconclusive",
            "tuned": True,
            "time_ratio": 0.8,
            "time_ratio_low": 0.6,
            "time_ratio_high": 1.1,
            "time_never": 1,
        }
        return {**base, **changes}

    return row


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
