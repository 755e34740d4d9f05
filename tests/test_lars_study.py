"""Study 06 (LARS): the design, the per-layer ratio table, the drop contrasts and the answers,
plus the harness pieces the study added (BatchNorm CNN, ``RunConfig.device``,
``comparisons.grid_protocol``).

Expected values are computed here from the formulas (LARS's Algorithm 1, norms by hand), never
copied from a run of the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise import optim
from layerwise.harness import comparisons, data, models, train
from layerwise.harness.config import RunConfig
from layerwise.harness.testbeds import TESTBEDS
from layerwise.harness.tuning import TuningResult
from layerwise.probes import Monitor
from layerwise.studies import lars as design

# --------------------------------------------------------------------------------------------
# the plan


def _by_key(plan):
    return {(c.group.split(" · ")[0], c.bed.config.batch_size): c for c in plan}


def test_plan_has_every_tuned_arm_at_every_batch_size_once():
    plan = design.plan("full")
    keys = [c.key for c in plan]
    assert len(keys) == len(set(keys)) == len(design.ARMS) * len(design.BATCH_SIZES["full"])
    assert set(_by_key(plan)) == {
        (arm, b) for arm in design.ARMS for b in design.BATCH_SIZES["full"]
    }
    for c in plan:
        assert list(c.arms) == [c.design["arm"].item()]
        assert c.bed.name == "fashion_mnist/mlp"


def test_arms_at_one_batch_size_differ_only_in_the_optimizer():
    plan = _by_key(design.plan("full"))
    for batch in design.BATCH_SIZES["full"]:
        configs = {arm: plan[(arm, batch)].arms[arm] for arm in design.ARMS}
        stripped = {
            arm: c.replace(optimizer="sgd", optimizer_options={}, lr=1.0).key()
            for arm, c in configs.items()
        }
        assert len(set(stripped.values())) == 1, stripped
        # the optimizers and their options, named
        sgd = configs["sgd"].optimizer_options
        assert dict(sgd) == {"momentum": 0.9, "weight_decay": 5e-4}
        assert dict(configs["nesterov"].optimizer_options) == {**sgd, "nesterov": True}
        lars = dict(configs["lars"].optimizer_options)
        assert lars == {**sgd, "trust_coefficient": 1e-3}
        assert dict(configs["lars excl. 1-D"].optimizer_options) == {**lars, "exclude_1d": True}
        assert dict(configs["larc"].optimizer_options) == {
            **lars,
            "trust_coefficient": 0.02,
            "trust_clip": True,
        }
        assert {c.optimizer for a, c in configs.items() if "lar" in a} == {"lars"}


def test_batch_sizes_share_the_epoch_budget_warmup_and_poly2_decay():
    plan = _by_key(design.plan("full"))
    n = design.TRAIN_EXAMPLES["fashion_mnist"]
    for arm in design.ARMS:
        base = plan[(arm, 128)].arms[arm]
        for batch in design.BATCH_SIZES["full"]:
            c = plan[(arm, batch)].arms[arm]
            assert c.steps == round(15 * n / batch)  # same examples seen, fewer steps
            assert abs(c.steps * batch - 15 * n) <= batch / 2
            assert c.schedule == "polynomial"
            assert c.schedule_options == {"power": 2.0, "warmup": round(2 * n / batch)}
            assert c.eval_every == c.steps // 8
            # nothing else moves with the batch size
            same = c.replace(
                batch_size=128,
                steps=base.steps,
                schedule_options=base.schedule_options,
                eval_every=base.eval_every,
            )
            assert same.key() == base.key()
    assert plan[("sgd", 8192)].arms["sgd"].steps == 99  # 15 epochs at ~6.6 steps per epoch


def test_the_mlp_is_the_projects_testbed_model():
    config = design.plan("full")[0].bed.config
    bed = TESTBEDS["fashion_mnist/mlp"].config
    assert (config.dataset, config.model, dict(config.model_options)) == (
        bed.dataset,
        bed.model,
        dict(bed.model_options),
    )


def test_every_arm_gets_the_same_grid_budget_under_protocol_v2():
    for c in design.plan("full"):
        grid = c.protocol.grid
        assert len(grid) == 4
        assert np.allclose(np.array(grid[1:]) / np.array(grid[:-1]), 4.0)
        assert len(c.protocol.tune_seeds) >= 3 and c.protocol.max_spacing <= 2
        assert c.protocol.max_extensions == 3
        assert c.protocol.final_seeds == tuple(range(1, 9))
        assert not set(c.protocol.final_seeds) & set(c.protocol.tune_seeds)
        arm = c.design["arm"].item()
        batch = c.bed.config.batch_size
        expected = np.array(design.ARMS[arm].grid) * design.grid_shift(batch)
        assert np.allclose(grid, expected)


def test_grid_shift_is_square_root_scaling_from_128():
    # the lattice itself is tested in test_batch_scaling.py (harness.batch_scaling.grid_shift)
    shifts = [design.grid_shift(b) for b in design.BATCH_SIZES["full"]]
    assert shifts == [1, 4, 4, 16]
    assert design.grid_at("lars", 8192) == (4.0, 16.0, 64.0, 256.0)


def test_design_errors_name_the_bad_value_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"profile 'huge'; valid: 'full', 'large', 'smoke'"):
        design.plan("huge")
    with pytest.raises(ValueError, match=r"tuned arm 'adam'; valid: .*'lars'.*'sgd'"):
        design.grid_at("adam", 128)
    with pytest.raises(ValueError, match="batch size.*-4"):
        design.grid_shift(-4)
    with pytest.raises(ValueError, match=r"network 'vgg'; valid: .*'fashion_mnist/mlp'"):
        design.batch_config("vgg", "sgd", 128)


def test_large_profile_runs_cnns_on_the_device_it_is_given():
    plan = design.plan("large", device="cuda")
    assert {c.bed.name for c in plan} == set(design.SWEEP_NETS["large"])
    assert all(c.bed.config.device == "cuda" for c in plan)
    assert all(c.device == "cuda" for c in design.diagnostic_configs("large", "cuda"))
    cifar = next(c for c in plan if c.bed.name == "cifar10/cnn-bn").bed.config
    assert dict(cifar.model_options) == {"batchnorm": True}
    # the full profile's keys are not touched by a device field at its default
    assert "device" not in design.plan("full")[0].bed.config.to_dict()


# --------------------------------------------------------------------------------------------
# the arms' update rules, against Algorithm 1 computed here


def _tiny_params() -> tuple[nn.Parameter, nn.Parameter, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    b = nn.Parameter(torch.randn(4, dtype=torch.float64))
    return w, b, torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)


def _two_steps(arm: str, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    w, b, gw, gb = _tiny_params()
    opt = optim.build(design.ARMS[arm].optimizer, [w, b], lr, **dict(design.ARMS[arm].options))
    for _ in range(2):
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
    return w.detach(), b.detach()


def _reference(w0, g, lr, *, adapt=True, decay=True, eta=1e-3, clip=False, m=0.9, beta=5e-4):
    """Two LARS steps (You et al. 2017, Algorithm 1, torch's momentum convention: the rate
    multiplies the buffer) with the same gradient, in float64 by hand."""
    w, v = w0.clone(), torch.zeros_like(w0)
    beta = beta if decay else 0.0
    for _ in range(2):
        d = g + beta * w
        lam = 1.0
        if adapt:
            lam = eta * w.norm().item() / (g.norm().item() + beta * w.norm().item() + 1e-9)
            if clip:
                lam = min(lam / lr, 1.0)
        v = m * v + lam * d
        w = w - lr * v
    return w


def test_lars_adapts_every_tensor_as_algorithm_1():
    w0, b0, gw, gb = _tiny_params()
    w, b = _two_steps("lars", 2.0)
    torch.testing.assert_close(w, _reference(w0.detach(), gw, 2.0), rtol=1e-12, atol=0)
    torch.testing.assert_close(b, _reference(b0.detach(), gb, 2.0), rtol=1e-12, atol=0)


def test_lars_excluding_1d_leaves_biases_to_plain_momentum_sgd():
    w0, b0, gw, gb = _tiny_params()
    w, b = _two_steps("lars excl. 1-D", 2.0)
    torch.testing.assert_close(w, _reference(w0.detach(), gw, 2.0), rtol=1e-12, atol=0)
    plain = _reference(b0.detach(), gb, 2.0, adapt=False, decay=False)
    torch.testing.assert_close(b, plain, rtol=1e-12, atol=0)
    # and that is a different step from the adapted one
    assert not torch.allclose(b, _reference(b0.detach(), gb, 2.0))


def test_larc_rate_is_the_smaller_of_lr_and_the_local_rate():
    w0, b0, gw, gb = _tiny_params()
    local = [
        0.02 * t.norm().item() / (g.norm().item() + 5e-4 * t.norm().item())
        for t, g in ((w0.detach(), gw), (b0.detach(), gb))
    ]
    lr = math.sqrt(local[0] * local[1])  # between the two: one tensor is clipped, one is not
    w, b = _two_steps("larc", lr)
    for got, t0, g in ((w, w0, gw), (b, b0, gb)):
        expected = _reference(t0.detach(), g, lr, eta=0.02, clip=True)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    assert min(local) < lr < max(local)


def test_nesterov_arm_is_torchs_nesterov_sgd():
    w, b, gw, gb = _tiny_params()
    reference = [p.detach().clone().requires_grad_() for p in (w, b)]
    ours = _two_steps("nesterov", 0.1)
    sgd = torch.optim.SGD(reference, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    for _ in range(2):
        reference[0].grad, reference[1].grad = gw.clone(), gb.clone()
        sgd.step()
    for got, expected in zip(ours, reference, strict=True):
        torch.testing.assert_close(got, expected.detach(), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# part 1: the ratio table


def _monitor_record(weights: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> dict:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(weights[name])
            p.grad = grads[name].clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, opt, every=1, check_rates=False)
    monitor.before_step(1)
    opt.step()
    monitor.after_step(1)
    return monitor.to_record()


WEIGHTS = {
    "0.weight": torch.tensor([[3.0, 4.0], [0.0, 0.0]]),  # ||w|| = 5
    "0.bias": torch.tensor([0.0, 2.0]),  # 2
    "1.weight": torch.tensor([[6.0, 8.0]]),  # 10
    "1.bias": torch.tensor([0.0]),  # 0
}


def test_ratio_table_is_the_norms_by_hand_in_the_models_order():
    grads_a = {
        "0.weight": torch.tensor([[0.0, 1.0], [0.0, 0.0]]),  # ||g|| = 1
        "0.bias": torch.tensor([0.5, 0.0]),  # 0.5
        "1.weight": torch.tensor([[0.0, 0.25]]),  # 0.25
        "1.bias": torch.tensor([2.0]),  # 2
    }
    grads_b = {k: 3 * v for k, v in grads_a.items()}  # a second seed: gradients 3x larger
    records = [_monitor_record(WEIGHTS, grads_a), _monitor_record(WEIGHTS, grads_b)]
    labels = {"0.weight": "fc1.w", "0.bias": "fc1.b", "1.weight": "head.w", "1.bias": "head.b"}
    table = design.ratio_table(records, step=1, labels=labels)
    assert list(table.columns) == ["fc1.w", "fc1.b", "head.w", "head.b"]
    assert list(table.index) == ["||w||", "||g||", "||w|| / ||g||"]
    # medians over the two records: ||g|| of (1, 3) is 2; ratios of (5/1, 5/3) is 10/3, ...
    expected = pd.DataFrame(
        {
            "fc1.w": [5.0, 2.0, (5 / 1 + 5 / 3) / 2],
            "fc1.b": [2.0, 1.0, (2 / 0.5 + 2 / 1.5) / 2],
            "head.w": [10.0, 0.5, (10 / 0.25 + 10 / 0.75) / 2],
            "head.b": [0.0, 4.0, 0.0],
        },
        index=table.index,
    )
    pd.testing.assert_frame_equal(table, expected, rtol=1e-6, check_names=False)


def test_ratio_table_names_the_steps_it_has():
    record = _monitor_record(WEIGHTS, {k: torch.ones_like(v) for k, v in WEIGHTS.items()})
    with pytest.raises(ValueError, match=r"step 7 is not monitored.*\[1\]"):
        design.ratio_table([record], step=7)


def test_tensor_table_labels_and_the_default_initialisations_norm():
    table = design.tensor_table("fashion_mnist/cnn-small-bn").set_index("label")
    assert list(table.index) == [
        "conv1.w",
        "bn1.w",
        "bn1.b",
        "conv2.w",
        "bn2.w",
        "bn2.b",
        "fc1.w",
        "bn3.w",
        "bn3.b",
        "head.w",
        "head.b",
    ]
    # E||W||^2 = fan_out / 3 for U(-1/sqrt(fan_in), 1/sqrt(fan_in)); a BN gain of ones
    assert table.loc["conv2.w", "init_norm"] == pytest.approx(math.sqrt(32 / 3))
    assert table.loc["fc1.w", "init_norm"] == pytest.approx(math.sqrt(128 / 3))
    assert table.loc["head.b", "init_norm"] == pytest.approx(math.sqrt(10 / (3 * 128)))
    assert table.loc["bn3.w", "init_norm"] == pytest.approx(math.sqrt(128))
    assert table.loc["bn3.b", "init_norm"] == 0.0
    # and a freshly built model's big tensors sit close to it
    torch.manual_seed(0)
    model = models.build("cnn", "fashion_mnist", batchnorm=True)
    norms = {n: p.norm().item() for n, p in model.named_parameters()}
    for row in design.tensor_table("fashion_mnist/cnn-small-bn").itertuples():
        if row.ndim >= 2 and row.label != "conv1.w":  # conv1 has only 144 entries
            assert norms[row.name] == pytest.approx(row.init_norm, rel=0.05), row.label


@pytest.mark.usefixtures("one_thread")
def test_step_one_of_a_diagnostic_run_is_the_initial_weights_and_first_batch_gradient():
    config = design.diagnostic_config("fashion_mnist/mlp", 128, seed=4, first_step=True)
    assert (config.steps, config.monitor_every) == (1, 1)
    frame = design.ratio_frame([train.run(config)]).set_index("name")
    # by hand: the seeded model, the first batch of the seeded data order, one backward pass
    dataset = data.load("fashion_mnist")
    torch.manual_seed(4)
    model = models.build("mlp", dataset.spec)
    generator = torch.Generator().manual_seed(4 + train.BATCH_SEED_OFFSET)
    idx = torch.randperm(len(dataset.train), generator=generator)[:128]
    F.cross_entropy(model(dataset.train.x[idx]), dataset.train.y[idx]).backward()
    for name, p in model.named_parameters():
        assert frame.loc[name, "w_norm"] == pytest.approx(p.norm().item(), rel=1e-5)
        assert frame.loc[name, "g_norm"] == pytest.approx(p.grad.norm().item(), rel=1e-4)
        assert frame.loc[name, "ratio"] == pytest.approx(
            p.norm().item() / p.grad.norm().item(), rel=1e-4
        )
    assert frame.loc["head.weight", "label"] == "head.w"
    assert frame["epoch"].iloc[0] == pytest.approx(128 / 54_000)


def test_diagnostic_runs_differ_from_their_first_step_only_in_length():
    configs = design.diagnostic_configs("full")  # one-step runs first, then the same runs long
    half = len(configs) // 2
    for one, long in zip(configs[:half], configs[half:], strict=True):
        assert (
            one.replace(steps=long.steps, eval_every=long.eval_every).replace(
                monitor_every=long.monitor_every
            )
            == long
        )
        assert one.steps == 1 and long.steps == round(5 * 54_000 / long.batch_size)
        assert long.optimizer == "sgd" and long.lr == design.DIAGNOSTIC_LR
        assert long.schedule == "constant"
        assert long.schedule_options == {"warmup": round(2 * 54_000 / long.batch_size)}
    assert {c.batch_size for c in configs} == {128, 4096}
    assert {c.seed for c in configs} == {1, 2, 3}


def _ratio_rows(span: float, falls: bool, seeds=(1, 2)) -> pd.DataFrame:
    """A made-up ratio frame: three weight tensors whose step-1 ratios span ``span``, then
    five later steps where every ratio halves (``falls``) or doubles; a bias at step 1."""
    rows = []
    for seed in seeds:
        for label, r1, w in (("fc1.w", 1.0, 9.0), ("fc2.w", span**0.5, 9.0), ("head.w", span, 2.0)):
            for step in (1, 10, 20, 30, 40, 50):
                ratio = r1 if step == 1 else r1 * (0.5 if falls else 2.0)
                rows.append(
                    {
                        "net": "n",
                        "batch_size": 128,
                        "seed": seed,
                        "step": step,
                        "epoch": step / 100,
                        "name": label,
                        "label": label,
                        "kind": "dense",
                        "ndim": 2,
                        "init_norm": w,
                        "w_norm": w,
                        "g_norm": w / ratio,
                        "ratio": ratio,
                    }
                )
        rows.append({**rows[0], "name": "b", "label": "fc1.b", "ndim": 1, "ratio": 0.25})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("span", "falls", "verdict"),
    [
        (40.0, True, "reproduced"),
        (40.0, False, "span only"),
        (4.0, True, "falls only"),
        (4.0, False, "not reproduced"),
    ],
)
def test_ratio_summary_gives_each_verdict(span, falls, verdict):
    row = design.ratio_summary(_ratio_rows(span, falls)).iloc[0]
    assert row["verdict"] == verdict
    assert row["span"] == pytest.approx(span)
    assert (row["lowest"], row["highest"]) == ("fc1.w", "head.w")
    assert row["falling"] == (3 if falls else 0) and row["weights"] == 3
    assert row["fold_low"] == pytest.approx(0.5 if falls else 2.0)
    assert row["w_span"] == pytest.approx(4.5) and row["init_dev"] == pytest.approx(0.0)
    assert row["bias_over_weight"] == pytest.approx(0.25 / np.median([1.0, span**0.5, span]))
    text = design.answer_ratios(design.ratio_summary(_ratio_rows(span, falls)))
    assert f"span **{span:.1f}x**" in text and f"**{verdict}**" in text
    assert "holds in " + ("1" if verdict == "reproduced" else "0") + " of 1" in text


# --------------------------------------------------------------------------------------------
# part 2: the linear-scaled arm, the drop contrasts, the answer


def _result(accs: dict[str, list[float | None]], best: dict[str, float], interior=True):
    """A TuningResult holding final runs (seeds 1..n) with the given test accuracies; None is a
    diverged run."""
    final, summary, curves = [], [], []
    for arm, values in accs.items():
        for seed, acc in enumerate(values, 1):
            final.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "lr": best[arm],
                    "status": "ok" if acc is not None else "diverged",
                    "test_acc": acc,
                    "val_acc": acc,
                }
            )
            for step in (10, 20):
                curves.append({"arm": arm, "seed": seed, "step": step, "val_acc": acc or 0.0})
        summary.append(
            {
                "arm": arm,
                "best_lr": best[arm],
                "interior": interior,
                "failures": sum(v is None for v in values),
                "tune_seeds": 3,
                "spacing": 2.0,
            }
        )
    return TuningResult(
        "acc", pd.DataFrame(), pd.DataFrame(final), pd.DataFrame(summary), pd.DataFrame(curves)
    )


def test_linear_scaling_multiplies_sgds_rate_at_128_by_b_over_128():
    plan = design.plan("full")
    seeds = list(range(1, 9))
    merged = {
        ("B=128", "fashion_mnist/mlp"): _result({"sgd": [0.9] * 8}, {"sgd": 0.0905}),
        ("B=4096", "fashion_mnist/mlp"): _result({"sgd": [0.8] * 8}, {"sgd": 0.7}),
        ("B=8192", "fashion_mnist/mlp"): _result({"sgd": [0.7] * 8}, {"sgd": 0.3}),
    }
    configs = design.linear_scaling_configs(merged, plan)
    assert set(configs) == {("B=4096", "fashion_mnist/mlp"), ("B=8192", "fashion_mnist/mlp")}
    sgd = _by_key(plan)
    for (group, _), runs in configs.items():
        batch = int(group[2:])
        assert [c.seed for c in runs] == seeds
        for c in runs:
            assert c.lr == pytest.approx(0.0905 * batch / 128, rel=1e-4)
            assert c.replace(lr=1.0, seed=0) == sgd[("sgd", batch)].arms["sgd"].replace(
                lr=1.0, seed=0
            )


def _merged(lars_big, sgd_big, lars_small=None, sgd_small=None, n=6):
    small = {"sgd": sgd_small or [0.88] * n, "lars": lars_small or [0.87] * n}
    best = {"sgd": 0.1, "lars": 4.0, design.LINEAR: 6.4}
    return {
        ("B=128", "t"): _result(small, best),
        ("B=8192", "t"): _result(
            {"sgd": sgd_big, "lars": lars_big, design.LINEAR: [None] * n}, best
        ),
    }


def test_drop_contrast_is_the_difference_of_the_changes_per_seed():
    rng = np.random.default_rng(0)
    noise = list(rng.normal(0, 0.002, 6))
    sgd_small = [0.88 + e for e in noise]
    lars_small = [0.87 - e for e in noise]
    sgd_big = [0.80 + 2 * e for e in noise]
    lars_big = [0.84 + e / 2 for e in noise]
    drops = design.drop_contrasts(_merged(lars_big, sgd_big, lars_small, sgd_small)).set_index(
        "arm"
    )
    by_hand = np.mean(
        [
            (a - a0) - (b - b0)
            for a, a0, b, b0 in zip(lars_big, lars_small, sgd_big, sgd_small, strict=True)
        ]
    )
    assert drops.loc["lars", "effect"] == pytest.approx(by_hand)
    assert drops.loc["lars", "change_arm"] == pytest.approx(np.mean(lars_big) - np.mean(lars_small))
    assert drops.loc["lars", "sesoi"] == pytest.approx(0.1 * (1 - np.mean(sgd_small)))
    assert drops.loc["lars", "outcome"] == "better"  # +0.05 with tiny noise
    assert drops.loc[design.LINEAR, "outcome"] == design.FAILED  # every run diverged


@pytest.mark.parametrize(
    ("lars_big", "outcome"),
    [
        ([0.84, 0.841, 0.839, 0.842, 0.84, 0.838], "better"),
        ([0.76, 0.761, 0.759, 0.762, 0.76, 0.758], "worse"),
        ([0.79, 0.7905, 0.7895, 0.7902, 0.79, 0.7898], "equivalent"),
        ([0.70, 0.88, 0.75, 0.86, 0.72, 0.83], "inconclusive"),
    ],
)
def test_drop_contrast_gives_each_outcome(lars_big, outcome):
    drops = design.drop_contrasts(_merged(lars_big, [0.80] * 6))
    assert drops.set_index("arm").loc["lars", "outcome"] == outcome


def test_untuned_rates_keep_a_drop_contrast_out_of_the_family():
    merged = _merged([0.84] * 3 + [0.841] * 3, [0.80] * 6)
    merged[("B=128", "t")].summary["interior"] = False
    row = design.drop_contrasts(merged).set_index("arm").loc["lars"]
    assert (row["tuned"], row["outcome"]) == (False, "inconclusive")


def _drops(outcomes: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "testbed": "t",
                "arm": "lars",
                "batch_size": b,
                "effect": 0.01,
                "ci_low": -0.01,
                "ci_high": 0.03,
                "mde": 0.02,
                "sesoi": 0.01,
                "outcome": o,
                "tuned": True,
            }
            for b, o in outcomes.items()
        ]
    )


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        ({1024: "worse", 4096: "better", 8192: "better"}, "**reproduced**"),
        ({4096: "better", 8192: "inconclusive"}, "**partly reproduced**"),
        ({4096: "equivalent", 8192: "worse"}, "**not reproduced**"),
        ({4096: "equivalent", 8192: "inconclusive"}, "**undecided**"),
    ],
)
def test_answer_gives_each_verdict_on_lars_at_the_large_batches(outcomes, verdict):
    text = design.answer_batch_scaling(_drops(outcomes), pd.DataFrame())
    assert verdict in text
    if verdict == "**not reproduced**":
        assert "Nado et al. (2021)" in text
    assert f"{len(outcomes)} of {len(outcomes)} drop contrasts could not resolve" in text


def test_levels_list_an_arm_whose_runs_all_diverged_instead_of_failing():
    merged = _merged([0.84] * 6, [0.80] * 6)
    levels = design.compare_levels(merged)
    dead = levels.set_index(["group", "arm"]).loc[("B=8192", design.LINEAR)]
    assert dead["outcome"] == design.FAILED
    assert set(levels["arm"]) == {"lars", design.LINEAR}
    shown = design.level_verdict_table(levels)
    assert shown.loc[shown["arm"] == design.LINEAR, "arm acc"].item() == "-"
    text = design.answer_batch_scaling(design.drop_contrasts(merged), levels)
    assert "sgd linear-scaled failed (every final run diverged)" in text


def test_accuracy_table_counts_failures_and_keeps_intervals_in_range():
    table = design.accuracy_table(_merged([0.84, 0.99, 1.0, 1.0, 1.0, 1.0], [0.80] * 6))
    dead = table[table["arm"] == design.LINEAR].iloc[0]
    assert (dead["seeds"], dead["failures"]) == (0, 6) and math.isnan(dead["test_acc"])
    assert table["ci_high"].max() <= 1.0


# --------------------------------------------------------------------------------------------
# harness additions: BatchNorm CNN, RunConfig.device, grid_protocol


def test_batchnorm_cnn_normalises_every_conv_and_the_hidden_layer_without_biases():
    plain = models.build("cnn", "fashion_mnist")
    bn = models.build("cnn", "fashion_mnist", batchnorm=True)
    norms = [m for m in bn.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert [type(m).__name__ for m in norms] == ["BatchNorm2d", "BatchNorm2d", "BatchNorm1d"]
    layers = [m for m in bn.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [m.bias is None for m in layers] == [True, True, True, False]  # the head keeps its
    # the default model is unchanged: the same tensors as before the option existed
    assert [n for n, _ in plain.named_parameters()] == [
        "body.0.weight",
        "body.0.bias",
        "body.3.weight",
        "body.3.bias",
        "body.7.weight",
        "body.7.bias",
        "head.weight",
        "head.bias",
    ]
    assert bn(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_batchnorm_option_is_checked():
    with pytest.raises(
        ValueError,
        match=r"batchnorm applies to image data \(fashion_mnist, cifar10\) only, not mnist1d",
    ):
        models.build("cnn", "mnist1d", batchnorm=True)
    with pytest.raises(ValueError, match="batchnorm must be True or False, got 'yes'"):
        models.build("cnn", "fashion_mnist", batchnorm="yes")
    with pytest.raises(ValueError, match="batchnorm"):
        models.build("mlp", "fashion_mnist", batchnorm=True)  # not an mlp option


def test_device_is_part_of_the_key_except_at_its_default(tiny_config):
    assert tiny_config.replace(device="cpu").key() == tiny_config.key()
    assert "device" not in tiny_config.to_dict()
    gpu = tiny_config.replace(device="cuda:1")
    assert gpu.key() != tiny_config.key()
    assert RunConfig.from_dict(gpu.to_dict()) == gpu
    with pytest.raises(
        ValueError, match=r"device must be one of cpu, cuda, cuda:<index>, mps; got 'gpu'"
    ):
        tiny_config.replace(device="gpu")


def test_a_run_records_its_device_and_refuses_a_missing_gpu(tiny_config, one_thread):
    record = train.run(tiny_config.replace(steps=2, device="cpu"))
    assert record["env"]["device"] == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"'cuda'.*torch.cuda.is_available\(\) is False"):
            train.run(tiny_config.replace(steps=2, device="cuda"))


def test_grid_protocol_keeps_the_grid_budget_of_the_other_arms():
    proto = comparisons.grid_protocol("fashion_mnist", (0.25, 1.0, 4.0, 16.0))
    base = comparisons.protocol("fashion_mnist", "sgd")
    assert proto == comparisons.Protocol((0.25, 1.0, 4.0, 16.0), base.tune_seeds, base.final_seeds)
    assert comparisons.grid_protocol("cifar10", (1, 4, 16, 64)).final_seeds == (1, 2, 3, 4, 5)
    smoke = comparisons.grid_protocol("fashion_mnist", (0.25, 1.0, 4.0, 16.0), "smoke")
    assert smoke.grid == (1.0, 4.0, 16.0) and smoke.tune_seeds == (100,)
    with pytest.raises(ValueError, match="4 positive rates"):
        comparisons.grid_protocol("fashion_mnist", (1.0, 4.0, 16.0))
    with pytest.raises(ValueError, match="factor 4 each"):
        comparisons.grid_protocol("fashion_mnist", (1.0, 2.0, 4.0, 8.0))
    with pytest.raises(ValueError, match="at least 5, none of them a tuning seed"):
        comparisons.grid_protocol("fashion_mnist", (1, 4, 16, 64), final_seeds=(1, 2))
    with pytest.raises(ValueError, match="none of them a tuning seed"):
        comparisons.grid_protocol("fashion_mnist", (1, 4, 16, 64), final_seeds=range(98, 106))
