"""Per-layer convergence measured inside a training run: representations, weights, resets.

:class:`ConvergenceTracker` keeps checkpoints of one model during training -- at step 0 and
every ``every`` steps, or at given steps such as :func:`log_checkpoints` (dense early, sparse
late) -- and turns them into a JSON-ready record; :func:`convergence_frames` reads such a record
back as tidy frames, and :func:`settling_times` reads each layer's convergence step off them.
Each checkpoint holds

* the output of every layer on one fixed probe batch (for the representation measure), and
* a CPU copy of the model's state dict (for the weight measures and the resets).

From them, with ``t`` a checkpoint, ``T`` the last one and ``||.||`` the Frobenius norm:

* representation convergence, per layer: linear CKA of ``A_l(t)`` to ``A_l(T)`` on the probe
  batch (Kornblith et al. 2019, :func:`~layerwise.probes.linear_cka`), the measure of SVCCA's
  "bottom-up" convergence plot (Raghu, Gilmer, Yosinski, Sohl-Dickstein 2017, NeurIPS,
  arXiv:1706.05806, Fig. 4), and the same normalised by its starting value,
  ``(CKA(t) - CKA(0)) / (1 - CKA(0))`` (:func:`~layerwise.probes.normalise_to_start`), so that a
  layer whose random features already resemble its final ones does not look converged at step 0;
* distance to final, per tensor: ``d(t) = ||w(t) - w(T)|| / ||w(0) - w(T)||`` (1 at step 0, 0
  at the end), the weight-space reading of "which layer converges first" (Chen, Yuille, Zhou
  2023, "Which Layer is Learning Faster?", ICLR);
* relative movement ``||w(t) - w(0)|| / ||w(0)||`` (at ``T``: the layer movement of Zhang,
  Bengio, Singer 2019) and rotation ``1 - cos(w(t), w(0))`` (Carbonnelle & De Vleeschouwer);
* re-initialisation robustness, per layer and checkpoint: the metric of the trained model with
  that one layer reset to its value at the checkpoint (Zhang, Bengio, Singer, "Are All Layers
  Created Equal?", JMLR 2022, arXiv:1902.01996); the checkpoint at step 0 is the paper's
  re-initialisation, the last one the unchanged model; with ``redraw=True`` also their
  re-randomisation robustness: the metric with the layer drawn afresh (its module's
  ``reset_parameters()``, under a seeded generator).

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validate import check_int
from ..layers import _parent, _under, layer_table
from .activations import capture_activations, parameter_owners
from .cka import ConstantRepresentationWarning, cka_to_final, normalise_to_start
from .movement import distance_to_final, layer_rotation, relative_movement
from .reinit import reinit_robustness

__all__ = [
    "FRAMES",
    "ConvergenceTracker",
    "convergence_frames",
    "log_checkpoints",
    "settling_times",
]

FRAMES: tuple[str, ...] = ("cka", "distance", "rotation", "movement", "reinit", "redraw")


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


def log_checkpoints(total: int, points: int) -> list[int]:
    """``points`` distinct checkpoint steps in ``[0, total]``: step 0, the final step ``total``
    and, between them, steps as evenly spaced in ``log(step)`` as whole steps allow -- dense
    early, where layers move most, sparse late.

    The inner steps are the rounded values of ``geomspace(1, total, k)`` with ``k`` the smallest
    count that gives ``points - 1`` distinct steps >= 1 (rounding merges neighbours near 1), so
    when ``total`` allows it there are exactly ``points``; with fewer steps than points every
    step ``0..total`` is a checkpoint.
    """
    check_int("total", total, 1)
    check_int("points", points, 2)
    if points > total:
        return list(range(total + 1))
    for k in range(max(2, points - 1), total + 1):  # k >= 2: the last inner step is ``total``
        inner = sorted({int(round(v)) for v in np.geomspace(1, total, k)})
        if len(inner) >= points - 1:
            break
    return [0, *inner[: points - 2], total] if len(inner) > points - 1 else [0, *inner]


class ConvergenceTracker:
    """Keep checkpoints of ``model`` during training and measure per-layer convergence.

    Args:
        model: the model being trained.
        probe_input: a fixed batch the model accepts (``model(probe_input)``); its first
            ``max_examples`` rows are used for every representation.
        every: keep a checkpoint at every step that is a multiple of this (step 0 included);
            ``None`` with ``at_steps``.
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
        at_steps: keep a checkpoint at exactly these steps instead (e.g.
            :func:`log_checkpoints`); give ``every=None`` then.  ``max_checkpoints`` does not
            apply.
        redraw: also record re-randomisation robustness: the metric with each layer drawn
            afresh by its module's ``reset_parameters()`` (layers whose module has none get
            ``None``), under a generator seeded with ``redraw_seed``.  The draw is the module's
            own initialiser, which is the model's initial distribution unless the model
            re-initialises its layers after building them.

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
        every: int | None,
        evaluate: Callable[[nn.Module], float] | None = None,
        *,
        metric: str = "metric",
        max_examples: int = 512,
        max_checkpoints: int = 30,
        reinit_points: int | None = None,
        debiased: bool = False,
        at_steps: Sequence[int] | None = None,
        redraw: bool = False,
        redraw_seed: int = 0,
    ):
        if (every is None) == (at_steps is None):
            raise ValueError(
                f"give exactly one of every={every!r} and at_steps={at_steps!r}: periodic "
                "checkpoints or checkpoints at given steps"
            )
        if every is not None:
            check_int("every", every, 1)
        else:
            at_steps = sorted({check_int("checkpoint step", int(s), 0) for s in at_steps})
            if not at_steps or at_steps[0] != 0:
                raise ValueError(f"at_steps must include step 0, got {at_steps}")
        check_int("max_examples", max_examples, 1)
        check_int("max_checkpoints", max_checkpoints, 2)
        if reinit_points is not None:
            check_int("reinit_points", reinit_points, 2)
        self.model = model
        self.probe = probe_input[:max_examples]
        self.every = every
        self.stride = every
        self.at_steps = None if at_steps is None else frozenset(at_steps)
        self.redraw = redraw
        self.redraw_seed = redraw_seed
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
        """Keep a checkpoint if ``step`` is one of ``at_steps``, or a multiple of the current
        :attr:`stride`."""
        if self.steps and self.steps[-1] == step:
            return
        if self.at_steps is not None:
            if step in self.at_steps:
                self.checkpoint(step)
            return
        if step % self.stride:
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
                                 "reinit": [...] or None, "redraw": value or None}},
             "params": {name: {"layer", "depth", "distance": [...], "movement": [...],
                               "rotation": [...]}}}

        Every list is aligned with ``"step"``, except ``reinit``, aligned with ``"reinit_step"``
        (all steps, or ``reinit_points`` of them).  ``cka[i]`` is the CKA of the module's output
        at ``step[i]`` to its final output; ``reinit[j]`` the metric of the final model with the
        module reset to its ``reinit_step[j]`` value; ``redraw`` (only with ``redraw=True``) the
        metric of the final model with the module drawn afresh; ``movement[-1]`` is
        ``||w_T - w_0|| / ||w_0||``.
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
        redrawn = self._redrawn() if self.redraw and self.evaluate is not None else {}
        record = {
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
                    **({"redraw": redrawn.get(module)} if self.redraw else {}),
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
        return record

    def _redrawn(self) -> dict[str, float | None]:
        """Re-randomisation robustness: the metric of the final model with each layer that has
        ``reset_parameters()`` drawn afresh (one draw per layer, seeded), others ``None``."""
        named = dict(self.model.named_modules())
        layers = [m for m in self.layers if hasattr(named[m], "reset_parameters")]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.redraw_seed)
            table = reinit_robustness(self.model, [], self.evaluate, layers=layers, mode="redraw")
        return {row.layer: _finite(row.metric) for row in table.itertuples()}


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

    ``record`` is a run record made with ``probe_every`` or ``probe_points`` (or the tracker's
    own dict).  Returns (``None`` values become NaN; ``depth`` and ``order`` are nullable
    integers)

    * ``"cka"``: ``step``, ``layer``, ``depth``, ``order``, ``cka``, ``cka_normalised``
      (:func:`~layerwise.probes.normalise_to_start` of the layer's series);
    * ``"distance"``: ``step``, ``name``, ``layer``, ``depth``, ``distance``;
    * ``"rotation"``: ``step``, ``name``, ``layer``, ``depth``, ``rotation``;
    * ``"movement"``: ``name``, ``layer``, ``depth``, ``movement`` -- the final
      ``||w_T - w_0|| / ||w_0||``;
    * ``"reinit"``: ``layer``, ``depth``, ``checkpoint`` (the step reset to), ``metric``
      (empty when the run had no ``evaluate``);
    * ``"redraw"``: ``layer``, ``depth``, ``metric`` (empty unless the run re-randomised).
    """
    conv = _convergence(record)
    steps = conv["step"]
    reinit_steps = conv.get("reinit_step", steps)
    rows: dict[str, list] = {name: [] for name in FRAMES}
    for layer, info in conv["layers"].items():
        depth = info["depth"]
        if info.get("cka") is not None:
            values = [_nan(v) for v in info["cka"]]
            normalised = normalise_to_start(values)
            for step, value, norm in zip(steps, values, normalised, strict=True):
                rows["cka"].append((step, layer, depth, info["order"], value, norm))
        if info.get("reinit") is not None:
            for step, value in zip(reinit_steps, info["reinit"], strict=True):
                rows["reinit"].append((layer, depth, step, _nan(value)))
        if "redraw" in info:
            rows["redraw"].append((layer, depth, _nan(info["redraw"])))
    for name, info in conv["params"].items():
        layer, depth = info["layer"], info["depth"]
        for column in ("distance", "rotation"):
            for step, value in zip(steps, info[column], strict=True):
                rows[column].append((step, name, layer, depth, _nan(value)))
        rows["movement"].append((name, layer, depth, _nan(info["movement"][-1])))
    columns = {
        "cka": ["step", "layer", "depth", "order", "cka", "cka_normalised"],
        "distance": ["step", "name", "layer", "depth", "distance"],
        "rotation": ["step", "name", "layer", "depth", "rotation"],
        "movement": ["name", "layer", "depth", "movement"],
        "reinit": ["layer", "depth", "checkpoint", "metric"],
        "redraw": ["layer", "depth", "metric"],
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
# when does a layer converge?


def settling_times(
    frame: pd.DataFrame, value: str, threshold: float, *, unit: str, below: bool = False
) -> pd.DataFrame:
    """Per ``unit`` (a layer, a tensor), the step from which ``value`` stays past ``threshold``.

    ``t_u = min{t_i : v(t_j) >= threshold for every checkpoint j >= i}`` (``<`` with
    ``below=True``): the *settling* step, not the first crossing, so a curve that touches the
    threshold and falls back does not count as converged, and a measure that is noisy near its
    end point cannot cross early by chance.  A curve whose last value misses the threshold, or
    with an undefined (NaN) value after its last miss, has no settling step (NaN).  For a
    curve "to final" the last value is the end point itself (CKA 1, distance 0), so every
    defined curve settles by the final checkpoint at the latest.

    ``frame`` has ``step``, ``unit``, ``depth`` and ``value`` columns (one of
    :func:`convergence_frames`' frames).  Returns ``unit``, ``depth`` and ``step`` in order of
    first appearance.
    """
    for column in ("step", unit, "depth", value):
        if column not in frame:
            raise ValueError(f"frame has no {column!r} column; columns: {list(frame.columns)}")
    rows = []
    for name, curve in frame.groupby(unit, sort=False):
        curve = curve.sort_values("step")
        v = curve[value].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            ok = v < threshold if below else v >= threshold
        misses = np.flatnonzero(~ok)  # NaN counts as a miss
        first = 0 if misses.size == 0 else misses[-1] + 1
        step = float(curve["step"].iloc[first]) if first < len(v) else math.nan
        rows.append((name, curve["depth"].iloc[0], step))
    out = pd.DataFrame(rows, columns=["unit", "depth", "step"])
    out["depth"] = out["depth"].astype("Int64")
    return out
