"""One training run: ``run(config) -> record`` (``train(config) -> (record, model)``).

The record is a JSON-serialisable dict: the config, metric curves, final validation and test
metrics, status (``"ok"`` or ``"diverged"`` with the step), wall time and environment.  A run
that diverges -- a non-finite training loss, or one above ``diverge_factor`` times the first, or
a non-finite validation loss after an update -- stops early and is recorded, never raised: a
diverged learning rate is a result.

With ``config.monitor_every`` the record also holds per-tensor training statistics
(``record["layers"]``, ``probes.Monitor``); with ``config.probe_every`` or ``config.probe_points`` it holds per-layer
convergence measurements (``record["convergence"]``, ``probes.ConvergenceTracker``: CKA to the
final representation, distance to the final weights, movement, rotation and re-initialisation
robustness), read back with ``probes.convergence_frames``.

A config with ``init_from`` starts from the final weights of that pretraining run, passed in as
``initial_state`` (``harness.pretraining.initial_state(config)`` reads or trains them;
``transfer.load_pretrained`` loads them, its ``reinit`` modules keeping their fresh seeded
initialisation), and with ``config.unfreeze_every`` the lower depths stay frozen until their
turn (``transfer.GradualUnfreezing``): ULMFiT's fine-tuning controls (Howard & Ruder 2018).
This module never trains a pretraining run itself, so ``pretraining`` is the only one of the
two that imports the other.

With ``config.freezeout`` the depths stop training one after another (``freezeout.FreezeOut``;
Brock et al. 2017, or Raghu et al. 2017's freeze training with ``anneal=False``): a stopped
depth's parameters get ``requires_grad=False``, so autograd skips their part of the backward
pass from the next step on.  ``record["step_time_s"]`` is the time spent in the training steps
(the loop without its evaluations), the cost that freezing cuts.

``config.device`` (``"cpu"`` by default; ``"cuda"``, ``"cuda:<index>"``, ``"mps"``) is where the
model and the data splits live while the run trains.  The model is built and seeded on the CPU
first, so every device starts from the same weights; the data order is drawn on the CPU too.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import groups, optim, schedules, transfer
from ..freezeout import FreezeOut
from ..probes import ConvergenceTracker, Monitor, log_checkpoints
from . import data, models
from .config import FORMAT_VERSION, RunConfig

__all__ = [
    "EVAL_BATCH",
    "EVAL_TOKENS",
    "CURVE_EVAL_WINDOWS",
    "eval_batch_size",
    "evaluate",
    "run",
    "steps_per_epoch",
    "train",
]

# examples per forward pass when evaluating, and at most this many tokens for token sequences:
# larger batches only make the activations outgrow the cache (``bench/eval_batch.py``)
EVAL_BATCH = 256
EVAL_TOKENS = 4096
REINIT_POINTS = 8  # checkpoints the re-initialisation table resets each layer to
REINIT_EXAMPLES = 1000  # validation examples per re-initialisation evaluation (not text)
CURVE_EVAL_WINDOWS = 256  # text windows used for the validation curve (the final metric uses all)
BATCH_SEED_OFFSET = 1_000_003  # the data order's generator is seeded with seed + this
# re-randomisation draws from seed + this: the run's own seed would redraw the initial weights
REDRAW_SEED_OFFSET = 2_000_003

State = Mapping[str, torch.Tensor]


def steps_per_epoch(config: RunConfig, dataset: data.Dataset) -> int:
    """Optimizer steps in one pass over the training split (text: characters / tokens per step)."""
    per_step = config.batch_size * (config.block if dataset.spec.task == "language" else 1)
    return max(1, len(dataset.train) // per_step)


def total_steps(config: RunConfig, dataset: data.Dataset) -> int:
    """The run's budget in optimizer steps (``steps``, or ``epochs`` times an epoch's steps)."""
    if config.steps is not None:
        return int(config.steps)
    return max(1, round(float(config.epochs) * steps_per_epoch(config, dataset)))


# --------------------------------------------------------------------------------------------
# batches


def _classification_batches(
    split: data.Split, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled mini-batches, a fresh permutation per epoch; a short last batch is dropped."""
    n = len(split)
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            yield split.x[idx], split.y[idx]


