"""Study 02 (v2): do layers converge at different speeds when a network is trained from scratch?

Design (each choice answers a defect the review of v1 found; ``docs/references.md#claim-6``,
``#claim-7``, ``#claim-12``):

* **A real end point.**  Every instrumented run trains at its testbed's short budget with linear
  warmup and cosine decay to zero (``comparisons.with_decay``), so the final weights are where
  training stopped moving, not a point on a random walk under a constant rate.
* **Tuned rates, both optimizers.**  SGD with momentum 0.9 and AdamW, each at the uniform rate
  protocol v2 chose: read from study 03's stored uniform arms where 03 tuned that pair
  (:data:`FROM_03`), tuned here under the same protocol where it did not (:data:`TUNED_HERE`:
  SGD on the families 03 ran with AdamW only, Fashion-MNIST's recurrent and attention families
  with both, SGD on the character transformer, and Zhang-Bengio-Singer's network).  AdamW on the
  character transformer runs at nanoGPT's published rate (``1e-3``; :data:`RECIPE`), stated as
  untuned; SGD has no published recipe there, so it is tuned.
* **Log-spaced checkpoints.**  :data:`CHECKPOINTS` checkpoints at log-spaced steps, step 0 and
  the final step included (``probes.log_checkpoints``), so the first few percent of training,
  where layers move most, get as many points as the rest.
* **CKA normalised by its start.**  Beside raw linear CKA to final, ``(CKA(t) - CKA(0)) / (1 -
  CKA(0))`` (``probes.normalise_to_start``): the fraction of the way from the layer's starting
  similarity to its final representation.
* **Settling time, not first crossing.**  A layer's convergence step is the checkpoint from
  which its measure stays past the threshold (``probes.settling_times``): normalised CKA >=
  :data:`CKA_LEVEL`, distance to final < :data:`DISTANCE_LEVEL`.
* **One number per family for the depth trend.**  The slope of log convergence time against
  relative depth (0 = input layer, 1 = top), i.e. ``ln(t_top / t_bottom)`` on the fitted line,
  with a bootstrap interval over seeds (``stats.depth_trend``), plus Kendall's tau-b between
  depth and time per seed with its ties (``stats.kendall_tau_b``).  Neither gets stricter with
  the number of layers, unlike v1's "every layer no later than every deeper one".
* **Zhang, Bengio & Singer in their setting.**  Their fully connected network (784-256-256-256-10,
  :data:`ZBS_FCN`) on Fashion-MNIST with SGD and, as a second arm, AdamW, trained
  :data:`ZBS_EPOCHS` epochs; every instrumented classifier (the CNNs included) records the
  error with one layer reset to each checkpoint (re-initialisation) and drawn afresh
  (re-randomisation).  Reported as effect sizes (added error with an interval over seeds).
* **The spread a per-layer rate would correct.**  Per weight matrix, ``||Δw|| / ||w||`` per step
  (the relative update, what a per-layer rate scales) and ``||g|| / ||w||``, from
  ``probes.Monitor``; the spread is the largest over the smallest matrix at each monitored step.

Weight convergence and Chen, Yuille & Zhou (ICLR 2023): the measure here is the project's
distance to final, ``||w(t) - w(T)|| / ||w(0) - w(T)||`` (``probes.distance_to_final``).  Their
paper's own definition of a layer's convergence could not be read (only the abstract and
introduction of the stored text were reachable), so it is not implemented literally; see
``docs/references.md#chen2023layerconvergence`` for what differs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._validate import check_choice
from ..harness import comparisons, stats
from ..harness.comparisons import Comparison
from ..harness.config import RunConfig
from ..harness.models import build
from ..harness.store import Store
from ..harness.sweep import MissingRunsError, run_configs
from ..harness.testbeds import Testbed, testbed
from ..harness.tuning import TuningResult
from ..probes import convergence_frames, monitor_frame, settling_times
from . import discriminative_rates

__all__ = [
    "CHECKPOINTS",
    "CKA_LEVEL",
    "CRITICAL_ERROR",
    "DISTANCE_LEVEL",
    "FROM_03",
    "RATES_STUDY",
    "RECIPE",
    "ROBUST_ADDED",
    "STUDY",
    "TUNED_HERE",
    "ZBS_FCN",
    "Instrumented",
    "answer",
    "cka_long",
    "distance_long",
    "gather",
    "instrumented",
    "layer_time_table",
    "movement_long",
    "rate_plans",
    "rate_table",
    "robustness_long",
    "robustness_table",
    "spread_frame",
    "spread_table",
    "start_table",
    "times_long",
    "trend_summary",
    "trend_table",
]

STUDY = "02_layer_convergence"
RATES_STUDY = "03_discriminative_rates"
CHECKPOINTS = 30  # log-spaced, step 0 and the final step included
MONITOR_POINTS = 50  # monitored steps per run (||Δw||/||w||, ||g||/||w||)
TEXT_PROBE_WINDOWS = 64  # probe windows of 64 characters (4,096 positions) for the text model
CKA_LEVEL = 0.9  # normalised CKA: 90% of the way from its start to the final representation
DISTANCE_LEVEL = 0.1  # distance to final below 10% of the way from initialisation
# Zhang, Bengio & Singer's reading (docs/references.md, claim 7): the first layer is critical
# when resetting it to its initial value leaves at least CRITICAL_ERROR validation error; an
# upper hidden layer is robust when its reset adds less than ROBUST_ADDED
CRITICAL_ERROR = 0.80
ROBUST_ADDED = 0.05

# (optimizer, testbed, steps): the pairs study 03 tuned a uniform rate for, at its budgets
FROM_03: tuple[tuple[str, str, int], ...] = tuple(
    (opt, name, steps)
    for opt, name, steps in discriminative_rates.PLAN
    if steps == discriminative_rates.BUDGETS[name]
)
# Zhang, Bengio & Singer's MNIST network (3 hidden layers of 256, ReLU) on Fashion-MNIST
ZBS_FCN = "fashion_mnist/fcn3x256"
ZBS_EPOCHS = 10  # of 421 steps: 54,000 training images in batches of 128
# Fashion-MNIST's recurrent and attention families (03 tuned neither): the GRU at the MLP's
# budget in 03 (2 epochs), the patch transformer at the CNN's and 05's (1 epoch)
FASHION_SEQUENCE_STEPS: dict[str, int] = {
    "fashion_mnist/gru": discriminative_rates.BUDGETS["fashion_mnist/mlp"],
    "fashion_mnist/transformer": discriminative_rates.BUDGETS["fashion_mnist/cnn"],
}
TEXT_STEPS = int(testbed("tinyshakespeare/transformer").config.steps)  # the testbed's budget
# (optimizer, testbed, steps) tuned here under protocol v2 (03 has no uniform arm for them)
TUNED_HERE: tuple[tuple[str, str, int], ...] = (
    ("sgd", "mnist1d/gru", discriminative_rates.BUDGETS["mnist1d/gru"]),
    ("sgd", "mnist1d/transformer", discriminative_rates.BUDGETS["mnist1d/transformer"]),
    ("sgd", "fashion_mnist/cnn", discriminative_rates.BUDGETS["fashion_mnist/cnn"]),
    ("sgd", ZBS_FCN, ZBS_EPOCHS * 421),
    ("adamw", ZBS_FCN, ZBS_EPOCHS * 421),
    *(
        (optimizer, name, steps)
        for name, steps in FASHION_SEQUENCE_STEPS.items()
        for optimizer in ("adamw", "sgd")
    ),
    ("sgd", "tinyshakespeare/transformer", TEXT_STEPS),
)
# (optimizer, testbed, steps, rate): run at a published rate, not tuned
RECIPE: tuple[tuple[str, str, int, float], ...] = (
    ("adamw", "tinyshakespeare/transformer", TEXT_STEPS, 1e-3),
)


def _bed(name: str) -> Testbed:
    """A project testbed, or Zhang-Bengio-Singer's network on Fashion-MNIST."""
    if name != ZBS_FCN:
        return testbed(name)
    mlp = testbed("fashion_mnist/mlp")
    config = mlp.config.replace(model_options={"width": 256, "depth": 3})
    return dataclasses.replace(
        mlp,
        name=ZBS_FCN,
        config=config,
        published=None,
        tolerance=None,
        source="Zhang, Bengio & Singer's FCN 3x256 (their MNIST network), on Fashion-MNIST",
    )


