"""Study 06: LARS -- the per-layer ratio ``||w|| / ||g||`` and large-batch training, under
tuning protocol v2.

LARS (You, Gitman & Ginsburg 2017, ``docs/references.md#you2017lars``) gives every weight
tensor ``l`` its own local rate::

    lambda_l = eta * ||w_l|| / (||g_l|| + beta * ||w_l||)        (eta: trust coefficient 1e-3)

because, the paper says, the ratio ``||w_l|| / ||g_l||`` differs by orders of magnitude from
layer to layer early in training (its Table 2: AlexNet at iteration 1, 5.76 for conv1's weights
to 1345 for fc6's), so one global rate is limited by the layer with the smallest ratio.  With
LARS it trains AlexNet at batch 8K with almost no loss (Table 3), where SGD with linear rate
scaling and warmup loses several points (Table 1).  Nado et al. (2021,
``docs/references.md#nado2021reality``) found that Nesterov momentum with its rate and schedule
retuned at every batch size matches LARS.

**Part 1, the ratio table (claim 1a).**  For each model of :data:`DIAGNOSTIC_NETS` at each
batch of :data:`DIAGNOSTIC_BATCHES`: ``||w||``, ``||g||`` and ``||w|| / ||g||`` of every
parameter tensor at step 1 (a one-step run with the monitor on every step) and over the first
:data:`DIAGNOSTIC_EPOCHS` epochs (the same run, longer, monitored about
:data:`MONITOR_POINTS` times).  Those runs train with SGD + momentum 0.9, weight decay 5e-4, one
base rate :data:`DIAGNOSTIC_LR` for every model and batch, linear warmup over
:data:`WARMUP_EPOCHS` epochs and then a constant rate: the first epochs of the paper's recipe,
not a decayed run.  ``||w||`` at step 1 is set by the initialisation alone: PyTorch's default
draws a dense or conv weight from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, so
``E ||W||^2 = fan_out / 3`` (:func:`tensor_table`).

**Part 2, batch scaling (claim 1b).**  One testbed (:data:`SWEEP_NETS`) at the batch sizes of
:data:`BATCH_SIZES`, every run at the same epoch budget (:data:`EPOCHS`: a large batch takes
fewer steps, not less compute per epoch): ``steps(B) = round(E * N / B)`` with ``N`` training
examples, linear warmup over 2 epochs, then ``(1 - p)^2`` decay to zero (LARS's poly(2)),
momentum 0.9 and weight decay 5e-4 throughout.  The arms (:data:`ARMS`):

* ``sgd`` -- SGD + momentum, rate tuned at every batch size (Nado et al.'s protocol): the
  baseline every other arm is compared with;
* ``nesterov`` -- the same with Nesterov momentum;
* ``lars`` -- LARS with trust coefficient 1e-3 on every tensor (the paper's Algorithm 1),
  base rate tuned;
* ``lars excl. 1-D`` -- LARS with biases and norm gains left out of the trust ratio and the
  weight decay (``exclude_1d``; plain momentum SGD at the base rate for them);
* ``larc`` -- LARC clipping as in NVIDIA apex (trust coefficient 0.02, apex's default): a
  tensor's rate is ``min(lr, 0.02 * ||w|| / (||g|| + beta ||w||))``, so ``lr`` is an SGD rate;
* ``sgd linear-scaled`` -- the paper's baseline (Table 1; the linear scaling rule of Goyal et
  al. 2017, ``docs/references.md#goyal2017accurate``): ``sgd``'s rate tuned at ``B0 = 128``
  times ``B / B0``, not tuned again.

Every tuned arm gets the protocol of ``harness.comparisons`` at every batch size: a coarse grid
of four rates a factor 4 apart (:data:`SGD_GRID` for the SGD-like rates, :data:`LARS_GRID` for
LARS's base rate, which lives near 1), moved up by ``4^round(log4 sqrt(B / B0))`` so that it
starts near where square-root scaling would put the small-batch optimum (a starting point only:
the grid is extended while an edge wins, then refined to 2x); three tuning seeds per point;
:data:`FINAL_SEEDS` fresh seeds at the chosen rate (eight, more than the protocol's five,
because the drop below compares four runs per seed).  The batch-scaling machinery -- epoch
budgets, grids moved with the batch, the linear-scaled arm, the two families, the monitored
reruns -- is ``harness.batch_scaling``, which study 07 (LAMB) shares.

Verdict 1b rests on the **drop contrast**: with ``a(B, s)`` an arm's test accuracy at batch
``B`` on final seed ``s`` and ``b`` tuned SGD's, ::

    c(B, s) = [a(B, s) - a(B0, s)] - [b(B, s) - b(B0, s)]

positive when the arm loses less accuracy from ``B0`` to ``B`` than tuned SGD
(:func:`drop_contrasts`; the four outcomes of ``harness.stats`` over one Holm family).  The
arms' accuracies at each batch size against tuned SGD at the same batch come from
``comparisons.compare`` (a second family).

Profiles: ``smoke`` (about two minutes, for checks), ``full`` (the notebook's study: about 230
core-minutes, two hours on two cores; :data:`COST`) and ``large`` (the CNNs with and without
BatchNorm on Fashion-MNIST for 30 epochs, a BatchNorm CNN on CIFAR-10 for 50, both CIFAR-10
CNNs added to the ratio table; for a GPU: ``plan("large", device="cuda")``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import NullFormatter

from .._validate import check_choice
from ..harness import batch_scaling, comparisons, data, models, stats, testbeds
from ..harness.batch_scaling import DROP_COLUMNS, FAILED, Arm, by_batch, check_batch
from ..harness.config import RunConfig
from ..harness.store import Store
from ..harness.sweep import run_stored
from ..harness.testbeds import Testbed
from ..harness.tuning import TuningResult
from ..layers import layer_table
from ..probes import monitor_frame

__all__ = [
    "ARMS",
    "BASELINE",
    "BASE_BATCH",
    "BATCH_SIZES",
    "COST",
    "DIAGNOSTIC_BATCHES",
    "DIAGNOSTIC_NETS",
    "DROP_COLUMNS",
    "EPOCHS",
    "FAILED",
    "FINAL_SEEDS",
    "LARS_GRID",
    "LINEAR",
    "NETS",
    "PROFILES",
    "SGD_GRID",
    "Arm",
    "Net",
    "accuracy_table",
    "add_linear_scaling",
    "answer_batch_scaling",
    "answer_ratios",
    "arm_table",
    "batch_config",
    "by_batch",
    "compare_levels",
    "diagnostic_config",
    "diagnostic_configs",
    "drop_contrasts",
    "drop_verdict_table",
    "grid_at",
    "grid_shift",
    "level_verdict_table",
    "linear_scaling_configs",
    "monitored_configs",
    "plan",
    "plot_accuracy_vs_batch",
    "plot_ratio_curves",
    "plot_rates",
    "ratio_frame",
    "ratio_summary",
    "ratio_table",
    "run_stored",
    "step_one_tables",
    "tensor_table",
    "trust_frame",
]

PROFILES: tuple[str, ...] = ("smoke", "full", "large")

# --------------------------------------------------------------------------------------------
# the networks


@dataclasses.dataclass(frozen=True)
class Net:
    """A model on a dataset: ``models.build(model, dataset, **options)``."""

    dataset: str
    model: str
    options: Mapping[str, Any]
    description: str


NETS: dict[str, Net] = {
    "fashion_mnist/mlp": Net(
        "fashion_mnist", "mlp", {}, "MLP 784-256-256-10 (the fashion_mnist/mlp testbed)"
    ),
    "fashion_mnist/cnn-small": Net(
        "fashion_mnist", "cnn", {}, "conv16-conv32-fc128-fc10, 3x3 convolutions, 2x2 max-pool"
    ),
    "fashion_mnist/cnn-small-bn": Net(
        "fashion_mnist",
        "cnn",
        {"batchnorm": True},
        "conv16-conv32-fc128-fc10 with BatchNorm after both convolutions and fc128",
    ),
    "cifar10/cnn": Net("cifar10", "cnn", {}, "conv32-conv64-conv128-fc256-fc10, 3x3, max-pool"),
    "cifar10/cnn-bn": Net(
        "cifar10",
        "cnn",
        {"batchnorm": True},
        "conv32-conv64-conv128-fc256-fc10 with BatchNorm after every convolution and fc256",
    ),
}
# training examples per epoch (the published training split less the 10% validation carve-out)
TRAIN_EXAMPLES: dict[str, int] = {"fashion_mnist": 54_000, "cifar10": 45_000}

# --------------------------------------------------------------------------------------------
# the recipe (LARS's, ICLR text: momentum 0.9, weight decay 5e-4, poly(2), warmup in epochs)

BASE_BATCH = 128
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
POWER = 2.0
WARMUP_EPOCHS = 2
TRUST_COEFFICIENT = 1e-3  # LARS, "for all batch sizes" (Table 3)
LARC_TRUST_COEFFICIENT = 0.02  # apex LARC's default

# Part 1
DIAGNOSTIC_NETS: dict[str, tuple[str, ...]] = {
    "smoke": ("fashion_mnist/mlp", "fashion_mnist/cnn-small", "fashion_mnist/cnn-small-bn"),
    "full": ("fashion_mnist/mlp", "fashion_mnist/cnn-small", "fashion_mnist/cnn-small-bn"),
    "large": tuple(NETS),
}
DIAGNOSTIC_BATCHES: dict[str, tuple[int, ...]] = {
    "smoke": (128, 512),
    "full": (128, 4096),
    "large": (128, 4096),
}
DIAGNOSTIC_SEEDS: dict[str, tuple[int, ...]] = {
    "smoke": (1,),
    "full": (1, 2, 3),
    "large": (1, 2, 3),
}
DIAGNOSTIC_EPOCHS = 5
DIAGNOSTIC_SMOKE_STEPS = 10
DIAGNOSTIC_LR = 0.064  # a point of the SGD coarse grid; the same for every model and batch
MONITOR_POINTS = 50  # monitored steps per diagnostic run (and 1 + about 40 per rerun below)
SPAN_CRITERION = 10.0  # claim 1a: weight-tensor ratios span at least this factor at step 1

# Part 2
SWEEP_NETS: dict[str, tuple[str, ...]] = {
    "smoke": ("fashion_mnist/mlp",),
    "full": ("fashion_mnist/mlp",),
    "large": ("fashion_mnist/cnn-small", "fashion_mnist/cnn-small-bn", "cifar10/cnn-bn"),
}
BATCH_SIZES: dict[str, tuple[int, ...]] = {
    "smoke": (128, 1024),
    "full": (128, 1024, 4096, 8192),
    "large": (128, 1024, 4096, 8192),
}
EPOCHS: dict[str, dict[str, int]] = {
    "full": {"fashion_mnist/mlp": 15},
    "large": {
        "fashion_mnist/cnn-small": 30,
        "fashion_mnist/cnn-small-bn": 30,
        "cifar10/cnn-bn": 50,
    },
}
FINAL_SEEDS: tuple[int, ...] = tuple(range(1, 9))
MONITOR_SEEDS = 2  # final seeds rerun with the monitor on at the largest batch
SGD_GRID: tuple[float, ...] = comparisons.COARSE_GRIDS["sgd"]  # 0.004 .. 0.256 at B0
LARS_GRID: tuple[float, ...] = (0.25, 1.0, 4.0, 16.0)  # LARS's base rate at B0 (paper: 2-23)

# Measured on the machine of the study (2 cores, one torch thread per run, under load): the
# Fashion-MNIST MLP costs about 1.6 core-seconds per epoch at B = 128 (2.0 with LARS) and
# 1.0 at B >= 4096; the conv16-conv32-fc128 CNN about 35 core-seconds per epoch.  Full profile:
# about 560 batch-scaling runs of ~20 core-s (20 tunings of ~20 grid runs + 8 final seeds, the
# linear-scaled reruns, the monitored reruns) and 36 diagnostic runs (18 one-step runs, and 5
# epochs of the MLP, the CNN and the BatchNorm CNN at two batch sizes on three seeds, ~40
# core-min), about 230 core-minutes in all: about 2 hours on 2 cores.  Large profile (not
# measured; one small CNN step is launch-bound on a GPU, ~2 ms): about 1,700 runs of 10-30
# GPU-seconds, about 8 hours of single-process GPU time, 2-3 hours with 4 workers on one GPU.
COST: dict[str, str] = {
    "smoke": "about 2 minutes on one core",
    "full": "about 230 core-minutes (measured per-run cost; about 2 hours on 2 cores)",
    "large": "about 8 GPU-hours in one process (estimated, not measured); 2-3 h with 4 workers",
}

# Part 1's optimizer and every SGD arm's
_SGD = {"momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}


def _check_profile(profile: str) -> str:
    return check_choice("profile", profile, PROFILES)


def _base(net: str) -> RunConfig:
    """The config every run of ``net`` starts from: the project's testbed where there is one,
    else the model on its dataset (every field that matters is replaced by the callers)."""
    if net in testbeds.TESTBEDS:
        return testbeds.TESTBEDS[net].config
    spec = NETS[net]
    return RunConfig(
        dataset=spec.dataset,
        model=spec.model,
        model_options=dict(spec.options),
        lr=0.1,
        batch_size=BASE_BATCH,
        epochs=1,
    )


def _budget(net: str, epochs: float) -> batch_scaling.Budget:
    """``epochs`` epochs of ``net``'s training examples: ``E * N`` examples."""
    return batch_scaling.Budget(epochs * TRAIN_EXAMPLES[NETS[net].dataset])


