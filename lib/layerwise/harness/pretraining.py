"""Pretraining runs whose final weights start fine-tuning runs (``RunConfig.init_from``).

The weights of a pretraining run are trained once with the harness's loop (``train.train``) and
cached on disk by the run's key, beside the run's record, so every fine-tuning run of a sweep
starts from the same tensors.  Training holds a lock file (``filelock``) next to the weights:
sweep workers that need the same pretrained model while it trains wait for it instead of
training it twice.  This module imports ``train``, never the other way round: a fine-tuning run
receives its starting weights as ``train.run(config, initial_state=initial_state(config))``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from filelock import FileLock

from . import train
from .config import RunConfig
from .data import _cache_dir

__all__ = ["initial_state", "pretrain", "pretrained_state", "weights_path"]


def weights_path(config: RunConfig) -> Path:
    """Where the final weights of ``config``'s run are cached:
    ``$LAYERWISE_CACHE/weights/<key>.pt`` (else pooch's cache folder for ``layerwise``)."""
    return _cache_dir() / "weights" / f"{config.key()}.pt"


def _record_path(config: RunConfig) -> Path:
    return weights_path(config).with_suffix(".json")


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def pretrain(config: RunConfig) -> dict:
    """The record of ``config``'s pretraining run (its curves and final validation loss),
    training the run -- and caching its final weights and record beside each other
    (:func:`weights_path`) -- unless both are cached already.  One process trains a given run
    at a time; the others wait on its lock and then read the cache.

    Raises ``RuntimeError`` when the pretraining run diverges: there are no weights to start
    from (nothing is cached).
    """
    weights, record_path = weights_path(config), _record_path(config)
    weights.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(weights.with_suffix(".lock"))):
        if weights.is_file() and record_path.is_file():
            return json.loads(record_path.read_text())
        record, model = train.train(config, initial_state=initial_state(config))
        if record["status"] != "ok":
            raise RuntimeError(
                f"pretraining run {config.key()} diverged at step {record['diverged_at']}; "
                "fine-tune from a run that trains"
            )
        state = {name: t.detach().clone() for name, t in model.state_dict().items()}
        _write_atomically(weights, lambda tmp: torch.save(state, tmp))
        _write_atomically(record_path, lambda tmp: tmp.write_text(json.dumps(record)))
        return record


def pretrained_state(config: RunConfig) -> dict[str, torch.Tensor]:
    """The final state dict of ``config``'s run, from the cache; :func:`pretrain` trains it
    first when it is not cached yet."""
    path = weights_path(config)
    if not path.is_file():
        pretrain(config)
    return torch.load(path, weights_only=True)


def initial_state(config: RunConfig) -> dict[str, torch.Tensor] | None:
    """The weights ``config``'s run starts from: the final weights of its ``init_from`` run
    (:func:`pretrained_state`), or ``None`` for a run from scratch."""
    if config.init_from is None:
        return None
    return pretrained_state(RunConfig.from_dict(config.init_from))
