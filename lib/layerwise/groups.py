"""Per-layer param groups for any torch optimizer, a report of what went where, and a check that
the rates still stand in the ratios they were given.

``param_groups(model, lr, rule, example_input)`` builds the layer table (:mod:`layerwise.layers`),
asks the rule (:mod:`layerwise.rules`) for one multiplier ``m`` per parameter and returns
param-group dicts whose own ``lr`` is ``lr * m``.  :func:`resolve` gives the same assignment as a
table (one row per parameter with its ``multiplier``), :func:`describe` reports the groups per
parameter or per layer, and :func:`check` warns when the groups' rates have drifted from the
ratios ``param_groups`` set.

Because the per-layer rate *is* the group's ``lr`` (not a side key such as timm's
``lr_scale``), every torch scheduler that scales from each group's initial rate keeps the ratios
between layers: ``LambdaLR``, ``CosineAnnealingLR``, ``StepLR`` and this package's
:mod:`layerwise.schedules`.  ``OneCycleLR`` sets every group's peak from ``max_lr``: pass one
peak per group (``max_lr=[g["lr"] for g in groups]``); a scalar ``max_lr`` gives every group the
same rate and erases the per-layer ratios, which :func:`check` (and ``probes.Monitor``) report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from ._validate import check_choice, check_number, check_positive
from .layers import GRANULARITIES, KINDS, check_module, layer_table
from .rules import (
    RULES,
    ByKind,
    Discriminative,
    FromFunction,
    LayerDecay,
    MuP,
    Rule,
    RuleLike,
    Uniform,
    WidthRoles,
    as_rule,
    register_rule,
    rule_from_spec,
)

__all__ = [
    "GRANULARITIES",
    "KINDS",
    "MAX_SPAN",
    "RULES",
    "ByKind",
    "Discriminative",
    "FromFunction",
    "LayerDecay",
    "MuP",
    "Rule",
    "RuleLike",
    "Uniform",
    "WidthRoles",
    "check",
    "describe",
    "layer_table",
    "param_groups",
    "register_rule",
    "resolve",
    "rule_from_spec",
]

MAX_SPAN = 1e3  # largest over smallest multiplier beyond which resolve() warns

AnyRule = RuleLike | Callable[[pd.Series], float] | Mapping[str, Any]


def _checked_multipliers(rule: RuleLike, table: pd.DataFrame) -> list[float]:
    values = list(rule.multipliers(table))
    if len(values) != len(table):
        raise ValueError(
            f"rule {rule!r} gave {len(values)} multipliers for {len(table)} parameters"
        )
    for name, m in zip(table["name"], values, strict=True):
        check_number(f"{rule!r}'s multiplier for {name!r}", m, 0, open_low=True, open_high=True)
    return [float(m) for m in values]


def _warn_span(rule: RuleLike, table: pd.DataFrame) -> None:
    low, high = table["multiplier"].min(), table["multiplier"].max()
    if high / low > MAX_SPAN:
        levels = table["depth"].nunique()
        warnings.warn(
            f"rule {rule!r} spreads the rates over a factor {high / low:.3g} (multipliers "
            f"{low:.3g} to {high:.3g} over {levels} depths, granularity="
            f"{table.attrs.get('granularity')!r}); check that this is what you mean (for a "
            "depth rule: layer_table(..., granularity='block') counts blocks; a width rule "
            "spreads with the width ratio by design)",
            stacklevel=3,
        )


def resolve(
    model: nn.Module,
    rule: AnyRule,
    example_input: Any = None,
    granularity: str = "block",
    overrides: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """The layer table of ``model`` with the ``multiplier`` ``rule`` gives each parameter.

    One row per trainable parameter with the columns of :func:`layerwise.layers.layer_table`
    (``name``, ``layer``, ``unit``, ``kind``, ``depth``, ...) plus ``multiplier``: the
    parameter's rate is ``lr * multiplier``.  This is what :func:`param_groups` builds its groups
    from, so a notebook can print what multiplier each block received::

        resolve(model, Discriminative(2.6), x).groupby("layer", sort=False)["multiplier"].first()

    Warns when the multipliers span more than ``MAX_SPAN`` (a depth rule over per-sub-layer
    depths can reach ``1e-10``).  Raises ``TypeError`` for a model that is not an ``nn.Module``
    or a rule that is not a rule, ``ValueError`` for a model without trainable parameters or a
    rule that gives a non-positive multiplier.
    """
    check_module("resolve", model)
    rule = as_rule(rule)
    table = layer_table(model, example_input, granularity, overrides)
    if table.empty:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    table["multiplier"] = _checked_multipliers(rule, table)
    _warn_span(rule, table)
    return table


def param_groups(
    model: nn.Module,
    lr: float,
    rule: AnyRule,
    example_input: Any = None,
    weight_decay: float = 0.0,
    exclude_1d_from_decay: bool = True,
    granularity: str = "block",
    overrides: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Param groups for any torch optimizer, one per (depth, kind, rate, weight decay).

    Args:
        model: any ``nn.Module``; frozen parameters are left out.
        lr: the base rate; a parameter's rate is ``lr * m`` with ``m`` its rule multiplier.
        rule: a rule object (``Uniform()``, ``Discriminative(2.6)``, ``LayerDecay(0.8)``,
            ``ByKind({"conv": 2.0})``, anything with ``multipliers(table)``), a spec dict such as
            ``{"name": "layer_decay", "decay": 0.8}``, or a function of a layer-table row.
        example_input, granularity, overrides: passed to :func:`layer_table` to find depths;
            ``granularity="block"`` (default) gives one depth per block, ``"layer"`` one per
            sub-layer.
        weight_decay: the groups' ``weight_decay``.
        exclude_1d_from_decay: give tensors with at most one dimension (biases, norm gains and
            shifts) ``weight_decay=0``.

    Returns:
        Group dicts with ``params``, ``lr``, ``weight_decay`` and the JSON-able metadata
        ``names`` (parameter names), ``layers`` and ``units`` (each name's layer-table
        ``layer`` and ``unit``), ``depth``, ``kind`` and ``multiplier`` (the rule's ``m``, which
        :func:`check` compares the rates with); groups are sorted by depth.  Torch optimizers
        keep the extra keys.

    Warns when a rule other than ``Uniform`` gives every parameter the same rate although the
    model has more than one layer (often a sign that depths were not found; not for a rule
    whose ``uniform_by_design(table)`` says so, such as a width rule at its base width), and
    when the multipliers span more than ``MAX_SPAN`` (see :func:`resolve`).
    """
    check_module("param_groups", model)
    check_positive("lr", lr)
    check_number("weight_decay", weight_decay, 0)
    rule = as_rule(rule)
    table = resolve(model, rule, example_input, granularity, overrides)
    tensors = dict(model.named_parameters())

    groups: dict[tuple, dict[str, Any]] = {}
    for row in table.itertuples(index=False):
        decay = 0.0 if exclude_1d_from_decay and len(row.shape) <= 1 else float(weight_decay)
        key = (int(row.depth), row.kind, row.multiplier, decay)
        group = groups.setdefault(key, _new_group(lr, row, decay))
        group["params"].append(tensors[row.name])
        group["names"].append(row.name)
        group["layers"].append(row.layer)
        group["units"].append(row.unit)

    if (
        not isinstance(rule, Uniform)
        and table["multiplier"].nunique() == 1
        and table["layer"].nunique() > 1
        and not getattr(rule, "uniform_by_design", lambda _: False)(table)
    ):
        warnings.warn(
            f"rule {rule!r} gives all {table['layer'].nunique()} layers the same rate "
            f"{lr * table['multiplier'].iloc[0]:g}; check the depths with layer_table (was "
            "example_input given?)",
            stacklevel=2,
        )
    return [groups[key] for key in sorted(groups)]


