"""``RunConfig``: the frozen, JSON-serialisable description of one training run.

Two configs that describe the same run have the same canonical JSON and so the same store key;
every name and number is checked when the config is made, before any compute starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .. import optim, schedules
from .._validate import check_choice, check_int, check_positive
from . import data, models

__all__ = ["FORMAT_VERSION", "RunConfig"]

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
)


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

    The fields added after the first stored records (``probe_every``, ``probe_examples``,
    ``grad_clip``, ``init_from``, ``reinit``, ``unfreeze_every``) are left out of the canonical
    JSON (and so of the key and ``to_dict``) while they hold their defaults: configs that do
    not use them keep their keys.
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

    def __post_init__(self) -> None:
        for f in ("model_options", "optimizer_options", "data_options", "schedule_options"):
            object.__setattr__(self, f, _freeze(getattr(self, f)))
        if self.rule is not None:
            object.__setattr__(self, "rule", _freeze(self.rule))
        check_choice("dataset", self.dataset, data.DATASETS)
        check_choice("model", self.model, models.MODELS)
        check_choice("optimizer", self.optimizer, optim.OPTIMIZERS)
        check_choice("schedule", self.schedule, schedules.SCHEDULES)
        check_positive("learning rate (lr)", self.lr)
        object.__setattr__(self, "lr", float(self.lr))  # 1 and 1.0 are the same run
        if self.epochs is not None:
            object.__setattr__(self, "epochs", float(self.epochs))
        check_positive("batch_size", self.batch_size)
        check_positive("eval_every", self.eval_every)
        check_positive("threads", self.threads)
        check_positive("block", self.block)
        check_positive("diverge_factor", self.diverge_factor)
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"give exactly one budget: steps={self.steps!r}, epochs={self.epochs!r}"
            )
        check_positive("steps" if self.steps is not None else "epochs", self.steps or self.epochs)
        if self.monitor_every is not None:
            check_positive("monitor_every", self.monitor_every)
        if self.probe_every is not None:
            check_int("probe_every", self.probe_every, 1)
        check_int("probe_examples", self.probe_examples, 1)
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
            object.__setattr__(self, "grad_clip", float(self.grad_clip))
        self._check_transfer()

    def _check_transfer(self) -> None:
        """Canonicalise ``init_from`` (a valid pretraining config) and check ``reinit`` and
        ``unfreeze_every``."""
        if self.init_from is not None:
            source = self.init_from
            if not isinstance(source, RunConfig):
                if not isinstance(source, Mapping):
                    raise ValueError(f"init_from must be a RunConfig dict, got {source!r}")
                try:
                    source = RunConfig.from_dict(source)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"init_from is not a valid RunConfig: {exc}") from exc
            object.__setattr__(self, "init_from", _freeze(source.to_dict()))
        reinit = self.reinit
        if not isinstance(reinit, (list, tuple)) or not all(
            isinstance(n, str) and n for n in reinit
        ):
            raise ValueError(f"reinit must be a sequence of module names, got {reinit!r}")
        object.__setattr__(self, "reinit", tuple(reinit))
        if self.init_from is None and self.reinit != ("head",):
            raise ValueError(f"reinit={self.reinit!r} needs init_from (a pretraining run)")
        if self.unfreeze_every is not None:
            check_int("unfreeze_every", self.unfreeze_every, 1)

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
