"""Re-initialisation robustness of each layer (Zhang, Bengio, Singer 2019).

C. Zhang, S. Bengio, Y. Singer, "Are All Layers Created Equal?", JMLR 23 (2022), arXiv:1902.01996.
After training, one layer at a time is reset -- to its value at an earlier checkpoint
("re-initialisation", checkpoint 0 being the initial weights) or to a fresh draw from the
initial distribution ("re-randomisation") -- and the network is evaluated with the other layers
left trained.  Layers whose reset barely changes the metric are *robust*, the others *critical*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .._validate import check_choice
from .activations import parameter_owners

__all__ = ["reinit_robustness"]


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's own parameters and persistent buffers (not its children's), by local name."""
    return {k: t for k, t in module.state_dict(keep_vars=True).items() if "." not in k}


@torch.no_grad()
def _load(tensors: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor]) -> None:
    for name, value in values.items():
        tensors[name].copy_(value)


def reinit_robustness(
    model: nn.Module,
    checkpoints: Sequence[Mapping[str, torch.Tensor]],
    evaluate: Callable[[nn.Module], float],
    layers: Iterable[str] | None = None,
    mode: str = "checkpoint",
    steps: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Evaluate ``model`` with one layer at a time reset, then restore the layer exactly.

    ``layers`` names modules of ``model`` (default: every module that owns parameters, see
    :func:`~layerwise.probes.parameter_owners`); a layer's tensors are its own parameters and buffers (e.g.
    BatchNorm running statistics).  ``evaluate(model) -> float`` is the user's metric, e.g. test
    error.  Modes:

    * ``"checkpoint"``: for every checkpoint (a state dict of ``model``, labelled by ``steps``,
      default 0, 1, ...), copy the layer's entries from it.  Checkpoint 0 at initialisation gives
      the paper's re-initialisation robustness.
    * ``"redraw"``: re-draw the layer with its module's ``reset_parameters()`` (re-randomisation
      robustness); ``checkpoints`` is not used and the ``checkpoint`` column reads ``"redraw"``.
      Seed torch's generator beforehand for a reproducible draw.

    Returns a tidy frame with columns ``layer``, ``checkpoint``, ``metric``.  The model's
    parameters and buffers are restored to their values on entry after every evaluation, also
    when ``evaluate`` raises.
    """
    check_choice("mode", mode, ("checkpoint", "redraw"))
    named = dict(model.named_modules())
    chosen = list(parameter_owners(model) if layers is None else layers)
    unknown = [name for name in chosen if name not in named]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; valid: {', '.join(parameter_owners(model))}")
    if mode == "redraw":
        missing = [name for name in chosen if not hasattr(named[name], "reset_parameters")]
        if missing:
            raise ValueError(f"layer(s) {missing} have no reset_parameters() to redraw them")
        labels: list = ["redraw"]
    else:
        labels = list(range(len(checkpoints))) if steps is None else list(steps)
        if len(labels) != len(checkpoints):
            raise ValueError(f"{len(labels)} steps given for {len(checkpoints)} checkpoints")

    rows = []
    for layer in chosen:
        module = named[layer]
        tensors = _state(module)
        saved = {name: t.detach().clone() for name, t in tensors.items()}
        prefix = f"{layer}." if layer else ""
        for k, label in enumerate(labels):
            try:
                if mode == "redraw":
                    with torch.no_grad():
                        module.reset_parameters()
                else:
                    _load(tensors, {n: checkpoints[k][prefix + n] for n in tensors})
                metric = float(evaluate(model))
            finally:  # fetched again: reset_parameters() may have replaced a tensor
                _load(_state(module), saved)
            rows.append((layer, label, metric))
    return pd.DataFrame(rows, columns=["layer", "checkpoint", "metric"])
