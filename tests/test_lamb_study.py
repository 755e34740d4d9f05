"""Study 07 (LAMB): the design (arms, budgets, grids, the two protocols), LAMB with its trust
ratio forced to 1, the per-tensor rate frame and the answer.

Expected values are computed here from the formulas (AdamW's and LAMB's steps in float64 by
hand, square roots, token counts), never copied from a run of the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from layerwise.harness import batch_scaling, comparisons
from layerwise.harness.tuning import TuningResult
from layerwise.optim import LAMB
from layerwise.studies import lamb as design

TEXT, IMAGE = design.TEXT, design.IMAGE


def _by_key(plan):
    return {(c.bed.name, c.design["arm"].item(), c.bed.config.batch_size): c for c in plan}


# --------------------------------------------------------------------------------------------
# the plan


def test_plan_runs_adamw_and_lamb_everywhere_and_the_ablations_at_the_two_largest_text_batches():
    plan = design.plan("full")
    keys = [c.key for c in plan]
    assert len(keys) == len(set(keys))
    got = set(_by_key(plan))
    text, image = design.BATCH_SIZES["full"][TEXT], design.BATCH_SIZES["full"][IMAGE]
    expected = {(TEXT, a, b) for a in ("adamw", "lamb") for b in text}
    expected |= {(IMAGE, a, b) for a in ("adamw", "lamb") for b in image}
    expected |= {(TEXT, a, b) for a in design.ABLATIONS for b in (128, 256)}
    assert got == expected
    for sizes in (text, image):
        assert len(sizes) == 6 and sizes[-1] == 32 * sizes[0]
        assert all(b == 2 * a for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    # B0 comes first on each testbed (the sqrt-scaled arms need it)
    firsts = {}
    for c in plan:
        firsts.setdefault(c.bed.name, c.bed.config.batch_size)
    assert firsts == {TEXT: 8, IMAGE: 16} == design.base_batches("full")
    assert design.verdict_batches("full") == {TEXT: (128, 256), IMAGE: (256, 512)}


def test_large_profile_has_the_ablations_everywhere_on_the_device_it_is_given():
    plan = design.plan("large", device="cuda")
    assert {c.bed.name for c in plan} == {design.TEXT_LARGE, IMAGE}
    assert len(plan) == 2 * 6 * 5
    assert all(c.bed.config.device == "cuda" for c in plan)
    text = next(c for c in plan if c.bed.name == design.TEXT_LARGE).bed.config
    assert dict(text.model_options) == {}  # nanoGPT's CPU model, the project testbed's
    assert text.steps * 12 * 64 == 6_291_456
    assert design.BATCH_SIZES["large"][design.TEXT_LARGE] == (12, 24, 48, 96, 192, 384)
    # the runs made from the plan keep its device: the sqrt-scaled and the monitored reruns
    merged = {
        (f"B={b}", bed): _result(
            {"adamw": [0.5] * 3, "lamb": [0.5] * 3}, {"adamw": 1e-3, "lamb": 1e-2}
        )
        for bed, sizes in design.BATCH_SIZES["large"].items()
        for b in (sizes[0], sizes[-1])
    }
    base = design.base_batches("large")
    scaled = batch_scaling.scaled_configs(merged, plan, "lamb", "sqrt", base)
    monitored = design.monitored_configs(merged, plan)
    assert scaled and monitored
    assert {c.device for runs in scaled.values() for c in runs} == {"cuda"}
    assert {c.device for _, c in monitored} == {"cuda"}
    # the full profile's keys are not touched by a device field at its default
    assert "device" not in design.plan("full")[0].bed.config.to_dict()


def test_adamw_and_lamb_differ_only_in_the_optimizer_and_ablations_in_their_switch():
    plan = _by_key(design.plan("full"))
    for (bed, arm, batch), c in plan.items():
        config = c.arms[arm]
        adamw = plan[(bed, "adamw", batch)].arms["adamw"]
        stripped = config.replace(optimizer="adamw", optimizer_options=adamw.optimizer_options)
        assert stripped.replace(lr=1.0) == adamw.replace(lr=1.0)
        if arm == "adamw":
            continue
        lamb = plan[(bed, "lamb", batch)].arms["lamb"]
        assert lamb.optimizer_options == adamw.optimizer_options  # the optimizer alone differs
        diff = {
            k: v for k, v in config.optimizer_options.items() if lamb.optimizer_options.get(k) != v
        }
        assert set(config.optimizer_options) - set(lamb.optimizer_options) == set(diff)
        expected = {
            "lamb": {},
            "lamb trust=1": {"layer_adaptation": False},
            "lamb no bias corr.": {"bias_correction": False},
            "lamb excl. 1-D": {"exclude_1d": True},
        }[arm]
        assert diff == expected, arm
    text = plan[(TEXT, "lamb", 8)].arms["lamb"]
    assert dict(text.optimizer_options) == {"weight_decay": 0.1, "betas": (0.9, 0.99), "eps": 1e-8}
    assert (text.grad_clip, dict(text.rule)) == (1.0, {"name": "uniform"})
    assert dict(text.model_options) == {"depth": 2, "width": 64}
    image = plan[(IMAGE, "lamb", 16)].arms["lamb"]
    assert dict(image.optimizer_options) == {"weight_decay": 0.0, "eps": 1e-8}


def test_every_batch_size_spends_the_same_tokens_or_examples():
    plan = _by_key(design.plan("full"))
    for (bed, arm, batch), c in plan.items():
        config = c.arms[arm]
        if bed == TEXT:
            assert config.block == 64
            assert config.steps * batch * config.block == 1_638_400  # tokens, exactly
        else:
            assert config.steps * batch == 81_920  # examples, exactly
        assert config.schedule == "polynomial"
        assert config.schedule_options == {"power": 1.0, "warmup": round(0.05 * config.steps)}
        assert config.eval_every == config.steps // 8
        # nothing else moves with the batch size
        base = plan[(bed, arm, design.BATCH_SIZES["full"][bed][-2])].arms[arm]
        same = config.replace(
            batch_size=base.batch_size,
            steps=base.steps,
            schedule_options=base.schedule_options,
            eval_every=base.eval_every,
        )
        assert same.key() == base.key()
    assert plan[(TEXT, "adamw", 256)].arms["adamw"].steps == 100
    assert plan[(IMAGE, "adamw", 16)].arms["adamw"].steps == 5120


def test_every_arm_gets_protocol_v2_on_its_grid_moved_by_square_root_scaling():
    for c in design.plan("full"):
        arm, batch = c.design["arm"].item(), c.bed.config.batch_size
        proto = c.protocol
        assert len(proto.grid) == 4 and np.allclose(np.diff(np.log(proto.grid)), math.log(4))
        assert len(proto.tune_seeds) >= 3 and proto.max_spacing <= 2
        assert proto.final_seeds == ((1, 2, 3) if c.bed.name == TEXT else tuple(range(1, 11)))
        assert not set(proto.final_seeds) & set(proto.tune_seeds)
        b0 = design.base_batches("full")[c.bed.name]
        k = math.floor(math.log(math.sqrt(batch / b0), 4) + 0.5)  # by hand
        assert np.allclose(proto.grid, np.array(design.ARMS[arm][2]) * 4.0**k)
    grids = {arm: spec[2] for arm, spec in design.ARMS.items()}
    assert grids["adamw"] == grids["lamb trust=1"] == comparisons.COARSE_GRIDS["adamw"]
    assert grids["lamb"] == grids["lamb no bias corr."] == grids["lamb excl. 1-D"]


def test_design_errors_name_the_bad_value_and_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"unknown profile 'huge'; valid: 'full', 'large', 'smoke'"
    ):
        design.plan("huge")
    with pytest.raises(ValueError, match=r"unknown arm 'adam'; valid: 'adamw', 'lamb'"):
        design.batch_config(TEXT, "adam", 8)
    with pytest.raises(ValueError, match=r"unknown full testbed 'tinyshakespeare/transformer'"):
        design.batch_config(design.TEXT_LARGE, "lamb", 8)
    with pytest.raises(ValueError, match="batch size must be a whole number >= 1, got 0"):
        design.batch_config(TEXT, "lamb", 0)


def test_arm_table_states_each_switch():
    table = design.arm_table().set_index("arm")
    assert table.loc["adamw", "layer_adaptation"] == False  # noqa: E712 - numpy bools
    assert table.loc["lamb", "layer_adaptation"] == True  # noqa: E712
    assert table.loc["lamb trust=1", "layer_adaptation"] == False  # noqa: E712
    assert table.loc["lamb no bias corr.", "bias_correction"] == False  # noqa: E712
    assert table.loc["lamb excl. 1-D", "exclude_1d"] == True  # noqa: E712
    assert table.loc["lamb sqrt-scaled", f"B on {TEXT}"] == "16, 32, 64, 128, 256"
    assert table.loc["lamb excl. 1-D", f"B on {IMAGE}"] == "-"


# --------------------------------------------------------------------------------------------
# LAMB with the trust ratio forced to 1 is AdamW


def _adamw_by_hand(w0, grads, lr, wd, b1, b2, eps):
    """AdamW (Loshchilov & Hutter), float64, one tensor: w <- w - lr (m_hat / (sqrt(v_hat) +
    eps) + wd w), which at trust ratio 1 is LAMB's step ``w - lr * r`` as well."""
    w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        w = w - lr * (m_hat / (v_hat.sqrt() + eps) + wd * w)
    return w


