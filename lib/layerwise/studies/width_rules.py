"""Study 09: per-layer rates from width -- does a rule that scales each role's rate with width
make the best rate transfer from a narrow model to a wide one?

Four parametrisations (:data:`PARAMETRISATIONS`), each a per-layer learning-rate rule with the
model it trains, written relative to a base width ``n0 = 64`` (:data:`BASE_WIDTH`) so that all
four equal the standard parametrisation (SP) at ``n0`` (``m = width / n0``):

* ``SP``: PyTorch's initialisation, one rate for every tensor;
* ``muP``: Tensor Programs V (Yang et al. 2021, ``docs/references.md#yang2021mup``, Table 3 in
  the readout-multiplier form of Table 8): the model built with ``mup_base_width`` (the
  project's ``mup.to_mup``: readout ``head(x / m)``, 1/d attention) and the rule ``MuP``.  Adam:
  hidden matrices ``x 1/m``, everything else ``x 1``; SGD: hidden ``x 1``, input weights,
  width-sized biases and the (multiplied) readout ``x m``;
* ``SP + Everett``: Everett et al. 2024 (``docs/references.md#everett2024scaling``), SP with
  per-layer rates: for Adam embedding ``O(1)``, hidden ``O(1/width)``, readout ``O(1/width)``,
  i.e. ``rules.WidthRoles(n0, exponents={"hidden": -1, "output": -1})``.  For SGD the same
  construction -- Table 3's SGD rate column on an SP initialisation: input weights and
  width-sized biases ``x m``, hidden ``x 1``, readout ``x 1/m`` -- is this project's reading, not
  a number from their paper;
* ``SP + embedding``: Kalra & Barkeshli 2026 (``docs/references.md#kalra2026embedding``), SP with
  only the input layer's (embedding's) weight rate raised by the width factor,
  ``WidthRoles(n0, exponents={"input": 1})``.

**Rate-transfer curves** (Tensor Programs V, Fig. 1 and 3): final training and validation loss
against ``log2`` of the base rate, one curve per width, per parametrisation and optimizer, on a
grid in steps of one octave (:data:`GRIDS`).  Cost is controlled in stages
(:func:`curve_configs`): every grid point on one seed (:data:`SEEDS`\\[0]), extended by an
octave while the end rate wins; then the remaining two seeds at the five rates around that
seed's best (window :data:`WINDOW`), extended by an octave while the three seeds' best mean sits
at the window's end (at most :data:`EXTENSIONS` octaves beyond the grid), so every point near
each optimum has three seeds and no optimum is an artefact of where the grid stops.  The
*optimum* of a curve is the vertex of the parabola through the best mean (over seeds) final
training loss and its two neighbours, in ``log2`` units, clamped to half a step
(:func:`optimum`); its *drift* is the ratio of the optimal rate at the widest width to that at
the narrowest, with a percentile bootstrap interval over seeds (:func:`drift_table`).  Every run uses warmup and cosine decay to zero
(``comparisons.with_decay``).

**Per-role sensitivity** (Filatov et al. 2025, ``docs/references.md#filatov2025norm``): at one
width per testbed, SP with the uniform rate at the SP curve's best grid point, then one role's
weight rate (``input``, ``hidden``, ``output``) times ``2^k``, ``k`` in -3..3
(:func:`role_arms`), on fresh seeds; each arm against uniform by the four outcomes of
``harness.stats`` (one Holm family).

**Verdict 8** (:func:`verdict8`, claim 8 of ``docs/references.md``): SP's optimum drifts by
at least 4x across widths, muP's by at most 2x (each judged on the drift's bootstrap interval
over seeds; an interval across the factor, or an optimum at the end of the rates tried, leaves
the verdict *inconclusive*), and muP's loss at its optimum does not increase with width by more
than the smallest effect of interest.  The new claims (:func:`answer`): does raising only the
embedding rate recover more than half of muP's gain (:func:`recovered_share`), and
does Everett et al.'s SP prescription transfer as well as muP (drift, and loss at the widest
width's optimum against SP on fresh seeds, :func:`compare_widest`).

Profiles (:data:`COST` gives the measured estimate): ``smoke`` (minutes, for checks), ``full``
(the notebook's study) and ``large`` (the transformer at width 512 and SGD on it; for a GPU,
``plan("large", device="cuda")``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .._validate import check_choice, check_positive
from ..harness import comparisons, data, models, stats
from ..harness.config import RunConfig
from ..harness.store import Store
from ..harness.sweep import run_configs
from ..harness.testbeds import testbed
from ..layers import layer_table
from ..rules import WidthRoles, rule_from_spec

__all__ = [
    "BASE_WIDTH",
    "COST",
    "GRIDS",
    "PARAMETRISATIONS",
    "PROFILES",
    "ROLE_POWERS",
    "Curve",
    "answer",
    "base_config",
    "compare_roles",
    "compare_widest",
    "curve_configs",
    "curve_frame",
    "drift_table",
    "multiplier_table",
    "non_increasing",
    "optimum",
    "optimum_table",
    "plan",
    "plot_curves",
    "plot_optimum_vs_width",
    "recovered_share",
    "role_arms",
    "role_configs",
    "role_sensitivity",
    "rule_spec",
    "verdict8",
    "widest_configs",
]

PROFILES = ("smoke", "full", "large")
BASE_WIDTH = 64
PARAMETRISATIONS: tuple[str, ...] = ("SP", "muP", "SP + Everett", "SP + embedding")
MLP = "fashion_mnist/mlp"
TEXT = "tinyshakespeare/transformer"
# widths per testbed and profile; the full profile stops the transformer at 256 (cost)
WIDTHS: dict[str, dict[str, tuple[int, ...]]] = {
    "smoke": {MLP: (32, 64), TEXT: (32, 64)},
    "full": {MLP: (64, 128, 256, 512, 1024, 2048), TEXT: (64, 128, 256)},
    "large": {MLP: (64, 128, 256, 512, 1024, 2048), TEXT: (64, 128, 256, 512)},
}
OPTIMIZERS: dict[str, dict[str, tuple[str, ...]]] = {
    "smoke": {MLP: ("sgd", "adamw"), TEXT: ("adamw",)},
    "full": {MLP: ("sgd", "adamw"), TEXT: ("adamw",)},
    "large": {MLP: ("sgd", "adamw"), TEXT: ("adamw", "sgd")},
}
# training steps (warmup 5%, cosine to zero): the MLP one epoch of Fashion-MNIST at batch 128
# (421 steps); the transformer 300 steps of 16 x 64 characters (0.3 passes over the text)
STEPS: dict[str, dict[str, int]] = {
    "smoke": {MLP: 20, TEXT: 10},
    "full": {MLP: 421, TEXT: 300},
    "large": {MLP: 1263, TEXT: 2000},
}
TEXT_BATCH = 16
# log2 of the base rate: one octave apart, wide enough for SP's drift over a factor 32 in width
GRIDS: dict[str, tuple[float, ...]] = {
    "sgd": tuple(float(2**k) for k in range(-10, 1)),  # 2^-10 .. 1
    "adamw": tuple(float(2**k) for k in range(-14, -3)),  # 2^-14 .. 2^-4
}
SMOKE_GRIDS: dict[str, tuple[float, ...]] = {
    "sgd": (2.0**-5, 2.0**-3, 2.0**-1),
    "adamw": (2.0**-11, 2.0**-9, 2.0**-7),
}
SEEDS: tuple[int, ...] = (100, 101, 102)  # tuning seeds: the curves
FRESH_SEEDS: tuple[int, ...] = (1, 2, 3)  # the widest width's optimum and the role arms
WINDOW = 2  # grid points either side of the one-seed optimum that get every seed
# octaves a curve may extend beyond its grid at either end while the end rate wins (protocol v2)
EXTENSIONS: dict[str, int] = {"smoke": 1, "full": 3, "large": 3}
ROLE_WIDTH: dict[str, int] = {MLP: 256, TEXT: 128}
ROLE_POWERS: tuple[int, ...] = (-3, -2, -1, 1, 2, 3)
SMOKE_ROLE_POWERS: tuple[int, ...] = (-3, 3)
SENSITIVITY_ROLES: tuple[str, ...] = ("input", "hidden", "output")
# measured (see the notebook): core-minutes of training on one thread per run
COST: dict[str, str] = {
    "smoke": "a few core-minutes",
    "full": "about 330 core-minutes, 2.75 h on 2 cores (timed per run; see the notebook)",
    "large": "not measured: the width-512 transformer takes about 2.7 s per step on one core, "
    "so this profile is for a GPU",
}


def _check_profile(profile: str) -> str:
    return check_choice("profile", profile, PROFILES)


def _check_parametrisation(name: str) -> str:
    return check_choice("parametrisation", name, PARAMETRISATIONS)


def rule_spec(parametrisation: str, optimizer: str) -> dict[str, Any]:
    """The per-layer rule of ``parametrisation`` for ``optimizer`` (``"sgd"`` or ``"adamw"``) as
    a ``RunConfig`` rule spec (see the module docstring for the formulas)."""
    _check_parametrisation(parametrisation)
    check_choice("optimizer", optimizer, ("sgd", "adamw"))
    if parametrisation == "SP":
        return {"name": "uniform"}
    if parametrisation == "muP":
        return {
            "name": "mup",
            "base_width": BASE_WIDTH,
            "optimizer": "adam" if optimizer == "adamw" else "sgd",
        }
    if parametrisation == "SP + Everett":
        exponents = (
            {"hidden": -1, "output": -1}
            if optimizer == "adamw"
            else {"input": 1, "vector": 1, "output": -1}
        )
        return WidthRoles(BASE_WIDTH, exponents=exponents).spec()
    return WidthRoles(BASE_WIDTH, exponents={"input": 1}).spec()


def _model_options(bed: str, width: int, parametrisation: str) -> dict[str, Any]:
    """Model options at ``width``: the MLP 784-n-n-10; the transformer 2 blocks, 4 heads,
    PyTorch's initialisation, head not tied (so the readout is its own role), 1/sqrt(d) logits
    under SP and 1/d under muP."""
    mup = parametrisation == "muP"
    if bed == MLP:
        options: dict[str, Any] = {"width": width, "depth": 2}
    else:
        options = {
            "width": width,
            "depth": 2,
            "heads": 4,
            "block": 64,
            "tie": False,
            "init": "torch",
            "attn_scale": "inverse" if mup else "sqrt",
        }
    if mup:
        options["mup_base_width"] = BASE_WIDTH
    return options


def base_config(
    bed: str, optimizer: str, width: int, parametrisation: str, profile: str = "full"
) -> RunConfig:
    """One curve's config, rate and seed left as placeholders: the testbed's data, the
    parametrisation's model and rule, ``optimizer`` (SGD with momentum 0.9, or AdamW; no weight
    decay, no clipping), warmup and cosine decay to zero over :data:`STEPS`, four evaluations."""
    _check_profile(profile)
    check_choice("testbed", bed, (MLP, TEXT))
    check_positive("width", width)
    base = testbed(bed).config
    if bed == TEXT:
        base = base.replace(batch_size=TEXT_BATCH, grad_clip=None, rule=None)
    steps = STEPS[profile][bed]
    config = comparisons.with_decay(comparisons.with_optimizer(base, optimizer), steps)
    return config.replace(
        model_options=_model_options(bed, width, parametrisation),
        rule=rule_spec(parametrisation, optimizer),
        eval_every=max(1, steps // 4),
    )


@dataclasses.dataclass(frozen=True)
class Curve:
    """One rate-transfer curve: a testbed, an optimizer, a parametrisation and a width."""

    bed: str
    optimizer: str
    parametrisation: str
    width: int
    profile: str = "full"
    device: str = "cpu"

    def config(self, lr: float, seed: int) -> RunConfig:
        config = base_config(
            self.bed, self.optimizer, self.width, self.parametrisation, self.profile
        )
        return config.replace(lr=lr, seed=seed, device=self.device)

    @property
    def grid(self) -> tuple[float, ...]:
        return (SMOKE_GRIDS if self.profile == "smoke" else GRIDS)[self.optimizer]

    @property
    def seeds(self) -> tuple[int, ...]:
        return SEEDS[:2] if self.profile == "smoke" else SEEDS

    @property
    def labels(self) -> dict[str, Any]:
        return {
            "testbed": self.bed,
            "optimizer": self.optimizer,
            "parametrisation": self.parametrisation,
            "width": self.width,
        }


def plan(profile: str = "full", device: str = "cpu") -> list[Curve]:
    """Every curve of the profile, cheapest first (by width) so early results come soon."""
    _check_profile(profile)
    curves = [
        Curve(bed, opt, p, w, profile, device)
        for bed in (MLP, TEXT)
        for opt in OPTIMIZERS[profile][bed]
        for w in WIDTHS[profile][bed]
        for p in PARAMETRISATIONS
    ]
    return sorted(curves, key=lambda c: (c.bed == TEXT, c.width))


# --------------------------------------------------------------------------------------------
# the multipliers each rule gives (the intervention, as a table)


def multiplier_table(bed: str, optimizer: str, widths: Sequence[int]) -> pd.DataFrame:
    """The rate multiplier every parametrisation gives each tensor of ``bed``'s model at each of
    ``widths``: one row per (tensor, width), one column per parametrisation, plus the tensor's
    role (``rules.WidthRoles.roles``) and shape."""
    spec = data.spec(bed.split("/")[0])
    example = torch.zeros(2, 8, dtype=torch.long) if bed == TEXT else torch.zeros(2, 1, 28, 28)
    frames = []
    for width in widths:
        columns: dict[str, list[float]] = {}
        for p in PARAMETRISATIONS:
            with torch.random.fork_rng(devices=[]):
                model = models.build(bed.split("/")[1], spec, **_model_options(bed, width, p))
            table = layer_table(model, example)
            columns[p] = list(rule_from_spec(rule_spec(p, optimizer)).multipliers(table))
        roles = WidthRoles(BASE_WIDTH).roles(table)
        frames.append(
            pd.DataFrame(
                {
                    "width": width,
                    "tensor": table["name"],
                    "role": roles,
                    "shape": [tuple(s) for s in table["shape"]],
                    **columns,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# running the curves: every grid point on one seed, then every seed around the optimum


def _window(rates: Sequence[float], best: float, half: int = WINDOW) -> list[float]:
    """The rates within ``half`` steps of ``best`` in sorted ``rates`` (fewer at an end)."""
    i = list(rates).index(best)
    return list(rates[max(0, i - half) : i + half + 1])


def _final_train_loss(record: Mapping[str, Any]) -> float:
    """The training loss over the last evaluation interval (nan for a diverged run)."""
    if record["status"] != "ok" or not record["curves"]["train_loss"]:
        return math.nan
    return float(record["curves"]["train_loss"][-1])


def _rows(curve: Curve, configs: Sequence[RunConfig], records: Sequence[dict]) -> pd.DataFrame:
    rows = []
    for config, record in zip(configs, records, strict=True):
        ok = record["status"] == "ok"
        rows.append(
            {
                **curve.labels,
                "lr": config.lr,
                "log2_lr": math.log2(config.lr),
                "seed": config.seed,
                "train_loss": _final_train_loss(record),
                "val_loss": record["final"]["val_loss"] if ok else math.nan,
                "test_loss": record["final"]["test_loss"] if ok else math.nan,
                "status": record["status"],
                "key": record["key"],
                "wall_time_s": record["wall_time_s"],
            }
        )
    return pd.DataFrame(rows)


def _best_lr(frame: pd.DataFrame) -> float:
    """The grid rate with the lowest mean final training loss (diverged runs count as worst)."""
    means = frame.assign(train_loss=frame["train_loss"].fillna(np.inf))
    means = means.groupby("lr")["train_loss"].mean()
    return float(means.idxmin())


def _outward(curve: Curve, rates: Sequence[float], best: float) -> float | None:
    """The rate one octave beyond ``best`` when ``best`` is the smallest or largest of
    ``rates`` and the curve's extension budget (:data:`EXTENSIONS`) allows it; else ``None``."""
    low, high = min(rates), max(rates)
    if best not in (low, high) or low == high:
        return None
    step = 2.0 if best == high else 0.5
    beyond = best * step
    limit = EXTENSIONS[curve.profile]
    grid_low, grid_high = min(curve.grid), max(curve.grid)
    if not grid_low / 2.0**limit <= beyond <= grid_high * 2.0**limit:
        return None
    return beyond


