"""Study 02's design: do layers converge at different speeds under one learning rate?

Every testbed of ``testbeds.V1_TESTBEDS`` is trained at the single rate ``01_baselines`` chose for
it, on fresh seeds, with two instruments switched on:

* the convergence tracker (``RunConfig.probe_every``, ``probes.ConvergenceTracker``):
  :data:`CHECKPOINTS` evenly spaced checkpoints of representations and weights, giving per-layer
  CKA to final (Raghu et al. 2017; Kornblith et al. 2019), distance to final (Chen et al. 2023),
  relative movement and re-initialisation robustness (Zhang, Bengio, Singer 2022);
* the per-tensor monitor (``RunConfig.monitor_every``, ``probes.Monitor``) at
  :data:`MONITOR_POINTS` steps, giving ``||g|| / ||w||`` and ``||Δw|| / ||w||`` per layer: the
  spread a per-layer rate would have to correct.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..harness.config import RunConfig
from ..harness.data import load
from ..harness.models import build
from ..harness.stats import format_ci, mean_ci
from ..harness.store import Store
from ..harness.testbeds import Testbed, final_seeds
from ..harness.train import total_steps
from ..harness.tuning import stored_best_lr
from ..probes import bottom_up_runs, convergence_frames, convergence_times, monitor_frame

__all__ = [
    "BASELINE_STUDY",
    "answer",
    "CHECKPOINTS",
    "MONITOR_POINTS",
    "convergence_long",
    "criticality_table",
    "instrumented",
    "per_layer_table",
    "ordering_table",
    "ratio_frame",
    "ratio_spread",
    "seeds_for",
    "times_long",
]

BASELINE_STUDY = "01_baselines"
CHECKPOINTS = 30  # the tracker's cap (final checkpoint included)
MONITOR_POINTS = 50
# Probe windows of a language task: each window holds ``block`` tokens, so 64 windows of 64
# characters (4096 positions) already cost more per CKA than 512 MNIST-1D examples.
TEXT_PROBE_WINDOWS = 64


def seeds_for(bed: Testbed, profile: str = "full") -> tuple[int, ...]:
    """Fresh seeds (never the tuning seed 0), as in the comparisons: five on MNIST-1D, three
    elsewhere; two in smoke."""
    return final_seeds(bed.config.dataset, profile)


def instrumented(
    bed: Testbed, store: Store | None, profile: str = "full", lr: float | None = None
) -> list[RunConfig]:
    """The study's runs of one testbed: its tuned single rate, tracker and monitor on.

    The rate is ``lr`` when given, else the one ``01_baselines`` chose on validation for this
    exact config (read from ``store``); without that record (the smoke profile) the testbed's
    placeholder rate is used.
    """
    config = bed.config
    if lr is None and store is not None:
        lr = stored_best_lr(store, BASELINE_STUDY, config, bed.metric)
    lr = lr or config.lr
    dataset = load(config.dataset, **config.data_options)
    steps = total_steps(config, dataset)
    if dataset.spec.task == "language":
        config = config.replace(probe_examples=TEXT_PROBE_WINDOWS)
    config = config.replace(
        lr=lr,
        probe_every=max(1, steps // (CHECKPOINTS - 1)),
        monitor_every=max(1, steps // MONITOR_POINTS),
    )
    return [config.replace(seed=s) for s in seeds_for(bed, profile)]


# --------------------------------------------------------------------------------------------
# analysis: from stored records to per-testbed tables

ORDERING_SHARE = (
    0.8  # docs/references.md#claim-6 and #claim-12: the ordering holds in >= 4 of 5 seeds
)
CRITICAL_ERROR = 0.8  # item 7: resetting the first layer to its initial value -> >= 80% error
ROBUST_RISE = 0.05  # item 7: resetting an upper hidden layer raises the error by < 5 points


def testbed_name(record: Mapping[str, Any]) -> str:
    """``"dataset/model"`` of a run record."""
    return f"{record['config']['dataset']}/{record['config']['model']}"


def convergence_long(records: Iterable[Mapping[str, Any]], frame: str) -> pd.DataFrame:
    """One of ``probes.convergence_frames``' frames for many runs, with ``testbed``, ``seed`` and
    ``fraction`` (step / final step; not for ``"movement"``) columns."""
    parts = []
    for record in records:
        f = convergence_frames(record)[frame].copy()
        f.insert(0, "seed", record["config"]["seed"])
        f.insert(0, "testbed", testbed_name(record))
        final = record["convergence"]["step"][-1]
        for column in ("step", "checkpoint"):
            if column in f:
                f["fraction"] = f[column] / final
        parts.append(f)
    return pd.concat(parts, ignore_index=True)


def _share_verdict(holds: int, seeds: int) -> str:
    if seeds == 0:
        return "no result"
    return "reproduced" if holds >= math.ceil(ORDERING_SHARE * seeds - 1e-9) else "not reproduced"


def ordering_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Bottom-up convergence per testbed, by representation (CKA) and by weights (distance).

    Per run, ``probes.bottom_up``: does the first step at which a layer's CKA to its final
    representation reaches 0.9 (Raghu et al. 2017) -- or at which its weights' distance to final
    falls below 0.1 (Chen et al. 2023) -- never decrease with depth, and Spearman's rho between
    depth and that step.  Per testbed: in how many seeds the ordering holds, mean rho with a 95%
    t interval over seeds, and the verdict: *reproduced* when it holds in at least
    :data:`ORDERING_SHARE` of the seeds (4 of 5, as the study plan sets it).
    """
    rows = []
    by_bed: dict[str, list] = {}
    for record in records:
        by_bed.setdefault(testbed_name(record), []).append(record)
    for bed, runs in by_bed.items():
        row: dict[str, Any] = {"testbed": bed, "seeds": len(runs)}
        for measure, label in (("cka", "CKA"), ("distance", "weights")):
            result = bottom_up_runs(runs, measure=measure)
            holds = int(result["non_decreasing"].fillna(False).astype(bool).sum())
            rho = result["spearman"].dropna().astype(float).tolist()
            row[f"{label}: bottom-up in"] = f"{holds}/{len(result)}"
            row[f"{label}: rho (95% CI)"] = format_ci(*mean_ci(rho), digits=2) if rho else "n/a"
            row[f"{label}: verdict"] = _share_verdict(holds, len(result))
        rows.append(row)
    return pd.DataFrame(rows)


