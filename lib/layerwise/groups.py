"""Per-layer param groups for any torch optimizer, and a report of what went where.

``param_groups(model, lr, rule, example_input)`` builds the layer table (:mod:`layerwise.layers`),
asks the rule (:mod:`layerwise.rules`) for one multiplier per parameter and returns param-group
dicts whose own ``lr`` is ``lr * multiplier``.  Because the per-layer rate *is* the group's
``lr`` (not a side key such as timm's ``lr_scale``), every torch scheduler that scales from each
group's initial rate keeps the ratios between layers: ``LambdaLR``, ``CosineAnnealingLR``,
``StepLR`` and this package's :mod:`layerwise.schedules`.  ``OneCycleLR`` sets every group's peak
from ``max_lr``: pass one peak per group (``max_lr=[g["lr"] for g in groups]``); a scalar
``max_lr`` gives every group the same rates and erases the per-layer ratios.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from torch import nn

from ._validate import check_number, check_positive
from .layers import GRANULARITIES, KINDS, layer_table
from .rules import (
    RULES,
    ByKind,
    Discriminative,
    FromFunction,
    LayerDecay,
    Rule,
    RuleLike,
    Uniform,
    as_rule,
    register_rule,
    rule_from_spec,
)

__all__ = [
    "GRANULARITIES",
    "KINDS",
    "RULES",
    "ByKind",
    "Discriminative",
    "FromFunction",
    "LayerDecay",
    "Rule",
    "RuleLike",
    "Uniform",
    "describe",
    "layer_table",
    "param_groups",
    "register_rule",
    "rule_from_spec",
]


def _checked_multipliers(rule: RuleLike, table: pd.DataFrame) -> list[float]:
    values = list(rule.multipliers(table))
    if len(values) != len(table):
        raise ValueError(
            f"rule {rule!r} gave {len(values)} multipliers for {len(table)} parameters"
        )
    for name, m in zip(table["name"], values, strict=True):
        check_number(f"{rule!r}'s multiplier for {name!r}", m, 0, open_low=True, open_high=True)
    return [float(m) for m in values]


def param_groups(
    model: nn.Module,
    lr: float,
    rule: RuleLike | Callable[[pd.Series], float] | Mapping[str, Any],
    example_input: Any = None,
    weight_decay: float = 0.0,
    exclude_1d_from_decay: bool = True,
    granularity: str = "layer",
    overrides: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Param groups for any torch optimizer, one per (depth, kind, rate, weight decay).

    Args:
        model: any ``nn.Module``; frozen parameters are left out.
        lr: the base rate; a parameter's rate is ``lr * m`` with ``m`` its rule multiplier.
        rule: a rule object (``Uniform()``, ``Discriminative(2.6)``, ``LayerDecay(0.8)``,
            ``ByKind({"conv": 2.0})``, anything with ``multipliers(table)``), a spec dict such as
            ``{"name": "layer_decay", "decay": 0.8}``, or a function of a layer-table row.
        example_input, granularity, overrides: passed to :func:`layer_table` to find depths.
        weight_decay: the groups' ``weight_decay``.
        exclude_1d_from_decay: give tensors with at most one dimension (biases, norm gains and
            shifts) ``weight_decay=0``.

    Returns:
        Group dicts with ``params``, ``lr``, ``weight_decay`` and the JSON-able metadata
        ``names`` (parameter names), ``depth`` and ``kind``; groups are sorted by depth.  Torch
        optimizers keep the extra keys.

    Warns when a rule other than ``Uniform`` gives every parameter the same rate although the
    model has more than one layer (often a sign that depths were not found).
    """
    check_positive("lr", lr)
    check_number("weight_decay", weight_decay, 0)
    rule = as_rule(rule)
    table = layer_table(model, example_input, granularity, overrides)
    if table.empty:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    multipliers = _checked_multipliers(rule, table)
    tensors = dict(model.named_parameters())

    groups: dict[tuple, dict[str, Any]] = {}
    for row, m in zip(table.itertuples(index=False), multipliers, strict=True):
        decay = 0.0 if exclude_1d_from_decay and len(row.shape) <= 1 else float(weight_decay)
        key = (int(row.depth), row.kind, m, decay)
        group = groups.setdefault(
            key,
            {
                "params": [],
                "lr": lr * m,
                "weight_decay": decay,
                "names": [],
                "depth": int(row.depth),
                "kind": row.kind,
            },
        )
        group["params"].append(tensors[row.name])
        group["names"].append(row.name)

    if (
        not isinstance(rule, Uniform)
        and len(set(multipliers)) == 1
        and table["layer"].nunique() > 1
    ):
        warnings.warn(
            f"rule {rule!r} gives all {table['layer'].nunique()} layers the same rate "
            f"{lr * multipliers[0]:g}; check the depths with layer_table (was example_input given?)",
            stacklevel=2,
        )
    return [groups[key] for key in sorted(groups)]


def describe(groups: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per parameter of ``groups``: ``name``, ``group`` (its index), ``depth``,
    ``kind``, ``lr`` and ``weight_decay``.

    Works on the groups of :func:`param_groups` and on ``optimizer.param_groups``; groups
    without ``names``/``depth``/``kind`` get positional names and missing values.  Raises
    ``ValueError`` naming a tensor that appears twice.
    """
    rows, seen = [], {}
    for i, group in enumerate(groups):
        params = list(group["params"])
        names = list(group.get("names", ()))
        if len(names) != len(params):
            names = [f"group{i}[{j}]" for j in range(len(params))]
        for name, p in zip(names, params, strict=True):
            if id(p) in seen:
                raise ValueError(f"parameter {name!r} is listed twice (also as {seen[id(p)]!r})")
            seen[id(p)] = name
            rows.append(
                (name, i, group.get("depth"), group.get("kind"), group["lr"], group["weight_decay"])
            )
    return pd.DataFrame(rows, columns=["name", "group", "depth", "kind", "lr", "weight_decay"])