def _steps(net: str, epochs: float, batch: int) -> int:
    """``round(epochs * N / B)``: the steps that show the model ``epochs`` epochs of examples."""
    return _budget(net, epochs).steps(batch)


# --------------------------------------------------------------------------------------------
# part 1: the ratio table (claim 1a)


def _net_of(config: Mapping[str, Any]) -> str:
    """The :data:`NETS` name of a run's config (dataset, model and model options)."""
    for name, net in NETS.items():
        same = (config["dataset"], config["model"]) == (net.dataset, net.model)
        if same and dict(config.get("model_options") or {}) == dict(net.options):
            return name
    raise ValueError(
        f"no network of this study is {config['model']} on {config['dataset']} with options "
        f"{config.get('model_options')!r}; the study's networks: {', '.join(NETS)}"
    )


_PREFIX = {"conv": "conv", "dense": "fc", "norm": "bn"}


def tensor_table(net: str) -> pd.DataFrame:
    """One row per parameter tensor of ``net`` in forward order: name, a short label in the
    style of LARS's Table 2 (``conv1.w``, ``fc1.b``, ``bn2.w``, ``head.w``), module, kind,
    ``ndim``, ``fan_in`` and ``init_norm``, the norm PyTorch's default initialisation gives it
    in expectation (its root mean square): a dense or conv weight is drawn from
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, so ``E ||W||^2 = numel / (3 fan_in) = fan_out / 3``;
    its bias from the same range, ``E ||b||^2 = fan_out / (3 fan_in)``; a norm layer's gain is
    1 (``||w|| = sqrt(C)``) and its shift 0."""
    spec = NETS[check_choice("network", net, NETS)]
    dataset = data.spec(spec.dataset)
    with torch.random.fork_rng(devices=[]):
        model = models.build(spec.model, dataset, **spec.options)
    table = layer_table(model, torch.zeros(2, *dataset.input_shape))
    counts: dict[str, int] = {}
    labels: dict[str, str] = {}
    fan_in: dict[str, int] = {}
    rows = []
    for row in table.itertuples():
        if row.module not in labels:
            if row.module == "head":
                labels[row.module] = "head"
            else:
                prefix = _PREFIX.get(row.kind, row.kind)
                counts[prefix] = counts.get(prefix, 0) + 1
                labels[row.module] = f"{prefix}{counts[prefix]}"
        shape = tuple(row.shape)
        weight = row.name.endswith("weight")
        if weight and len(shape) >= 2:
            fan_in[row.module] = math.prod(shape[1:])
        fan = fan_in.get(row.module, math.nan)
        if row.kind == "norm":
            init = math.sqrt(row.numel) if weight else 0.0
        elif row.kind in ("conv", "dense"):
            init = math.sqrt(row.numel / (3 * fan))
        else:
            init = math.nan
        rows.append(
            {
                "name": row.name,
                "label": f"{labels[row.module]}.{'w' if weight else 'b'}",
                "module": row.module,
                "kind": row.kind,
                "ndim": len(shape),
                "fan_in": fan,
                "init_norm": init,
            }
        )
    return pd.DataFrame(rows)


