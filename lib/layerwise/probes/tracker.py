"""Per-layer convergence measured inside a training run: representations, weights, resets.

:class:`ConvergenceTracker` keeps checkpoints of one model during training -- at step 0 and
every ``every`` steps -- and turns them into a JSON-ready record; :func:`convergence_frames`
reads such a record back as tidy frames, and :func:`bottom_up` / :func:`bottom_up_runs` test
whether convergence time grows with depth.  Each checkpoint holds

* the output of every layer on one fixed probe batch (for the representation measure), and
* a CPU copy of the model's state dict (for the weight measures and the resets).

From them, with ``t`` a checkpoint, ``T`` the last one and ``||.||`` the Frobenius norm:

* representation convergence, per layer: linear CKA of ``A_l(t)`` to ``A_l(T)`` on the probe
  batch (Kornblith et al. 2019, :func:`~layerwise.probes.linear_cka`), the measure of SVCCA's
  "bottom-up" convergence plot (Raghu, Gilmer, Yosinski, Sohl-Dickstein 2017, NeurIPS,
  arXiv:1706.05806, Fig. 4): the first ``t`` with CKA >= 0.9 is the layer's convergence step;
* distance to final, per tensor: ``d(t) = ||w(t) - w(T)|| / ||w(0) - w(T)||`` (1 at step 0, 0
  at the end), whose first ``t`` with ``d(t) < 0.1`` orders layers in Chen, Yuille, Zhou (2023,
  "Which Layer is Learning Faster?", ICLR), who find shallow layers converge first;
* relative movement ``||w(t) - w(0)|| / ||w(0)||`` (at ``T``: the layer movement of Zhang,
  Bengio, Singer 2019) and rotation ``1 - cos(w(t), w(0))`` (Carbonnelle & De Vleeschouwer);
* re-initialisation robustness, per layer and checkpoint: the metric of the trained model with
  that one layer reset to its value at the checkpoint (Zhang, Bengio, Singer, "Are All Layers
  Created Equal?", JMLR 2022, arXiv:1902.01996); the checkpoint at step 0 is the paper's
  re-initialisation, the last one the unchanged model.

Depth (0 = nearest the input) is :func:`layerwise.layers.layer_table`'s with
``granularity="layer"`` (one depth per layer, not per block), traced on the probe batch.
Undefined values -- a 0/0 ratio, a constant representation, a non-finite result -- are ``None``
in the record and NaN in the frames, without a warning.

Memory: a representation of ``p`` features on ``n`` probe examples is stored as float32; when
``p > n`` it is replaced by an ``n x n`` factor ``Z`` of its centred Gram matrix
(``Z Z^T = X_c X_c^T``, from an eigendecomposition).  Linear CKA depends on the features only
through that Gram matrix (``||Y_c^T X_c||_F^2 = <X_c X_c^T, Y_c Y_c^T>_F``), so the stored
factor gives the same CKA, and each layer costs at most ``n * min(n, p)`` floats per checkpoint.
The number of checkpoints is bounded by ``max_checkpoints`` (see :class:`ConvergenceTracker`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validate import check_choice, check_int
from ..layers import _parent, _under, layer_table
from .activations import capture_activations, parameter_owners
from .cka import ConstantRepresentationWarning, cka_to_final, convergence_step
from .movement import distance_to_final, layer_rotation, relative_movement
from .reinit import reinit_robustness

__all__ = [
    "FRAMES",
    "ConvergenceTracker",
    "bottom_up",
    "bottom_up_runs",
    "convergence_frames",
    "convergence_times",
]

FRAMES: tuple[str, ...] = ("cka", "distance", "rotation", "movement", "reinit")

CKA_THRESHOLD = (
    0.9  # Raghu et al. 2017 as set up in the study plan (docs/references.md#measure-cka)
)
DISTANCE_THRESHOLD = (
    0.1  # Chen et al. 2023 as set up in the study plan (docs/references.md#measure-distance)
)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _compact(output: torch.Tensor, n: int) -> torch.Tensor:
    """A float32 CPU tensor with the same linear CKA as ``output`` against any representation.

    ``output`` (``n`` examples, ``p`` features after flattening) is returned as is when
    ``p <= n``; otherwise as ``Z = V sqrt(L)`` (``n x n``) from ``X_c X_c^T = V L V^T``, so that
    ``Z Z^T`` is the centred Gram matrix and ``Z`` is itself centred.
    """
    x = output.detach().reshape(n, -1)
    if x.shape[1] <= n:
        return x.to("cpu", torch.float32, copy=True)
    x = x.to(torch.float64)
    x = x - x.mean(dim=0)
    values, vectors = torch.linalg.eigh(x @ x.T)
    return (vectors * values.clamp_min(0).sqrt()).to("cpu", torch.float32)


def _spread(n: int, points: int | None) -> list[int]:
    """Indices of ``points`` of ``n`` checkpoints: 0, ``n - 1`` and, in between, the indices
    nearest to a geometric sequence from 1 to ``n - 1`` (all ``n`` when ``points`` is ``None``
    or at least ``n``)."""
    if points is None or points >= n:
        return list(range(n))
    inner = np.geomspace(1, n - 1, points - 1)
    chosen = sorted({0, n - 1, *(int(round(v)) for v in inner)})
    return chosen


class ConvergenceTracker:
    """Keep checkpoints of ``model`` during training and measure per-layer convergence.

    Args:
        model: the model being trained.
        probe_input: a fixed batch the model accepts (``model(probe_input)``); its first
            ``max_examples`` rows are used for every representation.
        every: keep a checkpoint at every step that is a multiple of this (step 0 included).
        evaluate: ``evaluate(model) -> float``, e.g. validation accuracy; when given,
            :meth:`to_record` adds the re-initialisation robustness table.
        metric: the name under which ``evaluate``'s values are recorded.
        max_examples: cap on the probe examples.
        max_checkpoints: cap on the checkpoints kept, the final one included.  When the periodic
            checkpoints would exceed ``max_checkpoints - 1``, the interval doubles and the
            checkpoints off the new grid are dropped (step 0 always stays), so the kept steps are
            always 0 and the multiples of :attr:`stride`, plus the final step.
        reinit_points: cap on the checkpoints the robustness table resets to (``None``: all).
            One evaluation per layer and checkpoint can cost more than the training itself, so
            a cap keeps step 0, the final checkpoint and the checkpoints nearest to
            geometrically spaced indices in between -- dense early, as the epochs
            {0, 1, 2, 5, 10, 20} of Zhang, Bengio, Singer.
        debiased: use the debiased CKA estimator (see :func:`~layerwise.probes.linear_cka`).

    The training loop calls :meth:`observe` at step 0 (before training) and after every
    optimizer step, then :meth:`to_record` once training is over::

        tracker = ConvergenceTracker(model, x_val[:512], every=50, evaluate=val_acc)
        tracker.observe(0)
        for step in range(1, steps + 1):
            ...; optimizer.step()
            tracker.observe(step)
        record = tracker.to_record(steps)

    Representations are taken in eval mode without autograd (``capture_activations``), and
    the depth trace forks the random stream, so tracking changes neither the training
    trajectory nor the random numbers it draws.  The CKA is computed for every module that
    owns parameters except containers holding loose parameters (such as a model root that owns
    a position embedding): their output is not one layer's representation.  The resets cover
    every module that owns parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        probe_input: torch.Tensor,
        every: int,
        evaluate: Callable[[nn.Module], float] | None = None,
        *,
        metric: str = "metric",
        max_examples: int = 512,
        max_checkpoints: int = 30,
        reinit_points: int | None = None,
        debiased: bool = False,
    ):
        check_int("every", every, 1)
        check_int("max_examples", max_examples, 1)
        check_int("max_checkpoints", max_checkpoints, 2)
        if reinit_points is not None:
            check_int("reinit_points", reinit_points, 2)
        self.model = model
        self.probe = probe_input[:max_examples]
        self.every = every
        self.stride = every
        self.evaluate = evaluate
        self.metric = metric
        self.max_checkpoints = max_checkpoints
        self.reinit_points = reinit_points
        self.debiased = debiased
        self.steps: list[int] = []
        self._activations: list[dict[str, torch.Tensor]] = []
        self._states: list[dict[str, torch.Tensor]] = []

        owners = list(parameter_owners(model))
        self.layers: list[str] = owners  # modules reset by the robustness table
        self.cka_layers: list[str] = [
            m for m in owners if not any(o != m and _under(o, m) for o in owners)
        ]
        self.params: list[str] = [
            name for name, p in model.named_parameters() if torch.is_floating_point(p)
        ]
        self.param_layer = {name: _parent(name) for name in self.params}
        self.param_depth, self.layer_depth = self._depths()
        self.order: dict[str, int] = {}  # forward order of the CKA layers, from step 0

    def _depths(self) -> tuple[dict[str, int | None], dict[str, int | None]]:
        """Depth per parameter (``layer_table``) and per module (least depth of the tensors
        registered under it); ``None`` for frozen tensors and for a module holding only a
        tensor registered elsewhere (a tied output weight)."""
        table = layer_table(self.model, self.probe[:2], granularity="layer")
        param_depth: dict[str, int | None] = dict.fromkeys(self.params)
        param_depth.update({row.name: int(row.depth) for row in table.itertuples()})
        layer_depth: dict[str, int | None] = {}
        for module in self.layers:
            depths = [d for n, d in param_depth.items() if d is not None and _parent(n) == module]
            layer_depth[module] = min(depths) if depths else None
        return param_depth, layer_depth

    # ---------------------------------------------------------------------------------------
    # during training

    def observe(self, step: int) -> None:
        """Keep a checkpoint if ``step`` is a multiple of the current :attr:`stride`."""
        if step % self.stride or (self.steps and self.steps[-1] == step):
            return
        self.checkpoint(step)
        while len(self.steps) > self.max_checkpoints - 1:
            self.stride *= 2
            keep = [i for i, s in enumerate(self.steps) if s % self.stride == 0]
            self.steps = [self.steps[i] for i in keep]
            self._activations = [self._activations[i] for i in keep]
            self._states = [self._states[i] for i in keep]

    def checkpoint(self, step: int) -> None:
        """Keep a checkpoint of the model as it is now, labelled ``step`` (no interval check)."""
        if self.steps and step <= self.steps[-1]:
            raise ValueError(f"checkpoint step {step} is not after the last one ({self.steps[-1]})")
        n = self.probe.shape[0]
        outputs = capture_activations(self.model, self.probe, self.cka_layers)
        if not self.order:
            self.order = {name: i for i, name in enumerate(outputs)}
        self._activations.append({name: _compact(out, n) for name, out in outputs.items()})
        copies: dict[int, torch.Tensor] = {}  # a tied tensor is copied once
        state = {}
        for name, tensor in self.model.state_dict(keep_vars=True).items():
            if id(tensor) not in copies:
                copies[id(tensor)] = tensor.detach().to("cpu", copy=True)
            state[name] = copies[id(tensor)]
        self._states.append(state)
        self.steps.append(step)

    # ---------------------------------------------------------------------------------------
    # the record

    def to_record(self, final_step: int) -> dict[str, Any]:
        """Measure convergence to the model as it is now and return a JSON-ready dict.

        Call it right after the last step: the model's current state is the final checkpoint,
        added as ``final_step`` unless that step was already kept.  Returns::

            {"every": k, "stride": s, "examples": n, "metric": name or None,
             "step": [0, ..., final_step], "reinit_step": [0, ..., final_step],
             "layers": {module: {"depth", "order", "cka": [...] or None,
                                 "reinit": [...] or None}},
             "params": {name: {"layer", "depth", "distance": [...], "movement": [...],
                               "rotation": [...]}}}

        Every list is aligned with ``"step"``, except ``reinit``, aligned with ``"reinit_step"``
        (all steps, or ``reinit_points`` of them).  ``cka[i]`` is the CKA of the module's output
        at ``step[i]`` to its final output; ``reinit[j]`` the metric of the final model with the
        module reset to its ``reinit_step[j]`` value; ``movement[-1]`` is ``||w_T - w_0|| / ||w_0||``.
        """
        if not self.steps or self.steps[-1] != final_step:
            self.checkpoint(final_step)
        steps = list(self.steps)

        with warnings.catch_warnings():  # a constant representation is recorded as None
            warnings.simplefilter("ignore", ConstantRepresentationWarning)
            cka = cka_to_final(self._activations, steps, self.debiased)
        cka_series = {layer: [_finite(v) for v in g["cka"]] for layer, g in cka.groupby("layer")}
        weights = [{n: state[n] for n in self.params} for state in self._states]
        per_param: dict[str, dict[str, list]] = {n: {} for n in self.params}
        for column, measure in (
            ("distance", distance_to_final),
            ("movement", relative_movement),
            ("rotation", layer_rotation),
        ):
            frame = measure(weights, steps)
            for name, group in frame.groupby("name"):
                per_param[name][column] = [_finite(v) for v in group[column]]
        reinit: dict[str, list] = {}
        chosen = _spread(len(steps), self.reinit_points)
        if self.evaluate is not None:
            table = reinit_robustness(
                self.model,
                [self._states[i] for i in chosen],
                self.evaluate,
                layers=self.layers,
                steps=[steps[i] for i in chosen],
            )
            reinit = {
                layer: [_finite(v) for v in group["metric"]]
                for layer, group in table.groupby("layer")
            }
        return {
            "every": self.every,
            "stride": self.stride,
            "examples": int(self.probe.shape[0]),
            "metric": self.metric if self.evaluate is not None else None,
            "step": steps,
            "reinit_step": [steps[i] for i in chosen],
            "layers": {
                module: {
                    "depth": self.layer_depth[module],
                    "order": self.order.get(module),
                    "cka": cka_series.get(module),
                    "reinit": reinit.get(module),
                }
                for module in self.layers
            },
            "params": {
                name: {
                    "layer": self.param_layer[name],
                    "depth": self.param_depth[name],
                    **{c: per_param[name].get(c) for c in ("distance", "movement", "rotation")},
                }
                for name in self.params
            },
        }


