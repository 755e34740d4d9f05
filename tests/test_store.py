"""Run store: atomic JSON records, unreadable ones reported, tidy frames, SIGKILL safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from layerwise.harness import train
from layerwise.harness.store import Store, UnreadableRecordWarning


@pytest.fixture
def record(tiny_config):
    return train.run(tiny_config)


def test_put_get_round_trip(tmp_path, tiny_config, record):
    store = Store(tmp_path)
    path = store.put("study", record)
    assert path == tmp_path / "study" / f"{tiny_config.key()}.json"
    assert store.get("study", tiny_config) == json.loads(path.read_text())
    assert store.missing("study", [tiny_config, tiny_config.replace(seed=5)]) == [
        tiny_config.replace(seed=5)
    ]
    assert not list((tmp_path / "study").glob("*.tmp"))  # no temporary file left behind


def test_unreadable_record_is_reported_and_treated_as_missing(tmp_path, tiny_config, record):
    store = Store(tmp_path)
    path = store.put("study", record)
    path.write_text(path.read_text()[:100])  # truncated, as if written by a crashed process
    with pytest.warns(UnreadableRecordWarning, match=str(path)):
        assert store.get("study", tiny_config) is None
    with pytest.warns(UnreadableRecordWarning):
        assert store.frame("study").empty


def test_record_with_wrong_key_is_refused(tmp_path, record):
    bad = dict(record, key="0" * 20)
    with pytest.raises(ValueError, match="key"):
        Store(tmp_path).put("study", bad)


def test_frame_is_tidy(tmp_path, tiny_config, record):
    store = Store(tmp_path)
    store.put("study", record)
    frame = store.frame("study")
    row = frame.iloc[0]
    assert row["model"] == "mlp" and row["model.width"] == 32 and row["seed"] == 0
    assert row["val_acc"] == record["final"]["val_acc"] and row["status"] == "ok"
    curves = store.curves("study")
    assert curves["step"].tolist() == [10, 20, 30]


def test_sigkill_loses_no_finished_run(tmp_path):
    """Kill a sweep with SIGKILL mid-way; every record left is readable, the rerun completes."""
    script = textwrap.dedent(
        f"""
        from layerwise.harness.config import RunConfig
        from layerwise.harness.store import Store
        from layerwise.harness.sweep import grid, run_configs
        base = RunConfig(dataset="mnist1d", model="mlp", lr=1e-3, batch_size=64, steps=150,
                         eval_every=50, model_options={{"width": 32}})
        run_configs(grid(base, seed=range(12)), "kill", store=Store({str(tmp_path)!r}),
                    jobs=1, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
    folder = tmp_path / "kill"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(folder.glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(folder.glob("*.json"))
    assert 2 <= len(finished) < 12, "the kill should land mid-sweep"
    for path in finished:
        json.loads(path.read_text())  # every record on disk is complete
    before = {p.name: p.stat().st_mtime_ns for p in finished}
    subprocess.run([sys.executable, "-c", script], check=True, env=os.environ.copy())
    after = sorted(folder.glob("*.json"))
    assert len(after) == 12
    for name, mtime in before.items():  # finished runs were not retrained
        assert (folder / name).stat().st_mtime_ns == mtime
