"""Pretraining runs whose final weights start fine-tuning runs (``RunConfig.init_from``).

The weights of a pretraining run are trained once with the harness's loop (``train.train``) and
cached on disk by the run's key, so every fine-tuning run of a sweep starts from the same
tensors.  This module imports ``train``, never the other way round: a fine-tuning run receives
its starting weights as ``train.run(config, initial_state=initial_state(config))``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import train
from .config import RunConfig
from .data import _cache_dir

__all__ = ["initial_state", "pretrained_state", "weights_path"]


def weights_path(config: RunConfig) -> Path:
    """Where the final weights of ``config``'s run are cached:
    ``$LAYERWISE_CACHE/weights/<key>.pt`` (else pooch's cache folder for ``layerwise``)."""
    return _cache_dir() / "weights" / f"{config.key()}.pt"


def pretrained_state(config: RunConfig) -> dict[str, torch.Tensor]:
    """The final state dict of ``config``'s run, trained with ``train.train`` when it is not
    cached yet (then written atomically to :func:`weights_path`).

    Raises ``RuntimeError`` when the pretraining run diverges: there are no weights to start
    from (nothing is cached).
    """
    path = weights_path(config)
    if path.is_file():
        return torch.load(path, weights_only=True)
    record, model = train.train(config, initial_state=initial_state(config))
    if record["status"] != "ok":
        raise RuntimeError(
            f"pretraining run {config.key()} diverged at step {record['diverged_at']}; "
            "fine-tune from a run that trains"
        )
    state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return state


def initial_state(config: RunConfig) -> dict[str, torch.Tensor] | None:
    """The weights ``config``'s run starts from: the final weights of its ``init_from`` run
    (:func:`pretrained_state`), or ``None`` for a run from scratch."""
    if config.init_from is None:
        return None
    return pretrained_state(RunConfig.from_dict(config.init_from))
