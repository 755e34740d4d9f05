"""Figures draw what their tables hold: positions, colours and hollow markers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from layerwise.harness import plots  # noqa: E402
from layerwise.harness.store import Store  # noqa: E402
from layerwise.harness.study import Study  # noqa: E402


def _table(**overrides) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "group": "adamw",
            "testbed": ["a", "a", "a", "b"],
            "arm": ["xi=1/2", "xi=2", "xi=4", "xi=2"],
            "xi": [0.5, 2.0, 4.0, 2.0],
            "effect": [0.03, -0.02, 0.001, 0.0],
            "ci_low": [0.01, -0.03, -0.004, -0.01],
            "ci_high": [0.05, -0.01, 0.006, 0.01],
            "sesoi": 0.01,
            "outcome": ["better", "worse", "equivalent", "inconclusive"],
            "tuned": [True, True, True, False],
            "metric": ["test_acc", "test_acc", "test_acc", "test_loss"],
        }
    )
    return rows.assign(**overrides)


def _points(ax) -> dict[tuple[float, float], np.ndarray]:
    """Every scatter point of ``ax`` -> its face colour."""
    out = {}
    for coll in ax.collections:
        offsets, faces = coll.get_offsets(), coll.get_facecolors()
        if not len(offsets) or not len(faces):
            continue
        for i, (x, y) in enumerate(np.asarray(offsets)):
            out[(round(float(x), 6), round(float(y), 6))] = faces[min(i, len(faces) - 1)]
    return out


def test_effect_vs_factor_colours_each_point_by_its_outcome():
    fig = plots.effect_vs_factor(_table(), "xi", "xi")
    first, second = fig.axes[:2]
    assert [first.get_title(), second.get_title()] == ["a", "b"]
    points = _points(first)
    expect = {(0.5, 0.03): "better", (2.0, -0.02): "worse", (4.0, 0.001): "equivalent"}
    for xy, outcome in expect.items():
        assert mcolors.to_hex(points[xy]) == plots.OUTCOME_COLOURS[outcome]
    assert (1.0, 0.0) in points  # the baseline at xi = 1
    assert first.get_xscale() == "log"
    # each panel's axis names its own metric and unit
    assert first.get_ylabel() == "test accuracy minus uniform"
    assert second.get_ylabel() == "test loss minus uniform (nats)"


def test_effect_sizes_draws_untuned_comparisons_hollow():
    fig = plots.effect_sizes(_table())
    ax = fig.axes[0]
    points = _points(ax)
    hollow = sorted(x for (x, _), face in points.items() if mcolors.to_hex(face) == "#ffffff")
    filled = sorted(x for (x, _), face in points.items() if mcolors.to_hex(face) != "#ffffff")
    assert hollow == [0.0]  # testbed b's untuned comparison
    assert filled == pytest.approx([-0.02, 0.001, 0.03])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_figures_say_so_when_every_comparison_is_pending():
    for fig in (
        plots.effect_sizes(_table().iloc[:0]),
        plots.effect_vs_factor(_table().iloc[:0], "xi", "xi"),
        plots.lr_sensitivity(pd.DataFrame(), "score"),
    ):
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert any("still pending" in t for t in texts)


def test_a_placeholder_is_shown_but_not_saved(tmp_path):
    study = Study("00_x", "full", Store(tmp_path / "results"), tmp_path / "figures")
    pending = plots.lr_sensitivity(pd.DataFrame(), "score")
    assert plots.is_placeholder(pending)
    assert study.savefig(pending, "lr_sensitivity") is None
    assert not (tmp_path / "figures").exists()
    fig, _ = plt.subplots()
    assert not plots.is_placeholder(fig)
    png = study.savefig(fig, "drawn")
    assert png == tmp_path / "figures" / "drawn.png"
    assert sorted(p.name for p in png.parent.iterdir()) == ["drawn.pdf", "drawn.png"]
    plt.close("all")


def test_lr_sensitivity_gives_a_level_the_same_colour_in_every_panel():
    rows = [
        {"panel": panel, "arm": arm, "lr": lr, "score": 0.5 + lr, "status": "ok"}
        for panel, arms in (("p", ["x1/4", "x1", "x4"]), ("q", ["x1", "x4"]))
        for arm in arms
        for lr in (0.001, 0.01)
    ]
    fig = plots.lr_sensitivity(pd.DataFrame(rows), "score", panel="panel", hue="arm")
    colours = []
    for ax in fig.axes[:2]:
        colours.append(
            {
                line.get_label(): mcolors.to_hex(line.get_color())
                for line in ax.get_lines()
                if not line.get_label().startswith("_")
            }
        )
    assert colours[0]["x1"] == colours[1]["x1"] and colours[0]["x4"] == colours[1]["x4"]
    assert len(set(colours[0].values())) == 3
    # the line is the mean over seeds at each rate
    rows.append({"panel": "q", "arm": "x1", "lr": 0.01, "score": 0.0, "status": "ok"})
    rows.append({"panel": "q", "arm": "x1", "lr": 0.1, "score": 0.3, "status": "diverged"})
    fig = plots.lr_sensitivity(pd.DataFrame(rows), "score", {"q": 0.01}, "panel", "arm")
    x1 = next(line for line in fig.axes[1].get_lines() if line.get_label() == "x1")
    np.testing.assert_allclose(x1.get_ydata(), [0.501, (0.51 + 0.0) / 2])
    # one legend below the panels names every level and marker; no panel has its own
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["x1/4", "x1", "x4", "diverged", "chosen"]
    # the metric is named once, on the left of the figure
    assert [ax.get_ylabel() for ax in fig.axes] == ["", ""]
    assert fig.get_supylabel() == plots.METRIC_LABELS["score"]


def test_a_long_panel_title_breaks_at_its_dot_and_a_short_one_stays():
    long_name = "tinyshakespeare_passages/transformer · fine-tuning, 3 epochs"
    rows = pd.DataFrame(
        [
            {"panel": p, "lr": lr, "score": lr, "status": "ok"}
            for p in (long_name, "mnist1d/cnn · sgd")
            for lr in (0.1, 1.0)
        ]
    )
    fig = plots.lr_sensitivity(rows, "score", panel="panel")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["tinyshakespeare_passages/transformer\nfine-tuning, 3 epochs",
                      "mnist1d/cnn · sgd"]  # fmt: skip
    assert fig.legends == []  # one line per panel and nothing else: nothing to name
    plt.close(fig)


def test_tensor_lines_draw_the_median_over_seeds_of_each_tensor_in_model_order():
    rows = pd.DataFrame(
        [
            {"label": label, "ndim": ndim, "step": step, "seed": seed, "v": base * step + seed}
            for label, ndim, base in [("fc1.w", 2, 1.0), ("fc1.b", 1, 10.0), ("head.w", 2, 100.0)]
            for step in (1, 2, 3)
            for seed in (0, 1, 5)  # median over seeds adds 1
        ]
    )
    fig, ax = plt.subplots()
    plots.tensor_lines(ax, rows, "step", "v")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["fc1.w", "fc1.b", "head.w"]
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-"]
    np.testing.assert_allclose(lines[2].get_ydata(), [101, 201, 301])
    np.testing.assert_allclose(lines[0].get_xdata(), [1, 2, 3])
    # colours run through the palette in the model's order: the first tensor darkest
    lightness = [np.mean(mcolors.to_rgb(line.get_color())) for line in lines]
    assert lightness == sorted(lightness)
    plt.close(fig)