def _uniform_comparison(optimizer: str, name: str, steps: int, profile: str) -> Comparison:
    """The uniform arm alone, as study 03 builds it: the testbed at ``steps`` with warmup and
    cosine decay to zero, ``optimizer``'s protocol v2 (tuning the arm alone gives the rate it
    got beside the others: every arm's grid is extended and refined on its own)."""
    bed = comparisons.at_budget(_bed(name), steps, optimizer, profile)
    arms, design = comparisons.depth_factor_arms(bed.config, ())
    proto = comparisons.protocol(bed.config.dataset, optimizer, profile)
    return Comparison(optimizer, bed, arms, design, proto)


def rate_plans(profile: str = "full") -> dict[str, list[Comparison]]:
    """The uniform arms whose rates the study uses, by the study that stores their tuning runs:
    :data:`RATES_STUDY` (03's, read from its store) and :data:`STUDY` (tuned here).  The smoke
    profile keeps the first of each."""
    check_choice("profile", profile, ("full", "smoke"))
    keep = slice(None) if profile == "full" else slice(0, 1)
    return {
        RATES_STUDY: [_uniform_comparison(o, n, s, profile) for o, n, s in FROM_03[keep]],
        STUDY: [_uniform_comparison(o, n, s, profile) for o, n, s in TUNED_HERE[keep]],
    }


