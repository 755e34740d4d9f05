"""Study 09 (width rules): the rules each parametrisation gives, checked against formulas written
out here and against the `mup` package; the optimum, drift and verdict helpers on constructed
curves; the two-stage curve design and the per-role arms."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from layerwise.harness import models
from layerwise.harness.config import RunConfig
from layerwise.layers import layer_table
from layerwise.mup import MuP, Readout, coord_check
from layerwise.rules import ROLES, WidthRoles, rule_from_spec
from layerwise.studies import width_rules as w

# ----------------------------------------------------------------------------------------------
# the per-layer multipliers, from the formulas (m = width / 64), tensor by tensor

MLP_TENSORS = ("body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias")
MLP_TENSORS += ("head.weight", "head.bias")


def expected(parametrisation: str, optimizer: str, m: float) -> dict[str, float]:
    """Table 3 of Tensor Programs V and the two SP prescriptions, written out by hand for the
    784-n-n-10 MLP: input W1/b1, hidden W2/b2, readout W3/b3 (b3 has 10 entries: fixed)."""
    one = dict.fromkeys(MLP_TENSORS, 1.0)
    if parametrisation == "SP":
        return one
    if parametrisation == "SP + embedding":
        return one | {"body.0.weight": m}
    if optimizer == "adamw":
        if parametrisation == "muP":  # readout multiplier form: readout Adam rate x1
            return one | {"body.2.weight": 1 / m}
        return one | {"body.2.weight": 1 / m, "head.weight": 1 / m}  # Everett et al.
    sgd = one | {"body.0.weight": m, "body.0.bias": m, "body.2.bias": m}
    # muP's readout is multiplied by 1/m, so its SGD rate is x m (Table 8); Table 3 on SP: x 1/m
    return sgd | {"head.weight": m if parametrisation == "muP" else 1 / m}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_multiplier_table_matches_the_formulas_at_two_widths(optimizer):
    table = w.multiplier_table(w.MLP, optimizer, (128, 1024))
    assert set(table["width"]) == {128, 1024}
    for width, rows in table.groupby("width"):
        rows = rows.set_index("tensor")
        assert tuple(rows.index) == MLP_TENSORS
        for p in w.PARAMETRISATIONS:
            want = expected(p, optimizer, width / 64)
            for tensor in MLP_TENSORS:
                assert rows.loc[tensor, p] == pytest.approx(want[tensor]), (width, p, tensor)


def test_every_parametrisation_is_sp_at_the_base_width():
    for optimizer in ("sgd", "adamw"):
        table = w.multiplier_table(w.TEXT, optimizer, (64,))
        assert (table[list(w.PARAMETRISATIONS)] == 1.0).all().all()


def test_transformer_roles_and_everett_rates():
    table = w.multiplier_table(w.TEXT, "adamw", (256,)).set_index("tensor")
    assert table.loc["embed.weight", "role"] == "input"
    assert table.loc["pos", "role"] == "input"
    assert table.loc["blocks.0.attn.qkv.weight", "role"] == "hidden"
    assert table.loc["blocks.1.mlp.2.weight", "role"] == "hidden"
    assert table.loc["head.weight", "role"] == "output"
    assert table.loc["ln_f.weight", "role"] == "vector"
    assert table.loc["head.bias", "role"] == "fixed"
    assert table.loc["blocks.0.mlp.0.weight", "SP + Everett"] == pytest.approx(1 / 4)
    assert table.loc["head.weight", "SP + Everett"] == pytest.approx(1 / 4)
    assert table.loc["embed.weight", "SP + Everett"] == 1.0
    assert table.loc["embed.weight", "SP + embedding"] == pytest.approx(4.0)
    assert table.loc["head.weight", "muP"] == 1.0


# ----------------------------------------------------------------------------------------------
# the rule and the model option behind the parametrisations


def test_width_roles_spec_round_trips_and_refuses_bad_values():
    rule = WidthRoles(64, exponents={"hidden": -1, "output": -1})
    assert rule.spec() == {"name": "width_roles", "base_width": 64,
                           "exponents": {"hidden": -1, "output": -1}}  # fmt: skip
    assert rule_from_spec(rule.spec()) == rule
    assert WidthRoles(64).spec() == {"name": "width_roles", "base_width": 64}
    with pytest.raises(ValueError, match="width role.*'embedding'.*input"):
        WidthRoles(64, exponents={"embedding": 1})
    with pytest.raises(ValueError, match="factor for 'output'"):
        WidthRoles(64, factors={"output": 0.0})
    with pytest.raises(ValueError, match="base_width"):
        WidthRoles(0)
    assert set(ROLES) == {"input", "hidden", "output", "vector", "fixed"}


def test_mup_model_option_builds_the_to_mup_model():
    torch.manual_seed(0)
    sp = models.build("mlp", "fashion_mnist", width=64, depth=2)
    torch.manual_seed(0)
    mu = models.build("mlp", "fashion_mnist", width=64, depth=2, mup_base_width=64)
    assert isinstance(mu.head, Readout) and mu.head.multiplier == 1.0
    for (name, a), (_, b) in zip(sp.state_dict().items(), mu.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # muP equals SP at the base width
    wide = models.build("mlp", "fashion_mnist", width=256, depth=2, mup_base_width=64)
    assert wide.head.multiplier == pytest.approx(0.25)
    with pytest.raises(ValueError, match="init='torch'"):
        models.build("transformer", "tinyshakespeare", width=64, mup_base_width=64)
    with pytest.raises(ValueError, match="mup_base_width must be a whole number"):
        models.build("mlp", "fashion_mnist", mup_base_width=64.5)
    with pytest.raises(ValueError, match="mup_base_width"):
        models.build("cnn", "fashion_mnist", mup_base_width=64)


def test_every_curve_config_is_valid_and_sp_keys_carry_no_new_field():
    for curve in w.plan("full"):
        config = curve.config(1e-3, 100)
        assert ("mup_base_width" in config.model_options) == (curve.parametrisation == "muP")
        assert RunConfig.from_dict(config.to_dict()) == config
    sp = w.Curve(w.MLP, "sgd", "SP", 256).config(0.1, 100).to_dict()
    assert "device" not in sp and "mup_base_width" not in sp["model_options"]


# ----------------------------------------------------------------------------------------------
# the `mup` package on the same model: its per-tensor rates and its coordinate check


class PackageMLP(torch.nn.Module):
    """The harness's Fashion-MNIST MLP written for `mup`, with the same tensor names."""

    def __init__(self, width: int):
        from mup import MuReadout

        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(784, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
        )
        self.head = MuReadout(width, 10)

    def forward(self, x):
        return self.head(self.body(x))


