"""Four model families -- dense, convolutional, recurrent, self-attention -- for every dataset,
and a hybrid that holds all four layer types in one network (classification only).

``build(name, dataset, **options)`` returns an ``nn.Module`` that maps a batch of the dataset's
inputs to logits: ``(batch, classes)`` for classification, ``(batch, time, vocab)`` for a
character language model (inputs are token ids of shape ``(batch, time)``).  Every model's
output layer is the attribute ``head`` so that readout rules (muP, head-only rates) find it.

Default sizes follow the MNIST-1D repository's ``MLPBase`` / ``ConvBase`` / ``GRUBase`` (Greydanus
2020) loosely and nanoGPT's CPU character configuration (4 layers, 4 heads, 128 wide, block 64).

``variant="reference"`` builds a published benchmark model exactly (its structure, sizes and
PyTorch's default initialisation; training settings are the run's business):

* MNIST-1D, from ``notebooks/models.py`` of github.com/greydanus/mnist1d as the benchmark notebook
  ``notebooks/mnist1d-classification.ipynb`` builds them:

  - ``mlp``: ``MLPBase`` -- 40 -> 100 -> 100 -> 10 with a residual second layer,
    ``h = relu(W1 x); h = h + relu(W2 h); W3 h`` (the notebook keeps ``hidden_size=100``, the class
    default; ``train.py``'s ``get_model_args`` says 256 but is not passed to it), 15,210
    parameters.  The plain default (256 wide, no skip) differs in both.
  - ``cnn``: ``ConvBase`` -- Conv1d(1, 25, 5, stride 2, pad 1), then two Conv1d(25, 25, 3,
    stride 2, pad 1), ReLU after each, flatten 25 x 5 = 125 -> 10; 5,210 parameters.  The
    default is the same network.
  - ``gru``: ``GRUBase`` -- one bidirectional GRU, hidden 6, zero initial state; the head reads
    the outputs of *all 40 time steps* (flattened time-major, 40 x 12 = 480 -> 10); 5,134
    parameters.  The default reads only the final states (12 -> 10).

* Fashion-MNIST ``cnn``: the "2 Conv <100K parameters" row (0.925) of the Fashion-MNIST README,
  hardmaru's ``pytorch_tiny_custom_mnist_adam.ipynb`` (github.com/hardmaru/pytorch_notebooks)
  ``Net`` -- Conv2d(1, 32, 5, pad 2) + ReLU + 2x2 max-pool, Conv2d(32, 64, 5, pad 2) + ReLU +
  2x2 max-pool, linear 64 x 7 x 7 = 3136 -> 10; 83,466 parameters.  It ends in
  ``log_softmax`` + NLL, which is our cross-entropy on logits; its inputs were standardised with
  MNIST's (0.1307, 0.3081), ours with the training split's own statistics.

The variant fills in options (listed in ``_VARIANTS``); options given beside it override them.
The structural options behind the variants -- ``residual`` (mlp), ``readout`` (gru/lstm),
``kernel`` (image cnn) -- can also be given on their own.  ``batchnorm`` (image cnn) adds batch
normalisation (Ioffe & Szegedy 2015, ``docs/references.md#ioffe2015batchnorm``) after every
convolution and the hidden dense layer, before the ReLU, as in LARS's AlexNet-BN (You, Gitman &
Ginsburg 2017); those layers then have no bias (the normalisation's shift replaces it, and a
bias before it would get a zero gradient).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_choice, check_int, check_options, check_positive
from ..mup import to_mup
from . import data as _data

__all__ = ["MODELS", "POOLS", "build", "default_options"]


# --------------------------------------------------------------------------------------------
# building blocks


class Residual(nn.Module):
    """``x + f(x)``: a skip connection around one sub-module."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution padded on the left only, so position t sees inputs <= t."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.kernel_size[0] - 1, 0)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (Vaswani et al. 2017).

    ``scale`` multiplies ``q.k``: ``"sqrt"`` gives the usual ``1/sqrt(d_head)``, ``"inverse"``
    gives muP's ``1/d_head`` (Yang et al. 2021, Tensor Programs V, section 6).
    """

    def __init__(self, width: int, heads: int, causal: bool, scale: str = "sqrt"):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        check_choice("attention scale", scale, ("sqrt", "inverse"))
        self.heads, self.causal = heads, causal
        head_dim = width // heads
        self.scale = head_dim**-0.5 if scale == "sqrt" else 1.0 / head_dim
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(b, t, w))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))`` (GPT-2 layout)."""

    def __init__(self, width: int, heads: int, causal: bool, attn_scale: str = "sqrt"):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, causal, attn_scale)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


