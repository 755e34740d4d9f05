"""Study 08 (FreezeOut): does progressively freezing the early layers save wall-clock time at
a small cost in test error?  Claim 5 of ``docs/references.md``.

FreezeOut (Brock, Lim, Ritchie & Weston 2017, arXiv:1706.04983) stops layer ``i`` of ``L`` at
the fraction of training ``t_i`` and anneals its rate to zero by then::

    linear: t_i = t_0 + (1 - t_0) * i / (L - 1)      cubic: t_i = (t_0 + (1 - t_0) * i / (L - 1))^3
    lr_i(t) = lr_i(0) * (1 + cos(pi * t / t_i)) / 2,   lr_i(0) = lr / t_i ("scaled") or lr

with ``t_0`` in the paper's convention (cubic cubes it: 0.8 stops the first layer at 0.512).
Freeze training (Raghu, Gilmer, Yosinski & Sohl-Dickstein 2017, SVCCA, arXiv:1706.05806) stops
layer ``i`` at ``(i + 1) / L`` and leaves the rates to the run's schedule.  Both are
``layerwise.freezeout.FreezeOut`` behind ``RunConfig.freezeout``.

Design (:func:`plan`, :func:`freezing_plan`):

* **Testbed** (:data:`TESTBED`): a Fashion-MNIST CNN of six 3x3 convolutions, 16 channels
  each, a 2x2 max-pool after every second one, then the dense head (13,210 parameters): the
  two convolutions at 28 x 28 hold most of the multiply-adds (:func:`compute_table`), so
  freezing the bottom of the network has something to save.  AdamW, batch 128, one epoch
  (:data:`STEPS` steps), linear warmup over 5% of the steps then cosine decay to zero.
* **Baseline**: one rate for all layers, tuned under protocol v2 (``comparisons.protocol``:
  coarse grid four rates a factor 4 apart, extended, refined to 2x, three tuning seeds).
* **Variants** (:data:`VARIANTS`): FreezeOut {linear, cubic} x {unscaled, scaled} x
  t_0 in {0.5, 0.8}, and freeze training.  As in the paper they run at the **baseline's rate**
  (the scaled variants are FreezeOut's own compensation for the shorter schedules); each
  variant is also trained at half and twice that rate on the three tuning seeds, so a variant
  counts as tuned (its comparison enters the Holm family) only when the baseline's rate beats
  both neighbours for it too -- protocol v2's interior test at its 2x spacing.  A variant that
  prefers a neighbour is rerun there and reported as *not tuned*.
* **Seeds**: ten fresh seeds (:data:`FINAL_SEEDS`) per arm, paired with the baseline's: a 3%
  relative change in a ~14% error is 0.004 accuracy, below what five seeds resolve.
* **Wall clock** (:func:`measure_step_times`): the training-step time of each arm at its final
  rate, one thread, every arm once per round, the rounds in rotated order so drift and order
  effects cancel, :data:`TIMING_REPEATS` rounds (five), stored as JSON beside the study's runs.  The
  saving of an arm is ``1 - time(arm) / time(baseline)`` within a round; the table gives its
  mean over rounds (geometric, from log ratios) with a 95% interval and the baseline's own
  spread across rounds as the timing noise.  The sweep's own ``wall_time_s`` is not used:
  two workers share the two cores, and their contention moves it by more than the effect.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validate import check_choice, check_int
from ..freezeout import SPACINGS, freeze_times, freeze_training_t0
from ..harness import comparisons, data, models, plots, stats, sweep, train
from ..harness.config import RunConfig
from ..harness.store import Store
from ..harness.testbeds import TESTBEDS, Testbed
from ..harness.tuning import TuningResult
from ..layers import layer_table

__all__ = [
    "BASELINE",
    "FINAL_SEEDS",
    "STEPS",
    "TESTBED",
    "TIMING_REPEATS",
    "VARIANTS",
    "Variant",
    "Tuned",
    "answer",
    "best_rates",
    "compute_table",
    "effect_table",
    "freezing_plan",
    "mac_savings",
    "measure_step_times",
    "plan",
    "plot_saving_vs_error",
    "plot_step_times",
    "runs",
    "saving_table",
    "sensitivity",
    "step_times",
    "stop_table",
    "timing_configs",
    "tune_study",
    "verdict_text",
    "verdict5",
]

BASELINE = "baseline"
GROUP = "adamw"
STEPS = 421  # one epoch of the 54,000 training images at batch 128
FINAL_SEEDS: tuple[int, ...] = tuple(range(1, 11))
TIMING_REPEATS: dict[str, int] = {"full": 5, "smoke": 2}
TIMING_SEED = 1
SAVING_TARGET = 0.10  # verdict 5: at least 10% of the training-step time saved ...
ERROR_ENVELOPE = 0.03  # ... for at most a 3% relative increase in test error

TESTBED = Testbed(
    "fashion_mnist/cnn6",
    TESTBEDS["fashion_mnist/cnn"].config.replace(
        model_options={
            "width": 16,
            "depth": 6,
            "pool_every": 2,
            "double_channels": False,
            "hidden": 0,
        }
    ),
    "acc",
    None,
    None,
    "no published reference (six 3x3 convolutions of 16 channels, a max-pool after every "
    "second one, dense head)",
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One freezing arm: FreezeOut (``spacing``, ``scaled``, ``t0`` in the paper's convention)
    or freeze training (``spacing="freeze training"``)."""

    spacing: str
    scaled: bool = False
    t0: float | None = None

    @property
    def name(self) -> str:
        if self.spacing == "freeze training":
            return "freeze training"
        return f"{self.spacing} {'scaled' if self.scaled else 'unscaled'} t0={self.t0:g}"

    def options(self, depths: int) -> dict:
        """The run's ``freezeout`` option for a model with ``depths`` depths."""
        if self.spacing == "freeze training":
            t_0 = round(freeze_training_t0(depths), 6)
            return {"t_0": t_0, "spacing": "linear", "scaled": False, "anneal": False}
        # the paper's t_0 is the k-th root of the first layer's stop (cubic: 0.8 -> 0.512)
        first_stop = round(self.t0 ** SPACINGS[self.spacing], 6)
        return {"t_0": first_stop, "spacing": self.spacing, "scaled": self.scaled}