@pytest.mark.parametrize("foreach", [True, False])
def test_lamb_with_the_ratio_forced_to_1_takes_adamws_step(foreach):
    torch.manual_seed(0)
    w0 = torch.randn(3, 2, dtype=torch.float64)
    b0 = torch.randn(3, dtype=torch.float64)
    grads = [(torch.randn(3, 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64))]
    grads += [(torch.randn(3, 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64))]
    grads += [(torch.randn(3, 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64))]
    options = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    opt = LAMB([w, b], layer_adaptation=False, foreach=foreach, **options)
    ref = [w0.clone().requires_grad_(), b0.clone().requires_grad_()]
    adamw = torch.optim.AdamW(ref, **options)
    for gw, gb in grads:
        w.grad, b.grad = gw.clone(), gb.clone()
        ref[0].grad, ref[1].grad = gw.clone(), gb.clone()
        opt.step()
        adamw.step()
    for got, start, g in ((w, w0, [gw for gw, _ in grads]), (b, b0, [gb for _, gb in grads])):
        expected = _adamw_by_hand(start, g, 0.05, 0.1, 0.9, 0.99, 1e-8)
        torch.testing.assert_close(got.detach(), expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(w.detach(), ref[0].detach(), rtol=1e-12, atol=1e-15)
    assert float(opt.state[w]["trust_ratio"]) == 1.0
    # and LAMB itself rescales that step: ||dw|| = lr ||w|| (phi = identity), not AdamW's
    w2 = w0.clone().requires_grad_()
    lamb = LAMB([w2], foreach=foreach, **options)
    w2.grad = grads[0][0].clone()
    lamb.step()
    assert float((w2.detach() - w0).norm()) == pytest.approx(0.05 * float(w0.norm()), rel=1e-12)
    one_step = _adamw_by_hand(w0, [grads[0][0]], 0.05, 0.1, 0.9, 0.99, 1e-8)
    assert not torch.allclose(w2.detach(), one_step)


def test_layer_adaptation_must_be_a_bool():
    with pytest.raises(ValueError, match="LAMB layer_adaptation must be True or False, got 'no'"):
        LAMB([torch.zeros(2, requires_grad=True)], layer_adaptation="no")


# --------------------------------------------------------------------------------------------
# the paper's protocol: sqrt scaling from B0, per testbed


def test_paper_protocol_scales_each_testbeds_b0_rate_by_sqrt_b_over_b0(monkeypatch):
    plan = design.plan("full")
    merged = {}
    for bed, sizes in design.BATCH_SIZES["full"].items():
        for b in sizes:
            merged[(f"B={b}", bed)] = _result(
                {"adamw": [2.0, 2.1, 2.2], "lamb": [2.0, 2.1, 2.2]},
                {"adamw": 0.001 if b == sizes[0] else 0.5, "lamb": 0.03 if b == sizes[0] else 0.7},
            )
    seen = []

    def fake_run(configs, study, **kwargs):
        seen.extend(configs)
        return [_record(c) for c in configs]

    monkeypatch.setattr(batch_scaling, "run_stored", fake_run)
    out = design.add_scaled(merged, plan, "07_lamb")
    for (group, bed), result in out.items():
        b, b0 = batch_scaling.batch_of(group), design.base_batches("full")[bed]
        summary = result.summary.set_index("arm")
        if b == b0:
            assert set(summary.index) == {"adamw", "lamb"}
            continue
        for scaled, lr0 in (
            ("adamw sqrt-scaled", 0.001),
            ("lamb sqrt-scaled", 0.03),
        ):
            lr = summary.loc[scaled, "best_lr"]
            assert lr == pytest.approx(lr0 * math.sqrt(b / b0), rel=5e-4)
    assert len(seen) == 2 * (5 + 5) * 3  # two arms, five batches above B0 per testbed, 3 seeds
    assert {c.optimizer for c in seen} == {"adamw", "lamb"}


def _record(config):
    return {
        "key": config.key(),
        "config": config.to_dict(),
        "status": "ok",
        "diverged_at": None,
        "steps_done": config.steps,
        "curves": {"step": [1, 2], "val_loss": [2.5, 2.4], "val_acc": [0.5, 0.6]},
        "final": {"val_loss": 2.4, "test_loss": 2.45, "val_acc": 0.6, "test_acc": 0.6},
        "wall_time_s": 1.0,
    }


def _result(values, best, metric="loss", interior=True):
    """Final runs on seeds 1..n with the given test metric; None is a diverged run."""
    final, summary, curves = [], [], []
    for arm, per_seed in values.items():
        for seed, v in enumerate(per_seed, 1):
            status = "ok" if v is not None else "diverged"
            final.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "lr": best[arm],
                    "status": status,
                    f"test_{metric}": v,
                    f"val_{metric}": v,
                }
            )
            for step in (10, 20):
                curves.append({"arm": arm, "seed": seed, "step": step, f"val_{metric}": v or 9.0})
        summary.append(
            {
                "arm": arm,
                "best_lr": best[arm],
                "interior": interior,
                "tune_seeds": 3,
                "spacing": 2.0,
                "failures": sum(v is None for v in per_seed),
            }
        )
    return TuningResult(
        metric, pd.DataFrame(), pd.DataFrame(final), pd.DataFrame(summary), pd.DataFrame(curves)
    )


