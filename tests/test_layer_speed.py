"""Study 02's tables from hand-made convergence records whose answers are known."""

from __future__ import annotations

import pytest

from layerwise.harness import testbeds
from layerwise.harness.config import FORMAT_VERSION, RunConfig
from layerwise.harness.store import Store
from layerwise.harness.tuning import stored_best_lr
from layerwise.studies import layer_convergence as layer_speed


def record(seed, cka, reinit, metric="val_acc", model="mlp", distance=None):
    """A run record with layers ``a`` (depth 0), ``b`` (depth 1) and ``head`` (depth 2);
    ``cka`` / ``reinit``: layer -> series over steps (0, 10, 20) / reinit steps (0, 20)."""
    depth = {"a": 0, "b": 1, "head": 2}
    distance = distance or {n: [1.0, 0.5, 0.0] for n in depth}
    return {
        "key": f"k{seed}",
        "config": {
            "dataset": "mnist1d",
            "model": model,
            "optimizer": "adamw",
            "lr": 0.01,
            "seed": seed,
        },
        "steps_done": 20,
        "convergence": {
            "step": [0, 10, 20],
            "reinit_step": [0, 20],
            "metric": metric,
            "layers": {
                n: {"depth": d, "order": d, "cka": cka[n], "reinit": reinit[n]}
                for n, d in depth.items()
            },
            "params": {
                f"{n}.weight": {
                    "layer": n,
                    "depth": d,
                    "distance": distance[n],
                    "movement": [0.0, 0.1, 0.2],
                    "rotation": [0.0, 0.01, 0.02],
                }
                for n, d in depth.items()
            },
        },
    }


BOTTOM_UP = {"a": [0.5, 0.95, 1.0], "b": [0.2, 0.5, 1.0], "head": [0.1, 0.2, 1.0]}
TOP_DOWN = {"a": [0.2, 0.5, 1.0], "b": [0.5, 0.95, 1.0], "head": [0.95, 0.99, 1.0]}
# first layer reset -> 90% error; hidden layer b -> 2 points worse than trained (10% error)
ZBS = {"a": [0.10, 0.90], "b": [0.88, 0.90], "head": [0.10, 0.90]}


def test_ordering_counts_seeds_and_applies_the_four_of_five_rule():
    runs = [record(s, BOTTOM_UP, ZBS) for s in range(4)] + [record(4, TOP_DOWN, ZBS)]
    row = layer_speed.ordering_table(runs).iloc[0]
    assert row["CKA: bottom-up in"] == "4/5"
    assert row["CKA: verdict"] == "reproduced"
    runs = [record(s, BOTTOM_UP, ZBS) for s in range(3)] + [
        record(s, TOP_DOWN, ZBS) for s in (3, 4)
    ]
    row = layer_speed.ordering_table(runs).iloc[0]
    assert row["CKA: bottom-up in"] == "3/5"
    assert row["CKA: verdict"] == "not reproduced"
    # top-down in every seed: Spearman rho of depth vs time is -1 (times 20, 10, 0)
    row = layer_speed.ordering_table([record(s, TOP_DOWN, ZBS) for s in range(3)]).iloc[0]
    assert row["CKA: rho (95% CI)"].startswith("-1.00")


def test_criticality_needs_a_critical_first_layer_and_robust_hidden_layers():
    row = layer_speed.criticality_table([record(s, BOTTOM_UP, ZBS) for s in range(3)]).iloc[0]
    assert row["verdict"] == "reproduced"
    assert row["first layer reset: error (95% CI)"].startswith("0.900")
    assert row["worst upper hidden reset: added error (95% CI)"].startswith("0.020")
    fragile = {**ZBS, "b": [0.5, 0.90]}  # resetting b costs 40 points
    row = layer_speed.criticality_table([record(s, BOTTOM_UP, fragile) for s in range(3)])
    assert row.iloc[0]["verdict"] == "not reproduced"
    # a language model's metric is a loss: it does not enter
    text = [record(s, BOTTOM_UP, ZBS, metric="neg_val_loss") for s in range(2)]
    assert layer_speed.criticality_table(text).empty


def test_times_are_fractions_of_training():
    times = layer_speed.times_long([record(0, BOTTOM_UP, ZBS)])
    cka = times[times["measure"] == "CKA >= 0.9"].set_index("unit")["fraction"]
    assert cka.to_dict() == {"a": 0.5, "b": 1.0, "head": 1.0}
    weights = times[times["measure"] != "CKA >= 0.9"]
    assert (weights["fraction"] == 1.0).all()  # distance reaches < 0.1 only at the end


def test_stored_best_lr_reads_the_tuning_seed_of_the_same_config(tmp_path, tiny_config):
    store = Store(tmp_path)
    other = tiny_config.replace(batch_size=32)
    for config, lr, seed, acc in [
        (tiny_config, 0.001, 0, 0.5),
        (tiny_config, 0.01, 0, 0.7),
        (tiny_config, 0.1, 0, 0.6),
        (tiny_config, 0.1, 1, 0.99),  # a final seed: not a tuning run
        (other, 1.0, 0, 0.99),  # another config
    ]:
        c = config.replace(lr=lr, seed=seed)
        store.put(
            "s",
            {
                "format": FORMAT_VERSION,
                "key": c.key(),
                "config": c.to_dict(),
                "status": "ok",
                "final": {"val_acc": acc},
                "wall_time_s": 1.0,
                "diverged_at": None,
            },
        )
    assert stored_best_lr(store, "s", tiny_config.replace(lr=5.0)) == pytest.approx(0.01)
    assert stored_best_lr(store, "s", tiny_config.replace(batch_size=16)) is None


def test_instrumented_runs_use_the_given_rate_and_fresh_seeds():
    bed = testbeds.testbed("mnist1d/mlp", protocol=1)
    runs = layer_speed.instrumented(bed, None, lr=0.02)
    assert [c.seed for c in runs] == [1, 2, 3, 4, 5]
    assert all(c.lr == 0.02 for c in runs)
    assert runs[0].probe_every == 8000 // (layer_speed.CHECKPOINTS - 1)
    assert isinstance(runs[0], RunConfig)
