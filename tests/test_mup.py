"""muP: Table 3 multipliers per weight class, the re-initialisation, and coordinate checks
(ours and the `mup` package's) that are flat in width under muP and grow under SP with Adam."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from mup import MuReadout, set_base_shapes
from mup.coord_check import get_coord_data
from torch import nn

from layerwise.groups import describe, param_groups
from layerwise.harness import models
from layerwise.mup import MuP, Readout, coord_check, to_mup
from layerwise.rules import rule_from_spec


def table(model: nn.Module) -> pd.DataFrame:
    """The rule's input, built here from named_parameters (kinds by module type), with the
    module classes in ``attrs["module_types"]`` as layer_table records them."""
    kinds = {nn.Linear: "dense", Readout: "dense", nn.Embedding: "embedding", nn.LayerNorm: "norm"}
    owners, types = {}, {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for local, _ in module.named_parameters(recurse=False, remove_duplicate=False):
            full = f"{module_name}.{local}" if module_name else local
            owners[full] = (module_name, kinds.get(type(module), "other"))
            types[module_name] = type(module)
    rows = [
        {
            "name": name,
            "module": owners[name][0],
            "kind": owners[name][1],
            "depth": depth,
            "shape": tuple(p.shape),
            "numel": p.numel(),
        }
        for depth, (name, p) in enumerate(model.named_parameters())
    ]
    frame = pd.DataFrame(rows)
    frame.attrs["module_types"] = types
    return frame


def mlp(width):
    return models.build("mlp", "fashion_mnist", width=width, depth=2)


# Table 3 with the readout multiplier 1/m (Table 8 form), m = 256 / 64 = 4, written out by hand.
MLP_ADAM = {"body.0.weight": 1, "body.0.bias": 1, "body.2.weight": 1 / 4, "body.2.bias": 1}
MLP_ADAM |= {"head.weight": 1, "head.bias": 1}
MLP_SGD = {"body.0.weight": 4, "body.0.bias": 4, "body.2.weight": 1, "body.2.bias": 4}
MLP_SGD |= {"head.weight": 4, "head.bias": 1}  # head bias has a fixed fan-out (10 classes)


@pytest.mark.parametrize("optimizer, expected", [("adam", MLP_ADAM), ("sgd", MLP_SGD)])
def test_mlp_multipliers_follow_table_3(optimizer, expected):
    t = table(to_mup(mlp(256), 64))
    rule = MuP(64, optimizer)
    assert dict(zip(t["name"], rule.multipliers(t), strict=True)) == pytest.approx(expected)
    assert MuP(256, optimizer).multipliers(t) == [1.0] * len(t)  # SP at the base width
    assert rule.classes(t) == ["input", "input", "hidden", "input", "output", "input"]


def tied_transformer(width: int) -> nn.Module:
    return models.build(
        "transformer",
        "tinyshakespeare",
        width=width,
        depth=1,
        heads=4,
        attn_scale="inverse",
        init="torch",
    )


def test_tied_transformer_multipliers():
    model = to_mup(tied_transformer(128), 32)
    t = table(model)
    assert "head.weight" not in set(t["name"])  # tied to embed.weight
    with pytest.raises(ValueError, match="width"):
        MuP(32).multipliers(t)
    adam = dict(zip(t["name"], MuP(32, "adam", width=128).multipliers(t), strict=True))
    sgd = dict(zip(t["name"], MuP(32, "sgd", width=128).multipliers(t), strict=True))
    for name in ("attn.qkv.weight", "attn.proj.weight", "mlp.0.weight", "mlp.2.weight"):
        assert adam[f"blocks.0.{name}"] == 1 / 4  # hidden: 1/fan_in
        assert sgd[f"blocks.0.{name}"] == 1
    for name in ("embed.weight", "pos", "ln_f.weight", "blocks.0.attn.qkv.bias"):
        assert adam[name] == 1  # input weights and biases
        assert sgd[name] == 4  # fan_out grows with width


def test_param_groups_of_a_tied_transformer():
    """Through the project's layer table: the width is found from the tied head's alias."""
    model = to_mup(tied_transformer(128), 32)
    groups = param_groups(model, 1e-3, MuP(32, "adam"), example_input=torch.zeros(2, 8).long())
    lrs = dict(zip(describe(groups)["name"], describe(groups)["lr"], strict=True))
    assert lrs["blocks.0.attn.qkv.weight"] == pytest.approx(1e-3 / 4)
    assert lrs["blocks.0.mlp.2.weight"] == pytest.approx(1e-3 / 4)
    assert lrs["embed.weight"] == lrs["pos"] == lrs["ln_f.bias"] == pytest.approx(1e-3)


def test_spec_is_json_and_round_trips():
    rule = MuP(64, "sgd")
    assert json.loads(json.dumps(rule.spec())) == {
        "name": "mup",
        "base_width": 64,
        "optimizer": "sgd",
    }
    assert rule_from_spec(rule.spec()) == rule
    assert rule_from_spec(MuP(64, width=256).spec()) == MuP(64, width=256)
    with pytest.raises(ValueError, match="'rmsprop'"):
        MuP(64, "rmsprop")


def test_to_mup_rescales_the_sp_draw():
    torch.manual_seed(0)
    sp = mlp(256)
    torch.manual_seed(0)
    mu = to_mup(mlp(256), base_width=64)
    m = 256 / 64
    assert isinstance(mu.head, Readout) and mu.head.multiplier == 1 / m
    torch.testing.assert_close(mu.body[0].weight, sp.body[0].weight)
    torch.testing.assert_close(mu.body[0].bias, sp.body[0].bias)  # input layer: unchanged
    torch.testing.assert_close(mu.body[2].weight, sp.body[2].weight)
    torch.testing.assert_close(mu.body[2].bias, math.sqrt(m) * sp.body[2].bias)
    torch.testing.assert_close(mu.head.weight, math.sqrt(m) * sp.head.weight)
    torch.testing.assert_close(mu.head.bias, math.sqrt(m) * sp.head.bias)
    x = torch.randn(3, 1, 28, 28)
    h = mu.body(x.flatten(1))
    torch.testing.assert_close(mu(x), (h / m) @ mu.head.weight.T + mu.head.bias)
    # effective readout variance ~ SP / m, i.e. 1 / (3 fan_in m) for PyTorch's uniform init
    effective = mu.head.weight / m
    assert effective.var().item() == pytest.approx(1 / (3 * 256 * m), rel=0.15)


def test_to_mup_equals_sp_at_base_width():
    torch.manual_seed(0)
    sp = mlp(64)
    torch.manual_seed(0)
    mu = to_mup(mlp(64), base_width=64)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(mu(x), sp(x))


def test_to_mup_transformer():
    with pytest.raises(ValueError, match="inverse"):
        to_mup(models.build("transformer", "tinyshakespeare", width=64, depth=1, init="torch"), 32)
    with pytest.raises(ValueError, match="init='gpt'"):  # GPT-2's fixed-std draw is not SP's
        to_mup(models.build("transformer", "tinyshakespeare", attn_scale="inverse"), 32)
    model = models.build(
        "transformer",
        "tinyshakespeare",
        width=64,
        depth=1,
        heads=4,
        attn_scale="inverse",
        init="torch",
    )
    to_mup(model, 32, zero_query=True)
    assert model.head.weight is model.embed.weight  # tie kept
    assert model.head.multiplier == 0.5
    assert torch.all(model.blocks[0].attn.qkv.weight[:64] == 0)
    assert torch.any(model.blocks[0].attn.qkv.weight[64:] != 0)
    assert model(torch.randint(0, 65, (2, 5))).shape == (2, 5, 65)
    image = to_mup(
        models.build("transformer", "mnist1d", width=64, attn_scale="inverse"),
        32,
        zero_readout=True,
    )
    assert torch.all(image.head.weight == 0)
    with pytest.raises(ValueError, match="readout"):
        to_mup(image, 32)  # already muP


# ----------------------------------------------------------------------------------------------
# coordinate checks: slope of log mean|activation| against log width

WIDTHS = [32, 64, 128, 256]
STEPS = 4  # step 0 is the initialisation
LR = 0.03


def slopes(frame, layer_col, step_col, value_col, steps):
    """Per step, the slope of log(value) on log(width) for each layer."""
    out = {}
    for (step, layer), rows in frame[frame[step_col].isin(steps)].groupby([step_col, layer_col]):
        out[(step, layer)] = np.polyfit(np.log(rows["width"]), np.log(rows[value_col]), 1)[0]
    return out


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    return torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))


def test_coord_check_flat_under_mup_and_growing_under_sp(batch):
    def make_mup(width):
        return to_mup(mlp(width), base_width=32)

    mu = coord_check(make_mup, WIDTHS, STEPS, batch, LR, "adam", rule=MuP(32, "adam"))
    sp = coord_check(mlp, WIDTHS, STEPS, batch, LR, "adam")
    assert list(mu.columns) == ["width", "step", "layer", "mean_abs"]
    assert set(mu["layer"]) == {"body.0", "body.2", "head"}
    trained = range(1, STEPS)
    mu_slopes = slopes(mu, "layer", "step", "mean_abs", trained)
    sp_slopes = slopes(sp, "layer", "step", "mean_abs", trained)
    for step in trained:
        for layer in ("body.2", "head"):  # hidden layer and output
            assert abs(mu_slopes[(step, layer)]) < 0.15, (step, layer)
    assert sp_slopes[(1, "body.2")] > 0.4
    assert sp_slopes[(1, "head")] > 0.8


class PackageMLP(nn.Module):
    """The same MLP written for the `mup` package: its MuReadout as the head."""

    def __init__(self, width, readout):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU()
        )
        self.head = MuReadout(width, 10) if readout else nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


def package_coord_data(batch, mup):
    def lazy(width):
        def make():
            model = PackageMLP(width, mup)
            if mup:
                set_base_shapes(model, PackageMLP(32, True), delta=PackageMLP(64, True))
            return model

        return make

    return get_coord_data(
        {w: lazy(w) for w in WIDTHS},
        [batch],
        optimizer="adam",
        lr=LR,
        mup=mup,
        nsteps=STEPS,
        cuda=False,
        show_progress=False,
    )


def test_mup_package_coord_check_agrees_qualitatively(batch):
    trained = range(2, STEPS + 1)  # the package counts from t = 1 (initialisation)
    mu = slopes(package_coord_data(batch, True), "module", "t", "l1", trained)
    sp = slopes(package_coord_data(batch, False), "module", "t", "l1", trained)
    for t in trained:
        for layer in ("body.2", "head"):
            assert abs(mu[(t, layer)]) < 0.15, (t, layer)
    assert sp[(2, "body.2")] > 0.4
    assert sp[(2, "head")] > 0.8


def test_refuses_what_it_cannot_make_mup():
    with pytest.raises(ValueError, match="recurrent"):
        to_mup(models.build("gru", "mnist1d", width=32), 16)
    readout_like = pd.DataFrame(
        {
            "name": ["a.weight", "head.weight"],
            "kind": ["dense", "dense"],
            "shape": [(10, 64), (10, 64)],
        }
    )
    readout_like.attrs["module_types"] = {"a": nn.Linear, "head": Readout}
    with pytest.raises(ValueError, match="a.weight"):
        MuP(32).multipliers(readout_like)


def test_the_rule_refuses_a_model_that_did_not_go_through_to_mup():
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"'head' is Linear: call to_mup on the freshly built"):
        param_groups(mlp(128), 1e-3, MuP(64), x)
    bare = table(to_mup(mlp(128), 64))
    bare.attrs.clear()  # a hand-made frame cannot show that the model went through to_mup
    with pytest.raises(ValueError, match=r"without attrs\['module_types'\]"):
        MuP(64).multipliers(bare)
    groups = param_groups(to_mup(mlp(128), 64), 1e-3, MuP(64), x)
    rates = dict(zip(describe(groups)["name"], describe(groups)["lr"], strict=True))
    assert rates["body.2.weight"] == pytest.approx(1e-3 / 2)


class TorchAttention(nn.Module):
    """nn.MultiheadAttention, which always scales logits by 1/sqrt(d_head)."""

    def __init__(self, width: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, 4, batch_first=True)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.attn(x, x, x)[0])


class SilentAttention(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)

    def forward(self, x):
        return self.qkv(x)[..., : x.shape[-1]]


class WithSilentAttention(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.mix = SilentAttention(width)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.mix(x))


def test_to_mup_refuses_attention_without_1_over_d_logits():
    with pytest.raises(ValueError, match=r"attn \(MultiheadAttention\).*`scale`"):
        to_mup(TorchAttention(16), 8)
    with pytest.raises(ValueError, match=r"mix \(SilentAttention\).*`scale`"):
        to_mup(WithSilentAttention(16), 8)
    sqrt = models.build("transformer", "mnist1d", width=64, heads=4, attn_scale="sqrt")
    with pytest.raises(
        ValueError, match=r"blocks\.0\.attn \(SelfAttention\) scales .* 0\.25.*1/16"
    ):
        to_mup(sqrt, 32)
    inverse = models.build("transformer", "mnist1d", width=64, heads=4, attn_scale="inverse")
    assert isinstance(to_mup(inverse, 32).head, Readout)


def test_toolkit_imports_neither_the_harness_nor_a_cycle():
    """The toolkit stands alone: importing it loads no harness module, and the muP rule is
    known by name without importing layerwise.mup (no rules -> mup import)."""
    code = (
        "import sys\n"
        "import layerwise.rules as r\n"
        "assert 'mup' in r.RULES and 'layerwise.mup' not in sys.modules\n"
        "import layerwise.groups, layerwise.mup, layerwise.probes, layerwise.freezeout\n"
        "import layerwise.schedules, layerwise.optim\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('layerwise.harness', 'layerwise.studies')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