def _new_group(lr: float, row: Any, decay: float) -> dict[str, Any]:
    return {
        "params": [],
        "lr": lr * row.multiplier,
        "weight_decay": decay,
        "names": [],
        "layers": [],
        "units": [],
        "depth": int(row.depth),
        "kind": row.kind,
        "multiplier": row.multiplier,
    }


def _groups_of(groups: Sequence[Mapping[str, Any]] | torch.optim.Optimizer) -> list:
    if isinstance(groups, torch.optim.Optimizer):
        return list(groups.param_groups)
    if isinstance(groups, (str, bytes, Mapping)) or not isinstance(groups, Sequence):
        raise TypeError(
            "expected param groups (a list of dicts) or a torch optimizer, got "
            f"{type(groups).__name__} {groups!r:.80}"
        )
    return list(groups)


_PARAMETER_COLUMNS = ["name", "group", "layer", "unit", "depth", "kind", "multiplier", "lr"]


def describe(
    groups: Sequence[Mapping[str, Any]] | torch.optim.Optimizer, by: str = "parameter"
) -> pd.DataFrame:
    """What went where, at which rate: one row per parameter, or per layer (``by="layer"``).

    ``by="parameter"``: columns ``name``, ``group`` (its index), ``layer`` (the unit that got
    the depth), ``unit`` (``"block"`` where one depth step is a whole block, ``"input"`` for the
    input layer, ``"layer"`` otherwise), ``depth``, ``kind``, ``multiplier``, ``lr`` and
    ``weight_decay``.

    ``by="layer"``: one row per (layer, rate): ``depth``, ``layer``, ``unit``, ``kinds`` (the
    kinds in it, joined by ``+``), ``tensors``, ``numel``, ``multiplier``, ``lr`` -- what
    multiplier each block received.

    Works on the groups of :func:`param_groups`, on ``optimizer.param_groups`` or on the
    optimizer itself; groups without the metadata get positional names and missing values.
    Raises ``ValueError`` naming a tensor that appears twice.
    """
    check_choice("describe by", by, ("parameter", "layer"))
    rows, seen = [], {}
    for i, group in enumerate(_groups_of(groups)):
        params = list(group["params"])
        names = list(group.get("names", ()))
        if len(names) != len(params):
            names = [f"group{i}[{j}]" for j in range(len(params))]
        layers = list(group.get("layers", [None] * len(params)))
        units = list(group.get("units", [None] * len(params)))
        for name, p, layer, unit in zip(names, params, layers, units, strict=True):
            if id(p) in seen:
                raise ValueError(f"parameter {name!r} is listed twice (also as {seen[id(p)]!r})")
            seen[id(p)] = name
            rows.append(
                (name, i, layer, unit, group.get("depth"), group.get("kind"))
                + (group.get("multiplier"), group["lr"], group["weight_decay"], p.numel())
            )
    frame = pd.DataFrame(rows, columns=[*_PARAMETER_COLUMNS, "weight_decay", "numel"])
    if by == "parameter":
        return frame.drop(columns="numel")
    keys = ["depth", "layer", "unit", "multiplier", "lr"]
    summary = frame.groupby(keys, sort=False, dropna=False).agg(
        kinds=("kind", lambda kinds: "+".join(sorted(set(map(str, kinds))))),
        tensors=("name", "size"),
        numel=("numel", "sum"),
    )
    summary = summary.reset_index()[
        ["depth", "layer", "unit", "kinds", "tensors", "numel"] + ["multiplier", "lr"]
    ]
    return summary.sort_values(["depth", "lr"], kind="stable").reset_index(drop=True)


