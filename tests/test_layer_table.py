"""layer_table: depth from forward order, kinds, blocks, tied and shared weights, frozen and
unreached parameters.  Expected depths are written out by hand from each model's forward."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise.groups import KINDS, layer_table
from layerwise.harness import models

INPUTS = {
    "mnist1d": lambda: torch.randn(2, 40),
    "fashion_mnist": lambda: torch.randn(2, 1, 28, 28),
    "tinyshakespeare": lambda: torch.randint(0, 65, (2, 8)),
}


def expected_for(table, expected: dict[str, tuple[int, str]]) -> tuple[dict, dict]:
    """Look each row's name up in ``expected`` (keys: module or parameter names; the longest
    matching prefix wins) and return the expected and the actual {name: (depth, kind)}."""
    want, got = {}, {}
    for row in table.itertuples():
        keys = [k for k in expected if row.name == k or row.name.startswith(k + ".")]
        assert keys, f"no expectation for {row.name}"
        want[row.name] = expected[max(keys, key=len)]
        got[row.name] = (row.depth, row.kind)
    return want, got


def gpt_layer_depths(blocks: int) -> dict[str, tuple[int, str]]:
    """Pre-norm blocks: ln1 joins the layer that ran before it (the embedding, or the previous
    block's mlp.2), ln2 joins attn.proj; 4 ranked layers per block."""
    out = {}
    for k in range(blocks):
        b = f"blocks.{k}"
        out |= {
            f"{b}.ln1": (4 * k, "norm"),
            f"{b}.attn.qkv": (4 * k + 1, "attention"),
            f"{b}.attn.proj": (4 * k + 2, "attention"),
            f"{b}.ln2": (4 * k + 2, "norm"),
            f"{b}.mlp.0": (4 * k + 3, "dense"),
            f"{b}.mlp.2": (4 * k + 4, "dense"),
        }
    return out | {"ln_f": (4 * blocks, "norm")}


# (family, dataset) -> (build options, expected {module prefix: (depth, kind)}); the options
# are explicit so that changes to the project's default sizes do not change the expectations
FAMILIES = {
    ("mlp", "mnist1d"): (
        {"width": 16, "depth": 2},
        {"body.0": (0, "dense"), "body.2": (1, "dense"), "head": (2, "dense")},
    ),
    ("mlp", "tinyshakespeare"): (
        {"width": 16, "depth": 2, "embed": 8},
        {"embed": (0, "embedding"), "body.0": (1, "dense"), "body.2": (2, "dense")}
        | {"head": (3, "dense")},
    ),
    ("cnn", "mnist1d"): (
        {"width": 4, "depth": 3, "hidden": 0},
        {"body.0": (0, "conv"), "body.2": (1, "conv"), "body.4": (2, "conv")}
        | {"head": (3, "dense")},
    ),
    ("cnn", "fashion_mnist"): (
        {"width": 4, "depth": 2, "hidden": 8},
        {"body.0": (0, "conv"), "body.3": (1, "conv"), "body.7": (2, "dense")}
        | {"head": (3, "dense")},
    ),
    ("cnn", "tinyshakespeare"): (
        {"width": 8, "depth": 4, "embed": 8},
        {"embed": (0, "embedding"), "head": (5, "dense")}
        | {f"body.{2 * i}": (i + 1, "conv") for i in range(4)},
    ),
    ("gru", "mnist1d"): (
        {"width": 6, "depth": 1, "bidirectional": True},
        {"rnn": (0, "recurrent"), "head": (1, "dense")},
    ),
    ("gru", "fashion_mnist"): (
        {"width": 8, "depth": 1, "bidirectional": True},
        {"rnn": (0, "recurrent"), "head": (1, "dense")},
    ),
    ("lstm", "tinyshakespeare"): (
        {"width": 8, "depth": 1, "embed": 8},
        {"embed": (0, "embedding"), "rnn": (1, "recurrent"), "head": (2, "dense")},
    ),
    ("transformer", "mnist1d"): (
        {"width": 16, "depth": 2, "heads": 2, "patch": 4},
        {"embed": (0, "dense"), "pos": (0, "other"), "head": (9, "dense")} | gpt_layer_depths(2),
    ),
    ("transformer", "fashion_mnist"): (
        {"width": 16, "depth": 2, "heads": 2, "patch": 7},
        {"embed": (0, "dense"), "pos": (0, "other"), "head": (9, "dense")} | gpt_layer_depths(2),
    ),
    ("transformer", "tinyshakespeare"): (
        {"width": 16, "depth": 4, "heads": 2, "block": 8, "tie": True},
        {"embed": (0, "embedding"), "pos": (0, "other")} | gpt_layer_depths(4),
    ),
}


def build(family: str, dataset: str) -> nn.Module:
    torch.manual_seed(0)
    return models.build(family, dataset, **FAMILIES[family, dataset][0])


@pytest.mark.parametrize(("family", "dataset"), list(FAMILIES))
def test_project_models(family, dataset):
    model = build(family, dataset)
    table = layer_table(model, INPUTS[dataset]())
    want, got = expected_for(table, FAMILIES[family, dataset][1])
    assert got == want
    assert set(table["source"]) == {"forward"}
    assert set(table["kind"]) <= set(KINDS)
    assert len(table) == len({id(p) for p in model.parameters()})


def test_columns_shapes_and_numel():
    model = build("mlp", "mnist1d")
    table = layer_table(model, INPUTS["mnist1d"]())
    assert {"name", "module", "kind", "depth", "shape", "numel"} <= set(table.columns)
    row = table.set_index("name").loc["body.0.weight"]
    assert row["shape"] == (16, 40)
    assert row["numel"] == 640
    assert row["module"] == "body.0"


def test_tied_embedding_appears_once_at_the_input_side():
    model = build("transformer", "tinyshakespeare")
    table = layer_table(model, INPUTS["tinyshakespeare"]()).set_index("name")
    assert model.head.weight is model.embed.weight
    assert "head.weight" not in table.index
    assert table.loc["embed.weight", "aliases"] == ("head.weight",)
    assert table.loc["embed.weight", "depth"] == 0
    assert table.loc["embed.weight", "kind"] == "embedding"


def test_gpt_block_granularity():
    model = build("transformer", "tinyshakespeare")
    table = layer_table(model, INPUTS["tinyshakespeare"](), granularity="block")
    expected = {"embed": (0, "embedding"), "pos": (0, "other"), "ln_f": (4, "norm")}
    expected |= {f"blocks.{k}.ln1": (k + 1, "norm") for k in range(4)}
    expected |= {f"blocks.{k}.ln2": (k + 1, "norm") for k in range(4)}
    expected |= {f"blocks.{k}.attn": (k + 1, "attention") for k in range(4)}
    expected |= {f"blocks.{k}.mlp": (k + 1, "dense") for k in range(4)}
    want, got = expected_for(table, expected)
    assert got == want
    assert set(table.loc[table["name"].str.startswith("blocks.2."), "layer"]) == {"blocks.2"}


def test_stacked_lstm_gives_one_depth_per_level():
    model = models.build("lstm", "tinyshakespeare", width=8, depth=2, embed=8)
    table = layer_table(model, INPUTS["tinyshakespeare"]())
    want, got = expected_for(
        table,
        {
            "embed": (0, "embedding"),
            "rnn.weight_ih_l0": (1, "recurrent"),
            "rnn.weight_hh_l0": (1, "recurrent"),
            "rnn.bias_ih_l0": (1, "recurrent"),
            "rnn.bias_hh_l0": (1, "recurrent"),
            "rnn.weight_ih_l1": (2, "recurrent"),
            "rnn.weight_hh_l1": (2, "recurrent"),
            "rnn.bias_ih_l1": (2, "recurrent"),
            "rnn.bias_hh_l1": (2, "recurrent"),
            "head": (3, "dense"),
        },
    )
    assert got == want


# --------------------------------------------------------------------------------------------
# a residual CNN with BatchNorm, a projection shortcut that runs first, and dropout


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        skip = self.shortcut(x)
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + skip)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.blocks = nn.Sequential(ResBlock(4, 8), ResBlock(8, 8))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.blocks(self.stem(x)).mean(dim=(2, 3))
        return self.head(self.drop(h))


