"""ULMFiT's control on ULMFiT's own path: a character language model pretrained on
tiny-shakespeare and fine-tuned into a passage classifier -- the testbed, and the check that
pretraining matters on it (without which no fine-tuning rule can show an effect).

Howard & Ruder 2018 (ULMFiT, arXiv:1801.06146, ``docs/references.md#howard2018ulmfit``)
fine-tune a pretrained language model into a classifier with few labels; their Table 4 shows
what pretraining is worth (e.g. TREC-6 validation error 10.67 without, 5.69 with).

Testbed (:data:`PASSAGES`):

* pretraining: the ``tinyshakespeare/transformer`` testbed (nanoGPT's CPU configuration: 4
  blocks, 4 heads, 128 wide, block 64, batch 12) on the training split of ``tinyshakespeare``
  for :data:`PRETRAIN_STEPS` steps (3x the testbed's 2,000; warmup and cosine decay to zero),
  one run per seed of :data:`PRETRAIN_SEEDS`;
* task: ``tinyshakespeare_passages`` (``harness.passages``): 64-character passages, real (0) or
  with their words shuffled (1), :data:`LABELS_PER_CLASS` training passages per class;
  validation and test passages come from the language model's validation and test regions,
  so pretraining never reads them;
* classifier: the same transformer with ULMFiT's concat pooling (``pool="concat"``: the last
  position's state, the per-feature maximum and the mean over positions) and a new two-way
  head (``RunConfig.reinit``'s default), fine-tuned for :data:`STEPS` steps with AdamW, warmup
  and cosine decay to zero.

Of the task designs tried (word shuffle, lowercase-word shuffle, one word swap, one letter
swap; ``harness.passages.REORDERINGS``), this one is the only one where fine-tuning the
pretrained model beat training from scratch.  Exploratory checks (language-model seed 0,
fine-tuning seeds 1-3, test accuracy, 100 labels per class; chance 0.5, from scratch 0.49, bag
of character 1-5-grams 0.736): pretrained for 2,000 steps 0.745 at rate 1e-3; for 6,000 steps
0.781 at 3e-4 and 0.771 at 1e-3; for 12,000 steps 0.790 and 0.789 -- pretraining longer than
the testbed's 2,000 steps is what lifts the fine-tuned model clear of the n-gram baseline, and
doubling it again adds about 0.01, so :data:`PRETRAIN_STEPS` is 6,000.  With 50 labels per
class the margin over the baseline was no larger.  :func:`feasibility` runs the check on every
language model and :func:`feasibility_verdict` reads it.

Feasibility check (:func:`feasibility_configs`, :func:`feasibility_table`): (a) the pretrained
model fine-tuned, (b) the same model trained from scratch on the labels alone, (c) bag-of-
n-gram logistic regressions (``harness.bag_of_ngrams``), (d) chance (one half).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from .._validate import check_choice
from ..harness import bag_of_ngrams, comparisons, data, stats, sweep
from ..harness import pretraining as _pretraining
from ..harness.config import RunConfig
from ..harness.store import Store
from ..harness.testbeds import Testbed, testbed
from ..harness.tuning import TuningResult

__all__ = [
    "DISCRIMINATIVE",
    "FEASIBILITY_RATES",
    "FEASIBILITY_SEEDS",
    "LABELS_PER_CLASS",
    "PASSAGES",
    "PRETRAIN_SEEDS",
    "PRETRAIN_STEPS",
    "STEPS",
    "STUDY",
    "answer",
    "bag_of_ngrams_table",
    "feasibility_verdict",
    "feasibility",
    "feasibility_configs",
    "HEAD_MULTIPLIERS",
    "STLR",
    "arms",
    "feasibility_table",
    "finetuning",
    "language_models",
    "plan",
    "pretraining",
    "two_rates",
]

STUDY = "10_ulmfit_finetuning"
PRETRAIN_SEEDS: tuple[int, ...] = (0, 1, 2)
PRETRAIN_STEPS = 6000  # 4.6 passes over the 892,315 training characters (12 x 64 per step)
PRETRAIN_EVAL_EVERY = 500
LABELS_PER_CLASS = 100
STEPS = 96  # 15 epochs of 2 x 100 passages at batch 32
TASK = {"reordering": "shuffle", "train_per_class": LABELS_PER_CLASS}
# AdamW as the language model was trained (weight decay 0.1 on matrices, beta2 0.99, clipping)
PASSAGES = Testbed(
    "tinyshakespeare_passages/transformer",
    comparisons.with_decay(
        RunConfig(
            dataset="tinyshakespeare_passages",
            model="transformer",
            lr=1e-3,
            batch_size=32,
            steps=STEPS,
            eval_every=STEPS,
            optimizer="adamw",
            optimizer_options={"weight_decay": 0.1, "betas": [0.9, 0.99]},
            grad_clip=1.0,
            model_options={"pool": "concat"},
            data_options=TASK,
        ),
        STEPS,
    ).replace(eval_every=STEPS),
    "acc",
    None,
    None,
    "no published reference (real or words shuffled, 64 characters, chance 0.5)",
)
# the check's rates, one per condition: for the pretrained model the better of 3e-4 and 1e-3 by
# validation accuracy in the exploratory checks (0.753 against 0.743); the scratch model is not
# helped by a lower one
FEASIBILITY_RATES: dict[str, float] = {"pretrained": 3e-4, "scratch": 1e-3}
FEASIBILITY_SEEDS: tuple[int, ...] = (1, 2, 3)
SMOKE_STEPS = 10  # the fewest steps at which STLR (cut_frac 0.1) has a rising step


def pretraining(seed: int, profile: str = "full") -> RunConfig:
    """The language-model pretraining run of ``seed``: the character testbed trained for
    :data:`PRETRAIN_STEPS` steps, its rate warming up and decaying to zero
    (``profile="smoke"``: a few steps)."""
    base = testbed("tinyshakespeare/transformer").config
    config = comparisons.with_decay(base, PRETRAIN_STEPS).replace(
        seed=seed, eval_every=PRETRAIN_EVAL_EVERY
    )
    return (
        _shrunk(config)
        if check_choice("profile", profile, ("full", "smoke")) == "smoke"
        else config
    )


def _shrunk(config: RunConfig) -> RunConfig:
    """``config`` cut to :data:`SMOKE_STEPS` steps (seconds of training, for checks)."""
    return comparisons.with_decay(config, SMOKE_STEPS).replace(eval_every=SMOKE_STEPS)


def finetuning(
    pretrain_seed: int | None,
    *,
    lr: float,
    seed: int,
    task: Mapping[str, object] = TASK,
    profile: str = "full",
) -> RunConfig:
    """The passage classifier of :data:`PASSAGES` at ``lr`` and ``seed``, started from pretraining
    run ``pretrain_seed`` (``None``: from scratch), on the task's ``data_options``."""
    config = PASSAGES.config.replace(lr=lr, seed=seed, data_options=dict(task))
    if check_choice("profile", profile, ("full", "smoke")) == "smoke":
        config = _shrunk(config)
    if pretrain_seed is None:
        return config
    return config.replace(init_from=pretraining(pretrain_seed, profile).to_dict())