def _text_batches(
    split: data.TextSplit, batch_size: int, block: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches of random windows (nanoGPT's sampling): inputs and next characters."""
    offsets = torch.arange(block + 1)
    while True:
        starts = torch.randint(len(split) - block - 1, (batch_size,), generator=generator)
        window = split.tokens[starts[:, None] + offsets]
        yield window[:, :-1], window[:, 1:]


def _text_windows(split: data.TextSplit, block: int, limit: int | None) -> data.Split:
    """Non-overlapping evaluation windows, evenly spread when ``limit`` caps their number."""
    n = (len(split) - 1) // block
    starts = torch.arange(n) * block
    if limit is not None and n > limit:
        starts = starts[torch.linspace(0, n - 1, limit).long()]
    offsets = torch.arange(block + 1)
    window = split.tokens[starts[:, None] + offsets]
    return data.Split(window[:, :-1], window[:, 1:])


# --------------------------------------------------------------------------------------------
# evaluation


def _loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction=reduction)


def eval_batch_size(x: torch.Tensor) -> int:
    """Examples per evaluation forward pass for inputs like ``x``: :data:`EVAL_BATCH`, or fewer
    when the examples are token sequences (integer rows), so that a pass reads at most
    :data:`EVAL_TOKENS` tokens."""
    if x.is_floating_point() or x.dim() < 2:
        return EVAL_BATCH
    return max(1, min(EVAL_BATCH, EVAL_TOKENS // x[0].numel()))


def evaluate(model: nn.Module, split: data.Split) -> dict[str, float]:
    """Mean cross-entropy (nats) and accuracy over a split, in batches of
    :func:`eval_batch_size`, no autograd."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    step = eval_batch_size(split.x)
    with torch.inference_mode():
        for start in range(0, len(split), step):
            x, y = split.x[start : start + step], split.y[start : start + step]
            logits = model(x)
            total_loss += _loss(logits, y, "sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += y.numel()
    model.train(was_training)
    return {"loss": total_loss / count, "acc": correct / count}


# --------------------------------------------------------------------------------------------
# the steps of a run


@dataclasses.dataclass(frozen=True)
class _Feed:
    """What a run reads: endless training batches and the evaluation splits."""

    language: bool
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    val_curve: data.Split  # evaluated every ``eval_every`` steps (text: evenly spread windows)
    val_full: data.Split
    test_full: data.Split
    extra: dict[str, data.Split] = dataclasses.field(default_factory=dict)  # named extra splits


def _dataset(config: RunConfig, dataset: data.Dataset | None) -> data.Dataset:
    """``config``'s dataset: loaded, or the one passed in after checking that it is the same."""
    if dataset is None:
        return data.load(config.dataset, **config.data_options)
    if dataset.name != config.dataset:
        raise ValueError(f"dataset {dataset.name!r} passed for a {config.dataset!r} config")
    return dataset


def _device(config: RunConfig) -> torch.device:
    """``config.device``, refused at once (naming what is missing) when it is not available."""
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"the run asks for device {config.device!r} but torch.cuda.is_available() is False "
            "(no GPU, or a CPU-only build of torch); use device='cpu'"
        )
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"the run asks for device {config.device!r} but only "
                f"{torch.cuda.device_count()} GPU(s) are visible"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"the run asks for device {config.device!r} but MPS is not available")
    return device


def _on_device(dataset: data.Dataset, device: torch.device) -> data.Dataset:
    """``dataset`` with every split on ``device`` (the dataset itself on the CPU: loaded
    datasets are cached and shared, so they are copied, never changed)."""
    if device.type == "cpu":
        return dataset

    def move(split: data.Split | data.TextSplit) -> data.Split | data.TextSplit:
        if isinstance(split, data.TextSplit):
            return data.TextSplit(split.tokens.to(device))
        return data.Split(split.x.to(device), split.y.to(device))

    return dataclasses.replace(
        dataset,
        train=move(dataset.train),
        val=move(dataset.val),
        test=move(dataset.test),
        extra={name: move(split) for name, split in dataset.extra.items()},
    )


def _model(config: RunConfig, dataset: data.Dataset, initial_state: State | None) -> nn.Module:
    """The seeded model, with the pretrained weights loaded when the config has ``init_from``."""
    if (initial_state is None) != (config.init_from is None):
        raise ValueError(
            "initial_state must be given exactly when the config has init_from "
            f"(init_from is {'set' if config.init_from else 'None'}, initial_state is "
            f"{'None' if initial_state is None else 'given'}); "
            "harness.pretraining.initial_state(config) gives it"
        )
    torch.manual_seed(config.seed)
    model = models.build(config.model, dataset.spec, **config.model_options)
    if initial_state is not None:
        transfer.load_pretrained(model, initial_state, config.reinit)
    return model.to(config.device)


def _feed(config: RunConfig, dataset: data.Dataset) -> _Feed:
    """Training batches in the seeded data order, and the evaluation splits."""
    generator = torch.Generator().manual_seed(config.seed + BATCH_SEED_OFFSET)
    if dataset.spec.task != "language":
        batches = _classification_batches(dataset.train, config.batch_size, generator)
        return _Feed(False, batches, dataset.val, dataset.val, dataset.test, dict(dataset.extra))
    return _Feed(
        True,
        _text_batches(dataset.train, config.batch_size, config.block, generator),
        _text_windows(dataset.val, config.block, CURVE_EVAL_WINDOWS),
        _text_windows(dataset.val, config.block, None),
        _text_windows(dataset.test, config.block, None),
    )


def _optimizer(config: RunConfig, model: nn.Module, example: torch.Tensor) -> torch.optim.Optimizer:
    """The optimizer over one group of every trainable tensor, or one group per layer with the
    config's rule (which then carries ``weight_decay`` in each group)."""
    options = dict(config.optimizer_options)
    if config.rule is None:
        params: list[Any] = [p for p in model.parameters() if p.requires_grad]
    else:
        params = groups.param_groups(
            model,
            config.lr,
            groups.rule_from_spec(dict(config.rule)),
            example_input=example,
            weight_decay=options.pop("weight_decay", 0.0),
        )
    return optim.build(config.optimizer, params, config.lr, **options)


def _scheduler(
    config: RunConfig, optimizer: torch.optim.Optimizer, n_steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The config's schedule, or ``None`` for a constant rate without warmup (a multiplier of 1
    at every step: LambdaLR's per-step cost is skipped) or when FreezeOut's per-depth
    schedules replace it (:func:`_freezing`)."""
    if config.schedule == "constant" and not config.schedule_options.get("warmup"):
        return None
    if config.freezeout is not None and config.freezeout["anneal"]:
        return None
    return schedules.build(config.schedule, optimizer, n_steps, **config.schedule_options)


def _freezing(
    config: RunConfig, optimizer: torch.optim.Optimizer, n_steps: int
) -> FreezeOut | None:
    """The config's progressive freezing, ``None`` without ``freezeout``.  Annealed (FreezeOut),
    each depth warms up as the run's cosine schedule does, then anneals to zero at its stop."""
    if config.freezeout is None:
        return None
    options = config.freezeout
    return FreezeOut(
        optimizer,
        n_steps,
        t_0=options["t_0"],
        spacing=options["spacing"],
        scaled=options["scaled"],
        warmup=config.schedule_options.get("warmup", 0) if options["anneal"] else 0,
        anneal=options["anneal"],
    )


def _tracker(
    model: nn.Module, config: RunConfig, feed: _Feed, n_steps: int
) -> ConvergenceTracker | None:
    """The run's ``probes.ConvergenceTracker``, or ``None`` when neither ``probe_every`` nor
    ``probe_points`` is set.

    ``probe_points``: checkpoints at ``probes.log_checkpoints(n_steps, probe_points)``, the
    re-initialisation table at every one of them, and re-randomisation (seeded with the run's
    seed plus ``REDRAW_SEED_OFFSET``: the run's own seed would draw the initial weights again)
    -- for classifiers only: a language model has a few dozen modules, and one
    evaluation per module and checkpoint would cost more than its training.  ``probe_every``:
    a checkpoint every that many steps, the table at ``REINIT_POINTS`` of them.

    Probe batch: the first ``probe_examples`` validation examples (text: the first validation
    windows).  Re-initialisation metric, at ``REINIT_POINTS`` of the checkpoints: validation
    accuracy on the first ``REINIT_EXAMPLES`` validation examples for classification, minus the
    validation loss on every fourth of the validation curve's evenly spread windows for text
    (64 windows of ``block`` characters) -- both bound the cost of one evaluation per layer and
    checkpoint.
    """
    if not (config.probe_every or config.probe_points):
        return None
    if feed.language:
        metric, split = "neg_val_loss", data.Split(feed.val_curve.x[::4], feed.val_curve.y[::4])

        def score(m: nn.Module) -> float:
            return -evaluate(m, split)["loss"]
    else:
        metric = "val_acc"
        split = data.Split(feed.val_full.x[:REINIT_EXAMPLES], feed.val_full.y[:REINIT_EXAMPLES])

        def score(m: nn.Module) -> float:
            return evaluate(m, split)["acc"]

    logspaced = config.probe_points is not None
    robustness = not (logspaced and feed.language)
    return ConvergenceTracker(
        model,
        feed.val_full.x[: config.probe_examples],
        None if logspaced else config.probe_every,
        score if robustness else None,
        metric=metric,
        max_examples=config.probe_examples,
        reinit_points=None if logspaced else REINIT_POINTS,
        at_steps=log_checkpoints(n_steps, config.probe_points) if logspaced else None,
        redraw=logspaced and robustness,
        redraw_seed=config.seed + REDRAW_SEED_OFFSET,
    )


def _final_metrics(
    model: nn.Module, feed: _Feed, ok: bool, last_val: dict[str, float] | None = None
) -> dict[str, float | None]:
    """Loss and accuracy on the full validation and test splits and on the dataset's named
    extra splits (``<name>_loss``, ``<name>_acc``; ``None`` everywhere after divergence).
    ``last_val``: the curve's evaluation of the final model, reused when the curve reads the
    full validation split (a classifier's), instead of evaluating it again."""
    splits = {"val": feed.val_full, "test": feed.test_full, **feed.extra}
    known = {"val": last_val} if last_val is not None and feed.val_curve is feed.val_full else {}
    final: dict[str, float | None] = {}
    for name, split in splits.items():
        if not ok:
            result: dict[str, float | None] = {"loss": None, "acc": None}
        else:
            result = known.get(name) or evaluate(model, split)
        final.update({f"{name}_loss": result["loss"], f"{name}_acc": result["acc"]})
    return final


def _environment(threads: int, device: str = "cpu") -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "device": device,
        "machine": platform.machine(),
    }


# --------------------------------------------------------------------------------------------
# the run


def run(
    config: RunConfig,
    *,
    initial_state: State | None = None,
    progress: bool = False,
    dataset: data.Dataset | None = None,
) -> dict:
    """Train one model as ``config`` says and return its record (see the module docstring).

    Deterministic for a given seed on one machine and thread count.  ``initial_state``: the
    pretrained weights of a config with ``init_from`` (required then, refused otherwise);
    ``dataset`` may pass an already loaded dataset (it must be ``config.dataset``);
    ``progress`` shows a tqdm bar.
    """
    return train(config, initial_state=initial_state, progress=progress, dataset=dataset)[0]


def train(
    config: RunConfig,
    *,
    initial_state: State | None = None,
    progress: bool = False,
    dataset: data.Dataset | None = None,
) -> tuple[dict, nn.Module]:
    """``run``, also handing back the trained model (``pretraining.pretrained_state`` keeps
    its weights).  The arguments are ``run``'s."""
    start_time = time.perf_counter()
    torch.set_num_threads(config.threads)
    dataset = _on_device(_dataset(config, dataset), _device(config))
    model = _model(config, dataset, initial_state)
    feed = _feed(config, dataset)
    optimizer = _optimizer(config, model, feed.val_curve.x[:2])
    n_steps = total_steps(config, dataset)
    scheduler = _scheduler(config, optimizer, n_steps)
    freezing = _freezing(config, optimizer, n_steps)
    monitor = (
        Monitor(model, optimizer, every=config.monitor_every) if config.monitor_every else None
    )
    tracker = _tracker(model, config, feed, n_steps)
    unfreezing = (
        transfer.GradualUnfreezing(model, feed.val_curve.x[:2], config.unfreeze_every)
        if config.unfreeze_every
        else None
    )
    bar = tqdm(
        total=n_steps, desc=f"{config.model}/{config.dataset}", leave=False, disable=not progress
    )

    curves: dict[str, list[float]] = {"step": [], "train_loss": [], "val_loss": [], "val_acc": []}
    status, diverged_at, first_loss = "ok", None, None
    window_sum, window_n, step = 0.0, 0, 0
    eval_time = 0.0
    metrics: dict[str, float] | None = None
    model.train()
    if tracker is not None:
        tracker.observe(0)
    loop_start = time.perf_counter()
    for step in range(1, n_steps + 1):
        x, y = next(feed.batches)
        loss = _loss(model(x), y)
        value = loss.item()
        first_loss = value if first_loss is None else first_loss
        if not math.isfinite(value) or value > config.diverge_factor * first_loss:
            status, diverged_at = "diverged", step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if unfreezing is not None:
            unfreezing.apply(step)
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        if monitor is not None:
            monitor.before_step(step)
        optimizer.step()
        if monitor is not None:
            monitor.after_step(step)
        if tracker is not None:
            tracker.observe(step)
        if scheduler is not None:
            scheduler.step()
        if freezing is not None:
            freezing.step()
        window_sum, window_n = window_sum + value, window_n + 1
        bar.update()
        if step % config.eval_every == 0 or step == n_steps:
            eval_start = time.perf_counter()
            metrics = evaluate(model, feed.val_curve)
            eval_time += time.perf_counter() - eval_start
            if not math.isfinite(metrics["loss"]):  # this step's update broke the weights
                status, diverged_at = "diverged", step
                break
            curves["step"].append(step)
            curves["train_loss"].append(window_sum / window_n)
            curves["val_loss"].append(metrics["loss"])
            curves["val_acc"].append(metrics["acc"])
            window_sum, window_n = 0.0, 0
    step_time = time.perf_counter() - loop_start - eval_time
    bar.close()

    steps_done = step if status == "ok" else diverged_at - 1
    # a run that finished was evaluated on its curve split at its last step, after its last update
    final = _final_metrics(model, feed, status == "ok", metrics if status == "ok" else None)
    convergence = tracker.to_record(steps_done) if tracker is not None else None
    record = {
        "format": FORMAT_VERSION,
        "key": config.key(),
        "config": config.to_dict(),
        "status": status,
        "diverged_at": diverged_at,
        "steps": n_steps,
        "steps_done": steps_done,
        "curves": curves,
        "final": final,
        "wall_time_s": time.perf_counter() - start_time,
        "step_time_s": step_time,
        "env": _environment(config.threads, config.device),
    }
    if monitor is not None:
        record["layers"] = monitor.to_record()
    if tracker is not None:
        record["convergence"] = convergence
    return record, model
