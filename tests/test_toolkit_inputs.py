"""Every toolkit input is checked where it is given: a bad value raises an error (or, where it
is legal but suspicious, a warning) whose message names the value and what is valid.  Inputs
that other entry points accept are accepted here too (dict and tuple batches, param groups
that carry their own rates)."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from layerwise.groups import Discriminative, LayerDecay, check, describe, param_groups, resolve
from layerwise.layers import layer_table
from layerwise.optim import LAMB, LARS
from layerwise.probes import ConstantRepresentationWarning, capture_activations, linear_cka


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


X = torch.randn(3, 4)


class TwoInputs(nn.Module):
    """Takes two tensors, by position or by keyword, as a tokenizer's output is passed."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(2, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, left, right):
        return self.head(self.a(left) + self.b(right))


ERRORS = {
    "layer_table of a state dict": (
        lambda: layer_table(mlp().state_dict(), X),
        TypeError,
        r"layer_table needs a torch\.nn\.Module, got OrderedDict OrderedDict\(\[\('0\.weight'",
    ),
    "param_groups of a parameter list": (
        lambda: param_groups(list(mlp().parameters()), 0.1, LayerDecay(0.8), X),
        TypeError,
        r"param_groups needs a torch\.nn\.Module, got list \[Parameter containing",
    ),
    "resolve of a string": (
        lambda: resolve("resnet18", LayerDecay(0.8)),
        TypeError,
        r"resolve needs a torch\.nn\.Module, got str 'resnet18'",
    ),
    "a rule class instead of an instance": (
        lambda: param_groups(mlp(), 0.1, Discriminative, X),
        TypeError,
        r"got the rule class Discriminative, not a rule; create one, e\.g\. Discriminative\(",
    ),
    "a number instead of a rule": (
        lambda: param_groups(mlp(), 0.1, 2.6, X),
        TypeError,
        r"a rule needs a multipliers\(table\) method, got float 2\.6",
    ),
    "a rule spec without a name": (
        lambda: param_groups(mlp(), 0.1, {"factor": 2.6}, X),
        ValueError,
        r"a rule spec is a dict with a 'name' key, got \{'factor': 2\.6\}",
    ),
    "LARS groups without lr and no default": (
        lambda: LARS(mlp().parameters()),
        ValueError,
        r"LARS lr must be a positive number, got None: the param group has no 'lr'",
    ),
    "LARS with a zero rate in one group": (
        lambda: LARS([{"params": list(mlp().parameters()), "lr": 0.0}]),
        ValueError,
        r"LARS lr must be a positive number, got 0\.0",
    ),
    "CKA of a single example": (
        lambda: linear_cka(torch.randn(1, 5), torch.randn(1, 3)),
        ValueError,
        r"CKA needs at least 2 examples, got 1",
    ),
    "debiased CKA of three examples": (
        lambda: linear_cka(torch.randn(3, 5), torch.randn(3, 3), debiased=True),
        ValueError,
        r"debiased CKA needs at least 4 examples, got 3",
    ),
    "CKA of different example counts": (
        lambda: linear_cka(torch.randn(4, 5), torch.randn(6, 5)),
        ValueError,
        r"x of shape \(4, 5\) and y of shape \(6, 5\) need the same number of examples",
    ),
    "CKA of a featureless representation": (
        lambda: linear_cka(torch.randn(4, 0), torch.randn(4, 3)),
        ValueError,
        r"x has no features \(shape \(4, 0\)\)",
    ),
    "describe of something that is not groups": (
        lambda: describe("groups"),
        TypeError,
        r"expected param groups \(a list of dicts\) or a torch optimizer, got str 'groups'",
    ),
    "describe by an unknown key": (
        lambda: describe(param_groups(mlp(), 0.1, LayerDecay(0.8), X), by="block"),
        ValueError,
        r"unknown describe by 'block'; valid: 'layer', 'parameter'",
    ),
    "check of a single group dict": (
        lambda: check({"params": [], "lr": 0.1}),
        TypeError,
        r"got dict \{'params': \[\], 'lr': 0\.1\}",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_raises_an_error_naming_it(case):
    call, error, message = ERRORS[case]
    with pytest.raises(error, match=message):
        call()


WARNINGS = {
    "CKA of a constant representation": (
        lambda: linear_cka(torch.ones(5, 3), torch.randn(5, 2)),
        ConstantRepresentationWarning,
        r"linear_cka: x is the same for all 5 examples \(a constant representation\)",
    ),
    "CKA against a constant representation": (
        lambda: linear_cka(torch.randn(5, 2), torch.full((5, 4, 2), 0.5)),
        ConstantRepresentationWarning,
        r"linear_cka: y is the same for all 5 examples",
    ),
}


@pytest.mark.parametrize("case", list(WARNINGS))
def test_suspicious_input_warns_naming_it_and_gives_nan(case):
    call, warning, message = WARNINGS[case]
    with pytest.warns(warning, match=message):
        assert math.isnan(call())


def test_lars_and_lamb_take_param_groups_with_their_own_rates():
    groups = param_groups(mlp(), 0.1, LayerDecay(0.5), X)
    for make in (LARS, LAMB):
        opt = make(groups)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.025, 0.05, 0.1])
    defaulted = LARS([{"params": [nn.Parameter(torch.ones(2))]}], lr=0.3)
    assert defaulted.param_groups[0]["lr"] == 0.3


@pytest.mark.parametrize(
    "batch",
    [
        (torch.randn(2, 4), torch.randn(2, 2)),
        [torch.randn(2, 4), torch.randn(2, 2)],
        {"left": torch.randn(2, 4), "right": torch.randn(2, 2)},
    ],
    ids=["tuple", "list", "dict"],
)
def test_capture_activations_takes_what_layer_table_takes(batch):
    model = TwoInputs()
    table = layer_table(model, batch)
    assert table.set_index("name")["depth"].to_dict()["head.weight"] == 2  # after a, b
    acts = capture_activations(model, batch)
    assert list(acts) == ["a", "b", "head"]
    left, right = batch.values() if isinstance(batch, dict) else batch
    with torch.no_grad():
        torch.testing.assert_close(acts["head"], model(left, right))
    assert acts["a"].shape == (2, 3)


def test_a_rule_class_is_named_even_when_given_by_keyword():
    with pytest.raises(TypeError, match=re.escape("got the rule class LayerDecay")):
        resolve(mlp(), rule=LayerDecay, example_input=X)
