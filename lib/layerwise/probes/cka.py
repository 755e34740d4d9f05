"""Linear centred kernel alignment (CKA) between two sets of representations of the same examples.

Kornblith, Norouzi, Lee, Hinton (2019), "Similarity of Neural Network Representations Revisited",
ICML, arXiv:1905.00414.  With ``X`` (n x p) and ``Y`` (n x q) the column-centred features of the
same n examples,

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),

which equals HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for the linear Gram matrices K = X X^T and
L = Y Y^T.  It is 1 for identical representations and invariant to orthogonal transforms and
isotropic scaling of either one.  Used here for the SVCCA-style question of Raghu et al. (2017) --
when does each layer reach its final representation? -- with the series normalised by its
starting value (:func:`normalise_to_start`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import pandas as pd
import torch

__all__ = ["ConstantRepresentationWarning", "cka_to_final", "linear_cka", "normalise_to_start"]


class ConstantRepresentationWarning(RuntimeWarning):
    """:func:`linear_cka` was given a representation that is the same for every example."""


def _cross(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||y^T x||_F^2 = <x x^T, y y^T>_F``, through whichever product is smaller."""
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if p * q <= 2 * n * n:
        return (y.T @ x).square().sum()
    return ((x @ x.T) * (y @ y.T)).sum()


def _unbiased(
    cross: torch.Tensor, rows_x: torch.Tensor, rows_y: torch.Tensor, n: int
) -> torch.Tensor:
    """``n (n - 3) HSIC_1`` of column-centred features from ``cross = ||y^T x||_F^2`` and the
    squared row norms (the Gram diagonals); see :func:`linear_cka`."""
    return (
        cross - n / (n - 2) * rows_x.dot(rows_y) + rows_x.sum() * rows_y.sum() / ((n - 1) * (n - 2))
    )


def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA between the representations ``x`` and ``y`` of the same examples.

    Inputs have shape ``(n_examples, ...)`` and are flattened to ``(n, features)``; features
    are centred over examples and the sums run in float64.  With ``X``, ``Y`` centred:

        CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)       (Kornblith et al. 2019, eq. 5)

    ``debiased=True`` replaces each HSIC by the unbiased estimator of Song et al. (2012,
    "Feature Selection via Dependence Maximization", JMLR 13), as in Kornblith's reference
    notebook.  With K~, L~ the Gram matrices with zeroed diagonals,

        HSIC_1(K, L) = [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)).

    For centred features ``K 1 = 0``, so with a = diag(K) and b = diag(L) (squared row norms)
    this is computed without forming n x n matrices as

        n(n-3) HSIC_1 = ||Y^T X||_F^2 - n/(n-2) a.b + (sum a)(sum b) / ((n-1)(n-2)),

    and CKA = HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L)).  The debiased value needs n >= 4
    and can be slightly negative for unrelated representations.

    A representation that is the same for every example has no variance left after centring,
    so CKA (0/0) is undefined: the result is NaN with a :class:`ConstantRepresentationWarning`
    naming the input (a dead layer is legal, so this is not an error).

    Raises ``ValueError`` when ``x`` and ``y`` hold different numbers of examples, when there
    are fewer than 2 examples (4 for the debiased estimator), or when an input has no features.
    """
    if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)} need the same number "
            "of examples along dimension 0; CKA compares the same examples"
        )
    n = x.shape[0]
    least = 4 if debiased else 2
    if n < least:
        raise ValueError(
            f"{'debiased ' if debiased else ''}CKA needs at least {least} examples, got {n}"
        )
    x = x.detach().reshape(n, -1).to(torch.float64)
    y = y.detach().reshape(n, -1).to(torch.float64)
    for label, features in (("x", x), ("y", y)):
        if features.shape[1] == 0:
            raise ValueError(f"{label} has no features (shape {tuple(features.shape)})")
        if torch.all(features == features[0]):
            warnings.warn(
                f"linear_cka: {label} is the same for all {n} examples (a constant "
                "representation), so CKA is undefined; returning nan",
                ConstantRepresentationWarning,
                stacklevel=2,
            )
            return float("nan")
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    xy, xx, yy = _cross(x, y), _cross(x, x), _cross(y, y)
    if debiased:
        rows_x, rows_y = x.square().sum(dim=1), y.square().sum(dim=1)
        xy = _unbiased(xy, rows_x, rows_y, n)
        xx = _unbiased(xx, rows_x, rows_x, n)
        yy = _unbiased(yy, rows_y, rows_y, n)
    return (xy / (xx * yy).sqrt()).item()


def cka_to_final(
    activations: Sequence[Mapping[str, torch.Tensor]],
    steps: Sequence[int] | None = None,
    debiased: bool = False,
) -> pd.DataFrame:
    """Each layer's CKA between its representation at every checkpoint and at the last one.

    ``activations`` holds one ``{layer: activations}`` dict per checkpoint, in training order,
    all on the same inputs (e.g. from :func:`~layerwise.probes.capture_activations`); the last
    dict is the final representation.  ``steps`` labels the checkpoints (default 0, 1, ...).
    Returns a tidy frame with columns ``step``, ``layer``, ``cka``.
    """
    if not activations:
        raise ValueError("cka_to_final needs at least one checkpoint")
    steps = list(range(len(activations))) if steps is None else list(steps)
    if len(steps) != len(activations):
        raise ValueError(f"{len(steps)} steps given for {len(activations)} checkpoints")
    final = activations[-1]
    rows = [
        {"step": step, "layer": layer, "cka": linear_cka(acts[layer], final[layer], debiased)}
        for step, acts in zip(steps, activations, strict=True)
        for layer in final
    ]
    return pd.DataFrame(rows, columns=["step", "layer", "cka"])


def normalise_to_start(values: Sequence[float]) -> list[float]:
    """A CKA-to-final series rescaled by its starting value: ``(c_t - c_0) / (1 - c_0)``.

    Linear CKA of a layer at initialisation to its final self is often far from 0 -- a random
    first layer of an image model can already score 0.8-0.99 -- so the raw series makes layers
    look converged where they merely started.  The normalised series is 0 at the first
    checkpoint and 1 where the raw one is 1 (the final checkpoint), and reads as the fraction of
    the way from the starting similarity to the final representation; it can dip below 0 when
    a layer first moves away from its final representation.  Undefined (NaN) where ``c_0`` is
    NaN or 1 (nothing left to converge) and where ``c_t`` is NaN.
    """
    c = [float(v) for v in values]
    if not c:
        return []
    start = c[0]
    if math.isnan(start) or start >= 1.0:
        return [math.nan] * len(c)
    return [(v - start) / (1.0 - start) for v in c]
