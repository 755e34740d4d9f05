"""Study 05: layer-wise learning-rate decay (LLRD), trained from scratch, under protocol v2.

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
* ``"finetune"``: Zhang et al.'s claim, short against long fine-tuning.  It needs the
  ULMFiT-style fine-tuning testbed of claim 3, which does not exist yet; ``plan(part=
  "finetune")`` says so (:data:`FINETUNE_PENDING`) until it does.

Budgets are short and stated, as in study 03 (whose MNIST-1D budgets these are, so the
uniform arms of the MNIST-1D testbeds are 03's runs, read from its store): MNIST-1D 1,000
steps (25 epochs), Fashion-MNIST 421 steps (one epoch), the character model
:data:`TEXT_STEPS` steps; every schedule warms up over 5% of its steps and decays to zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .._validate import check_choice
from ..harness import comparisons, stats
from ..harness.testbeds import testbed
from .discriminative_rates import BUDGETS as BUDGETS_03

__all__ = [
    "BUDGETS",
    "DECAYS",
    "FINETUNE_PENDING",
    "GROUP",
    "PARTS",
    "TEXT_STEPS",
    "answer",
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
FINETUNE_PENDING = (
    "pending: the fine-tuning comparison (xi against uniform after short and long fine-tuning, "
    "Zhang et al.'s claim) needs the ULMFiT-style fine-tuning testbed of claim 3, which is "
    "not built yet"
)


def plan(profile: str = "full", part: str = "scratch") -> list[comparisons.Comparison]:
    """Every comparison of one part of the study (:data:`PARTS`), in :data:`BUDGETS` order:
    uniform and one ``rules.LayerDecay`` arm per ``xi`` in :data:`DECAYS`, AdamW, tuned under
    ``comparisons.protocol``.  The smoke profile keeps the two MNIST-1D testbeds and the
    decays 0.9 and 0.65.  ``part="finetune"`` raises ``NotImplementedError`` until its
    testbed exists."""
    check_choice("profile", profile, ("full", "smoke"))
    check_choice("study part", part, PARTS)
    if part == "finetune":
        raise NotImplementedError(FINETUNE_PENDING)
    names = list(BUDGETS) if profile == "full" else list(BUDGETS)[:2]
    decays = DECAYS if profile == "full" else DECAYS[1::2]
    out = []
    for name in names:
        bed = comparisons.at_budget(testbed(name), BUDGETS[name], "adamw", profile)
        arms, design = comparisons.depth_factor_arms(bed.config, decays, rule="layer_decay")
        proto = comparisons.protocol(bed.config.dataset, "adamw", profile)
        out.append(comparisons.Comparison(GROUP, bed, arms, design, proto))
    return out


# --------------------------------------------------------------------------------------------
# what came out


def _metric(metric: str) -> str:
    return "test accuracy" if metric == "test_acc" else "test loss in nats, lower is better"


def _factors(rows: pd.DataFrame, outcome: str) -> str:
    chosen = rows.loc[rows["outcome"] == outcome, "xi"]
    return ", ".join(f"{x:g}" for x in chosen) or "no xi"


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
            f"  - {bed} ({_metric(rows['metric'].iloc[0])}): better at {_factors(rows, 'better')}"
            f", worse at {_factors(rows, 'worse')}; {shown}."
        )
    unresolved = table[table["mde"] > table["sesoi"]]
    faster = ", ".join(f"{r.testbed} {r.arm}" for r in table.itertuples() if r.time_ratio_high < 1)
    return lines + [
        f"- {len(unresolved)} of {len(table)} comparisons could not resolve their smallest "
        "effect of interest (minimum detectable effect above it): an *inconclusive* there means "
        "the seeds were too few, not that the decay does nothing.",
        "- Reached uniform's final validation score in fewer steps (time-ratio interval below "
        f"1): {faster or 'no arm'}.",
    ]


def answer(table: pd.DataFrame, pending: Sequence[str] = ()) -> str:
    """The study's answer as Markdown sentences, computed from
    ``comparisons.with_design(compare(...))`` of :func:`plan` (column ``xi`` from the designs):
    the from-scratch finding per testbed with every effect and its interval, how many
    comparisons could not resolve their smallest effect of interest, which arms reached
    uniform's score sooner, the testbeds still ``pending`` (runs missing from the store), and
    verdict 4 (fine-tuning), pending until its testbed exists."""
    lines = _scratch(table) if len(table) else []
    if pending:
        lines.append(
            f"- **From scratch, pending** (runs not in the store yet): {', '.join(pending)}."
        )
    lines.append(f"- **Verdict 4 (fine-tuning, short against long)**: {FINETUNE_PENDING}.")
    return "\n".join(lines)
