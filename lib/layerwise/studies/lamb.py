"""Study 07: LAMB -- does a layer-wise trust ratio on Adam's step keep quality as the batch grows,
once AdamW's rate is retuned at every batch size?  Under tuning protocol v2.

LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76
minutes", ``docs/references.md#you2020lamb``; v5 and TF-Addons) rescales Adam's step of every
parameter tensor ``w`` by a trust ratio::

    m = b1 m + (1 - b1) g        v = b2 v + (1 - b2) g^2
    m_hat = m / (1 - b1^t)       v_hat = v / (1 - b2^t)          (bias correction)
    r = m_hat / (sqrt(v_hat) + eps) + wd * w
    w = w - lr_t * phi(||w||) / ||r|| * r                      (phi = identity here)

so every tensor moves by ``lr_t * ||w||`` per step, ``||dw|| / ||w|| = lr_t``, whatever its
gradient's scale; AdamW's step is the same with the ratio set to 1.  The paper trains BERT at
batch 32K with the rate tuned once and scaled by ``sqrt(B / B0)`` ("we did not tune the
hyperparameters of LAMB while increasing the batch size") and reports that AdamW stops scaling
beyond 16K (claim 2, ``docs/references.md#claim-2``).  Nado et al. (2021,
``docs/references.md#nado2021reality``) retuned AdamW at every batch size and found it matches
LAMB on BERT at 32K.

**Design.**  Two testbeds (:data:`BEDS`): a character transformer on tiny-shakespeare
(``tinyshakespeare/transformer-2x64``: nanoGPT's CPU model at half its depth and width, for
cost) and the MNIST-1D patch transformer (the project's ``mnist1d/transformer``), each at six
batch sizes spanning a factor 32 (:data:`BATCH_SIZES`), every run on the same budget of tokens
or examples (:data:`BUDGETS`, ``batch_scaling.Budget``: a large batch takes fewer steps, not
less compute per epoch), with linear warmup over the first :data:`WARMUP_SHARE` of the budget
and linear decay to zero (``(1 - p)^1``, LAMB's BERT schedule).  Everything but the optimizer
is the testbed's (text: betas (0.9, 0.99), weight decay 0.1 on matrices only, gradient norm
clipped at 1; MNIST-1D: no weight decay); ``eps = 1e-8`` in every arm, so AdamW and LAMB differ
in the trust ratio alone.

**Arms** (:data:`ARMS`): ``adamw``; ``lamb`` (bias-corrected, ``phi`` the identity, every
tensor adapted); and three ablations, each ``lamb`` with one switch of ``optim.LAMB`` changed
(:data:`ABLATIONS`): the trust ratio forced to 1 (``layer_adaptation=False``: AdamW's step, on
AdamW's grid), no bias correction (the paper's v3), 1-D tensors (biases, LayerNorm gains)
excluded from the ratio (TF-Addons' ``exclude_from_layer_adaptation``, timm's groups).

**Two protocols** for the rate at ``B > B0``:

* **paper** (You et al.): the rate tuned at ``B0`` (protocol v2) times ``sqrt(B / B0)``, not
  tuned again -- the arms ``adamw sqrt-scaled`` and ``lamb sqrt-scaled`` (:data:`SCALED`);
* **retuned** (Nado et al.): every arm tuned at every batch size under protocol v2, its coarse
  grid moved by ``4^round(log4 sqrt(B / B0))`` as a starting point.

At ``B0`` both protocols share the same tuned runs.  The ablations run retuned at the two
largest batch sizes of the text testbed only (``full``; at every batch size on both testbeds
in ``large``): what the budget allows.

**Verdict 2** (:func:`answer`): at the two largest batch sizes, is LAMB better than AdamW beyond
the seed noise, under each protocol?  Judged on paired final seeds by the four outcomes of
``harness.stats`` (:func:`compare_verdict`, one Holm family over both protocols and testbeds);
the smallest effect of interest is 0.02 nats of test loss on text and 10% of AdamW's test error
on MNIST-1D.  Beside it, each ablation against LAMB (:func:`compare_ablations`, a second family)
and LAMB's loss of quality from ``B0`` against AdamW's (:func:`degradation`, the drop contrast,
a third).  Monitored reruns of AdamW and LAMB at the smallest and largest batch size record each
tensor's ``||dw|| / ||w||`` and trust ratio over training (:func:`rate_frame`).

Profiles: ``smoke`` (minutes, for checks), ``full`` (the notebook's study; :data:`COST`) and
``large`` (nanoGPT's CPU model at batch 12 to 384 on four times the tokens, MNIST-1D on five
times the examples, the ablations everywhere; for a GPU: ``plan("large", device="cuda")``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch

from .._validate import check_choice
from ..harness import batch_scaling, comparisons, data, models, stats, testbeds
from ..harness.batch_scaling import FAILED, Arm, Budget, by_batch, check_batch
from ..harness.config import RunConfig
from ..harness.store import Store
from ..harness.sweep import run_stored
from ..harness.testbeds import Testbed
from ..harness.tuning import TuningResult

__all__ = [
    "ABLATIONS",
    "ABLATION_PAIRS",
    "ARMS",
    "BATCH_SIZES",
    "BEDS",
    "BUDGETS",
    "COST",
    "EPS",
    "LAMB_GRID",
    "MAIN_ARMS",
    "PROFILES",
    "SCALED",
    "VERDICT_PAIRS",
    "Bed",
    "add_scaled",
    "answer",
    "arm_options",
    "arm_table",
    "base_batches",
    "batch_config",
    "budget_table",
    "by_batch",
    "compare_ablations",
    "compare_verdict",
    "degradation",
    "monitored_configs",
    "plan",
    "plot_loss_vs_batch",
    "plot_rates",
    "rate_frame",
    "run_stored",
    "score_table",
    "tensor_table",
    "verdict_batches",
]

PROFILES: tuple[str, ...] = ("smoke", "full", "large")

# --------------------------------------------------------------------------------------------
# the testbeds and their budgets


@dataclasses.dataclass(frozen=True)
class Bed:
    """A testbed of this study: the project testbed ``testbed`` (its data, model, optimizer
    options, rule, clipping and metric) with ``model_options`` replacing its model's sizes
    (``None``: the testbed's own model)."""

    testbed: str
    model_options: Mapping[str, Any] | None
    description: str


TEXT = "tinyshakespeare/transformer-2x64"
TEXT_LARGE = "tinyshakespeare/transformer"
IMAGE = "mnist1d/transformer"

BEDS: dict[str, Bed] = {
    TEXT: Bed(
        "tinyshakespeare/transformer",
        {"depth": 2, "width": 64},
        "character transformer, 2 blocks 64 wide, 4 heads, context 64, head tied to the "
        "embedding (nanoGPT's CPU model at half its depth and width)",
    ),
    TEXT_LARGE: Bed(
        "tinyshakespeare/transformer",
        None,
        "nanoGPT's CPU character transformer: 4 blocks 128 wide, 4 heads, context 64",
    ),
    IMAGE: Bed(
        "mnist1d/transformer",
        None,
        "MNIST-1D patch transformer: 2 blocks 64 wide, 4 heads, patches of 4 (the testbed)",
    ),
}
SWEEP: dict[str, tuple[str, ...]] = {
    "smoke": (TEXT, IMAGE),
    "full": (TEXT, IMAGE),
    "large": (TEXT_LARGE, IMAGE),
}
# six batch sizes a factor 2 apart, x32 from the smallest (sequences of 64 characters on text)
BATCH_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "smoke": {TEXT: (8, 16, 32), IMAGE: (16, 32, 64)},
    "full": {TEXT: (8, 16, 32, 64, 128, 256), IMAGE: (16, 32, 64, 128, 256, 512)},
    "large": {TEXT_LARGE: (12, 24, 48, 96, 192, 384), IMAGE: (16, 32, 64, 128, 256, 512)},
}
# text: 100 steps of 256 x 64 tokens at the largest batch (3,200 at the smallest), 1.8 passes
# over the training characters; MNIST-1D: 160 steps of 512 (5,120 of 16), 20.5 epochs of the
# 4,000 training examples.  large: nanoGPT's model on 256 steps of 384 x 64 tokens (8,192 at
# 12), MNIST-1D on 800 steps of 512 (102 epochs, the testbed's own 4,000 x 100 examples).
BUDGETS: dict[str, dict[str, Budget]] = {
    "full": {TEXT: Budget(1_638_400, "tokens", 64), IMAGE: Budget(81_920)},
    "large": {TEXT_LARGE: Budget(6_291_456, "tokens", 64), IMAGE: Budget(409_600)},
}
WARMUP_SHARE = 0.05  # of the budget, at every batch size (nanoGPT: 100 of 2,000 steps)
POWER = 1.0  # linear decay to zero after the warmup (LAMB's BERT schedule, v5)

