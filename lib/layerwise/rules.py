"""Per-layer learning-rate rules: functions from the layer table to one LR multiplier per row.

The protocol is one method::

    multipliers(table: pandas.DataFrame) -> Sequence[float]

``table`` is ``layers.layer_table(...)`` (columns ``name``, ``module``, ``layer``, ``kind``,
``depth``, ``shape``, ``numel``, ``aliases``, ``source``; one row per trainable parameter) and the
result holds one positive multiplier of the base rate per row, in row order.  Any object with
that method works as a rule; a plain callable ``fn(row) -> float`` works through
:class:`FromFunction`.

Training configs name rules by JSON-able specs: :func:`rule_from_spec` turns
``{"name": ..., **constructor_args}`` into a rule and ``rule.spec()`` is its inverse.  A rule
class becomes nameable with the :func:`register_rule` decorator; subclassing :class:`Rule` as a
frozen dataclass gives it ``spec()`` for free.  A rule defined in another module (e.g. muP) is
known to :func:`rule_from_spec` once that module has been imported.

In the formulas below ``d`` is a row's depth and ``D`` the largest depth in the table.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import pandas as pd

from ._validate import check_choice, check_number, check_options, check_positive
from .layers import KINDS

__all__ = [
    "ROLES",
    "RULES",
    "ByKind",
    "Discriminative",
    "FromFunction",
    "HeadRate",
    "LayerDecay",
    "MuP",
    "Rule",
    "RuleLike",
    "Uniform",
    "WidthRoles",
    "as_rule",
    "register_rule",
    "rule_from_spec",
]


@runtime_checkable
class RuleLike(Protocol):
    """Anything that gives one LR multiplier per row of a layer table."""

    def multipliers(self, table: pd.DataFrame) -> Sequence[float]: ...


RULES: dict[str, type] = {}


def register_rule(name: str) -> Callable[[type], type]:
    """Class decorator: make a rule class reachable as ``{"name": name, **constructor_args}``.

    :func:`rule_from_spec` calls the class with the spec's other keys (renamed through a
    ``spec_keys`` mapping of argument name -> spec key, if the class has one).  A
    :class:`Rule` dataclass gets ``spec()`` for free; other classes write their own.
    """

    def register(cls: type) -> type:
        if name in RULES and RULES[name] is not cls:
            raise ValueError(f"rule name {name!r} is already taken by {RULES[name].__name__}")
        cls.name = name
        RULES[name] = cls
        return cls

    return register


class Rule:
    """Base class of named rules (subclasses are frozen dataclasses validated on creation)."""

    name: ClassVar[str] = ""
    spec_keys: ClassVar[Mapping[str, str]] = {}  # argument name -> spec key, where they differ

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        raise NotImplementedError

    def uniform_by_design(self, table: pd.DataFrame) -> bool:
        """Whether one rate for every row of ``table`` is what the rule means to give (a width
        rule at its base width), so that :func:`layerwise.groups.param_groups` need not warn."""
        return False

    def spec(self) -> dict[str, Any]:
        """A JSON-able dict that :func:`rule_from_spec` turns back into an equal rule."""
        if RULES.get(self.name) is not type(self):
            raise TypeError(f"{type(self).__name__} is not registered, so it has no spec")
        out: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[self.spec_keys.get(f.name, f.name)] = (
                dict(value) if isinstance(value, Mapping) else value
            )
        return out


def _top_distance(table: pd.DataFrame) -> pd.Series:
    """``D - d`` for every row: how many depths each row sits below the top layer."""
    return table["depth"].max() - table["depth"]


@register_rule("uniform")
@dataclasses.dataclass(frozen=True)
class Uniform(Rule):
    """One rate for every layer: multiplier 1."""

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        return [1.0] * len(table)


@register_rule("discriminative")
@dataclasses.dataclass(frozen=True)
class Discriminative(Rule):
    """Discriminative fine-tuning (Howard & Ruder 2018, ULMFiT, arXiv:1801.06146, section 3.2).

    ULMFiT divides the rate by ``factor`` (2.6 in the paper) for each layer further down:
    ``eta^(l-1) = eta^l / factor``, so with the top layer at ``lr``::

        toward="input":   m_d = factor ** -(D - d)    (top at lr, input layer slowest)
        toward="output":  m_d = factor ** -d          (input layer at lr, deeper layers slower)

    ``Discriminative(f)`` equals ``LayerDecay(1 / f)`` for ``f >= 1``.
    """

    factor: float = 2.6
    toward: str = "input"

    def __post_init__(self) -> None:
        check_positive("Discriminative factor", self.factor)
        check_choice("Discriminative direction (toward)", self.toward, ("input", "output"))

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        steps = _top_distance(table) if self.toward == "input" else table["depth"]
        return [float(self.factor ** -int(s)) for s in steps]


@register_rule("layer_decay")
@dataclasses.dataclass(frozen=True)
class LayerDecay(Rule):
    """Layer-wise learning-rate decay, LLRD (ELECTRA, Clark et al. 2020, arXiv:2003.10555;
    BEiT, Bao et al. 2022, arXiv:2106.08254).

    The top layer (the head) keeps ``lr``; each layer below is multiplied by ``decay``, so the
    input embeddings get the smallest rate::

        m_d = decay ** (D - d),   0 < decay <= 1

    Depths are consecutive, so the head sits one step above the last layer below it.  With the
    layer table's default ``granularity="block"`` that is BEiT's convention (embeddings 0, block
    k at k + 1, head at the top) and, for a model with a pooler such as BERT, ELECTRA's layer
    map (pooler at ``n_layers + 1``, classifier at ``n_layers + 2``).  ELECTRA's code puts the
    head at ``n_layers + 2`` also without a pooler, one step further than ours, so its
    embeddings get one extra factor of ``decay`` (google-research/electra#64 calls that a
    mistake).  ``LayerDecay(x)`` equals ``Discriminative(1 / x, toward="input")``.
    """

    decay: float = 0.8

    def __post_init__(self) -> None:
        check_number("LayerDecay decay", self.decay, 0, 1, open_low=True)

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        return [float(self.decay ** int(s)) for s in _top_distance(table)]


@register_rule("head")
@dataclasses.dataclass(frozen=True)
class HeadRate(Rule):
    """Two rates: the head (the top depth of the layer table) at ``multiplier`` times the base
    rate, every layer below it at the base rate::

        m_d = multiplier   if d == D,   1 otherwise

    In fine-tuning, a classifier head drawn afresh on top of a pretrained body may want a
    larger rate than the body: tuning the base rate and ``multiplier`` is tuning the body's and
    the head's rates separately (the "two rates" arm that ULMFiT's discriminative rates are
    compared with).  ``HeadRate(1)`` is :class:`Uniform`.
    """

    multiplier: float = 1.0

    def __post_init__(self) -> None:
        check_positive("HeadRate multiplier", self.multiplier)

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        return [float(self.multiplier) if s == 0 else 1.0 for s in _top_distance(table)]


@register_rule("by_kind")
@dataclasses.dataclass(frozen=True)
class ByKind(Rule):
    """Type-wise rates: ``m = multipliers[kind]`` for the kinds listed, 1 for the others.

    Kinds are those of ``layers.KINDS`` (dense, conv, recurrent, attention, embedding, norm,
    other).
    """

    multipliers_by_kind: Mapping[str, float] = dataclasses.field(default_factory=dict)
    spec_keys: ClassVar[Mapping[str, str]] = {"multipliers_by_kind": "multipliers"}

    def __post_init__(self) -> None:
        object.__setattr__(self, "multipliers_by_kind", dict(self.multipliers_by_kind))
        for kind, m in self.multipliers_by_kind.items():
            check_choice("layer kind", kind, KINDS)
            check_positive(f"ByKind multiplier for {kind!r}", m)

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        return [float(self.multipliers_by_kind.get(k, 1.0)) for k in table["kind"]]


@dataclasses.dataclass(frozen=True)
class FromFunction(Rule):
    """An explicit rule: ``m = fn(row)`` for each row (a ``pandas.Series`` of the layer table).

    It wraps Python code, so it has no JSON spec and cannot be named in a training config.
    """

    fn: Callable[[pd.Series], float]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"FromFunction needs a callable, got {self.fn!r}")

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        return [float(self.fn(row)) for _, row in table.iterrows()]


_VECTOR_KINDS = ("norm", "other")


@register_rule("mup")
@dataclasses.dataclass(frozen=True)
class MuP(Rule):
    """muP per-layer learning-rate multipliers (Yang et al. 2021, "Tensor Programs V",
    arXiv:2203.03466, Table 3 in the readout-multiplier form of Table 8).

    With ``m = width / base_width`` and each row's class read from its shape (see
    :mod:`layerwise.mup`)::

        Adam(W):  hidden m_row = 1 / m;  input weights, biases, norm gains, readout  m_row = 1
        SGD:      hidden m_row = 1;      input weights, biases, gains  m_row = m if the fan-out
                  grows with width else 1;  readout m_row = m

    ``base_width`` is the width at which muP equals SP; ``optimizer`` is ``"adam"`` (also AdamW)
    or ``"sgd"`` (with or without momentum); ``width`` is the model width (default: the fan-in of
    the readout ``head.weight``, found by name or among a row's ``aliases`` when the head is tied
    to an embedding).  The rates are only muP for a model prepared by
    :func:`layerwise.mup.to_mup`, whose readout multiplies its input by ``1/m``, so
    :meth:`multipliers` refuses a table whose ``head`` is not such a readout: ``table`` must be
    :func:`layerwise.layers.layer_table`'s (its ``attrs["module_types"]`` names each module's
    class).
    """

    base_width: int
    optimizer: str = "adam"
    width: int | None = None

    def __post_init__(self) -> None:
        check_positive("base_width", self.base_width)
        if self.width is not None:
            check_positive("width", self.width)
        check_choice("muP optimizer", self.optimizer, ("adam", "sgd"))

    def spec(self) -> dict[str, Any]:
        """A JSON-able description, e.g. ``{"name": "mup", "base_width": 64, "optimizer": "adam"}``
        (``width`` only when given); :func:`rule_from_spec` inverts it."""
        spec = super().spec()
        return spec if self.width is not None else {k: v for k, v in spec.items() if k != "width"}

    def model_width(self, table: pd.DataFrame) -> int:
        """``width`` if given, else the fan-in of the readout ``head.weight``."""
        if self.width is not None:
            return self.width
        aliases = table["aliases"] if "aliases" in table else [()] * len(table)
        for row, names in zip(table.itertuples(index=False), aliases, strict=True):
            if "head.weight" in (row.name, *names):
                return int(row.shape[1])  # (classes, width) for a Linear head or a tied embedding
        raise ValueError(
            "cannot infer the model width: no 'head.weight' in the table; pass MuP(..., width=...)"
        )

    def uniform_by_design(self, table: pd.DataFrame) -> bool:
        """At ``base_width`` muP is SP: one rate for every layer."""
        return self.model_width(table) == self.base_width

    def classes(self, table: pd.DataFrame) -> list[str]:
        """``"input"``, ``"hidden"`` or ``"output"`` per row (rules in :mod:`layerwise.mup`)."""
        width = self.model_width(table)
        return [_mup_class(row, width)[0] for row in table.itertuples(index=False)]

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        """Learning-rate multiplier of each row, relative to the base width (1 at ``base_width``).

        Raises ``ValueError`` unless the table's ``head`` is a muP readout (see the class
        docstring)."""
        _check_mup_readout(table)
        width = self.model_width(table)
        m = width / self.base_width
        result = []
        for row in table.itertuples(index=False):
            cls, fan_out_grows = _mup_class(row, width)
            if self.optimizer == "adam":
                result.append(1.0 / m if cls == "hidden" else 1.0)
            elif cls == "hidden":
                result.append(1.0)
            else:  # input weights, biases and the multiplied readout: x fan_out
                result.append(m if fan_out_grows or cls == "output" else 1.0)
        return result


def _check_mup_readout(table: pd.DataFrame) -> None:
    """Refuse a table whose model was not prepared by ``layerwise.mup.to_mup``: its ``head``
    must be a class that declares ``mup_readout = True`` (``layerwise.mup.Readout``)."""
    types = table.attrs.get("module_types")
    if types is None:
        raise ValueError(
            "MuP needs the layer table of the model (layerwise.layers.layer_table(model)), "
            "which records the module types; got a table without attrs['module_types']"
        )
    head = types.get("head")
    if not getattr(head, "mup_readout", False):
        found = "no module 'head'" if head is None else f"'head' is {head.__name__}"
        raise ValueError(
            f"MuP rates are muP only for a model prepared by layerwise.mup.to_mup(model, "
            f"base_width), whose head is a muP Readout; {found}: call to_mup on the freshly "
            "built model first"
        )


def _mup_class(row: Any, width: int) -> tuple[str, bool]:
    """(muP class, does the fan-out grow with width) of one table row."""
    shape = tuple(row.shape)
    grows = [d % width == 0 for d in shape]
    if len(shape) < 2 or row.kind in _VECTOR_KINDS:
        return "input", any(grows)
    fan_in, fan_out = (grows[0], grows[1]) if row.kind == "embedding" else (grows[1], grows[0])
    if row.name == "head.weight":
        if not fan_in or fan_out:
            raise ValueError(f"head.weight of shape {shape} is not a readout of width {width}")
        return "output", False
    if fan_in and fan_out:
        return "hidden", True
    if fan_in:
        raise ValueError(
            f"{row.name} of shape {shape} maps width {width} to a fixed size like a readout; "
            "muP needs a readout multiplier for it, which only `head` gets"
        )
    return "input", fan_out


ROLES: tuple[str, ...] = ("input", "hidden", "output", "vector", "fixed")


@register_rule("width_roles")
@dataclasses.dataclass(frozen=True)
class WidthRoles(Rule):
    """Per-role rates that scale with width, on a model in the standard parametrisation (SP).

    Every trainable tensor gets a *role* from its shape (the weight classes of Tensor Programs
    V, Yang et al. 2021, arXiv:2203.03466, Table 3, read as in :class:`MuP`), and the multiplier
    ``m_row = factors[role] * (width / base_width) ** exponents[role]`` (a role left out: factor
    1, exponent 0).  Roles:

    * ``input``: weights of two or more dimensions whose fan-in is fixed and fan-out grows with
      width -- an embedding, the first dense layer, a transformer's position embedding;
    * ``hidden``: matrices whose fan-in and fan-out both grow;
    * ``output``: the readout ``head.weight``;
    * ``vector``: 1-D tensors whose size grows with width (biases of input and hidden layers,
      norm gains and shifts);
    * ``fixed``: 1-D tensors of a fixed size (the head's bias).

    Written relative to ``base_width``, every rule equals SP's single rate at ``width ==
    base_width``.  Examples (``m = width / base_width``):

    * Everett et al. 2024 ("Scaling Exponents Across Parameterizations and Optimizers",
      arXiv:2407.05872), SP with per-layer Adam rates: embedding O(1), hidden O(1/width),
      readout O(1/width) -- ``exponents={"hidden": -1, "output": -1}``;
    * Table 3's SGD rates on an SP initialisation (input and width-sized biases ``x m``, hidden
      ``x 1``, readout ``x 1/m``) -- ``exponents={"input": 1, "vector": 1, "output": -1}``;
    * Kalra & Barkeshli 2026 (arXiv:2605.21486), SP with only the embedding's rate raised by the
      width factor -- ``exponents={"input": 1}``;
    * one role's rate times ``2^k`` at any width -- ``factors={"output": 2**k}``.

    ``width`` is the model width (default: the fan-in of ``head.weight``, as :class:`MuP`
    finds it).  Unlike :class:`MuP` it does not ask for a model prepared by ``mup.to_mup``: it
    is meant for SP models (on a muP model ``head.weight`` is still the ``output`` role).
    """

    base_width: int
    exponents: Mapping[str, float] = dataclasses.field(default_factory=dict)
    factors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    width: int | None = None

    def __post_init__(self) -> None:
        check_positive("base_width", self.base_width)
        if self.width is not None:
            check_positive("width", self.width)
        object.__setattr__(self, "exponents", dict(self.exponents))
        object.__setattr__(self, "factors", dict(self.factors))
        for role, e in self.exponents.items():
            check_choice("width role", role, ROLES)
            check_number(f"WidthRoles exponent for {role!r}", e, -4, 4)
        for role, f in self.factors.items():
            check_choice("width role", role, ROLES)
            check_positive(f"WidthRoles factor for {role!r}", f)

    def spec(self) -> dict[str, Any]:
        """A JSON-able description: ``base_width``, and ``exponents``, ``factors`` and ``width``
        only where they are set (so equal rules give equal specs); inverted by
        :func:`rule_from_spec`."""
        spec = super().spec()
        return {k: v for k, v in spec.items() if v not in (None, {})}

    def model_width(self, table: pd.DataFrame) -> int:
        """``width`` if given, else the fan-in of the readout ``head.weight`` (as
        :meth:`MuP.model_width`)."""
        return MuP(self.base_width, width=self.width).model_width(table)

    def uniform_by_design(self, table: pd.DataFrame) -> bool:
        """At ``base_width`` a rule without ``factors`` is SP: one rate for every layer."""
        return self.model_width(table) == self.base_width and not self.factors

    def roles(self, table: pd.DataFrame) -> list[str]:
        """The role of every row (see the class docstring)."""
        width = self.model_width(table)
        out = []
        for row in table.itertuples(index=False):
            cls, fan_out_grows = _mup_class(row, width)
            if len(tuple(row.shape)) < 2:
                out.append("vector" if fan_out_grows else "fixed")
            else:
                out.append(cls)
        return out

    def multipliers(self, table: pd.DataFrame) -> list[float]:
        """``factors[role] * (width / base_width) ** exponents[role]`` for every row."""
        m = self.model_width(table) / self.base_width
        return [
            float(self.factors.get(r, 1.0) * m ** self.exponents.get(r, 0.0))
            for r in self.roles(table)
        ]


def rule_from_spec(spec: Mapping[str, Any]) -> RuleLike:
    """The rule a JSON-able spec names, e.g. ``{"name": "layer_decay", "decay": 0.8}``.

    Names: ``uniform``; ``discriminative`` (``factor``, ``toward``); ``layer_decay``
    (``decay``); ``by_kind`` (``multipliers``: kind -> multiplier); ``mup`` (``base_width``,
    ``optimizer``, ``width``); ``width_roles`` (``base_width``, ``exponents``, ``factors``,
    ``width``); plus any rule registered with :func:`register_rule`.
    """
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"a rule spec is a dict with a 'name' key, got {spec!r}")
    cls = RULES[check_choice("rule", spec["name"], RULES)]
    renamed = getattr(cls, "spec_keys", {})
    field_of = {renamed.get(a, a): a for a in inspect.signature(cls).parameters}
    options = {k: v for k, v in spec.items() if k != "name"}
    check_options(f"{spec['name']} rule", options, field_of)
    return cls(**{field_of[k]: v for k, v in options.items()})


def as_rule(rule: RuleLike | Callable[[pd.Series], float] | Mapping[str, Any]) -> RuleLike:
    """Accept a rule object, a spec dict (see :func:`rule_from_spec`) or a row function.

    Raises ``TypeError`` for a rule class given instead of an instance (``Discriminative``
    rather than ``Discriminative(2.6)``) and for anything that is none of the three.
    """
    if isinstance(rule, type):
        raise TypeError(
            f"got the rule class {rule.__name__}, not a rule; create one, "
            f"e.g. {rule.__name__}(...) with its arguments"
        )
    if isinstance(rule, RuleLike):
        return rule
    if isinstance(rule, Mapping):
        return rule_from_spec(rule)
    if callable(rule):
        return FromFunction(rule)
    raise TypeError(
        f"a rule needs a multipliers(table) method, got {type(rule).__name__} {rule!r}; "
        "pass a rule object, a spec dict or a function of a layer-table row"
    )
