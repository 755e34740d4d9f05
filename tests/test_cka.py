"""Linear CKA against the kernel (HSIC) form, its invariances, activation capture and the
per-layer convergence helpers."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from layerwise.probes import capture_activations, cka_to_final, linear_cka, normalise_to_start


def hsic(k: np.ndarray, g: np.ndarray) -> float:
    """Biased HSIC with the centring matrix H = I - 11'/n (Gretton et al. 2005)."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ g @ h) / (n - 1) ** 2


def hsic_unbiased(k: np.ndarray, g: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC, written with n x n matrices."""
    n = k.shape[0]
    kt, gt = k - np.diag(np.diag(k)), g - np.diag(np.diag(g))
    one = np.ones(n)
    return (
        np.trace(kt @ gt)
        + kt.sum() * gt.sum() / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * one @ kt @ gt @ one
    ) / (n * (n - 3))


def cka_kernel(x: torch.Tensor, y: torch.Tensor, estimator=hsic) -> float:
    x = x.reshape(x.shape[0], -1).double().numpy()
    y = y.reshape(y.shape[0], -1).double().numpy()
    k, g = x @ x.T, y @ y.T
    return estimator(k, g) / math.sqrt(estimator(k, k) * estimator(g, g))


@pytest.mark.parametrize("shape", [(50, 7, 5), (6, 20, 30)])  # feature products, then Gram
@pytest.mark.parametrize("debiased", [False, True])
def test_matches_the_kernel_form(shape, debiased):
    n, p, q = shape
    torch.manual_seed(0)
    x = torch.randn(n, p) + 3.0  # not centred: CKA centres
    y = x[:, :1] * torch.randn(1, q) + torch.randn(n, q)
    estimator = hsic_unbiased if debiased else hsic
    assert linear_cka(x, y, debiased) == pytest.approx(cka_kernel(x, y, estimator), rel=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
def test_identity_orthogonal_and_scale_invariance(debiased):
    torch.manual_seed(1)
    x, y = torch.randn(40, 8), torch.randn(40, 6)
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    assert linear_cka(x, x, debiased) == pytest.approx(1.0)
    assert linear_cka(x, 2.5 * x @ q, debiased) == pytest.approx(1.0)
    base = linear_cka(x, y, debiased)
    assert linear_cka(0.1 * x @ q, 7.0 * y, debiased) == pytest.approx(base)


def test_flattens_trailing_dimensions():
    torch.manual_seed(2)
    x, y = torch.randn(12, 2, 3, 3), torch.randn(12, 5)
    assert linear_cka(x, y) == pytest.approx(cka_kernel(x.reshape(12, 18), y))


def test_rejects_different_numbers_of_examples():
    with pytest.raises(ValueError, match=r"10.*12"):
        linear_cka(torch.randn(10, 3), torch.randn(12, 3))


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.mix = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(self.mix(out))


def test_capture_activations_returns_layer_outputs():
    torch.manual_seed(3)
    model = Tagger().train()
    x = torch.randn(2, 6, 3)
    acts = capture_activations(model, x)
    assert list(acts) == ["rnn", "mix.0", "head"]  # modules owning parameters
    with torch.no_grad():
        seq, _ = model.rnn(x)  # the output sequence, not the hidden state
        hidden = seq @ model.mix[0].weight.T + model.mix[0].bias
        logits = torch.relu(hidden) @ model.head.weight.T + model.head.bias  # dropout off
    torch.testing.assert_close(acts["rnn"], seq)
    torch.testing.assert_close(acts["mix.0"], hidden)
    torch.testing.assert_close(acts["head"], logits)
    assert model.training and model.mix[2].training  # modes restored
    assert not model.rnn._forward_hooks  # hooks removed


def test_capture_selected_modules_and_unknown_name():
    model = Tagger()
    assert list(capture_activations(model, torch.randn(1, 2, 3), ["mix.1"])) == ["mix.1"]
    with pytest.raises(ValueError, match="nope"):
        capture_activations(model, torch.randn(1, 2, 3), ["nope"])


def test_cka_to_final():
    torch.manual_seed(4)
    final = {"a": torch.randn(20, 4), "b": torch.randn(20, 3)}
    early = {"a": final["a"] + torch.randn(20, 4), "b": torch.randn(20, 3)}
    frame = cka_to_final([early, final], steps=[0, 100])
    expected = pd.DataFrame(
        {
            "step": [0, 0, 100, 100],
            "layer": ["a", "b", "a", "b"],
            "cka": [
                cka_kernel(early["a"], final["a"]),
                cka_kernel(early["b"], final["b"]),
                1.0,
                1.0,
            ],
        }
    )
    pd.testing.assert_frame_equal(
        frame.sort_values(["step", "layer"]).reset_index(drop=True), expected
    )


def test_normalised_cka_of_a_known_pair_of_representations():
    # y = [x, n] with n orthogonal to x's columns: x^T y = [x^T x, 0] and y^T y is
    # block-diagonal, so CKA(y, x) = a / sqrt(a^2 + b^2) with a = ||x^T x||, b = ||n^T n||;
    # here a = sqrt(8), b = 4, so CKA = 1 / sqrt(3)
    x = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    n = torch.tensor([[1.0], [1], [-1], [-1]])
    assert float((x.T @ n).abs().sum()) == 0 and float(x.sum()) == float(n.sum()) == 0
    start = linear_cka(torch.cat([x, n], dim=1), x)
    assert start == pytest.approx(1 / math.sqrt(3), abs=1e-12)
    series = [start, (start + 1) / 2, 1.0]
    assert normalise_to_start(series) == pytest.approx([0.0, 0.5, 1.0], abs=1e-12)


def test_normalised_cka_is_undefined_without_room_to_converge():
    assert all(math.isnan(v) for v in normalise_to_start([1.0, 1.0]))
    assert all(math.isnan(v) for v in normalise_to_start([math.nan, 0.5, 1.0]))
    assert normalise_to_start([0.8, 0.7, 1.0]) == pytest.approx([0.0, -0.5, 1.0])
    assert normalise_to_start([]) == []
