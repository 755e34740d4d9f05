"""Small Hugging Face ``transformers`` models built from configs (random weights, no download),
for the toolkit's tests on an outside client.

``import transformers`` is lazy, but building a model imports ``transformers.image_utils``,
which imports torchvision whenever the package is installed; where torchvision does not match
torch (as beside this project's CPU torch build) that import fails.  :func:`load` therefore
puts ``None`` under ``sys.modules["torchvision"]`` while it imports the model classes: Python
then treats torchvision as absent (``importlib.util.find_spec`` returns ``None`` and ``import
torchvision`` raises ``ImportError``), transformers records it as unavailable and skips its
torchvision paths, which text and ViT models do not need.  ``sys.modules`` is restored
afterwards, so a later ``import torchvision`` elsewhere is unaffected.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import torch
from torch import nn

__all__ = ["BLOCKS", "bert", "gpt2", "gpt2_inputs", "load", "vit"]

BLOCKS = {"gpt2": 4, "bert": 3, "vit": 2}  # the configs' numbers of layers


def load() -> types.SimpleNamespace:
    """The model and config classes; ``ModuleNotFoundError`` if transformers is absent."""
    if importlib.util.find_spec("transformers") is None:
        raise ModuleNotFoundError("transformers is not installed", name="transformers")
    missing = object()
    saved = sys.modules.get("torchvision", missing)
    sys.modules["torchvision"] = None  # type: ignore[assignment]
    try:
        import transformers

        transformers.logging.set_verbosity_error()  # no notes about the configs' token ids
        names = [
            "GPT2Config",
            "GPT2LMHeadModel",
            "BertConfig",
            "BertForSequenceClassification",
            "ViTConfig",
            "ViTForImageClassification",
        ]
        classes = {name: getattr(transformers, name) for name in names}
        classes["Conv1D"] = transformers.pytorch_utils.Conv1D
    finally:
        if saved is missing:
            sys.modules.pop("torchvision", None)
        else:
            sys.modules["torchvision"] = saved
    return types.SimpleNamespace(version=transformers.__version__, **classes)


def gpt2(hf: types.SimpleNamespace) -> nn.Module:
    """GPT-2 language model: 4 blocks, width 64, output head tied to the token embedding."""
    torch.manual_seed(0)
    config = hf.GPT2Config(
        n_layer=BLOCKS["gpt2"], n_embd=64, n_head=4, vocab_size=100, n_positions=32
    )
    return hf.GPT2LMHeadModel(config)


def gpt2_inputs() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(1))}


def bert(hf: types.SimpleNamespace) -> nn.Module:
    """BERT classifier: 3 blocks, width 64, pooler and a 3-class head."""
    torch.manual_seed(0)
    config = hf.BertConfig(
        num_hidden_layers=BLOCKS["bert"],
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=100,
        max_position_embeddings=32,
        num_labels=3,
    )
    return hf.BertForSequenceClassification(config)


def vit(hf: types.SimpleNamespace) -> nn.Module:
    """ViT classifier: 2 blocks, width 32, 16x16 images in 4x4 patches, 5 classes."""
    torch.manual_seed(0)
    config = hf.ViTConfig(
        num_hidden_layers=BLOCKS["vit"],
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=16,
        patch_size=4,
        num_channels=3,
        num_labels=5,
    )
    return hf.ViTForImageClassification(config)
