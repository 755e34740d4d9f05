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
from layerwise.layers import COLUMNS, UNITS

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


def gpt_layer_depths(blocks: int, tied: bool = False) -> dict[str, tuple[int, str]]:
    """Pre-norm blocks at granularity="layer": 4 ranked layers per block; ln1 joins the layer
    that ran before it (the input embedding, or the previous block's mlp.2), ln2 joins
    attn.proj.  A tied token embedding ranks at the top (its last use is the head), so the first
    block's layers move down one depth and its ln1 joins the next layer (qkv)."""
    shift = -1 if tied else 0
    out = {}
    for k in range(blocks):
        b = f"blocks.{k}"
        out |= {
            f"{b}.ln1": (max(4 * k + shift, 0), "norm"),
            f"{b}.attn.qkv": (4 * k + 1 + shift, "attention"),
            f"{b}.attn.proj": (4 * k + 2 + shift, "attention"),
            f"{b}.ln2": (4 * k + 2 + shift, "norm"),
            f"{b}.mlp.0": (4 * k + 3 + shift, "dense"),
            f"{b}.mlp.2": (4 * k + 4 + shift, "dense"),
        }
    return out | {"ln_f": (4 * blocks + shift, "norm")}


def gpt_block_depths(blocks: int) -> dict[str, tuple[int, str]]:
    """Granularity "block": every sub-layer of block k at depth k + 1, ln_f with the last block."""
    out = {}
    for k in range(blocks):
        b = f"blocks.{k}"
        out |= {f"{b}.ln1": (k + 1, "norm"), f"{b}.ln2": (k + 1, "norm")}
        out |= {f"{b}.attn": (k + 1, "attention"), f"{b}.mlp": (k + 1, "dense")}
    return out | {"ln_f": (blocks, "norm")}


PLAIN_STACKS = {
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
}
TRANSFORMERS = {
    "mnist1d": {"width": 16, "depth": 2, "heads": 2, "patch": 4},
    "fashion_mnist": {"width": 16, "depth": 2, "heads": 2, "patch": 7},
    "tinyshakespeare": {"width": 16, "depth": 4, "heads": 2, "block": 8, "tie": True},
}
HYBRID = {"width": 8, "heads": 2}
HYBRID_COMMON = {"conv": (0, "conv"), "rnn": (1, "recurrent"), "ln": (1, "norm")}

# (family, dataset) -> (build options, expected {module prefix: (depth, kind)}) per granularity;
# the options are explicit so that changes to the project's default sizes do not change the
# expectations.  Plain stacks (MLP, CNN, GRU/LSTM) give the same depths at both granularities:
# each dense layer, conv stage or recurrent level is a block.
FAMILIES = {
    "layer": {key: value for key, value in PLAIN_STACKS.items()}
    | {
        ("transformer", "mnist1d"): (
            TRANSFORMERS["mnist1d"],
            {"embed": (0, "dense"), "pos": (0, "other"), "head": (9, "dense")}
            | gpt_layer_depths(2),
        ),
        ("transformer", "fashion_mnist"): (
            TRANSFORMERS["fashion_mnist"],
            {"embed": (0, "dense"), "pos": (0, "other"), "head": (9, "dense")}
            | gpt_layer_depths(2),
        ),
        ("transformer", "tinyshakespeare"): (
            TRANSFORMERS["tinyshakespeare"],
            {"embed": (16, "embedding"), "pos": (0, "other")} | gpt_layer_depths(4, tied=True),
        ),
        ("hybrid", "mnist1d"): (
            HYBRID,
            HYBRID_COMMON
            | {"attn.qkv": (2, "attention"), "attn.proj": (3, "attention")}
            | {"fc": (4, "dense"), "head": (5, "dense")},
        ),
    },
    "block": {key: value for key, value in PLAIN_STACKS.items()}
    | {
        ("transformer", "mnist1d"): (
            TRANSFORMERS["mnist1d"],
            {"embed": (0, "dense"), "pos": (0, "other"), "head": (3, "dense")}
            | gpt_block_depths(2),
        ),
        ("transformer", "fashion_mnist"): (
            TRANSFORMERS["fashion_mnist"],
            {"embed": (0, "dense"), "pos": (0, "other"), "head": (3, "dense")}
            | gpt_block_depths(2),
        ),
        ("transformer", "tinyshakespeare"): (
            TRANSFORMERS["tinyshakespeare"],
            {"embed": (5, "embedding"), "pos": (0, "other")} | gpt_block_depths(4),
        ),
        ("hybrid", "mnist1d"): (
            HYBRID,
            HYBRID_COMMON | {"attn": (2, "attention"), "fc": (3, "dense"), "head": (4, "dense")},
        ),
    },
}
CASES = [(g, family, dataset) for g, cases in FAMILIES.items() for family, dataset in cases]