RESNET_LAYERS = {
    "stem.0": (0, "conv"),
    "stem.1": (0, "norm"),
    "blocks.0.shortcut": (1, "conv"),
    "blocks.0.conv1": (2, "conv"),
    "blocks.0.bn1": (2, "norm"),
    "blocks.0.conv2": (3, "conv"),
    "blocks.0.bn2": (3, "norm"),
    "blocks.1.conv1": (4, "conv"),
    "blocks.1.bn1": (4, "norm"),
    "blocks.1.conv2": (5, "conv"),
    "blocks.1.bn2": (5, "norm"),
    "head": (6, "dense"),
}


def test_residual_cnn_layers():
    table = layer_table(ResNet(), torch.randn(2, 1, 6, 6))
    want, got = expected_for(table, RESNET_LAYERS)
    assert got == want


def test_residual_cnn_blocks():
    table = layer_table(ResNet(), torch.randn(2, 1, 6, 6), granularity="block")
    blocks = {"stem.0": (0, "conv"), "stem.1": (0, "norm"), "head": (3, "dense")}
    for name, (_, kind) in RESNET_LAYERS.items():
        if name.startswith("blocks."):
            blocks[name] = (int(name.split(".")[1]) + 1, kind)
    want, got = expected_for(table, blocks)
    assert got == want


def test_tracing_leaves_model_and_random_stream_alone():
    model = ResNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    layer_table(model, torch.randn(4, 1, 6, 6))
    after_trace = torch.rand(5)
    torch.manual_seed(123)
    torch.randn(4, 1, 6, 6)
    assert torch.equal(after_trace, torch.rand(5))
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


# --------------------------------------------------------------------------------------------
# sharing, freezing, nesting, loose and unreached parameters


class CalledTwice(nn.Module):
    """``b`` is registered first, but the forward runs a, b, a."""

    def __init__(self):
        super().__init__()
        self.b = nn.Linear(4, 4)
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return self.a(self.b(self.a(x)))