def _package_rates(width: int, optimizer: str) -> dict[str, float]:
    mup = pytest.importorskip("mup", reason="the `mup` package (dev extra) is not installed")
    model = PackageMLP(width)
    mup.set_base_shapes(model, PackageMLP(64), delta=PackageMLP(128))
    make = {"adamw": mup.MuAdamW, "sgd": mup.MuSGD}[optimizer]
    opt = make(model.parameters(), lr=1.0)
    names = {id(p): n.replace("body.1", "body.0").replace("body.3", "body.2")
             for n, p in model.named_parameters()}  # fmt: skip
    return {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("width", [256, 1024])
def test_mup_rates_equal_the_mup_package(optimizer, width):
    theirs = _package_rates(width, optimizer)
    model = models.build("mlp", "fashion_mnist", width=width, depth=2, mup_base_width=64)
    table = layer_table(model, torch.zeros(2, 1, 28, 28))
    ours = dict(zip(table["name"], MuP(64, "adam" if optimizer == "adamw" else "sgd")
                    .multipliers(table), strict=True))  # fmt: skip
    assert set(ours) == set(theirs)
    for name in ours:
        assert ours[name] == pytest.approx(theirs[name]), name


def _width_slopes(frame: pd.DataFrame, layer: str, step: int, x: str, y: str) -> float:
    """Slope of log mean |activation| against log width for one layer at one step."""
    rows = frame[(frame["layer"] == layer) & (frame[x] == step)]
    return float(np.polyfit(np.log(rows["width"]), np.log(rows[y]), 1)[0])


def test_coord_check_of_the_harness_model_agrees_with_the_package():
    pytest.importorskip("mup", reason="the `mup` package (dev extra) is not installed")
    from mup.coord_check import get_coord_data

    widths, steps, lr = (64, 128, 256, 512), 4, 1e-2
    torch.manual_seed(0)
    batch = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))

    def ours_model(width):
        return models.build("mlp", "fashion_mnist", width=width, depth=2, mup_base_width=64)

    ours = coord_check(ours_model, widths, steps, batch, lr, "adam", rule=MuP(64, "adam"))

    def lazy(width):
        def make():
            from mup import set_base_shapes

            model = PackageMLP(width)
            set_base_shapes(model, PackageMLP(64), delta=PackageMLP(128))
            return model

        return make

    theirs = get_coord_data({v: lazy(v) for v in widths}, [batch], optimizer="adam", lr=lr,
                            mup=True, nsteps=steps, cuda=False, show_progress=False)  # fmt: skip
    theirs = theirs.assign(layer=theirs["module"].replace({"body.3": "body.2"}))
    for step in range(1, steps):  # ours counts the initialisation as step 0, the package as t=1
        for layer in ("body.2", "head"):
            a = _width_slopes(ours, layer, step, "step", "mean_abs")
            b = _width_slopes(theirs, layer, step + 1, "t", "l1")
            # flat in width (SP's hidden and output coordinates grow with slope > 0.4 here,
            # tests/test_mup.py), and the two implementations agree
            assert abs(a) < 0.25 and abs(b) < 0.25, (step, layer, a, b)
            assert abs(a - b) < 0.1, (step, layer, a, b)


