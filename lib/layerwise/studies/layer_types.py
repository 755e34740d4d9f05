"""Study 04 (layer types): do dense, convolutional, recurrent and self-attention layers want
different rates, inside one network and in networks of one type?  Under tuning protocol v2.

Design (:func:`plan`):

* **Inside one network**: the MNIST-1D hybrid (:data:`HYBRID`: convolution, then a GRU, then
  self-attention, then dense layers).  One arm per layer type in :data:`KINDS` and multiplier in
  :data:`MULTIPLIERS`: that type's rate is the multiplier times the base rate, every other
  parameter runs at the base rate (``rules.ByKind``).
* **Networks of one type**: the MNIST-1D CNN, GRU and transformer, their main layer type
  (:data:`SINGLE_TYPE`) at the extreme multipliers :data:`SINGLE_MULTIPLIERS`.

Every arm, uniform included, has its base rate tuned by ``comparisons.protocol`` (AdamW; three
tuning seeds per grid point, a grid refined to 2x around the chosen rate; ten fresh seeds),
for :data:`STEPS` steps with warmup and cosine decay to zero.  The single-type families use the
configs of ``03_discriminative_rates``'s uniform arms, so those runs are read from its store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .._validate import check_choice
from ..harness import comparisons, stats
from ..harness.testbeds import TESTBEDS, Testbed, testbed
from ..harness.tuning import TuningResult

__all__ = [
    "HYBRID",
    "KINDS",
    "MULTIPLIERS",
    "SINGLE_MULTIPLIERS",
    "SINGLE_TYPE",
    "STEPS",
    "answer",
    "plan",
    "sensitivity_by_kind",
]

KINDS: tuple[str, ...] = ("conv", "recurrent", "attention", "dense")
MULTIPLIERS: tuple[float, ...] = (1 / 4, 1 / 2, 2, 4)
SINGLE_TYPE: dict[str, str] = {
    "mnist1d/cnn": "conv",
    "mnist1d/gru": "recurrent",
    "mnist1d/transformer": "attention",
}
SINGLE_MULTIPLIERS: tuple[float, ...] = (1 / 4, 4)
STEPS = 1000  # the budget of 03's MNIST-1D comparisons: single-type uniform arms are shared

HYBRID = Testbed(
    "mnist1d/hybrid",
    TESTBEDS["mnist1d/cnn"].config.replace(model="hybrid", model_options={}),
    "acc",
    None,
    None,
    "no published reference (conv -> GRU -> self-attention -> dense, models.Hybrid)",
)
HYBRID_GROUP = "hybrid network"
SINGLE_GROUP = "single-type families"


def plan(profile: str = "full") -> list[comparisons.Comparison]:
    """Every comparison of the study: the hybrid network first, then the single-type families
    (the smoke profile keeps one kind at one multiplier in the hybrid)."""
    check_choice("profile", profile, ("full", "smoke"))
    kinds = KINDS if profile == "full" else KINDS[:1]
    multipliers = MULTIPLIERS if profile == "full" else MULTIPLIERS[-1:]
    hybrid = comparisons.at_budget(HYBRID, STEPS, "adamw", profile)
    arms, design = comparisons.kind_arms(hybrid.config, kinds, multipliers)
    proto = comparisons.protocol("mnist1d", "adamw", profile)
    out = [comparisons.Comparison(HYBRID_GROUP, hybrid, arms, design, proto)]
    for name, kind in SINGLE_TYPE.items() if profile == "full" else ():
        bed = comparisons.at_budget(testbed(name), STEPS, "adamw", profile)
        arms, design = comparisons.kind_arms(bed.config, [kind], SINGLE_MULTIPLIERS)
        out.append(comparisons.Comparison(SINGLE_GROUP, bed, arms, design, proto))
    return out


def _multiplier(m: float) -> str:
    return f"x{m:g}" if m >= 1 else f"x1/{1 / m:g}"


def sensitivity_by_kind(
    results: Mapping[tuple[str, str], TuningResult], plan: Sequence[comparisons.Comparison]
) -> pd.DataFrame:
    """Every tuning run of ``results`` for ``plots.lr_sensitivity``, one ``panel`` per testbed
    and layer kind holding that kind's arms beside the uniform arm, ``multiplier`` as a label
    (``"x1/4"`` ... ``"x4"``, uniform ``"x1"``) to colour by, in increasing order."""
    frames = []
    for c in plan:
        if c.key not in results:
            continue
        runs = results[c.key].sensitivity.drop(columns=["kind", "multiplier"], errors="ignore")
        runs = runs.merge(c.design[["arm", "kind", "multiplier"]], on="arm")
        for kind in c.design["kind"].dropna().unique():
            mine = runs[(runs["kind"] == kind) | (runs["arm"] == "uniform")]
            mine = mine.sort_values("multiplier", kind="stable")
            frames.append(
                mine.assign(
                    panel=f"{c.bed.name} · {kind}", multiplier=mine["multiplier"].map(_multiplier)
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def answer(table: pd.DataFrame) -> str:
    """The study's answer as Markdown, computed from ``comparisons.with_design(compare(...))``
    (columns ``kind`` and ``multiplier`` from the plan's designs)."""
    lines = []
    hybrid = table[table["group"] == HYBRID_GROUP]
    if len(hybrid):
        lines.append(
            f"- **Inside the hybrid network**, one type's rate scaled against one tuned rate for "
            f"all layers, over {len(hybrid)} arms: {stats.count_outcomes(hybrid['outcome'])}; "
            f"effects on test accuracy {hybrid['effect'].min():+.3f} to "
            f"{hybrid['effect'].max():+.3f}."
        )
        for kind, rows in hybrid.groupby("kind", sort=False):
            shown = ", ".join(
                f"{_multiplier(r.multiplier)} {r.outcome} ({r.effect:+.3f})"
                for r in rows.sort_values("multiplier").itertuples()
            )
            lines.append(f"  - {kind}: {shown}.")
    for bed, rows in table[table["group"] == SINGLE_GROUP].groupby("testbed", sort=False):
        shown = ", ".join(
            f"{_multiplier(r.multiplier)} {r.outcome} ({r.effect:+.3f})"
            for r in rows.sort_values("multiplier").itertuples()
        )
        lines.append(f"- **{bed}**, its {rows['kind'].iloc[0]} layers' rate: {shown}.")
    lines.append(
        stats.unresolved_note(
            table,
            not_that="the type's rate does not matter",
        )
    )
    faster = table[table["time_ratio_high"] < 1]
    lines.append(
        f"- Reached uniform's final validation score in fewer steps (time-ratio interval below 1): "
        f"{', '.join(f'{r.testbed} {r.arm}' for r in faster.itertuples()) or 'no arm'}."
    )
    return "\n".join(lines)