def feasibility_configs(
    pretrain_seeds: Sequence[int] = PRETRAIN_SEEDS[:1],
    seeds: Sequence[int] = FEASIBILITY_SEEDS,
    rates: Mapping[str, float] = FEASIBILITY_RATES,
    task: Mapping[str, object] = TASK,
    profile: str = "full",
) -> list[RunConfig]:
    """Runs (a) and (b) of the check: per seed, the classifier fine-tuned from each pretraining
    seed at ``rates["pretrained"]`` and trained from scratch at ``rates["scratch"]``."""
    out = []
    for seed in seeds:
        for pre in pretrain_seeds:
            out.append(
                finetuning(pre, lr=rates["pretrained"], seed=seed, task=task, profile=profile)
            )
        out.append(finetuning(None, lr=rates["scratch"], seed=seed, task=task, profile=profile))
    return out


def bag_of_ngrams_table(task: Mapping[str, object] = TASK) -> pd.DataFrame:
    """Check (c): the bag-of-n-grams baselines on the task -- character 1..5-grams and word 1..2-
    grams -- one row each (condition, val_acc, test_acc, l2, features)."""
    dataset = data.load("tinyshakespeare_passages", **task)
    rows = []
    for analyzer, orders in (("char", (1, 2, 3, 4, 5)), ("word", (1, 2))):
        fit = bag_of_ngrams.fit(dataset, analyzer, orders)
        rows.append({"condition": f"bag of {analyzer} {orders[0]}-{orders[-1]}-grams", **fit})
    return pd.DataFrame(rows)


