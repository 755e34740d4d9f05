"""The layer table: every trainable parameter of any ``nn.Module`` with its layer, kind and depth.

Depth (0 = nearest the input) comes from the order in which parameters are *first used* in one
forward pass on an example input.  The pass is traced with a ``TorchFunctionMode``, which sees
each torch operation together with the parameter tensors it is given, so it also places
parameters that no child module owns (a position embedding or class token held by the model
itself) and layers that share weights.  Forward pre-hooks on the parameter-owning modules cover
operations the trace cannot see (code run under ``torch._C.DisableTorchFunction``).  The model is
left exactly as it was: buffers (BatchNorm statistics) are restored and the random stream is
forked, so tracing in training mode changes neither the model nor later dropout masks.

How parameters become depths:

* A *layer* is a module of a known layer type (``Linear``, ``Bilinear``, convolutions,
  ``Embedding``, ``GRU``/``LSTM``/``RNN`` and their cells, ``MultiheadAttention``), or any other
  module that holds parameters directly and has no parameter-holding children.  A stacked RNN
  (``num_layers > 1``) gives one layer per stack level (``weight_ih_l0``, ``..._l1``, ...).
  A layer's weight and bias share its depth.
* Layers are ranked by first use; layers first used by the same operation share a depth.
* Norm parameters (BatchNorm, LayerNorm, GroupNorm, RMSNorm, or a class whose name ends in
  ``Norm``, e.g. a hand-written ``LayerNorm``) take the depth of the layer that ran last before them -- the layer whose output
  they normalise (the next layer if none ran before).  Parameters held directly by a container
  module (e.g. the transformer's ``pos``) follow the same rule, so a position embedding added
  right after the token embedding shares depth 0 with it.
* ``granularity="block"`` puts every parameter inside a repeated block (children of one
  ``ModuleList``/``Sequential`` that share a class, e.g. transformer or residual blocks; the
  outermost such block wins) at one depth.
* A tensor shared by several modules (a language model's output weight tied to its token
  embedding) appears once, under the name ``named_parameters`` gives it, at its *first* use --
  for a tied embedding that is depth 0, the input side; the other names are listed in
  ``aliases``.  A module called twice likewise sits at its first call.
* A parameter the forward never used takes the depth of its nearest registered neighbour that
  was used (the one registered before it, else after it); its ``source`` is ``"unreached"`` and
  a warning names it.  Without an example input the same rules run on registration order, with
  a warning.
* Frozen parameters (``requires_grad=False``) are left out and depths are ranked over the
  trainable ones, so the first trainable layer is depth 0.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ._validate import check_choice, check_int

__all__ = ["GRANULARITIES", "KINDS", "layer_table"]

KINDS: tuple[str, ...] = ("dense", "conv", "recurrent", "attention", "embedding", "norm", "other")
GRANULARITIES: tuple[str, ...] = ("layer", "block")
COLUMNS: tuple[str, ...] = (
    "name",
    "module",
    "layer",
    "kind",
    "depth",
    "shape",
    "numel",
    "aliases",
    "source",
)

_LAYER_TYPES: tuple[tuple[str, tuple[type[nn.Module], ...]], ...] = (
    ("attention", (nn.MultiheadAttention,)),
    ("embedding", (nn.Embedding, nn.EmbeddingBag)),
    ("conv", (nn.modules.conv._ConvNd,)),
    ("recurrent", (nn.RNNBase, nn.RNNCellBase)),
    ("dense", (nn.Linear, nn.Bilinear)),
)
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_NORM_NAME = re.compile(r"Norm(\d+d?)?$")  # LayerNorm, RMSNorm, BatchNorm2d, GroupNorm32, ...
_RNN_LEVEL = re.compile(r"_l(\d+)")


def _is_layer(module: nn.Module) -> bool:
    return any(isinstance(module, types) for _, types in _LAYER_TYPES)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or _NORM_NAME.search(type(module).__name__) is not None


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _ancestors(name: str) -> list[str]:
    """``name`` and every module above it, outermost ("" = the model) first."""
    parts = name.split(".") if name else []
    return [".".join(parts[:i]) for i in range(len(parts) + 1)]


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


@dataclass
class _Param:
    name: str
    tensor: nn.Parameter
    aliases: tuple[str, ...]
    module: str  # the module holding the tensor under ``name``
    kind: str
    unit: str  # the layer (or block) it belongs to
    level: int  # stack level of a multi-layer RNN, else 0
    loose: bool  # held directly by a container module that is not itself a layer
    anchor: bool  # does its unit rank on its own (True) or join a neighbouring layer (False)?


def _kind(modules: Mapping[str, nn.Module], owner: str) -> str:
    if any(_is_attention(modules[a]) for a in _ancestors(owner)):
        return "attention"
    module = modules[owner]
    if _is_norm(module):
        return "norm"
    return next((kind for kind, types in _LAYER_TYPES if isinstance(module, types)), "other")


def _blocks(model: nn.Module) -> list[str]:
    """Names of the outermost repeated blocks: parameter-holding children of a ``ModuleList`` or
    ``Sequential`` whose class occurs at least twice among its siblings."""
    found: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        children = [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]
        counts: dict[type, int] = {}
        for _, child in children:
            counts[type(child)] = counts.get(type(child), 0) + 1
        found += [f"{name}.{n}" if name else n for n, c in children if counts[type(c)] > 1]
    return [b for b in found if not any(_under(b, other) for other in found if other != b)]


def _params(model: nn.Module, granularity: str) -> list[_Param]:
    modules = dict(model.named_modules(remove_duplicate=False))
    names: dict[int, list[str]] = {}
    tensors: dict[int, nn.Parameter] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
        tensors[id(p)] = p
    holders = {_parent(n) for ns in names.values() for n in ns}
    blocks = _blocks(model) if granularity == "block" else []

    out = []
    for key, (name, *aliases) in names.items():
        p = tensors[key]
        if not p.requires_grad:
            continue
        owner = _parent(name)
        layer = next((a for a in _ancestors(owner) if _is_layer(modules[a])), owner)
        container = any(h != owner and _under(h, owner) for h in holders)
        loose = container and not _is_layer(modules[owner])
        unit, level = name if loose else layer, 0
        if isinstance(modules[layer], nn.RNNBase) and modules[layer].num_layers > 1:
            level = int(_RNN_LEVEL.search(name.rpartition(".")[2]).group(1))
            unit = f"{layer}[l{level}]"
        block = next((b for b in blocks if _under(owner, b)), None)
        if block is not None:
            unit, level = block, 0
        anchor = not (loose or _is_norm(modules[owner]))
        kind = _kind(modules, owner)
        out.append(_Param(name, p, tuple(aliases), owner, kind, unit, level, loose, anchor))
    if blocks:  # a block ranks on its own if any of its parameters would
        ranked = {q.unit for q in out if q.anchor}
        for q in out:
            q.anchor = q.unit in ranked
    return out


# --------------------------------------------------------------------------------------------
# tracing


def _tensors(value: Any):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


class _FirstUse(TorchFunctionMode):
    """Records, for each watched tensor, the index of the first operation that used it.

    Only operations that return a tensor count, so reading ``weight.dtype`` or ``weight.shape``
    is not a use."""

    def __init__(self, watched: Mapping[int, str], clock: itertools.count):
        super().__init__()
        self.watched, self.clock, self.first = watched, clock, {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if any(True for _ in _tensors(result)):
            tick = next(self.clock)
            for t in _tensors((args, kwargs)):
                if id(t) in self.watched:
                    self.first.setdefault(self.watched[id(t)], tick)
        return result


def _call(model: nn.Module, example_input: Any) -> None:
    if isinstance(example_input, Mapping):
        model(**example_input)
    elif isinstance(example_input, (tuple, list)):
        model(*example_input)
    else:
        model(example_input)


def _first_uses(model: nn.Module, params: list[_Param], example_input: Any) -> dict[str, int]:
    """Run ``model`` once on ``example_input`` and return each parameter's first-use tick."""
    clock = itertools.count()
    trace = _FirstUse({id(q.tensor): q.name for q in params}, clock)
    hooked: dict[str, int] = {}
    handles = []
    modules = dict(model.named_modules(remove_duplicate=False))
    for owner in {q.module for q in params if not q.loose}:

        def seen(module, args, owner=owner):
            hooked.setdefault(owner, next(clock))

        handles.append(modules[owner].register_forward_pre_hook(seen))
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad(), trace:
            _call(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(saved[n])
    first = {}
    for q in params:
        tick = trace.first.get(q.name, None if q.loose else hooked.get(q.module))
        if tick is not None:
            first[q.name] = tick
    return first


# --------------------------------------------------------------------------------------------
# depths


def _depths(params: list[_Param], position: Mapping[str, int]) -> dict[str, int]:
    """Depth of every unit that has a position (the smallest position of its parameters)."""
    where: dict[str, int] = {}
    anchored: dict[str, bool] = {}
    level: dict[str, int] = {}
    for q in params:
        if q.name in position:
            where[q.unit] = min(where.get(q.unit, position[q.name]), position[q.name])
            anchored[q.unit], level[q.unit] = q.anchor, q.level
    anchors = [u for u in where if anchored[u]] or list(where)
    keys = sorted({(where[u], level[u]) for u in anchors})
    rank = {key: i for i, key in enumerate(keys)}
    depth = {u: rank[(where[u], level[u])] for u in anchors}
    for unit in where.keys() - set(anchors):
        before = [k for k in keys if k[0] <= where[unit]]
        depth[unit] = rank[before[-1] if before else keys[0]]
    return depth


def _apply_overrides(rows: list[dict], overrides: Mapping[str, int]) -> None:
    claimed: dict[str, str] = {}
    for key, depth in overrides.items():
        check_int(f"override depth for {key!r}", depth, 0)
        hits = [r for r in rows if any(_under(n, key) for n in (r["name"], *r["aliases"]))]
        if not hits:
            valid = sorted({r["name"] for r in rows} | {r["module"] for r in rows})
            raise ValueError(
                f"override {key!r} matches no trainable parameter or module; "
                f"valid: {', '.join(valid)}"
            )
        for row in hits:
            if row["name"] in claimed:
                raise ValueError(
                    f"parameter {row['name']!r} is listed twice in overrides, "
                    f"by {claimed[row['name']]!r} and {key!r}"
                )
            claimed[row["name"]] = key
            row["depth"], row["source"] = depth, "override"


def layer_table(
    model: nn.Module,
    example_input: Any = None,
    granularity: str = "layer",
    overrides: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per trainable parameter: which layer it belongs to, its kind and its depth.

    Args:
        model: any ``nn.Module``.
        example_input: a batch the model accepts -- a tensor (``model(x)``), a tuple or list
            (``model(*x)``) or a dict (``model(**x)``).  ``None`` falls back to registration
            order, with a warning.
        granularity: ``"layer"`` (one depth per layer) or ``"block"`` (one depth per repeated
            block; see the module docstring).
        overrides: explicit depths by parameter name (or alias) or module name; a module name
            sets every parameter under it.

    Returns:
        A DataFrame in registration order with columns ``name``, ``module`` (the module holding
        the tensor), ``layer`` (the unit that got the depth), ``kind`` (one of ``KINDS``),
        ``depth`` (0 = nearest the input), ``shape`` (tuple), ``numel``, ``aliases`` (other names
        of the same tensor) and ``source`` (``"forward"``, ``"unreached"``, ``"registration"``
        or ``"override"``).

    Kinds: ``attention`` for everything inside ``nn.MultiheadAttention`` or a module whose class
    name contains ``"Attention"``; otherwise by the holding module's type: ``embedding``,
    ``conv``, ``recurrent``, ``dense`` (``Linear``/``Bilinear``), ``norm``; ``other`` for the
    rest (e.g. a position embedding held by the model itself).
    """
    check_choice("granularity", granularity, GRANULARITIES)
    params = _params(model, granularity)
    source = "forward"
    if example_input is None:
        warnings.warn(
            "layer_table: no example_input, so depths follow the order in which parameters were "
            "registered, not the forward pass",
            stacklevel=2,
        )
        first = {}
    else:
        first = _first_uses(model, params, example_input)
        if not first and params:
            warnings.warn(
                "layer_table: the forward pass used none of the trainable parameters; depths "
                "follow registration order",
                stacklevel=2,
            )
    if not first:
        first, source = {q.name: i for i, q in enumerate(params)}, "registration"
    depth = _depths(params, first)

    rows, unreached = [], []
    for i, q in enumerate(params):
        row = dict(name=q.name, module=q.module, layer=q.unit, kind=q.kind, aliases=q.aliases)
        row.update(shape=tuple(q.tensor.shape), numel=q.tensor.numel())
        if q.unit in depth:
            row["depth"], row["source"] = depth[q.unit], source
        else:  # take the depth of the nearest reached neighbour in registration order
            order = params[i::-1] + params[i + 1 :]
            row["depth"] = next((depth[n.unit] for n in order if n.unit in depth), 0)
            row["source"] = "unreached"
            unreached.append(q.name)
        rows.append(row)
    if unreached:
        warnings.warn(
            f"layer_table: the forward pass did not use {', '.join(unreached)}; each takes the "
            "depth of its nearest registered neighbour",
            stacklevel=2,
        )
    if overrides:
        _apply_overrides(rows, overrides)
    return pd.DataFrame(rows, columns=list(COLUMNS))