# --------------------------------------------------------------------------------------------
# the families and the answer

NOISE = np.array([0.003, -0.002, 0.001])
LOSSES = {  # LAMB's test loss minus AdamW's per seed, for each outcome (SESOI 0.02 nats)
    "better": -0.10 + NOISE / 3,
    "worse": 0.10 + NOISE / 3,
    "equivalent": 0.0 + NOISE / 3,
    "inconclusive": np.array([-0.2, 0.25, -0.05]),
}


def _merged(paper: dict[int, str], retuned: dict[int, str]) -> dict:
    """Text results at 8, 128 and 256 with LAMB's loss set against AdamW's per outcome."""
    best = {a: 0.01 for a in ("adamw", "lamb", "adamw sqrt-scaled", "lamb sqrt-scaled")}
    out = {("B=8", TEXT): _result({"adamw": list(2.0 + NOISE), "lamb": list(2.0 + NOISE)}, best)}
    for b in (128, 256):
        adamw = 2.4 + NOISE
        values = {"adamw": list(adamw), "adamw sqrt-scaled": list(adamw + 0.05)}
        values["lamb"] = list(adamw + LOSSES[retuned[b]])
        if paper[b] == "adamw diverged":
            values["adamw sqrt-scaled"] = [None] * 3
            values["lamb sqrt-scaled"] = list(adamw)
        else:
            values["lamb sqrt-scaled"] = list(adamw + 0.05 + LOSSES[paper[b]])
        out[(f"B={b}", TEXT)] = _result(values, best)
    return out