def diagnostic_config(
    net: str,
    batch: int,
    seed: int,
    profile: str = "full",
    device: str = "cpu",
    first_step: bool = False,
) -> RunConfig:
    """A Part-1 run: ``net`` at batch ``batch`` for ``DIAGNOSTIC_EPOCHS`` epochs of examples
    (``smoke``: ``DIAGNOSTIC_SMOKE_STEPS`` steps) by SGD + momentum 0.9, weight decay 5e-4, at
    ``DIAGNOSTIC_LR`` after a linear warmup over ``WARMUP_EPOCHS`` epochs, the monitor on about
    ``MONITOR_POINTS`` times.  ``first_step``: the same run cut to its first step with the
    monitor on it -- ``||w||`` and ``||g||`` at step 1 are the initial weights and the first
    mini-batch's gradient, which do not depend on what comes after."""
    check_choice("network", net, NETS)
    check_batch(batch)
    if _check_profile(profile) == "smoke":
        steps, warmup = DIAGNOSTIC_SMOKE_STEPS, 2
    else:
        steps = _steps(net, DIAGNOSTIC_EPOCHS, batch)
        warmup = _steps(net, WARMUP_EPOCHS, batch)
    config = _base(net).replace(
        optimizer="sgd",
        optimizer_options=dict(_SGD),
        lr=DIAGNOSTIC_LR,
        batch_size=batch,
        steps=steps,
        epochs=None,
        schedule="constant",
        schedule_options={"warmup": warmup},
        eval_every=steps,
        rule=None,
        seed=seed,
        monitor_every=max(1, steps // MONITOR_POINTS),
        device=device,
    )
    return config.replace(steps=1, eval_every=1, monitor_every=1) if first_step else config


def diagnostic_configs(profile: str = "full", device: str = "cpu") -> list[RunConfig]:
    """Every Part-1 run of the profile: for each network, batch size and seed, the one-step run
    and the monitored run over the first epochs (one-step runs first: they are cheap)."""
    grid = [
        (net, batch, seed)
        for net in DIAGNOSTIC_NETS[_check_profile(profile)]
        for batch in DIAGNOSTIC_BATCHES[profile]
        for seed in DIAGNOSTIC_SEEDS[profile]
    ]
    return [
        diagnostic_config(net, batch, seed, profile, device, first_step)
        for first_step in (True, False)
        for net, batch, seed in grid
    ]


def _wide(layers: Mapping[str, Any]) -> pd.DataFrame:
    """A monitor record's ``||w||`` and ``||g||`` per (step, name), with their ratio."""
    mon = monitor_frame(layers)
    mon = mon[mon["quantity"].isin(["w_norm", "g_norm"])]
    wide = mon.pivot_table(index=["step", "name"], columns="quantity", values="value")
    wide = wide.reindex(columns=["w_norm", "g_norm"]).reset_index()
    g = wide["g_norm"].where(wide["g_norm"] > 0)
    return wide.assign(ratio=wide["w_norm"] / g)


def ratio_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Part 1's monitored runs as one tidy frame, one row per run, step and tensor: testbed
    (``net``), batch size, seed, step, epoch (``step * B / N``), name, label, kind, ndim,
    ``w_norm``, ``g_norm`` and ``ratio = ||w|| / ||g||`` (NaN where the gradient is 0).  Step 1
    comes from the one-step runs (and, where a monitored run also records it, once)."""
    frames = []
    for record in records:
        if "layers" not in record:
            continue
        config = record["config"]
        net = _net_of(config)
        batch = int(config["batch_size"])
        wide = _wide(record["layers"]).merge(
            tensor_table(net)[["name", "label", "kind", "ndim", "init_norm"]], on="name"
        )
        frames.append(
            wide.assign(
                net=net,
                batch_size=batch,
                seed=int(config["seed"]),
                epoch=wide["step"] * batch / TRAIN_EXAMPLES[NETS[net].dataset],
            )
        )
    columns = (
        "net batch_size seed step epoch name label kind ndim init_norm w_norm g_norm ratio".split()
    )
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True)[columns]
    frame = frame.drop_duplicates(["net", "batch_size", "seed", "step", "name"])
    return frame.sort_values(["net", "batch_size", "seed", "step"], kind="stable").reset_index(
        drop=True
    )


ROWS = {"w_norm": "||w||", "g_norm": "||g||", "ratio": "||w|| / ||g||"}


def ratio_table(
    layers: Sequence[Mapping[str, Any]], step: int = 1, labels: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """LARS's Table 2 for one model and batch size: rows ``||w||``, ``||g||`` and
    ``||w|| / ||g||`` at ``step``, one column per parameter tensor in the model's order
    (renamed by ``labels``, name -> label), each the median over ``layers`` -- the monitor
    records (``probes.Monitor.to_record()``) of runs on different seeds.  The ratio row is the
    median of the per-run ratios."""
    if not layers:
        raise ValueError("ratio_table needs at least one monitor record")
    frames = []
    for i, record in enumerate(layers):
        if step not in record["step"]:
            raise ValueError(
                f"step {step} is not monitored in record {i}; monitored steps: "
                f"{record['step'][:5]}{' ...' if len(record['step']) > 5 else ''}"
            )
        wide = _wide(record)
        frames.append(wide[wide["step"] == step])
    order = list(layers[0]["params"])
    table = pd.concat(frames).groupby("name")[list(ROWS)].median().reindex(order).T
    table = table.rename(index=ROWS).rename_axis(index=None, columns=None)
    return table.rename(columns=dict(labels or {}))


def step_one_tables(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], pd.DataFrame]:
    """LARS's Table 2 for every network and batch size among ``records`` (the one-step runs of
    :func:`diagnostic_configs`; others are skipped): :func:`ratio_table` at step 1 over the
    seeds, columns labelled as in :func:`tensor_table`, with a last row ``||w|| at init``: the
    norm PyTorch's default initialisation gives each tensor in expectation."""
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for record in records:
        if record.get("steps") == 1 and "layers" in record:
            key = (_net_of(record["config"]), int(record["config"]["batch_size"]))
            groups.setdefault(key, []).append(record["layers"])
    tables = {}
    for (net, batch), layers in groups.items():
        tensors = tensor_table(net).set_index("name")
        table = ratio_table(layers, 1, labels=tensors["label"].to_dict())
        table.loc["||w|| at init"] = tensors.set_index("label")["init_norm"]
        tables[(net, batch)] = table
    return tables


