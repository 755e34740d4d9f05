"""Figures a reader understands without the code: labelled axes with units, one panel per
testbed, diverged runs shown rather than dropped."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.artist import Artist
from matplotlib.ticker import MaxNLocator

__all__ = [
    "METRIC_LABELS",
    "OUTCOME_COLOURS",
    "effect_label",
    "effect_sizes",
    "effect_vs_factor",
    "is_placeholder",
    "learning_curves",
    "lr_sensitivity",
    "nothing_yet",
    "panel_grid",
    "tensor_lines",
]

METRIC_LABELS = {
    "val_acc": "validation accuracy",
    "test_acc": "test accuracy",
    "val_loss": "validation loss (nats)",
    "test_loss": "test loss (nats)",
    "train_loss": "training loss (nats)",
    "score": "tuning score (validation,\nmean of last evaluations)",
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


PLACEHOLDER = "layerwise: nothing to draw yet"  # the label of a placeholder figure


def is_placeholder(fig: plt.Figure) -> bool:
    """Whether ``fig`` only says that there is nothing to draw yet (nothing worth saving)."""
    return fig.get_label() == PLACEHOLDER


def _wrapped(title: str, width: int = 34) -> str:
    """A panel title that fits its panel: a long ``"testbed · group"`` breaks at the dot."""
    return title.replace(" · ", "\n") if len(title) > width else title


def nothing_yet(what: str, why: str = "every comparison is still pending") -> plt.Figure:
    """A small figure that says there are no ``what`` to draw yet, and ``why``;
    :func:`is_placeholder` recognises it (and :meth:`Study.savefig` does not save it)."""
    fig, ax = plt.subplots(figsize=(4, 1))
    fig.set_label(PLACEHOLDER)
    ax.axis("off")
    ax.text(0.5, 0.5, f"no {what} yet: {why}", ha="center", va="center")
    return fig


def lr_sensitivity(
    sensitivity: pd.DataFrame,
    metric: str,
    best_lr: dict[str, float] | None = None,
    panel: str = "arm",
    hue: str | None = None,
) -> plt.Figure:
    """Validation metric against learning rate (log axis), one panel per ``panel`` value.

    Each line is the mean over seeds at every rate, one line per ``hue`` level in the same
    colour in every panel. Diverged runs are drawn as red crosses on the lower edge of the
    panel; the chosen rate (``best_lr[panel value]``) as a star. One legend below the panels
    names them all, so that none hides a curve.
    """
    if not len(sensitivity):
        return nothing_yet("tuning runs")
    names = list(dict.fromkeys(sensitivity[panel]))
    # one colour per hue level across all panels, in the order the levels first appear
    levels = list(dict.fromkeys(sensitivity[hue])) if hue else [None]
    palette = dict(zip(levels, sns.color_palette(n_colors=len(levels)), strict=True))
    fig, axes = panel_grid(len(names))
    handles: dict[str, Artist] = {}
    for ax, name in zip(axes, names, strict=True):
        rows = sensitivity[sensitivity[panel] == name]
        ok = rows[rows["status"] == "ok"]
        for level in levels:
            line = ok if level is None else ok[ok[hue] == level]
            if not len(line):
                continue
            mean = line.groupby("lr")[metric].mean()
            label = "mean over seeds" if level is None else str(level)
            handles[label] = ax.plot(
                mean.index, mean.to_numpy(), marker="o", color=palette[level], label=label
            )[0]
        failed = rows[rows["status"] != "ok"]
        if len(failed):
            bottom = ax.get_ylim()[0] if len(ok) else 0.0
            handles["diverged"] = ax.scatter(
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
            handles["chosen"] = ax.scatter(
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
        ax.set_title(_wrapped(str(name)), fontsize=10)
        ax.set_xlabel("learning rate")
    bottom = 0.0  # the figure's share under the panels, kept for the legend
    if len(handles) > 1:
        fig.legend(
            handles=list(handles.values()),
            loc="lower center",
            ncol=min(len(handles), 8),
            fontsize=7,
            frameon=False,
        )
        bottom = 0.25 * math.ceil(len(handles) / 8) / fig.get_figheight()
    # one metric in every panel: named once, beside the panels
    fig.supylabel(METRIC_LABELS.get(metric, metric), y=(1 + bottom) / 2, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
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
        ax.set_title(_wrapped(str(name)), fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(METRIC_LABELS.get(y, y))
    fig.tight_layout()
    return fig


OUTCOME_COLOURS = {
    "better": "#1b9e77",
    "worse": "#d95f02",
    "equivalent": "#7570b3",
    "inconclusive": "#666666",
}


def effect_sizes(table: pd.DataFrame, xlabel: str = "test accuracy minus uniform") -> plt.Figure:
    """Effect against the baseline arm with its interval (columns ``effect``, ``ci_low``,
    ``ci_high``), one row per testbed, one marker colour per arm, one panel per ``group``
    (optimizer or budget); the dashed line is no effect.  Comparisons that are not tuned
    (``tuned`` false: a best rate on the grid's edge) are drawn hollow."""
    rows = table.dropna(subset=["effect"])
    if not len(rows):
        return nothing_yet("effects")
    groups = list(dict.fromkeys(rows["group"]))
    fig, axes = panel_grid(len(groups), ncols=2, size=4.6)
    arms = list(dict.fromkeys(rows["arm"]))
    colours = dict(zip(arms, sns.color_palette("colorblind", len(arms)), strict=True))
    for ax, group in zip(axes, groups, strict=True):
        g = rows[rows["group"] == group]
        beds = list(dict.fromkeys(g["testbed"]))
        offsets = np.linspace(-0.25, 0.25, len(arms)) if len(arms) > 1 else [0.0]
        for offset, arm in zip(offsets, arms, strict=True):
            a = g[g["arm"] == arm]
            if not len(a):
                continue
            y = np.asarray([beds.index(b) + offset for b in a["testbed"]])
            err = [a["effect"] - a["ci_low"], a["ci_high"] - a["effect"]]
            tuned = a["tuned"].to_numpy(dtype=bool)
            ax.errorbar(a["effect"], y, xerr=err, fmt="none", ecolor=colours[arm], lw=1)
            for filled, mask in ((True, tuned), (False, ~tuned)):
                ax.scatter(
                    a["effect"][mask],
                    y[mask],
                    color=colours[arm] if filled else "white",
                    edgecolor=colours[arm],
                    label=arm if filled else None,
                    zorder=3,
                    s=18,
                )
        ax.axvline(0, color="grey", ls="--", lw=0.8)
        ax.set_yticks(range(len(beds)), beds, fontsize=7)
        ax.set_ylim(len(beds) - 0.5, -0.5)  # first testbed on top, one row per testbed
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set(title=str(group), xlabel=xlabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def effect_label(metric: str, baseline: str = "uniform") -> str:
    """The axis label of an effect on ``metric`` against ``baseline``, unit last:
    ``"test accuracy minus uniform"``, ``"test loss minus uniform (nats)"``."""
    name, _, unit = METRIC_LABELS.get(metric, metric).partition(" (")
    return f"{name} minus {baseline}" + (f" ({unit}" if unit else "")


def effect_vs_factor(
    table: pd.DataFrame,
    factor: str,
    xlabel: str,
    ylabel: str | None = None,
    panel: str = "testbed",
) -> plt.Figure:
    """Effect against a rule's factor (log axis), one panel per ``panel`` value: the interval
    of each comparison as a bar, its marker coloured by outcome (better / worse / equivalent /
    inconclusive), the baseline at factor 1 on the dashed no-effect line; the shaded band is
    +- the smallest effect of interest.  ``ylabel=None`` labels each panel by its rows'
    ``metric`` column (:func:`effect_label`), so accuracy and loss panels can share a figure."""
    if not len(table):
        return nothing_yet("effects")
    names = list(dict.fromkeys(table[panel]))
    fig, axes = panel_grid(len(names), ncols=3, size=3.6)
    for ax, name in zip(axes, names, strict=True):
        rows = table[table[panel] == name].sort_values(factor)
        sesoi = float(rows["sesoi"].iloc[0])
        ax.axhspan(-sesoi, sesoi, color="grey", alpha=0.15, lw=0)
        ax.axhline(0, color="grey", ls="--", lw=0.8)
        line = pd.concat([rows[[factor, "effect"]], pd.DataFrame({factor: [1.0], "effect": [0.0]})])
        line = line.sort_values(factor)
        ax.plot(line[factor], line["effect"], color="black", lw=0.8, zorder=2)
        ax.errorbar(
            rows[factor],
            rows["effect"],
            yerr=[rows["effect"] - rows["ci_low"], rows["ci_high"] - rows["effect"]],
            fmt="none",
            ecolor="black",
            lw=1,
            zorder=2,
        )
        colours = rows["outcome"].map(OUTCOME_COLOURS)
        ax.scatter(rows[factor], rows["effect"], color=colours, s=28, zorder=3)
        ax.scatter([1.0], [0.0], marker="s", color="black", s=22, zorder=3)
        ticks = sorted({1.0, *rows[factor]})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{v:.2g}" for v in ticks], fontsize=7)
        ax.minorticks_off()
        label = ylabel or effect_label(str(rows["metric"].iloc[0]))
        ax.set(title=str(name), xlabel=xlabel, ylabel=label)
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=c, label=o) for o, c in OUTCOME_COLOURS.items()
    ]
    handles += [
        plt.Line2D([], [], marker="s", ls="", color="black", label="baseline"),
        plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.15, label="+- smallest effect"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def tensor_lines(ax: plt.Axes, rows: pd.DataFrame, x: str, value: str) -> None:
    """One line per tensor on ``ax``: the median over seeds of ``rows[value]`` against
    ``rows[x]``, coloured in the model's order (dark: the input end); weight matrices and
    kernels solid, 1-D tensors (biases, norm scales) dashed.  ``rows`` has the columns
    ``label`` (the tensor) and ``ndim``, tensors in the model's order."""
    curves = rows.groupby(["label", "ndim", x], sort=False)[value].median()
    palette = sns.color_palette("viridis", rows["label"].nunique())
    tensors = curves.groupby(level=[0, 1], sort=False)
    for colour, ((label, ndim), curve) in zip(palette, tensors, strict=False):
        solid = ndim >= 2
        ax.plot(
            curve.index.get_level_values(x),
            curve.to_numpy(),
            ls="-" if solid else "--",
            lw=1.2 if solid else 0.8,
            color=colour,
            label=label,
        )
