"""Study 02's design: do layers converge at different speeds under one learning rate?

Every testbed of ``testbeds.TESTBEDS`` is trained at the single rate ``01_baselines`` chose for
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

from .config import RunConfig
from .data import load
from .store import Store
from .testbeds import Testbed
from .train import total_steps
from .tuning import stored_best_lr

__all__ = ["BASELINE_STUDY", "CHECKPOINTS", "MONITOR_POINTS", "instrumented", "seeds_for"]

BASELINE_STUDY = "01_baselines"
CHECKPOINTS = 30  # the tracker's cap (final checkpoint included)
MONITOR_POINTS = 50
# Probe windows of a language task: each window holds ``block`` tokens, so 64 windows of 64
# characters (4096 positions) already cost more per CKA than 512 MNIST-1D examples.
TEXT_PROBE_WINDOWS = 64


def seeds_for(bed: Testbed, profile: str = "full") -> tuple[int, ...]:
    """Fresh seeds (never the tuning seed 0): five on MNIST-1D, three elsewhere; two in smoke."""
    if profile == "smoke":
        return (1, 2)
    return (1, 2, 3, 4, 5) if bed.config.dataset == "mnist1d" else (1, 2, 3)


def instrumented(bed: Testbed, store: Store, profile: str = "full") -> list[RunConfig]:
    """The study's runs of one testbed: its tuned single rate, tracker and monitor on.

    The rate is the one ``01_baselines`` chose on validation for this exact config (read from
    ``store``); without that record (the smoke profile) the testbed's placeholder rate is used.
    """
    config = bed.config
    lr = stored_best_lr(store, BASELINE_STUDY, config, bed.metric) or config.lr
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
