"""Rules on a hand-made layer table: multipliers against their formulas, validation, specs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from layerwise import rules
from layerwise.rules import (
    ByKind,
    Discriminative,
    FromFunction,
    HeadRate,
    LayerDecay,
    Uniform,
    as_rule,
    register_rule,
    rule_from_spec,
)

# depths 0, 0, 1, 2, 2 (D = 2)
TABLE = pd.DataFrame(
    {
        "name": ["embed.weight", "pos", "conv.weight", "head.weight", "head.bias"],
        "kind": ["embedding", "other", "conv", "dense", "dense"],
        "depth": [0, 0, 1, 2, 2],
        "shape": [(5, 4), (1, 4), (4, 4, 3), (2, 4), (2,)],
    }
)


def test_uniform():
    assert Uniform().multipliers(TABLE) == [1.0] * 5


def test_discriminative_toward_input_is_ulmfit():
    # eta^(l-1) = eta^l / 2.6 going down from the top layer
    top, below, bottom = 1.0, 1 / 2.6, 1 / (2.6 * 2.6)
    got = Discriminative(2.6).multipliers(TABLE)
    assert got == pytest.approx([bottom, bottom, below, top, top])


def test_discriminative_toward_output_reverses_the_direction():
    got = Discriminative(2.0, toward="output").multipliers(TABLE)
    assert got == pytest.approx([1.0, 1.0, 0.5, 0.25, 0.25])


def test_layer_decay_keeps_the_head_and_decays_downward():
    assert LayerDecay(0.8).multipliers(TABLE) == pytest.approx([0.64, 0.64, 0.8, 1.0, 1.0])
    assert LayerDecay(1.0).multipliers(TABLE) == [1.0] * 5


def test_layer_decay_equals_discriminative_with_the_inverse_factor():
    a = LayerDecay(0.65).multipliers(TABLE)
    b = Discriminative(1 / 0.65).multipliers(TABLE)
    assert a == pytest.approx(b)


def test_head_rate_scales_only_the_top_depth():
    # head.weight and head.bias sit at D = 2; everything below keeps the base rate
    assert HeadRate(10.0).multipliers(TABLE) == [1.0, 1.0, 1.0, 10.0, 10.0]
    assert HeadRate(1.0).multipliers(TABLE) == Uniform().multipliers(TABLE)


def test_by_kind():
    got = ByKind({"conv": 2.0, "embedding": 0.5}).multipliers(TABLE)
    assert got == [0.5, 1.0, 2.0, 1.0, 1.0]


def test_from_function_and_plain_callables():
    def fn(row):
        return 1.0 + row["depth"] + (row["kind"] == "dense")

    expected = [1.0, 1.0, 2.0, 4.0, 4.0]
    assert FromFunction(fn).multipliers(TABLE) == expected
    assert as_rule(fn).multipliers(TABLE) == expected


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Discriminative(0), r"factor must be a positive number, got 0$"),
        (lambda: Discriminative(-2.6), r"got -2\.6$"),
        (lambda: Discriminative(2.6, toward="middle"), r"'middle'; valid: 'input', 'output'"),
        (lambda: LayerDecay(0), r"decay must be a number in \(0, 1\], got 0$"),
        (lambda: LayerDecay(1.5), r"got 1\.5$"),
        (lambda: LayerDecay(-0.5), r"got -0\.5$"),
        (lambda: HeadRate(0), r"HeadRate multiplier must be a positive number, got 0$"),
        (lambda: ByKind({"conv": -1.0}), r"'conv' must be a positive number, got -1\.0$"),
    ],
)
def test_invalid_values_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_kind_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"'conv2d'.*'attention'.*'conv'.*'dense'"):
        ByKind({"conv2d": 2.0})


def test_by_kind_copies_its_mapping():
    mapping = {"conv": 2.0}
    rule = ByKind(mapping)
    mapping["conv"] = 5.0
    assert rule.multipliers(TABLE)[2] == 2.0


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "uniform"},
        {"name": "discriminative", "factor": 2.6, "toward": "input"},
        {"name": "discriminative", "factor": 3.0, "toward": "output"},
        {"name": "layer_decay", "decay": 0.8},
        {"name": "by_kind", "multipliers": {"conv": 2.0}},
        {"name": "head", "multiplier": 4.0},
    ],
)
def test_specs_round_trip_through_json(spec):
    rule = rule_from_spec(json.loads(json.dumps(spec)))
    assert rule.spec() == spec
    assert rule_from_spec(json.loads(json.dumps(rule.spec()))) == rule


def test_spec_fills_defaults():
    assert rule_from_spec({"name": "discriminative"}) == Discriminative(2.6, "input")
    assert LayerDecay().spec() == {"name": "layer_decay", "decay": 0.8}


def test_unknown_rule_name_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"'llrd'.*'by_kind', 'discriminative', 'head', 'layer_decay'"
    ):
        rule_from_spec({"name": "llrd"})
    with pytest.raises(ValueError, match="'name'"):
        rule_from_spec({"decay": 0.8})


def test_unknown_rule_option_is_named():
    with pytest.raises(ValueError, match=r"'xi'.*valid: decay"):
        rule_from_spec({"name": "layer_decay", "xi": 0.8})
    with pytest.raises(ValueError, match=r"'multipliers_by_kind'.*valid: multipliers"):
        rule_from_spec({"name": "by_kind", "multipliers_by_kind": {}})


def test_function_rules_have_no_spec():
    with pytest.raises(TypeError, match="FromFunction"):
        FromFunction(lambda row: 1.0).spec()


def test_registering_a_new_rule():
    """What a rule written elsewhere (e.g. muP) does to become nameable in configs."""

    class Halve:
        def __init__(self, kind: str = "dense"):
            self.kind = kind

        def multipliers(self, table):
            return [0.5 if k == self.kind else 1.0 for k in table["kind"]]

    try:
        register_rule("test_halve")(Halve)
        rule = rule_from_spec({"name": "test_halve", "kind": "conv"})
        assert rule.multipliers(TABLE) == [1.0, 1.0, 0.5, 1.0, 1.0]
        with pytest.raises(ValueError, match="already taken"):
            register_rule("test_halve")(type("Other", (), {}))
    finally:
        rules.RULES.pop("test_halve", None)