@pytest.mark.parametrize(
    ("paper", "retuned", "paper_text", "retuned_text"),
    [
        (
            {128: "better", 256: "better"},
            {128: "equivalent", 256: "worse"},
            "**reproduced**",
            "**LAMB no better**",
        ),
        (
            {128: "better", 256: "inconclusive"},
            {128: "better", 256: "better"},
            "**partly reproduced**",
            "**LAMB better**",
        ),
        (
            {128: "equivalent", 256: "worse"},
            {128: "inconclusive", 256: "equivalent"},
            "**not reproduced**",
            "**undecided**",
        ),
        (
            {128: "inconclusive", 256: "equivalent"},
            {128: "inconclusive", 256: "better"},
            "**undecided**",
            "**LAMB better at one of the two**",
        ),
        (
            {128: "adamw diverged", 256: "better"},
            {128: "equivalent", 256: "equivalent"},
            "**reproduced**",
            "**LAMB no better**",
        ),
    ],
)
def test_answer_gives_every_verdict_under_each_protocol(paper, retuned, paper_text, retuned_text):
    merged = _merged(paper, retuned)
    levels = design.compare_verdict(merged, "full")
    assert set(levels["group"].map(batch_scaling.batch_of)) == {128, 256}  # B=8 is not judged
    drops = design.degradation(merged, "full")
    text = design.answer(levels, design.compare_ablations(merged), drops)
    paper_line = next(line for line in text.splitlines() if "paper protocol" in line)
    retuned_line = next(line for line in text.splitlines() if "retuned protocol" in line)
    assert paper_text in paper_line, paper_line
    assert retuned_text in retuned_line, retuned_line
    if "no better" in retuned_text:
        assert "Nado et al. (2021)" in retuned_line
    if "adamw diverged" in paper.values():
        assert "adamw sqrt-scaled diverged on every final seed" in paper_line
    assert "Degradation from the smallest batch" in text