# --------------------------------------------------------------------------------------------
# the arms

EPS = 1e-8  # torch AdamW's default, given to LAMB too (TF-Addons' LAMB default is 1e-6)
ADAMW_GRID: tuple[float, ...] = comparisons.COARSE_GRIDS["adamw"]  # 2.5e-4 .. 1.6e-2 at B0
# LAMB moves every tensor by lr * ||w|| per step; AdamW moves a weight of size ~0.02-0.07 by
# about lr per coordinate, i.e. by 15-50 lr relative to ||w||: LAMB's grid sits 10x higher.
LAMB_GRID: tuple[float, ...] = (2.5e-3, 1e-2, 4e-2, 0.16)

MAIN_ARMS: tuple[str, ...] = ("adamw", "lamb")
ABLATIONS: tuple[str, ...] = ("lamb trust=1", "lamb no bias corr.", "lamb excl. 1-D")
# arm -> (optimizer, the switches of optim.LAMB it sets, its coarse grid at B0, what it is)
ARMS: dict[str, tuple[str, dict[str, Any], tuple[float, ...], str]] = {
    "adamw": ("adamw", {}, ADAMW_GRID, "AdamW (decoupled weight decay)"),
    "lamb": ("lamb", {}, LAMB_GRID, "LAMB v5: bias-corrected, phi = identity, every tensor"),
    "lamb trust=1": (
        "lamb",
        {"layer_adaptation": False},
        ADAMW_GRID,
        "LAMB with every trust ratio forced to 1: AdamW's step, so AdamW's grid",
    ),
    "lamb no bias corr.": (
        "lamb",
        {"bias_correction": False},
        LAMB_GRID,
        "LAMB without bias correction (paper v3)",
    ),
    "lamb excl. 1-D": (
        "lamb",
        {"exclude_1d": True},
        LAMB_GRID,
        "LAMB with biases and LayerNorm gains out of the trust ratio (plain Adam for them)",
    ),
}
SCALED: dict[str, str] = {"adamw sqrt-scaled": "adamw", "lamb sqrt-scaled": "lamb"}
# verdict 2: LAMB against AdamW under each protocol; the ablations against LAMB
VERDICT_PAIRS: tuple[tuple[str, str], ...] = (
    ("lamb", "adamw"),
    ("lamb sqrt-scaled", "adamw sqrt-scaled"),
)
ABLATION_PAIRS: tuple[tuple[str, str], ...] = tuple((a, "lamb") for a in ABLATIONS)
PROTOCOLS = {"lamb sqrt-scaled": "paper", "lamb": "retuned"}  # LAMB's arm under each
MONITOR_SEEDS = 2  # final seeds rerun with the monitor on (smallest and largest batch)

