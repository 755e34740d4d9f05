"""Hugging Face transformers as an outside client: GPT-2, BERT and ViT built from configs go
through layer_table, every rule, param_groups with AdamW, LAMB and LARS, a cosine schedule and a
few optimizer steps.  Expected depths, kinds and rates are written out by hand from each
architecture.  Skipped when transformers is not installed (it is a dev dependency)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import hf_models
from layerwise.groups import (
    ByKind,
    Discriminative,
    LayerDecay,
    Uniform,
    check,
    describe,
    param_groups,
    resolve,
)
from layerwise.layers import layer_table
from layerwise.optim import LAMB, LARS

try:
    HF = hf_models.load()
except ModuleNotFoundError:
    pytest.skip("transformers is not installed", allow_module_level=True)

GPT2_IDS = hf_models.gpt2_inputs()
BERT_IDS = {
    "input_ids": GPT2_IDS["input_ids"],
    "attention_mask": torch.ones(2, 8, dtype=torch.long),
}
PIXELS = {"pixel_values": torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))}


def quiet_table(model: nn.Module, inputs, **options):
    """layer_table with every warning an error: each layer of these models gets a kind."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return layer_table(model, inputs, **options)


def per_layer(table) -> dict[str, tuple[int, str, str]]:
    """{layer: (depth, unit, kinds)} -- one entry per unit that got a depth."""
    out = {}
    for layer, rows in table.groupby("layer", sort=False):
        assert rows["depth"].nunique() == 1, layer
        out[layer] = (
            int(rows["depth"].iloc[0]),
            rows["unit"].iloc[0],
            "+".join(sorted(set(rows["kind"]))),
        )
    return out


BLOCK = "attention+dense+norm"


# --------------------------------------------------------------------------------------------
# depths and kinds


def test_gpt2_counts_blocks_and_puts_the_tied_head_on_top():
    table = quiet_table(hf_models.gpt2(HF), GPT2_IDS)
    assert per_layer(table) == {
        "transformer.wpe": (0, "input", "embedding"),
        **{f"transformer.h.{k}": (k + 1, "block", BLOCK) for k in range(4)},
        "transformer.ln_f": (4, "layer", "norm"),  # normalises the last block's output
        "lm_head": (5, "layer", "embedding"),  # wte, tied to lm_head, at its last use
    }
    t = table.set_index("name")
    assert t.loc["transformer.wte.weight", "aliases"] == ("lm_head.weight",)
    assert t.loc["transformer.wte.weight", "layer"] == "lm_head"
    assert table["depth"].nunique() == 6


def test_gpt2_conv1d_projections_are_dense():
    """GPT-2's projections are transformers' Conv1D (a dense layer with a transposed weight,
    applied by addmm); they are recognised as dense, inside attention as attention."""
    model = hf_models.gpt2(HF)
    assert isinstance(model.transformer.h[0].mlp.c_fc, HF.Conv1D)
    t = quiet_table(model, GPT2_IDS, granularity="layer").set_index("name")
    for k in range(4):
        b = f"transformer.h.{k}"
        assert t.loc[f"{b}.mlp.c_fc.weight", "kind"] == "dense"
        assert t.loc[f"{b}.mlp.c_proj.bias", "kind"] == "dense"
        assert t.loc[f"{b}.attn.c_attn.weight", "kind"] == "attention"
        assert t.loc[f"{b}.mlp.c_fc.weight", "type"] == "Conv1D"


def test_gpt2_per_sub_layer_depths_on_request():
    table = quiet_table(hf_models.gpt2(HF), GPT2_IDS, granularity="layer")
    layers = per_layer(table)
    assert layers["transformer.wpe"] == (0, "input", "embedding")
    assert layers["transformer.h.0.ln_1"][0] == 0  # normalises the embeddings' output
    for k in range(4):
        b = f"transformer.h.{k}"
        assert layers[f"{b}.attn.c_attn"][0] == 4 * k + 1
        assert layers[f"{b}.attn.c_proj"][0] == 4 * k + 2
        assert layers[f"{b}.mlp.c_fc"][0] == 4 * k + 3
        assert layers[f"{b}.mlp.c_proj"][0] == 4 * k + 4
    assert layers["transformer.ln_f"][0] == 16
    assert layers["lm_head"][0] == 17