def _span(values: pd.Series) -> float:
    values = values[np.isfinite(values) & (values > 0)]
    return float(values.max() / values.min()) if len(values) else math.nan


SUMMARY_COLUMNS = (
    "net batch_size seeds span lowest lowest_ratio highest highest_ratio w_span g_span init_dev "
    "bias_over_weight falling weights fold_low fold_high window_epochs verdict"
).split()


def ratio_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Claim 1a per network and batch size, from :func:`ratio_frame`, over **weight tensors**
    (``ndim >= 2``; medians over seeds):

    * ``span``: largest over smallest ``||w|| / ||g||`` at step 1 (per seed, then the median),
      with the ``lowest`` and ``highest`` tensor and their ratios;
    * ``w_span`` and ``g_span``: the same for ``||w||`` and ``||g||`` alone -- which of the two
      makes the ratio's span -- and ``init_dev``, the largest relative deviation of ``||w||`` at
      step 1 from :func:`tensor_table`'s ``init_norm`` (how well PyTorch's default
      initialisation explains the weight norms);
    * ``bias_over_weight``: median ratio of the dense and conv biases over that of the weights;
    * ``fold_low`` .. ``fold_high``: each weight tensor's ratio over the last fifth of the
      monitored window (median of those steps) divided by its step-1 value; ``falling`` counts
      the tensors whose fold is below 1, of ``weights``;
    * ``verdict``: *reproduced* when the span is at least ``SPAN_CRITERION`` and every weight
      tensor's ratio falls; *span only*, *falls only* or *not reproduced* otherwise.
    """
    rows = []
    for (net, batch), rows_nb in frame.groupby(["net", "batch_size"], sort=False):
        weights = rows_nb[rows_nb["ndim"] >= 2]
        first = weights[weights["step"] == 1]
        by_seed = first.groupby("seed")
        span = float(by_seed["ratio"].agg(_span).median())
        at_one = first.groupby("label", sort=False)["ratio"].median()
        dev = first.groupby("label", sort=False)[["w_norm", "init_norm"]].median()
        biases = rows_nb[
            (rows_nb["ndim"] == 1) & (rows_nb["kind"] != "norm") & (rows_nb["step"] == 1)
        ]
        folds = {}
        for seed, mine in weights.groupby("seed"):
            later = mine[mine["step"] > 1]
            if not len(later):
                continue
            tail = later[later["step"] >= later["step"].max() * 0.8]
            start = mine[mine["step"] == 1].set_index("label")["ratio"]
            folds[seed] = tail.groupby("label")["ratio"].median() / start
        fold = pd.DataFrame(folds).median(axis=1) if folds else pd.Series(dtype=float)
        falling = int((fold < 1).sum())
        n_weights = int(at_one.size)
        reached, fell = span >= SPAN_CRITERION, bool(len(fold)) and falling == n_weights
        verdict = {
            (True, True): "reproduced",
            (True, False): "span only",
            (False, True): "falls only",
            (False, False): "not reproduced",
        }[(reached, fell)]
        rows.append(
            {
                "net": net,
                "batch_size": int(batch),
                "seeds": int(first["seed"].nunique()),
                "span": span,
                "lowest": at_one.idxmin(),
                "lowest_ratio": float(at_one.min()),
                "highest": at_one.idxmax(),
                "highest_ratio": float(at_one.max()),
                "w_span": float(by_seed["w_norm"].agg(_span).median()),
                "g_span": float(by_seed["g_norm"].agg(_span).median()),
                "init_dev": float((dev["w_norm"] / dev["init_norm"] - 1).abs().max()),
                "bias_over_weight": float(biases["ratio"].median() / first["ratio"].median())
                if len(biases)
                else math.nan,
                "falling": falling,
                "weights": n_weights,
                "fold_low": float(fold.min()) if len(fold) else math.nan,
                "fold_high": float(fold.max()) if len(fold) else math.nan,
                "window_epochs": float(weights["epoch"].max()),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def answer_ratios(summary: pd.DataFrame) -> str:
    """Verdict 1a as Markdown, from :func:`ratio_summary`: the measured span and what makes it
    (weight norms, which the initialisation sets, or gradient norms), whether the ratios fall,
    and the count of model/batch pairs that reproduce the claim."""
    if not len(summary):
        return "- Ratio table: no result yet (its runs are still pending)."
    lines = []
    for r in summary.itertuples():
        maker = "gradient" if r.g_span > r.w_span else "weight"
        lines.append(
            f"- **{r.net}, B={r.batch_size}** ({r.seeds} seed(s)): at step 1 the weight-tensor "
            f"ratios span **{r.span:.1f}x** ({r.lowest} {r.lowest_ratio:.3g} to {r.highest} "
            f"{r.highest_ratio:.3g}). ||w|| spans {r.w_span:.1f}x, within {r.init_dev:.0%} of "
            f"what PyTorch's default initialisation gives (sqrt(fan_out / 3) per weight tensor); "
            f"||g|| spans {r.g_span:.1f}x, so the {maker} norms make most of the span. "
            + (
                f"Biases' ratios are {r.bias_over_weight:.2g}x the weights'. "
                if math.isfinite(r.bias_over_weight)
                else ""
            )
            + f"Over the first {r.window_epochs:.2g} epochs the ratio falls for {r.falling} of "
            f"{r.weights} weight tensors (to {r.fold_low:.2g}x-{r.fold_high:.2g}x of its step-1 "
            f"value): **{r.verdict}**."
        )
    held = summary[summary["verdict"] == "reproduced"]
    lines.append(
        f"- Claim 1a (span >= {SPAN_CRITERION:g}x at step 1 and falling) holds in {len(held)} "
        f"of {len(summary)} model/batch pairs; measured spans {summary['span'].min():.1f}x to "
        f"{summary['span'].max():.1f}x, against 5.76 to 1345 (233x) for the paper's AlexNet."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# part 2: the arms and the plan (claim 1b); the batch-scaling machinery is harness.batch_scaling


_LARS = {"momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "trust_coefficient": TRUST_COEFFICIENT}


BASELINE = "sgd"


LINEAR = "sgd linear-scaled"


ARMS: dict[str, Arm] = {
    BASELINE: Arm("sgd", _SGD, SGD_GRID, "SGD + momentum 0.9, rate tuned at every batch size"),
    "nesterov": Arm(
        "sgd", {**_SGD, "nesterov": True}, SGD_GRID, "Nesterov momentum, rate tuned per batch"
    ),
    "lars": Arm("lars", _LARS, LARS_GRID, "LARS, eta = 1e-3 on every tensor, base rate tuned"),
    "lars excl. 1-D": Arm(
        "lars",
        {**_LARS, "exclude_1d": True},
        LARS_GRID,
        "LARS without trust ratio or weight decay for 1-D tensors (biases, norm gains)",
    ),
    "larc": Arm(
        "lars",
        {**_LARS, "trust_coefficient": LARC_TRUST_COEFFICIENT, "trust_clip": True},
        SGD_GRID,
        "LARC (apex): rate min(lr, 0.02 ||w|| / (||g|| + beta ||w||)) per tensor",
    ),
}


def grid_shift(batch: int) -> float:
    """The factor the coarse grids move by at batch ``batch``: ``4^k`` with ``k`` the nearest
    whole number to ``log4 sqrt(B / B0) = log2(B / B0) / 4`` (halves round up) -- square-root
    scaling on the grids' own factor-4 lattice: 1 at 128, 4 at 1024 and 4096, 16 at 8192
    (``batch_scaling.grid_shift`` from ``B0 = BASE_BATCH``)."""
    return batch_scaling.grid_shift(batch, BASE_BATCH)


def grid_at(arm: str, batch: int) -> tuple[float, ...]:
    """The coarse grid ``arm`` starts from at batch ``batch`` (:func:`grid_shift`)."""
    spec = ARMS[check_choice("tuned arm", arm, ARMS)]
    return batch_scaling.grid_at(spec, batch, BASE_BATCH)


def batch_config(
    net: str, arm: str, batch: int, profile: str = "full", device: str = "cpu"
) -> RunConfig:
    """``net`` trained by tuned arm ``arm`` at batch ``batch`` for the profile's epoch budget:
    ``round(E * N / B)`` steps, linear warmup over ``WARMUP_EPOCHS`` epochs of steps, then
    ``(1 - p)^2`` to zero; 8 evaluations (``batch_scaling.batch_config``).  ``smoke``:
    ``comparisons.SMOKE_STEPS`` steps.  The rate is a placeholder the tuner replaces."""
    check_choice("network", net, NETS)
    spec = ARMS[check_choice("tuned arm", arm, ARMS)]
    check_batch(batch)
    if _check_profile(profile) == "smoke":
        budget = warmup = None
    else:
        check_choice(f"{profile} testbed", net, EPOCHS[profile])
        budget, warmup = _budget(net, EPOCHS[profile][net]), _budget(net, WARMUP_EPOCHS)
    return batch_scaling.batch_config(
        _base(net).replace(rule=None),
        spec,
        batch,
        budget,
        warmup=warmup,
        power=POWER,
        profile=profile,
        device=device,
    )


def arm_table() -> pd.DataFrame:
    """What each arm changes, as numbers: optimizer, Nesterov, trust coefficient, 1-D
    exclusion, LARC clipping, how its rate is set and its coarse grid at ``BASE_BATCH``."""
    rows = []
    for name, spec in ARMS.items():
        o = spec.options
        rows.append(
            {
                "arm": name,
                "optimizer": spec.optimizer,
                "nesterov": bool(o.get("nesterov", False)),
                "trust_coefficient": o.get("trust_coefficient", math.nan),
                "exclude_1d": bool(o.get("exclude_1d", False)),
                "trust_clip": bool(o.get("trust_clip", False)),
                "rate": "tuned at every batch",
                "coarse grid at B0": ", ".join(f"{lr:g}" for lr in spec.grid),
            }
        )
    rows.append(
        {
            "arm": LINEAR,
            "optimizer": "sgd",
            "nesterov": False,
            "trust_coefficient": math.nan,
            "exclude_1d": False,
            "trust_clip": False,
            "rate": f"sgd's rate at B0 = {BASE_BATCH} times B / {BASE_BATCH}",
            "coarse grid at B0": "-",
        }
    )
    return pd.DataFrame(rows)


def plan(profile: str = "full", device: str = "cpu") -> list[comparisons.Comparison]:
    """Part 2's comparisons: one per (testbed, batch size, tuned arm), each arm on its own
    coarse grid (:func:`grid_at`) with the protocol of ``comparisons.grid_protocol``; group
    ``"<arm> · B=<batch>"``.  Ordered by testbed, then batch size (the linear-scaled arm needs
    ``sgd`` at ``BASE_BATCH`` first), then arm."""
    _check_profile(profile)
    out = []
    for net in SWEEP_NETS[profile]:
        for batch in BATCH_SIZES[profile]:
            for arm, spec in ARMS.items():
                config = batch_config(net, arm, batch, profile, device)
                bed = Testbed(net, config, "acc", None, None, NETS[net].description)
                design = {
                    "optimizer": spec.optimizer,
                    "nesterov": bool(spec.options.get("nesterov", False)),
                    "exclude_1d": bool(spec.options.get("exclude_1d", False)),
                    "trust_clip": bool(spec.options.get("trust_clip", False)),
                }
                out.append(
                    batch_scaling.tuned_comparison(
                        bed,
                        arm,
                        spec,
                        BASE_BATCH,
                        profile=profile,
                        final_seeds=FINAL_SEEDS,
                        design=design,
                    )
                )
    return out


# --------------------------------------------------------------------------------------------
# part 2: the linear-scaled arm, the monitored reruns


def linear_scaling_configs(
    merged: Mapping[tuple[str, str], TuningResult],
    plan: Sequence[comparisons.Comparison],
) -> dict[tuple[str, str], list[RunConfig]]:
    """The linear-scaled arm's final runs: ``sgd``'s config at each batch above ``BASE_BATCH``
    with rate ``lr*(B0) * B / B0`` on ``sgd``'s final seeds there."""
    return batch_scaling.scaled_configs(merged, plan, BASELINE, "linear", BASE_BATCH)


