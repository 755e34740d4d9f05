"""Fine-tuning from a pretrained run: ULMFiT's transfer controls.

Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text Classification" (ULMFiT),
arXiv:1801.06146.  A fine-tuning run is an ordinary ``RunConfig`` whose ``init_from`` holds the
config of the pretraining run; ``train.run`` turns it into a record stored and keyed like any
other.  The paper's controls map onto config fields:

* one rate for every layer: ``rule=None``;
* discriminative fine-tuning (section 3.2): ``rule={"name": "discriminative", "factor": 2.6}``,
  ``eta^(l-1) = eta^l / 2.6`` (``rules.Discriminative``);
* slanted triangular learning rates (section 3.2): ``schedule="slanted_triangular"``;
* gradual unfreezing (section 3.3): ``unfreeze_every`` (:class:`GradualUnfreezing`).

Initialisation (:func:`load_pretrained`): the model is built and seeded as usual, then every
parameter and buffer takes the pretraining run's final value, except those under the ``reinit``
top-level modules (default ``("head",)``: ULMFiT's new classifier, the only layers "learned from
scratch"), which keep their fresh seeded initialisation.  Every other tensor must exist in both
models with the same shape.  The pretraining run's weights are trained once and cached by the
harness (``layerwise.harness.pretraining``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._validate import check_choice, check_int
from .layers import layer_table

__all__ = ["GradualUnfreezing", "load_pretrained"]


def load_pretrained(
    model: nn.Module, state: Mapping[str, torch.Tensor], reinit: Sequence[str] = ("head",)
) -> None:
    """Copy ``state`` into ``model``, except the tensors under the top-level modules ``reinit``.

    Raises ``ValueError`` naming a ``reinit`` entry that is not a top-level module, a tensor
    that only one side has, or a tensor whose shapes differ.
    """
    children = dict(model.named_children())
    for name in reinit:
        check_choice("reinit module", name, children)
    own = model.state_dict()

    def loaded(name: str) -> bool:
        return name.split(".", 1)[0] not in reinit

    missing = sorted(n for n in own if loaded(n) and n not in state)
    extra = sorted(n for n in state if loaded(n) and n not in own)
    if missing or extra:
        raise ValueError(
            f"pretrained weights do not fit the model: missing {missing}, not in the model "
            f"{extra} (same model family and options as the pretraining run?)"
        )
    for name in filter(loaded, own):
        if own[name].shape != state[name].shape:
            raise ValueError(
                f"pretrained tensor {name!r} has shape {tuple(state[name].shape)}, the model's "
                f"{tuple(own[name].shape)}; re-initialise its module with reinit"
            )
    model.load_state_dict({n: state[n] if loaded(n) else t for n, t in own.items()})


class GradualUnfreezing:
    """ULMFiT's gradual unfreezing (Howard & Ruder 2018, section 3.3), counted in steps.

    The paper unfreezes the last layer first and one more layer below each epoch.  Here, with
    ``d`` a parameter's depth in ``layers.layer_table`` (the depth per-layer rules use, 0 next
    to the input) and ``D`` the top depth, at step ``s`` (1-based) only the parameters with::

        d >= D - floor((s - 1) / every)

    are updated: the top depth alone for the first ``every`` steps, every depth from step
    ``D * every + 1``.  :meth:`apply`, called after ``backward``, sets the gradients of the
    others to ``None``, so no torch optimizer moves them: no update, no weight decay, no
    momentum.
    """

    def __init__(self, model: nn.Module, example_input: Any, every: int):
        self.every = check_int("unfreeze_every", every, 1)
        table = layer_table(model, example_input)
        tensors = dict(model.named_parameters())
        self.top = int(table["depth"].max())
        self._params = [
            (int(depth), tensors[name])
            for name, depth in zip(table["name"], table["depth"], strict=True)
        ]

    def lowest_depth(self, step: int) -> int:
        """The lowest depth updated at ``step`` (1-based)."""
        return max(0, self.top - (step - 1) // self.every)

    def apply(self, step: int) -> None:
        """Drop the gradients of the depths still frozen at ``step``."""
        lowest = self.lowest_depth(step)
        for depth, p in self._params:
            if depth < lowest:
                p.grad = None
