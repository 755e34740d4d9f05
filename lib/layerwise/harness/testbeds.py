"""The project's testbeds: a model on a dataset with a training budget and, where one exists,
the published number it should match (``docs/references.md#claim-13``).

Every study builds its arms from these base configs, so a baseline checked in
``01_baselines`` is the same model and budget that later studies change one thing in.

:data:`TESTBEDS` are the testbeds of tuning protocol v2: the MNIST-1D models as the dataset's
reference code defines them (``model_options={"variant": "reference"}``: the residual MLP, the
bidirectional GRU whose head reads every time step), trained on all 4,000 reference training
examples with freshly generated validation and test sets (``data_options={"splits":
"generated"}``), and the Fashion-MNIST CNN under 100K parameters that the published 0.925 row
describes; beside them a Fashion-MNIST patch transformer without a published number.
"""

from __future__ import annotations

import dataclasses

from .._validate import check_choice
from .config import RunConfig

__all__ = ["TESTBEDS", "Testbed", "testbed"]


@dataclasses.dataclass(frozen=True)
class Testbed:
    """A base config (its ``lr`` is a placeholder the tuner replaces) and its reference."""

    name: str
    config: RunConfig
    metric: str  # "acc" or "loss"
    published: float | None
    tolerance: float | None
    source: str


def _adamw(**fields) -> RunConfig:
    return RunConfig(lr=1e-3, optimizer="adamw", **fields)


_MNIST1D = dict(
    dataset="mnist1d", batch_size=100, eval_every=500, optimizer_options={"weight_decay": 0.0}
)
_FASHION = dict(
    dataset="fashion_mnist", batch_size=128, eval_every=422, optimizer_options={"weight_decay": 0.0}
)

# the testbeds as first defined (protocol v1); :data:`TESTBEDS` changes some of them
_FIRST: dict[str, Testbed] = {
    t.name: t
    for t in [
        # MNIST-1D (Greydanus 2020): reference training is Adam, batch 100, 8000 steps.
        Testbed(
            "mnist1d/mlp",
            _adamw(model="mlp", steps=8000, **_MNIST1D),
            "acc",
            0.68,
            0.02,
            "MNIST-1D README: MLP 68%",
        ),
        Testbed(
            "mnist1d/cnn",
            _adamw(model="cnn", steps=8000, **_MNIST1D),
            "acc",
            0.94,
            0.02,
            "MNIST-1D README: CNN 94%",
        ),
        Testbed(
            "mnist1d/gru",
            _adamw(model="gru", steps=8000, **_MNIST1D),
            "acc",
            0.91,
            0.02,
            "MNIST-1D README: GRU 91%",
        ),
        Testbed(
            "mnist1d/transformer",
            _adamw(model="transformer", steps=4000, **_MNIST1D),
            "acc",
            None,
            None,
            "no published reference",
        ),
        # Fashion-MNIST (Xiao et al. 2017).
        Testbed(
            "fashion_mnist/mlp",
            _adamw(model="mlp", epochs=10, **_FASHION),
            "acc",
            0.883,
            0.02,
            "Fashion-MNIST README: MLP 256-128-100, 0.8833",
        ),
        Testbed(
            "fashion_mnist/cnn",
            _adamw(model="cnn", epochs=5, **_FASHION),
            "acc",
            0.925,
            0.02,
            "Fashion-MNIST README: 2 conv layers, <100K parameters, 0.925",
        ),
        # tiny-shakespeare: nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, block 64,
        # batch 12, 2000 iterations, warmup 100 then cosine to lr/10, AdamW beta2 0.99, weight
        # decay 0.1 on matrices only (the uniform rule's default), gradient norm clipped at 1).
        Testbed(
            "tinyshakespeare/transformer",
            RunConfig(
                dataset="tinyshakespeare",
                model="transformer",
                lr=1e-3,
                batch_size=12,
                block=64,
                steps=2000,
                eval_every=250,
                optimizer="adamw",
                optimizer_options={"weight_decay": 0.1, "betas": [0.9, 0.99]},
                rule={"name": "uniform"},
                grad_clip=1.0,
                schedule="cosine",
                schedule_options={"warmup": 100, "final": 0.1},
            ),
            "loss",
            1.88,
            0.05,
            "nanoGPT README, CPU config: validation loss 1.88 nats",
        ),
    ]
}

_REFERENCE = {"variant": "reference"}
_GENERATED = {"splits": "generated"}


def _v2(name: str, **changes) -> Testbed:
    """The first definition of testbed ``name`` with the v2 changes to its config."""
    bed = _FIRST[name]
    return dataclasses.replace(bed, config=bed.config.replace(**changes))


TESTBEDS: dict[str, Testbed] = {
    t.name: t
    for t in [
        _v2("mnist1d/mlp", model_options=_REFERENCE, data_options=_GENERATED),
        _v2("mnist1d/cnn", model_options=_REFERENCE, data_options=_GENERATED),
        _v2("mnist1d/gru", model_options=_REFERENCE, data_options=_GENERATED),
        _v2("mnist1d/transformer", data_options=_GENERATED),
        _FIRST["fashion_mnist/mlp"],
        dataclasses.replace(
            _v2("fashion_mnist/cnn", model_options=_REFERENCE),
            source="Fashion-MNIST README: 2 conv layers, <100K parameters (83,466 here), 0.925",
        ),
        _FIRST["tinyshakespeare/transformer"],
        # A ViT-style patch encoder (models.Transformer: 7x7 patches, so 16 tokens; 2 pre-norm
        # blocks of width 64, 4 heads; mean pooling), added for the layer-wise decay study.
        Testbed(
            "fashion_mnist/transformer",
            _adamw(model="transformer", epochs=5, **_FASHION),
            "acc",
            None,
            None,
            "no published reference (7x7 patches, 2 blocks of width 64)",
        ),
        # A recurrent network reading the image one row per step (models.Recurrent: 28 steps of
        # 28 pixels, one bidirectional GRU layer of width 128), added for the convergence study.
        Testbed(
            "fashion_mnist/gru",
            _adamw(model="gru", epochs=5, **_FASHION),
            "acc",
            None,
            None,
            "no published reference (rows as 28 steps, bidirectional GRU of width 128)",
        ),
    ]
}

# The smoke profile keeps every testbed's shape but trains for seconds.
SMOKE_STEPS = 20


def testbed(name: str, profile: str = "full") -> Testbed:
    """Testbed ``name`` of :data:`TESTBEDS`; ``profile="smoke"`` shrinks its budget to
    ``SMOKE_STEPS`` steps."""
    check_choice("testbed", name, TESTBEDS)
    check_choice("profile", profile, ("full", "smoke"))
    bed = TESTBEDS[name]
    if profile == "smoke":
        small = bed.config.replace(steps=SMOKE_STEPS, epochs=None, eval_every=SMOKE_STEPS // 2)
        bed = dataclasses.replace(bed, config=small)
    return bed