# Measured on the machine of the study (2 cores, one torch thread per run, while a sweep kept
# both cores busy, so these are upper bounds): the 2x64 character transformer on the full
# budget takes 31 s at batch 8 (3,200 steps; AdamW) and 25 s at batch 256 (100 steps; AdamW and
# LAMB alike), about 2 s of it the final evaluation; the MNIST-1D transformer 23 s at batch 16
# (5,120 steps; LAMB, whose step costs ~20% more than AdamW's there) and 15 s at batch 512.
# Full profile: about 450 text runs (18 tuned comparisons -- AdamW and LAMB at six batch sizes,
# three ablations at two -- of ~20 grid runs + 3 final seeds; 30 sqrt-scaled reruns; 8 monitored
# reruns) at ~27 s, about 200 core-minutes, and about 470 MNIST-1D runs (12 comparisons of ~20
# grid runs + 10 final seeds; 100 sqrt-scaled reruns; 8 monitored) at ~16 s, about 125
# core-minutes: about 325 core-minutes in all, 2.7 hours on 2 cores.  Large (not measured; a
# small transformer's step on a GPU is bound by kernel launches, ~4-6 ms): about 730 text runs
# of ~17 s and 1,010 MNIST-1D runs of ~36 s, about 13 hours of single-process GPU time, 3-4
# hours with 4 worker processes on one GPU.
COST: dict[str, str] = {
    "smoke": "about 6 minutes on one core",
    "full": "about 325 core-minutes (measured per-run costs; about 2.7 hours on 2 cores)",
    "large": "about 13 GPU-hours in one process (estimated, not measured); 3-4 h with 4 workers",
}