VARIANTS: tuple[Variant, ...] = (
    *(
        Variant(spacing, scaled, t0)
        for spacing in ("linear", "cubic")
        for scaled in (False, True)
        for t0 in (0.5, 0.8)
    ),
    Variant("freeze training"),
)


def _depths(config: RunConfig) -> int:
    """The number of depths (``layers.layer_table``) of ``config``'s model."""
    return int(_layer_table(config)["depth"].max()) + 1


def _layer_table(config: RunConfig) -> pd.DataFrame:
    spec = data.spec(config.dataset)
    model = models.build(config.model, spec, **config.model_options)
    return layer_table(model, torch.zeros(2, *spec.input_shape))


def _bed(profile: str) -> Testbed:
    """The testbed at :data:`STEPS`; the smoke profile also holds out only 2% of the training
    images for validation (its runs evaluate in seconds)."""
    bed = comparisons.at_budget(TESTBED, STEPS, GROUP, profile)
    if profile == "smoke":
        bed = dataclasses.replace(
            bed, config=bed.config.replace(data_options={"val_fraction": 0.02})
        )
    return bed


def _variants(profile: str) -> tuple[Variant, ...]:
    return VARIANTS if profile == "full" else (VARIANTS[1], VARIANTS[-1])


def plan(profile: str = "full") -> list[comparisons.Comparison]:
    """Stage 1: the baseline alone, tuned under protocol v2 with :data:`FINAL_SEEDS`."""
    check_choice("profile", profile, ("full", "smoke"))
    bed = _bed(profile)
    proto = comparisons.grid_protocol(
        "fashion_mnist", comparisons.COARSE_GRIDS[GROUP], profile, FINAL_SEEDS
    )
    arms = {BASELINE: bed.config.replace(rule={"name": "uniform"})}
    design = pd.DataFrame([{"arm": BASELINE, "method": "baseline", "spacing": None}])
    return [comparisons.Comparison(GROUP, bed, arms, design, proto)]