# --------------------------------------------------------------------------------------------
# reading records


def _convergence(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The tracker's dict, from a run record (``record["convergence"]``) or the dict itself."""
    if "convergence" in record:
        if record["convergence"] is None:
            raise ValueError("this run record has no convergence measurements")
        return record["convergence"]
    if "step" not in record or "layers" not in record:
        raise ValueError(
            "not a convergence record: expected a run record with probe_every set, or "
            "ConvergenceTracker.to_record()'s dict"
        )
    return record


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def convergence_frames(record: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Tidy frames of a run's convergence measurements.

    ``record`` is a run record made with ``probe_every`` (or the tracker's own dict).  Returns
    (``None`` values become NaN; ``depth`` and ``order`` are nullable integers)

    * ``"cka"``: ``step``, ``layer``, ``depth``, ``order``, ``cka``;
    * ``"distance"``: ``step``, ``name``, ``layer``, ``depth``, ``distance``;
    * ``"rotation"``: ``step``, ``name``, ``layer``, ``depth``, ``rotation``;
    * ``"movement"``: ``name``, ``layer``, ``depth``, ``movement`` -- the final
      ``||w_T - w_0|| / ||w_0||``;
    * ``"reinit"``: ``layer``, ``depth``, ``checkpoint`` (the step reset to), ``metric``
      (empty when the run had no ``evaluate``).
    """
    conv = _convergence(record)
    steps = conv["step"]
    reinit_steps = conv.get("reinit_step", steps)
    rows: dict[str, list] = {name: [] for name in FRAMES}
    for layer, info in conv["layers"].items():
        depth = info["depth"]
        if info.get("cka") is not None:
            for step, value in zip(steps, info["cka"], strict=True):
                rows["cka"].append((step, layer, depth, info["order"], _nan(value)))
        if info.get("reinit") is not None:
            for step, value in zip(reinit_steps, info["reinit"], strict=True):
                rows["reinit"].append((layer, depth, step, _nan(value)))
    for name, info in conv["params"].items():
        layer, depth = info["layer"], info["depth"]
        for column in ("distance", "rotation"):
            for step, value in zip(steps, info[column], strict=True):
                rows[column].append((step, name, layer, depth, _nan(value)))
        rows["movement"].append((name, layer, depth, _nan(info["movement"][-1])))
    columns = {
        "cka": ["step", "layer", "depth", "order", "cka"],
        "distance": ["step", "name", "layer", "depth", "distance"],
        "rotation": ["step", "name", "layer", "depth", "rotation"],
        "movement": ["name", "layer", "depth", "movement"],
        "reinit": ["layer", "depth", "checkpoint", "metric"],
    }
    frames = {}
    for name in FRAMES:
        frame = pd.DataFrame(rows[name], columns=columns[name])
        for column in ("depth", "order"):
            if column in frame:
                frame[column] = frame[column].astype("Int64")
        frames[name] = frame
    return frames


# --------------------------------------------------------------------------------------------
# the bottom-up claim


def convergence_times(
    frame: pd.DataFrame, threshold: float | None = None, by: str = "depth"
) -> pd.DataFrame:
    """Per layer (CKA frame) or tensor (distance frame), its depth and convergence step.

    For a ``"cka"`` frame: the first step with CKA >= ``threshold`` (default 0.9; Raghu et al.
    2017, via :func:`~layerwise.probes.convergence_step`).  For a ``"distance"`` frame: the first
    step with ``||w(t) - w(T)|| / ||w(0) - w(T)|| < threshold`` (default 0.1; Chen et al. 2023).
    ``by`` names the depth column (``"depth"``, or ``"order"`` for a CKA frame).  Returns
    columns ``unit`` (layer or tensor name), ``by`` and ``step`` (NaN: never reached, or
    undefined).
    """
    if "cka" in frame:
        threshold = CKA_THRESHOLD if threshold is None else threshold
        steps = convergence_step(frame[["step", "layer", "cka"]], threshold)
        unit = "layer"
    elif "distance" in frame:
        threshold = DISTANCE_THRESHOLD if threshold is None else threshold
        unit = "name"
        units = frame[unit].drop_duplicates()
        reached = frame[frame["distance"] < threshold].groupby(unit, sort=False)["step"].min()
        steps = reached.reindex(units)
    else:
        raise ValueError(f"expected a 'cka' or 'distance' frame, got columns {list(frame)}")
    check_choice("by", by, [c for c in ("depth", "order") if c in frame])
    depth = frame.drop_duplicates(unit).set_index(unit)[by]
    return pd.DataFrame(
        {
            "unit": steps.index,
            by: depth.reindex(steps.index).to_numpy(),
            "step": steps.to_numpy(dtype=float),
        }
    )


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation: Pearson correlation of the average-tie ranks."""
    rx = pd.Series(x, dtype=float).rank(method="average").to_numpy()
    ry = pd.Series(y, dtype=float).rank(method="average").to_numpy()
    if len(rx) < 2:
        return None
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(np.dot(rx, rx)) * float(np.dot(ry, ry)))
    return float(np.dot(rx, ry)) / den if den > 0 else None


def _non_decreasing(depth: Sequence[float], step: Sequence[float]) -> bool:
    """True when no layer converges later than any deeper layer (ties in depth allowed)."""
    times = pd.DataFrame({"depth": depth, "step": step})
    frame = times.groupby("depth")["step"].agg(["min", "max"])
    earlier = frame["max"].cummax().shift(1)  # latest convergence among shallower depths
    return bool((earlier.isna() | (earlier <= frame["min"])).all())


def bottom_up(
    frame: pd.DataFrame, threshold: float | None = None, by: str = "depth"
) -> dict[str, Any]:
    """Does convergence time grow with depth?  One run's ``"cka"`` (or ``"distance"``) frame.

    With ``t_l`` the convergence step of :func:`convergence_times`, over the layers that have
    both a depth and a ``t_l``, returns

    * ``spearman``: Spearman's rank correlation between depth and ``t_l`` (ties get average
      ranks), ``rho = cov(r(depth), r(t)) / (sd(r(depth)) sd(r(t)))``; ``None`` when fewer than
      two layers or either variable is constant; > 0 means deeper layers converge later;
    * ``non_decreasing``: ``t_l`` never decreases with depth -- every layer converges no later
      than every deeper one, the bottom-up criterion of Raghu et al. (2017) as set in the study
      plan; ``None`` when fewer than two layers;
    * ``layers``: how many layers entered.
    """
    times = convergence_times(frame, threshold, by).dropna(subset=[by, "step"])
    depth = times[by].astype(float).to_numpy()
    step = times["step"].to_numpy()
    enough = len(times) >= 2
    return {
        "spearman": _spearman(depth, step) if enough else None,
        "non_decreasing": _non_decreasing(depth, step) if enough else None,
        "layers": len(times),
    }


def bottom_up_runs(
    records: Iterable[Mapping[str, Any]],
    threshold: float | None = None,
    by: str = "depth",
    measure: str = "cka",
) -> pd.DataFrame:
    """:func:`bottom_up` for every run record that has convergence measurements.

    ``measure`` is ``"cka"`` (representations) or ``"distance"`` (weights).  One row per run:
    ``key``, ``dataset``, ``model``, ``optimizer``, ``lr``, ``seed``, ``spearman``,
    ``non_decreasing``, ``layers``.  Runs without ``"convergence"`` are skipped.
    """
    check_choice("measure", measure, ("cka", "distance"))
    rows = []
    for record in records:
        if record.get("convergence") is None:
            continue
        config = record.get("config", {})
        result = bottom_up(convergence_frames(record)[measure], threshold, by)
        rows.append(
            {
                "key": record.get("key"),
                **{k: config.get(k) for k in ("dataset", "model", "optimizer", "lr", "seed")},
                **result,
            }
        )
    columns = ["key", "dataset", "model", "optimizer", "lr", "seed", "spearman"]
    return pd.DataFrame(rows, columns=[*columns, "non_decreasing", "layers"])