# ----------------------------------------------------------------------------------------------
# per-role arms


def test_role_arms_change_only_the_named_role_by_the_named_power():
    config = w.Curve(w.MLP, "adamw", "SP", 256).config(1e-3, 1)
    arms, design = w.role_arms(config)
    assert len(arms) == 1 + 3 * len(w.ROLE_POWERS)
    model = models.build("mlp", "fashion_mnist", width=256, depth=2)
    table = layer_table(model, torch.zeros(2, 1, 28, 28))
    roles = WidthRoles(64).roles(table)
    uniform = rule_from_spec(dict(arms["uniform"].rule)).multipliers(table)
    for row in design[design["role"].notna()].itertuples(index=False):
        got = rule_from_spec(dict(arms[row.arm].rule)).multipliers(table)
        for role, a, b in zip(roles, got, uniform, strict=True):
            want = b * 2.0**row.power if role == row.role else b
            assert a == pytest.approx(want), (row.arm, role)
        assert arms[row.arm].replace(rule=None) == config.replace(rule=None)
    with pytest.raises(ValueError, match="non-zero whole numbers"):
        w.role_arms(config, (0,))


# ----------------------------------------------------------------------------------------------
# optimum, drift, verdict on constructed curves

GRID = np.arange(-10.0, 1.0)


def test_optimum_is_the_parabola_vertex_and_flags_edges():
    x, interior = w.optimum(GRID, (GRID + 4.3) ** 2)
    assert interior and x == pytest.approx(-4.3)
    assert w.optimum(GRID, (GRID + 20) ** 2) == (-10.0, False)
    loss = (GRID + 4.0) ** 2
    loss[7] = np.nan  # diverged neighbour of the best point (-3 is index 7; best is -4 at 6)
    assert w.optimum(GRID, loss) == (-4.0, False)
    assert math.isnan(w.optimum(GRID, np.full(len(GRID), np.nan))[0])


