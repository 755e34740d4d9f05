"""Figures a reader understands without the code: labelled axes with units, one panel per
testbed, diverged runs shown rather than dropped."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = ["METRIC_LABELS", "learning_curves", "lr_sensitivity", "panel_grid"]

METRIC_LABELS = {
    "val_acc": "validation accuracy",
    "test_acc": "test accuracy",
    "val_loss": "validation loss (nats)",
    "test_loss": "test loss (nats)",
    "train_loss": "training loss (nats)",
}


def panel_grid(n: int, ncols: int = 4, size: float = 3.2) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure with ``n`` panels in rows of ``ncols``; unused axes are hidden."""
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * 0.85 * nrows), squeeze=False
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def lr_sensitivity(
    sensitivity: pd.DataFrame,
    metric: str,
    best_lr: dict[str, float] | None = None,
    panel: str = "arm",
    hue: str | None = None,
) -> plt.Figure:
    """Validation metric against learning rate (log axis), one panel per ``panel`` value.

    Diverged runs are drawn as red crosses on the lower edge of the panel; the chosen rate
    (``best_lr[panel value]``) as a star.
    """
    names = list(dict.fromkeys(sensitivity[panel]))
    fig, axes = panel_grid(len(names))
    for ax, name in zip(axes, names, strict=True):
        rows = sensitivity[sensitivity[panel] == name]
        ok = rows[rows["status"] == "ok"]
        sns.lineplot(
            data=ok, x="lr", y=metric, hue=hue, marker="o", errorbar=None, ax=ax, legend=bool(hue)
        )
        failed = rows[rows["status"] != "ok"]
        if len(failed):
            bottom = ax.get_ylim()[0] if len(ok) else 0.0
            ax.scatter(
                failed["lr"],
                np.full(len(failed), bottom),
                marker="x",
                color="red",
                label="diverged",
                zorder=5,
                clip_on=False,
            )
        if best_lr and name in best_lr and len(ok):
            at = ok[np.isclose(ok["lr"], best_lr[name])][metric].mean()
            ax.scatter(
                [best_lr[name]],
                [at],
                marker="*",
                s=180,
                color="gold",
                edgecolor="black",
                zorder=6,
                label="chosen",
            )
        ax.set_xscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    fig.tight_layout()
    return fig


def learning_curves(
    curves: pd.DataFrame, y: str, panel: str = "arm", hue: str | None = None
) -> plt.Figure:
    """``y`` against training step, mean over seeds with a 95% band, one panel per testbed."""
    names = list(dict.fromkeys(curves[panel]))
    fig, axes = panel_grid(len(names))
    for ax, name in zip(axes, names, strict=True):
        rows = curves[curves[panel] == name]
        sns.lineplot(
            data=rows, x="step", y=y, hue=hue, errorbar=("ci", 95), seed=0, ax=ax, legend=bool(hue)
        )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(METRIC_LABELS.get(y, y))
    fig.tight_layout()
    return fig