def add_linear_scaling(
    merged: Mapping[tuple[str, str], TuningResult],
    plan: Sequence[comparisons.Comparison],
    study: str,
    *,
    store: Store | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> dict[tuple[str, str], TuningResult]:
    """``merged`` with the ``sgd linear-scaled`` arm at every batch above ``BASE_BATCH``: the
    rate ``sgd`` chose at ``B0`` times ``B / B0`` (the paper's baseline), rerun on ``sgd``'s
    final seeds.  It counts as tuned where ``sgd`` at ``B0`` is.  Unchanged while pending."""
    return batch_scaling.add_scaled(
        merged,
        plan,
        study,
        {LINEAR: BASELINE},
        "linear",
        BASE_BATCH,
        store=store,
        jobs=jobs,
        progress=progress,
    )


def monitored_configs(
    merged: Mapping[tuple[str, str], TuningResult],
    plan: Sequence[comparisons.Comparison],
    seeds: int = MONITOR_SEEDS,
) -> list[tuple[str, RunConfig]]:
    """(arm, config) of final runs at each testbed's largest batch size, rerun with the
    per-tensor monitor on (about 40 points; the monitor only reads, so each is its final run
    again): the first ``seeds`` final seeds of every arm at its chosen rate."""
    return batch_scaling.monitored_configs(merged, plan, seeds, sources={LINEAR: BASELINE})


def _describe(config: Mapping[str, Any]) -> tuple[str, pd.DataFrame]:
    net = _net_of(config)
    return net, tensor_table(net)


def trust_frame(
    pairs: Sequence[tuple[str, RunConfig]], records: Sequence[Mapping[str, Any]] | None
) -> pd.DataFrame:
    """The monitored reruns of :func:`monitored_configs` (``records`` in the same order; ``None``
    while they are pending gives an empty frame) as a tidy frame: testbed, batch size, arm,
    seed, step, name, label, ndim, quantity (``probes.QUANTITIES``: ``lr`` is the tensor's
    effective rate, the group's rate times its trust ratio), value."""
    return batch_scaling.trust_frame(pairs, records, _describe)


# --------------------------------------------------------------------------------------------
# part 2: tables, the two families of comparisons, the answer


def accuracy_table(merged: Mapping[tuple[str, str], TuningResult]) -> pd.DataFrame:
    """Per testbed, batch size and arm: the rate, whether it is tuned (interior), the final
    seeds that finished and failed, and the test accuracy's mean with its 95% t interval
    (kept inside [0, 1]; ``batch_scaling.score_table``)."""
    table = batch_scaling.score_table(merged)
    return table.drop(columns="metric").rename(columns={"mean": "test_acc"})


def _against(
    merged: Mapping[tuple[str, str], TuningResult], baseline: str
) -> list[tuple[str, str]]:
    """Every arm of ``merged`` paired with ``baseline``."""
    arms = dict.fromkeys(a for r in merged.values() for a in r.summary["arm"])
    return [(arm, baseline) for arm in arms if arm != baseline]


def drop_contrasts(
    merged: Mapping[tuple[str, str], TuningResult],
    *,
    baseline: str = BASELINE,
    sesoi_relative_error: float = 0.10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Does an arm lose less accuracy than ``baseline`` when the batch grows from
    ``BASE_BATCH`` to ``B``?  Per final seed ``s``, with ``a`` the arm's and ``b`` the
    baseline's test accuracy::

        c(B, s) = [a(B, s) - a(B0, s)] - [b(B, s) - b(B0, s)]

    (the linear-scaled arm's ``a(B0)`` is ``sgd``'s: at ``B0`` it *is* ``sgd``).  One row per
    testbed, arm and batch above ``B0`` with the mean changes (``change_arm``,
    ``change_baseline``), the contrast's mean (``effect``; > 0: the arm loses less) and the four
    outcomes of ``stats.compare_family`` over all tuned rows as one Holm family; the smallest
    effect of interest is ``sesoi_relative_error`` of the baseline's test error at ``B0``.  A row
    where any of the four rates is not tuned (not interior) stays out of the family and is
    *inconclusive*.  Seeds are those with all four runs finished; a row with none (every final
    run of the arm, or of the baseline, diverged) stays out of the family as *failed*
    (``batch_scaling.drop_contrasts``).
    """
    return batch_scaling.drop_contrasts(
        merged,
        _against(merged, baseline),
        BASE_BATCH,
        at_base={LINEAR: baseline},
        sesoi_relative_error=sesoi_relative_error,
        alpha=alpha,
    )


def compare_levels(
    merged: Mapping[tuple[str, str], TuningResult],
    *,
    baseline: str = BASELINE,
    sesoi_relative_error: float = 0.10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """``comparisons.compare`` of every arm against ``baseline`` at the same batch size (one
    Holm family, ``batch_scaling.compare_pairs``), with a ``testbed`` row per arm whose final
    runs all diverged -- outcome *failed*, outside the family, since there is nothing to pair
    -- and, where the baseline's all diverged, a *failed* row for every arm of that batch
    size."""
    return batch_scaling.compare_pairs(
        merged,
        _against(merged, baseline),
        sesoi_relative_error=sesoi_relative_error,
        alpha=alpha,
    )


def drop_verdict_table(drops: pd.DataFrame) -> pd.DataFrame:
    """:func:`drop_contrasts` as a reader sees it: per testbed, arm and batch size the mean
    change of the arm's and of tuned SGD's test accuracy from ``BASE_BATCH``, the contrast with
    its interval at the level that matches its outcome, the minimum detectable effect beside the
    smallest effect of interest, and the outcome (*not tuned* where a rate is not interior)."""
    return batch_scaling.drop_verdict_table(drops, BASELINE)


def level_verdict_table(levels: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare_levels` as a reader sees it: per testbed and batch size, each arm's
    chosen rate and test accuracy against tuned SGD's on the same seeds, the effect with its
    interval, MDE, SESOI, outcome, and the steps the arm needs to reach SGD's final validation
    score on the same seed (geometric-mean ratio; < 1: faster; ``n never``: seeds that never
    got there)."""
    return batch_scaling.level_verdict_table(levels, BASELINE)


_VERDICT_1B = {
    "reproduced": "**reproduced**: LARS loses less accuracy than SGD with its rate retuned",
    "partly reproduced": (
        "**partly reproduced**: LARS loses less than retuned SGD at some batch sizes"
    ),
    "not reproduced": (
        "**not reproduced**: LARS loses no less accuracy than SGD with its rate retuned at "
        "every batch size -- what Nado et al. (2021) found"
    ),
    "undecided": "**undecided**: the design could not tell at every batch size",
}


def _verdict_1b(outcomes: Sequence[str]) -> str:
    """Claim 1b from LARS's drop-contrast outcomes at the batch sizes >= 4096."""
    return _VERDICT_1B[batch_scaling.verdict_of(outcomes)]


def answer_batch_scaling(drops: pd.DataFrame, levels: pd.DataFrame) -> str:
    """Verdict 1b as Markdown, from :func:`drop_contrasts` and :func:`compare_levels`.

    Per testbed: LARS *reproduces* the paper when its drop contrast is *better* at every batch
    size >= 4096; *partly* when at some; *not reproduced* -- what Nado et al. (2021) found --
    when it is *equivalent* or *worse* (or *failed*) at every one; *undecided* otherwise
    (inconclusive rows: the minimum detectable effect says whether more seeds would tell).  Then
    every other arm's drop contrast, and each arm against tuned SGD at the largest batch.
    """
    if not len(drops):
        return "- Batch scaling: no result yet (every comparison is still pending)."
    lines = []
    for net, rows in drops.groupby("testbed", sort=False):
        lars = rows[(rows["arm"] == "lars") & (rows["batch_size"] >= 4096)]
        detail = "; ".join(
            f"B={r.batch_size}: {r.outcome}"
            + (
                f", {batch_scaling.effect_text(r._asdict())} (MDE {r.mde:.3f}, SESOI {r.sesoi:.3f})"
                if r.outcome != FAILED
                else " (every final run diverged)"
            )
            for r in lars.itertuples()
        )
        lines.append(
            f"- **{net}**, claim 1b (change of test accuracy from B={BASE_BATCH} to B >= 4096, "
            f"LARS minus tuned SGD; > 0: LARS loses less): {_verdict_1b(lars['outcome'].tolist())}"
            f". {detail or 'No LARS row yet'}."
        )
        for arm, arm_rows in rows[rows["arm"] != "lars"].groupby("arm", sort=False):
            parts = ", ".join(
                f"B={r.batch_size} {r.outcome}"
                + ("" if r.outcome == FAILED else f" {r.effect:+.3f}")
                for r in arm_rows.itertuples()
            )
            lines.append(f"  - {arm}, drop contrast against tuned SGD: {parts}.")
        mine = levels[levels["testbed"] == net] if len(levels) else levels
        if len(mine):
            largest = mine["group"].map(batch_scaling.batch_of).max()
            top = mine[mine["group"].map(batch_scaling.batch_of) == largest]
            parts = ", ".join(
                f"{r.arm} {r.outcome}"
                + (
                    " (every final run diverged)"
                    if r.outcome == FAILED
                    else f" ({r.arm_mean:.3f} against {r.baseline_mean:.3f})"
                )
                for r in top.itertuples()
            )
            lines.append(f"  - Test accuracy against tuned SGD at B={largest}: {parts}.")
    resolved = drops[drops["outcome"] != FAILED]
    lines.append(stats.unresolved_note(resolved, noun="drop contrasts"))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# figures


def plot_ratio_curves(frame: pd.DataFrame) -> plt.Figure:
    """``||w|| / ||g||`` of every tensor against epochs (both axes log), median over seeds, one
    panel per network and batch size; weight tensors solid, 1-D tensors dashed."""
    from ..harness.plots import panel_grid, tensor_lines

    keys = list(dict.fromkeys(zip(frame["net"], frame["batch_size"], strict=True)))
    fig, axes = panel_grid(max(1, len(keys)), ncols=2, size=4.2)
    for ax, (net, batch) in zip(axes, keys, strict=False):
        rows = frame[(frame["net"] == net) & (frame["batch_size"] == batch)]
        rows = rows[np.isfinite(rows["ratio"]) & (rows["ratio"] > 0)]
        tensor_lines(ax, rows, "epoch", "ratio")
        ax.set(xscale="log", yscale="log", xlabel="epoch", ylabel="||w|| / ||g||")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{net}, B={batch}", fontsize=10)
        ax.legend(fontsize=6, ncols=2)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_batch(table: pd.DataFrame) -> plt.Figure:
    """Test accuracy against batch size per arm (:func:`accuracy_table`), mean with its 95%
    interval over the final seeds, one panel per testbed; a hollow marker is an arm whose rate
    is not tuned, a cross at the bottom an arm whose every final run diverged
    (``batch_scaling.plot_metric_vs_batch``)."""
    frame = table.rename(columns={"test_acc": "mean"}).assign(metric="test_acc")
    return batch_scaling.plot_metric_vs_batch(frame)


def plot_rates(frame: pd.DataFrame, quantity: str = "lr") -> plt.Figure:
    """A monitored quantity (``lr``: each tensor's effective rate; ``trust_ratio``) against the
    step, one panel per arm, one line per tensor (median over seeds, log axis;
    ``batch_scaling.plot_rates``)."""
    return batch_scaling.plot_rates(frame, quantity)
