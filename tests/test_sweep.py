"""Sweeps: grid expansion, skipping stored runs, CI's no-training switch, any executor."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from layerwise.harness import sweep, train
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


def test_run_stored_is_pending_only_while_a_forbidden_run_is_missing(
    tmp_path, tiny_config, monkeypatch
):
    calls = _counting(monkeypatch)
    store = Store(tmp_path)
    configs = sweep.grid(tiny_config, seed=[0, 1])
    stored = sweep.run_configs(configs[:1], "s", store=store, jobs=1, progress=False)
    monkeypatch.setenv("LAYERWISE_REQUIRE_STORED", "1")
    assert sweep.run_stored(configs, "s", store=store, jobs=1, progress=False) is None
    assert sweep.run_stored(configs[:1], "s", store=store, jobs=1, progress=False) == stored
    assert len(calls) == 1  # the pending call trained nothing


@pytest.mark.slow  # starts worker processes
def test_process_pool_gives_the_same_records_as_inline(tmp_path, tiny_config):
    configs = sweep.grid(tiny_config, seed=[0, 1])
    inline = sweep.run_configs(configs, "a", store=Store(tmp_path), jobs=1, progress=False)
    pooled = sweep.run_configs(configs, "b", store=Store(tmp_path), jobs=2, progress=False)
    assert [r["final"] for r in pooled] == [r["final"] for r in inline]


@pytest.mark.slow  # starts a dask cluster
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


# --------------------------------------------------------------------------------------------
# sweeps sharing a store


def _claim_as_another_sweep(store, study, config, **owner):
    path = store.claim_path(study, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"pid": os.getppid(), "host": socket.gethostname(), "time": time.time()}
    path.write_text(json.dumps({**fields, "token": "other", **owner}))
    return path


def test_run_claimed_by_a_live_sweep_is_waited_for_not_trained(
    tmp_path, tiny_config, monkeypatch, capsys
):
    calls = _counting(monkeypatch)
    monkeypatch.setattr(sweep, "CLAIM_POLL_S", 0.05)
    store = Store(tmp_path)
    configs = sweep.grid(tiny_config, seed=[0, 1])
    claim = _claim_as_another_sweep(store, "s", configs[1])
    theirs = train.run(configs[1])

    def other_sweep_finishes():
        time.sleep(0.5)
        store.put("s", theirs)
        claim.unlink()

    other = threading.Thread(target=other_sweep_finishes)
    other.start()
    records = sweep.run_configs(configs, "s", store=store, jobs=1, progress=False)
    other.join()
    assert calls == [configs[0].key()]  # the claimed run was not trained here
    assert records[1] == theirs
    assert f"waiting for 1 run(s) that another sweep is training (run {configs[1].key()}" in (
        capsys.readouterr().err
    )


def test_run_of_a_dead_sweep_is_trained(tmp_path, tiny_config, monkeypatch):
    calls = _counting(monkeypatch)
    store = Store(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim = _claim_as_another_sweep(store, "s", tiny_config, pid=dead.pid)
    records = sweep.run_configs([tiny_config], "s", store=store, jobs=1, progress=False)
    assert calls == [tiny_config.key()] and records[0]["key"] == tiny_config.key()
    assert not claim.exists()


def test_run_dropped_by_a_failed_sweep_is_trained(tmp_path, tiny_config, monkeypatch):
    """The other sweep's run fails: it removes its claim without a record; this sweep, which was
    waiting, trains the run itself."""
    calls = _counting(monkeypatch)
    monkeypatch.setattr(sweep, "CLAIM_POLL_S", 0.05)
    store = Store(tmp_path)
    claim = _claim_as_another_sweep(store, "s", tiny_config)
    threading.Timer(0.3, claim.unlink).start()
    sweep.run_configs([tiny_config], "s", store=store, jobs=1, progress=False)
    assert calls == [tiny_config.key()]


def test_claims_are_released_when_a_run_fails(tmp_path, tiny_config, monkeypatch):
    def failing(config):
        raise RuntimeError("boom")

    monkeypatch.setattr(sweep, "_train_one", failing)
    configs = sweep.grid(tiny_config, seed=[0, 1])
    with pytest.raises(RuntimeError, match="boom"):
        sweep.run_configs(configs, "s", store=Store(tmp_path), jobs=1, progress=False)
    assert not list(tmp_path.glob("s/*.claim"))
    assert not list(tmp_path.glob("s/*.json"))


@pytest.mark.slow
def test_two_sweeps_on_one_store_train_each_run_once(tmp_path):
    """Two processes sweep overlapping grids on one store at the same time: every run is
    trained by exactly one of them, and each gets every record it asked for."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from layerwise.harness import sweep, train
        from layerwise.harness.config import RunConfig
        from layerwise.harness.store import Store
        trained = []
        real = sweep._train_one
        def logged(config):
            trained.append(config.key())
            return real(config)
        sweep._train_one = logged
        sweep.CLAIM_POLL_S = 0.1
        base = RunConfig(dataset="mnist1d", model="mlp", lr=1e-3, batch_size=64, steps=60,
                         eval_every=60, model_options={{"width": 32}})
        seeds = range(int(sys.argv[1]), int(sys.argv[2]))
        records = sweep.run_configs(sweep.grid(base, seed=seeds), "both",
                                    store=Store({str(tmp_path)!r}), jobs=1, progress=False)
        print(json.dumps({{"trained": trained, "records": [r["key"] for r in records]}}))
        """
    )
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-c", script, *seeds], stdout=subprocess.PIPE, env=os.environ.copy()
        )
        for seeds in (("0", "8"), ("2", "10"))
    ]
    outputs = [json.loads(proc.communicate(timeout=300)[0]) for proc in sweeps]
    assert all(proc.returncode == 0 for proc in sweeps)
    trained = outputs[0]["trained"] + outputs[1]["trained"]
    assert len(trained) == len(set(trained)) == 10  # seeds 0..9, each trained once
    assert len(outputs[0]["records"]) == len(outputs[1]["records"]) == 8
    assert not list(tmp_path.glob("both/*.claim"))


def test_a_run_another_study_holds_is_copied_not_retrained(tmp_path, tiny_config, monkeypatch):
    store = Store(tmp_path)
    [first] = sweep.run_configs([tiny_config], "a", store=store, jobs=1, progress=False)

    def refuse(config):
        raise AssertionError(f"trained {config.key()} again")

    monkeypatch.setattr(sweep, "_train_one", refuse)
    [again] = sweep.run_configs([tiny_config], "b", store=store, jobs=1, progress=False)
    assert again == first
    assert store.get("b", tiny_config) == first  # study b's folder now holds it too