# --------------------------------------------------------------------------------------------
# the four families


class MLP(nn.Module):
    """Fully connected ReLU network; for text, a fixed-context character model (Bengio 2003).

    ``residual``: every hidden layer after the first adds its input back, ``h + relu(W h)``
    (``MLPBase``'s second layer); the skip needs depth >= 2 to exist.
    """

    def __init__(
        self,
        spec: _data.DatasetSpec,
        width: int,
        depth: int,
        context: int,
        embed: int,
        residual: bool = False,
    ):
        super().__init__()
        self.language = spec.task == "language"
        if self.language:
            self.embed = nn.Embedding(spec.num_classes, embed)
            self.context = context
            fan_in = context * embed
        else:
            fan_in = math.prod(spec.input_shape)
        layers: list[nn.Module] = []
        for i in range(depth):
            if residual and i > 0:
                layers.append(Residual(nn.Sequential(nn.Linear(width, width), nn.ReLU())))
            else:
                layers += [nn.Linear(fan_in if i == 0 else width, width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width if depth else fan_in, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.language:
            return self.head(self.body(x.flatten(1)))
        e = self.embed(x)  # (b, t, embed); position t sees the `context` tokens up to t
        e = F.pad(e, (0, 0, self.context - 1, 0))
        windows = e.unfold(1, self.context, 1)  # (b, t, embed, context)
        return self.head(self.body(windows.transpose(2, 3).flatten(2)))


class CNN(nn.Module):
    """Convolutional network: Conv1d stack for MNIST-1D (ConvBase), Conv2d + pooling for images
    (``kernel`` x ``kernel`` convolutions, "same" padding; a 2x2 max-pool after every
    ``pool_every``-th convolution, channels doubling at each pool unless ``double_channels`` is
    false; ``batchnorm``: conv -> BatchNorm2d -> ReLU -> pool and dense -> BatchNorm1d -> ReLU,
    without the biases), a causal Conv1d stack over embeddings for text."""

    def __init__(
        self,
        spec: _data.DatasetSpec,
        width: int,
        depth: int,
        hidden: int,
        embed: int,
        kernel: int = 3,
        batchnorm: bool = False,
        pool_every: int = 1,
        double_channels: bool = True,
    ):
        super().__init__()
        self.task = spec.task
        layers: list[nn.Module] = []
        if spec.task == "language":
            self.embed = nn.Embedding(spec.num_classes, embed)
            channels = embed
            for _ in range(depth):
                layers += [CausalConv1d(channels, width, 5), nn.ReLU()]
                channels = width
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(channels, spec.num_classes)
            return
        if len(spec.input_shape) == 1:  # MNIST-1D: strided Conv1d, as ConvBase
            length, channels = spec.input_shape[0], 1
            for i in range(depth):
                side = 5 if i == 0 else 3
                layers += [nn.Conv1d(channels, width, side, stride=2, padding=1), nn.ReLU()]
                length = (length + 2 - side) // 2 + 1
                channels = width
            flat = channels * length
        else:  # images: conv + ReLU, a 2x2 max-pool after every pool_every-th conv
            channels, size = spec.input_shape[0], spec.input_shape[1]
            for i in range(depth):
                out = width * 2 ** (i // pool_every) if double_channels else width
                conv = nn.Conv2d(channels, out, kernel, padding=kernel // 2, bias=not batchnorm)
                norm = [nn.BatchNorm2d(out)] if batchnorm else []
                pool = [nn.MaxPool2d(2)] if (i + 1) % pool_every == 0 else []
                layers += [conv, *norm, nn.ReLU(), *pool]
                channels, size = out, size // 2 if pool else size
            flat = channels * size * size
        self.body = nn.Sequential(*layers, nn.Flatten())
        if hidden:
            self.body.append(nn.Linear(flat, hidden, bias=not batchnorm))
            if batchnorm:
                self.body.append(nn.BatchNorm1d(hidden))
            self.body.append(nn.ReLU())
            flat = hidden
        self.head = nn.Linear(flat, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.task == "language":
            h = self.body(self.embed(x).transpose(1, 2)).transpose(1, 2)
            return self.head(h)
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.head(self.body(x))


class Recurrent(nn.Module):
    """GRU or LSTM.  Classification reads the sequence (MNIST-1D one value per step, images one
    row per step; bidirectional as GRUBase) and classifies the final states (``readout="final"``)
    or, as GRUBase, the outputs of every step flattened time-major (``readout="all"``); text
    predicts the next character at every step (unidirectional)."""

    def __init__(
        self,
        spec: _data.DatasetSpec,
        cell: str,
        width: int,
        depth: int,
        embed: int,
        bidir: bool,
        readout: str = "final",
    ):
        super().__init__()
        check_choice(f"{cell} readout", readout, _READOUTS)
        self.language = spec.task == "language"
        self.readout = readout
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        steps = 1
        if self.language:
            if readout != "final":
                raise ValueError(
                    f"readout={readout!r} needs a fixed-length classification input; "
                    f"{spec.name} is a language task (it predicts at every step)"
                )
            self.embed = nn.Embedding(spec.num_classes, embed)
            features, bidir = embed, False
        else:
            shape = spec.input_shape
            features = 1 if len(shape) == 1 else shape[0] * shape[2]
            if readout == "all":
                steps = shape[0] if len(shape) == 1 else shape[1]
        self.rnn = rnn(features, width, num_layers=depth, batch_first=True, bidirectional=bidir)
        self.head = nn.Linear(width * (2 if bidir else 1) * steps, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.language:
            out, _ = self.rnn(self.embed(x))
            return self.head(out)
        seq = x.unsqueeze(-1) if x.dim() == 2 else x.permute(0, 2, 1, 3).flatten(2)
        out, _ = self.rnn(seq)
        if self.readout == "all":  # (batch, time, directions * width) -> time-major flat
            return self.head(out.flatten(1))
        if self.rnn.bidirectional:
            half = out.shape[-1] // 2
            last = torch.cat([out[:, -1, :half], out[:, 0, half:]], dim=-1)
        else:
            last = out[:, -1]
        return self.head(last)


class Transformer(nn.Module):
    """Pre-norm transformer.  Text: a causal character model in nanoGPT's layout (token and
    position embeddings, blocks, final LayerNorm, head tied to the token embedding).  MNIST-1D and
    images: a patch encoder (ViT-style, Dosovitskiy et al. 2021) with mean pooling.

    Text classification (a dataset whose spec has ``vocab_size``): the character model's body
    -- same embeddings, causal blocks and final LayerNorm, so a language model's weights load into
    it (``transfer.load_pretrained``; ULMFiT, Howard & Ruder 2018) -- whose final states
    ``h_1..h_T`` are pooled into one vector for a new head (with a bias, never tied).  ``pool``:
    ``"mean"``, ``(1/T) sum_t h_t``; ``"last"``, ``h_T``, the only position of a causal model that
    has read the whole passage; ``"concat"``, ULMFiT's concat pooling (section 3.3),
    ``[h_T, max_t h_t, (1/T) sum_t h_t]`` with the maximum taken per feature, so a head of three
    times the width also sees what happened at a single position.
    """

    def __init__(
        self,
        spec: _data.DatasetSpec,
        width: int,
        depth: int,
        heads: int,
        patch: int,
        block: int,
        tie: bool,
        attn_scale: str,
        init: str = "torch",
        pool: str = "mean",
    ):
        super().__init__()
        check_choice("transformer init", init, ("torch", "gpt"))
        self.pool = check_choice("transformer pool", pool, POOLS)
        self.init = init
        self.language = spec.task == "language"
        self.text = self.language or spec.vocab_size is not None  # inputs are token ids
        if self.text:
            if not self.language and spec.input_shape[0] > block:
                raise ValueError(
                    f"{spec.name} passages of {spec.input_shape[0]} characters do not fit the "
                    f"transformer's block of {block}; give block >= {spec.input_shape[0]}"
                )
            self.embed = nn.Embedding(spec.vocab_size or spec.num_classes, width)
            tokens = block
        elif len(spec.input_shape) == 1:
            length = spec.input_shape[0]
            if length % patch:
                raise ValueError(f"patch {patch} does not divide the sequence length {length}")
            self.embed = nn.Linear(patch, width)
            tokens = length // patch
        else:
            c, h, w = spec.input_shape
            if h % patch or w % patch:
                raise ValueError(f"patch {patch} does not divide the image size {h}x{w}")
            self.embed = nn.Linear(c * patch * patch, width)
            tokens = (h // patch) * (w // patch)
        self.patch = patch
        self.pos = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, self.text, attn_scale) for _ in range(depth)
        )
        self.ln_f = nn.LayerNorm(width)
        pooled = 3 * width if pool == "concat" and not self.language else width
        self.head = nn.Linear(pooled, spec.num_classes, bias=not (self.language and tie))
        if self.language and tie:
            self.head.weight = self.embed.weight
        if init == "gpt":
            self._gpt_init(depth)

    def _gpt_init(self, depth: int) -> None:
        """GPT-2's initialisation (Radford et al. 2019, as in nanoGPT): weights of linear and
        embedding layers ~ N(0, 0.02^2), biases 0, and the two projections that write into the
        residual stream ~ N(0, (0.02 / sqrt(2 * depth))^2).  PyTorch's default N(0, 1) embedding
        would make a tied head's initial logits ~ sqrt(width) large."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for residual_out in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(residual_out.weight, std=0.02 / math.sqrt(2 * depth))

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.text:
            return self.embed(x)
        if x.dim() == 2:  # (b, length) -> (b, length / patch, patch)
            return self.embed(x.unflatten(1, (-1, self.patch)))
        p = self.patch  # (b, c, h, w) -> (b, patches, c * p * p)
        patches = x.unfold(2, p, p).unfold(3, p, p)  # (b, c, h/p, w/p, p, p)
        return self.embed(patches.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._tokens(x)
        h = h + self.pos[:, : h.shape[1]]
        for block in self.blocks:
            h = block(h)
        h = self.ln_f(h)
        if self.language:
            return self.head(h)
        if self.pool == "concat":
            return self.head(torch.cat([h[:, -1], h.amax(dim=1), h.mean(dim=1)], dim=-1))
        return self.head(h[:, -1] if self.pool == "last" else h.mean(dim=1))


class Hybrid(nn.Module):
    """All four layer types in one classifier, in the order of the question:

    ``conv`` stem (Conv1d, stride 2, ReLU) -> ``rnn`` (one GRU layer over the stem's positions)
    -> ``ln`` + ``attn`` (pre-norm residual self-attention, no MLP) -> mean over positions ->
    ``fc`` (dense, ReLU) -> ``head`` (dense).

    MNIST-1D enters as a one-channel sequence of 40 values; an image enters one row per position
    (the row's pixels of all channels are the channels of the convolution).  Every type is a
    separate module, so type-wise rates (``rules.ByKind``) and per-layer probes see one layer of
    each kind: conv, recurrent, attention (with its LayerNorm, kind ``norm``) and dense.
    """

    def __init__(self, spec: _data.DatasetSpec, width: int, heads: int):
        super().__init__()
        if spec.task == "language":
            raise ValueError("the hybrid model is a classifier; tinyshakespeare is a language task")
        shape = spec.input_shape
        channels = 1 if len(shape) == 1 else shape[0] * shape[2]
        self.conv = nn.Conv1d(channels, width, 5, stride=2, padding=2)
        self.rnn = nn.GRU(width, width, batch_first=True)
        self.ln = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, causal=False)
        self.fc = nn.Linear(width, width)
        self.head = nn.Linear(width, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.unsqueeze(1) if x.dim() == 2 else x.permute(0, 1, 3, 2).flatten(1, 2)
        h = F.relu(self.conv(seq)).transpose(1, 2)  # (batch, positions, width)
        h, _ = self.rnn(h)
        h = h + self.attn(self.ln(h))
        return self.head(F.relu(self.fc(h.mean(dim=1))))


# --------------------------------------------------------------------------------------------
# registry

_DEFAULTS: dict[str, dict[str, dict]] = {
    # per family: dataset name -> default options ("*" for any dataset without its own entry)
    "mlp": {
        # get_model_args' hidden_size in the MNIST-1D repository's train.py (its benchmark
        # builds MLPBase at the class default, 100; that is variant "reference")
        "mnist1d": {"width": 256, "depth": 2},
        "fashion_mnist": {"width": 256, "depth": 2},
        "cifar10": {"width": 512, "depth": 3},
        "tinyshakespeare": {"width": 256, "depth": 2, "context": 8, "embed": 32},
    },
    "cnn": {
        "mnist1d": {"width": 25, "depth": 3, "hidden": 0},
        "fashion_mnist": {"width": 16, "depth": 2, "hidden": 128},
        "cifar10": {"width": 32, "depth": 3, "hidden": 256},
        "tinyshakespeare": {"width": 128, "depth": 4, "embed": 64},
    },
    "gru": {
        "mnist1d": {"width": 6, "depth": 1, "bidirectional": True},
        "fashion_mnist": {"width": 128, "depth": 1, "bidirectional": True},
        "cifar10": {"width": 128, "depth": 1, "bidirectional": True},
        "tinyshakespeare": {"width": 256, "depth": 1, "embed": 64},
    },
    "transformer": {
        "mnist1d": {"width": 64, "depth": 2, "heads": 4, "patch": 4},
        "fashion_mnist": {"width": 64, "depth": 2, "heads": 4, "patch": 7},
        "cifar10": {"width": 128, "depth": 4, "heads": 4, "patch": 4},
        "tinyshakespeare": {
            "width": 128,
            "depth": 4,
            "heads": 4,
            "block": 64,
            "tie": True,
            "init": "gpt",
        },
    },
}
# a text classifier is the character model's body with a pooled head: the same defaults
_DEFAULTS["transformer"]["tinyshakespeare_passages"] = _DEFAULTS["transformer"]["tinyshakespeare"]
_DEFAULTS["lstm"] = _DEFAULTS["gru"]
_DEFAULTS["hybrid"] = {
    "mnist1d": {"width": 32, "heads": 4},
    "fashion_mnist": {"width": 64, "heads": 4},
    "cifar10": {"width": 64, "heads": 4},
    "tinyshakespeare": {"width": 32, "heads": 4},  # refused by Hybrid: not a classifier
}
_COMMON = {
    "transformer": {"attn_scale": "sqrt", "patch": 4, "block": 64, "tie": True, "init": "torch"}
}

MODELS: tuple[str, ...] = tuple(_DEFAULTS)

# Options beyond the sizes, per family; absent means the behaviour every stored run had.
_STRUCTURAL = {
    # mlp and transformer: "mup_base_width" (absent: SP) prepares the model by mup.to_mup
    "mlp": {"residual", "mup_base_width"},  # residual False: plain stack; True: h + relu(W h)
    # image convolutions' side, odd (3); batch norm (False); convolutions per 2x2 max-pool (1);
    # channels doubling at each pool (True)
    "cnn": {"kernel", "batchnorm", "pool_every", "double_channels"},
    "gru": {"readout"},  # "final" (final states) or "all" (every step's output)
    "lstm": {"readout"},
    "transformer": {"mup_base_width", "pool"},  # pool: classification only, one of POOLS
}
_READOUTS = ("final", "all")
POOLS = ("mean", "last", "concat")

# Named presets of options: family -> dataset -> variant -> options (see the module docstring).
_VARIANTS: dict[str, dict[str, dict[str, dict]]] = {
    "mlp": {"mnist1d": {"reference": {"width": 100, "depth": 2, "residual": True}}},
    "cnn": {
        "mnist1d": {"reference": {"width": 25, "depth": 3, "hidden": 0}},
        "fashion_mnist": {"reference": {"width": 32, "depth": 2, "hidden": 0, "kernel": 5}},
    },
    "gru": {
        "mnist1d": {"reference": {"width": 6, "depth": 1, "bidirectional": True, "readout": "all"}}
    },
}


def default_options(name: str, dataset: str) -> dict:
    """The options ``build`` uses for a family on a dataset when none are given."""
    check_choice("model", name, MODELS)
    check_choice("dataset", dataset, _data.DATASETS)
    if dataset not in _DEFAULTS[name]:
        families = [f for f in MODELS if dataset in _DEFAULTS[f]]
        raise ValueError(
            f"model {name!r} has no version for {dataset}; valid: {', '.join(families)}"
        )
    return {**_COMMON.get(name, {}), **_DEFAULTS[name][dataset]}


def _variant(name: str, dataset: str, variant: object) -> dict:
    """The options a named variant stands for (``{}`` for ``None``); raises naming the valid."""
    if variant is None:
        return {}
    defined = _VARIANTS[name].get(dataset, {})
    if not defined:
        where = ", ".join(f"{name} on {d}" for d in _VARIANTS[name])
        raise ValueError(
            f"no {name} variants are defined for {dataset} (got variant={variant!r}); "
            f"variants exist for {where}"
        )
    return dict(defined[check_choice(f"{name} variant on {dataset}", variant, defined)])


def build(name: str, dataset: str | _data.Dataset | _data.DatasetSpec, **options) -> nn.Module:
    """Build a model of family ``name`` for ``dataset`` (a name, a loaded dataset or a spec).

    Options (all families): ``width``, ``depth``; ``cnn``: ``hidden`` (dense layer before the
    head, 0 for none), ``kernel`` (side of the image convolutions, odd, default 3; images only),
    ``batchnorm`` (default ``False``; ``True``: batch norm after every image convolution and the
    hidden dense layer, which then have no bias; images only), ``pool_every`` (convolutions per
    2x2 max-pool, default 1; images only), ``double_channels`` (default ``True``: channels double
    at every pool; ``False``: every convolution has ``width`` channels; images only),
    ``embed`` (text); ``gru``/``lstm``: ``bidirectional``, ``readout`` (``"final"``, the default:
    the head reads the final states; ``"all"``: the outputs of every step, classification only),
    ``embed`` (text); ``mlp``: ``residual`` (default ``False``; ``True``: hidden layers after the
    first compute ``h + relu(W h)``, depth >= 2), ``context``, ``embed`` (text); ``mlp``, ``cnn``,
    ``gru``: ``variant`` (``"reference"``: a published benchmark model, see the module docstring;
    defined for MNIST-1D mlp / cnn / gru and Fashion-MNIST cnn; options given beside it win);
    ``hybrid``: ``width``, ``heads`` only (no depth); ``transformer``: ``heads``, ``patch``
    (patch length or side), ``block`` (text context), ``tie`` (tie head to the token
    embedding), ``attn_scale`` (``"sqrt"`` or muP's ``"inverse"``), ``init`` (``"torch"``:
    PyTorch's defaults; ``"gpt"``: GPT-2's N(0, 0.02) scheme, the default for text), ``pool``
    (classification: ``"mean"``, the default, ``"last"``, the final position's state, or
    ``"concat"``, ULMFiT's concat pooling; see :class:`Transformer`).  ``tinyshakespeare_passages`` has a transformer only.
    ``mlp`` and ``transformer``: ``mup_base_width`` (absent: the standard parametrisation) builds
    the model in muP (Yang et al. 2021, Tensor Programs V): the SP draw is rescaled and the head
    becomes a readout with multiplier ``base_width / width`` by ``layerwise.mup.to_mup`` (a
    transformer must then use ``attn_scale="inverse"`` and ``init="torch"``); train it with the
    rule ``{"name": "mup", "base_width": ..., "optimizer": ...}``.  Missing options take
    ``default_options(name, dataset)``.
    """
    check_choice("model", name, MODELS)
    if isinstance(dataset, _data.Dataset):
        spec = dataset.spec
    elif isinstance(dataset, _data.DatasetSpec):
        spec = dataset
    else:
        spec = _data.spec(dataset)
    defaults = default_options(name, spec.name)
    valid = set(defaults) | {"embed"} if name not in ("transformer", "hybrid") else set(defaults)
    valid |= _STRUCTURAL.get(name, set()) | ({"variant"} if name in _VARIANTS else set())
    check_options(f"{name} model", options, valid)
    o = {**defaults, **_variant(name, spec.name, options.get("variant")), **options}
    o.pop("variant", None)
    for key in ("width", "depth", "heads", "patch", "block", "context", "embed"):
        if key in o and key != "depth":
            check_positive(key, o[key])
    if name == "hybrid":
        return Hybrid(spec, o["width"], o["heads"])
    if o.get("depth", 1) < 0 or (name != "mlp" and o["depth"] < 1):
        raise ValueError(f"depth must be >= 1 for {name} (>= 0 for mlp), got {o['depth']!r}")
    embed = o.get("embed", 64)
    if name == "mlp":
        residual = o.get("residual", False)
        if not isinstance(residual, bool):
            raise ValueError(f"mlp residual must be True or False, got {residual!r}")
        if residual and o["depth"] < 2:
            raise ValueError(f"mlp residual=True needs depth >= 2, got depth {o['depth']!r}")
        model = MLP(spec, o["width"], o["depth"], o.get("context", 8), embed, residual)
        return _parametrise(model, o.get("mup_base_width"))
    if name == "cnn":
        kernel = o.get("kernel", 3)
        if "kernel" in o:
            if spec.task != "classification" or len(spec.input_shape) != 3:
                raise ValueError(f"cnn kernel applies to image data only, not {spec.name}")
            if check_int("cnn kernel", kernel, 1) % 2 == 0:
                raise ValueError(f"cnn kernel must be odd (for same padding), got {kernel!r}")
        batchnorm = o.get("batchnorm", False)
        if not isinstance(batchnorm, bool):
            raise ValueError(f"cnn batchnorm must be True or False, got {batchnorm!r}")
        if batchnorm and (spec.task != "classification" or len(spec.input_shape) != 3):
            raise ValueError(
                f"cnn batchnorm applies to image data (fashion_mnist, cifar10) only, not "
                f"{spec.name}"
            )
        pool_every, double = o.get("pool_every", 1), o.get("double_channels", True)
        for key in ("pool_every", "double_channels"):
            if key in o and (spec.task != "classification" or len(spec.input_shape) != 3):
                raise ValueError(f"cnn {key} applies to image data only, not {spec.name}")
        check_int("cnn pool_every", pool_every, 1)
        if not isinstance(double, bool):
            raise ValueError(f"cnn double_channels must be True or False, got {double!r}")
        pools = o["depth"] // pool_every
        if len(spec.input_shape) == 3 and spec.input_shape[-1] >> pools < 1:
            raise ValueError(
                f"cnn depth {o['depth']} with pool_every {pool_every} pools {pools} times, "
                f"more than {spec.name}'s {spec.input_shape[-1]}-pixel side allows"
            )
        return CNN(
            spec,
            o["width"],
            o["depth"],
            o.get("hidden", 0),
            embed,
            kernel,
            batchnorm,
            pool_every,
            double,
        )
    if name in ("gru", "lstm"):
        bidir = o.get("bidirectional", False)
        readout = o.get("readout", "final")
        return Recurrent(spec, name, o["width"], o["depth"], embed, bidir, readout)
    if "pool" in o and spec.task == "language":
        raise ValueError(f"transformer pool applies to classification, not to {spec.name}")
    model = Transformer(
        spec,
        o["width"],
        o["depth"],
        o["heads"],
        o["patch"],
        o["block"],
        o["tie"],
        o["attn_scale"],
        o["init"],
        o.get("pool", "mean"),
    )
    return _parametrise(model, o.get("mup_base_width"))


def _parametrise(model: nn.Module, mup_base_width: object) -> nn.Module:
    """``model`` as built (SP) when ``mup_base_width`` is ``None``, else prepared for muP by
    ``layerwise.mup.to_mup(model, mup_base_width)`` (which refuses what it cannot make muP)."""
    if mup_base_width is None:
        return model
    if isinstance(mup_base_width, bool) or not isinstance(mup_base_width, int):
        raise ValueError(f"mup_base_width must be a whole number >= 1, got {mup_base_width!r}")
    check_positive("mup_base_width", mup_base_width)
    return to_mup(model, mup_base_width)