def test_module_called_twice_sits_at_first_use():
    table = layer_table(CalledTwice(), torch.randn(2, 4)).set_index("name")
    assert table["depth"].to_dict() == {"b.weight": 1, "b.bias": 1, "a.weight": 0, "a.bias": 0}


def test_without_input_falls_back_to_registration_order_and_warns():
    with pytest.warns(UserWarning, match="order in which parameters were registered"):
        table = layer_table(CalledTwice())
    assert table.set_index("name")["depth"].to_dict() == {
        "b.weight": 0,
        "b.bias": 0,
        "a.weight": 1,
        "a.bias": 1,
    }
    assert set(table["source"]) == {"registration"}


def test_frozen_parameters_are_left_out():
    model = build("mlp", "mnist1d")
    model.body[0].requires_grad_(False)
    table = layer_table(model, INPUTS["mnist1d"]())
    assert table.set_index("name")["depth"].to_dict() == {
        "body.2.weight": 0,
        "body.2.bias": 0,
        "head.weight": 1,
        "head.bias": 1,
    }


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleDict(
            {
                "late": nn.ModuleDict({"out": nn.Linear(3, 2)}),
                "early": nn.ModuleList([nn.Linear(5, 4), nn.Linear(4, 3)]),
            }
        )

    def forward(self, x):
        for layer in self.stages["early"]:
            x = layer(x)
        return self.stages["late"]["out"](x)


def test_nested_module_dict_and_list():
    table = layer_table(Nested(), torch.randn(2, 5))
    want, got = expected_for(
        table,
        {
            "stages.early.0": (0, "dense"),
            "stages.early.1": (1, "dense"),
            "stages.late.out": (2, "dense"),
        },
    )
    assert got == want


class Loose(nn.Module):
    """Parameters held by the model itself: a gain used before any layer, a class token used
    after the first layer, and a layer that the forward never calls."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(4))
        self.first = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 4))
        self.second = nn.Linear(4, 4)

    def forward(self, x):
        h = self.first(x * self.gain)
        h = torch.cat([self.cls.expand(1, 4), h])
        return self.second(h)


def test_loose_and_unreached_parameters():
    with pytest.warns(UserWarning, match=r"did not use unused\.weight, unused\.bias"):
        table = layer_table(Loose(), torch.randn(2, 4))
    t = table.set_index("name")
    assert t["depth"].to_dict() == {
        "gain": 0,  # used before any layer: joins the next one
        "cls": 0,  # used after `first`: joins it
        "first.weight": 0,
        "first.bias": 0,
        "unused.weight": 0,  # registered right after `first`
        "unused.bias": 0,
        "second.weight": 1,
        "second.bias": 1,
    }
    assert t.loc["unused.weight", "source"] == "unreached"
    assert t.loc["cls", "kind"] == "other"


class Hidden(nn.Module):
    """A layer whose operation the function trace cannot see; its pre-hook still places it."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(4))

    def forward(self, x):
        with torch._C.DisableTorchFunction():
            return F.linear(x, self.weight)


class WithHidden(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = Hidden()
        self.first = nn.Linear(4, 4)
        self.last = nn.Linear(4, 4)

    def forward(self, x):
        return self.last(self.hidden(self.first(x)))


def test_pre_hooks_place_layers_the_trace_cannot_see():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = layer_table(WithHidden(), torch.randn(2, 4))
    t = table.set_index("name")["depth"].to_dict()
    assert t == {"hidden.weight": 1, "first.weight": 0, "first.bias": 0, "last.weight": 2} | {
        "last.bias": 2
    }


def test_multihead_attention_is_one_attention_layer():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(3, 8)
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            h = self.inp(x)
            return self.out(self.mha(h, h, h)[0])

    table = layer_table(Attn(), torch.randn(2, 5, 3))
    want, got = expected_for(
        table, {"inp": (0, "dense"), "mha": (1, "attention"), "out": (2, "dense")}
    )
    assert got == want


def test_overrides_set_depths_by_parameter_or_module():
    model = build("mlp", "mnist1d")
    table = layer_table(model, INPUTS["mnist1d"](), overrides={"head": 7, "body.0.bias": 3})
    t = table.set_index("name")
    assert t.loc["head.weight", "depth"] == 7
    assert t.loc["head.bias", "depth"] == 7
    assert t.loc["body.0.bias", "depth"] == 3
    assert t.loc["body.0.weight", "depth"] == 0
    assert t.loc["head.bias", "source"] == "override"


def test_override_errors_name_the_key():
    model = build("transformer", "tinyshakespeare")
    x = INPUTS["tinyshakespeare"]()
    with pytest.raises(ValueError, match="'nope'"):
        layer_table(model, x, overrides={"nope": 1})
    with pytest.raises(ValueError, match=r"'embed\.weight' is listed twice"):
        layer_table(model, x, overrides={"embed.weight": 1, "head.weight": 2})
    with pytest.raises(ValueError, match="-1"):
        layer_table(model, x, overrides={"ln_f": -1})


def test_unknown_granularity_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'stage'.*'block', 'layer'"):
        layer_table(CalledTwice(), torch.randn(1, 4), granularity="stage")
