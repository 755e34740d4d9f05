"""Figures of per-layer measurements: one panel per testbed, layers coloured by depth
(dark = near the input, light = near the output), time as the fraction of training done."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .plots import panel_grid

__all__ = [
    "convergence_curves",
    "convergence_vs_depth",
    "movement_vs_depth",
    "ratio_curves",
    "reinit_heatmaps",
]

DEPTH_PALETTE = "viridis"
FRACTION_LABEL = "fraction of training"


def _by_testbed(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(bed, frame[frame["testbed"] == bed]) for bed in dict.fromkeys(frame["testbed"])]


def _depth_legend(ax: plt.Axes, title: str = "depth") -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, fontsize=7, title_fontsize=7, ncol=2)


def convergence_curves(
    frame: pd.DataFrame,
    value: str,
    ylabel: str,
    threshold: float | None = None,
    hue: str = "depth",
) -> plt.Figure:
    """``value`` (e.g. CKA to final) against the fraction of training, one line per depth
    (mean over seeds and over the layers sharing a depth; ``hue="layer"``: one line per layer),
    one panel per testbed."""
    panels = _by_testbed(frame.dropna(subset=["depth", value]))
    fig, axes = panel_grid(len(panels))
    for ax, (bed, rows) in zip(axes, panels, strict=True):
        rows = rows.assign(depth=rows["depth"].astype(int))
        order = rows.groupby(hue)["depth"].min().sort_values(kind="stable").index.tolist()
        sns.lineplot(
            data=rows,
            x="fraction",
            y=value,
            hue=hue,
            hue_order=order,
            palette=DEPTH_PALETTE,
            errorbar=None,
            ax=ax,
        )
        if threshold is not None:
            ax.axhline(threshold, color="grey", lw=0.8, ls="--")
        ax.set(title=bed, xlabel=FRACTION_LABEL, ylabel=ylabel)
        _depth_legend(ax, hue)
    fig.tight_layout()
    return fig


def convergence_vs_depth(times: pd.DataFrame) -> plt.Figure:
    """Convergence time (fraction of training) against depth, one point per layer and seed,
    for both measures; bottom-up convergence is a rising pattern.  Layers that never reached
    the threshold are drawn at 1.05."""
    panels = _by_testbed(times.dropna(subset=["depth"]))
    fig, axes = panel_grid(len(panels))
    for ax, (bed, rows) in zip(axes, panels, strict=True):
        rows = rows.assign(depth=rows["depth"].astype(int), fraction=rows["fraction"].fillna(1.05))
        sns.stripplot(
            data=rows,
            x="depth",
            y="fraction",
            hue="measure",
            dodge=True,
            size=3,
            ax=ax,
            native_scale=True,
            alpha=0.6,
            jitter=False,  # no random offsets: regenerated figures are identical
        )
        means = rows.groupby(["measure", "depth"])["fraction"].mean().reset_index()
        sns.lineplot(data=means, x="depth", y="fraction", hue="measure", legend=False, ax=ax)
        ax.set(title=bed, xlabel="depth (0 = input)", ylabel="convergence time", ylim=(0, 1.1))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def reinit_heatmaps(reinit: pd.DataFrame) -> plt.Figure:
    """Re-initialisation robustness (Zhang, Bengio, Singer): validation error of the trained
    model with one layer reset to its value at a checkpoint, mean over seeds; rows are layers
    from input (top) to output, columns the checkpoint reset to (fraction of training)."""
    panels = _by_testbed(reinit.dropna(subset=["depth"]))
    fig, axes = panel_grid(len(panels), ncols=3, size=4.2)
    for ax, (bed, rows) in zip(axes, panels, strict=True):
        rows = rows.assign(
            error=1 - rows["metric"],
            at=rows["fraction"].round(2),
            layer=rows["layer"].replace("", "(model: loose parameters)"),
        )
        order = rows.groupby("layer")["depth"].min().sort_values(kind="stable").index
        table = rows.pivot_table(index="layer", columns="at", values="error").reindex(order)
        sns.heatmap(
            table,
            vmin=0,
            vmax=1,
            cmap="magma_r",
            ax=ax,
            cbar=ax is axes[-1],
            annot=len(table) <= 8,
            fmt=".2f",
            annot_kws={"fontsize": 6},
        )
        ax.set(title=bed, xlabel=f"checkpoint reset to ({FRACTION_LABEL})", ylabel="")
        ax.tick_params(labelsize=6)
    fig.suptitle("validation error after resetting one layer (1 = all wrong)")
    fig.tight_layout()
    return fig


def ratio_curves(ratios: pd.DataFrame) -> plt.Figure:
    """``||g|| / ||w||`` per weight matrix against the fraction of training (log scale),
    geometric mean over seeds, coloured by depth: the relative step a single learning rate gives each layer."""
    panels = _by_testbed(ratios.dropna(subset=["depth", "ratio"]))
    fig, axes = panel_grid(len(panels))
    for ax, (bed, rows) in zip(axes, panels, strict=True):
        rows = rows[np.isfinite(rows["ratio"]) & (rows["ratio"] > 0)]
        rows = rows.assign(depth=rows["depth"].astype(int), log=np.log10(rows["ratio"]))
        rows = rows.groupby(["fraction", "name", "depth"], as_index=False)["log"].mean()
        rows = rows.assign(ratio=10 ** rows["log"])  # geometric mean over seeds
        sns.lineplot(
            data=rows,
            x="fraction",
            y="ratio",
            hue="depth",
            units="name",
            estimator=None,
            palette=DEPTH_PALETTE,
            lw=0.8,
            ax=ax,
        )
        ax.set(yscale="log", title=bed, xlabel=FRACTION_LABEL, ylabel="||g|| / ||w||")
        _depth_legend(ax)
    fig.tight_layout()
    return fig


def movement_vs_depth(movement: pd.DataFrame) -> plt.Figure:
    """Relative movement ``||w_T - w_0|| / ||w_0||`` of every weight tensor against its depth
    (log scale), one point per tensor and seed: how far training carried each layer."""
    panels = _by_testbed(movement.dropna(subset=["depth", "movement"]))
    fig, axes = panel_grid(len(panels))
    for ax, (bed, rows) in zip(axes, panels, strict=True):
        rows = rows[rows["movement"] > 0].assign(depth=rows["depth"].astype(int))
        sns.stripplot(
            data=rows,
            x="depth",
            y="movement",
            size=3,
            alpha=0.6,
            ax=ax,
            native_scale=True,
            jitter=False,
        )
        ax.set(
            title=bed, yscale="log", xlabel="depth (0 = input)", ylabel="||w_T - w_0|| / ||w_0||"
        )
    fig.tight_layout()
    return fig