def rate_table(
    results: Mapping[str, Mapping[tuple[str, str], TuningResult]],
    plans: Mapping[str, Sequence[Comparison]],
) -> pd.DataFrame:
    """One row per (optimizer, testbed) with a rate: where it comes from, the rate, whether the
    tuning bracketed it (``interior``), and the grid it was chosen on; the recipe rates last.
    ``results`` maps each study of ``plans`` to ``comparisons.tune_all``'s results."""
    rows = []
    for study, plan in plans.items():
        for c in plan:
            if c.key not in results.get(study, {}):
                continue
            summary = results[study][c.key].summary.set_index("arm").loc["uniform"]
            rows.append(
                {
                    "optimizer": c.group,
                    "testbed": c.bed.name,
                    "steps": int(c.bed.config.steps),
                    "lr": float(summary["best_lr"]),
                    "source": "tuned in 03" if study == RATES_STUDY else "tuned here",
                    "interior": bool(summary["interior"]),
                    "grid": f"{summary['grid_low']:g}-{summary['grid_high']:g} "
                    f"({int(summary['grid_points'])} points)",
                }
            )
    for optimizer, name, steps, lr in RECIPE:
        rows.append(
            {
                "optimizer": optimizer,
                "testbed": name,
                "steps": steps,
                "lr": lr,
                "source": "published recipe (not tuned)",
                "interior": False,
                "grid": "-",
            }
        )
    return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class Instrumented:
    """The instrumented runs of one (optimizer, testbed) pair, by seed."""

    optimizer: str
    testbed: str
    configs: tuple[RunConfig, ...]


