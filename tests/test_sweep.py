"""Sweeps: grid expansion, skipping stored runs, CI's no-training switch, any executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from layerwise.harness import sweep
from layerwise.harness.store import Store


def test_grid_expands_every_combination(tiny_config):
    configs = sweep.grid(tiny_config, lr=[1e-3, 1e-2], seed=range(3))
    assert len(configs) == 6
    assert {(c.lr, c.seed) for c in configs} == {(lr, s) for lr in (1e-3, 1e-2) for s in range(3)}
    nested = sweep.grid(tiny_config, **{"model_options.width": [16, 64]})
    assert [c.model_options["width"] for c in nested] == [16, 64]


def test_empty_axis_is_named(tiny_config):
    with pytest.raises(ValueError, match="'seed' is empty"):
        sweep.grid(tiny_config, seed=[])


def test_bad_value_in_grid_fails_before_any_run(tiny_config):
    with pytest.raises(ValueError, match="lr"):
        sweep.grid(tiny_config, lr=[1e-3, -1.0])


def _counting(monkeypatch):
    calls = []
    real = sweep._train_one

    def counted(config):
        calls.append(config.key())
        return real(config)

    monkeypatch.setattr(sweep, "_train_one", counted)
    return calls


def test_stored_runs_are_not_recomputed(tmp_path, tiny_config, monkeypatch):
    calls = _counting(monkeypatch)
    store = Store(tmp_path)
    configs = sweep.grid(tiny_config, seed=[0, 1])
    first = sweep.run_configs(configs, "s", store=store, jobs=1, progress=False)
    assert len(calls) == 2
    more = sweep.grid(tiny_config, seed=[0, 1, 2])
    again = sweep.run_configs(more, "s", store=store, jobs=1, progress=False)
    assert len(calls) == 3 and calls[-1] == more[2].key()
    assert again[:2] == first


def test_require_stored_lists_missing_runs_without_training(tmp_path, tiny_config, monkeypatch):
    calls = _counting(monkeypatch)
    monkeypatch.setenv("LAYERWISE_REQUIRE_STORED", "1")
    configs = sweep.grid(tiny_config, seed=[0, 1])
    with pytest.raises(sweep.MissingRunsError) as err:
        sweep.run_configs(configs, "s", store=Store(tmp_path), jobs=1, progress=False)
    assert calls == []
    assert all(c.key() in str(err.value) for c in configs)


def test_process_pool_gives_the_same_records_as_inline(tmp_path, tiny_config):
    configs = sweep.grid(tiny_config, seed=[0, 1])
    inline = sweep.run_configs(configs, "a", store=Store(tmp_path), jobs=1, progress=False)
    pooled = sweep.run_configs(configs, "b", store=Store(tmp_path), jobs=2, progress=False)
    assert [r["final"] for r in pooled] == [r["final"] for r in inline]


def test_dask_executor_runs_a_sweep(tmp_path, tiny_config):
    distributed = pytest.importorskip("dask.distributed")
    configs = sweep.grid(tiny_config, seed=[0, 1])
    inline = sweep.run_configs(configs, "a", store=Store(tmp_path), jobs=1, progress=False)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        distributed.Client(cluster) as client,
    ):
        records = sweep.run_configs(
            configs, "dask", store=Store(tmp_path), executor=client.get_executor(), progress=False
        )
    assert [r["final"] for r in records] == [r["final"] for r in inline]
    assert len(list((tmp_path / "dask").glob("*.json"))) == 2


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_sweep(tmp_path):
    """SIGKILL the process running a two-worker sweep: no worker outlives it."""
    script = textwrap.dedent(
        f"""
        from layerwise.harness.config import RunConfig
        from layerwise.harness.store import Store
        from layerwise.harness.sweep import grid, run_configs
        base = RunConfig(dataset="mnist1d", model="mlp", lr=1e-3, batch_size=64, steps=10**6,
                         eval_every=10**6, model_options={{"width": 32}})
        run_configs(grid(base, seed=range(4)), "kill", store=Store({str(tmp_path)!r}),
                    jobs=2, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = [  # spawned workers that have imported torch, so they are (about to be) training
                pid
                for pid in _children(proc.pid)
                if "libtorch" in Path(f"/proc/{pid}/maps").read_text()
            ]
        assert len(workers) == 2, "the sweep should have started two workers"
        time.sleep(1.0)
        descendants = _children(proc.pid)  # the workers and multiprocessing's resource tracker
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in descendants):
        time.sleep(0.1)
    survivors = [pid for pid in descendants if _alive(pid)]
    for pid in survivors:  # leave no process behind, then fail
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"processes {survivors} outlived the killed sweep"