def test_answer_while_everything_is_pending():
    empty = batch_scaling.compare_pairs({}, design.VERDICT_PAIRS)
    assert "no result yet" in design.answer(empty, empty, pd.DataFrame())


def test_ablations_are_judged_against_lamb_where_both_ran():
    best = {a: 0.01 for a in ("lamb", "lamb trust=1", "adamw")}
    merged = {
        ("B=256", TEXT): _result(
            {
                "adamw": list(2.4 + NOISE),
                "lamb": list(2.3 + NOISE),
                "lamb trust=1": list(2.4 + NOISE / 2),
            },
            best,
        )
    }
    table = design.compare_ablations(merged)
    assert table[["arm", "baseline", "outcome"]].values.tolist() == [
        ["lamb trust=1", "lamb", "worse"]
    ]


# --------------------------------------------------------------------------------------------
# per-tensor rates


def test_rate_frame_gives_adamw_the_ratio_lamb_would_apply():
    config = design.batch_config(IMAGE, "adamw", 512).replace(monitor_every=1)
    tensors = design.tensor_table(config)
    name = tensors["name"].iloc[2]
    record = {
        "config": config.to_dict(),
        "layers": {
            "every": 1,
            "step": [1, 2],
            "params": {
                name: {
                    "lr": [0.01, 0.02],
                    "update_ratio": [0.002, 0.001],
                    "trust_ratio": [None, None],
                }
            },
        },
    }
    frame = design.rate_frame([("adamw", config)], [record])
    implied = frame[frame["quantity"] == "trust_ratio"].sort_values("step")
    assert implied["value"].tolist() == pytest.approx([0.01 / 0.002, 0.02 / 0.001])
    assert set(frame["testbed"]) == {IMAGE} and set(frame["batch_size"]) == {512}
    assert implied["label"].iloc[0] == tensors["label"].iloc[2]
    assert design.rate_frame([], None).empty


def test_tensor_table_lists_a_tied_head_once_with_short_labels():
    table = design.tensor_table(design.batch_config(TEXT, "lamb", 8))
    assert "head.weight" not in set(table["name"])  # tied to the token embedding
    assert {"embed.weight", "pos"} <= set(table["name"])
    assert "b1.attn.qkv.w" in set(table["label"])
    assert len(table) == 2 + 2 * 12 + 2  # embeddings, two blocks of 12 tensors, final norm


def test_monitored_reruns_are_adamw_and_lamb_at_the_smallest_and_largest_batch():
    plan = design.plan("full")
    merged = {
        (f"B={b}", bed): _result({a: [2.0, 2.1, 2.2] for a in c_arms}, {a: 0.01 for a in c_arms})
        for bed, sizes in design.BATCH_SIZES["full"].items()
        for b in sizes
        for c_arms in [("adamw", "lamb") + (design.ABLATIONS if bed == TEXT and b >= 128 else ())]
    }
    pairs = design.monitored_configs(merged, plan)
    got = {(c.dataset, c.batch_size, arm) for arm, c in pairs}
    assert got == {
        (d, b, a)
        for d, sizes in (("tinyshakespeare", (8, 256)), ("mnist1d", (16, 512)))
        for b in sizes
        for a in ("adamw", "lamb")
    }
    assert len(pairs) == 8 * design.MONITOR_SEEDS
    assert all(c.monitor_every == c.steps // 40 and c.lr == 0.01 for _, c in pairs)