def _base(optimizer: str, name: str, steps: int, profile: str) -> RunConfig:
    """The uniform config at its budget: 03's for a tuned pair; for a recipe, the testbed's own
    optimizer settings with its schedule replaced by warmup and cosine decay to zero."""
    if any(o == optimizer and n == name for o, n, _, _ in RECIPE):
        steps = comparisons.SMOKE_STEPS if profile == "smoke" else steps
        bed = testbed(name)
        return comparisons.with_decay(bed.config, steps).replace(eval_every=max(1, steps // 8))
    return _uniform_comparison(optimizer, name, steps, profile).arms["uniform"]


def instrumented(rates: pd.DataFrame, profile: str = "full") -> list[Instrumented]:
    """The study's runs: every row of :func:`rate_table` at its rate, its budget and schedule,
    with log-spaced convergence checkpoints (``probe_points``), the re-initialisation and
    re-randomisation tables, and the per-tensor monitor, on the protocol's fresh seeds (10 on
    MNIST-1D, 5 on Fashion-MNIST, 3 on text; 2 in smoke, whose budgets are
    ``comparisons.SMOKE_STEPS`` steps)."""
    check_choice("profile", profile, ("full", "smoke"))
    out = []
    for row in rates.itertuples():
        config = _base(row.optimizer, row.testbed, int(row.steps), profile)
        steps = int(config.steps)
        config = config.replace(
            lr=float(row.lr),
            probe_points=CHECKPOINTS,
            monitor_every=max(1, steps // MONITOR_POINTS),
        )
        if config.dataset == "tinyshakespeare":
            config = config.replace(probe_examples=TEXT_PROBE_WINDOWS)
        seeds = comparisons.FINAL_SEEDS[config.dataset] if profile == "full" else (1, 2)
        configs = tuple(config.replace(seed=s) for s in seeds)
        out.append(Instrumented(row.optimizer, row.testbed, configs))
    return out


def gather(
    runs: Sequence[Instrumented],
    store: Store,
    *,
    jobs: int | None = None,
    progress: bool = True,
) -> tuple[list[dict], list[tuple[Instrumented, int]]]:
    """Read or train every run of ``runs`` into :data:`STUDY` of ``store`` (one sweep, so the
    workers stay busy).  Returns the records and, only where training is forbidden
    (``LAYERWISE_REQUIRE_STORED``), the pairs whose runs are not all stored with how many they
    miss; their stored runs are left out too, so a pair is shown whole or not at all."""
    configs = [c for run in runs for c in run.configs]
    try:
        return run_configs(configs, STUDY, store=store, jobs=jobs, progress=progress), []
    except MissingRunsError:
        pass
    records, waiting = [], []
    for run in runs:
        found = [store.get(STUDY, c) for c in run.configs]
        missing = sum(r is None for r in found)
        if missing:
            waiting.append((run, missing))
        else:
            records += found
    return records, waiting


# --------------------------------------------------------------------------------------------
# reading the records: tidy frames with testbed, optimizer and seed


def _labels(record: Mapping[str, Any]) -> dict[str, Any]:
    """``testbed`` (``"dataset/model"``, or :data:`ZBS_FCN`), ``optimizer`` and ``seed``."""
    config = record["config"]
    zbs = _bed(ZBS_FCN).config
    same = config["model"] == zbs.model and config["dataset"] == zbs.dataset
    if same and config.get("model_options", {}) == dict(zbs.model_options):
        name = ZBS_FCN
    else:
        name = f"{config['dataset']}/{config['model']}"
    return {"testbed": name, "optimizer": config["optimizer"], "seed": config["seed"]}


def _long(records: Iterable[Mapping[str, Any]], frame: str) -> pd.DataFrame:
    parts = []
    for record in records:
        f = convergence_frames(record)[frame]
        labels = _labels(record)
        f = f.assign(**labels, final_step=record["convergence"]["step"][-1])
        parts.append(f)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def cka_long(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run, layer and checkpoint: raw and normalised CKA to final, with ``testbed``,
    ``optimizer``, ``seed`` and ``final_step``.  ``depth`` is the layer's position in the forward
    pass (the tracker's ``order``): a representation is where it is computed, so an embedding
    tied to the output head (whose *weights* take the head's depth) counts at the input."""
    frame = _long(records, "cka")
    return frame.assign(depth=frame["order"]) if len(frame) else frame


def distance_long(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run, weight matrix (2+ dimensions, as recorded) and checkpoint: distance to final."""
    frame = _long(records, "distance")
    return frame[frame["name"].isin(_matrix_names(records))] if len(frame) else frame


def _matrix_names(records: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names of the parameters with 2+ dimensions of the models the records' configs build
    (weight matrices, convolution kernels, embeddings; not biases or norm scales)."""
    names: set[str] = set()
    for options in {_model_key(r["config"]) for r in records}:
        names |= _matrices(*options)
    return names


def _model_key(config: Mapping[str, Any]) -> tuple[str, str, str]:
    return config["model"], config["dataset"], json.dumps(config.get("model_options", {}))


@functools.cache
def _matrices(model: str, dataset: str, options: str) -> frozenset[str]:
    with torch.random.fork_rng(devices=[]):
        built = build(model, dataset, **json.loads(options))
    return frozenset(name for name, p in built.named_parameters() if p.dim() >= 2)


def movement_long(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run and weight matrix: the final relative movement ``||w_T - w_0|| / ||w_0||``."""
    frame = _long(records, "movement")
    return frame[frame["name"].isin(_matrix_names(records))] if len(frame) else frame


def times_long(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run and unit: settling step (``probes.settling_times``) of three measures --
    ``"CKA (normalised)"`` (normalised CKA >= :data:`CKA_LEVEL`, per layer), ``"CKA (raw)"``
    (raw CKA >= 0.9, per layer; v1's measure, for comparison) and ``"weights"`` (distance to
    final < :data:`DISTANCE_LEVEL`, per weight matrix) -- with ``fraction`` of training.

    A unit already past its threshold at step 0 (raw CKA can be) is recorded at step 1, the
    first checkpoint after initialisation, so that its log time is defined; ``at_start`` marks
    it.  For the CKA measures ``depth`` is the forward position of :func:`cka_long`."""
    parts = []
    cka, dist = cka_long(records), distance_long(records)
    keys = ["testbed", "optimizer", "seed"]
    measures = [
        ("CKA (normalised)", cka, "cka_normalised", CKA_LEVEL, "layer", False),
        ("CKA (raw)", cka, "cka", CKA_LEVEL, "layer", False),
        ("weights", dist, "distance", DISTANCE_LEVEL, "name", True),
    ]
    for measure, frame, value, level, unit, below in measures:
        for labels, run in frame.groupby(keys, sort=False):
            t = settling_times(run, value, level, unit=unit, below=below)
            final = float(run["final_step"].iloc[0])
            step = t["step"].clip(lower=1)
            parts.append(
                t.assign(
                    **dict(zip(keys, labels, strict=True)),
                    measure=measure,
                    at_start=t["step"] == 0,
                    step=step,
                    fraction=step / final,
                )
            )
    columns = [*keys, "measure", "unit", "depth", "step", "fraction", "at_start"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


# --------------------------------------------------------------------------------------------
# representation and weight convergence: tables


def _groups(frame: pd.DataFrame, *extra: str) -> Iterable[tuple[tuple, pd.DataFrame]]:
    return frame.groupby(["testbed", "optimizer", *extra], sort=False)


def trend_table(times: pd.DataFrame) -> pd.DataFrame:
    """The depth trend per testbed, optimizer and measure.

    ``slope``: ``stats.depth_trend`` of the settling *step* (log scale) against relative depth,
    with its bootstrap interval over seeds (``ci_low``, ``ci_high``) and ``fold`` =
    ``exp(slope)``, the fitted top-layer time over the bottom-layer time (> 1: deeper layers
    settle later, the bottom-up claim).  ``tau_median`` and ``tau_positive`` /
    ``tau_negative`` / ``tau_undefined``: Kendall's tau-b between depth and settling step per
    seed (``stats.kendall_tau_b``, ties kept as ties) and how many seeds had it above, below
    zero or undefined (every time tied); ``tied_pairs``: pairs of units tied in time, summed
    over seeds; ``never``: units that did not settle, over all seeds.
    """
    rows = []
    for (bed, optimizer, measure), g in _groups(times, "measure"):
        trend = stats.depth_trend(g, time="step")
        taus = []
        for _, run in g.dropna(subset=["step", "depth"]).groupby("seed"):
            if run["depth"].nunique() > 1 and len(run) > 1:
                taus.append(stats.kendall_tau_b(run["depth"].astype(float), run["step"]))
        agreement = stats.summarize_rank_agreement(taus) if taus else None
        rows.append(
            {
                "testbed": bed,
                "optimizer": optimizer,
                "measure": measure,
                "seeds": trend.seeds,
                "units": int(g.groupby("seed")["unit"].nunique().max()),
                "slope": trend.slope,
                "ci_low": trend.ci_low,
                "ci_high": trend.ci_high,
                "fold": trend.fold,
                "tau_median": agreement.median if agreement else math.nan,
                "tau_positive": agreement.positive if agreement else 0,
                "tau_negative": agreement.negative if agreement else 0,
                "tau_undefined": agreement.undefined if agreement else 0,
                "tied_pairs": int(sum(t.tied_y for t in taus)),
                "never": trend.missing,
            }
        )
    return pd.DataFrame(rows)


def layer_time_table(times: pd.DataFrame) -> pd.DataFrame:
    """Per testbed, optimizer, measure and unit: depth and settling time as a fraction of
    training, geometric mean over seeds with its 95% interval (``stats.geometric_mean_ci``);
    ``never``: seeds where the unit did not settle (left out of the mean)."""
    rows = []
    for (bed, optimizer, measure, unit), g in _groups(times, "measure", "unit"):
        reached = g["fraction"].dropna()
        mean, low, high = (
            stats.geometric_mean_ci(reached.tolist()) if len(reached) else (math.nan,) * 3
        )
        rows.append(
            {
                "testbed": bed,
                "optimizer": optimizer,
                "measure": measure,
                "unit": unit,
                "depth": g["depth"].iloc[0],
                "fraction": mean,
                "ci_low": low,
                "ci_high": high,
                "never": int(g["fraction"].isna().sum()),
            }
        )
    return pd.DataFrame(rows)


def start_table(cka: pd.DataFrame) -> pd.DataFrame:
    """Per testbed, optimizer and layer: raw CKA to final at step 0 (mean and range over
    seeds) -- how much of a raw curve's height is where it started."""
    first = cka[cka["step"] == 0]
    table = first.groupby(["testbed", "optimizer", "layer"], sort=False).agg(
        depth=("depth", "first"),
        cka0=("cka", "mean"),
        cka0_min=("cka", "min"),
        cka0_max=("cka", "max"),
    )
    return table.reset_index()


# --------------------------------------------------------------------------------------------
# Zhang, Bengio & Singer: re-initialisation and re-randomisation


def robustness_long(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per classifier run, layer and reset: ``kind`` (``"re-initialisation"`` to a checkpoint
    or ``"re-randomisation"``), ``checkpoint`` (step reset to; NaN for a redraw), ``error``
    (validation error after the reset), ``trained`` (the trained model's own error on the same
    examples: the reset to the final checkpoint) and ``added`` (``error - trained``)."""
    parts = []
    for record in records:
        if record["convergence"]["metric"] != "val_acc":
            continue
        frames = convergence_frames(record)
        reinit = frames["reinit"]
        if reinit.empty:
            continue
        final = reinit["checkpoint"].max()
        trained = 1 - reinit.loc[reinit["checkpoint"] == final, "metric"].mean()
        labels = {
            **_labels(record),
            "final_step": record["convergence"]["step"][-1],
            "trained": trained,
        }
        parts.append(reinit.assign(kind="re-initialisation", **labels))
        parts.append(frames["redraw"].assign(kind="re-randomisation", checkpoint=np.nan, **labels))
    if not parts:
        return pd.DataFrame()
    frame = pd.concat([p for p in parts if len(p)], ignore_index=True)
    frame["error"] = 1 - frame["metric"]
    frame["added"] = frame["error"] - frame["trained"]
    return frame


def robustness_table(robust: pd.DataFrame) -> pd.DataFrame:
    """Per testbed, optimizer and layer (input first): the added error of re-initialising the
    layer to step 0 and of re-randomising it, each the mean over seeds with a 95% t interval
    (kept inside [-1, 1]); and the trained model's error.  A *critical* layer adds much error,
    a *robust* one almost none (Zhang, Bengio & Singer) -- shown as effects, not pass/fail."""
    rows: list[dict] = []
    if robust.empty:
        return pd.DataFrame(rows)
    at_init = robust[(robust["kind"] == "re-initialisation") & (robust["checkpoint"] == 0)]
    redraw = robust[robust["kind"] == "re-randomisation"]
    for (bed, optimizer), g in _groups(at_init):
        order = g.dropna(subset=["depth"]).groupby("layer")["depth"].min().sort_values()
        for layer, depth in order.items():
            row = {"testbed": bed, "optimizer": optimizer, "layer": layer, "depth": int(depth)}
            for label, frame in (("reinit", g), ("redraw", redraw)):
                values = frame[
                    (frame["testbed"] == bed)
                    & (frame["optimizer"] == optimizer)
                    & (frame["layer"] == layer)
                ]["added"].dropna()
                mean, low, high = (
                    stats.mean_ci(values.tolist(), bounds=(-1.0, 1.0))
                    if len(values)
                    else (math.nan,) * 3
                )
                row.update({label: mean, f"{label}_low": low, f"{label}_high": high})
            row["trained_error"] = float(g["trained"].mean())
            row["seeds"] = int(g["seed"].nunique())
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# the spread a per-layer rate would correct


def spread_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run and monitored step: over the weight matrices, the largest over the smallest
    ``||Δw|| / ||w||`` (``update``) and ``||g|| / ||w||`` (``gradient``), with ``fraction`` of
    training -- how unequal the layers' relative steps are under one rate."""
    rows = []
    matrices = _matrix_names(records)
    for record in records:
        mon = monitor_frame(record["layers"])
        mon = mon[mon["name"].isin(matrices)]
        wide = mon.pivot_table(index=["step", "name"], columns="quantity", values="value")
        wide = wide.assign(
            update=wide["update_ratio"], gradient=wide["g_norm"] / wide["w_norm"]
        ).reset_index()
        for step, g in wide.groupby("step"):
            row = {**_labels(record), "step": step, "fraction": step / record["steps_done"]}
            for column in ("update", "gradient"):
                v = g[column].to_numpy(dtype=float)
                v = v[np.isfinite(v) & (v > 0)]
                row[column] = float(v.max() / v.min()) if v.size >= 2 else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def spread_table(spread: pd.DataFrame) -> pd.DataFrame:
    """Per testbed and optimizer: the spread (largest over smallest matrix) of the relative
    update and of the relative gradient at the first monitored step and as a geometric mean
    over training, each the median over seeds."""
    rows = []
    for (bed, optimizer), g in _groups(spread):
        row = {"testbed": bed, "optimizer": optimizer, "seeds": int(g["seed"].nunique())}
        first = g[g["step"] == g.groupby("seed")["step"].transform("min")]
        for column in ("update", "gradient"):
            overall = g.groupby("seed")[column].apply(lambda v: float(np.exp(np.log(v).mean())))
            row[f"{column}_first"] = float(first[column].median())
            row[f"{column}_mean"] = float(overall.median())
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# the answer


def _trend_verdict(row: pd.Series) -> str:
    """*deeper later* / *deeper earlier* when the slope's interval excludes 0, else *no clear
    trend*; *undetermined* without an interval (one seed, one depth)."""
    if not (math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"])):
        return "undetermined"
    if row["ci_low"] > 0:
        return "deeper later"
    if row["ci_high"] < 0:
        return "deeper earlier"
    return "no clear trend"


def trend_summary(trends: pd.DataFrame, fold_sesoi: float = 1.5) -> pd.DataFrame:
    """:func:`trend_table` as a reader sees it: the fold ``t_top / t_bottom`` with its interval,
    the verdict, whether the whole interval lies within ``[1/fold_sesoi, fold_sesoi]`` (a trend
    too small to matter), and the per-seed tau-b counts."""
    if fold_sesoi <= 1:
        raise ValueError(f"fold_sesoi must be a factor > 1, got {fold_sesoi!r}")
    bound = math.log(fold_sesoi)
    return pd.DataFrame(
        {
            "testbed": trends["testbed"],
            "optimizer": trends["optimizer"],
            "measure": trends["measure"],
            "seeds": trends["seeds"],
            "layers": trends["units"],
            "fold [95% CI]": [
                stats.format_ci(math.exp(s), math.exp(lo), math.exp(hi), 2)
                if math.isfinite(s)
                else "n/a"
                for s, lo, hi in zip(
                    trends["slope"], trends["ci_low"], trends["ci_high"], strict=True
                )
            ],
            "verdict": trends.apply(_trend_verdict, axis=1),
            "within ±SESOI": (trends["ci_low"] > -bound) & (trends["ci_high"] < bound),
            "tau-b +/-/undef": [
                f"{p}/{n}/{u}"
                for p, n, u in zip(
                    trends["tau_positive"],
                    trends["tau_negative"],
                    trends["tau_undefined"],
                    strict=True,
                )
            ],
            "tau-b median": trends["tau_median"].round(2),
            "tied pairs": trends["tied_pairs"],
            "never": trends["never"],
        }
    )


def _effect(row: pd.Series, column: str) -> str:
    return f"{row[column]:+.3f} [{row[column + '_low']:+.3f}, {row[column + '_high']:+.3f}]"


def answer(
    trends: pd.DataFrame, robust: pd.DataFrame, spreads: pd.DataFrame, fold_sesoi: float = 1.5
) -> str:
    """The study's statements as Markdown, computed from :func:`trend_table`,
    :func:`robustness_table` and :func:`spread_table`; ``fold_sesoi`` as in
    :func:`trend_summary`."""
    lines = []
    for measure, claim in (
        ("CKA (normalised)", "Bottom-up convergence of representations (Raghu et al. 2017)"),
        ("weights", "Shallow layers' weights settle first (Chen, Yuille & Zhou 2023)"),
    ):
        subset = trends[trends["measure"] == measure]
        if subset.empty:
            continue
        rows = trend_summary(subset, fold_sesoi)
        counts = rows["verdict"].value_counts()
        summary = ", ".join(f"{n} {v}" for v, n in counts.items())
        small = rows.loc[rows["within ±SESOI"], ["testbed", "optimizer"]]
        # reproduced: deeper later by more than a trend too small to matter
        later = rows["verdict"] == "deeper later"
        held = rows.loc[later & ~rows["within ±SESOI"]]
        negligible = int((later & rows["within ±SESOI"]).sum())
        where = ", ".join(
            f"{b} {o}" for b, o in zip(held["testbed"], held["optimizer"], strict=True)
        )
        verdict = (
            "**reproduced**"
            if len(held) == len(rows)
            else "**not reproduced**"
            if held.empty
            else f"**reproduced in {len(held)} of {len(rows)}** ({where})"
        )
        if negligible:
            more = " more" if len(held) else ""
            verdict += (
                f"; {negligible}{more} deeper later, but by less than a factor {fold_sesoi:g}"
            )
        detail = "; ".join(
            f"{bed} {optimizer} {fold}"
            for bed, optimizer, fold in zip(
                rows["testbed"], rows["optimizer"], rows["fold [95% CI]"], strict=True
            )
            if fold != "n/a"
        )
        lines.append(
            f"- **{claim}**: {verdict}. Over {len(rows)} network/optimizer pairs, {summary}; "
            f"{len(small)} of them within a factor {fold_sesoi:g} either way (top-layer over "
            f"bottom-layer settling time, bootstrap interval over seeds: {detail})."
            + _by_family(rows, later & ~rows["within ±SESOI"])
        )
    if len(robust):
        lines.append(_robustness_answer(robust))
    if len(spreads):
        lines.append(
            "- **The spread a per-layer rate would correct**: under one rate the weight "
            "matrices' relative updates ||Δw||/||w|| differ by a factor "
            f"{spreads['update_mean'].min():.3g} to {spreads['update_mean'].max():.3g} "
            "(largest over smallest, geometric mean over training, median over seeds); their "
            f"relative gradients ||g||/||w|| by {spreads['gradient_mean'].min():.3g} to "
            f"{spreads['gradient_mean'].max():.3g}."
        )
    return "\n".join(lines)


def _by_family(rows: pd.DataFrame, held: pd.Series) -> str:
    """The trend verdicts of :func:`trend_summary` rows counted per model (the part of the
    testbed after the dataset, over datasets and optimizers), as a sentence; empty for one
    model."""
    family = rows["testbed"].str.split("/").str[-1]
    if family.nunique() < 2:
        return ""
    earlier = rows["verdict"] == "deeper earlier"
    counts = [
        f"{name} {int(held[index].sum())} of {len(index)} reproduced, "
        f"{int(earlier[index].sum())} deeper earlier"
        for name, index in family.groupby(family, sort=False).groups.items()
    ]
    return f" By model: {'; '.join(counts)}."


def _side(low: float, high: float, threshold: float) -> str:
    """Where an interval lies against ``threshold``: ``"above"``, ``"below"`` or ``"across"``."""
    return "above" if low >= threshold else "below" if high < threshold else "across"


def _robustness_answer(robust: pd.DataFrame) -> str:
    """The claim-7 line of :func:`answer`: per network and optimizer, the first layer's reset
    error against :data:`CRITICAL_ERROR` and the worst upper hidden layer's added error
    against :data:`ROBUST_ADDED`, each judged on its 95% interval (a threshold inside the
    interval is *undecided*); reproduced where both hold."""
    parts, both, with_upper = [], [], 0
    for (bed, optimizer), g in _groups(robust):
        # every layer at the lowest depth is an input layer (a transformer's token or patch
        # embedding beside its position embedding): the most critical one speaks
        bottom = g["depth"] == g["depth"].min()
        first = g[bottom].loc[g.loc[bottom, "reinit"].idxmax()]
        upper = g[~bottom & (g["layer"] != "head")]
        named = f" ({first['layer']})" if bottom.sum() > 1 else ""
        trained = float(first["trained_error"])
        critical = _side(
            trained + first["reinit_low"], trained + first["reinit_high"], CRITICAL_ERROR
        )
        critical_word = {"above": "critical", "below": "not critical", "across": "undecided"}
        text = (
            f"{bed} {optimizer}: first layer{named} {_effect(first, 'reinit')} "
            f"(error {trained + first['reinit']:.2f}: {critical_word[critical]})"
        )
        robust_side = None
        if len(upper):
            with_upper += 1
            worst = upper.loc[upper["reinit"].idxmax()]
            robust_side = _side(worst["reinit_low"], worst["reinit_high"], ROBUST_ADDED)
            robust_word = {"below": "robust", "above": "not robust", "across": "undecided"}
            text += (
                f", worst upper hidden layer ({worst['layer']}) {_effect(worst, 'reinit')} "
                f"({robust_word[robust_side]})"
            )
        parts.append(text)
        if critical == "above" and robust_side == "below":
            both.append(f"{bed} {optimizer}")
    verdict = (
        f"**reproduced in {len(both)} of {with_upper}** ({', '.join(both)})"
        if both
        else "**not reproduced**"
    )
    return (
        "- **First layer critical, upper layers robust** (Zhang, Bengio & Singer): "
        f"{verdict} (critical: the first layer reset to its initial value leaves at least "
        f"{CRITICAL_ERROR:.0%} validation error; robust: every upper hidden layer's reset adds "
        f"less than {ROBUST_ADDED:.2f}; each judged on its 95% interval over seeds). Added "
        f"validation error when a layer is reset to its initial value -- {'; '.join(parts)}."
    )