def _check_profile(profile: str) -> str:
    return check_choice("profile", profile, PROFILES)


def _check_bed(profile: str, bed: str) -> str:
    return check_choice(f"{profile} testbed", bed, SWEEP[_check_profile(profile)])


def base_batches(profile: str = "full") -> dict[str, int]:
    """``B0`` of every testbed of the profile: its smallest batch size."""
    return {bed: BATCH_SIZES[_check_profile(profile)][bed][0] for bed in SWEEP[profile]}


def verdict_batches(profile: str = "full") -> dict[str, tuple[int, ...]]:
    """The batch sizes verdict 2 is read at: each testbed's two largest."""
    return {bed: BATCH_SIZES[_check_profile(profile)][bed][-2:] for bed in SWEEP[profile]}


def _ablation_batches(profile: str, bed: str) -> tuple[int, ...]:
    """Where the ablations run: text at its two largest batches (``smoke``, ``full``); every
    batch size of every testbed in ``large``."""
    sizes = BATCH_SIZES[profile][bed]
    if profile == "large":
        return sizes
    return sizes[-2:] if bed == TEXT else ()


def _testbed(bed: str) -> Testbed:
    spec = BEDS[bed]
    return testbeds.TESTBEDS[spec.testbed]


def _base(bed: str) -> RunConfig:
    """The testbed's config with this study's model sizes (every field the study changes is
    replaced by :func:`batch_config`)."""
    config = _testbed(bed).config
    options = BEDS[bed].model_options
    return config if options is None else config.replace(model_options=dict(options))


def arm_options(bed: str, arm: str) -> dict[str, Any]:
    """The optimizer options of ``arm`` on ``bed``: the testbed's (weight decay, betas),
    ``eps`` = :data:`EPS`, and the arm's switch of ``optim.LAMB``."""
    check_choice("testbed", bed, BEDS)
    switches = ARMS[check_choice("arm", arm, ARMS)][1]
    return {**_testbed(bed).config.optimizer_options, "eps": EPS, **switches}


def _arm(bed: str, arm: str) -> Arm:
    optimizer, _, grid, what = ARMS[check_choice("arm", arm, ARMS)]
    return Arm(optimizer, arm_options(bed, arm), grid, what)


def batch_config(
    bed: str, arm: str, batch: int, profile: str = "full", device: str = "cpu"
) -> RunConfig:
    """``bed`` trained by ``arm`` at batch ``batch`` on the profile's budget: ``budget / (B *
    block)`` steps (text) or ``budget / B`` (MNIST-1D), linear warmup over the first
    :data:`WARMUP_SHARE` of them, then linear decay to zero; 8 evaluations.  ``smoke``:
    ``comparisons.SMOKE_STEPS`` steps.  The rate is a placeholder the tuner replaces."""
    _check_bed(profile, bed)
    spec = _arm(bed, arm)
    check_batch(batch)
    base = _base(bed)
    budget = warmup = None
    if profile != "smoke":
        budget = BUDGETS[profile][bed]
        if budget.block != (base.block if budget.unit == "tokens" else 1):
            raise ValueError(
                f"{bed}: budget read {budget.block} tokens per sequence, runs {base.block}"
            )
        warmup = budget.fraction(WARMUP_SHARE)
    return batch_scaling.batch_config(
        base, spec, batch, budget, warmup=warmup, power=POWER, profile=profile, device=device
    )


def _arms_at(profile: str, bed: str, batch: int) -> tuple[str, ...]:
    return MAIN_ARMS + (ABLATIONS if batch in _ablation_batches(profile, bed) else ())