def feasibility_table(records: Iterable[dict], baselines: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy of every condition of the check: mean, standard deviation and seeds of the
    fine-tuning runs (``records``; pretrained per pretraining seed), the baselines' rows, and
    chance.  The feasibility criterion reads off it: (a) well above chance and below 1, and
    above (b) and (c) by a clear margin."""
    rows = []
    for record in records:
        config = record["config"]
        source = config.get("init_from")
        condition = (
            f"pretrained (LM seed {source['seed']}), fine-tuned" if source else "from scratch"
        )
        final = record["final"]  # accuracies are None after divergence: they count as missing
        rows.append(
            {
                "condition": condition,
                "seed": config["seed"],
                "test_acc": final["test_acc"],
                "val_acc": final["val_acc"],
            }
        )
    runs = pd.DataFrame(rows)
    summary = runs.groupby("condition", sort=False).agg(
        test_acc=("test_acc", "mean"),
        test_acc_sd=("test_acc", "std"),
        val_acc=("val_acc", "mean"),
        seeds=("seed", "count"),
    )
    chance = pd.DataFrame([{"condition": "chance", "test_acc": 0.5, "val_acc": 0.5}])
    extra = baselines[["condition", "test_acc", "val_acc"]]
    return pd.concat([summary.reset_index(), extra, chance], ignore_index=True)


def language_models(
    store: Store,
    pretrain_seeds: Sequence[int] = PRETRAIN_SEEDS,
    profile: str = "full",
    jobs: int | None = None,
) -> list[dict]:
    """The pretraining runs' records (curves, final validation and test loss), one per seed,
    stored under :data:`STUDY`.  The runs the store lacks are trained (one worker each) and
    their weights cached (``harness.pretraining.pretrain``), unless training is forbidden
    (``LAYERWISE_REQUIRE_STORED``: ``sweep.MissingRunsError``)."""
    sources = [pretraining(s, profile) for s in pretrain_seeds]
    missing = store.missing(STUDY, sources)
    if missing and sweep.training_forbidden():
        raise sweep.MissingRunsError(STUDY, missing)
    if missing:
        with sweep.worker_pool(min(len(missing), jobs or sweep.default_jobs())) as pool:
            for record in (pool.map if pool else map)(_pretraining.pretrain, missing):
                store.put(STUDY, record)
    return [store.get(STUDY, c) for c in sources]


def feasibility(
    store: Store,
    jobs: int | None = None,
    pretrain_seeds: Sequence[int] = PRETRAIN_SEEDS,
    seeds: Sequence[int] = FEASIBILITY_SEEDS,
    task: Mapping[str, object] = TASK,
    profile: str = "full",
) -> pd.DataFrame:
    """Run the check and return :func:`feasibility_table`: the fine-tuning runs into ``store``
    under :data:`STUDY` (stored runs are not trained again; a worker that needs a language
    model not cached yet trains it first, ``harness.pretraining``), then the baselines."""
    configs = feasibility_configs(pretrain_seeds, seeds, task=task, profile=profile)
    records = sweep.run_configs(configs, STUDY, store=store, jobs=jobs)
    return feasibility_table(records, bag_of_ngrams_table(task))


# --------------------------------------------------------------------------------------------
# the arms: ULMFiT's fine-tuning rules against one rate, each tuned under protocol v2

DISCRIMINATIVE: dict[str, object] = {"name": "discriminative", "factor": 2.6, "toward": "input"}
# Howard & Ruder's slanted triangular rates (eq. 3): a rise over 10% of the steps, a fall to
# 1/32 of the peak
STLR: tuple[str, dict[str, float]] = ("slanted_triangular", {"cut_frac": 0.1, "ratio": 32.0})
# the "two rates" arm's grid over the head's rate (a multiple of the body's)
HEAD_MULTIPLIERS: tuple[float, ...] = (4.0, 16.0, 64.0)
TWO_RATES = "two rates"


def arms(config: RunConfig, epoch_steps: int) -> tuple[dict[str, RunConfig], pd.DataFrame]:
    """The arms of one comparison, all fine-tuned from ``config``'s pretrained model (its
    ``lr`` is the base rate the tuner replaces):

    * ``one rate``: every layer at the base rate, warmup and cosine decay to zero;
    * ``discriminative``: ULMFiT's rates, each block 2.6 times slower than the one above
      (``rules.Discriminative(2.6)``; the new head at the base rate), same schedule;
    * ``discr + STLR``: and slanted triangular rates (:data:`STLR`) instead of the cosine;
    * ``discr + STLR + unfreezing``: and gradual unfreezing, one more depth every epoch of
      ``epoch_steps`` steps, from the head down (``transfer.GradualUnfreezing``) -- ULMFiT's
      full recipe;
    * ``head xM`` for M in :data:`HEAD_MULTIPLIERS`: the head at M times the body's rate
      (``rules.HeadRate``), the cosine schedule -- the grid of the "two rates" arm, which
      :func:`two_rates` reduces to the multiplier the tuning seeds choose.

    Returns the arms and a table (arm, rule, schedule, unfreezing) saying what each changes.
    """
    one = config.replace(rule={"name": "uniform"})
    discriminative = one.replace(rule=dict(DISCRIMINATIVE))
    stlr = discriminative.replace(schedule=STLR[0], schedule_options=dict(STLR[1]))
    out = {
        "one rate": one,
        "discriminative": discriminative,
        "discr + STLR": stlr,
        "discr + STLR + unfreezing": stlr.replace(unfreeze_every=int(epoch_steps)),
    }
    for m in HEAD_MULTIPLIERS:
        out[f"head x{m:g}"] = one.replace(rule={"name": "head", "multiplier": float(m)})
    design = pd.DataFrame(
        [
            {
                "arm": name,
                "rule": _describe_rule(c.rule),
                "schedule": c.schedule,
                "unfreezing": f"a depth every {c.unfreeze_every} steps"
                if c.unfreeze_every
                else "-",
            }
            for name, c in out.items()
        ]
    )
    return out, design


def _describe_rule(spec: Mapping[str, object]) -> str:
    if spec["name"] == "discriminative":
        return f"each block / {spec['factor']:g} going down"
    if spec["name"] == "head":
        return f"head x{spec['multiplier']:g}"
    return "one rate"


def plan(
    profile: str = "full", pretrain_seeds: Sequence[int] = PRETRAIN_SEEDS
) -> list[comparisons.Comparison]:
    """One comparison per pretraining seed (group ``"LM seed p"``): the arms of :func:`arms`
    fine-tuned from that language model, tuned and rerun with AdamW's protocol on the
    passages (ten fresh fine-tuning seeds; in smoke, the first language model only, a few
    steps and two seeds)."""
    if check_choice("profile", profile, ("full", "smoke")) == "smoke":
        pretrain_seeds = pretrain_seeds[:1]
    proto = comparisons.protocol(PASSAGES.config.dataset, "adamw", profile)
    out = []
    for p in pretrain_seeds:
        config = finetuning(p, lr=PASSAGES.config.lr, seed=0, profile=profile)
        epoch = max(1, math.ceil(2 * LABELS_PER_CLASS / config.batch_size))
        if profile == "smoke":
            epoch = 1
        arm_configs, design = arms(config, epoch)
        bed = dataclasses.replace(PASSAGES, config=config)
        out.append(comparisons.Comparison(f"LM seed {p}", bed, arm_configs, design, proto))
    return out


def two_rates(result: TuningResult) -> TuningResult:
    """``result`` with its ``head xM`` arms reduced to one, ``"two rates"``: the multiplier
    whose tuned rate scored best on the tuning seeds (``val_<metric>_best``; the final seeds
    never choose), so head and body rates are tuned jointly on the tuning seeds alone.  The
    chosen multiplier is kept in the summary's ``head_multiplier`` column."""
    summary = result.summary
    heads = summary[summary["arm"].str.startswith("head x")]
    if heads.empty:
        return result
    score = heads[f"val_{result.metric}_best"]
    best = heads.loc[score.idxmax() if result.metric == "acc" else score.idxmin(), "arm"]
    multiplier = float(best.removeprefix("head x"))
    drop = set(heads["arm"]) - {best}

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty or "arm" not in frame:
            return frame
        kept = frame[~frame["arm"].isin(drop)].copy()
        kept["arm"] = kept["arm"].replace(best, TWO_RATES)
        return kept.reset_index(drop=True)

    new_summary = keep(summary)
    new_summary["head_multiplier"] = [
        multiplier if a == TWO_RATES else math.nan for a in new_summary["arm"]
    ]
    return dataclasses.replace(
        result,
        sensitivity=keep(result.sensitivity),
        final=keep(result.final),
        summary=new_summary,
        curves=keep(result.curves),
    )


