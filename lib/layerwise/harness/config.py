"""``RunConfig``: the frozen, JSON-serialisable description of one training run.

Two configs that describe the same run have the same canonical JSON and so the same store key
(whole numbers are stored as integers, so ``steps=10.0`` is ``steps=10``); every name and number
is checked when the config is made, before any compute starts: the choices against the modules
that define them, the rule spec by ``rules.rule_from_spec``, the model options by building the
model (``models.build``, once per distinct options), the optimizer options by constructing the
optimizer over a dummy tensor, the schedule's options against ``schedules`` (and their values
when the budget is in steps), the data options' names against those ``data.load`` accepts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch

from .. import optim, rules, schedules
from .._validate import check_choice, check_int, check_options
from ..freezeout import freeze_times
from . import data, models

__all__ = [
    "FORMAT_VERSION",
    "RunConfig",
    "data_option_names",
    "optimizer_option_names",
    "schedule_option_names",
]

# Bump whenever training semantics change: old records then no longer match any key.
FORMAT_VERSION = 1

# Fields added after records were first stored.  They are left out of the canonical JSON while
# they hold their default, so every config that does not use them keeps the key it had before.
_OMITTED_AT_DEFAULT: tuple[str, ...] = (
    "probe_every",
    "probe_examples",
    "grad_clip",
    "init_from",
    "reinit",
    "unfreeze_every",
    "device",
    "probe_points",
    "freezeout",
)
# ``freezeout`` options and their defaults (every config stores all four, so equal runs give
# equal keys)
FREEZEOUT_DEFAULTS: dict[str, Any] = {"spacing": "linear", "scaled": False, "anneal": True}
# Where a run may train: torch device strings (``cuda:1`` names one GPU of several).
DEVICES = ("cpu", "cuda", "cuda:<index>", "mps")


class FrozenDict(dict):
    """A ``dict`` that refuses changes after creation (so a frozen config stays frozen)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("RunConfig options are read-only; use RunConfig.replace(...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True))

    def __reduce__(self):  # pickling (worker processes) must not go through __setitem__
        return (FrozenDict, (dict(self),))


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenDict({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


# --------------------------------------------------------------------------------------------
# what the modules behind a config accept (read-only introspection)


def data_option_names(dataset: str) -> frozenset[str]:
    """The option names ``data.load`` accepts for ``dataset`` (read from its own table)."""
    check_choice("dataset", dataset, data.DATASETS)
    return frozenset(data._OPTIONS[dataset])


@functools.cache
def optimizer_option_names(optimizer: str) -> frozenset[str]:
    """The keyword arguments of optimizer ``optimizer`` besides ``params`` and ``lr``."""
    cls = optim.OPTIMIZERS[check_choice("optimizer", optimizer, optim.OPTIMIZERS)]
    return frozenset(inspect.signature(cls).parameters) - {"params", "lr"}


@functools.cache
def schedule_option_names(schedule: str) -> frozenset[str]:
    """The options of schedule ``schedule`` (its factory's arguments after ``total_steps``)."""
    factory = schedules.SCHEDULES[check_choice("schedule", schedule, schedules.SCHEDULES)]
    return frozenset(list(inspect.signature(factory).parameters)[1:])


@functools.lru_cache(maxsize=512)
def _check_model(model: str, dataset: str, options: FrozenDict) -> None:
    """Build the model once (keeping the global RNG as it was): ``models.build`` checks every
    option's name and value."""
    try:
        with torch.random.fork_rng(devices=[]):
            models.build(model, dataset, **options)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"model_options {_plain(options)!r} for {model} on {dataset}: {exc}"
        ) from None


# --------------------------------------------------------------------------------------------
# numbers


def _whole(what: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` if it is a whole number >= ``minimum`` (``10.0`` becomes ``10``)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_int(what, value, minimum)


def _finite_positive(what: str, value: Any) -> float:
    """``value`` as a ``float`` if it is a finite real number > 0."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def _plain(value: Any) -> Any:
    """Frozen options as plain dicts and lists, for messages."""
    return json.loads(json.dumps(value))


def _check_json(what: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what} must be plain JSON (finite numbers, strings, lists, dicts), got {value!r} "
            f"({exc})"
        ) from None


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run.

    Attributes:
        dataset: a name in ``data.DATASETS``; ``data_options`` go to ``data.load``.
        model: a family in ``models.MODELS``; ``model_options`` go to ``models.build``.
        optimizer: a name in ``optim.OPTIMIZERS``; ``lr`` is the base rate and
            ``optimizer_options`` the other keyword arguments (weight decay, betas, ...).
        rule: a per-layer rate rule as a spec dict (``groups.rule_from_spec``), ``None`` for one
            rate everywhere.
        schedule: a name in ``schedules.SCHEDULES`` with ``schedule_options``.
        batch_size: examples (sequences for text) per step.
        steps / epochs: the budget; give exactly one.  An epoch is ``len(train) // batch_size``
            steps (for text: characters / (batch_size * block)).
        eval_every: steps between evaluations on the validation split (and at the end).
        seed: seeds initialisation and data order.
        threads: torch intra-op threads for this run.
        block: characters per training sequence of a language task (ignored otherwise).
        monitor_every: record per-layer statistics every this many steps (``None``: off).
        diverge_factor: a training loss above this multiple of the first loss counts as diverged.
        probe_every: keep convergence checkpoints (representations on a fixed probe batch and
            weights, ``probes.ConvergenceTracker``) every this many steps (``None``: off).
        probe_examples: validation examples (text: validation windows) in the probe batch.
        grad_clip: clip the global gradient norm to this value before each step (``None``: off).
        init_from: the config (``to_dict()``, or the ``RunConfig`` itself) of a pretraining run
            whose final weights initialise this one (``harness.pretraining.pretrained_state``); ``None``
            trains from scratch.  Stored in canonical form, so equal runs give equal keys.
        reinit: top-level modules of the model that keep their fresh seeded initialisation
            instead of the pretrained weights (ULMFiT's new classifier head); only with
            ``init_from``.
        unfreeze_every: ULMFiT's gradual unfreezing (``transfer.GradualUnfreezing``): train only
            the top depth for this many steps, then one more depth below every this many steps
            (``None``: every layer trains from the first step).
        probe_points: keep this many convergence checkpoints at log-spaced steps instead
            (``probes.log_checkpoints``: step 0, the final step, dense early), with the
            re-initialisation table at every one of them and re-randomisation robustness
            besides, for classifiers (``None``: off); exclusive with ``probe_every``.
        device: where the model and the data live while it trains: ``"cpu"``, ``"cuda"``,
            ``"cuda:<index>"`` or ``"mps"``.  Part of the run's identity (numbers differ
            between devices), so a GPU run never stands in for a CPU run in the store.
        freezeout: progressive freezing (``layerwise.freezeout.FreezeOut``; Brock et al. 2017),
            ``{"t_0": ..., "spacing": "linear" | "squared" | "cubic", "scaled": bool,
            "anneal": bool}`` (``t_0`` required, the others default to linear, unscaled,
            annealed).  With ``anneal`` (FreezeOut) each depth's own warmup-then-cosine to its
            stop time replaces the run's schedule, which must then be ``cosine`` to ``final=0``
            (its ``warmup`` carries over); without it (Raghu et al.'s freeze training) the run's
            schedule sets the rates and depths only stop.  Needs a ``rule`` (the groups carry
            the depths); ``None``: no freezing.

    The fields added after the first stored records (``probe_every``, ``probe_examples``,
    ``grad_clip``, ``init_from``, ``reinit``, ``unfreeze_every``, ``device``,
    ``probe_points``, ``freezeout``) are left out of
    the canonical JSON (and so of the key and ``to_dict``) while they hold their defaults:
    configs that do not use them keep their keys.
    """

    dataset: str
    model: str
    lr: float
    batch_size: int
    optimizer: str = "adamw"
    steps: int | None = None
    epochs: float | None = None
    eval_every: int = 250
    seed: int = 0
    threads: int = 1
    block: int = 64
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    optimizer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rule: Mapping[str, Any] | None = None
    schedule: str = "constant"
    schedule_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    monitor_every: int | None = None
    diverge_factor: float = 5.0
    probe_every: int | None = None
    probe_examples: int = 512
    grad_clip: float | None = None
    init_from: Mapping[str, Any] | None = None
    reinit: tuple[str, ...] = ("head",)
    unfreeze_every: int | None = None
    device: str = "cpu"
    probe_points: int | None = None
    freezeout: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for f in ("model_options", "optimizer_options", "data_options", "schedule_options"):
            self._set(f, _freeze(getattr(self, f)))
        if self.rule is not None:
            self._set("rule", _freeze(self.rule))
        self._check_plain_json()
        check_choice("dataset", self.dataset, data.DATASETS)
        check_choice("model", self.model, models.MODELS)
        check_choice("optimizer", self.optimizer, optim.OPTIMIZERS)
        check_choice("schedule", self.schedule, schedules.SCHEDULES)
        self._check_numbers()
        self._check_device()
        self._check_budget()
        self._check_options()
        self._check_transfer()
        self._check_freezeout()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check_plain_json(self) -> None:
        """The free-form fields must be plain JSON (finite numbers, strings, lists, dicts)."""
        for name in ("model_options", "optimizer_options", "data_options", "schedule_options"):
            _check_json(name, getattr(self, name))
        _check_json("rule", self.rule)

    def _check_numbers(self) -> None:
        """Every number in range; whole numbers as ``int``, rates and factors as ``float``."""
        self._set("lr", _finite_positive("learning rate (lr)", self.lr))
        self._set("diverge_factor", _finite_positive("diverge_factor", self.diverge_factor))
        if self.grad_clip is not None:
            self._set("grad_clip", _finite_positive("grad_clip", self.grad_clip))
        for name, minimum in (
            ("batch_size", 1),
            ("eval_every", 1),
            ("seed", 0),
            ("threads", 1),
            ("block", 1),
            ("probe_examples", 1),
        ):
            self._set(name, _whole(name, getattr(self, name), minimum))
        for name in ("monitor_every", "probe_every", "unfreeze_every"):
            if getattr(self, name) is not None:
                self._set(name, _whole(name, getattr(self, name), 1))
        if self.probe_points is not None:
            self._set("probe_points", _whole("probe_points", self.probe_points, 2))
            if self.probe_every is not None:
                raise ValueError(
                    f"give probe_every ({self.probe_every}) or probe_points "
                    f"({self.probe_points}), not both: periodic or log-spaced checkpoints"
                )

    def _check_device(self) -> None:
        """``device`` is a torch device string this project trains on (see :data:`DEVICES`);
        whether it is present is checked when the run starts, not here."""
        device = self.device
        kind, colon, index = device.partition(":") if isinstance(device, str) else ("", "", "")
        plain = kind in ("cpu", "mps", "cuda") and not colon
        if not (plain or (kind == "cuda" and index.isdigit())):
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")

    def _check_budget(self) -> None:
        """Exactly one of ``steps`` (a whole number >= 1) and ``epochs`` (a number > 0)."""
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"give exactly one budget: steps={self.steps!r}, epochs={self.epochs!r}"
            )
        if self.steps is not None:
            self._set("steps", _whole("steps", self.steps, 1))
        else:
            self._set("epochs", _finite_positive("epochs", self.epochs))

    def _check_options(self) -> None:
        """The rule and the model, data, optimizer and schedule options, against the modules
        that will use them."""
        if self.rule is not None:
            try:
                rules.rule_from_spec(self.rule)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"rule {_plain(self.rule)!r}: {exc}") from None
        _check_model(self.model, self.dataset, self.model_options)
        check_options(f"{self.dataset} data", self.data_options, data_option_names(self.dataset))
        self._check_optimizer()
        check_options(
            f"{self.schedule} schedule",
            self.schedule_options,
            schedule_option_names(self.schedule),
        )
        if self.steps is not None:  # with an epoch budget the steps are known with the data
            try:
                schedules.multiplier(self.schedule, self.steps, **self.schedule_options)
            except ValueError as exc:
                raise ValueError(
                    f"schedule_options {_plain(self.schedule_options)!r} for {self.schedule} "
                    f"over {self.steps} steps: {exc}"
                ) from None

    def _check_optimizer(self) -> None:
        """Option names against the optimizer's signature, values by making one."""
        options = self.optimizer_options
        check_options(
            f"{self.optimizer} optimizer", options, optimizer_option_names(self.optimizer)
        )
        try:
            optim.build(self.optimizer, [torch.zeros(1, requires_grad=True)], self.lr, **options)
        except ValueError as exc:
            raise ValueError(
                f"optimizer_options {_plain(options)!r} for {self.optimizer}: {exc}"
            ) from None

    def _check_transfer(self) -> None:
        """Canonicalise ``init_from`` (a valid pretraining config) and check ``reinit``."""
        if self.init_from is not None:
            source = self.init_from
            if not isinstance(source, RunConfig):
                if not isinstance(source, Mapping):
                    raise ValueError(f"init_from must be a RunConfig dict, got {source!r}")
                try:
                    source = RunConfig.from_dict(source)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"init_from is not a valid RunConfig: {exc}") from exc
            self._set("init_from", _freeze(source.to_dict()))
        reinit = self.reinit
        if not isinstance(reinit, (list, tuple)) or not all(
            isinstance(n, str) and n for n in reinit
        ):
            raise ValueError(f"reinit must be a sequence of module names, got {reinit!r}")
        self._set("reinit", tuple(reinit))
        if self.init_from is None and self.reinit != ("head",):
            raise ValueError(f"reinit={self.reinit!r} needs init_from (a pretraining run)")

    def _check_freezeout(self) -> None:
        """Canonicalise ``freezeout`` (all four options) and check it against the run."""
        if self.freezeout is None:
            return
        if not isinstance(self.freezeout, Mapping):
            raise ValueError(f"freezeout must be a dict of options or None, got {self.freezeout!r}")
        check_options("freezeout", self.freezeout, {"t_0", *FREEZEOUT_DEFAULTS})
        if "t_0" not in self.freezeout:
            raise ValueError(
                f"freezeout needs t_0 (the first layer's stop), got {_plain(self.freezeout)!r}"
            )
        options = {**FREEZEOUT_DEFAULTS, **self.freezeout}
        for name in ("scaled", "anneal"):
            if not isinstance(options[name], bool):
                raise ValueError(f"freezeout {name} must be True or False, got {options[name]!r}")
        freeze_times(2, options["t_0"], options["spacing"])  # checks t_0 and spacing
        options["t_0"] = float(options["t_0"])
        if self.rule is None:
            raise ValueError(
                "freezeout needs a rule (e.g. {'name': 'uniform'}): its groups carry the depths"
            )
        if self.unfreeze_every is not None:
            raise ValueError("freezeout and unfreeze_every cannot be combined")
        if options["anneal"]:
            final = self.schedule_options.get("final", 0.0)
            if self.schedule != "cosine" or final != 0:
                raise ValueError(
                    "freezeout with anneal=True replaces a cosine schedule to zero, so the run's "
                    f"schedule must be 'cosine' with final=0; got {self.schedule!r} with "
                    f"{_plain(self.schedule_options)!r}"
                )
            warmup = self.schedule_options.get("warmup", 0)
            if self.steps is not None and warmup and options["t_0"] * self.steps <= warmup:
                raise ValueError(
                    f"freezeout t_0={options['t_0']!r} stops the first layer at step "
                    f"{options['t_0'] * self.steps:g}, within the warmup of {warmup} steps"
                )
        elif options["scaled"]:
            raise ValueError(
                "freezeout scaled=True needs anneal=True (scaling sets each layer's own schedule)"
            )
        self._set("freezeout", _freeze(options))

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (``RunConfig.from_dict`` inverts it)."""
        return json.loads(self.canonical_json())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {unknown}; valid: {sorted(names)}")
        return cls(**values)

    def canonical_json(self) -> str:
        """Sorted-key, compact JSON of all fields: the identity of the run.

        The fields in ``_OMITTED_AT_DEFAULT`` appear only when they differ from their defaults.
        """
        plain = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _OMITTED_AT_DEFAULT or getattr(self, f.name) != f.default
        }
        return json.dumps(plain, sort_keys=True, separators=(",", ":"))

    def key(self) -> str:
        """Stable store key: hash of the canonical config and the results-format version."""
        payload = f"v{FORMAT_VERSION}:{self.canonical_json()}".encode()
        return hashlib.sha256(payload).hexdigest()[:20]

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def __hash__(self) -> int:
        return hash(self.canonical_json())
