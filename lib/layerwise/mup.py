"""Maximal-update parametrisation (muP) for MLPs and transformers: :func:`to_mup` prepares a
model, the rule :class:`MuP` (defined in :mod:`layerwise.rules`) gives its per-layer rates.

G. Yang, E. J. Hu, I. Babuschkin, S. Sidor, X. Liu, D. Farhi, N. Ryder, J. Pachocki, W. Chen,
J. Gao, "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer",
NeurIPS 2021, arXiv:2203.03466.  Under muP every layer's activations and their updates stay of
constant coordinate size as the width grows, so a learning rate tuned on a narrow model transfers
to a wide one.

Table 3 of the paper, written relative to a *base width* ``n0`` so that muP equals the standard
parametrisation (SP) at ``width == n0``; ``m = width / n0`` is the width multiplier:

====================  ===================================  =============  ===========
weight class          init. variance                       SGD rate       Adam rate
====================  ===================================  =============  ===========
input & all biases    ``∝ 1/fan_in`` as SP; biases Θ(1)    ``× fan_out``  ``× 1``
hidden                ``∝ 1/fan_in`` as SP                 ``× 1``        ``× 1/m``
output (readout)      ``SP / m``, i.e. ``∝ 1/fan_in²``     ``× 1/m``      ``× 1/m``
====================  ===================================  =============  ===========

(``× fan_out`` means ``× m`` when the tensor's output dimension grows with width, else ``× 1``.)

**Formulation implemented.**  The paper gives equivalent forms related by the symmetry
``W = a w``, ``Var(w) → Var(w) / a²``, ``lr_SGD → lr_SGD / a²``, ``lr_Adam → lr_Adam / a``.
This module uses the form with a *readout multiplier* ``a = 1/m`` (the paper's Table 8, also the
``mup`` package's): the readout computes ``head(x / m)`` (bias not multiplied), its weight is
initialised with ``SP × m`` variance (effective ``SP / m``, as in Table 3) and trains with rate
``× m`` (SGD) or ``× 1`` (Adam).  Chosen because then input and output weights follow the same
rule (Θ(1) coordinates, Adam ``× 1``, SGD ``× m``), which is what makes a readout *tied* to the
token embedding -- the character transformer's default -- muP without special cases, and because
with Adam only the hidden matrices change rate, so a per-layer rate study compares cleanly.

**Classes** are read from shapes: a dimension *grows with width* when it is a multiple of the
model width (``width`` given to :class:`MuP`, else the fan-in of ``head.weight``).  Rows of kind
``embedding`` are ``(fan_in, fan_out)``; other tensors with two or more dimensions and a kind
other than ``norm``/``other`` are ``(fan_out, fan_in, ...)``; 1-D tensors (biases, norm gains)
and ``norm``/``other`` tensors (e.g. a position embedding) are vectors whose fan-out grows when
any dimension does.  *Output* = ``head.weight``; *hidden* = both fans grow; *input* = everything
else (input weights, embeddings, biases, norm gains, the head's bias).  A matrix whose fan-in grows
but fan-out does not, other than the head, would need a readout multiplier of its own and is
refused.  Caveat: a fixed dimension that happens to be a multiple of the width is misread as
growing -- e.g. the character MLP's input of ``context * embed = 8 * 32 = 256`` features at a
power-of-two width <= 256, or Fashion-MNIST's 784 pixels at width 16 or 112; pick widths that
avoid this (the Fashion-MNIST MLP and the transformers at power-of-two widths >= 64 are safe).

**Not scaled** (Appendix B.3): Adam's epsilon (negligible at the project's defaults), momentum,
weight decay, gradient clipping.  Attention must use ``1/d_head`` logits
(``build("transformer", ..., attn_scale="inverse")``), which differs from SP's ``1/sqrt(d_head)``
even at the base width.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_choice, check_positive
from .layers import _is_attention, _outermost, layer_table
from .probes.activations import record_outputs
from .rules import MuP, RuleLike

__all__ = ["MuP", "Readout", "coord_check", "to_mup"]


class Readout(nn.Linear):
    """A linear readout whose input is multiplied by ``multiplier``: ``W (a x) + b``.

    muP's output multiplier ``a = 1/m`` (see the module docstring); the bias is not multiplied.
    The class attribute ``mup_readout`` tells :class:`MuP` that the model went through
    :func:`to_mup`.
    """

    mup_readout: ClassVar[bool] = True

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, multiplier: float = 1.0
    ):
        super().__init__(in_features, out_features, bias=bias, device="meta")
        self.multiplier = multiplier

    @classmethod
    def wrap(cls, linear: nn.Linear, multiplier: float) -> Readout:
        """A readout that shares ``linear``'s parameter tensors (so ties and names survive)."""
        readout = cls(linear.in_features, linear.out_features, linear.bias is not None, multiplier)
        readout.weight, readout.bias = linear.weight, linear.bias
        return readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.multiplier, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, multiplier={self.multiplier:g}"