def freezing_plan(baseline_lr: float, profile: str = "full") -> list[comparisons.Comparison]:
    """Stage 2: the baseline and every variant on the three rates ``baseline_lr`` x {1/2, 1, 2}
    (the baseline's runs there are stage 1's), the best rate rerun on the final seeds."""
    base = plan(profile)[0]
    depths = _depths(base.bed.config)
    arms = dict(base.arms)
    rows = [{"arm": BASELINE, "method": "baseline", "spacing": None, "scaled": None, "t0": None}]
    for v in _variants(profile):
        arms[v.name] = arms[BASELINE].replace(freezeout=v.options(depths))
        method = "freeze training" if v.spacing == "freeze training" else "FreezeOut"
        rows.append(
            {"arm": v.name, "method": method, "spacing": v.spacing, "scaled": v.scaled, "t0": v.t0}
        )
    grid = tuple(float(f"{baseline_lr * f:.4g}") for f in (0.5, 1.0, 2.0))
    proto = dataclasses.replace(base.protocol, grid=grid, max_extensions=0)
    return [comparisons.Comparison(GROUP, base.bed, arms, pd.DataFrame(rows), proto)]


@dataclasses.dataclass
class Tuned:
    """Both stages of the study: the baseline's protocol-v2 tuning (``baseline``), then the
    variants around its rate (``freezing``, ``results``); ``pending`` says what the store lacks
    where training is forbidden (``LAYERWISE_REQUIRE_STORED``)."""

    baseline: TuningResult | None
    freezing: comparisons.Comparison | None
    results: dict[tuple[str, str], TuningResult]
    pending: list[str]

    @property
    def result(self) -> TuningResult | None:
        """Stage 2's result (every arm), ``None`` while pending."""
        return self.results.get(self.freezing.key) if self.freezing else None


def tune_study(
    study: str, *, store: Store, profile: str = "full", jobs: int | None = None
) -> Tuned:
    """Run (or read from ``store``) stage 1, then stage 2 at the baseline's chosen rate."""
    stage1 = plan(profile)
    results, pending = comparisons.tune_all(stage1, study, store=store, jobs=jobs)
    notes = [f"baseline tuning: {n} runs missing at its current stage" for _, n in pending]
    baseline = results.get(stage1[0].key)
    if baseline is None:
        return Tuned(None, None, {}, [*notes, "variants: wait for the baseline's rate"])
    best = float(baseline.summary.set_index("arm").loc[BASELINE, "best_lr"])
    stage2 = freezing_plan(best, profile)
    results, pending = comparisons.tune_all(stage2, study, store=store, jobs=jobs)
    notes = [f"variants: {n} runs missing at their current stage" for _, n in pending]
    return Tuned(baseline, stage2[0], results, notes)


def sensitivity(tuned: Tuned) -> pd.DataFrame:
    """Every tuning run, one ``panel`` per arm: the baseline's whole protocol-v2 grid, each
    variant's three rates around the baseline's (for ``plots.lr_sensitivity``)."""
    frames = []
    if tuned.baseline is not None:
        frames.append(tuned.baseline.sensitivity)
    if tuned.result is not None:
        runs = tuned.result.sensitivity
        frames.append(runs[runs["arm"] != BASELINE])
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(panel=frame["arm"])


def runs(tuned: Tuned) -> pd.DataFrame | None:
    """Every training run behind both stages once (key, wall time, status), for the compute
    report; ``None`` before the baseline is tuned."""
    if tuned.baseline is None:
        return None
    return comparisons.runs_of({("baseline", "stage 1"): tuned.baseline, **tuned.results})


def best_rates(tuned: Tuned) -> dict[str, float]:
    """The rate each arm was rerun at on the final seeds (its panel's star)."""
    rates = {}
    for result in (tuned.baseline, tuned.result):
        if result is not None:
            rates.update(result.summary.set_index("arm")["best_lr"].to_dict())
    return rates


# --------------------------------------------------------------------------------------------
# what each arm does


