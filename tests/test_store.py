"""Run store: atomic JSON records, unreadable ones reported, tidy frames, SIGKILL safety."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT
from layerwise.harness import train
from layerwise.harness.store import CLAIM_TIMEOUT_S, Store, UnreadableRecordWarning


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


@pytest.mark.slow  # two sweeps in subprocesses
def test_sigkill_loses_no_finished_run(tmp_path):
    """Kill a sweep with SIGKILL mid-way; every record left is readable, the rerun completes
    (the run in flight restarts from step 0)."""
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
    assert len(list(folder.glob("*.claim"))) <= 1  # the run in flight, if any, stays claimed
    before = {p.name: p.stat().st_mtime_ns for p in finished}
    subprocess.run([sys.executable, "-c", script], check=True, env=os.environ.copy())
    after = sorted(folder.glob("*.json"))
    assert len(after) == 12
    assert not list(folder.glob("*.claim"))  # the dead sweep's claim was taken over, released
    for name, mtime in before.items():  # finished runs were not retrained
        assert (folder / name).stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------------------------
# claims


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _claimed_by(store, config, **owner):
    """Write a claim on ``config``'s run as another process would."""
    path = store.claim_path("study", config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"pid": os.getppid(), "host": socket.gethostname(), "time": time.time()}
    path.write_text(json.dumps({**fields, "token": "other", **owner}))
    return path


def test_claim_is_exclusive_and_released(tmp_path, tiny_config):
    store = Store(tmp_path)
    claim = store.claim("study", tiny_config)
    assert claim.path == tmp_path / "study" / f"{tiny_config.key()}.claim"
    owner = json.loads(claim.path.read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    assert store.claim("study", tiny_config) is None  # held by a live owner (this process)
    assert store.claim_owner("study", tiny_config) == owner
    assert store.claim("study", tiny_config.replace(seed=1)) is not None  # another run
    store.release(claim)
    assert not claim.path.exists() and store.claim_owner("study", tiny_config) is None
    assert store.claim("study", tiny_config) is not None


@pytest.mark.parametrize(
    ("owner", "taken_over"),
    [
        ({}, False),  # a live process on this host
        ({"pid": "dead"}, True),
        ({"host": "elsewhere"}, False),  # its pid cannot be checked from here
        ({"host": "elsewhere", "time": time.time() - 2 * CLAIM_TIMEOUT_S}, True),
        ({"time": time.time() - 2 * CLAIM_TIMEOUT_S}, True),
    ],
)
def test_abandoned_claims_are_taken_over(tmp_path, tiny_config, owner, taken_over):
    store = Store(tmp_path)
    if owner.get("pid") == "dead":
        owner = {"pid": _dead_pid()}
    path = _claimed_by(store, tiny_config, **owner)
    claim = store.claim("study", tiny_config)
    assert (claim is not None) == taken_over
    assert json.loads(path.read_text())["pid"] == (os.getpid() if taken_over else os.getppid())
    assert not path.with_name(path.name + ".lock").exists()


def test_a_claim_being_written_counts_as_live_for_a_while(tmp_path, tiny_config):
    store = Store(tmp_path)
    path = _claimed_by(store, tiny_config)
    path.write_text("")  # created, content not written yet
    assert store.claim("study", tiny_config) is None
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert store.claim("study", tiny_config) is not None


def test_release_leaves_a_successors_claim(tmp_path, tiny_config):
    store = Store(tmp_path, claim_timeout_s=0.0)  # every claim is abandoned at once
    first = store.claim("study", tiny_config)
    second = store.claim("study", tiny_config)
    assert second is not None and second.owner != first.owner
    store.release(first)  # the first owner finishes late: the successor's claim stays
    assert json.loads(second.path.read_text()) == second.owner
    store.release(second)
    assert not second.path.exists()


def test_claims_are_ignored_by_git(tmp_path, tiny_config):
    claim = Store(ROOT / "results").claim_path("01_baselines", tiny_config)
    lock = claim.with_name(claim.name + ".lock")
    for path in (claim, lock):
        relative = str(path.relative_to(ROOT))
        ignored = subprocess.run(["git", "check-ignore", "-q", relative], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{relative} is not git-ignored"
