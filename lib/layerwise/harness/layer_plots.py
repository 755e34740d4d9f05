"""Figures of per-layer measurements: one panel per testbed and optimizer (``panel`` column, or
``testbed`` and ``optimizer``), layers coloured by depth (dark = near the input, light = near the
output), time in optimizer steps on a log axis (step 0 included: the axis is linear below 1)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .plots import panel_grid

__all__ = [
    "convergence_curves",
    "movement_vs_depth",
    "reinit_heatmaps",
    "settling_vs_depth",
    "spread_curves",
]

DEPTH_PALETTE = "viridis"
STEP_LABEL = "optimizer step (log scale; 0 = initialisation)"


def _panels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(title, rows)`` per panel, in order of first appearance."""
    if "panel" not in frame:
        frame = frame.assign(panel=frame["testbed"] + " · " + frame["optimizer"])
    return [(p, frame[frame["panel"] == p]) for p in dict.fromkeys(frame["panel"])]


def _log_steps(ax: plt.Axes) -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)


def _legend(ax: plt.Axes, title: str) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, fontsize=6, title_fontsize=7, ncol=2)


def convergence_curves(
    frame: pd.DataFrame, value: str, ylabel: str, threshold: float | None = None
) -> plt.Figure:
    """``value`` (e.g. CKA to final, raw or normalised) against the optimizer step, one line
    per layer (mean over seeds) coloured by depth, one panel per testbed and optimizer; the
    dashed line is the settling threshold."""
    unit = "layer" if "layer" in frame and "name" not in frame else "name"
    panels = _panels(frame.dropna(subset=["depth", value]))
    fig, axes = panel_grid(len(panels))
    for ax, (title, rows) in zip(axes, panels, strict=True):
        rows = rows.assign(depth=rows["depth"].astype(int))
        mean = rows.groupby([unit, "depth", "step"], as_index=False)[value].mean()
        sns.lineplot(
            data=mean,
            x="step",
            y=value,
            hue="depth",
            units=unit,
            estimator=None,
            palette=DEPTH_PALETTE,
            lw=0.9,
            ax=ax,
        )
        if threshold is not None:
            ax.axhline(threshold, color="grey", lw=0.8, ls="--")
        _log_steps(ax)
        ax.set(title=title, xlabel=STEP_LABEL, ylabel=ylabel)
        _legend(ax, "depth")
    fig.tight_layout()
    return fig


def settling_vs_depth(times: pd.DataFrame) -> plt.Figure:
    """Settling time (fraction of training, log scale) against depth, one point per unit and
    seed, one colour per measure, with the geometric mean per depth as a line; bottom-up
    convergence is a rising pattern.  Units that never settled are left out."""
    panels = _panels(times.dropna(subset=["depth", "fraction"]))
    fig, axes = panel_grid(len(panels))
    for ax, (title, rows) in zip(axes, panels, strict=True):
        rows = rows.assign(depth=rows["depth"].astype(int), log=np.log10(rows["fraction"]))
        sns.stripplot(
            data=rows,
            x="depth",
            y="fraction",
            hue="measure",
            dodge=True,
            size=2.5,
            alpha=0.5,
            jitter=False,  # no random offsets: regenerated figures are identical
            native_scale=True,
            ax=ax,
        )
        means = rows.groupby(["measure", "depth"], as_index=False)["log"].mean()
        means = means.assign(fraction=10 ** means["log"])
        sns.lineplot(data=means, x="depth", y="fraction", hue="measure", legend=False, ax=ax, lw=1)
        ax.set(
            title=title,
            yscale="log",
            xlabel="depth (0 = input)",
            ylabel="settling time (fraction of training)",
        )
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def reinit_heatmaps(robust: pd.DataFrame) -> plt.Figure:
    """Zhang, Bengio & Singer's heat maps: validation error of the trained model with one layer
    reset to its value at a checkpoint (columns: the step reset to, log-spaced), and, in the
    last column, drawn afresh ("fresh draw"); mean over seeds; rows are layers from the input
    (top) to the output."""
    panels = _panels(robust.dropna(subset=["depth"]))
    fig, axes = panel_grid(len(panels), ncols=2, size=5.5)
    for ax, (title, rows) in zip(axes, panels, strict=True):
        rows = rows.assign(
            at=np.where(
                rows["kind"] == "re-randomisation",
                "fresh draw",
                rows["checkpoint"].fillna(-1).astype(int).astype(str),
            ),
            layer=rows["layer"].replace("", "(model: loose parameters)"),
        )
        order = rows.groupby("layer")["depth"].min().sort_values(kind="stable").index
        steps = sorted(rows.loc[rows["kind"] != "re-randomisation", "checkpoint"].unique())
        columns = [str(int(s)) for s in steps] + (
            ["fresh draw"] if (rows["at"] == "fresh draw").any() else []
        )
        table = rows.pivot_table(index="layer", columns="at", values="error")
        table = table.reindex(index=order, columns=columns)
        sns.heatmap(
            table,
            vmin=0,
            vmax=1,
            cmap="magma_r",
            ax=ax,
            cbar_kws={"label": "validation error (1 = all wrong)"},
            annot=len(table) <= 6 and len(columns) <= 12,
            fmt=".2f",
            annot_kws={"fontsize": 5},
            xticklabels=True,  # every step, and the "fresh draw" column
            yticklabels=True,
        )
        ax.set(title=title, xlabel="layer reset to its weights at step ... / drawn afresh",
               ylabel="layer (input at the top)")  # fmt: skip
        ax.tick_params(labelsize=5)
    fig.suptitle("Re-initialisation and re-randomisation robustness (Zhang, Bengio & Singer)")
    fig.tight_layout()
    return fig


def spread_curves(spread: pd.DataFrame) -> plt.Figure:
    """The spread across weight matrices -- largest over smallest ``||Δw|| / ||w||`` and
    ``||g|| / ||w||`` -- against the optimizer step, median over seeds, one panel per testbed
    and optimizer (log axes; 1 = every layer moves by the same relative amount)."""
    long = spread.melt(
        id_vars=[c for c in spread.columns if c not in ("update", "gradient")],
        value_vars=["update", "gradient"],
        var_name="quantity",
        value_name="spread",
    )
    long["quantity"] = long["quantity"].map(
        {"update": "||Δw|| / ||w||", "gradient": "||g|| / ||w||"}
    )
    panels = _panels(long.dropna(subset=["spread"]))
    fig, axes = panel_grid(len(panels))
    for ax, (title, rows) in zip(axes, panels, strict=True):
        median = rows.groupby(["quantity", "step"], as_index=False)["spread"].median()
        sns.lineplot(data=median, x="step", y="spread", hue="quantity", ax=ax, lw=1)
        ax.set(
            title=title,
            xscale="log",
            yscale="log",
            xlabel="optimizer step (log scale)",
            ylabel="largest / smallest over weight matrices",
        )
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def movement_vs_depth(movement: pd.DataFrame) -> plt.Figure:
    """Relative movement ``||w_T - w_0|| / ||w_0||`` of every weight tensor against its depth
    (log scale), one point per tensor and seed: how far training carried each layer."""
    panels = _panels(movement.dropna(subset=["depth", "movement"]))
    fig, axes = panel_grid(len(panels))
    for ax, (title, rows) in zip(axes, panels, strict=True):
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
            title=title, yscale="log", xlabel="depth (0 = input)", ylabel="||w_T - w_0|| / ||w_0||"
        )
    fig.tight_layout()
    return fig