def build(family: str, dataset: str) -> nn.Module:
    torch.manual_seed(0)
    return models.build(family, dataset, **FAMILIES["block"][family, dataset][0])


@pytest.mark.parametrize(("granularity", "family", "dataset"), CASES)
def test_project_models(granularity, family, dataset):
    model = build(family, dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer of the project's models has a kind
        table = layer_table(model, INPUTS[dataset](), granularity=granularity)
    want, got = expected_for(table, FAMILIES[granularity][family, dataset][1])
    assert got == want
    assert set(table["source"]) == {"forward"}
    assert set(table["kind"]) <= set(KINDS)
    assert set(table["unit"]) <= set(UNITS)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == len({id(p) for p in model.parameters()})
    assert table.attrs["granularity"] == granularity


def test_block_granularity_is_the_default():
    model = build("transformer", "mnist1d")
    x = INPUTS["mnist1d"]()
    assert layer_table(model, x).equals(layer_table(model, x, granularity="block"))
    assert layer_table(model, x)["depth"].nunique() == 4  # embeddings, 2 blocks, head


def test_units_say_what_a_depth_step_counts():
    table = layer_table(build("transformer", "mnist1d"), INPUTS["mnist1d"]()).set_index("name")
    assert table.loc["embed.weight", "unit"] == table.loc["pos", "unit"] == "input"
    assert table.loc["blocks.1.mlp.0.weight", "unit"] == "block"
    assert table.loc["blocks.1.mlp.0.weight", "layer"] == "blocks.1"
    assert table.loc["head.weight", "unit"] == table.loc["ln_f.weight", "unit"] == "layer"
    layered = layer_table(build("transformer", "mnist1d"), INPUTS["mnist1d"](), granularity="layer")
    assert set(layered["unit"]) == {"layer"}  # a patch projection is a dense layer, not embeddings


def test_columns_shapes_and_numel():
    model = build("mlp", "mnist1d")
    table = layer_table(model, INPUTS["mnist1d"]())
    assert {"name", "module", "type", "kind", "depth", "shape", "numel"} <= set(table.columns)
    row = table.set_index("name").loc["body.0.weight"]
    assert row["shape"] == (16, 40)
    assert row["numel"] == 640
    assert row["module"] == "body.0"
    assert row["type"] == "Linear"
    assert table.attrs["module_types"] == {"body.0": nn.Linear, "body.2": nn.Linear} | {
        "head": nn.Linear
    }


@pytest.mark.parametrize("granularity", ["block", "layer"])
def test_tied_embedding_appears_once_at_its_last_use(granularity):
    """The tied token embedding is the readout too: it ranks at the top, as the head."""
    model = build("transformer", "tinyshakespeare")
    table = layer_table(model, INPUTS["tinyshakespeare"](), granularity=granularity)
    t = table.set_index("name")
    assert model.head.weight is model.embed.weight
    assert "head.weight" not in t.index
    assert t.loc["embed.weight", "aliases"] == ("head.weight",)
    assert t.loc["embed.weight", "depth"] == table["depth"].max()
    assert (table["depth"] == table["depth"].max()).sum() == 1  # alone at the top
    assert t.loc["embed.weight", "layer"] == "head"
    assert t.loc["embed.weight", "kind"] == "embedding"
    assert t.loc["embed.weight", "module"] == "embed"
    assert table.attrs["module_types"]["head"] is nn.Linear


def test_tied_tensor_without_input_sits_at_its_last_registered_name():
    model = build("transformer", "tinyshakespeare")
    with pytest.warns(UserWarning, match="registered"):
        table = layer_table(model)
    t = table.set_index("name")
    assert t.loc["embed.weight", "layer"] == "head"
    assert t.loc["embed.weight", "depth"] == table["depth"].max()


def test_gpt_block_granularity():
    model = build("transformer", "tinyshakespeare")
    table = layer_table(model, INPUTS["tinyshakespeare"](), granularity="block")
    expected = {"embed": (5, "embedding"), "pos": (0, "other")} | gpt_block_depths(4)
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
    table = layer_table(ResNet(), torch.randn(2, 1, 6, 6), granularity="layer")
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
    t = table.set_index("name")
    assert t.loc["stem.0.weight", "unit"] == t.loc["stem.1.weight", "unit"] == "input"
    assert t.loc["blocks.1.conv1.weight", "layer"] == "blocks.1"


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
    table = layer_table(CalledTwice(), torch.randn(2, 4), granularity="layer").set_index("name")
    assert table["depth"].to_dict() == {"b.weight": 1, "b.bias": 1, "a.weight": 0, "a.bias": 0}


def test_without_input_falls_back_to_registration_order_and_warns():
    with pytest.warns(UserWarning, match="order in which parameters were registered"):
        table = layer_table(CalledTwice(), granularity="layer")
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
    # the trace cannot see its product either, so its kind stays 'other', with a warning
    with pytest.warns(UserWarning, match=r"kind 'other' for layers of type Hidden \(hidden\)"):
        table = layer_table(WithHidden(), torch.randn(2, 4))
    assert table.set_index("name").loc["hidden.weight", "kind"] == "other"
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


# --------------------------------------------------------------------------------------------
# kinds of layers of unknown type, read from the operation that used their weight


class TransposedDense(nn.Module):
    """A dense layer with a (in, out) weight applied by addmm, as Hugging Face's ``Conv1D``."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x, self.weight)


class MatmulDense(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n_in, n_out))

    def forward(self, x):
        return x @ self.w


class Lookup(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(10, 4))

    def forward(self, ids):
        return F.embedding(ids, self.table)


class Gain(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.g


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lookup = Lookup()
        self.fc = TransposedDense(4, 6)
        self.gain = Gain(6)
        self.out = MatmulDense(6, 3)

    def forward(self, ids):
        return self.out(self.gain(self.fc(self.lookup(ids))))


def test_unknown_layer_types_are_classified_by_the_operation_on_their_weight():
    with pytest.warns(UserWarning, match=r"kind 'other' for layers of type Gain \(gain\)") as rec:
        table = layer_table(Custom(), torch.tensor([1, 2]))
    assert len(rec) == 1  # the other three are recognised
    kinds = table.set_index("name")["kind"].to_dict()
    assert kinds == {
        "lookup.table": "embedding",
        "fc.weight": "dense",
        "fc.bias": "dense",  # a layer's bias takes its weight's kind
        "gain.g": "other",
        "out.w": "dense",
    }
    assert table.set_index("name")["depth"].to_dict() == {
        "lookup.table": 0,
        "fc.weight": 1,
        "fc.bias": 1,
        "gain.g": 2,
        "out.w": 3,
    }


class Embeddings(nn.Module):
    """Token, segment and position embeddings summed (BERT's input layer), a norm, two layers."""

    def __init__(self):
        super().__init__()
        self.token = nn.Embedding(10, 4)
        self.position = nn.Embedding(8, 4)
        self.segment = nn.Embedding(2, 4)
        self.norm = nn.LayerNorm(4)
        self.hidden = nn.Linear(4, 4)
        self.late = nn.Embedding(3, 4)  # used after a layer: not part of the input layer
        self.head = nn.Linear(4, 2)

    def forward(self, ids):
        positions = torch.arange(ids.shape[1])
        h = self.token(ids) + self.segment(torch.zeros_like(ids)) + self.position(positions)
        h = self.hidden(self.norm(h)) + self.late(torch.zeros_like(ids))
        return self.head(h)


@pytest.mark.parametrize("granularity", ["layer", "block"])
def test_input_embeddings_share_one_depth(granularity):
    table = layer_table(Embeddings(), torch.tensor([[1, 2, 3]]), granularity=granularity)
    t = table.set_index("name")
    assert t["depth"].to_dict() == {
        "token.weight": 0,
        "position.weight": 0,
        "segment.weight": 0,
        "norm.weight": 0,
        "norm.bias": 0,
        "hidden.weight": 1,
        "hidden.bias": 1,
        "late.weight": 2,
        "head.weight": 3,
        "head.bias": 3,
    }
    assert set(t.loc[["token.weight", "position.weight", "segment.weight"], "unit"]) == {"input"}
    assert t.loc["late.weight", "unit"] == "layer"
