"""One training run: ``run(config) -> record``.

The record is a JSON-serialisable dict: the config, metric curves, final validation and test
metrics, status (``"ok"`` or ``"diverged"`` with the step), wall time and environment.  A run
that diverges -- a non-finite training loss, or one above ``diverge_factor`` times the first --
stops early and is recorded, never raised: a diverged learning rate is a result.

With ``config.monitor_every`` the record also holds per-tensor training statistics
(``record["layers"]``, ``probes.Monitor``); with ``config.probe_every`` it holds per-layer
convergence measurements (``record["convergence"]``, ``probes.ConvergenceTracker``: CKA to the
final representation, distance to the final weights, movement, rotation and re-initialisation
robustness), read back with ``probes.convergence_frames``.

With ``config.init_from`` the model starts from the final weights of that pretraining run
(``transfer.load_pretrained``; its ``reinit`` modules keep their fresh seeded initialisation),
and with ``config.unfreeze_every`` the lower depths stay frozen until their turn
(``transfer.GradualUnfreezing``): ULMFiT's fine-tuning controls (Howard & Ruder 2018).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import optim, schedules
from . import data, models
from .config import FORMAT_VERSION, RunConfig

if TYPE_CHECKING:
    from ..probes.tracker import ConvergenceTracker

__all__ = ["EVAL_BATCH", "CURVE_EVAL_WINDOWS", "evaluate", "run", "steps_per_epoch"]

EVAL_BATCH = 2048  # examples (or text windows) per forward pass when evaluating
REINIT_POINTS = 8  # checkpoints the re-initialisation table resets each layer to
REINIT_EXAMPLES = 1000  # validation examples per re-initialisation evaluation (not text)
CURVE_EVAL_WINDOWS = 256  # text windows used for the validation curve (the final metric uses all)


def steps_per_epoch(config: RunConfig, dataset: data.Dataset) -> int:
    """Optimizer steps in one pass over the training split (text: characters / tokens per step)."""
    per_step = config.batch_size * (config.block if dataset.spec.task == "language" else 1)
    return max(1, len(dataset.train) // per_step)


def total_steps(config: RunConfig, dataset: data.Dataset) -> int:
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


def evaluate(model: nn.Module, split: data.Split) -> dict[str, float]:
    """Mean cross-entropy (nats) and accuracy over a split, in large batches, no autograd."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.inference_mode():
        for start in range(0, len(split), EVAL_BATCH):
            x, y = split.x[start : start + EVAL_BATCH], split.y[start : start + EVAL_BATCH]
            logits = model(x)
            total_loss += _loss(logits, y, "sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += y.numel()
    model.train(was_training)
    return {"loss": total_loss / count, "acc": correct / count}


# --------------------------------------------------------------------------------------------
# the run


def _param_groups(model: nn.Module, config: RunConfig, example: torch.Tensor) -> list[Any]:
    if config.rule is None:
        return [p for p in model.parameters() if p.requires_grad]
    from .. import groups  # the per-layer toolkit is only needed for per-layer rules

    return groups.param_groups(
        model,
        config.lr,
        groups.rule_from_spec(dict(config.rule)),
        example_input=example,
        weight_decay=config.optimizer_options.get("weight_decay", 0.0),
    )


def _tracker(
    model: nn.Module,
    config: RunConfig,
    language: bool,
    val_curve: data.Split,
    val_full: data.Split,
) -> ConvergenceTracker | None:
    """The run's ``probes.ConvergenceTracker``, or ``None`` when ``probe_every`` is not set.

    Probe batch: the first ``probe_examples`` validation examples (text: the first validation
    windows).  Re-initialisation metric, at ``REINIT_POINTS`` of the checkpoints: validation
    accuracy on the first ``REINIT_EXAMPLES`` validation examples for classification, minus the
    validation loss on every fourth of the validation curve's evenly spread windows for text
    (64 windows of ``block`` characters) -- both bound the cost of one evaluation per layer and
    checkpoint.
    """
    if not config.probe_every:
        return None
    from ..probes.tracker import ConvergenceTracker

    if language:
        metric, split = "neg_val_loss", data.Split(val_curve.x[::4], val_curve.y[::4])

        def score(m: nn.Module) -> float:
            return -evaluate(m, split)["loss"]
    else:
        metric, split = (
            "val_acc",
            data.Split(val_full.x[:REINIT_EXAMPLES], val_full.y[:REINIT_EXAMPLES]),
        )

        def score(m: nn.Module) -> float:
            return evaluate(m, split)["acc"]

    return ConvergenceTracker(
        model,
        val_full.x[: config.probe_examples],
        config.probe_every,
        score,
        metric=metric,
        max_examples=config.probe_examples,
        reinit_points=REINIT_POINTS,
    )


def _environment(threads: int) -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "device": "cpu",
        "machine": platform.machine(),
    }


