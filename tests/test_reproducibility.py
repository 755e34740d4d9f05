"""Rerun the two cheapest stored runs and compare their metrics with the stored ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerwise.harness import train
from layerwise.harness.config import RunConfig
from layerwise.harness.store import Store

ROOT = Path(__file__).resolve().parents[1]


def _cheapest(n: int) -> list[dict]:
    store = Store(ROOT / "results")
    records = (
        [
            r
            for study in sorted(p.name for p in store.root.iterdir() if p.is_dir())
            for r in store.records(study)
            # a fine-tuning run's wall time leaves out the pretraining it needs
            if r["status"] == "ok" and "init_from" not in r["config"]
        ]
        if store.root.is_dir()
        else []
    )
    return sorted(records, key=lambda r: r["wall_time_s"])[:n]


RECORDS = _cheapest(2)


@pytest.mark.skipif(not RECORDS, reason="the store holds no finished run")
@pytest.mark.parametrize("stored", RECORDS, ids=[r["key"] for r in RECORDS])
def test_stored_run_reproduces(stored):
    rerun = train.run(RunConfig.from_dict(stored["config"]))
    assert rerun["key"] == stored["key"] and rerun["status"] == "ok"
    # same code, seed and thread count: equal up to floating-point differences between CPUs
    for name, value in stored["final"].items():
        tolerance = 0.01 if name.endswith("acc") else 0.02 * abs(value)
        assert rerun["final"][name] == pytest.approx(value, abs=tolerance), name