# --------------------------------------------------------------------------------------------
# what the check and the arms say

# the feasibility criterion (the one the control needs): the pretrained model's test accuracy
# above chance by at least FEASIBLE_ABOVE_CHANCE, below FEASIBLE_CEILING, and above training
# from scratch and the bag-of-words baseline by at least FEASIBLE_MARGIN.  The bag of character
# n-grams is a stronger baseline than the control needs (it reads the word boundaries a
# reordering changes); its margin is reported beside the criterion, not required by it.
FEASIBLE_ABOVE_CHANCE = 0.10
FEASIBLE_CEILING = 0.95
FEASIBLE_MARGIN = 0.03
BAG_OF_WORDS = "bag of word 1-2-grams"
CLAIM_ARM = "discr + STLR"  # Howard & Ruder's ablation: discriminative rates with STLR


def feasibility_verdict(table: pd.DataFrame) -> tuple[bool, str]:
    """Whether :func:`feasibility_table` meets the criterion, and the sentence that says why.

    The control can show an effect of a fine-tuning rule only if pretraining matters on the
    task: the fine-tuned pretrained model (mean over every language model's rows) must sit well
    above chance and below the ceiling, and beat the same model trained from scratch and a
    bag-of-words linear model by a clear margin (:data:`FEASIBLE_MARGIN`).  The margin over the
    other bag-of-n-grams baselines (character n-grams) is reported as well, without deciding:
    a fine-tuned model that does not clear it still holds pretrained knowledge a rule could
    keep or lose, but the task is then one that local character statistics solve as well."""
    rows = table.set_index("condition")["test_acc"]
    pretrained = rows[[c for c in rows.index if c.startswith("pretrained")]]
    if pretrained.empty or "from scratch" not in rows or BAG_OF_WORDS not in rows:
        return False, "the check has not run yet (its runs are not in the store)"
    ours = float(pretrained.mean())
    scratch, words, chance = (float(rows[c]) for c in ("from scratch", BAG_OF_WORDS, "chance"))
    checks = {
        f"above chance ({chance:.2f}) by at least {FEASIBLE_ABOVE_CHANCE:.2f}": ours - chance
        >= FEASIBLE_ABOVE_CHANCE,
        f"below the ceiling {FEASIBLE_CEILING:.2f}": ours < FEASIBLE_CEILING,
        f"above training from scratch ({scratch:.3f}) by {ours - scratch:+.3f}": ours - scratch
        >= FEASIBLE_MARGIN,
        f"above the {BAG_OF_WORDS} ({words:.3f}) by {ours - words:+.3f}": ours - words
        >= FEASIBLE_MARGIN,
    }
    ok = all(checks.values())
    failed = [k for k, v in checks.items() if not v]
    others = rows[[c for c in rows.index if c.startswith("bag of") and c != BAG_OF_WORDS]]
    beside = "; ".join(
        f"{name} ({acc:.3f}): {ours - acc:+.3f}, "
        + ("a clear margin" if ours - acc >= FEASIBLE_MARGIN else "not a clear margin")
        for name, acc in others.items()
    )
    text = (
        f"fine-tuned pretrained models score {ours:.3f} test accuracy (mean over language "
        f"models): " + "; ".join(f"{k} ({'yes' if v else 'no'})" for k, v in checks.items())
    )
    head = "**the control can work**" if ok else "**the control cannot work yet**"
    tail = "" if ok else f" -- fails: {', '.join(failed)}"
    note = f" Against the stronger baselines, not required: {beside}." if beside else ""
    return ok, f"{head}: {text} (a clear margin is {FEASIBLE_MARGIN:.2f}){tail}.{note}"


