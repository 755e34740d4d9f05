"""Model families: shapes for every dataset, causality of the text models, sizes by formula."""

from __future__ import annotations

import math

import pytest
import torch

from layerwise.harness import data, models

INPUTS = {
    "mnist1d": lambda: torch.randn(3, 40),
    "fashion_mnist": lambda: torch.randn(3, 1, 28, 28),
    "cifar10": lambda: torch.randn(3, 3, 32, 32),
    "tinyshakespeare": lambda: torch.randint(0, 65, (3, 16)),
}


@pytest.mark.parametrize("dataset", list(INPUTS))
@pytest.mark.parametrize("name", models.MODELS)
def test_every_family_builds_for_every_dataset(name, dataset):
    if name == "hybrid" and dataset == "tinyshakespeare":
        with pytest.raises(ValueError, match="classifier"):
            models.build(name, dataset)
        return
    torch.manual_seed(0)
    model = models.build(name, dataset)
    x = INPUTS[dataset]()
    out = model(x)
    spec = data.spec(dataset)
    expected = (3, 16, spec.num_classes) if spec.task == "language" else (3, spec.num_classes)
    assert out.shape == expected
    assert isinstance(model.head, torch.nn.Linear)
    out.sum().backward()  # every trainable parameter is reached by the loss
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", [m for m in models.MODELS if m != "hybrid"])
def test_character_models_are_causal(name):
    torch.manual_seed(0)
    model = models.build(name, "tinyshakespeare")
    x = torch.randint(0, 65, (2, 16))
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 65
    a, b = model(x), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)  # the past ignores the future
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize(("width", "depth"), [(32, 1), (64, 3)])
def test_mlp_parameter_count_matches_the_formula(width, depth):
    model = models.build("mlp", "mnist1d", width=width, depth=depth)
    expected = (40 * width + width) + (depth - 1) * (width * width + width) + (width * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_mnist1d_cnn_follows_convbase():
    # ConvBase: 3 strided Conv1d layers with 25 channels, then a 125 -> 10 linear layer
    model = models.build("cnn", "mnist1d")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [c.out_channels for c in convs] == [25, 25, 25]
    assert model.head.in_features == 125


def test_gpt_head_is_tied_to_the_token_embedding():
    model = models.build("transformer", "tinyshakespeare")
    assert model.head.weight is model.embed.weight
    untied = models.build("transformer", "tinyshakespeare", tie=False)
    assert untied.head.weight is not untied.embed.weight


def test_inverse_attention_scale_is_one_over_head_dim():
    model = models.build("transformer", "mnist1d", width=64, heads=4, attn_scale="inverse")
    assert model.blocks[0].attn.scale == pytest.approx(1 / 16)
    assert models.build("transformer", "mnist1d").blocks[0].attn.scale == pytest.approx(16**-0.5)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: models.build("resnet", "mnist1d"), "'resnet'"),
        (lambda: models.build("mlp", "mnist1d", heads=2), "'heads'"),
        (lambda: models.build("mlp", "mnist1d", width=0), "width"),
        (lambda: models.build("transformer", "mnist1d", patch=3), "patch 3"),
    ],
)
def test_bad_model_arguments_are_named(call, named):
    with pytest.raises(ValueError, match=named):
        call()


def test_gpt_init_starts_the_character_model_near_uniform_predictions():
    """GPT-2's N(0, 0.02) scheme (the text default) gives initial loss ~ ln(vocab); PyTorch's
    N(0, 1) embedding tied to the head gives logits ~ sqrt(width) and a loss far above it."""
    x = torch.randint(0, 65, (8, 33), generator=torch.Generator().manual_seed(0))

    def first_loss(**options):
        torch.manual_seed(0)
        model = models.build("transformer", "tinyshakespeare", **options)
        logits = model(x[:, :-1])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).item()

    assert abs(first_loss() - math.log(65)) < 0.1
    assert first_loss(init="torch") > 3 * math.log(65)
    model = models.build("transformer", "tinyshakespeare", depth=4)
    proj_std = model.blocks[0].attn.proj.weight.std().item()
    assert proj_std == pytest.approx(0.02 / math.sqrt(8), rel=0.1)


@pytest.mark.parametrize("dataset", ["mnist1d", "fashion_mnist"])
def test_hybrid_holds_one_layer_of_each_type_in_the_question_order(dataset):
    from layerwise.layers import layer_table

    model = models.build("hybrid", dataset)
    table = layer_table(model, INPUTS[dataset]()[:2])
    weights = table[table["name"].str.endswith("weight") | table["name"].str.contains("weight_")]
    first_depth = weights.groupby("kind")["depth"].min()
    # conv stem -> recurrent -> attention -> dense, each a distinct kind
    assert first_depth["conv"] < first_depth["recurrent"] < first_depth["attention"]
    assert first_depth["attention"] < first_depth["dense"]
    assert set(weights["kind"]) == {"conv", "recurrent", "attention", "norm", "dense"}


def test_hybrid_reads_image_rows_as_positions():
    model = models.build("hybrid", "fashion_mnist", width=8, heads=2)
    # 28 rows of 28 pixels: the stem's input channels are the pixels of one row
    assert model.conv.in_channels == 28
    x = torch.randn(2, 1, 28, 28)
    changed = x.clone()
    changed[:, :, 27, :] += 1.0  # only the last row changes
    torch.manual_seed(0)
    # the GRU reads positions in order, so the output depends on the changed row
    assert not torch.allclose(model(x), model(changed))


def test_image_cnn_pools_every_few_convolutions_at_a_constant_width():
    model = models.build(
        "cnn", "fashion_mnist", width=16, depth=6, pool_every=2, double_channels=False, hidden=0
    )
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 16)] + [(16, 16)] * 5
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.body) == 3
    # 1*16*9 + 16, then five of 16*16*9 + 16; the head reads 16 channels of 3x3 (28 -> 14 -> 7 -> 3)
    assert sum(p.numel() for p in model.parameters()) == 160 + 5 * 2320 + (16 * 9 * 10 + 10)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    doubling = models.build("cnn", "fashion_mnist", width=8, depth=4, pool_every=2, hidden=0)
    assert [m.out_channels for m in doubling.body if isinstance(m, torch.nn.Conv2d)] == [
        8,
        8,
        16,
        16,
    ]


@pytest.mark.parametrize(
    ("dataset", "options", "message"),
    [
        ("mnist1d", {"pool_every": 2}, "pool_every applies to image data only, not mnist1d"),
        ("fashion_mnist", {"depth": 6}, "pools 6 times, more than fashion_mnist's 28-pixel side"),
        ("fashion_mnist", {"pool_every": 0}, "pool_every must be an integer >= 1, got 0"),
        ("fashion_mnist", {"double_channels": 1}, "double_channels must be True or False, got 1"),
    ],
)
def test_bad_pooling_options_are_named(dataset, options, message):
    with pytest.raises(ValueError, match=message):
        models.build("cnn", dataset, **options)