def curves(shift_per_width: dict[str, float], widths=(64, 2048), seeds=(100, 101, 102), noise=0.0):
    """A frame of constructed curves: loss = 1 + 0.05 (log2 lr - c)^2 with the centre ``c``
    moving by ``shift`` octaves from the narrowest to the widest width."""
    rng = np.random.default_rng(0)
    rows = []
    for p, shift in shift_per_width.items():
        for i, width in enumerate(widths):
            centre = -4.0 + shift * i / (len(widths) - 1)
            for s in seeds:
                offset = rng.normal(0, noise)
                for x in GRID:
                    rows.append(
                        {"testbed": w.MLP, "optimizer": "sgd", "parametrisation": p, "width": width,
                         "lr": 2.0**x, "log2_lr": x, "seed": s,
                         "train_loss": 1 + 0.05 * (x - centre - offset) ** 2 - 0.01 * i}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def test_drift_of_constructed_curves():
    frame = curves({"SP": -4.0, "muP": 0.0, "SP + Everett": 0.3}, noise=0.2)
    table = w.drift_table(frame, boot=200).set_index("parametrisation")
    assert table.loc["SP", "drift"] == pytest.approx(1 / 16, rel=0.15)
    assert table.loc["SP", "abs_log2_drift"] == pytest.approx(4.0, abs=0.2)
    assert table.loc["muP", "drift"] == pytest.approx(1.0, rel=0.15)
    assert table.loc["muP", "drift_low"] <= 1.0 <= table.loc["muP", "drift_high"]
    assert table.loc["SP", "drift_high"] < 0.25
    assert (table["seeds"] == 3).all()


def test_verdict8_gives_each_outcome():
    optima = w.optimum_table(curves({"SP": -4.0, "muP": 0.0}))
    drifts = w.drift_table(curves({"SP": -4.0, "muP": 0.0}), boot=50)
    assert w.verdict8(drifts, optima)["verdict"].tolist() == ["reproduced"]
    drifts = w.drift_table(curves({"SP": 0.0, "muP": -4.0}), boot=50)
    optima_worse = optima.copy()
    mu = optima_worse["parametrisation"] == "muP"
    optima_worse.loc[mu & (optima_worse["width"] == 2048), "loss_at_opt"] += 0.1
    assert w.verdict8(drifts, optima_worse)["verdict"].tolist() == ["not reproduced"]
    drifts = w.drift_table(curves({"SP": -1.0, "muP": 0.0}), boot=50)
    row = w.verdict8(drifts, optima).iloc[0]
    assert row["verdict"] == "partly"
    assert (row["SP drifts >= 4x"], row["muP drifts <= 2x"]) == ("no", "yes")
    assert row["SP drift"] == pytest.approx(0.5, rel=0.05)


def test_verdict8_is_inconclusive_when_an_interval_crosses_the_factor():
    optima = w.optimum_table(curves({"SP": -4.0, "muP": 0.0}))
    drifts = w.drift_table(curves({"SP": -4.0, "muP": 0.0}), boot=50)
    # SP's point estimate is 16x, but its interval reaches below 4x: one seed could flip it
    sp = drifts["parametrisation"] == "SP"
    drifts.loc[sp, ["drift_low", "drift_high"]] = [1 / 32, 1 / 3]
    row = w.verdict8(drifts, optima).iloc[0]
    assert row["SP drifts >= 4x"] == "undecided" and row["verdict"] == "inconclusive"
    drifts.loc[sp, ["drift_low", "drift_high"]] = [3.5, 40.0]  # the other direction, also across
    assert w.verdict8(drifts, optima).iloc[0]["SP drifts >= 4x"] == "undecided"
    drifts.loc[sp, ["drift_low", "drift_high"]] = [4.0, 40.0]
    assert w.verdict8(drifts, optima).iloc[0]["verdict"] == "reproduced"
    mu = drifts["parametrisation"] == "muP"
    drifts.loc[mu, ["drift_low", "drift_high"]] = [2.5, 3.0]  # muP drifts more than 2x: no
    row = w.verdict8(drifts, optima).iloc[0]
    assert row["muP drifts <= 2x"] == "no" and row["verdict"] == "partly"
    text = w.answer(
        w.verdict8(drifts, optima), drifts, pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    )
    assert "muP's x" in text and "[2.5, 3] (no: drifts <= 2x)" in text


def test_a_drift_whose_optimum_sits_at_the_end_of_its_rates_is_censored():
    frame = curves({"SP": -4.0, "muP": 0.0})
    drifts = w.drift_table(frame, boot=20).set_index("parametrisation")
    assert not drifts["censored"].any()
    # muP's narrowest curve with its best rate (2^-4) as the largest rate it tried
    cut = (frame["parametrisation"] == "muP") & (frame["width"] == 64) & (frame["log2_lr"] > -4)
    drifts = w.drift_table(frame[~cut], boot=20)
    assert drifts.set_index("parametrisation")["censored"].to_dict() == {"SP": False, "muP": True}
    optima = w.optimum_table(frame[~cut])
    row = w.verdict8(drifts, optima).iloc[0]
    assert row["muP drifts <= 2x"] == "undecided" and row["censored"] == "muP"
    assert row["SP drifts >= 4x"] == "yes" and row["verdict"] == "inconclusive"
    text = w.answer(w.verdict8(drifts, optima), drifts, pd.DataFrame(), pd.DataFrame(),
                    pd.DataFrame())  # fmt: skip
    assert "Censored (muP): an optimum at the end of the rates tried" in text
    # a diverged run beyond the best rate bounds it: not censored
    diverged = frame[cut].assign(train_loss=np.nan)
    drifts = w.drift_table(pd.concat([frame[~cut], diverged]), boot=20)
    assert not drifts["censored"].any()


def test_non_increasing_allows_the_tolerance_only():
    assert w.non_increasing([1.0, 0.99, 1.005], 0.02)
    assert not w.non_increasing([1.0, 1.03], 0.02)
    assert not w.non_increasing([1.0, np.nan], 0.02)


def widest_curves(levels, seed_sd=0.0, run_sd=0.0, offsets=None, seeds=(100, 101, 102)):
    """Constructed curves at the widest width: loss = level + 0.05 (log2 lr + 4)^2, plus an
    offset per seed shared by every parametrisation (sd ``seed_sd``), one per run (``run_sd``)
    and ``offsets[p][i]`` for parametrisation ``p`` on the i-th seed."""
    rng = np.random.default_rng(1)
    shared = {s: rng.normal(0, seed_sd) for s in seeds}
    rows = []
    for p, level in levels.items():
        for i, s in enumerate(seeds):
            own = (offsets or {}).get(p, [0.0] * len(seeds))[i]
            for x in GRID:
                rows.append(
                    {"testbed": w.MLP, "optimizer": "sgd", "parametrisation": p, "width": 2048,
                     "lr": 2.0**x, "log2_lr": x, "seed": s,
                     "train_loss": level + 0.05 * (x + 4) ** 2 + shared[s] + own
                     + rng.normal(0, run_sd)}
                )  # fmt: skip
    return pd.DataFrame(rows)


EMB = "SP + embedding"


def test_recovered_share_is_the_gain_ratio_at_each_optimum():
    frame = widest_curves({"SP": 1.0, "muP": 0.8, EMB: 0.85}, run_sd=0.01)
    best = frame.groupby(["parametrisation", "lr"])["train_loss"].mean().groupby(level=0).min()
    row = w.recovered_share(frame, EMB, boot=200).iloc[0]
    expected = (best["SP"] - best[EMB]) / (best["SP"] - best["muP"])
    assert row["share"] == pytest.approx(expected)
    assert row["muP gain"] == pytest.approx(best["SP"] - best["muP"])
    assert row["share_low"] < row["share"] < row["share_high"]
    assert row["gain_low"] < row["muP gain"] < row["gain_high"]
    assert row["seeds"] == 3 and row["recovers most"] == "yes"  # about 0.75, interval above 0.5
    low = w.recovered_share(widest_curves({"SP": 1.0, "muP": 0.8, EMB: 0.98}, run_sd=0.01), EMB)
    assert low.iloc[0]["recovers most"] == "no"
    wide = w.recovered_share(widest_curves({"SP": 1.0, "muP": 0.8, EMB: 0.9}, run_sd=0.05), EMB)
    assert wide.iloc[0]["recovers most"] == "undecided"


def test_recovered_share_resamples_seeds_jointly():
    # a large offset per seed shared by the three parametrisations cancels in every resample
    row = w.recovered_share(
        widest_curves({"SP": 1.0, "muP": 0.8, EMB: 0.9}, seed_sd=0.3), EMB
    ).iloc[0]
    assert row["share_low"] == pytest.approx(0.5) and row["share_high"] == pytest.approx(0.5)


def test_recovered_share_without_a_gain_to_recover():
    frame = widest_curves({"SP": 1.0, "muP": 1.01, EMB: 0.9})
    row = w.recovered_share(frame, EMB).iloc[0]
    assert np.isnan(row["share"]) and row["muP gain"] == pytest.approx(-0.01)
    # muP gains 0.06, 0.06 and -0.09 on the three seeds: positive on the mean (0.01), not in
    # every resample, so a share but no interval
    offsets = {"muP": [-0.06, -0.06, 0.09], EMB: [-0.03, -0.03, 0.0]}
    frame = widest_curves({"SP": 1.0, "muP": 1.0, EMB: 1.0}, offsets=offsets)
    row = w.recovered_share(frame, EMB).iloc[0]
    assert row["muP gain"] == pytest.approx(0.01) and row["share"] == pytest.approx(2.0)
    assert row["gain_low"] < 0 and np.isnan(row["share_low"])
    assert row["recovers most"] == "undecided"
    text = w.answer(pd.DataFrame(), pd.DataFrame(columns=["testbed", "optimizer", "parametrisation"]),
                    w.recovered_share(frame, EMB), pd.DataFrame(), pd.DataFrame())  # fmt: skip
    assert "recovers 200% (no interval: muP's gain is not positive in every resample)" in text


def test_answer_on_constructed_tables():
    drifts = w.drift_table(curves({p: 0.0 for p in w.PARAMETRISATIONS}), boot=20)
    verdicts = w.verdict8(drifts, w.optimum_table(curves({"SP": 0.0, "muP": 0.0})))
    shares = w.recovered_share(widest_curves({"SP": 1.0, "muP": 0.8, EMB: 0.9}, seed_sd=0.3), EMB)
    text = w.answer(verdicts, drifts, shares, pd.DataFrame(), pd.DataFrame())
    assert "recovers 50% [50%, 50%] of muP's gain" in text and "partly" in text
    # every parametrisation's optimum stays put (intervals inside 2x): Everett's reads as muP's
    assert "Everett et al.'s SP rates**, fashion_mnist/mlp sgd: optimum drifts x1 [" in text
    assert text.count("(within 2x: yes)") == 2
    assert "+0.200 [+0.200, +0.200] nats" in text and "more than half: undecided" in text
    shares = w.recovered_share(widest_curves({"SP": 1.0, "muP": 1.01, EMB: 0.9}), EMB)
    roles = pd.DataFrame(
        [{"testbed": w.MLP, "optimizer": "sgd", "role": role, "power": k,
          "effect": (0.1 if role == "output" else 0.01) * abs(k),
          "outcome": "worse" if role == "output" and abs(k) == 3 else "equivalent"}
         for role in ("input", "hidden", "output") for k in w.ROLE_POWERS]
    )  # fmt: skip
    sensitivity = w.role_sensitivity(roles).set_index("role")
    assert sensitivity.loc["output", "worse_arms"] == 2
    assert sensitivity.loc["output", "max_increase"] == pytest.approx(0.3)
    text = w.answer(verdicts, drifts, shares, pd.DataFrame(), roles)
    assert "nothing to recover: muP's gain over SP -0.010" in text
    assert "Most sensitive role**, fashion_mnist/mlp sgd: output" in text and "2 of 6" in text


# ----------------------------------------------------------------------------------------------
# the two-stage curve design


def simulate(curve, loss):
    """Every run ``curve_configs`` asks for, in rounds, with ``loss(log2 lr, seed)`` as its final
    training loss (nan: diverged), until the curve is complete."""
    done, rounds = None, 0
    while configs := w.curve_configs(curve, done):
        rows = pd.DataFrame(
            [{"lr": c.lr, "seed": c.seed, "train_loss": loss(math.log2(c.lr), c.seed)}
             for c in configs]
        )  # fmt: skip
        done = rows if done is None else pd.concat([done, rows], ignore_index=True)
        rounds += 1
        assert rounds < 40
    return done


def _rates(done, seed):
    return sorted(math.log2(lr) for lr in done.loc[done["seed"] == seed, "lr"])


def test_curve_with_an_interior_optimum_gets_every_seed_around_it():
    curve = w.Curve(w.MLP, "sgd", "muP", 128)
    first = w.curve_configs(curve)
    assert [c.seed for c in first] == [100] * len(w.GRIDS["sgd"])
    assert [c.lr for c in first] == list(w.GRIDS["sgd"])
    done = simulate(curve, lambda x, seed: (x + 3) ** 2)
    assert _rates(done, 100) == list(range(-10, 1))  # the grid, nothing beyond
    assert _rates(done, 101) == _rates(done, 102) == [-5, -4, -3, -2, -1]


def test_curve_extends_past_the_grid_while_its_end_wins():
    curve = w.Curve(w.MLP, "sgd", "muP", 128)  # grid 2^-10 .. 2^0
    done = simulate(curve, lambda x, seed: (x - 2) ** 2)  # optimum two octaves above the grid
    assert _rates(done, 100)[-2:] == [2, 3]  # extended until the end rate lost
    assert _rates(done, 101) == _rates(done, 102) == [0, 1, 2, 3]
    # a diverged rate ends the extension; the optimum is then the edge of stability
    done = simulate(curve, lambda x, seed: math.nan if x >= 1 else -x)
    assert max(_rates(done, 100)) == max(_rates(done, 101)) == 1  # the window keeps it
    # never more than EXTENSIONS octaves beyond the grid, at either end
    done = simulate(curve, lambda x, seed: -x)
    assert max(_rates(done, 100)) == max(_rates(done, 102)) == w.EXTENSIONS["full"]
    done = simulate(curve, lambda x, seed: x)
    assert min(_rates(done, 101)) == -10 - w.EXTENSIONS["full"]


def test_window_extends_when_the_mean_over_seeds_sits_at_its_end():
    curve = w.Curve(w.MLP, "sgd", "muP", 128)

    def loss(x, seed):  # the first seed's optimum at -3, the others' at +1
        return (x + 3) ** 2 if seed == 100 else 3 * (x - 1) ** 2

    done = simulate(curve, loss)
    assert _rates(done, 101) == _rates(done, 102) == [-5, -4, -3, -2, -1, 0, 1]
    means = done.groupby("lr")["train_loss"].mean()[lambda m: m.index >= 2**-5]
    assert math.log2(means.idxmin()) == 0  # inside the seeds' common rates, not at their end


def test_plan_and_profiles():
    full = w.plan("full")
    assert len({c.width for c in full if c.bed == w.MLP}) >= 6
    assert {c.parametrisation for c in full} == set(w.PARAMETRISATIONS)
    assert {c.optimizer for c in full if c.bed == w.MLP} == {"sgd", "adamw"}
    assert max(c.width for c in w.plan("large") if c.bed == w.TEXT) == 512
    assert {c.device for c in w.plan("large", "cuda")} == {"cuda"}
    with pytest.raises(ValueError, match="profile.*'medium'.*smoke"):
        w.plan("medium")
    with pytest.raises(ValueError, match="parametrisation.*'muP2'"):
        w.rule_spec("muP2", "sgd")


def test_recovered_share_uses_seeds_of_every_parametrisation_and_rates_of_every_seed():
    frame = widest_curves({"SP": 1.0, "muP": 0.8, EMB: 0.9})
    frame = frame[~((frame["parametrisation"] == EMB) & (frame["seed"] == 102))]
    # SP's best rate (log2 = -4) lacks one seed there: SP's optimum moves to a neighbour
    frame = frame[
        ~((frame["parametrisation"] == "SP") & (frame["seed"] == 101) & (frame["log2_lr"] == -4))
    ]
    row = w.recovered_share(frame, EMB).iloc[0]
    assert row["seeds"] == 2
    assert row["muP gain"] == pytest.approx(0.2 + 0.05) and row["share"] == pytest.approx(
        0.15 / 0.25
    )
