"""``variant="reference"`` and the structural options behind it (``residual``, ``readout``,
``kernel``): published benchmark models reproduced exactly, defaults left as they were.

Each reference forward pass below is written out by hand from the published architecture and
run on the built model's own weights, so any difference in wiring shows as different logits.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerwise.harness import models


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _linear(i: int, o: int) -> int:
    return i * o + o


def _gru(
    inputs: int, hidden: int
) -> int:  # one direction: 3 gates, two weight matrices, two biases
    return 3 * hidden * inputs + 3 * hidden * hidden + 2 * 3 * hidden


# hand counts of the published architectures (the MNIST-1D benchmark notebook prints 15210,
# 5210 and 5134 for MLPBase, ConvBase and GRUBase)
REFERENCE_COUNTS = {
    ("mlp", "mnist1d"): _linear(40, 100) + _linear(100, 100) + _linear(100, 10),  # 15,210
    ("cnn", "mnist1d"): (25 * 1 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + _linear(25 * 5, 10),  # 5,210
    ("gru", "mnist1d"): 2 * _gru(1, 6) + _linear(2 * 6 * 40, 10),  # 5,134
    ("cnn", "fashion_mnist"): (32 * 25 + 32) + (64 * 32 * 25 + 64) + _linear(64 * 7 * 7, 10),
}


@pytest.mark.parametrize(("family", "dataset"), list(REFERENCE_COUNTS))
def test_reference_parameter_counts_match_the_hand_counts(family, dataset):
    model = models.build(family, dataset, variant="reference")
    assert _count(model) == REFERENCE_COUNTS[(family, dataset)]


def test_hand_counts_are_the_published_numbers():
    published = {("mlp", "mnist1d"): 15210, ("cnn", "mnist1d"): 5210, ("gru", "mnist1d"): 5134}
    assert {k: REFERENCE_COUNTS[k] for k in published} == published
    assert REFERENCE_COUNTS[("cnn", "fashion_mnist")] == 83466 < 100_000


def test_defaults_are_unchanged():
    # stored runs name no variant: their models must stay what they were
    mlp = models.build("mlp", "mnist1d")
    assert not any(isinstance(m, models.Residual) for m in mlp.modules())
    assert _count(mlp) == _linear(40, 256) + _linear(256, 256) + _linear(256, 10)
    gru = models.build("gru", "mnist1d")
    assert gru.head.in_features == 12 and _count(gru) == 2 * _gru(1, 6) + _linear(12, 10)
    cnn = models.build("cnn", "fashion_mnist")
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3)]
    expected = (16 * 9 + 16) + (32 * 16 * 9 + 32) + _linear(32 * 7 * 7, 128) + _linear(128, 10)
    assert _count(cnn) == expected == 206_922


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_reference_mlp_computes_mlpbase():
    torch.manual_seed(0)
    model = models.build("mlp", "mnist1d", variant="reference")
    l1, l2, l3 = _linears(model)
    assert (l1.in_features, l1.out_features, l2.out_features, l3.out_features) == (40, 100, 100, 10)
    x = torch.randn(5, 40)
    h = F.linear(x, l1.weight, l1.bias).relu()
    h = h + F.linear(h, l2.weight, l2.bias).relu()
    assert torch.allclose(model(x), F.linear(h, l3.weight, l3.bias), atol=1e-6)


def test_zeroing_the_second_layer_leaves_the_skip_path():
    torch.manual_seed(0)
    x = torch.randn(5, 40)
    residual = models.build("mlp", "mnist1d", width=32, depth=2, residual=True)
    plain = models.build("mlp", "mnist1d", width=32, depth=2)
    plain.load_state_dict(
        {k.replace("body.2.inner.0", "body.2"): v for k, v in residual.state_dict().items()}
    )
    for model in (residual, plain):
        with torch.no_grad():
            _linears(model)[1].weight.zero_()
            _linears(model)[1].bias.zero_()
    l1, _, head = _linears(residual)
    skip = F.linear(F.linear(x, l1.weight, l1.bias).relu(), head.weight, head.bias)
    assert torch.allclose(residual(x), skip, atol=1e-6)  # h + relu(0) = h
    assert not torch.allclose(plain(x), skip, atol=1e-3)  # without the skip: head(relu(0))


def test_reference_cnn_computes_convbase():
    torch.manual_seed(0)
    model = models.build("cnn", "mnist1d", variant="reference")
    c1, c2, c3 = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    x = torch.randn(5, 40)
    h = x.view(-1, 1, 40)
    h = F.conv1d(h, c1.weight, c1.bias, stride=2, padding=1).relu()
    assert c1.kernel_size == (5,) and c2.kernel_size == c3.kernel_size == (3,)
    h = F.conv1d(h, c2.weight, c2.bias, stride=2, padding=1).relu()
    h = F.conv1d(h, c3.weight, c3.bias, stride=2, padding=1).relu()
    assert h.shape == (5, 25, 5)
    logits = F.linear(h.view(5, -1), model.head.weight, model.head.bias)
    assert torch.allclose(model(x), logits, atol=1e-6)


def test_reference_gru_computes_grubase():
    torch.manual_seed(0)
    model = models.build("gru", "mnist1d", variant="reference")
    assert model.rnn.hidden_size == 6 and model.rnn.bidirectional
    x = torch.randn(5, 40)
    out, _ = model.rnn(x.view(5, 40, 1), torch.zeros(2, 5, 6))  # GRUBase: zero h0
    logits = F.linear(out.reshape(5, -1), model.head.weight, model.head.bias)  # [batch, t * 12]
    assert model.head.in_features == 480
    assert torch.allclose(model(x), logits, atol=1e-6)


@pytest.mark.parametrize("readout", ["final", "all"])
def test_all_step_readout_uses_every_time_step(readout):
    torch.manual_seed(0)
    model = models.build("gru", "mnist1d", readout=readout)
    x = torch.randn(4, 40)
    plain = model(x)

    def perturb_step_5(module, inputs, output):
        out, h = output
        out = out.clone()
        out[:, 5] += 1.0  # an early step: neither direction's final state
        return out, h

    handle = model.rnn.register_forward_hook(perturb_step_5)
    try:
        perturbed = model(x)
    finally:
        handle.remove()
    changed = not torch.allclose(plain, perturbed)
    assert changed == (readout == "all")


def test_reference_fashion_cnn_is_the_small_two_conv_net():
    torch.manual_seed(0)
    model = models.build("cnn", "fashion_mnist", variant="reference")
    c1, c2 = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert (c1.out_channels, c2.out_channels, c1.kernel_size, c2.kernel_size) == (
        32,
        64,
        (5, 5),
        (5, 5),
    )
    assert _linears(model) == [model.head] and model.head.in_features == 64 * 7 * 7
    x = torch.randn(3, 1, 28, 28)
    h = F.max_pool2d(F.conv2d(x, c1.weight, c1.bias, padding=2).relu(), 2)
    h = F.max_pool2d(F.conv2d(h, c2.weight, c2.bias, padding=2).relu(), 2)
    logits = F.linear(h.view(3, -1), model.head.weight, model.head.bias)
    out = model(x)
    assert torch.allclose(out, logits, atol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert _count(model) < 100_000


def test_options_beside_a_variant_override_it():
    model = models.build("mlp", "mnist1d", variant="reference", width=50)
    assert any(isinstance(m, models.Residual) for m in model.modules())
    assert _count(model) == _linear(40, 50) + _linear(50, 50) + _linear(50, 10)
    plain = models.build("gru", "mnist1d", variant="reference", readout="final")
    assert plain.head.in_features == 12


def test_all_step_readout_on_images_reads_every_row():
    model = models.build("lstm", "fashion_mnist", width=8, readout="all")
    assert model.head.in_features == 2 * 8 * 28
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: models.build("mlp", "mnist1d", variant="paper"), "'paper'; valid: 'reference'"),
        (lambda: models.build("mlp", "cifar10", variant="reference"), "mlp on mnist1d"),
        (lambda: models.build("transformer", "mnist1d", variant="reference"), "'variant'"),
        (lambda: models.build("gru", "tinyshakespeare", readout="all"), "language task"),
        (lambda: models.build("gru", "mnist1d", readout="mean"), "'mean'"),
        (lambda: models.build("mlp", "mnist1d", residual=1), "True or False"),
        (lambda: models.build("mlp", "mnist1d", depth=1, residual=True), "depth >= 2"),
        (lambda: models.build("cnn", "mnist1d", kernel=5), "image data only"),
        (lambda: models.build("cnn", "fashion_mnist", kernel=4), "must be odd"),
        (lambda: models.build("cnn", "fashion_mnist", kernel=2.0), "integer >= 1"),
        (lambda: models.build("lstm", "mnist1d", variant="reference"), "'variant'"),
    ],
)
def test_bad_variant_and_structure_options_are_named(call, named):
    with pytest.raises(ValueError, match=named):
        call()