def _attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The outermost attention modules (``nn.MultiheadAttention`` or a class whose name
    contains ``"Attention"``), by name."""
    modules = dict(model.named_modules())
    names = _outermost([n for n, m in modules.items() if n and _is_attention(m)])
    return {n: modules[n] for n in names}


def _check_attention_scale(name: str, module: nn.Module, width: int) -> None:
    """Refuse attention whose logits are not scaled by muP's ``1/d_head``.

    The module must say how it scales: a ``scale`` attribute (the factor on ``q . k``) and
    either ``head_dim`` or ``heads`` (then ``d_head = width / heads``), as the project's
    ``SelfAttention`` has.  ``nn.MultiheadAttention`` always uses ``1/sqrt(d_head)`` and is
    refused."""
    scale = getattr(module, "scale", None)
    head_dim = getattr(module, "head_dim", None)
    heads = getattr(module, "heads", None)
    if head_dim is None and isinstance(heads, int) and heads > 0:
        head_dim = width // heads
    kind = type(module).__name__
    if not isinstance(scale, (int, float)) or not isinstance(head_dim, int):
        raise ValueError(
            f"to_mup cannot check the attention scale of {name} ({kind}): muP needs 1/d_head "
            "logits, and the module must show it through a `scale` attribute and `heads` or "
            "`head_dim`"
        )
    if not math.isclose(scale, 1.0 / head_dim):
        raise ValueError(
            f"{name} ({kind}) scales attention logits by {scale:.4g}, not muP's 1/d_head = "
            f'1/{head_dim}; build the transformer with attn_scale="inverse"'
        )


def _classes(model: nn.Module, base_width: int, width: int) -> dict[str, str]:
    """Class of every trainable parameter, by name (depths are not needed, so no forward pass)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layer_table warns that depths follow registration order
        table = layer_table(model)
    return dict(zip(table["name"], MuP(base_width, width=width).classes(table), strict=True))


@torch.no_grad()
def to_mup(
    model: nn.Module, base_width: int, *, zero_readout: bool = False, zero_query: bool = False
) -> nn.Module:
    """Re-initialise a freshly built MLP or transformer in muP and give it a readout multiplier.

    The model's standard-parametrisation (SP) draw -- PyTorch's default initialisation, as
    :func:`layerwise.models.build` leaves it -- is rescaled in place per Table 3 (readout-
    multiplier form; see the module docstring), with ``m = width / base_width`` and
    ``width = head.in_features``:

    * input and hidden weights keep SP's ``Var ∝ 1/fan_in`` (embeddings and a transformer's
      position embedding keep their width-independent draws);
    * biases of layers whose fan-in grows with width (hidden layers, the head) are scaled by
      ``sqrt(m)``, making their Θ(1/sqrt(fan_in)) SP draw Θ(1) as muP asks for all biases;
    * an untied ``head.weight`` is scaled by ``sqrt(m)`` and ``model.head`` becomes a
      :class:`Readout` with multiplier ``1/m`` sharing its tensors: effective variance ``SP / m``,
      i.e. ``∝ 1/fan_in²``.  A head tied to the token embedding keeps the embedding's Θ(1) draw
      and gets the same multiplier, so its effective variance is ``∝ 1/m²``, also Table 3.

    Rescaling rather than re-drawing keeps the random draw, so with the same seed the muP and SP
    models are identical at ``width == base_width`` (up to attention scaling) -- a paired
    comparison.  Call it once, on a model that has not been trained.

    The paper allows the readout and the attention query to start at zero, which removes the
    ``1/sqrt(width)`` shrinkage of the initial logits: ``zero_readout=True`` zeroes an untied
    head weight, ``zero_query=True`` the query rows of every fused ``qkv`` projection.  Both are
    off by default.  Raises ``ValueError`` for a model with recurrent layers, a head that is not
    ``nn.Linear`` (or is already a :class:`Readout`), a transformer built with ``init="gpt"``, or
    attention whose logits are not scaled by ``1/d_head``: every attention module (a class whose
    name contains ``"Attention"``, or ``nn.MultiheadAttention``) must expose ``scale`` and
    ``heads`` (or ``head_dim``) with ``scale == 1/d_head`` -- the project's transformer built
    with ``attn_scale="inverse"`` does.  Returns ``model``; train it with rates from
    ``MuP(base_width, optimizer)``.
    """
    check_positive("base_width", base_width)
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear) or isinstance(head, Readout):
        raise ValueError("to_mup needs an SP model with an nn.Linear readout `head`")
    if any(isinstance(m, nn.RNNBase) for m in model.modules()):
        raise ValueError("to_mup supports the MLP and transformer families, not recurrent layers")
    if getattr(model, "init", "torch") != "torch":
        raise ValueError(
            f"to_mup rescales PyTorch's default initialisation, got init={model.init!r}; "
            "build the model with init='torch'"
        )
    width = head.in_features
    attention = _attention_modules(model)
    for name, module in attention.items():
        _check_attention_scale(name, module, width)
    m = width / base_width
    classes = _classes(model, base_width, width)
    params = dict(model.named_parameters())
    for name in classes:
        layer = name.rsplit(".", 1)[0]
        if name.endswith(".bias") and classes.get(f"{layer}.weight") in ("hidden", "output"):
            params[name].mul_(math.sqrt(m))
    if "head.weight" in classes:  # untied readout
        head.weight.mul_(0.0 if zero_readout else math.sqrt(m))
    if zero_query:
        for name, module in attention.items():
            qkv = getattr(module, "qkv", None)
            if not isinstance(qkv, nn.Linear):
                raise ValueError(
                    f"zero_query needs a fused nn.Linear `qkv` projection; {name} has none"
                )
            qkv.weight[:width].zero_()
    model.head = Readout.wrap(head, 1.0 / m)
    return model