def plan(profile: str = "full", device: str = "cpu") -> list[comparisons.Comparison]:
    """The tuned comparisons: one per (testbed, batch size, arm) -- AdamW and LAMB at every
    batch size, the ablations where :func:`_ablation_batches` puts them -- each on its own
    coarse grid moved to the batch (``batch_scaling.grid_at`` from ``B0``) under
    ``comparisons.grid_protocol`` (final seeds: three on text, ten on MNIST-1D); group
    ``"<arm> · B=<batch>"``.  Ordered by testbed, batch size (``B0`` first: the sqrt-scaled arms
    need it), arm."""
    out = []
    for bed in SWEEP[_check_profile(profile)]:
        sizes = BATCH_SIZES[profile][bed]
        for batch in sizes:
            for arm in _arms_at(profile, bed, batch):
                config = batch_config(bed, arm, batch, profile, device)
                base = _testbed(bed)
                testbed = Testbed(bed, config, base.metric, None, None, BEDS[bed].description)
                options = config.optimizer_options
                lamb = config.optimizer == "lamb"
                design = {  # AdamW bias-corrects its moments and has no trust ratio
                    "optimizer": config.optimizer,
                    "bias_correction": bool(options.get("bias_correction", True)),
                    "layer_adaptation": lamb and bool(options.get("layer_adaptation", True)),
                    "exclude_1d": bool(options.get("exclude_1d", False)),
                }
                out.append(
                    batch_scaling.tuned_comparison(
                        testbed, arm, _arm(bed, arm), sizes[0], profile=profile, design=design
                    )
                )
    return out


def budget_table(plan: Sequence[comparisons.Comparison]) -> pd.DataFrame:
    """Per testbed and batch size of ``plan``: the steps, the warmup steps, what one step reads
    (sequences x characters, or examples) and the total -- the same at every batch size."""
    rows = {}
    for c in plan:
        config = c.bed.config
        text = config.dataset == "tinyshakespeare"
        per_step = config.batch_size * (config.block if text else 1)
        rows[(c.bed.name, config.batch_size)] = {
            "testbed": c.bed.name,
            "B": config.batch_size,
            "steps": config.steps,
            "warmup": config.schedule_options["warmup"],
            "per step": f"{config.batch_size} x {config.block} tokens"
            if text
            else f"{per_step} examples",
            "total": f"{config.steps * per_step:,} {'tokens' if text else 'examples'}",
        }
    return pd.DataFrame(list(rows.values()))


