"""The layer table: every trainable parameter of any ``nn.Module`` with its layer, kind and depth.

Depth (0 = nearest the input) comes from the order in which parameters are used in one forward
pass on an example input.  The pass is traced with a ``TorchFunctionMode``, which sees each torch
operation together with the parameter tensors it is given, so it also places parameters that no
child module owns (a position embedding or class token held by the model itself) and layers that
share weights.  Forward pre-hooks on the parameter-holding modules cover operations the trace
cannot see (code run under ``torch._C.DisableTorchFunction``).  The model is left exactly as it
was: buffers (BatchNorm statistics) are restored and the random stream is forked, so tracing in
training mode changes neither the model nor later dropout masks.

How parameters become depths:

* A *layer* is a module of a known layer type (``Linear``, ``Bilinear``, convolutions,
  ``Embedding``, ``GRU``/``LSTM``/``RNN`` and their cells, ``MultiheadAttention``), or any other
  module that holds parameters directly and has no parameter-holding children.  A stacked RNN
  (``num_layers > 1``) gives one layer per stack level (``weight_ih_l0``, ``..._l1``, ...).
  A layer's weight and bias share its depth.
* Units -- the things that get one depth each -- are ranked by first use; units first used by
  the same operation share a depth.  What a unit is depends on ``granularity``:

  - ``"block"`` (the default): every parameter inside a repeated *block* (children of one
    ``ModuleList``/``Sequential`` that share a class: a transformer block, a residual block, a
    conv stage or dense layer of a plain stack; the outermost such block wins) is one unit, and
    so is every attention module outside blocks (a class whose name contains ``"Attention"``).
    Everything used before the first block -- token, position and segment embeddings, a patch
    projection, a class token, a stem and its norm -- is the *input* unit at depth 0.  The other
    layers (a pooler, a classifier head, a recurrent stack level) are units of their own.  So a
    depth rule takes one factor step per block, as ULMFiT, ELECTRA and BEiT count layers.
    A model without repeated blocks gets one depth per layer, attention modules merged.
  - ``"layer"``: every layer is a unit (a transformer block gives four or more depths).  The
    embedding layers used before any other layer (token, position and segment embeddings)
    still share depth 0: together they are the input layer.

* Norm parameters (BatchNorm, LayerNorm, GroupNorm, RMSNorm, or a class whose name ends in
  ``Norm``, e.g. a hand-written ``LayerNorm``) take the depth of the unit that ran last before
  them -- the one whose output they normalise (the next one if none ran before).  Parameters held
  directly by a container module (e.g. the transformer's ``pos``) follow the same rule, so a
  position embedding added right after the token embedding shares depth 0 with it.
* A tensor registered under several names -- a language model's output weight tied to its token
  embedding -- appears once, under the name ``named_parameters`` gives it, with the other names
  in ``aliases``.  It takes the unit and depth of its *last* use: a tied embedding/readout pair
  sits with the readout at the top, the last and fastest group, as fastai's splitter for tied
  AWD-LSTM language models has it (Howard & Ruder 2018).  At the input side it would train the
  output layer at the slowest rate of a depth rule.  Its kind stays that of its first name
  (``embedding``).  An explicit depth goes through ``overrides``.  A module called twice (one
  set of weights, several names not involved) sits at its first call.
* Kinds: ``attention`` for everything inside ``nn.MultiheadAttention`` or a module whose class
  name contains ``"Attention"``; otherwise by the holding module's type: ``embedding``,
  ``conv``, ``recurrent``, ``dense`` (``Linear``/``Bilinear``), ``norm``.  A layer of another
  type is classified by the operation that consumed its weight in the traced pass: a matrix
  product (``linear``, ``addmm``, ``matmul``, ``mm``, ``bmm``, ``einsum``) makes it ``dense``
  -- e.g. Hugging Face's ``Conv1D``, a dense layer with a transposed weight -- an embedding
  lookup ``embedding`` and a convolution ``conv``.  The rest is ``other``, with a warning naming
  the module types of layers left there (parameters held by containers, such as a position
  embedding, are ``other`` without a warning).
* A parameter the forward never used takes the depth of its nearest registered neighbour that
  was used (the one registered before it, else after it); its ``source`` is ``"unreached"`` and
  a warning names it.  Without an example input the same rules run on registration order, with
  a warning (a tied tensor then sits at its last registered name).
* Frozen parameters (``requires_grad=False``) are left out and depths are ranked over the
  trainable ones, so the first trainable unit is depth 0.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ._validate import check_choice, check_int

__all__ = ["COLUMNS", "GRANULARITIES", "KINDS", "UNITS", "check_module", "layer_table"]

KINDS: tuple[str, ...] = ("dense", "conv", "recurrent", "attention", "embedding", "norm", "other")
GRANULARITIES: tuple[str, ...] = ("block", "layer")
UNITS: tuple[str, ...] = ("input", "block", "layer")
COLUMNS: tuple[str, ...] = (
    "name",
    "module",
    "type",
    "layer",
    "unit",
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
# the kind of a layer of unknown type, by the torch operation that consumed its weight
_OP_KINDS: dict[str, str] = {
    **dict.fromkeys(
        ("linear", "bilinear", "addmm", "matmul", "mm", "bmm", "baddbmm", "einsum"), "dense"
    ),
    **dict.fromkeys(("__matmul__", "__rmatmul__"), "dense"),
    **dict.fromkeys(("embedding", "embedding_bag"), "embedding"),
    **dict.fromkeys(
        ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"),
        "conv",
    ),
}


def _is_layer(module: nn.Module) -> bool:
    return any(isinstance(module, types) for _, types in _LAYER_TYPES)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or _NORM_NAME.search(type(module).__name__) is not None


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def _parent(name: str) -> str:
    """The module that holds ``name`` ("" = the model): ``"a.b.weight"`` -> ``"a.b"``."""
    return name.rpartition(".")[0]


def _ancestors(name: str) -> list[str]:
    """``name`` and every module above it, outermost ("" = the model) first."""
    parts = name.split(".") if name else []
    return [".".join(parts[:i]) for i in range(len(parts) + 1)]


def _under(name: str, prefix: str) -> bool:
    """Is ``name`` the module ``prefix`` or inside it ("" contains everything)?"""
    return not prefix or name == prefix or name.startswith(prefix + ".")


def _outermost(names: list[str]) -> list[str]:
    return [n for n in names if not any(o != n and _under(n, o) for o in names)]


def check_module(what: str, model: Any) -> nn.Module:
    """Return ``model`` if it is an ``nn.Module``; otherwise raise ``TypeError`` naming it."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{what} needs a torch.nn.Module, got {type(model).__name__} {_short(model)}"
        )
    return model


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _call(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a mapping, ``model(*inputs)`` for a tuple or list, else
    ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


# --------------------------------------------------------------------------------------------
# structure: where each name sits, before any forward pass


@dataclass(frozen=True)
class _Place:
    """Where one parameter name sits: the unit that gets its depth, and how it ranks."""

    unit: str  # the layer, block or attention module that gets the depth
    level: int  # stack level of a multi-layer RNN, else 0
    loose: bool  # held directly by a container module that is not itself a layer
    anchor: bool  # does the unit rank on its own (True) or join a neighbouring unit (False)?
    block: bool  # is the unit a repeated block?


@dataclass
class _Param:
    name: str
    tensor: nn.Parameter
    aliases: tuple[str, ...]
    module: str  # the module holding the tensor under ``name``
    kind: str
    place: _Place  # of ``name``, or of the alias used last for a tied tensor


def _blocks(modules: Mapping[str, nn.Module]) -> list[str]:
    """Names of the outermost repeated blocks: parameter-holding children of a ``ModuleList`` or
    ``Sequential`` whose class occurs at least twice among its siblings."""
    found: list[str] = []
    for name, module in modules.items():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            continue
        children = [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]
        counts: dict[type, int] = {}
        for _, child in children:
            counts[type(child)] = counts.get(type(child), 0) + 1
        found += [f"{name}.{n}" if name else n for n, c in children if counts[type(c)] > 1]
    return _outermost(list(dict.fromkeys(found)))


class _Structure:
    """The model's modules and, per parameter name, its place and kind."""

    def __init__(self, model: nn.Module, granularity: str):
        self.modules = dict(model.named_modules(remove_duplicate=False))
        self.names: dict[int, list[str]] = {}
        self.tensors: dict[int, nn.Parameter] = {}
        self.registered: dict[str, int] = {}  # every name's index in registration order
        for i, (name, p) in enumerate(model.named_parameters(remove_duplicate=False)):
            self.names.setdefault(id(p), []).append(name)
            self.tensors[id(p)] = p
            self.registered[name] = i
        self.holders = {_parent(n) for ns in self.names.values() for n in ns}
        self.blocks: list[str] = []
        self.attention: list[str] = []
        if granularity == "block":
            self.blocks = _blocks(self.modules)
            attention = [n for n, m in self.modules.items() if n and _is_attention(m)]
            self.attention = [
                a
                for a in _outermost(attention)
                if not _is_layer(self.modules[a]) and not any(_under(a, b) for b in self.blocks)
            ]

    def place(self, name: str) -> _Place:
        owner = _parent(name)
        layer = next((a for a in _ancestors(owner) if _is_layer(self.modules[a])), owner)
        container = any(h != owner and _under(h, owner) for h in self.holders)
        loose = container and not _is_layer(self.modules[owner])
        anchor = not (loose or _is_norm(self.modules[owner]))
        for group in (*self.blocks, *self.attention):
            if _under(owner, group):
                return _Place(group, 0, loose, anchor, group in self.blocks)
        module = self.modules[layer]
        if not loose and isinstance(module, nn.RNNBase) and module.num_layers > 1:
            level = int(_RNN_LEVEL.search(name.rpartition(".")[2]).group(1))
            return _Place(f"{layer}[l{level}]", level, loose, anchor, False)
        return _Place(name if loose else layer, 0, loose, anchor, False)

    def kind(self, name: str) -> str:
        owner = _parent(name)
        if any(_is_attention(self.modules[a]) for a in _ancestors(owner)[1:]):
            return "attention"
        module = self.modules[owner]
        if _is_norm(module):
            return "norm"
        return next((kind for kind, types in _LAYER_TYPES if isinstance(module, types)), "other")

    def params(self) -> list[_Param]:
        """The trainable tensors in registration order, each under its first name."""
        out = []
        for key, (name, *aliases) in self.names.items():
            p = self.tensors[key]
            if p.requires_grad:
                place, kind = self.place(name), self.kind(name)
                out.append(_Param(name, p, tuple(aliases), _parent(name), kind, place))
        return out


# --------------------------------------------------------------------------------------------
# tracing


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


@dataclass
class _Trace:
    """Ticks of one forward pass: per watched name its first and last use and the operations
    that used it; per hooked module its first and last call."""

    first: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    ops: dict[str, list[str]] = field(default_factory=dict)
    called_first: dict[str, int] = field(default_factory=dict)
    called_last: dict[str, int] = field(default_factory=dict)


class _Uses(TorchFunctionMode):
    """Records, for each watched tensor, the operations that used it and when.

    Only operations that return a tensor count, so reading ``weight.dtype`` or ``weight.shape``
    is not a use."""

    def __init__(self, watched: Mapping[int, str], clock: itertools.count, trace: _Trace):
        super().__init__()
        self.watched, self.clock, self.trace = watched, clock, trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if any(True for _ in _tensors(result)):
            tick = next(self.clock)
            for t in _tensors((args, kwargs)):
                name = self.watched.get(id(t))
                if name is not None:
                    self.trace.first.setdefault(name, tick)
                    self.trace.last[name] = tick
                    self.trace.ops.setdefault(name, []).append(getattr(func, "__name__", ""))
        return result


def _trace(model: nn.Module, params: list[_Param], example_input: Any) -> _Trace:
    """Run ``model`` once on ``example_input`` and record when each parameter was used."""
    clock = itertools.count()
    trace = _Trace()
    modules = dict(model.named_modules(remove_duplicate=False))
    hooked = {q.module for q in params if not q.place.loose}
    hooked |= {_parent(a) for q in params for a in q.aliases}
    handles = []
    for owner in sorted(hooked):

        def seen(module, args, owner=owner):
            tick = next(clock)
            trace.called_first.setdefault(owner, tick)
            trace.called_last[owner] = tick

        handles.append(modules[owner].register_forward_pre_hook(seen))
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            with _Uses({id(q.tensor): q.name for q in params}, clock, trace):
                _call(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(saved[n])
    return trace


def _traced_positions(structure: _Structure, params: list[_Param], trace: _Trace) -> dict:
    """Each parameter's position in the pass: its first use, or the last use for a tied tensor
    (which then takes the place of the name whose module used it last)."""
    position = {}
    for q in params:
        if q.aliases:
            names = (q.name, *q.aliases)
            calls = {
                n: trace.called_last[_parent(n)] for n in names if _parent(n) in trace.called_last
            }
            if calls:
                last = max(calls, key=calls.get)
                q.place = structure.place(last)
                position[q.name] = max(calls[last], trace.last.get(q.name, -1))
            elif q.name in trace.last:
                position[q.name] = trace.last[q.name]
            continue
        tick = trace.first.get(q.name)
        if tick is None and not q.place.loose:
            tick = trace.called_first.get(q.module)
        if tick is not None:
            position[q.name] = tick
    return position


def _registered_positions(structure: _Structure, params: list[_Param]) -> dict[str, int]:
    """Positions in registration order; a tied tensor sits at its last registered name."""
    position = {}
    for q in params:
        last = max((q.name, *q.aliases), key=structure.registered.get)
        if last != q.name:
            q.place = structure.place(last)
        position[q.name] = structure.registered[last]
    return position


def _classify_by_use(params: list[_Param], ops: Mapping[str, list[str]]) -> None:
    """Give layers of unknown type (kind ``other``) the kind of the operation that consumed
    their weight: a matrix product -> dense, an embedding lookup, a convolution."""
    unknown: dict[str, list[_Param]] = {}
    for q in params:
        if q.kind == "other" and not q.place.loose:
            unknown.setdefault(q.module, []).append(q)
    for members in unknown.values():
        kinds = (
            _OP_KINDS[op]
            for q in members
            if q.tensor.ndim >= 2
            for op in ops.get(q.name, ())
            if op in _OP_KINDS
        )
        kind = next(kinds, None)
        if kind is not None:
            for q in members:
                q.kind = kind


# --------------------------------------------------------------------------------------------
# depths


@dataclass
class _Unit:
    position: float
    level: int
    anchor: bool
    block: bool
    kinds: set[str]


def _units(params: list[_Param], position: Mapping[str, int]) -> dict[str, _Unit]:
    """Every unit that has a position (the smallest position of its parameters)."""
    units: dict[str, _Unit] = {}
    for q in params:
        if q.name not in position:
            continue
        where = position[q.name]
        unit = units.get(q.place.unit)
        if unit is None:
            units[q.place.unit] = _Unit(where, q.place.level, q.place.anchor, q.place.block, set())
            unit = units[q.place.unit]
        unit.position = min(unit.position, where)
        unit.anchor = unit.anchor or q.place.anchor
        unit.kinds.add(q.kind)
    return units


def _merge_input(units: Mapping[str, _Unit], granularity: str) -> set[str]:
    """Put the input layer at one position: with blocks, every unit used before the first block;
    otherwise the embedding layers used before any other layer.  Returns the merged units."""
    blocks = [u for u in units.values() if u.block]
    if granularity == "block" and blocks:
        start = min(u.position for u in blocks)
        merged = {n for n, u in units.items() if not u.block and u.position < start}
    else:
        others = [u.position for u in units.values() if u.anchor and u.kinds != {"embedding"}]
        start = min(others, default=math.inf)
        merged = {
            n
            for n, u in units.items()
            if u.anchor and u.kinds == {"embedding"} and u.position < start
        }
    if merged:
        low = min(units[n].position for n in merged)
        for n in merged:
            units[n].position, units[n].level, units[n].anchor = low, 0, True
    return merged


def _depths(units: Mapping[str, _Unit]) -> dict[str, int]:
    """Rank the anchored units by (position, level); the others join the anchored unit that
    ran last before them (the first one if none did)."""
    anchors = [n for n, u in units.items() if u.anchor] or list(units)
    keys = sorted({(units[n].position, units[n].level) for n in anchors})
    rank = {key: i for i, key in enumerate(keys)}
    depth = {n: rank[(units[n].position, units[n].level)] for n in anchors}
    for n in units.keys() - set(anchors):
        before = [k for k in keys if k[0] <= units[n].position]
        depth[n] = rank[before[-1] if before else keys[0]]
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


def _warn_unclassified(params: list[_Param], modules: Mapping[str, nn.Module]) -> None:
    """Warn naming the module types of layers (not containers) left with kind ``other``."""
    found: dict[str, dict[str, None]] = {}
    for q in params:
        if q.kind == "other" and not q.place.loose:
            found.setdefault(type(modules[q.module]).__name__, {})[q.module] = None
    if found:
        listed = "; ".join(f"{t} ({', '.join(names)})" for t, names in found.items())
        warnings.warn(
            f"layer_table: kind 'other' for layers of type {listed}: not recognised as "
            f"{', '.join(KINDS[:-1])}; ByKind rules reach them only through 'other'",
            stacklevel=3,
        )


def layer_table(
    model: nn.Module,
    example_input: Any = None,
    granularity: str = "block",
    overrides: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per trainable parameter: which layer it belongs to, its kind and its depth.

    Args:
        model: any ``nn.Module``.
        example_input: a batch the model accepts -- a tensor (``model(x)``), a tuple or list
            (``model(*x)``) or a dict (``model(**x)``, e.g. a tokenizer's output).  ``None``
            falls back to registration order, with a warning.
        granularity: ``"block"`` (default: one depth per repeated block, with the input layer
            and the head one depth each) or ``"layer"`` (one depth per layer); see the module
            docstring.
        overrides: explicit depths by parameter name (or alias) or module name; a module name
            sets every parameter under it.

    Returns:
        A DataFrame in registration order with columns ``name``, ``module`` (the module holding
        the tensor), ``type`` (that module's class name), ``layer`` (the unit that got the
        depth: a layer, a block, or for a tied tensor the layer that used it last), ``unit``
        (``"input"``, ``"block"`` or ``"layer"``: what one depth step counts), ``kind`` (one of
        ``KINDS``), ``depth`` (0 = nearest the input), ``shape`` (tuple), ``numel``, ``aliases``
        (other names of the same tensor) and ``source`` (``"forward"``, ``"unreached"``,
        ``"registration"`` or ``"override"``).  ``attrs["granularity"]`` is the granularity and
        ``attrs["module_types"]`` maps every module holding a trainable tensor, under any of
        its names, to its class.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: an unknown ``granularity`` or a bad override.
    """
    check_module("layer_table", model)
    check_choice("granularity", granularity, GRANULARITIES)
    structure = _Structure(model, granularity)
    params = structure.params()
    source, position = "forward", {}
    if example_input is None:
        warnings.warn(
            "layer_table: no example_input, so depths follow the order in which parameters were "
            "registered, not the forward pass",
            stacklevel=2,
        )
    else:
        trace = _trace(model, params, example_input)
        position = _traced_positions(structure, params, trace)
        _classify_by_use(params, trace.ops)
        if not position and params:
            warnings.warn(
                "layer_table: the forward pass used none of the trainable parameters; depths "
                "follow registration order",
                stacklevel=2,
            )
    if not position:
        position, source = _registered_positions(structure, params), "registration"
    _warn_unclassified(params, structure.modules)
    units = _units(params, position)
    inputs = _merge_input(units, granularity)
    depth = _depths(units)

    rows, unreached = [], []
    for i, q in enumerate(params):
        unit = "input" if q.place.unit in inputs else "block" if q.place.block else "layer"
        row = dict(name=q.name, module=q.module, type=type(structure.modules[q.module]).__name__)
        row.update(layer=q.place.unit, unit=unit, kind=q.kind, aliases=q.aliases)
        row.update(shape=tuple(q.tensor.shape), numel=q.tensor.numel())
        if q.place.unit in depth:
            row["depth"], row["source"] = depth[q.place.unit], source
        else:  # take the depth of the nearest reached neighbour in registration order
            order = params[i::-1] + params[i + 1 :]
            row["depth"] = next((depth[n.place.unit] for n in order if n.place.unit in depth), 0)
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
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    holders = {_parent(n) for q in params for n in (q.name, *q.aliases)}
    table.attrs["granularity"] = granularity
    table.attrs["module_types"] = {m: type(structure.modules[m]) for m in sorted(holders)}
    return table