def criticality_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Zhang, Bengio, Singer's re-initialisation test at step 0, per testbed.

    For every run, the validation error of the trained model with one layer reset to its
    initial value, minus the trained model's own error; per layer of lowest depth (the first
    layer) and for the worst upper *hidden* layer (every layer above the first except the
    output head).  Reproduced when the first layer's reset gives >= 80% error and every upper
    hidden layer's reset adds < 5 points, in :data:`ORDERING_SHARE` of the seeds; *not
    applicable* to a model without upper hidden layers (a one-layer GRU and its head).  Only
    classifiers enter (a language model's robustness is measured in loss, not error).
    """
    rows = []
    by_bed: dict[str, list] = {}
    for record in records:
        if record["convergence"]["metric"] != "val_acc":
            continue
        by_bed.setdefault(testbed_name(record), []).append(record)
    for bed, runs in by_bed.items():
        first_errors, upper_rises, holds = [], [], 0
        for record in runs:
            reinit = convergence_frames(record)["reinit"].dropna(subset=["depth"])
            if reinit.empty:
                continue
            final_step = reinit["checkpoint"].max()
            trained = 1 - reinit.loc[reinit["checkpoint"] == final_step, "metric"].mean()
            at_init = reinit[reinit["checkpoint"] == 0]
            first = at_init[at_init["depth"] == at_init["depth"].min()]
            upper = at_init[
                (at_init["depth"] > at_init["depth"].min()) & (at_init["layer"] != "head")
            ]
            first_error = float((1 - first["metric"]).max())
            upper_rise = float((1 - upper["metric"] - trained).max()) if len(upper) else math.nan
            first_errors.append(first_error)
            upper_rises.append(upper_rise)
            holds += first_error >= CRITICAL_ERROR and upper_rise < ROBUST_RISE
        rows.append(
            {
                "testbed": bed,
                "first layer reset: error (95% CI)": format_ci(*mean_ci(first_errors)),
                "worst upper hidden reset: added error (95% CI)": (
                    format_ci(*mean_ci(upper_rises))
                    if upper_rises and all(math.isfinite(v) for v in upper_rises)
                    else "n/a (no upper hidden layer)"
                ),
                "pattern holds in": f"{holds}/{len(first_errors)}",
                "verdict": (
                    _share_verdict(holds, len(first_errors))
                    if any(math.isfinite(v) for v in upper_rises)
                    else "not applicable"
                ),
            }
        )
    return pd.DataFrame(rows)


def ratio_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per weight matrix (tensors of 2+ dimensions) and monitored step: ``||g|| / ||w||``, the
    inverse of LARS's ratio (You, Gitman, Ginsburg 2017) -- the relative step one shared rate
    gives each layer -- with ``testbed``, ``seed``, ``depth`` and ``fraction`` of training."""
    parts = []
    for record in records:
        mon = monitor_frame(record["layers"])
        wide = mon.pivot_table(index=["step", "name"], columns="quantity", values="value")
        wide = wide.reset_index()
        params = record["convergence"]["params"]
        wide = wide[wide["name"].isin(_matrices(record["config"]))]
        wide = wide.assign(
            ratio=wide["g_norm"] / wide["w_norm"],
            depth=wide["name"].map({n: p["depth"] for n, p in params.items()}),
            testbed=testbed_name(record),
            seed=record["config"]["seed"],
            fraction=wide["step"] / record["steps_done"],
        )
        parts.append(wide[["testbed", "seed", "step", "fraction", "name", "depth", "ratio"]])
    return pd.concat(parts, ignore_index=True)


def _matrices(config: Mapping[str, Any]) -> set[str]:
    """Names of the parameters with 2+ dimensions of the model a config builds."""
    model = build(config["model"], config["dataset"], **config.get("model_options", {}))
    return {name for name, p in model.named_parameters() if p.dim() >= 2}


def times_long(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run and layer (CKA) or tensor (weights): depth and convergence step, as a fraction of
    training (``probes.convergence_times``); columns ``testbed``, ``seed``, ``measure``,
    ``unit``, ``depth``, ``fraction`` (NaN: never reached)."""
    parts = []
    for record in records:
        frames = convergence_frames(record)
        final = record["convergence"]["step"][-1]
        for measure, label in (("cka", "CKA >= 0.9"), ("distance", "weight distance < 0.1")):
            t = convergence_times(frames[measure])
            parts.append(
                t.assign(
                    testbed=testbed_name(record),
                    seed=record["config"]["seed"],
                    measure=label,
                    fraction=t["step"] / final,
                )
            )
    out = pd.concat(parts, ignore_index=True)
    return out[["testbed", "seed", "measure", "unit", "depth", "fraction"]]


def ratio_spread(ratios: pd.DataFrame) -> pd.DataFrame:
    """Per testbed: how far apart the layers' ``||g|| / ||w||`` are under one rate -- the ratio
    of the largest to the smallest layer's value (median over seeds) at the first monitored step
    and averaged (geometric mean over steps) across training."""
    rows = []
    for bed, g in ratios.groupby("testbed", sort=False):
        first = g[g["step"] == g["step"].min()]
        at_start = first.groupby(["seed", "name"])["ratio"].mean()
        start = at_start.groupby("seed").agg(lambda r: r.max() / r.min()).median()
        logs = np.log(g["ratio"].clip(lower=1e-12))
        mean_log = logs.groupby([g["seed"], g["name"]]).mean()
        overall = np.exp(mean_log.groupby("seed").agg(lambda r: r.max() - r.min())).median()
        rows.append(
            {
                "testbed": bed,
                "weight matrices": int(g["name"].nunique()),
                "max/min ||g||/||w|| at the first step": round(float(start), 1),
                "max/min over training (geometric mean)": round(float(overall), 1),
            }
        )
    return pd.DataFrame(rows)


def _names(table: pd.DataFrame, column: str, verdict: str) -> list[str]:
    return table.loc[table[column] == verdict, "testbed"].tolist()


def answer(ordering: pd.DataFrame, criticality: pd.DataFrame, spread: pd.DataFrame) -> str:
    """The study's statements, one per verdict column, computed from the three tables."""

    def sentence(table: pd.DataFrame, column: str, claim: str) -> str:
        yes, no = _names(table, column, "reproduced"), _names(table, column, "not reproduced")
        return (
            f"- {claim}: holds in {len(yes)} of {len(yes) + len(no)} testbeds"
            + (f" ({', '.join(yes)})" if yes else "")
            + (f"; not in {', '.join(no)}" if no else "")
            + "."
        )

    low = spread["max/min ||g||/||w|| at the first step"]
    mean = spread["max/min over training (geometric mean)"]
    return "\n".join(
        [
            sentence(
                ordering,
                "CKA: verdict",
                "Bottom-up convergence of representations (CKA to final reaches 0.9 no later "
                "in a lower layer, in >= 80% of seeds; Raghu et al. 2017)",
            ),
            sentence(
                ordering,
                "weights: verdict",
                "Shallow layers' weights settle first (distance to final < 0.1 no later in a "
                "lower layer, in >= 80% of seeds; Chen et al. 2023)",
            ),
            sentence(
                criticality,
                "verdict",
                "First layer critical, upper hidden layers robust to re-initialisation "
                "(Zhang, Bengio, Singer)",
            ),
            f"- Under one learning rate the layers' relative gradients ||g||/||w|| differ by a "
            f"factor of {low.min():g} to {low.max():g} at the first step and {mean.min():g} to "
            f"{mean.max():g} on average over training (largest over smallest layer, median "
            "over seeds): the spread a per-layer rate would correct.",
        ]
    )


def per_layer_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per layer of one model (e.g. the hybrid): its kind of parameters, depth, convergence
    time of its representation (first CKA >= 0.9) and of its weights (distance to final < 0.1),
    as fractions of training, and its relative movement, each as mean with a 95% t interval
    over seeds.  Layers with several weight tensors take their largest matrix's values."""
    times = times_long(records)
    movement = convergence_long(records, "movement")
    rows = []
    cka = times[times["measure"] == "CKA >= 0.9"]
    weights = times[times["measure"] != "CKA >= 0.9"]
    layers = cka.dropna(subset=["depth"]).groupby("unit")["depth"].min().sort_values()
    for layer, depth in layers.items():
        rep = cka[cka["unit"] == layer]["fraction"].fillna(1.0).tolist()
        mine = weights[weights["unit"].str.rpartition(".")[0] == layer]
        mine = mine[mine["unit"].str.endswith("weight") | mine["unit"].str.contains("weight_")]
        w = mine.groupby("seed")["fraction"].max().fillna(1.0).tolist()
        mv = movement[movement["layer"] == layer].dropna(subset=["movement"])
        mv = mv.groupby("seed")["movement"].max().tolist()
        rows.append(
            {
                "layer": layer,
                "depth": int(depth),
                "CKA >= 0.9 at (95% CI)": format_ci(*mean_ci(rep), digits=2),
                "weights settled at (95% CI)": format_ci(*mean_ci(w), digits=2) if w else "n/a",
                "movement (95% CI)": format_ci(*mean_ci(mv), digits=2) if mv else "n/a",
            }
        )
    return pd.DataFrame(rows)