def curve_configs(curve: Curve, done: pd.DataFrame | None = None) -> list[RunConfig]:
    """The runs ``curve`` needs next, given its runs so far (``done``: rows with ``lr``,
    ``seed`` and ``train_loss``, nan for a diverged run); ``[]`` once it is complete.

    1. Nothing done: every grid rate on the first seed.
    2. While the first seed's best rate is the largest (smallest) it tried: the next octave up
       (down) on that seed.
    3. The other seeds at the rates within :data:`WINDOW` steps of the first seed's best.
    4. While the best mean over all seeds (on the rates every seed reached) sits at the end of
       those rates: the next rate out for every seed that lacks it.
    Steps 2 and 4 stop :data:`EXTENSIONS` octaves beyond the grid; a diverged rate ends them.
    """
    seeds = curve.seeds
    if done is None or done.empty:
        return [curve.config(lr, seeds[0]) for lr in curve.grid]
    first = done[done["seed"] == seeds[0]]
    tried = sorted(first["lr"].unique())
    best = _best_lr(first)
    beyond = _outward(curve, tried, best)
    if beyond is not None:
        return [curve.config(beyond, seeds[0])]
    have = set(zip(done["lr"], done["seed"], strict=True))
    window = _window(tried, best)
    missing = [(lr, s) for lr in window for s in seeds[1:] if (lr, s) not in have]
    if missing:
        return [curve.config(lr, s) for lr, s in missing]
    counts = done.groupby("lr")["seed"].nunique()
    complete = sorted(counts[counts == len(seeds)].index)
    beyond = _outward(curve, complete, _best_lr(done[done["lr"].isin(complete)]))
    if beyond is None:
        return []
    return [curve.config(beyond, s) for s in seeds if (beyond, s) not in have]