def compute_table(config: RunConfig) -> pd.DataFrame:
    """Multiply-adds per example of each depth's forward pass (convolutions and dense layers),
    and its share of the model's: where the compute sits that freezing can skip."""
    spec = data.spec(config.dataset)
    model = models.build(config.model, spec, **config.model_options)
    macs: dict[str, int] = {}

    def count(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            per_output = module.weight[0].numel()  # inputs each output value sums over
            macs[name] = output[0].numel() * per_output

        return hook

    handles = [
        m.register_forward_hook(count(n))
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model(torch.zeros(1, *spec.input_shape))
    for h in handles:
        h.remove()
    table = _layer_table(config)
    table = table[table["name"].str.endswith("weight")].assign(
        module=lambda t: t["name"].str.rsplit(".", n=1).str[0]
    )
    out = pd.DataFrame(
        {
            "depth": table["depth"].to_numpy(),
            "layer": table["module"].to_numpy(),
            "kind": table["kind"].to_numpy(),
            "macs": [macs[m] for m in table["module"]],
        }
    )
    return out.assign(share=out["macs"] / out["macs"].sum())


def _arms(profile: str) -> comparisons.Comparison:
    """Stage 2's arms at a placeholder rate: what each arm does does not depend on it."""
    return freezing_plan(TESTBED.config.lr, profile)[0]


def stop_table(profile: str = "full") -> pd.DataFrame:
    """One row per freezing arm: the fraction of training at which each layer stops (1: it
    trains to the end), columns in depth order, and the arm's :func:`mac_savings`."""
    comparison = _arms(profile)
    layers = compute_table(comparison.bed.config).groupby("depth")["layer"].agg(", ".join)
    rows = []
    for arm, config in comparison.arms.items():
        if config.freezeout is None:
            continue
        fo = config.freezeout
        stops = freeze_times(len(layers), fo["t_0"], fo["spacing"])
        rows.append({"arm": arm, **dict(zip(layers, stops, strict=True))})
    return pd.DataFrame(rows).merge(mac_savings(profile), on="arm")


def mac_savings(profile: str = "full") -> pd.DataFrame:
    """The share of a run's training multiply-adds each freezing arm skips, from
    :func:`compute_table` and the stop times -- the saving FreezeOut's own speed-up estimate
    (``utils.py::calc_speedup`` of the paper's code) would predict, before any overhead.

    With forward cost ``F_j`` per depth and depths ``0..k`` stopped, a step costs the forward
    ``sum_j F_j``, the weight gradients ``sum_{j>k} F_j`` and the input gradients
    ``sum_{j>k+1} F_j`` (the lowest training depth needs none); depths stop bottom-up, so the
    run spends ``t_{k+1} - t_k`` of its steps with ``0..k`` stopped."""
    comparison = _arms(profile)
    forward = compute_table(comparison.bed.config).groupby("depth")["macs"].sum().to_numpy()

    def cost(k: int) -> float:  # depths 0..k stopped (k = -1: none)
        return forward.sum() + forward[k + 1 :].sum() + forward[k + 2 :].sum()

    rows = []
    for arm, config in comparison.arms.items():
        if config.freezeout is None:
            continue
        fo = config.freezeout
        stops = [0.0, *freeze_times(len(forward), fo["t_0"], fo["spacing"])]
        spent = sum((stops[k + 1] - stops[k]) * cost(k - 1) for k in range(len(forward)))
        rows.append({"arm": arm, "mac_saving": 1 - spent / cost(-1)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# wall clock


def _timing_path(store: Store, study: str) -> Path:
    return store.root / study / "timing" / "step_times.json"


def timing_configs(results: TuningResult, comparison: comparisons.Comparison) -> dict:
    """Each arm at its chosen rate on :data:`TIMING_SEED`, one thread, evaluated only at the end
    (evaluations are not part of the time measured, so fewer of them only save time)."""
    best = results.summary.set_index("arm")["best_lr"]
    return {
        arm: config.replace(
            lr=float(best[arm]), seed=TIMING_SEED, threads=1, eval_every=config.steps
        )
        for arm, config in comparison.arms.items()
    }


def _saved_rounds(path: Path, keys: Mapping[str, str]) -> tuple[list[dict], dict]:
    """The rows of the complete rounds stored at ``path`` for exactly these arms and keys, and
    the file's other fields (``[]``, ``{}`` when there is no such file)."""
    if not path.is_file():
        return [], {}
    saved = json.loads(path.read_text())
    if saved["keys"] != dict(keys):
        return [], {}
    return [row for row in saved["rows"] if row["round"] < saved["rounds_done"]], saved


def measure_step_times(
    configs: Mapping[str, RunConfig],
    study: str,
    *,
    store: Store,
    repeats: int = TIMING_REPEATS["full"],
    run: Callable[[RunConfig], dict] = train.run,
) -> pd.DataFrame | None:
    """Training-step time (``record["step_time_s"]``) of every config, ``repeats`` rounds in one
    process with one torch thread; round ``r`` runs the arms in their order rotated by ``r``.

    The rounds are stored as JSON under ``<store>/<study>/timing/`` with the configs' keys, the
    file rewritten after every round: a notebook re-executed from the store reads them back
    instead of timing again, and one killed mid-way times only the rounds it lacks.  Returns
    ``None`` when rounds are missing and ``LAYERWISE_REQUIRE_STORED`` forbids training.
    """
    check_int("timing repeats", repeats, 1)
    path = _timing_path(store, study)
    keys = {arm: c.key() for arm, c in configs.items()}
    rows, saved = _saved_rounds(path, keys)
    done = saved.get("rounds_done", 0)
    if done >= repeats:
        return pd.DataFrame([row for row in rows if row["round"] < repeats])
    if sweep.training_forbidden():
        return None
    arms = list(configs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    first_load = saved.get("load_average_before", load)
    for r in range(done, repeats):
        shift = r % len(arms)
        for position, arm in enumerate(arms[shift:] + arms[:shift]):
            record = run(configs[arm])
            rows.append(
                {
                    "arm": arm,
                    "round": r,
                    "position": position,
                    "step_time_s": record["step_time_s"],
                    "status": record["status"],
                }
            )
        saved = {
            "keys": keys,
            "rounds_done": r + 1,
            "threads": 1,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "load_average_before": first_load,
            "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "rows": rows,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(saved, indent=1))
        temporary.replace(path)
    return pd.DataFrame(rows)


def step_times(
    tuned: Tuned, study: str, *, store: Store, repeats: int = TIMING_REPEATS["full"]
) -> pd.DataFrame | None:
    """:func:`measure_step_times` of stage 2's arms at their final rates (read from the store
    when timed before); ``None`` while stage 2 or the timings are pending."""
    if tuned.result is None:
        return None
    configs = timing_configs(tuned.result, tuned.freezing)
    return measure_step_times(configs, study, store=store, repeats=repeats)


def saving_table(times: pd.DataFrame | None, baseline: str = BASELINE) -> pd.DataFrame | None:
    """Per arm: the mean training-step time, the saving ``1 - time / baseline's time`` paired
    within each round (geometric mean over rounds) with its 95% t interval, and the spread of
    the arm's own times across rounds (coefficient of variation: the timing noise); ``None``
    while the timings are pending."""
    if times is None:
        return None
    wide = times.pivot(index="round", columns="arm", values="step_time_s")
    rows = []
    for arm in wide.columns:
        own = wide[arm]
        row = {
            "arm": arm,
            "step_time_s": float(own.mean()),
            "noise_cv": float(own.std(ddof=1) / own.mean()) if len(own) > 1 else math.nan,
            "rounds": len(own),
        }
        if arm != baseline:
            logs = np.log(own / wide[baseline]).tolist()
            mean, low, high = stats.mean_ci(logs)
            row.update(
                saving=1 - math.exp(mean),
                saving_low=1 - math.exp(high) if not math.isnan(high) else math.nan,
                saving_high=1 - math.exp(low) if not math.isnan(low) else math.nan,
            )
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# effects and verdict


def effect_table(
    tuned: Tuned, sesoi_relative_error: float = ERROR_ENVELOPE, alpha: float = 0.05
) -> pd.DataFrame | None:
    """``comparisons.compare`` of stage 2 against the baseline (one Holm family), with the
    design columns and the change in test error relative to the baseline's, ``(err_arm -
    err_base) / err_base``, with its interval (the effect's interval over the baseline's
    error); ``None`` while stage 2 is pending."""
    if tuned.result is None:
        return None
    table = comparisons.with_design(
        comparisons.compare(
            tuned.results,
            baseline=BASELINE,
            sesoi_relative_error=sesoi_relative_error,
            alpha=alpha,
        ),
        [tuned.freezing],
    )
    error = 1.0 - table["baseline_mean"].astype(float)
    return table.assign(
        error_change=-table["effect"].astype(float) / error,
        error_change_low=-table["ci_high"].astype(float) / error,
        error_change_high=-table["ci_low"].astype(float) / error,
    )


def verdict5(effects: pd.DataFrame | None, savings: pd.DataFrame | None) -> pd.DataFrame:
    """Per variant: saving and relative error change with their intervals, the outcome, and
    whether it meets claim 5's target -- at least :data:`SAVING_TARGET` saved for at most
    :data:`ERROR_ENVELOPE` more relative error: *yes* when both intervals clear the thresholds
    (saving's lower end >= 10%, error change's upper end <= 3%, the variant tuned), *partly*
    when only the point estimates do, *no* otherwise.  Empty while either input is pending."""

    def meets(row: pd.Series) -> str:
        if (
            row["tuned"]
            and row["saving_low"] >= SAVING_TARGET
            and row["error_change_high"] <= ERROR_ENVELOPE
        ):
            return "yes"
        if row["saving"] >= SAVING_TARGET and row["error_change"] <= ERROR_ENVELOPE:
            return "partly"
        return "no"

    columns = [
        "arm",
        "spacing",
        "best_lr",
        "tuned",
        "saving",
        "saving_low",
        "saving_high",
        "error_change",
        "error_change_low",
        "error_change_high",
        "outcome",
    ]
    if effects is None or savings is None:
        return pd.DataFrame(columns=[*columns, "meets target"])
    table = effects.merge(savings, on="arm", how="inner")
    return table[columns].assign(**{"meets target": table.apply(meets, axis=1)})


def _pct(value: float, low: float, high: float) -> str:
    return f"{100 * value:+.1f}% [{100 * low:+.1f}, {100 * high:+.1f}]"


def verdict_text(verdict: pd.DataFrame) -> pd.DataFrame:
    """``verdict5``'s table formatted for reading (percentages with their intervals)."""
    return pd.DataFrame(
        {
            "arm": verdict["arm"],
            "lr": verdict["best_lr"].map("{:.3g}".format),
            "tuned": verdict["tuned"].map({True: "yes", False: "no"}),
            "time saved [95% CI]": [
                _pct(*v)
                for v in zip(
                    verdict["saving"], verdict["saving_low"], verdict["saving_high"], strict=True
                )
            ],
            "test error change [CI]": [
                _pct(*v)
                for v in zip(
                    verdict["error_change"],
                    verdict["error_change_low"],
                    verdict["error_change_high"],
                    strict=True,
                )
            ],
            "outcome": verdict["outcome"],
            "meets target": verdict["meets target"],
        }
    )


def answer(verdict: pd.DataFrame) -> str:
    """Verdict 5 as Markdown sentences, computed from :func:`verdict5`'s table."""
    if not len(verdict):
        return "Verdict 5: **pending** (the runs or the timings are not in the store yet)."
    best = verdict.sort_values("saving", ascending=False)
    meets = verdict[verdict["meets target"] == "yes"]
    partly = verdict[verdict["meets target"] == "partly"]
    if len(meets):
        answer_word = "yes"
    elif len(partly):
        answer_word = "partly"
    else:
        answer_word = "no"
    lines = [
        f"**Verdict 5 (FreezeOut saves >= {SAVING_TARGET:.0%} of the training time for <= "
        f"{ERROR_ENVELOPE:.0%} more relative test error): {answer_word}.**",
        f"- Met with both intervals inside the target: {', '.join(meets['arm']) or 'no variant'}"
        f"; by the point estimates only: {', '.join(partly['arm']) or 'no variant'}.",
        f"- Largest saving: {best['arm'].iloc[0]}, "
        f"{_pct(best['saving'].iloc[0], best['saving_low'].iloc[0], best['saving_high'].iloc[0])}"
        f" of the training-step time, test error "
        f"{_pct(*best[['error_change', 'error_change_low', 'error_change_high']].iloc[0])}"
        f" relative ({best['outcome'].iloc[0]}).",
    ]
    counts = verdict["outcome"].value_counts()
    lines.append(
        "- Test accuracy against the baseline, over "
        f"{len(verdict)} variants: "
        + ", ".join(f"{counts.get(o, 0)} {o}" for o in stats.OUTCOMES)
        + f"; {int((~verdict['tuned'].astype(bool)).sum())} not tuned at the baseline's rate."
    )
    if (verdict["saving"] < 0.05).all():
        lines.append("- Every saving is below 5%: the paper's 'not reproduced' condition.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# figure


def plot_saving_vs_error(verdict: pd.DataFrame) -> plt.Figure:
    """Saving of training-step time (x) against the relative change in test error (y), one
    point per variant with both intervals (hollow: not tuned at the baseline's rate); the
    shaded corner is claim 5's target."""
    if not len(verdict):
        return plots.nothing_yet("timed and compared variants", "pending")
    fig, ax = plt.subplots(figsize=(7.5, 5))
    x, y = 100 * verdict["saving"], 100 * verdict["error_change"]
    xerr = [x - 100 * verdict["saving_low"], 100 * verdict["saving_high"] - x]
    yerr = [y - 100 * verdict["error_change_low"], 100 * verdict["error_change_high"] - y]
    right = max(float(100 * verdict["saving_high"].max()), 100 * SAVING_TARGET) + 5
    bottom = min(float(100 * verdict["error_change_low"].min()), 0) - 2
    ax.fill_between(
        [100 * SAVING_TARGET, right],
        bottom,
        100 * ERROR_ENVELOPE,
        color="#1b9e77",
        alpha=0.12,
        lw=0,
        label=f">= {SAVING_TARGET:.0%} saved, <= {ERROR_ENVELOPE:.0%} more error",
    )
    ax.axhline(0, color="grey", ls="--", lw=0.8)
    ax.axvline(0, color="grey", ls="--", lw=0.8)
    markers = {"linear": "o", "cubic": "s", "freeze training": "^"}
    colours = dict(zip(verdict["arm"], plt.cm.tab10.colors, strict=False))
    for i, row in enumerate(verdict.itertuples()):
        marker = markers[row.spacing]
        ax.errorbar(
            x.iloc[i],
            y.iloc[i],
            xerr=[[xerr[0].iloc[i]], [xerr[1].iloc[i]]],
            yerr=[[yerr[0].iloc[i]], [yerr[1].iloc[i]]],
            fmt=marker,
            color=colours[row.arm],
            mfc=colours[row.arm] if row.tuned else "white",
            ms=7,
            lw=1,
            capsize=2,
            label=row.arm + ("" if row.tuned else " (not tuned)"),
        )
    ax.set_xlim(min(float(x.min() - xerr[0].max()), 0) - 2, right)
    ax.set_ylim(bottom, None)
    ax.set_xlabel("training-step time saved against the baseline (%)")
    ax.set_ylabel("relative change in test error (%)\n(positive: more errors)")
    ax.set_title(
        "FreezeOut variants: time saved against test-error change\n(time: 95% interval over "
        "timing rounds; error: the comparison's Holm-level interval over seeds)",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def plot_step_times(times: pd.DataFrame) -> plt.Figure:
    """The training-step time of every arm in every timing round (one line per round, so a
    round that ran slow as a whole shows as a shifted line): the timing noise, seen whole."""
    if not len(times):
        return plots.nothing_yet("timings", "pending")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    arms = list(dict.fromkeys(times["arm"]))
    for r, rows in times.groupby("round"):
        rows = rows.set_index("arm").loc[arms]
        ax.plot(range(len(arms)), rows["step_time_s"], marker="o", lw=0.8, label=f"round {r + 1}")
    ax.set_xticks(range(len(arms)), arms, rotation=35, ha="right", fontsize=8)
    ax.set_xlabel("arm (each at its final learning rate)")
    ax.set_ylabel("training-step time of the run (s)")
    ax.set_title("Timing rounds: one thread, every arm once per round, order rotated per round")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