def _optimizer(
    model: nn.Module, lr: float, name: str, rule: RuleLike | None, example: torch.Tensor
) -> torch.optim.Optimizer:
    """``name`` over one group per trainable tensor, at ``lr`` times the rule's multiplier."""
    params = dict(model.named_parameters())
    if rule is None:
        groups = [{"params": list(params.values()), "lr": lr}]
    else:
        table = layer_table(model, example)
        multipliers = rule.multipliers(table)
        groups = [
            {"params": [params[n]], "lr": lr * m}
            for n, m in zip(table["name"], multipliers, strict=True)
        ]
    return {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[name](groups, lr=lr)


def coord_check(
    make_model: Callable[[int], nn.Module],
    widths: Sequence[int],
    steps: int,
    data: tuple[torch.Tensor, torch.Tensor],
    lr: float,
    optimizer: str = "adam",
    rule: RuleLike | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Coordinate check (Tensor Programs V, section 7 / Fig. 5): mean |activation| of every layer
    over the first training steps, for each width.

    ``make_model(width)`` builds a model (SP, or muP via :func:`to_mup`); each width trains
    ``steps`` steps of ``optimizer`` (``"adam"`` or ``"sgd"``) on the fixed batch ``data = (x, y)``
    with cross-entropy, at rate ``lr`` times the ``rule``'s per-parameter multipliers (e.g.
    :class:`MuP`; ``None`` = one rate for all).  Step ``t`` records the forward pass before
    update ``t``, so step 0 is the initialisation.  Under muP the curves are flat in width; under
    SP they grow.  Returns a tidy frame (``width``, ``step``, ``layer``, ``mean_abs``).
    """
    check_choice("optimizer", optimizer, ("adam", "sgd"))
    check_positive("steps", steps)
    if getattr(rule, "optimizer", optimizer) != optimizer:
        raise ValueError(f"the rule is for {rule.optimizer!r} but the optimizer is {optimizer!r}")
    x, y = data
    rows: list[tuple[int, int, str, float]] = []
    sizes: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> None:
        sizes[name] = out.detach().abs().mean()

    for width in widths:
        torch.manual_seed(seed)
        model = make_model(width).train()
        opt = _optimizer(model, lr, optimizer, rule, x)
        handles = record_outputs(model, None, keep)
        try:
            for step in range(steps):
                sizes.clear()
                logits = model(x)
                loss = F.cross_entropy(logits.flatten(0, -2), y.flatten())
                opt.zero_grad()
                loss.backward()
                opt.step()
                rows += [(width, step, name, v.item()) for name, v in sizes.items()]
        finally:
            for handle in handles:
                handle.remove()
    return pd.DataFrame(rows, columns=["width", "step", "layer", "mean_abs"])