def test_bert_embeddings_blocks_pooler_head():
    """ELECTRA's layer map: embeddings 0, layer k at k + 1, pooler n + 1, classifier n + 2."""
    table = quiet_table(hf_models.bert(HF), BERT_IDS)
    assert per_layer(table) == {
        "bert.embeddings.word_embeddings": (0, "input", "embedding"),
        "bert.embeddings.position_embeddings": (0, "input", "embedding"),
        "bert.embeddings.token_type_embeddings": (0, "input", "embedding"),
        "bert.embeddings.LayerNorm": (0, "input", "norm"),
        **{f"bert.encoder.layer.{k}": (k + 1, "block", BLOCK) for k in range(3)},
        "bert.pooler.dense": (4, "layer", "dense"),
        "classifier": (5, "layer", "dense"),
    }


def test_bert_three_embeddings_share_depth_0_per_sub_layer_too():
    table = quiet_table(hf_models.bert(HF), BERT_IDS, granularity="layer")
    embeddings = table[table["kind"] == "embedding"]
    assert len(embeddings) == 3 and set(embeddings["depth"]) == {0}
    t = table.set_index("name")
    assert t.loc["bert.encoder.layer.0.attention.self.query.weight", "depth"] == 1


def test_vit_patches_class_token_and_position_form_the_input():
    table = quiet_table(hf_models.vit(HF), PIXELS)
    assert per_layer(table) == {
        "vit.embeddings.cls_token": (0, "input", "other"),
        "vit.embeddings.position_embeddings": (0, "input", "other"),
        "vit.embeddings.patch_embeddings.projection": (0, "input", "conv"),
        **{f"vit.layers.{k}": (k + 1, "block", BLOCK) for k in range(2)},
        "vit.layernorm": (2, "layer", "norm"),
        "classifier": (3, "layer", "dense"),
    }


# --------------------------------------------------------------------------------------------
# rules

GPT2_TOP = 5


def multipliers_by_name(rule, model=None, inputs=GPT2_IDS):
    table = resolve(model or hf_models.gpt2(HF), rule, inputs)
    return dict(zip(table["name"], table["multiplier"], strict=True))


def test_every_rule_on_gpt2():
    depth = quiet_table(hf_models.gpt2(HF), GPT2_IDS).set_index("name")["depth"].to_dict()
    uniform = multipliers_by_name(Uniform())
    assert set(uniform.values()) == {1.0}
    ulmfit = multipliers_by_name(Discriminative(2.6))
    assert ulmfit == pytest.approx({n: 2.6 ** -(GPT2_TOP - d) for n, d in depth.items()})
    assert ulmfit["transformer.wte.weight"] == 1.0  # the tied head trains at the top rate
    assert ulmfit["transformer.wpe.weight"] == pytest.approx(2.6**-5)
    llrd = multipliers_by_name(LayerDecay(0.8))
    assert llrd == pytest.approx({n: 0.8 ** (GPT2_TOP - d) for n, d in depth.items()})
    assert min(llrd.values()) == pytest.approx(0.8**5)  # 0.33, not 2.25e-5 per sub-layer
    spec = multipliers_by_name({"name": "layer_decay", "decay": 0.8})
    assert spec == llrd
    by_row = multipliers_by_name(lambda row: 3.0 if row["unit"] == "block" else 1.0)
    assert by_row["transformer.h.2.mlp.c_fc.weight"] == 3.0
    assert by_row["transformer.ln_f.weight"] == 1.0


def test_by_kind_reaches_gpt2_mlp():
    rule = ByKind({"dense": 2.0, "attention": 0.5, "embedding": 0.1})
    got = multipliers_by_name(rule)
    for k in range(4):
        assert got[f"transformer.h.{k}.mlp.c_fc.weight"] == 2.0
        assert got[f"transformer.h.{k}.mlp.c_proj.bias"] == 2.0
        assert got[f"transformer.h.{k}.attn.c_attn.weight"] == 0.5
        assert got[f"transformer.h.{k}.ln_1.weight"] == 1.0
    assert got["transformer.wte.weight"] == got["transformer.wpe.weight"] == 0.1
    dense = {n for n, m in got.items() if m == 2.0}
    assert len(dense) == 4 * 2 * 2  # c_fc and c_proj of 4 blocks, weights and biases