def run(config: RunConfig, *, progress: bool = False, dataset: data.Dataset | None = None) -> dict:
    """Train one model as ``config`` says and return its record (see the module docstring).

    Deterministic for a given seed on one machine and thread count.  ``dataset`` may pass an
    already loaded dataset (it must be ``config.dataset``); ``progress`` shows a tqdm bar.
    """
    return _train(config, progress, dataset)[0]


def _pretrained(config: RunConfig) -> dict[str, torch.Tensor] | None:
    if config.init_from is None:
        return None

    from .pretraining import pretrained_state  # pretraining trains through this module

    return pretrained_state(RunConfig.from_dict(config.init_from))


def _train(
    config: RunConfig, progress: bool, dataset: data.Dataset | None
) -> tuple[dict, nn.Module]:
    """``run``'s loop; also hands back the trained model (``pretraining.pretrained_state``)."""
    pretrained = _pretrained(config)  # before the clock: a missing pretraining run trains here
    start_time = time.perf_counter()
    torch.set_num_threads(config.threads)
    if dataset is None:
        dataset = data.load(config.dataset, **config.data_options)
    elif dataset.name != config.dataset:
        raise ValueError(f"dataset {dataset.name!r} passed for a {config.dataset!r} config")
    language = dataset.spec.task == "language"

    torch.manual_seed(config.seed)
    model = models.build(config.model, dataset.spec, **config.model_options)
    if pretrained is not None:
        from .. import transfer

        transfer.load_pretrained(model, pretrained, config.reinit)
    batch_rng = torch.Generator().manual_seed(config.seed + 1_000_003)
    if language:
        batches = _text_batches(dataset.train, config.batch_size, config.block, batch_rng)
        val_curve = _text_windows(dataset.val, config.block, CURVE_EVAL_WINDOWS)
        val_full = _text_windows(dataset.val, config.block, None)
        test_full = _text_windows(dataset.test, config.block, None)
    else:
        batches = _classification_batches(dataset.train, config.batch_size, batch_rng)
        val_curve = val_full = dataset.val
        test_full = dataset.test

    options = {k: v for k, v in config.optimizer_options.items()}
    if config.rule is not None:
        options.pop("weight_decay", None)  # carried by each param group
    optimizer = optim.build(
        config.optimizer, _param_groups(model, config, val_curve.x[:2]), config.lr, **options
    )
    n_steps = total_steps(config, dataset)
    scheduler = schedules.build(config.schedule, optimizer, n_steps, **config.schedule_options)
    if config.schedule == "constant" and not config.schedule_options.get("warmup"):
        scheduler = None  # a multiplier of 1 at every step: skip LambdaLR's per-step cost
    monitor = None
    if config.monitor_every:
        from ..probes import Monitor

        monitor = Monitor(model, optimizer, every=config.monitor_every)
    tracker = _tracker(model, config, language, val_curve, val_full)
    unfreezing = None
    if config.unfreeze_every:
        from .. import transfer

        unfreezing = transfer.GradualUnfreezing(model, val_curve.x[:2], config.unfreeze_every)

    curves: dict[str, list[float]] = {"step": [], "train_loss": [], "val_loss": [], "val_acc": []}
    status, diverged_at, first_loss = "ok", None, None
    window_sum, window_n, step = 0.0, 0, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc=f"{config.model}/{config.dataset}", leave=False)
    model.train()
    if tracker is not None:
        tracker.observe(0)
    for step in range(1, n_steps + 1):
        x, y = next(batches)
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
        window_sum, window_n = window_sum + value, window_n + 1
        if bar is not None:
            bar.update()
        if step % config.eval_every == 0 or step == n_steps:
            metrics = evaluate(model, val_curve)
            curves["step"].append(step)
            curves["train_loss"].append(window_sum / window_n)
            curves["val_loss"].append(metrics["loss"])
            curves["val_acc"].append(metrics["acc"])
            window_sum, window_n = 0.0, 0
    if bar is not None:
        bar.close()

    final: dict[str, float | None]
    if status == "ok":
        val, test = evaluate(model, val_full), evaluate(model, test_full)
        final = {
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "test_loss": test["loss"],
            "test_acc": test["acc"],
        }
    else:
        final = dict.fromkeys(("val_loss", "val_acc", "test_loss", "test_acc"))
    steps_done = step if status == "ok" else diverged_at - 1
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
        "env": _environment(config.threads),
    }
    if monitor is not None:
        record["layers"] = monitor.to_record()
    if tracker is not None:
        record["convergence"] = convergence
    return record, model
