"""How far each parameter tensor travels during training, from a list of state-dict checkpoints.

Three per-tensor measures (one definition each, ``||.||`` the Frobenius norm of the tensor):

* distance to final, ``||w(t) - w(T)|| / ||w(0) - w(T)||``: 1 at initialisation, 0 at the end;
  the first t where it falls below a threshold orders layers by convergence (Chen et al.;
  Raghu et al. 2017 ask the same question of representations).
* relative movement, ``||w(t) - w(0)|| / ||w(0)||``; its value at the last checkpoint,
  ``||w_T - w_0|| / ||w_0||``, is the layer movement that Zhang, Bengio, Singer (2019, "Are All
  Layers Created Equal?") relate to re-initialisation robustness.
* layer rotation, ``1 - cos(w(t), w(0))``: the cosine distance to initialisation of
  Carbonnelle & De Vleeschouwer (2019, "Layer rotation: a surprisingly powerful indicator of
  generalization in deep networks?", arXiv:1806.01603).

Every function takes ``checkpoints`` (state dicts in training order, first = initialisation, last =
end of training) and optional ``steps`` labelling them, uses the floating-point entries of the
first checkpoint, computes in float64 and returns a tidy frame with columns ``step``, ``name``
and the measure.  A zero denominator (a tensor that never moved, or one initialised to zero)
gives NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch
from torch.linalg import vector_norm

__all__ = ["distance_to_final", "layer_rotation", "relative_movement"]

Checkpoint = Mapping[str, torch.Tensor]


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    return (num / den).item() if den != 0 else float("nan")


def _per_tensor(
    checkpoints: Sequence[Checkpoint],
    steps: Sequence[int] | None,
    column: str,
    measure: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float],
) -> pd.DataFrame:
    """Apply ``measure(w_t, w_0, w_T)`` to every floating-point tensor at every checkpoint."""
    if not checkpoints:
        raise ValueError("at least one checkpoint is needed")
    steps = list(range(len(checkpoints))) if steps is None else list(steps)
    if len(steps) != len(checkpoints):
        raise ValueError(f"{len(steps)} steps given for {len(checkpoints)} checkpoints")
    first, last = checkpoints[0], checkpoints[-1]
    names = [name for name, w in first.items() if torch.is_floating_point(w)]
    rows = []
    for name in names:
        w0, wT = first[name].double(), last[name].double()
        for step, checkpoint in zip(steps, checkpoints, strict=True):
            rows.append((step, name, measure(checkpoint[name].double(), w0, wT)))
    return pd.DataFrame(rows, columns=["step", "name", column])


def distance_to_final(
    checkpoints: Sequence[Checkpoint], steps: Sequence[int] | None = None
) -> pd.DataFrame:
    """``||w(t) - w(T)|| / ||w(0) - w(T)||`` per tensor and checkpoint (column ``distance``)."""
    return _per_tensor(
        checkpoints,
        steps,
        "distance",
        lambda w, w0, wT: _ratio(vector_norm(w - wT), vector_norm(w0 - wT)),
    )


def relative_movement(
    checkpoints: Sequence[Checkpoint], steps: Sequence[int] | None = None
) -> pd.DataFrame:
    """``||w(t) - w(0)|| / ||w(0)||`` per tensor and checkpoint (column ``movement``)."""
    return _per_tensor(
        checkpoints,
        steps,
        "movement",
        lambda w, w0, _: _ratio(vector_norm(w - w0), vector_norm(w0)),
    )


def layer_rotation(
    checkpoints: Sequence[Checkpoint], steps: Sequence[int] | None = None
) -> pd.DataFrame:
    """``1 - <w(t), w(0)> / (||w(t)|| ||w(0)||)`` per tensor and checkpoint (column
    ``rotation``); 0 at initialisation, 1 when orthogonal to it, at most 2."""

    def rotation(w: torch.Tensor, w0: torch.Tensor, _: torch.Tensor) -> float:
        cos = _ratio(torch.dot(w.flatten(), w0.flatten()), vector_norm(w) * vector_norm(w0))
        return 1.0 - cos

    return _per_tensor(checkpoints, steps, "rotation", rotation)