def answer(table: pd.DataFrame, feasible: bool, pending: Sequence[str] = ()) -> str:
    """ULMFiT's claim (claim 3) as Markdown, from ``comparisons.compare`` of :func:`plan`
    (after :func:`two_rates`) with ``"one rate"`` as the baseline: every arm's outcome per
    language model with its effect and interval, and the verdict -- *reproduced* when
    :data:`CLAIM_ARM` is better than one rate on every language model, *not reproduced* when
    it is better on none and each outcome is worse or equivalent, else *inconclusive*.  Without
    a feasible control (``feasible`` false) no verdict is drawn."""
    lines = []
    if not feasible:
        lines.append(
            "- **ULMFiT's claim (claim 3)**: no verdict -- the feasibility check above fails, so "
            "no fine-tuning rule could show an effect on this testbed."
        )
    if len(table):
        for arm, rows in table.groupby("arm", sort=False):
            effects = "; ".join(
                f"{g}: {o}, {stats.format_ci(e, lo, hi)}"
                for g, o, e, lo, hi in zip(
                    rows["group"],
                    rows["outcome"],
                    rows["effect"],
                    rows["ci_low"],
                    rows["ci_high"],
                    strict=True,
                )
            )
            lines.append(
                f"- **{arm}** against one rate ({stats.count_outcomes(rows['outcome'])}): "
                f"test accuracy {effects}."
            )
        claim = table[table["arm"] == CLAIM_ARM]["outcome"]
        if feasible and len(claim):
            if (claim == "better").all():
                verdict = "**reproduced**"
            elif not (claim == "better").any() and claim.isin(["worse", "equivalent"]).all():
                verdict = "**not reproduced**"
            else:
                verdict = "**inconclusive**"
            lines.insert(
                0,
                f"- **ULMFiT's claim (claim 3: discriminative rates with slanted triangular rates "
                f"beat one rate in fine-tuning)**: {verdict} ({CLAIM_ARM} against one rate on "
                f"{len(claim)} language models: {stats.count_outcomes(claim)}).",
            )
        lines.append(
            stats.unresolved_note(
                table,
                not_that="the rule does nothing",
                seeds="fine-tuning seeds",
            )
        )
    if pending:
        lines.append(f"- **Pending** (runs not in the store yet): {', '.join(pending)}.")
    return "\n".join(lines)
