"""param_groups: per-layer rates in each group's own lr, weight-decay exclusion, metadata,
torch schedulers, describe() and the warnings and errors.  Expected rates are written by hand."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn

from layerwise.groups import (
    MAX_SPAN,
    ByKind,
    Discriminative,
    LayerDecay,
    Uniform,
    check,
    describe,
    param_groups,
    resolve,
)
from layerwise.harness import models
from layerwise.probes import Monitor
from layerwise.rules import WidthRoles

X_MNIST1D = torch.randn(2, 40)
X_TEXT = torch.randint(0, 65, (2, 8))


def mlp() -> nn.Module:
    """Depths: body.0 -> 0, body.2 -> 1, head -> 2."""
    torch.manual_seed(0)
    return models.build("mlp", "mnist1d", width=16, depth=2)


def gpt() -> nn.Module:
    """Tied head; block depths: pos 0, blocks.k k + 1, ln_f 4 (with the last block), and the
    tied embed/head at 5, its last use."""
    torch.manual_seed(0)
    return models.build("transformer", "tinyshakespeare", width=16, depth=4, heads=2, block=8)


def rates(groups) -> dict[str, float]:
    return {name: g["lr"] for g in groups for name in g["names"]}


def test_discriminative_rates_by_depth():
    groups = param_groups(mlp(), 0.01, Discriminative(2.6), X_MNIST1D)
    low, mid, top = 0.01 / 2.6**2, 0.01 / 2.6, 0.01
    assert rates(groups) == pytest.approx(
        {
            "body.0.weight": low,
            "body.0.bias": low,
            "body.2.weight": mid,
            "body.2.bias": mid,
            "head.weight": top,
            "head.bias": top,
        }
    )
    assert [g["depth"] for g in groups] == [0, 1, 2]


def test_layer_decay_on_gpt_blocks_with_tied_head():
    groups = param_groups(gpt(), 1.0, LayerDecay(0.5), X_TEXT)  # granularity="block" by default
    got = rates(groups)
    assert "head.weight" not in got  # tied to embed.weight, which sits at the top (its last use)
    assert got["embed.weight"] == 1.0
    assert got["pos"] == pytest.approx(0.5**5)
    for k in range(4):
        assert got[f"blocks.{k}.attn.qkv.weight"] == pytest.approx(0.5 ** (4 - k))
        assert got[f"blocks.{k}.ln1.bias"] == pytest.approx(0.5 ** (4 - k))
        assert got[f"blocks.{k}.mlp.2.weight"] == pytest.approx(0.5 ** (4 - k))
    assert got["ln_f.weight"] == pytest.approx(0.5)
    assert len({round(lr, 12) for lr in got.values()}) == 6  # input, 4 blocks, head


def test_discriminative_trains_a_tied_head_at_the_top_rate():
    """ULMFiT's factor on a tied language model: the readout is not slowed to the input's rate."""
    got = rates(param_groups(gpt(), 0.01, Discriminative(2.6), X_TEXT))
    assert got["embed.weight"] == pytest.approx(0.01)
    assert got["pos"] == pytest.approx(0.01 / 2.6**5)
    assert got["blocks.3.attn.proj.weight"] == pytest.approx(0.01 / 2.6)


def test_resolve_gives_each_parameter_its_multiplier():
    table = resolve(gpt(), LayerDecay(0.5), X_TEXT)
    per_layer = table.groupby("layer", sort=False)["multiplier"].agg(set).to_dict()
    assert per_layer == {
        "pos": {0.5**5},
        "blocks.0": {0.5**4},
        "blocks.1": {0.5**3},
        "blocks.2": {0.5**2},
        "blocks.3": {0.5},
        "ln_f": {0.5},
        "head": {1.0},
    }
    assert {"name", "kind", "depth", "unit", "multiplier"} <= set(table.columns)


def test_a_depth_rule_spanning_more_than_a_thousand_fold_warns():
    span = 2.6**16  # 17 depths at granularity="layer": four per block, the tied head on top
    assert span > MAX_SPAN
    with pytest.warns(UserWarning, match=r"factor 4\.3\de\+06.*17 depths.*'layer'"):
        groups = param_groups(gpt(), 1.0, Discriminative(2.6), X_TEXT, granularity="layer")
    lrs = [g["lr"] for g in groups]
    assert max(lrs) / min(lrs) == pytest.approx(span)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        param_groups(gpt(), 1.0, Discriminative(2.6), X_TEXT)  # 6 blocks: 2.6^5 = 119


def test_weight_decay_skips_1d_tensors_by_default():
    decay = {
        name: g["weight_decay"]
        for g in param_groups(gpt(), 0.1, Uniform(), X_TEXT, weight_decay=0.05)
        for name in g["names"]
    }
    for name in ("embed.weight", "pos", "blocks.0.attn.qkv.weight", "blocks.3.mlp.2.weight"):
        assert decay[name] == 0.05, name
    for name in ("blocks.0.attn.qkv.bias", "blocks.1.ln1.weight", "ln_f.bias"):
        assert decay[name] == 0.0, name
    groups = param_groups(
        gpt(), 0.1, Uniform(), X_TEXT, weight_decay=0.05, exclude_1d_from_decay=False
    )
    assert {g["weight_decay"] for g in groups} == {0.05}


def test_groups_cover_each_trainable_tensor_once_with_json_metadata():
    model = mlp()
    model.body[0].requires_grad_(False)
    groups = param_groups(model, 0.1, Discriminative(2.0), X_MNIST1D, weight_decay=0.1)
    tensors = [p for g in groups for p in g["params"]]
    assert len(tensors) == len({id(p) for p in tensors}) == 4
    assert {id(p) for p in tensors} == {id(p) for p in model.parameters() if p.requires_grad}
    meta = [{k: v for k, v in g.items() if k != "params"} for g in groups]
    assert json.loads(json.dumps(meta)) == meta
    assert [g["multiplier"] for g in groups] == [0.5, 0.5, 1.0, 1.0]
    assert [g["layers"] for g in groups][-1] == ["head"]
    assert {u for g in groups for u in g["units"]} == {"block", "layer"}  # body.2 is a block
    by_name = {n: (g["depth"], g["kind"]) for g in groups for n in g["names"]}
    assert by_name == {
        "body.2.weight": (0, "dense"),
        "body.2.bias": (0, "dense"),
        "head.weight": (1, "dense"),
        "head.bias": (1, "dense"),
    }
    # one depth per frozen-free layer, split by weight decay: 2 depths x (decayed, not)
    assert len(groups) == 4


def test_torch_optimizers_take_the_groups_and_keep_metadata():
    model = mlp()
    for make in (torch.optim.SGD, torch.optim.AdamW):
        groups = param_groups(model, 0.01, Discriminative(2.0), X_MNIST1D, weight_decay=0.01)
        opt = make(groups, lr=123.0)  # the default lr must not override the groups' own
        model(X_MNIST1D).sum().backward()
        opt.step()
        opt.zero_grad()
        # per depth: the biases (no decay), then the weights
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(
            [0.0025, 0.0025, 0.005, 0.005, 0.01, 0.01]
        )
        assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.01] * 3
        assert [g["names"] for g in opt.param_groups][4:] == [["head.bias"], ["head.weight"]]
        assert all("depth" in g and "kind" in g for g in opt.param_groups)


def scheduled(make_scheduler, steps: int, rule=None):
    """Rates of the three MLP groups (bases 0.025, 0.05, 0.1) after ``steps`` scheduler steps."""
    groups = param_groups(mlp(), 0.1, rule or Discriminative(2.0), X_MNIST1D)
    opt = torch.optim.SGD(groups)
    scheduler = make_scheduler(opt)
    history = [[g["lr"] for g in opt.param_groups]]
    for _ in range(steps):
        opt.step()
        scheduler.step()
        history.append([g["lr"] for g in opt.param_groups])
    return history


BASES = [0.025, 0.05, 0.1]


def test_cosine_annealing_keeps_the_ratios():
    history = scheduled(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10), 3)
    factor = (1 + math.cos(math.pi * 3 / 10)) / 2
    assert history[-1] == pytest.approx([b * factor for b in BASES])


def test_lambda_lr_keeps_the_ratios():
    history = scheduled(lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.9**s), 4)
    assert history[-1] == pytest.approx([b * 0.9**4 for b in BASES])


def test_one_cycle_with_per_group_max_lr_keeps_the_ratios():
    history = scheduled(
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=10
        ),
        9,
    )
    assert history[0] == pytest.approx([b / 25 for b in BASES])  # div_factor 25
    for lrs in history:
        assert [lr / lrs[2] for lr in lrs] == pytest.approx([0.25, 0.5, 1.0])
    assert max(lrs[2] for lrs in history) == pytest.approx(0.1)


def test_one_cycle_with_a_scalar_max_lr_erases_the_ratios_and_check_says_so():
    groups = param_groups(mlp(), 0.1, Discriminative(2.0), X_MNIST1D)
    opt = torch.optim.SGD(groups)
    assert check(opt)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[0] == lrs[1] == lrs[2]
    with pytest.warns(
        UserWarning,
        match=r"group 2 \(head\.weight, \.\.\.\): group 0 \(body\.0\.weight, \.\.\.\): rate ratio 1, set 0\.25",
    ):
        assert not check(opt)


def test_check_is_quiet_while_a_scheduler_keeps_the_ratios():
    groups = param_groups(mlp(), 0.1, Discriminative(2.0), X_MNIST1D)
    opt = torch.optim.SGD(groups)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    one_cycle = param_groups(mlp(), 0.1, Discriminative(2.0), X_MNIST1D)
    per_group = torch.optim.SGD(one_cycle)
    torch.optim.lr_scheduler.OneCycleLR(
        per_group, max_lr=[g["lr"] for g in one_cycle], total_steps=10
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):
            opt.step()
            cosine.step()
            assert check(opt)
        assert check(per_group)
        assert check([{"params": [], "lr": 0.3, "weight_decay": 0}])  # nothing to compare


def test_monitor_warns_once_when_the_ratios_drift():
    model = mlp()
    opt = torch.optim.SGD(param_groups(model, 0.1, Discriminative(2.0), X_MNIST1D))
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    monitor = Monitor(model, opt, every=1)
    with pytest.warns(UserWarning, match="no longer keep the rate ratios") as record:
        for step in range(3):
            model(X_MNIST1D).sum().backward()
            monitor.before_step(step)
            opt.step()
            monitor.after_step(step)
    assert len([w for w in record if "rate ratios" in str(w.message)]) == 1
    quiet = Monitor(model, opt, every=1, check_rates=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(X_MNIST1D).sum().backward()
        quiet.before_step(0)
        opt.step()
        quiet.after_step(0)


def test_describe_lists_every_parameter():
    groups = param_groups(mlp(), 0.01, Discriminative(2.6), X_MNIST1D, weight_decay=0.1)
    frame = describe(groups).set_index("name")
    assert list(frame.columns) == [
        "group",
        "layer",
        "unit",
        "depth",
        "kind",
        "multiplier",
        "lr",
        "weight_decay",
    ]
    assert frame.loc["body.0.weight", "lr"] == pytest.approx(0.01 / 2.6**2)
    assert frame.loc["body.0.weight", "multiplier"] == pytest.approx(1 / 2.6**2)
    assert frame.loc["body.0.weight", "weight_decay"] == 0.1
    assert frame.loc["body.0.bias", "weight_decay"] == 0.0
    assert frame.loc["head.bias", "depth"] == 2
    assert frame.loc["head.bias", "layer"] == "head"
    assert len(frame) == 6


def test_describe_by_layer_says_what_multiplier_each_block_received():
    opt = torch.optim.AdamW(param_groups(gpt(), 1.0, LayerDecay(0.5), X_TEXT, weight_decay=0.1))
    frame = describe(opt, by="layer")
    assert list(frame.columns) == [
        "depth",
        "layer",
        "unit",
        "kinds",
        "tensors",
        "numel",
        "multiplier",
        "lr",
    ]
    assert frame["layer"].tolist() == ["pos", *(f"blocks.{k}" for k in range(4)), "ln_f", "head"]
    assert frame["unit"].tolist() == ["input", *["block"] * 4, "layer", "layer"]
    assert frame["depth"].tolist() == [0, 1, 2, 3, 4, 4, 5]
    assert frame["multiplier"].tolist() == pytest.approx(
        [0.5**5, *(0.5 ** (4 - k) for k in range(4)), 0.5, 1.0]
    )
    assert frame.loc[1, "kinds"] == "attention+dense+norm"
    assert (
        frame.loc[1, "tensors"] == 12
    )  # 2 norms, qkv, proj and 2 dense layers, weights and biases
    assert frame.loc[6, "kinds"] == "embedding"  # the tied embedding, used last as the head


def test_describe_names_a_parameter_listed_twice():
    model = mlp()
    groups = [
        {"params": [model.head.weight], "names": ["head.weight"], "lr": 0.1, "weight_decay": 0},
        {"params": [model.head.weight], "names": ["again"], "lr": 0.2, "weight_decay": 0},
    ]
    with pytest.raises(ValueError, match=r"'again' is listed twice.*'head\.weight'"):
        describe(groups)


def test_warns_when_a_rule_collapses_to_one_rate():
    with pytest.warns(UserWarning, match="same rate"):
        param_groups(mlp(), 0.1, ByKind({"conv": 2.0}), X_MNIST1D)  # an MLP has no conv
    with pytest.warns(UserWarning, match="same rate"):  # as if depth detection had failed
        param_groups(mlp(), 0.1, LayerDecay(0.8), X_MNIST1D, overrides={"body": 0, "head": 0})


def test_no_collapse_warning_for_uniform_or_a_single_layer():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        param_groups(mlp(), 0.1, Uniform(), X_MNIST1D)
        param_groups(nn.Linear(3, 2), 0.1, Discriminative(2.6), torch.randn(1, 3))


def test_a_width_rule_at_its_base_width_is_one_rate_by_design_elsewhere_not():
    embedding_only = {"input": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mlp() has width 16: SP by design, no warning
        groups = param_groups(mlp(), 0.1, WidthRoles(16, embedding_only), X_MNIST1D)
    assert {g["lr"] for g in groups} == {0.1}
    wider = param_groups(mlp(), 0.1, WidthRoles(4, embedding_only), X_MNIST1D)
    assert sorted({g["lr"] for g in wider}) == pytest.approx([0.1, 0.4])  # body.0 weight x 16/4
    with pytest.warns(UserWarning, match="same rate"):  # a factor of 1 on a role is no rule
        param_groups(mlp(), 0.1, WidthRoles(16, factors={"output": 1.0}), X_MNIST1D)


def test_rule_as_spec_dict_or_plain_object():
    by_spec = param_groups(mlp(), 1.0, {"name": "layer_decay", "decay": 0.5}, X_MNIST1D)
    assert [g["lr"] for g in by_spec] == pytest.approx([0.25, 0.5, 1.0])

    class DoubleBiases:  # follows the protocol without subclassing Rule
        def multipliers(self, table):
            return [2.0 if len(shape) == 1 else 1.0 for shape in table["shape"]]

    got = rates(param_groups(mlp(), 1.0, DoubleBiases(), X_MNIST1D))
    assert got["body.0.bias"] == 2.0
    assert got["body.0.weight"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0}, "lr must be a positive number, got 0"),
        ({"lr": -0.1}, r"got -0\.1"),
        ({"weight_decay": -0.5}, r"weight_decay must be a number >= 0, got -0\.5"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    args = {"lr": 0.1, "rule": Uniform(), "example_input": X_MNIST1D} | kwargs
    with pytest.raises(ValueError, match=message):
        param_groups(mlp(), **args)


def test_bad_multipliers_name_the_parameter():
    with pytest.raises(
        ValueError, match=r"multiplier for 'body\.0\.weight' must be a number > 0, got -1\.0"
    ):
        param_groups(mlp(), 0.1, lambda row: -1.0, X_MNIST1D)
    with pytest.raises(
        ValueError, match=r"multiplier for 'head\.bias' must be a number > 0, got nan"
    ):
        param_groups(
            mlp(), 0.1, lambda row: math.nan if row["name"] == "head.bias" else 1, X_MNIST1D
        )

    class Short:
        def multipliers(self, table):
            return [1.0]

    with pytest.raises(ValueError, match="1 multipliers for 6 parameters"):
        param_groups(mlp(), 0.1, Short(), X_MNIST1D)


def test_a_model_without_trainable_parameters_is_an_error():
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="Linear has no trainable parameters"):
        param_groups(frozen, 0.1, Uniform(), torch.randn(1, 2))