def check(groups: Sequence[Mapping[str, Any]] | torch.optim.Optimizer, rtol: float = 1e-6) -> bool:
    """Do the groups' rates still stand in the ratios :func:`param_groups` set?

    Each group from :func:`param_groups` keeps its rule multiplier ``m_i`` (key ``multiplier``).
    With ``top`` the group of the largest multiplier, the ratios hold when

        lr_i / lr_top == m_i / m_top      (within ``rtol``) for every group i,

    which is what a ratio-keeping scheduler preserves.  Returns ``True`` if they hold (or there
    is nothing to compare: fewer than two groups with ``multiplier``, or a top rate of 0 at the
    end of a decay); otherwise warns, naming the groups that drifted, and returns ``False``.
    A scheduler that sets rates directly, such as ``OneCycleLR`` with a scalar ``max_lr``,
    makes them drift; so does FreezeOut, on purpose.
    """
    tracked = {i: g for i, g in enumerate(_groups_of(groups)) if g.get("multiplier")}
    if len(tracked) < 2:
        return True
    top = max(tracked, key=lambda i: tracked[i]["multiplier"])
    top_lr, top_m = float(tracked[top]["lr"]), float(tracked[top]["multiplier"])
    if top_lr == 0:
        return True
    drifted = {
        i: (float(g["lr"]) / top_lr, float(g["multiplier"]) / top_m)
        for i, g in tracked.items()
        if not math.isclose(float(g["lr"]) / top_lr, float(g["multiplier"]) / top_m, rel_tol=rtol)
    }
    if not drifted:
        return True
    listed = "; ".join(
        f"group {i} ({_first_name(tracked[i])}): rate ratio {actual:.4g}, set {intended:.4g}"
        for i, (actual, intended) in list(drifted.items())[:3]
    )
    more = f" and {len(drifted) - 3} more" if len(drifted) > 3 else ""
    warnings.warn(
        "param groups no longer keep the rate ratios param_groups set, relative to group "
        f"{top} ({_first_name(tracked[top])}): {listed}{more}.  A scheduler that sets each rate "
        "directly (OneCycleLR with a scalar max_lr, CyclicLR) erases per-layer ratios; pass one "
        "value per group, e.g. max_lr=[g['lr'] for g in groups]",
        stacklevel=2,
    )
    return False


def _first_name(group: Mapping[str, Any]) -> str:
    names = group.get("names") or ["?"]
    return f"{names[0]}, ..." if len(names) > 1 else names[0]