def test_layer_decay_on_bert_and_vit():
    bert = multipliers_by_name(LayerDecay(0.5), hf_models.bert(HF), BERT_IDS)
    assert bert["classifier.weight"] == 1.0
    assert bert["bert.pooler.dense.weight"] == 0.5
    assert bert["bert.encoder.layer.2.output.dense.weight"] == 0.25
    assert bert["bert.encoder.layer.0.attention.self.query.bias"] == 0.5**4
    assert bert["bert.embeddings.token_type_embeddings.weight"] == 0.5**5
    vit = multipliers_by_name(LayerDecay(0.5), hf_models.vit(HF), PIXELS)
    assert vit["classifier.weight"] == 1.0
    assert vit["vit.layernorm.weight"] == vit["vit.layers.1.mlp.fc1.weight"] == 0.5
    assert (
        vit["vit.embeddings.cls_token"]
        == vit["vit.embeddings.patch_embeddings.projection.weight"]
        == 0.125
    )


# --------------------------------------------------------------------------------------------
# optimizers, a schedule and a few steps


def train(model, optimizer, scheduler, inputs, steps=3):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    for _ in range(steps):
        out = model(**inputs)
        loss = out.logits.float().square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return before


@pytest.mark.parametrize(
    ("make", "options"),
    [
        (torch.optim.AdamW, {}),
        (LAMB, {}),
        (LARS, {"momentum": 0.9, "trust_coefficient": 0.02}),
    ],
    ids=["adamw", "lamb", "lars"],
)
def test_optimizers_train_gpt2_with_per_block_rates(make, options):
    model = hf_models.gpt2(HF)
    groups = param_groups(model, 1e-2, LayerDecay(0.5), GPT2_IDS, weight_decay=0.01)
    optimizer = make(groups, **options)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    before = train(model, optimizer, scheduler, GPT2_IDS)
    decay = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 3 / 10)).item())
    rates = describe(optimizer).set_index("name")["lr"]
    assert rates["transformer.wte.weight"] == pytest.approx(1e-2 * decay)
    assert rates["transformer.h.3.mlp.c_fc.weight"] == pytest.approx(0.5e-2 * decay)
    assert rates["transformer.h.0.attn.c_attn.weight"] == pytest.approx(1e-2 * 0.5**4 * decay)
    assert rates["transformer.wpe.weight"] == pytest.approx(1e-2 * 0.5**5 * decay)
    assert check(optimizer)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == set(before)  # every tensor got a gradient and an update
    by_group = {g["depth"]: g for g in optimizer.param_groups if g["kind"] == "dense"}
    assert sorted(by_group) == [1, 2, 3, 4]  # the MLP's Conv1D layers are in dense groups
    assert all(
        "mlp.c_fc.weight" in n or "mlp.c_proj" in n for g in by_group.values() for n in g["names"]
    )
    if make is not torch.optim.AdamW:
        assert all(
            "trust_ratio" in optimizer.state[p] for g in optimizer.param_groups for p in g["params"]
        )


def test_describe_by_layer_prints_one_row_per_block():
    model = hf_models.gpt2(HF)
    frame = describe(param_groups(model, 1e-3, Discriminative(2.6), GPT2_IDS), by="layer")
    assert frame["layer"].tolist() == [
        "transformer.wpe",
        *(f"transformer.h.{k}" for k in range(4)),
        "transformer.ln_f",
        "lm_head",
    ]
    assert frame["unit"].tolist() == ["input", *["block"] * 4, "layer", "layer"]
    assert frame["tensors"].tolist() == [1, 12, 12, 12, 12, 2, 1]
    assert frame["lr"].tolist() == pytest.approx(
        [1e-3 * 2.6**-5, *(1e-3 * 2.6 ** -(4 - k) for k in range(4)), 1e-3 / 2.6, 1e-3]
    )
    assert frame["numel"].sum() == sum(p.numel() for p in model.parameters())
