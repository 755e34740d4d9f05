"""Study 02 (v2): its design against study 03's, and its tables from hand-made records whose
answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from layerwise.harness.store import Store
from layerwise.probes import normalise_to_start
from layerwise.studies import discriminative_rates
from layerwise.studies import layer_convergence as design

STEPS = [0, 1, 2, 4, 8, 16, 32, 64]
# a model with weight matrices body.0.weight (depth 0), body.2.weight (1), head.weight (2)
MODEL = {"dataset": "mnist1d", "model": "mlp", "model_options": {"width": 8, "depth": 2}}
LAYERS = {"body.0": 0, "body.2": 1, "head": 2}


def curve(start: float, settle: int) -> list[float]:
    """Raw CKA that starts at ``start``, rises to 95% of the way to 1 at step ``settle`` and
    stays there, then reaches 1 at the end; a dip before ``settle``."""
    out = []
    for step in STEPS:
        if step == STEPS[-1]:
            out.append(1.0)
        elif step >= settle:
            out.append(start + 0.95 * (1 - start))
        else:
            out.append(start + 0.5 * (1 - start) * (step > 0))
    return out


def record(seed, settle, *, starts=None, reinit=None, redraw=None, monitor=None, optimizer="sgd"):
    """A run record whose layers' normalised CKA settles (>= 0.9) at ``settle[layer]`` and
    whose weights settle at the same steps."""
    starts = starts or dict.fromkeys(LAYERS, 0.5)
    distance = {
        n: [1.0 if s < settle[n] else (0.0 if s == STEPS[-1] else 0.05) for s in STEPS]
        for n in LAYERS
    }
    conv = {
        "step": STEPS,
        "reinit_step": [0, STEPS[-1]],
        "metric": "val_acc",
        "layers": {
            n: {
                "depth": d,
                "order": d,
                "cka": curve(starts[n], settle[n]),
                "reinit": (reinit or {}).get(n, [0.9, 0.9]),
                "redraw": (redraw or {}).get(n, 0.9),
            }
            for n, d in LAYERS.items()
        },
        "params": {
            f"{n}.{kind}": {
                "layer": n,
                "depth": d,
                "distance": distance[n],
                "movement": [0.0] * (len(STEPS) - 1) + [0.5],
                "rotation": [0.0] * len(STEPS),
            }
            for n, d in LAYERS.items()
            for kind in ("weight", "bias")
        },
    }
    monitor = monitor or {n: 1e-3 for n in LAYERS}
    return {
        "key": f"k{seed}",
        "config": {**MODEL, "optimizer": optimizer, "lr": 0.1, "seed": seed},
        "steps_done": STEPS[-1],
        "convergence": conv,
        "layers": {
            "every": 32,
            "step": [32, 64],
            "params": {
                f"{n}.weight": {
                    "w_norm": [1.0, 1.0],
                    "g_norm": [2 * u, 2 * u],
                    "update_ratio": [u, u],
                }
                for n, u in monitor.items()
            },
        },
    }


BOTTOM_UP = {"body.0": 4, "body.2": 16, "head": 64}


# --------------------------------------------------------------------------------------------
# design


def test_rates_are_read_from_study_03s_own_uniform_arms():
    ours = {c.key: c.arms["uniform"] for c in design.rate_plans()[design.RATES_STUDY]}
    theirs = {
        c.key: c.arms["uniform"]
        for c in discriminative_rates.plan()
        if "steps" not in c.group  # 03's budget check is not a rate 02 uses
    }
    assert ours.keys() == theirs.keys() and len(ours) == 9
    for key, config in ours.items():  # the same config, so the same stored tuning runs
        assert config.key() == theirs[key].key()
        assert config.schedule == "cosine" and config.schedule_options["final"] == 0.0


def test_pairs_03_did_not_tune_are_tuned_here_under_the_same_protocol():
    plan = design.rate_plans()[design.STUDY]
    pairs = {(c.group, c.bed.name) for c in plan}
    assert ("sgd", design.ZBS_FCN) in pairs and ("adamw", design.ZBS_FCN) in pairs
    assert not pairs & {(o, n) for o, n, _ in design.FROM_03}
    for c in plan:
        assert len(c.protocol.tune_seeds) >= 3 and c.protocol.max_spacing <= 2
        assert list(c.arms) == ["uniform"]


def test_every_family_on_both_datasets_and_the_character_model_gets_both_optimizers():
    pairs = {(o, n) for o, n, _ in design.FROM_03 + design.TUNED_HERE}
    pairs |= {(o, n) for o, n, _, _ in design.RECIPE}
    wanted = [
        f"{dataset}/{family}"
        for dataset in ("mnist1d", "fashion_mnist")
        for family in ("mlp", "cnn", "gru", "transformer")
    ]
    for name in [*wanted, "tinyshakespeare/transformer"]:
        assert {("adamw", name), ("sgd", name)} <= pairs, name
    assert len(pairs) == len(design.FROM_03 + design.TUNED_HERE + design.RECIPE)  # none twice


def test_zhang_bengio_singer_network_has_three_hidden_layers_of_256():
    (fcn,) = [c for c in design.rate_plans()[design.STUDY] if c.bed.name == design.ZBS_FCN][:1]
    from layerwise.harness.models import build

    model = build(fcn.bed.config.model, fcn.bed.config.dataset, **fcn.bed.config.model_options)
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert shapes == [(256, 784), (256, 256), (256, 256), (10, 256)]
    assert fcn.bed.config.steps == 10 * 421  # ten epochs of 128-example batches


def test_instrumented_runs_take_the_rate_table_and_fresh_seeds():
    rates = pd.DataFrame(
        [
            {"optimizer": "adamw", "testbed": "mnist1d/mlp", "steps": 1000, "lr": 0.02},
            {"optimizer": "adamw", "testbed": "tinyshakespeare/transformer", "steps": 2000,
             "lr": 1e-3},
        ]
    )  # fmt: skip
    mlp, text = design.instrumented(rates)
    assert [c.seed for c in mlp.configs] == list(range(1, 11))
    assert [c.seed for c in text.configs] == [1, 2, 3]
    for c in (*mlp.configs, *text.configs):
        assert c.probe_points == design.CHECKPOINTS and c.probe_every is None
        assert c.schedule == "cosine" and c.schedule_options["final"] == 0.0
        assert c.monitor_every == c.steps // 50
    assert mlp.configs[0].lr == 0.02 and mlp.configs[0].steps == 1000
    assert text.configs[0].probe_examples == design.TEXT_PROBE_WINDOWS
    assert text.configs[0].optimizer_options["weight_decay"] == 0.1  # nanoGPT's, kept
    smoke = design.instrumented(rates.iloc[:1], "smoke")[0]
    assert [c.seed for c in smoke.configs] == [1, 2]


def test_gather_reports_pairs_that_are_not_stored_when_training_is_forbidden(tmp_path, monkeypatch):
    rates = pd.DataFrame(
        [{"optimizer": "adamw", "testbed": "mnist1d/mlp", "steps": 1000, "lr": 0.02}]
    )
    runs = design.instrumented(rates)
    monkeypatch.setenv("LAYERWISE_REQUIRE_STORED", "1")
    records, waiting = design.gather(runs, Store(tmp_path))
    assert records == [] and [(w.testbed, n) for w, n in waiting] == [("mnist1d/mlp", 10)]


# --------------------------------------------------------------------------------------------
# tables from constructed records


def test_settling_times_read_normalised_cka_and_weights():
    times = design.times_long([record(1, BOTTOM_UP, starts={"body.0": 0.99, "body.2": 0.5,
                                                            "head": 0.1})])  # fmt: skip
    got = times.set_index(["measure", "unit"])["step"]
    for layer, step in BOTTOM_UP.items():
        assert got[("CKA (normalised)", layer)] == step
    # raw CKA >= 0.9 already at step 0 for the layer that starts at 0.99 (v1's artefact):
    # recorded at step 1, the first checkpoint after initialisation, and marked
    assert got[("CKA (raw)", "body.0")] == 1
    at_start = times.set_index(["measure", "unit"])["at_start"]
    assert at_start[("CKA (raw)", "body.0")] and not at_start[("CKA (normalised)", "body.0")]
    weights = times[times["measure"] == "weights"]
    assert set(weights["unit"]) == {"body.0.weight", "body.2.weight", "head.weight"}  # no biases
    assert weights.set_index("unit")["step"]["body.2.weight"] == 16
    assert (times["fraction"] == times["step"] / 64).all()


def test_depth_trend_of_known_settling_times_and_ties():
    seeds = [record(s, BOTTOM_UP) for s in range(4)]
    tied = {"body.0": 4, "body.2": 4, "head": 64}
    seeds.append(record(4, tied))
    trends = design.trend_table(design.times_long(seeds))
    row = trends[trends["measure"] == "CKA (normalised)"].iloc[0]
    # pooled least squares of ln t on relative depth (0, 0.5, 1), computed independently
    x = np.tile([0.0, 0.5, 1.0], 5)
    y = np.log([4, 16, 64] * 4 + [4, 4, 64])
    assert row["slope"] == pytest.approx(np.polyfit(x, y, 1)[0])
    assert row["fold"] == pytest.approx(math.exp(row["slope"]))
    assert row["tau_positive"] == 5 and row["tau_negative"] == 0
    assert row["tied_pairs"] == 1  # the tied seed's two lower layers
    tau_tied = scipy_stats.kendalltau([0, 1, 2], [4, 4, 64]).statistic
    assert row["tau_median"] == pytest.approx(1.0)
    assert design.trend_table(design.times_long([seeds[-1]])).iloc[0]["tau_median"] == (
        pytest.approx(tau_tied)
    )
    summary = design.trend_summary(trends, fold_sesoi=1.5)
    assert (summary["verdict"] == "deeper later").all()
    assert not summary["within ±SESOI"].any()
    text = design.answer(trends, pd.DataFrame(), pd.DataFrame())
    assert text.count(": **reproduced**. Over 1 network/optimizer pairs, 1 deeper later") == 2


def test_a_top_down_network_gets_the_opposite_verdict_whatever_its_layer_count():
    top_down = {"body.0": 64, "body.2": 16, "head": 4}
    trends = design.trend_table(design.times_long([record(s, top_down) for s in range(3)]))
    row = trends[trends["measure"] == "weights"].iloc[0]
    assert row["fold"] == pytest.approx(1 / 16)
    assert design.trend_summary(trends)["verdict"].eq("deeper earlier").all()
    text = design.answer(trends, pd.DataFrame(), pd.DataFrame())
    assert text.count("**not reproduced**. Over 1 network/optimizer pairs, 1 deeper earlier") == 2


def test_answer_counts_the_trend_verdicts_per_model():
    bottom_up = [record(s, BOTTOM_UP) for s in range(3)]
    top_down = [record(s, {"body.0": 64, "body.2": 16, "head": 4}) for s in range(3, 6)]
    for r in top_down:  # the same layer names under another model's name
        r["config"] = {**r["config"], "model": "cnn"}
    text = design.answer(
        design.trend_table(design.times_long(bottom_up + top_down)), pd.DataFrame(), pd.DataFrame()
    )
    assert text.count("By model: mlp 1 of 1 reproduced, 0 deeper earlier; "
                      "cnn 0 of 1 reproduced, 1 deeper earlier.") == 2  # fmt: skip
    alone = design.answer(design.trend_table(design.times_long(bottom_up)), pd.DataFrame(),
                          pd.DataFrame())  # fmt: skip
    assert "By model" not in alone


def test_robustness_effects_are_added_error_over_the_trained_model():
    # body.0 reset to step 0: accuracy 0.1 against the trained 0.9 -> +0.8 error; body.2: +0.02
    reinit = {"body.0": [0.1, 0.9], "body.2": [0.88, 0.9], "head": [0.5, 0.9]}
    redraw = {"body.0": 0.12, "body.2": 0.85, "head": 0.3}
    records = [record(s, BOTTOM_UP, reinit=reinit, redraw=redraw) for s in range(3)]
    table = design.robustness_table(design.robustness_long(records)).set_index("layer")
    assert table["reinit"].to_dict() == pytest.approx({"body.0": 0.8, "body.2": 0.02, "head": 0.4})
    assert table["redraw"].to_dict() == pytest.approx({"body.0": 0.78, "body.2": 0.05, "head": 0.6})
    assert table["trained_error"].to_numpy() == pytest.approx(0.1)
    text = design.answer(pd.DataFrame(columns=["measure"]), table.reset_index(), pd.DataFrame())
    assert "first layer +0.800" in text and "worst upper hidden layer (body.2) +0.020" in text
    # 0.1 + 0.8 = 0.9 >= 0.80 on every seed (critical), +0.02 < 0.05 (robust): both hold
    assert "(error 0.90: critical)" in text and "+0.020 [+0.020, +0.020] (robust)" in text
    assert "**reproduced in 1 of 1** (mnist1d/mlp sgd)" in text


def test_layers_sharing_the_input_depth_are_input_layers_not_upper_ones():
    table = pd.DataFrame(
        {
            "testbed": "t",
            "optimizer": "adamw",
            "layer": ["pos", "embed", "blocks.0", "head"],
            "depth": [0, 0, 1, 2],
            "reinit": [0.03, 0.55, 0.10, 0.40],
            "reinit_low": [0.02, 0.50, 0.08, 0.30],
            "reinit_high": [0.04, 0.60, 0.12, 0.50],
            "trained_error": 0.1,
        }
    )
    text = design.answer(pd.DataFrame(columns=["measure"]), table, pd.DataFrame())
    # reset error 0.65 [0.60, 0.70] is below 0.80; +0.10 [0.08, 0.12] is above 0.05
    assert "first layer (embed) +0.550 [+0.500, +0.600] (error 0.65: not critical)" in text
    assert "worst upper hidden layer (blocks.0) +0.100 [+0.080, +0.120] (not robust)" in text
    assert "**not reproduced**" in text
    undecided = table.assign(reinit_high=[0.04, 0.75, 0.12, 0.5])  # 0.85 > 0.80 > 0.60
    assert "(error 0.65: undecided)" in design.answer(
        pd.DataFrame(columns=["measure"]), undecided, pd.DataFrame()
    )


def test_spread_is_the_largest_over_the_smallest_matrix():
    monitor = {"body.0": 1e-4, "body.2": 1e-3, "head": 4e-3}
    spread = design.spread_frame([record(1, BOTTOM_UP, monitor=monitor)])
    assert spread["update"].to_numpy() == pytest.approx(40.0)
    assert spread["gradient"].to_numpy() == pytest.approx(40.0)
    table = design.spread_table(spread)
    assert table.iloc[0]["update_first"] == pytest.approx(40.0)


def test_start_table_shows_where_raw_cka_begins():
    starts = {"body.0": 0.99, "body.2": 0.5, "head": 0.1}
    cka = design.cka_long([record(s, BOTTOM_UP, starts=starts) for s in range(2)])
    table = design.start_table(cka).set_index("layer")["cka0"]
    assert table.to_dict() == pytest.approx(starts)
    one = cka[(cka["seed"] == 0) & (cka["layer"] == "head")]
    assert one["cka_normalised"].tolist() == pytest.approx(normalise_to_start(one["cka"]))


def test_a_trend_smaller_than_the_sesoi_does_not_count_as_reproduced():
    # deeper later (interval above a fold of 1) but inside [1/1.5, 1.5]: negligible
    small = pd.DataFrame(
        [
            {
                "testbed": "t",
                "optimizer": "sgd",
                "measure": "weights",
                "seeds": 5,
                "units": 3,
                "slope": math.log(1.2),
                "ci_low": math.log(1.1),
                "ci_high": math.log(1.3),
                "tau_positive": 5,
                "tau_negative": 0,
                "tau_undefined": 0,
                "tau_median": 0.8,
                "tied_pairs": 0,
                "never": 0,
            }
        ]
    )
    assert design.trend_summary(small).iloc[0]["verdict"] == "deeper later"
    text = design.answer(small, pd.DataFrame(), pd.DataFrame())
    assert "**not reproduced**; 1 deeper later, but by less than a factor 1.5." in text
    big = small.assign(slope=math.log(3.0), ci_low=math.log(2.0), ci_high=math.log(4.0))
    assert "**reproduced**. Over 1" in design.answer(big, pd.DataFrame(), pd.DataFrame())
