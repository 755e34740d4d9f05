"""Study 05: layer-wise learning-rate decay (LLRD) from scratch and in fine-tuning, protocol v2.

ELECTRA (Clark et al. 2020, arXiv:2003.10555) and BEiT (Bao et al. 2022, arXiv:2106.08254)
fine-tune with the head at the base rate and every block below it ``xi`` times slower than the
block above (``rules.LayerDecay``)::

    eta_d = eta * xi ** (D - d),   0 < xi <= 1,

with ``d`` a block's depth (0: the input layer -- embeddings or patch projection; one step per
transformer block or plain layer; the head at the top ``D``).  Their factors: 0.8 (ELECTRA
base), 0.9 (ELECTRA large), 0.65-0.9 (BEiT); Zhang et al. (2021, arXiv:2006.05987) use 0.95 and
report that the gain of such stabilisers shrinks once fine-tuning runs longer
(``docs/references.md#claim-4``).

The study has two parts (:data:`PARTS`):

* ``"scratch"`` (:func:`plan`): does LLRD help when the network is trained **from scratch**?
  ``xi`` in :data:`DECAYS` against one rate for every layer (``xi = 1``), every arm's base rate
  tuned separately (``comparisons.protocol``, AdamW), on the transformers -- MNIST-1D, the
  Fashion-MNIST patch transformer, the character model -- and the MNIST-1D CNN
  (:data:`BUDGETS`, cheapest first).
* ``"finetune"`` (``plan(part="finetune")``): Zhang et al.'s claim, where the rule was
  published -- some ``xi < 1`` beats one rate after a **short** fine-tuning (3 epochs) and its
  gain at least halves after a **long** one (30 epochs).  The testbed is claim 3's
  (``studies.ulmfit_text``): the character transformer pretrained on tiny-shakespeare (the
  language model of pretraining seed :data:`FINETUNE_LM_SEED` only, for cost), fine-tuned to
  tell real 64-character passages from word-shuffled ones with 100 labels per class; the same
  arms, each tuned under the passages' protocol (ten fresh fine-tuning seeds), at each length
  of :data:`FINETUNE_EPOCHS`.  :func:`finetune_effects` sets the two lengths side by side and
  :func:`answer` draws verdict 4 from them.

Budgets are short and stated, as in study 03 (whose MNIST-1D budgets these are, so the
uniform arms of the MNIST-1D testbeds are 03's runs, read from its store): MNIST-1D 1,000
steps (25 epochs), Fashion-MNIST 421 steps (one epoch), the character model
:data:`TEXT_STEPS` steps; fine-tuning 21 and 210 steps of batch 32 (3 and 30 epochs of the
200 labelled passages, :func:`finetune_steps`).  Every schedule warms up over 5% of its steps
and decays to zero.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pandas as pd
from scipy import stats as _st

from .._validate import check_choice
from ..harness import comparisons, stats
from ..harness.testbeds import testbed
from . import ulmfit_text
from .discriminative_rates import BUDGETS as BUDGETS_03

__all__ = [
    "BUDGETS",
    "DECAYS",
    "FINETUNE_EPOCHS",
    "FINETUNE_LM_SEED",
    "FINETUNE_PENDING",
    "GROUP",
    "PARTS",
    "TEXT_STEPS",
    "answer",
    "finetune_effects",
    "finetune_group",
    "finetune_steps",
    "plan",
]

# xi < 1 per block; with the uniform arm (xi = 1) claim 4's {1, 0.95, 0.9, 0.8, 0.65}:
# Zhang et al.'s 0.95, ELECTRA-large's 0.9, ELECTRA-base's 0.8 and BEiT-base's 0.65.
DECAYS: tuple[float, ...] = (0.95, 0.9, 0.8, 0.65)
TEXT_STEPS = 1000  # 0.86 passes over the 892,315 training characters (12 x 64 per step)
# testbed -> steps, in the order they are swept (cheap first)
BUDGETS: dict[str, int] = {
    "mnist1d/cnn": BUDGETS_03["mnist1d/cnn"],
    "mnist1d/transformer": BUDGETS_03["mnist1d/transformer"],
    "fashion_mnist/transformer": 421,
    "tinyshakespeare/transformer": TEXT_STEPS,
}
GROUP = "from scratch"
PARTS: tuple[str, ...] = ("scratch", "finetune")
# the fine-tuning part: one language model (cost), fine-tuned for a short and a long run
FINETUNE_LM_SEED = 0
FINETUNE_EPOCHS: dict[str, int] = {"short": 3, "long": 30}  # Zhang et al.'s 3; ten times that
FINETUNE_PENDING = (
    "pending: the fine-tuning comparisons (xi against uniform after 3 and after 30 epochs of "
    "fine-tuning, Zhang et al.'s claim) are not in the store yet"
)


def plan(profile: str = "full", part: str = "scratch") -> list[comparisons.Comparison]:
    """Every comparison of one part of the study (:data:`PARTS`): uniform and one
    ``rules.LayerDecay`` arm per ``xi`` in :data:`DECAYS`, AdamW, tuned under
    ``comparisons.protocol``.

    ``part="scratch"``: one comparison per testbed of :data:`BUDGETS`, in that order; the smoke
    profile keeps the two MNIST-1D testbeds and the decays 0.9 and 0.65.
    ``part="finetune"``: :func:`_finetune_plan`, one comparison per fine-tuning length."""
    check_choice("profile", profile, ("full", "smoke"))
    check_choice("study part", part, PARTS)
    if part == "finetune":
        return _finetune_plan(profile)
    names = list(BUDGETS) if profile == "full" else list(BUDGETS)[:2]
    decays = DECAYS if profile == "full" else DECAYS[1::2]
    out = []
    for name in names:
        bed = comparisons.at_budget(testbed(name), BUDGETS[name], "adamw", profile)
        arms, design = comparisons.depth_factor_arms(bed.config, decays, rule="layer_decay")
        proto = comparisons.protocol(bed.config.dataset, "adamw", profile)
        out.append(comparisons.Comparison(GROUP, bed, arms, design, proto))
    return out


def finetune_steps(epochs: int, batch_size: int) -> int:
    """Steps of ``epochs`` passes over the 2 x ``ulmfit_text.LABELS_PER_CLASS`` labelled
    passages at ``batch_size``, an epoch counted as ``ulmfit_text.plan`` counts it (ceil: 7
    steps at batch 32; the loader drops a short last batch, so 7 steps read 224 passages)."""
    return int(epochs) * math.ceil(2 * ulmfit_text.LABELS_PER_CLASS / batch_size)


def finetune_group(epochs: int) -> str:
    """The group label of the fine-tuning comparison of ``epochs`` epochs."""
    return f"fine-tuning, {epochs} epochs"


def _finetune_plan(profile: str) -> list[comparisons.Comparison]:
    """Zhang et al.'s claim on the passage classifier of ``ulmfit_text`` (claim 3's testbed),
    every arm fine-tuned from the language model of pretraining seed :data:`FINETUNE_LM_SEED`:
    one comparison per length of :data:`FINETUNE_EPOCHS` (group :func:`finetune_group`), at
    :func:`finetune_steps` steps with warmup and cosine decay to zero over them and one
    evaluation at the end (as ``ulmfit_text.finetuning``), under the passages' protocol (ten
    fresh fine-tuning seeds).  The design table carries ``epochs`` beside ``xi``.

    Smoke: ``ulmfit_text``'s smoke language model, the decays 0.9 and 0.65, and 10 and 20 steps
    (two lengths, so the two comparisons' runs stay distinct)."""
    decays = DECAYS if profile == "full" else DECAYS[1::2]
    proto = comparisons.protocol(ulmfit_text.PASSAGES.config.dataset, "adamw", profile)
    base = ulmfit_text.finetuning(
        FINETUNE_LM_SEED, lr=ulmfit_text.PASSAGES.config.lr, seed=0, profile=profile
    )
    out = []
    for i, epochs in enumerate(FINETUNE_EPOCHS.values()):
        if profile == "smoke":
            steps = (i + 1) * ulmfit_text.SMOKE_STEPS
        else:
            steps = finetune_steps(epochs, base.batch_size)
        config = comparisons.with_decay(base, steps).replace(eval_every=steps)
        arms, design = comparisons.depth_factor_arms(config, decays, rule="layer_decay")
        bed = dataclasses.replace(ulmfit_text.PASSAGES, config=config)
        out.append(
            comparisons.Comparison(
                finetune_group(epochs), bed, arms, design.assign(epochs=epochs), proto
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# what came out


def _metric(metric: str) -> str:
    return "test accuracy" if metric == "test_acc" else "test loss in nats, lower is better"


def _better_or_worse(rows: pd.DataFrame) -> str:
    """``"better at xi=a, b; worse at xi=c"`` over one testbed's rows, or that no xi is."""
    parts = [
        f"{outcome} at xi={', '.join(f'{x:g}' for x in chosen)}"
        for outcome in ("better", "worse")
        if len(chosen := rows.loc[rows["outcome"] == outcome, "xi"])
    ]
    return "; ".join(parts) or "no xi better or worse"


def _scratch(table: pd.DataFrame) -> list[str]:
    """The from-scratch finding: outcome counts, every testbed's effects with their intervals
    (marked where the arm or uniform is not tuned: a best rate on the grid's edge), the
    comparisons that could not resolve their smallest effect, the faster arms."""
    lines = [
        f"- **From scratch**, layer-wise decay against one tuned rate over {len(table)} "
        f"testbed/decay pairs: {stats.count_outcomes(table['outcome'])}."
    ]
    for bed, rows in table.groupby("testbed", sort=False):
        rows = rows.sort_values("xi", ascending=False)
        shown = ", ".join(
            f"xi={r.xi:g} {r.outcome}{'' if r.tuned else ' (not tuned)'} "
            f"({stats.format_ci(r.effect, r.ci_low, r.ci_high)})"
            for r in rows.itertuples()
        )
        lines.append(
            f"  - {bed} ({_metric(rows['metric'].iloc[0])}): {_better_or_worse(rows)}; {shown}."
        )
    faster = ", ".join(f"{r.testbed} {r.arm}" for r in table.itertuples() if r.time_ratio_high < 1)
    return lines + [
        stats.unresolved_note(
            table,
            not_that="the decay does nothing",
        ),
        "- Reached uniform's final validation score in fewer steps (time-ratio interval below "
        f"1): {faster or 'no arm'}.",
    ]


# --------------------------------------------------------------------------------------------
# verdict 4: short against long fine-tuning


def _welch(
    short: tuple[float, float, float],
    long: tuple[float, float, float],
    weights: tuple[float, float],
    confidence: float,
) -> tuple[float, float, float]:
    """``w_s * e_short + w_l * e_long`` with its Welch t interval, from each length's paired
    effect ``(effect, sd, n)`` (the lengths are separate runs: unpaired, unequal variances).
    ``nan`` ends where a length has fewer than two seeds."""
    (es, sds, ns), (el, sdl, nl) = short, long
    mean = weights[0] * es + weights[1] * el
    if min(ns, nl) < 2 or not (math.isfinite(sds) and math.isfinite(sdl)):
        return mean, math.nan, math.nan
    a, b = (weights[0] * sds) ** 2 / ns, (weights[1] * sdl) ** 2 / nl
    if a + b == 0:
        return mean, mean, mean
    df = (a + b) ** 2 / (a**2 / (ns - 1) + b**2 / (nl - 1))
    half = float(_st.t.isf((1 - confidence) / 2, df)) * math.sqrt(a + b)
    return mean, mean - half, mean + half


def finetune_effects(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per ``xi`` of the fine-tuning part: its effect against uniform after the short
    and after the long fine-tuning (``comparisons.with_design(compare(...))`` of
    ``plan(part="finetune")``: columns ``xi``, ``epochs``, ``effect``, ``ci_low``,
    ``ci_high``, ``outcome``, ``tuned``, ``sd``, ``n``), side by side (suffixes ``_short``,
    ``_long``), and how the gain changes from short to long:

    * ``shrink`` (``shrink_low``, ``shrink_high``): short effect minus long effect;
    * ``excess`` (``excess_low``, ``excess_high``): long effect minus **half** the short one --
      below zero exactly when the long gain is less than half the short gain;
    * ``halved`` (only for an ``xi`` *better* than uniform after the short fine-tuning, else
      empty): ``"yes"`` when the whole ``excess`` interval lies below zero (the gain is shown to
      have at least halved), ``"no"`` when it lies above zero (shown not to halve), else
      ``"unresolved"``; empty too while the long fine-tuning has no rows.

    Each length's effect is a mean of per-seed paired differences (arm minus uniform on the
    same seed); the two lengths are separate runs, so ``shrink`` and ``excess`` get Welch t
    intervals from each length's ``sd`` and ``n``, at level ``1 - alpha / k`` (``level``
    column) -- Bonferroni over the ``k`` decays better after the short fine-tuning (``k = 1``
    when none is)."""
    short_epochs, long_epochs = FINETUNE_EPOCHS["short"], FINETUNE_EPOCHS["long"]
    keep = ["xi", "arm", "effect", "ci_low", "ci_high", "outcome", "tuned", "sd", "n"]
    short = table.loc[table["epochs"] == short_epochs, keep].set_index("xi")
    long = table.loc[table["epochs"] == long_epochs, keep].set_index("xi")
    frame = short.merge(
        long.drop(columns="arm"),
        how="outer",
        left_index=True,
        right_index=True,
        suffixes=("_short", "_long"),
    )
    frame["arm"] = frame["arm"].fillna(long["arm"]) if len(long) else frame["arm"]
    frame = frame.sort_index(ascending=False).reset_index()
    better = frame["outcome_short"] == "better"
    level = 1 - alpha / max(1, int(better.sum()))
    shrink, excess, halved = [], [], []
    for r, candidate in zip(frame.itertuples(), better, strict=True):
        es, el = (r.effect_short, r.sd_short, r.n_short), (r.effect_long, r.sd_long, r.n_long)
        shrink.append(_welch(es, el, (1.0, -1.0), level))
        mean, low, high = _welch(es, el, (-0.5, 1.0), level)
        excess.append((mean, low, high))
        if not candidate or not math.isfinite(mean):  # not better short, or no long rows
            halved.append("")
        elif high < 0:
            halved.append("yes")
        elif low > 0:
            halved.append("no")
        else:
            halved.append("unresolved")  # also a nan end: a length with one seed
    for name, values in (("shrink", shrink), ("excess", excess)):
        frame[[name, f"{name}_low", f"{name}_high"]] = pd.DataFrame(values, index=frame.index)
    frame["halved"] = halved
    frame["level"] = level
    return frame


def _length(r, which: str) -> str:
    effect = getattr(r, f"effect_{which}")
    if not math.isfinite(effect):
        return f"{FINETUNE_EPOCHS[which]} epochs pending"
    tuned = "" if getattr(r, f"tuned_{which}") else " (not tuned)"
    ci = stats.format_ci(effect, getattr(r, f"ci_low_{which}"), getattr(r, f"ci_high_{which}"))
    return f"{FINETUNE_EPOCHS[which]} epochs {getattr(r, f'outcome_{which}')}{tuned} ({ci})"


_HALVED = {
    "yes": "the gain at least halved",
    "no": "the gain did not halve",
    "unresolved": "halving not resolved",
}


def _finetune(effects: pd.DataFrame, complete: bool) -> list[str]:
    """The fine-tuning finding, one line per ``xi``, and verdict 4 when both lengths are
    ``complete`` (else no verdict line: the caller says it is pending)."""
    short, long = FINETUNE_EPOCHS["short"], FINETUNE_EPOCHS["long"]
    outcomes = {w: effects[f"outcome_{w}"].dropna() for w in FINETUNE_EPOCHS}
    counts = "; ".join(
        f"after {FINETUNE_EPOCHS[w]} epochs {stats.count_outcomes(o)}"
        for w, o in outcomes.items()
        if len(o)
    )
    lines = [
        f"- **Fine-tuning** (the passage classifier fine-tuned from language model "
        f"{FINETUNE_LM_SEED}), layer-wise decay against one tuned rate, test accuracy: {counts}."
    ]
    for r in effects.itertuples():
        text = f"  - xi={r.xi:g}: {_length(r, 'short')}, {_length(r, 'long')}"
        if math.isfinite(r.shrink):
            shrink = stats.format_ci(r.shrink, r.shrink_low, r.shrink_high)
            excess = stats.format_ci(r.excess, r.excess_low, r.excess_high)
            text += f"; short minus long {shrink}, long minus half the short {excess}"
        lines.append(text + (f": {_HALVED[r.halved]}." if r.halved else "."))
    if not complete:
        return lines
    better = effects[effects["outcome_short"] == "better"]
    halved = better[better["halved"] == "yes"]
    if better.empty:
        verdict = (
            f"**not reproduced**: no xi < 1 is better than one rate after {short} epochs "
            f"({stats.count_outcomes(effects['outcome_short'])})"
        )
    elif len(halved):
        names = ", ".join(f"xi={x:g}" for x in halved["xi"])
        verdict = (
            f"**reproduced**: {names} better than one rate after {short} epochs, and the gain at "
            f"least halved after {long}"
        )
    else:
        why = "; ".join(f"xi={r.xi:g}: {_HALVED[r.halved]}" for r in better.itertuples())
        verdict = (
            f"**inconclusive**: better than one rate after {short} epochs, but no such gain is "
            f"shown to have at least halved after {long} ({why})"
        )
    rule = (
        f"the gain has at least halved when the interval of the {long}-epoch effect minus half "
        f"the {short}-epoch one lies below zero (Welch t interval, the lengths being separate "
        f"runs, at level {effects['level'].iloc[0]:.3f}: Bonferroni over the decays better "
        f"after {short} epochs)"
    )
    return [
        *lines,
        f"- **Verdict 4 (fine-tuning, short against long)**: {verdict}. Judged so: {rule}.",
    ]


def answer(
    table: pd.DataFrame,
    pending: Sequence[str] = (),
    finetune: pd.DataFrame | None = None,
    finetune_pending: Sequence[str] = (),
    alpha: float = 0.05,
) -> str:
    """The study's answer as Markdown sentences.

    From scratch, from ``table`` -- ``comparisons.with_design(compare(...))`` of :func:`plan`
    (column ``xi`` from the designs): the finding per testbed with every effect and its
    interval, how many comparisons could not resolve their smallest effect of interest, which
    arms reached uniform's score sooner, the testbeds still ``pending`` (runs missing from the
    store).

    Verdict 4, from ``finetune`` -- the same for ``plan(part="finetune")`` (its own compare
    family; column ``epochs`` from the designs), read by :func:`finetune_effects` at
    ``alpha``: per ``xi`` the effect after the short and the long fine-tuning with intervals
    and outcomes and how the gain changes; **reproduced** when some ``xi`` is *better* after
    the short fine-tuning and its gain has at least halved after the long one (``halved ==
    "yes"``), **not reproduced** when no ``xi`` is better after the short one, else
    **inconclusive**.  Pending (:data:`FINETUNE_PENDING`) while ``finetune`` is missing or
    either length has no rows; ``finetune_pending`` names the comparisons still missing."""
    lines = _scratch(table) if len(table) else []
    if pending:
        lines.append(
            f"- **From scratch, pending** (runs not in the store yet): {', '.join(pending)}."
        )
    rows = finetune if finetune is not None else pd.DataFrame(columns=["epochs"])
    lengths = set(rows["epochs"])
    if lengths:
        complete = set(FINETUNE_EPOCHS.values()) <= lengths
        lines += _finetune(finetune_effects(rows, alpha), complete)
        if complete:
            return "\n".join(lines)
    waiting = f" (missing: {'; '.join(finetune_pending)})" if finetune_pending else ""
    lines.append(f"- **Verdict 4 (fine-tuning, short against long)**: {FINETUNE_PENDING}{waiting}.")
    return "\n".join(lines)
