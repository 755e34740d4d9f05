"""Layer outputs captured with forward hooks, for representation probes (CKA, coordinate checks).

A *layer* is a module that owns parameters itself (``module.parameters(recurse=False)`` is not
empty): ``nn.Linear``, ``nn.Conv2d``, ``nn.GRU``, ``nn.LayerNorm``, ``nn.Embedding``, and a model
root that holds a loose ``nn.Parameter`` such as a position embedding.  Containers
(``nn.Sequential``, a transformer block) and parameter-free modules (``nn.ReLU``) are not layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..layers import _call

__all__ = ["capture_activations", "parameter_owners", "record_outputs"]


def parameter_owners(model: nn.Module) -> dict[str, nn.Module]:
    """The modules of ``model`` that own parameters, by name, in registration order."""
    return {
        name: module
        for name, module in model.named_modules()
        if next(module.parameters(recurse=False), None) is not None
    }


def _select(model: nn.Module, modules: Iterable[str] | None) -> dict[str, nn.Module]:
    if modules is None:
        return parameter_owners(model)
    named = dict(model.named_modules())
    unknown = [name for name in modules if name not in named]
    if unknown:
        raise ValueError(f"unknown module(s) {unknown}; valid: {', '.join(n for n in named if n)}")
    return {name: named[name] for name in modules}


def record_outputs(
    model: nn.Module,
    modules: Iterable[str] | None,
    sink: Callable[[str, torch.Tensor], None],
) -> list[torch.utils.hooks.RemovableHandle]:
    """Register forward hooks that pass each selected module's output to ``sink(name, output)``.

    A recurrent module returns ``(output, hidden)``; the hook passes the output sequence only.
    Returns the hook handles; call ``handle.remove()`` on each when done.
    """

    def hook(name: str) -> Callable:
        def call(_module: nn.Module, _inputs: tuple, output: torch.Tensor | tuple) -> None:
            sink(name, output[0] if isinstance(output, tuple) else output)

        return call

    return [m.register_forward_hook(hook(n)) for n, m in _select(model, modules).items()]


def capture_activations(
    model: nn.Module, inputs: Any, modules: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """Run the model once on ``inputs`` and return each selected module's output, by name.

    ``inputs`` is what :func:`layerwise.layers.layer_table` accepts: a tensor (``model(x)``), a
    tuple or list (``model(*x)``) or a dict (``model(**x)``, e.g. a tokenizer's output).
    ``modules`` names the modules to capture (default: every module that owns parameters, see
    :func:`parameter_owners`).  The forward pass runs under ``torch.inference_mode()`` with every
    module in eval mode; each module's ``training`` flag is restored afterwards.  Outputs are
    copied, so a later in-place operation cannot change them.  A module that runs more than once
    keeps its last output; a module that does not run is absent from the result.
    """
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        captured[name] = output.detach().clone()

    modes = {m: m.training for m in model.modules()}
    handles = record_outputs(model, modules, keep)
    try:
        model.eval()
        with torch.inference_mode():
            _call(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return captured