def arm_table(profile: str = "full") -> pd.DataFrame:
    """What each arm is, as numbers: optimizer, LAMB's switches, ``eps``, how its rate is set,
    its coarse grid at ``B0`` and the batch sizes it runs at per testbed."""
    rows = []
    for arm in (*MAIN_ARMS, *ABLATIONS, *SCALED):
        source = SCALED.get(arm, arm)
        optimizer, switches, grid, _ = ARMS[source]
        where = {
            bed: [b for b in BATCH_SIZES[profile][bed] if source in _arms_at(profile, bed, b)]
            for bed in SWEEP[_check_profile(profile)]
        }
        if arm in SCALED:
            where = {bed: sizes[1:] for bed, sizes in where.items()}
        rows.append(
            {
                "arm": arm,
                "optimizer": optimizer,
                "bias_correction": switches.get("bias_correction", True),
                "layer_adaptation": switches.get("layer_adaptation", optimizer == "lamb"),
                "exclude_1d": switches.get("exclude_1d", False),
                "eps": EPS,
                "rate": f"{source}'s at B0 x sqrt(B / B0)" if arm in SCALED else "tuned per batch",
                "coarse grid at B0": "-" if arm in SCALED else ", ".join(f"{lr:g}" for lr in grid),
                **{
                    f"B on {bed}": ", ".join(map(str, sizes)) or "-" for bed, sizes in where.items()
                },
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# the paper's protocol, the monitored reruns


def add_scaled(
    merged: Mapping[tuple[str, str], TuningResult],
    plan: Sequence[comparisons.Comparison],
    study: str,
    profile: str = "full",
    *,
    store: Store | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> dict[tuple[str, str], TuningResult]:
    """``merged`` with the paper's protocol: ``adamw sqrt-scaled`` and ``lamb sqrt-scaled`` at
    every batch above ``B0``, the rate their source chose at ``B0`` times ``sqrt(B / B0)`` (You
    et al. 2020), rerun on the source's final seeds there (``batch_scaling.add_scaled``)."""
    return batch_scaling.add_scaled(
        merged,
        plan,
        study,
        SCALED,
        "sqrt",
        base_batches(profile),
        store=store,
        jobs=jobs,
        progress=progress,
    )


def monitored_configs(
    merged: Mapping[tuple[str, str], TuningResult],
    plan: Sequence[comparisons.Comparison],
    seeds: int = MONITOR_SEEDS,
) -> list[tuple[str, RunConfig]]:
    """(arm, config) of AdamW's and LAMB's final runs (rates retuned) at each testbed's
    smallest and largest batch size, rerun with the per-tensor monitor on about 40 times: the
    first ``seeds`` final seeds at the chosen rate."""
    return batch_scaling.monitored_configs(
        merged, plan, seeds, arms=MAIN_ARMS, pick=lambda sizes: (sizes[0], sizes[-1])
    )


def _short(name: str) -> str:
    """``blocks.0.attn.qkv.weight`` -> ``b0.attn.qkv.w``: a tensor's name in a legend."""
    parts = name.split(".")
    if parts[0] == "blocks":
        parts = [f"b{parts[1]}", *parts[2:]]
    last = {"weight": "w", "bias": "b"}.get(parts[-1], parts[-1])
    return ".".join([*parts[:-1], last])


def tensor_table(config: Mapping[str, Any] | RunConfig) -> pd.DataFrame:
    """One row per parameter tensor of a run's model in ``named_parameters`` order (a tied head
    appears once, as the embedding): name, a short label, ``ndim``, ``numel``."""
    if isinstance(config, RunConfig):
        config = config.to_dict()
    with torch.random.fork_rng(devices=[]):
        model = models.build(
            config["model"], data.spec(config["dataset"]), **(config.get("model_options") or {})
        )
    return pd.DataFrame(
        [
            {"name": n, "label": _short(n), "ndim": p.ndim, "numel": p.numel()}
            for n, p in model.named_parameters()
        ]
    )


def _bed_of(config: Mapping[str, Any]) -> str:
    """The :data:`BEDS` name of a run's config (dataset and model sizes)."""
    for name, bed in BEDS.items():
        testbed = testbeds.TESTBEDS[bed.testbed].config
        options = dict(bed.model_options or testbed.model_options)
        if (
            config["dataset"] == testbed.dataset
            and dict(config.get("model_options") or {}) == options
        ):
            return name
    raise ValueError(
        f"no testbed of this study is {config['model']} on {config['dataset']} with options "
        f"{config.get('model_options')!r}; the study's testbeds: {', '.join(BEDS)}"
    )


def _describe(config: Mapping[str, Any]) -> tuple[str, pd.DataFrame]:
    return _bed_of(config), tensor_table(config)


# monitored quantity -> axis label (trust_ratio: LAMB's own; AdamW's is the one LAMB would apply)
RATE_QUANTITIES = {"update_ratio": "||dw|| / ||w|| per step", "trust_ratio": "||w|| / ||r||"}


def rate_frame(
    pairs: Sequence[tuple[str, RunConfig]], records: Sequence[Mapping[str, Any]] | None
) -> pd.DataFrame:
    """The monitored reruns (``records`` in the order of :func:`monitored_configs`' ``pairs``;
    ``None`` while pending gives an empty frame) as a tidy frame (``batch_scaling.trust_frame``)
    with, for AdamW, the trust ratio LAMB would apply at AdamW's state: AdamW's step is ``dw =
    lr_t r`` (``r`` with the decay in it), so ``||w|| / ||r|| = lr_t ||w|| / ||dw|| = lr_t /
    (||dw|| / ||w||)``."""
    frame = batch_scaling.trust_frame(pairs, records, _describe)
    adamw = frame[(frame["arm"] == "adamw") & frame["quantity"].isin(["lr", "update_ratio"])]
    if not len(adamw):
        return frame
    keys = ["testbed", "batch_size", "arm", "seed", "step", "name", "label", "ndim"]
    wide = adamw.pivot_table(index=keys, columns="quantity", values="value").reset_index()
    wide = wide[wide["update_ratio"] > 0]
    implied = wide[keys].assign(quantity="trust_ratio", value=wide["lr"] / wide["update_ratio"])
    order = {name: i for i, name in enumerate(dict.fromkeys(frame["name"]))}  # the model's
    implied = implied.sort_values("name", key=lambda names: names.map(order), kind="stable")
    frame = pd.concat([frame, implied], ignore_index=True)
    # panels in a fixed order: testbed, batch size, AdamW before LAMB (tensors keep theirs)
    return frame.sort_values(["testbed", "batch_size", "arm"], kind="stable", ignore_index=True)


# --------------------------------------------------------------------------------------------
# tables, the three families, the answer


def score_table(merged: Mapping[tuple[str, str], TuningResult]) -> pd.DataFrame:
    """Per testbed, batch size and arm: rate, tuned or not, seeds, and the test metric's mean
    with its 95% interval (``batch_scaling.score_table``)."""
    return batch_scaling.score_table(merged)


def compare_verdict(
    merged: Mapping[tuple[str, str], TuningResult],
    profile: str = "full",
    *,
    sesoi_nats: float = 0.02,
    sesoi_relative_error: float = 0.10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Verdict 2's family: LAMB against AdamW at each testbed's two largest batch sizes, under
    the paper's protocol (``lamb sqrt-scaled`` against ``adamw sqrt-scaled``) and retuned
    (``lamb`` against ``adamw``), one Holm family (``batch_scaling.compare_pairs``)."""
    return batch_scaling.compare_pairs(
        merged,
        VERDICT_PAIRS,
        batches=verdict_batches(profile),
        sesoi_relative_error=sesoi_relative_error,
        sesoi_nats=sesoi_nats,
        alpha=alpha,
    )


def compare_ablations(
    merged: Mapping[tuple[str, str], TuningResult],
    *,
    sesoi_nats: float = 0.02,
    sesoi_relative_error: float = 0.10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Each ablation against LAMB (both retuned) wherever both ran, one Holm family: *worse*
    means the switch the ablation turns off helps LAMB."""
    return batch_scaling.compare_pairs(
        merged,
        ABLATION_PAIRS,
        sesoi_relative_error=sesoi_relative_error,
        sesoi_nats=sesoi_nats,
        alpha=alpha,
    )


def degradation(
    merged: Mapping[tuple[str, str], TuningResult],
    profile: str = "full",
    *,
    sesoi_nats: float = 0.02,
    sesoi_relative_error: float = 0.10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """LAMB's change of the test metric from ``B0`` to each of the two largest batch sizes
    against AdamW's, per seed, under each protocol (``batch_scaling.drop_contrasts``; at ``B0``
    a scaled arm is its source): one Holm family; *better* means LAMB degrades less."""
    return batch_scaling.drop_contrasts(
        merged,
        VERDICT_PAIRS,
        base_batches(profile),
        at_base=SCALED,
        batches=verdict_batches(profile),
        sesoi_relative_error=sesoi_relative_error,
        sesoi_nats=sesoi_nats,
        alpha=alpha,
    )


def _claimed(row: Any) -> str:
    """A row's outcome for the claim "LAMB is better": a *failed* row counts as *better* when
    only the baseline diverged on every final seed (AdamW did not finish, LAMB did), *worse*
    when only LAMB did."""
    if row.outcome != FAILED:
        return str(row.outcome)
    return {"baseline": "better", "arm": "worse"}.get(row.failed, FAILED)


def _detail(row: Any, unit: str) -> str:
    if row.outcome == FAILED:
        who = {"baseline": row.baseline, "arm": row.arm, "both": "both arms"}[row.failed]
        return f"{who} diverged on every final seed"
    return (
        f"{batch_scaling.effect_text(row._asdict())} {unit} (MDE {row.mde:.3f}, SESOI "
        f"{row.sesoi:.3f})"
    )


_READING = {
    "paper": {
        "reproduced": "**reproduced**: LAMB beats AdamW beyond the seed noise at both batch sizes",
        "partly reproduced": "**partly reproduced**: LAMB beats AdamW at one of the two",
        "not reproduced": "**not reproduced**: LAMB is no better than AdamW at either",
        "undecided": "**undecided**: the seeds could not tell at every batch size",
    },
    "retuned": {
        "reproduced": (
            "**LAMB better**: LAMB still beats AdamW at both batch sizes with both rates retuned "
            "-- against what Nado et al. (2021) found"
        ),
        "partly reproduced": "**LAMB better at one of the two** with both rates retuned",
        "not reproduced": (
            "**LAMB no better**: with both rates retuned AdamW matches or beats LAMB -- what "
            "Nado et al. (2021) found"
        ),
        "undecided": "**undecided**: the seeds could not tell at every batch size",
    },
}


def answer(levels: pd.DataFrame, ablations: pd.DataFrame, drops: pd.DataFrame) -> str:
    """Verdict 2 as Markdown, from :func:`compare_verdict`, :func:`compare_ablations` and
    :func:`degradation`.

    Per testbed and protocol, from LAMB's outcomes against AdamW at the two largest batch sizes
    (``batch_scaling.verdict_of``; a batch where only AdamW diverged on every final seed counts
    as *better*): *reproduced* when LAMB is *better* at both, *partly* at one, *not reproduced*
    when it is *equivalent* or *worse* at both, *undecided* otherwise (inconclusive rows: the
    minimum detectable effect says whether more seeds would tell).  Then each ablation against
    LAMB, the degradation from ``B0``, and the count of comparisons that could not resolve their
    smallest effect of interest."""
    if not len(levels):
        return "- Verdict 2: no result yet (every comparison is still pending)."
    lines = []
    for net, rows in levels.groupby("testbed", sort=False):
        metric = rows["metric"].dropna().iloc[0] if rows["metric"].notna().any() else "test_loss"
        unit = "nats" if metric == "test_loss" else "accuracy"
        sense = "lower test loss" if metric == "test_loss" else "higher test accuracy"
        for arm, protocol in PROTOCOLS.items():
            mine = rows[rows["arm"] == arm]
            if not len(mine):
                continue
            reading = _READING[protocol][
                batch_scaling.verdict_of([_claimed(r) for r in mine.itertuples()])
            ]
            detail = "; ".join(
                f"B={batch_scaling.batch_of(r.group)}: {_claimed(r)}, {_detail(r, unit)}"
                for r in mine.itertuples()
            )
            how = (
                "rates tuned at the smallest batch, then scaled by sqrt(B / B0)"
                if protocol == "paper"
                else "rates retuned at every batch size"
            )
            lines.append(
                f"- **{net}, {protocol} protocol** ({how}; LAMB minus AdamW, {sense} is better): "
                f"{reading}. {detail}."
            )
        if len(drops):
            rank = {arm: i for i, arm in enumerate(PROTOCOLS)}  # the paper's protocol first
            mine = drops[drops["testbed"] == net].sort_values(
                ["arm", "batch_size"], key=lambda c: c.map(rank) if c.name == "arm" else c
            )
            parts = ", ".join(
                f"{PROTOCOLS.get(r.arm, r.arm)} B={r.batch_size} {_claimed(r)}"
                + ("" if r.outcome == FAILED else f" ({r.effect:+.3f})")
                for r in mine.itertuples()
            )
            if parts:
                lines.append(
                    f"  - Degradation from the smallest batch, LAMB's change minus AdamW's "
                    f"(better: LAMB degrades less): {parts}."
                )
        if len(ablations):
            mine = ablations[ablations["testbed"] == net]
            for arm, arm_rows in mine.groupby("arm", sort=False):
                parts = ", ".join(
                    f"B={batch_scaling.batch_of(r.group)} {r.outcome}"
                    + ("" if r.outcome == FAILED else f" ({r.effect:+.3f})")
                    for r in arm_rows.itertuples()
                )
                lines.append(
                    f"  - {arm} against LAMB (worse: the switch it turns off helps LAMB): {parts}."
                )
    families = [f for f in (levels, ablations, drops) if len(f)]
    resolved = pd.concat([f[f["outcome"] != FAILED] for f in families], ignore_index=True)
    lines.append(stats.unresolved_note(resolved))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# figures


def plot_loss_vs_batch(table: pd.DataFrame) -> plt.Figure:
    """The test metric (loss on text, accuracy on MNIST-1D) against batch size per arm with
    95% intervals (``batch_scaling.plot_metric_vs_batch``); the sqrt-scaled arms start from
    their source's point at ``B0``."""
    return batch_scaling.plot_metric_vs_batch(table, at_base=SCALED)


def plot_rates(frame: pd.DataFrame, quantity: str) -> plt.Figure:
    """A monitored quantity of :data:`RATE_QUANTITIES` against the step for AdamW and LAMB, one
    panel per testbed, batch size and arm, one line per tensor (median over seeds)."""
    check_choice("monitored quantity", quantity, RATE_QUANTITIES)
    return batch_scaling.plot_rates(frame, quantity, ylabel=RATE_QUANTITIES[quantity], ncols=4)
