"""The transformer as a text classifier: a character model's body with a pooled head.

Reference checks: the pooled vector is recomputed from the final LayerNorm's states (captured
by a hook) with the formula of each pooling; a pretrained language model's weights give the
classifier exactly the language model's states; the last position reads only its prefix."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from layerwise import transfer
from layerwise.harness import data, models

# three classes of 12-character passages (the loaded dataset has two of 64)
SPEC = dataclasses.replace(
    data.DATASETS["tinyshakespeare_passages"], input_shape=(12,), num_classes=3
)
LM_SPEC = data.DATASETS["tinyshakespeare"]
SIZES = {"width": 16, "depth": 2, "heads": 2, "block": 12}


def _states(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The final LayerNorm's output, ``(batch, time, width)``."""
    seen = []
    handle = model.ln_f.register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        out = model(x)
    finally:
        handle.remove()
    return seen[0], out


@pytest.fixture
def x():
    return torch.randint(0, 65, (5, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("pool", "formula"),
    [
        ("mean", lambda h: h.mean(dim=1)),
        ("last", lambda h: h[:, -1]),
        ("concat", lambda h: torch.cat([h[:, -1], h.max(dim=1).values, h.mean(dim=1)], -1)),
    ],
)
def test_pooling_follows_its_formula(pool, formula, x):
    torch.manual_seed(0)
    model = models.build("transformer", SPEC, pool=pool, **SIZES).eval()
    states, logits = _states(model, x)
    assert logits.shape == (5, 3)
    assert torch.allclose(logits, model.head(formula(states)), atol=1e-6)


def test_default_pooling_is_the_mean(x):
    torch.manual_seed(0)
    mean = models.build("transformer", SPEC, pool="mean", **SIZES).eval()
    torch.manual_seed(0)
    default = models.build("transformer", SPEC, **SIZES).eval()
    assert torch.equal(mean(x), default(x))


def test_last_position_reads_only_its_prefix(x):
    """Causal: the state at position t depends on tokens 0..t only, so "last" pooling of a prefix
    is the full passage's state at the prefix's end, and changing a later token changes nothing
    before it."""
    torch.manual_seed(0)
    model = models.build("transformer", SPEC, pool="last", **SIZES).eval()
    states, _ = _states(model, x)
    for t in (1, 5, 11):
        assert torch.allclose(model(x[:, :t]), model.head(states[:, t - 1]), atol=1e-5)
    changed = x.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 65
    after, _ = _states(model, changed)
    assert torch.allclose(after[:, :7], states[:, :7], atol=1e-6)
    assert not torch.allclose(after[:, 7:], states[:, 7:])


def test_a_language_model_body_loads_and_gives_the_same_states(x):
    torch.manual_seed(1)
    lm = models.build("transformer", LM_SPEC, tie=True, **SIZES).eval()
    torch.manual_seed(2)
    clf = models.build("transformer", SPEC, pool="last", **SIZES).eval()
    head = {n: t.clone() for n, t in clf.head.state_dict().items()}
    transfer.load_pretrained(clf, lm.state_dict(), reinit=("head",))
    states, _ = _states(clf, x)
    assert torch.allclose(lm.head(states), lm(x), atol=1e-5)  # the language model's states
    assert all(torch.equal(t, clf.head.state_dict()[n]) for n, t in head.items())  # head kept
    assert clf.head.bias is not None and clf.head.weight is not clf.embed.weight


@pytest.mark.parametrize(
    ("spec", "options", "named"),
    [
        (SPEC, {"pool": "max"}, "'concat', 'last', 'mean'"),
        (LM_SPEC, {"pool": "last"}, "classification"),
        (SPEC, {**SIZES, "block": 8}, "block >= 12"),
    ],
)
def test_bad_pooling_options_name_the_value(spec, options, named):
    with pytest.raises(ValueError) as err:
        models.build("transformer", spec, **options)
    assert named in str(err.value)


def test_only_the_transformer_classifies_passages():
    with pytest.raises(ValueError, match="valid: transformer"):
        models.build("gru", "tinyshakespeare_passages")