def curve_frame(
    curves: Sequence[Curve],
    study: str,
    *,
    store: Store | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run (or read) every curve's stages (:func:`curve_configs`), all curves' next runs in one
    batch per round; one row per run (labels, rate, seed, final training / validation / test
    loss, status, key, wall time)."""
    store = store or Store()
    frames = [pd.DataFrame() for _ in curves]
    todo = [curve_configs(curve) for curve in curves]
    while any(todo):
        batch = [c for configs in todo for c in configs]
        records = run_configs(batch, study, store=store, jobs=jobs, progress=progress)
        at = 0
        for i, (curve, configs) in enumerate(zip(curves, todo, strict=True)):
            if configs:
                new = _rows(curve, configs, records[at : at + len(configs)])
                frames[i] = pd.concat([frames[i], new], ignore_index=True)
                at += len(configs)
        todo = [curve_configs(curve, f) for curve, f in zip(curves, frames, strict=True)]
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# optima, drift, loss at the optimum

_KEYS = ["testbed", "optimizer", "parametrisation", "width"]


def optimum(log2_lr: Sequence[float], loss: Sequence[float]) -> tuple[float, bool]:
    """``(log2 of the optimal rate, interior)`` of one curve given as mean losses on a grid
    (nan: diverged, counts as worst).  The best grid point, moved to the vertex of the parabola
    through it and its two neighbours when both exist and are finite, by at most half a step;
    ``interior`` is whether both neighbours exist and are finite."""
    x = np.asarray(log2_lr, dtype=float)
    y = np.asarray(loss, dtype=float)
    order = np.argsort(x)
    x, y = x[order], np.where(np.isfinite(y[order]), y[order], np.inf)
    if not np.isfinite(y).any():
        return math.nan, False
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1 or not (np.isfinite(y[i - 1]) and np.isfinite(y[i + 1])):
        return float(x[i]), False
    h = x[i + 1] - x[i]
    curvature = y[i - 1] - 2 * y[i] + y[i + 1]
    shift = 0.0 if curvature <= 0 else 0.5 * (y[i - 1] - y[i + 1]) / curvature * h
    return float(x[i] + float(np.clip(shift, -h / 2, h / 2))), True


def _full_seed_means(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean ``column`` per curve and rate over the rates every seed of the curve reached."""
    seeds = frame.groupby(_KEYS)["seed"].transform("nunique")
    counts = frame.groupby([*_KEYS, "lr"])["seed"].transform("nunique")
    full = frame[counts == seeds]
    return full.groupby([*_KEYS, "lr", "log2_lr"], as_index=False)[column].mean()


def optimum_table(frame: pd.DataFrame, column: str = "train_loss") -> pd.DataFrame:
    """Per curve: the optimal ``log2`` rate (:func:`optimum` on the rates with every seed), the
    mean loss at the best grid point, whether the optimum is interior, and the seeds."""
    means = _full_seed_means(frame, column)
    seeds = frame.groupby(_KEYS)["seed"].nunique()
    rows = []
    for keys, g in means.groupby(_KEYS, sort=False):
        x, interior = optimum(g["log2_lr"], g[column])
        rows.append(
            {
                **dict(zip(_KEYS, keys, strict=True)),
                "log2_opt": x,
                "interior": interior,
                "loss_at_opt": float(g[column].min()),
                "seeds": int(seeds[keys]),
            }
        )
    return pd.DataFrame(rows)


def _seed_matrix(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(log2 rates, seeds x rates losses)`` of one curve over the rates every seed of the
    curve reached; a diverged run's loss is ``inf``."""
    values = frame.assign(loss=frame[column].fillna(np.inf))
    table = values.pivot_table(index="seed", columns="log2_lr", values="loss", aggfunc="mean")
    table = table.loc[:, table.notna().all()]
    return table.columns.to_numpy(dtype=float), table.to_numpy(dtype=float)


def _censored(curve: pd.DataFrame, column: str) -> bool:
    """Whether a curve's best rate (lowest mean over its seeds on the rates every seed
    reached) is the largest or smallest rate it tried at all: the optimum may lie beyond it,
    so its location is only a bound.  A diverged run beyond the best rate bounds it."""
    means = _full_seed_means(curve, column)
    if means.empty:
        return True
    best = float(means.loc[means[column].fillna(np.inf).idxmin(), "lr"])
    return best in (curve["lr"].min(), curve["lr"].max())


def drift_table(
    frame: pd.DataFrame, column: str = "train_loss", boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per (testbed, optimizer, parametrisation): the drift of the optimal rate from the
    narrowest to the widest width, ``2^(x*_widest - x*_narrowest)`` (a ratio of rates, 1 = no
    drift; ``x*`` from :func:`optimum` on the mean over seeds), with a 95% percentile bootstrap
    interval over seeds (seeds resampled with replacement, the same draw at both widths, since
    a seed's runs pair across widths and rates), ``|log2 drift|``, and ``censored``: an end's
    optimum is at the end of the rates its curve tried, so the drift is only a bound."""
    rng = np.random.default_rng(seed)
    rows = []
    for keys, g in frame.groupby(["testbed", "optimizer", "parametrisation"], sort=False):
        widths = sorted(g["width"].unique())
        ends = [_seed_matrix(g[g["width"] == w], column) for w in (widths[0], widths[-1])]

        def drift(pick: np.ndarray, ends=ends) -> float:
            x = [optimum(lr, np.mean(m[pick], axis=0))[0] for lr, m in ends]
            return float(2.0 ** (x[1] - x[0]))

        n = min(m.shape[0] for _, m in ends)
        point = drift(np.arange(n))
        draws = [drift(rng.integers(0, n, n)) for _ in range(boot if n > 1 else 0)]
        low, high = np.nanpercentile(draws, [2.5, 97.5]) if draws else (math.nan, math.nan)
        rows.append(
            {
                "testbed": keys[0],
                "optimizer": keys[1],
                "parametrisation": keys[2],
                "widths": f"{widths[0]}-{widths[-1]}",
                "seeds": n,
                "drift": point,
                "drift_low": float(low),
                "drift_high": float(high),
                "abs_log2_drift": abs(math.log2(point)) if point > 0 else math.nan,
                "censored": any(
                    _censored(g[g["width"] == w], column) for w in (widths[0], widths[-1])
                ),
            }
        )
    return pd.DataFrame(rows)


def non_increasing(losses: Sequence[float], tolerance: float) -> bool:
    """True when no step to a wider width raises the loss by more than ``tolerance``."""
    values = np.asarray(losses, dtype=float)
    return bool(np.all(np.diff(values) <= tolerance)) and bool(np.isfinite(values).all())


def _beyond(low: float, high: float, factor: float) -> str:
    """Whether a drift interval ``[low, high]`` lies beyond ``factor`` either way (``"yes"``),
    within it (``"no"``) or across its edge (``"undecided"``; also without an interval)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undecided"
    if high <= 1 / factor or low >= factor:
        return "yes"
    if low > 1 / factor and high < factor:
        return "no"
    return "undecided"


def _within(low: float, high: float, factor: float) -> str:
    """Whether a drift interval lies within ``factor`` either way: :func:`_beyond` turned over
    (``"undecided"`` stays)."""
    return {"yes": "no", "no": "yes", "undecided": "undecided"}[_beyond(low, high, factor)]


def _read(drift: pd.Series, check: Callable[[float, float, float], str], factor: float) -> str:
    """``check`` (:func:`_beyond` or :func:`_within`) of a :func:`drift_table` row's interval;
    ``"undecided"`` when the drift is censored (an end's optimum at the end of its rates)."""
    if drift.get("censored", False):
        return "undecided"
    return check(drift["drift_low"], drift["drift_high"], factor)


def _verdict_of(said: set[str]) -> str:
    """Claim 8's verdict from the set of its checks' answers (see :func:`verdict8`)."""
    if said == {"yes"}:
        return "reproduced"
    if "no" not in said:
        return "inconclusive"
    return "partly" if "yes" in said else "not reproduced"


def verdict8(drifts: pd.DataFrame, optima: pd.DataFrame, sesoi_nats: float = 0.02) -> pd.DataFrame:
    """Claim 8 per (testbed, optimizer), each check judged so that one rerun point cannot flip
    it: SP's optimum drifts by >= 4x and muP's by <= 2x (either direction), each read on the
    drift's bootstrap interval over seeds (``yes`` / ``no`` / ``undecided`` when the interval
    crosses the factor), and muP's loss at its optimum is non-increasing in width within
    ``sesoi_nats`` (``yes`` / ``no``); a censored drift (:func:`drift_table`) is ``undecided``
    and named in ``censored``.  ``verdict``: ``reproduced`` (every check yes),
    ``inconclusive`` (none no, some undecided), ``partly`` (some yes, some no), ``not
    reproduced`` (some no, none yes)."""
    rows = []
    for (bed, opt), g in drifts.groupby(["testbed", "optimizer"], sort=False):
        d = g.set_index("parametrisation")
        if not {"SP", "muP"} <= set(d.index):
            continue
        sp, mu = d.loc["SP"], d.loc["muP"]
        mu_curve = optima[
            (optima["testbed"] == bed)
            & (optima["optimizer"] == opt)
            & (optima["parametrisation"] == "muP")
        ].sort_values("width")
        checks = {
            "SP drifts >= 4x": _read(sp, _beyond, 4.0),
            "muP drifts <= 2x": _read(mu, _within, 2.0),
            "muP loss non-increasing": "yes"
            if non_increasing(mu_curve["loss_at_opt"], sesoi_nats)
            else "no",
        }
        rows.append(
            {
                "testbed": bed,
                "optimizer": opt,
                **{
                    f"{name} drift{end}": float(row[f"drift{end}"])
                    for name, row in (("SP", sp), ("muP", mu))
                    for end in ("", "_low", "_high")
                },
                "censored": ", ".join(
                    name for name, row in (("SP", sp), ("muP", mu)) if row.get("censored", False)
                ),
                **checks,
                "verdict": _verdict_of(set(checks.values())),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# fresh seeds: the widest width's optimum against SP; the per-role arms


def widest_configs(
    frame: pd.DataFrame, profile: str = "full", device: str = "cpu"
) -> list[RunConfig]:
    """Each curve at the widest width rerun on :data:`FRESH_SEEDS` at its best grid rate."""
    seeds = FRESH_SEEDS[:2] if profile == "smoke" else FRESH_SEEDS
    out = []
    for (bed, opt, p), g in frame.groupby(["testbed", "optimizer", "parametrisation"], sort=False):
        widest = g[g["width"] == g["width"].max()]
        best = _best_lr(_full_seed_means(widest, "train_loss"))
        curve = Curve(bed, opt, p, int(widest["width"].iloc[0]), profile, device)
        out += [curve.config(best, s) for s in seeds]
    return out


def compare_widest(
    configs: Sequence[RunConfig],
    records: Sequence[dict],
    sesoi_nats: float = 0.02,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Each parametrisation against SP at the widest width, on paired fresh seeds, each at its
    own best grid rate: test loss, four outcomes (one Holm family, ``stats.compare_family``)."""
    rows = []
    for config, record in zip(configs, records, strict=True):
        rows.append(
            {
                "testbed": f"{config.dataset}/{config.model}",
                "optimizer": config.optimizer,
                "parametrisation": _parametrisation_of(config),
                "width": config.model_options["width"],
                "lr": config.lr,
                "seed": config.seed,
                "test_loss": record["final"]["test_loss"] if record["status"] == "ok" else math.nan,
            }
        )
    frame = pd.DataFrame(rows)
    return _against(
        frame, "parametrisation", "SP", ["testbed", "optimizer", "width"], sesoi_nats, alpha
    )


def _parametrisation_of(config: RunConfig) -> str:
    """Which of :data:`PARAMETRISATIONS` a config trains (its rule and model)."""
    for p in PARAMETRISATIONS:
        if dict(config.rule) == rule_spec(p, config.optimizer):
            return p
    raise ValueError(f"rule {dict(config.rule)!r} is none of {PARAMETRISATIONS}")


def _against(
    frame: pd.DataFrame,
    arm_column: str,
    baseline: str,
    keys: list[str],
    sesoi_nats: float,
    alpha: float,
) -> pd.DataFrame:
    rows = []
    for group, g in frame.groupby(keys, sort=False):
        base = g[g[arm_column] == baseline].set_index("seed")["test_loss"]
        for arm, a in g[g[arm_column] != baseline].groupby(arm_column, sort=False):
            a = a.set_index("seed")["test_loss"]
            seeds = sorted(set(a.dropna().index) & set(base.dropna().index))
            rows.append(
                {
                    **dict(zip(keys, group, strict=True)),
                    "arm": arm,
                    "arm_mean": float(a.mean()),
                    "baseline_mean": float(base.mean()),
                    "a": [a[s] for s in seeds],
                    "b": [base[s] for s in seeds],
                    "sesoi": sesoi_nats,
                    "larger_is_better": False,
                    "bounds": None,
                }
            )
    if not rows:
        return pd.DataFrame()
    return stats.compare_family(pd.DataFrame(rows), alpha=alpha)


def role_arms(
    config: RunConfig, powers: Sequence[int] = ROLE_POWERS
) -> tuple[dict[str, RunConfig], pd.DataFrame]:
    """Uniform plus one arm per (role, ``k``): the role's weight rate times ``2^k`` (``k`` in
    ``powers``), every other tensor at the base rate (``rules.WidthRoles`` factors; biases and
    gains keep the base rate).  Returns the arms and a table (arm, role, power, factor)."""
    arms = {"uniform": config.replace(rule={"name": "uniform"})}
    rows = [{"arm": "uniform", "role": None, "power": 0, "factor": 1.0}]
    for role in SENSITIVITY_ROLES:
        for k in powers:
            if k == 0 or isinstance(k, bool) or not isinstance(k, int):
                raise ValueError(f"role powers are non-zero whole numbers, got {k!r}")
            label = f"{role} x2^{k}"
            rule = WidthRoles(BASE_WIDTH, factors={role: float(2.0**k)})
            arms[label] = config.replace(rule=rule.spec())
            rows.append({"arm": label, "role": role, "power": k, "factor": float(2.0**k)})
    return arms, pd.DataFrame(rows)


def role_configs(
    frame: pd.DataFrame, profile: str = "full", device: str = "cpu"
) -> tuple[list[RunConfig], pd.DataFrame]:
    """The role arms of every (testbed, optimizer) at :data:`ROLE_WIDTH` (the smoke profile:
    its narrowest width), SP at the SP curve's best grid rate there, on :data:`FRESH_SEEDS`."""
    seeds = FRESH_SEEDS[:2] if profile == "smoke" else FRESH_SEEDS
    configs, designs = [], []
    sp = frame[frame["parametrisation"] == "SP"]
    for (bed, opt), g in sp.groupby(["testbed", "optimizer"], sort=False):
        width = ROLE_WIDTH[bed] if profile != "smoke" else int(g["width"].min())
        best = _best_lr(_full_seed_means(g[g["width"] == width], "train_loss"))
        powers = SMOKE_ROLE_POWERS if profile == "smoke" else ROLE_POWERS
        config = Curve(bed, opt, "SP", width, profile, device).config(best, 0)
        arms, design = role_arms(config, powers)
        configs += [arm.replace(seed=s) for arm in arms.values() for s in seeds]
        designs.append(design.assign(testbed=bed, optimizer=opt, width=width, lr=best))
    return configs, pd.concat(designs, ignore_index=True)


def compare_roles(
    configs: Sequence[RunConfig],
    records: Sequence[dict],
    design: pd.DataFrame,
    sesoi_nats: float = 0.02,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every role arm against uniform on paired seeds (test loss; one Holm family), with the
    arm's role and power merged in."""
    rows = []
    for config, record in zip(configs, records, strict=True):
        factors = dict(config.rule).get("factors", {})
        role, factor = next(iter(factors.items())) if factors else (None, 1.0)
        arm = "uniform" if role is None else f"{role} x2^{round(math.log2(factor))}"
        rows.append(
            {
                "testbed": f"{config.dataset}/{config.model}",
                "optimizer": config.optimizer,
                "arm": arm,
                "seed": config.seed,
                "test_loss": record["final"]["test_loss"] if record["status"] == "ok" else math.nan,
            }
        )
    table = _against(
        pd.DataFrame(rows), "arm", "uniform", ["testbed", "optimizer"], sesoi_nats, alpha
    )
    return table.merge(
        design.drop(columns=["lr", "width"]), on=["testbed", "optimizer", "arm"], how="left"
    )


def role_sensitivity(table: pd.DataFrame) -> pd.DataFrame:
    """Per (testbed, optimizer, role): the largest loss increase over the role's arms (worst
    ``2^k``) and the mean over them; the most sensitive role is the one with the larger mean."""
    g = table.groupby(["testbed", "optimizer", "role"], sort=False)["effect"]
    out = g.agg(max_increase="max", mean_increase="mean").reset_index()
    worse = table[table["outcome"] == "worse"].groupby(["testbed", "optimizer", "role"]).size()
    out["worse_arms"] = [
        int(worse.get(tuple(r), 0)) for r in out[["testbed", "optimizer", "role"]].values
    ]
    return out


# --------------------------------------------------------------------------------------------
# the answer


def _widest_seed_table(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The widest width's runs as a (seed) x (parametrisation, log2 rate) table of ``column``
    (diverged: ``inf``), over the seeds every parametrisation has and, per parametrisation, the
    rates every one of those seeds reached."""
    widest = frame[frame["width"] == frame["width"].max()]
    table = widest.assign(loss=widest[column].fillna(np.inf)).pivot_table(
        index="seed", columns=["parametrisation", "log2_lr"], values="loss", aggfunc="mean"
    )
    has_every_parametrisation = table.notna().T.groupby(level=0).any().all()
    table = table[has_every_parametrisation]
    return table.loc[:, table.notna().all()]


def recovered_share(
    frame: pd.DataFrame,
    arm: str,
    column: str = "train_loss",
    most: float = 0.5,
    boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (testbed, optimizer): the share of muP's gain over SP that ``arm`` recovers at the
    widest width, ``(L_SP - L_arm) / (L_SP - L_muP)`` with ``L`` a parametrisation's ``column``
    at its best rate (the lowest mean over seeds on the rates every seed reached, as in
    :func:`optimum_table`), and a 95% percentile bootstrap interval over seeds (one draw for
    all three parametrisations: a seed fixes the data order of each).  ``muP gain`` is
    ``L_SP - L_muP`` with its own interval; the share is undefined (nan) where that gain is not
    positive, and its interval wherever a draw's gain is not.  ``recovers most``: ``yes`` when
    the share's interval lies above ``most``, ``no`` when below it, else ``undecided``."""
    rng = np.random.default_rng(seed)
    rows = []
    for (bed, opt), g in frame.groupby(["testbed", "optimizer"], sort=False):
        table = _widest_seed_table(g, column)
        n, values, columns = len(table), table.to_numpy(), table.columns

        def at_optimum(pick: np.ndarray, values=values, columns=columns) -> dict[str, float]:
            means = values[pick].mean(axis=0)
            best = pd.Series(means, index=columns).groupby(level=0).min()
            return {p: float(best.get(p, math.nan)) for p in ("SP", "muP", arm)}

        def gain_and_share(pick: np.ndarray) -> tuple[float, float]:
            loss = at_optimum(pick)
            gain = loss["SP"] - loss["muP"]
            return gain, (loss["SP"] - loss[arm]) / gain if gain > 0 else math.nan

        gain, share = gain_and_share(np.arange(n))
        draws = np.array(
            [gain_and_share(rng.integers(0, n, n)) for _ in range(boot if n > 1 else 0)]
        )
        gain_low = gain_high = low = high = math.nan
        if len(draws):
            gain_low, gain_high = np.percentile(draws[:, 0], [2.5, 97.5])
            if np.isfinite(draws[:, 1]).all():
                low, high = np.percentile(draws[:, 1], [2.5, 97.5])
        said = "undecided"
        if math.isfinite(low) and low > most:
            said = "yes"
        elif math.isfinite(high) and high < most:
            said = "no"
        rows.append(
            {
                "testbed": bed,
                "optimizer": opt,
                "seeds": n,
                "muP gain": gain,
                "gain_low": float(gain_low),
                "gain_high": float(gain_high),
                "share": share,
                "share_low": float(low),
                "share_high": float(high),
                "recovers most": said,
            }
        )
    return pd.DataFrame(rows)


def answer(
    verdicts: pd.DataFrame,
    drifts: pd.DataFrame,
    shares: pd.DataFrame,
    widest: pd.DataFrame,
    roles: pd.DataFrame,
) -> str:
    """The study's answer as Markdown sentences, computed from the tables above: ``verdicts``
    (:func:`verdict8`), ``drifts`` (:func:`drift_table`), ``shares`` (:func:`recovered_share`
    of the embedding-only rule), ``widest`` (:func:`compare_widest`), ``roles``
    (:func:`compare_roles`)."""
    lines = []
    for r in verdicts.to_dict("records"):
        moves = {
            name: f"x{r[f'{name} drift']:.2g} [{r[f'{name} drift_low']:.2g}, "
            f"{r[f'{name} drift_high']:.2g}] ({r[f'{name} {test}']}: {test})"
            for name, test in (("SP", "drifts >= 4x"), ("muP", "drifts <= 2x"))
        }
        lines.append(
            f"- **Verdict 8, {r['testbed']} {r['optimizer']}: {r['verdict']}.** From the "
            f"narrowest to the widest width SP's optimal rate moves {moves['SP']}, muP's "
            f"{moves['muP']} (bootstrap interval over seeds); muP's loss at its optimum is "
            f"{'' if r['muP loss non-increasing'] == 'yes' else 'not '}non-increasing in width."
            + (
                f" Censored ({r['censored']}): an optimum at the end of the rates tried, so the "
                "drift is only a bound."
                if r.get("censored")
                else ""
            )
        )
    for r in shares.to_dict("records"):
        where = f"- **Embedding rate only**, {r['testbed']} {r['optimizer']}: "
        gain = (
            f"muP's gain over SP {r['muP gain']:+.3f} [{r['gain_low']:+.3f}, "
            f"{r['gain_high']:+.3f}] nats in training loss at the widest width's optimum"
        )
        if not np.isfinite(r["share"]):
            lines.append(f"{where}nothing to recover: {gain}.")
            continue
        interval = (
            f" [{r['share_low']:.0%}, {r['share_high']:.0%}]"
            if np.isfinite(r["share_low"])
            else " (no interval: muP's gain is not positive in every resample)"
        )
        lines.append(
            f"{where}recovers {r['share']:.0%}{interval} of muP's gain ({gain}); more than "
            f"half: {r['recovers most']}."
        )
    d = drifts.set_index(["testbed", "optimizer", "parametrisation"])
    for bed, opt in drifts[["testbed", "optimizer"]].drop_duplicates().itertuples(index=False):
        if (bed, opt, "SP + Everett") not in d.index or (bed, opt, "muP") not in d.index:
            continue
        ev, mu = d.loc[(bed, opt, "SP + Everett")], d.loc[(bed, opt, "muP")]
        outcome = ""
        if len(widest):
            row = widest[
                (widest["testbed"] == bed)
                & (widest["optimizer"] == opt)
                & (widest["arm"] == "SP + Everett")
            ]
            if len(row):
                outcome = (
                    f"; at the widest width against SP on fresh seeds: {row['outcome'].iloc[0]}"
                )
        ev_text, mu_text = (
            f"x{r['drift']:.2g} [{r['drift_low']:.2g}, {r['drift_high']:.2g}] (within 2x: "
            f"{_read(r, _within, 2.0)})"
            for r in (ev, mu)
        )
        lines.append(
            f"- **Everett et al.'s SP rates**, {bed} {opt}: optimum drifts {ev_text} against "
            f"muP's {mu_text}{outcome}."
        )
    if len(roles):
        sens = role_sensitivity(roles)
        for (bed, opt), g in sens.groupby(["testbed", "optimizer"], sort=False):
            top = g.sort_values("mean_increase", ascending=False).iloc[0]
            arms = roles[
                (roles["testbed"] == bed)
                & (roles["optimizer"] == opt)
                & (roles["role"] == top["role"])
            ]
            powers = ", ".join(f"{k:+d}" for k in sorted(arms["power"].astype(int)))
            lines.append(
                f"- **Most sensitive role**, {bed} {opt}: {top['role']} (mean test-loss change "
                f"{top['mean_increase']:+.3f} nats over its rate x 2^k, k = {powers}; "
                f"{int(top['worse_arms'])} of {len(arms)} arms worse than uniform); Filatov et al. "
                "report the output layer."
            )
    return "\n".join(lines)


def plot_curves(frame: pd.DataFrame, column: str = "train_loss") -> plt.Figure:
    """Mean ``column`` over seeds against ``log2`` rate, one panel per (testbed, optimizer,
    parametrisation), one line per width (darker = wider); diverged points are left out."""
    panels = list(frame.groupby(["testbed", "optimizer", "parametrisation"], sort=False).groups)
    ncols = len(PARAMETRISATIONS)
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    widths = sorted(frame["width"].unique())
    colours = plt.cm.viridis(np.linspace(0.9, 0.0, len(widths)))
    for ax, keys in zip(axes.flat, panels, strict=False):
        g = frame[
            (
                frame[["testbed", "optimizer", "parametrisation"]]
                == pd.Series(keys, ["testbed", "optimizer", "parametrisation"])
            ).all(axis=1)
        ]
        means = g.groupby(["width", "log2_lr"])[column].mean().reset_index()
        for colour, w in zip(colours, widths, strict=True):
            m = means[means["width"] == w].sort_values("log2_lr")
            if len(m):
                ax.plot(m["log2_lr"], m[column], marker=".", color=colour, label=str(w))
        ax.set_title(f"{keys[0].split('/')[0]} {keys[1]} · {keys[2]}", fontsize=9)
        ax.set_xlabel("log2 base rate")
        ax.set_ylabel(column.replace("_", " "))
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(title="width", fontsize=7)
    fig.tight_layout()
    return fig


def plot_optimum_vs_width(optima: pd.DataFrame) -> plt.Figure:
    """Two rows of panels per (testbed, optimizer): the optimal ``log2`` rate against width
    (hollow: not interior) and the mean loss at the best grid point against width, one line per
    parametrisation."""
    groups = list(optima.groupby(["testbed", "optimizer"], sort=False).groups)
    fig, axes = plt.subplots(
        2, max(1, len(groups)), figsize=(3.6 * max(1, len(groups)), 5.4), squeeze=False
    )
    for j, (bed, opt) in enumerate(groups):
        g = optima[(optima["testbed"] == bed) & (optima["optimizer"] == opt)]
        for p, rows in g.groupby("parametrisation", sort=False):
            rows = rows.sort_values("width")
            line = axes[0, j].plot(rows["width"], rows["log2_opt"], marker="o", label=p)[0]
            hollow = rows[~rows["interior"]]
            axes[0, j].scatter(
                hollow["width"], hollow["log2_opt"], facecolor="white", color=line.get_color()
            )
            axes[1, j].plot(rows["width"], rows["loss_at_opt"], marker="o", label=p)
        for i, label in enumerate(("log2 optimal rate", "train loss at the optimum")):
            axes[i, j].set_xscale("log", base=2)
            axes[i, j].set_xlabel("width")
            axes[i, j].set_ylabel(label)
        axes[0, j].set_title(f"{bed.split('/')[0]} {opt}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig
