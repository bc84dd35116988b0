"""ImageReward's network rebuilt from timm and transformers building blocks, in the original key layout.

The ``image-reward`` package's BLIP code (``ImageReward/models/BLIP``) imports helpers that
transformers 5 removed, so the same graph is assembled here from maintained modules. Layout verified
against THUDM/ImageReward (``ImageReward.py``, ``models/BLIP/{blip,blip_pretrain,vit,med}.py``) and the
training code that wrote the checkpoint (``torch.save(model.state_dict())``):

- ``blip.visual_encoder``: BLIP's ViT, a copy of timm's ViT (``cls_token``, ``pos_embed``,
  ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``;
  LayerNorm eps 1e-6, qkv bias, GELU, pre-norm blocks, final norm, all tokens returned). ImageReward
  uses ``vit='large'``: patch 16, width 1024, depth 24, 16 heads, 224 px. Built with timm's
  ``VisionTransformer`` (``num_classes=0``), whose parameter names and forward are the same.
- ``blip.text_encoder``: BLIP's ``med.BertModel`` without pooler: BERT embeddings *without token-type
  embeddings* (``embeddings.{word_embeddings, position_embeddings, LayerNorm}``) and layers with
  ``attention``, ``crossattention`` (keys / values from the vision width), ``intermediate``,
  ``output``. transformers' ``BlipTextModel`` is a port of that file with the same names; built with
  ``is_decoder=True`` in the config (which creates the cross-attention) and called with
  ``is_decoder=False`` (bidirectional self-attention, as ImageReward calls it).
- ``mlp.layers``: the rating MLP (:class:`~diffalign.rewards.heads.RatingMLP` on 768 features).
- not used for scoring and ignored when loading: ``blip.vision_proj``, ``blip.text_proj`` and the
  ``position_ids`` buffer.

Score: ViT tokens -> text encoder (prompt ids, cross-attending to all image tokens) -> hidden state of
the first ([CLS]) token -> MLP -> ``(r - 0.16717362830052426) / 1.0333394966054072``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from diffalign.rewards.heads import RatingMLP

REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072

VIT_LARGE: dict[str, int] = {"image_size": 224, "patch_size": 16, "width": 1024, "depth": 24, "heads": 16}
"""BLIP ``create_vit('large', 224)``."""

UNUSED_KEYS = ("blip.vision_proj.", "blip.text_proj.", "position_ids")
"""Checkpoint entries of the original model that scoring does not use."""

_MED_TO_BLIP_TEXT = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "max_position_embeddings": "max_position_embeddings",
    "hidden_act": "hidden_act",
    "layer_norm_eps": "layer_norm_eps",
    "pad_token_id": "pad_token_id",
}


def text_config_from_med(med: Mapping[str, Any], vision_width: int, source: str = "med_config"):
    """BLIP ``med_config.json`` (a BERT config + ``add_cross_attention``) -> ``BlipTextConfig``.

    As in ``BLIP_Pretrain``, the cross-attention width is the vision encoder's, whatever
    ``encoder_width`` the file says."""
    from transformers import BlipTextConfig

    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size") if k not in med]
    if missing:
        raise ValueError(f"{source}: missing keys {missing}")
    if not med.get("add_cross_attention", False):
        raise ValueError(f"{source}: ImageReward's text encoder needs add_cross_attention=true")
    if med.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: only absolute position embeddings are supported")
    kwargs = {dst: med[src] for src, dst in _MED_TO_BLIP_TEXT.items() if src in med}
    return BlipTextConfig(
        **kwargs,
        encoder_hidden_size=vision_width,
        is_decoder=True,  # builds the cross-attention layers; forward() runs with is_decoder=False
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        bos_token_id=None,  # generation ids: unused by the encoder
        eos_token_id=None,
        sep_token_id=None,
    )


def build_vit(vision: Mapping[str, int]) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=vision["image_size"],
        patch_size=vision["patch_size"],
        embed_dim=vision["width"],
        depth=vision["depth"],
        num_heads=vision["heads"],
        mlp_ratio=4.0,
        qkv_bias=True,
        num_classes=0,
        global_pool="",
        weight_init="skip",
    )


class BlipScorer(nn.Module):
    """The parts of BLIP ImageReward scores with: ``visual_encoder`` and ``text_encoder``."""

    def __init__(self, vision: Mapping[str, int], text_config):
        super().__init__()
        from transformers import BlipTextModel

        self.visual_encoder = build_vit(vision)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)


class ImageRewardModel(nn.Module):
    """ImageReward v1.0: ``blip`` + ``mlp``; ``forward(pixels, input_ids, attention_mask) -> [B]`` (normalised)."""

    def __init__(self, med_config: Mapping[str, Any], vision: Mapping[str, int] = VIT_LARGE, source: str = "med_config"):
        super().__init__()
        self.vision = dict(vision)
        text_config = text_config_from_med(med_config, self.vision["width"], source)
        self.blip = BlipScorer(self.vision, text_config)
        self.mlp = RatingMLP(text_config.hidden_size)

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        image_embeds = self.blip.visual_encoder.forward_features(pixels)
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text = self.blip.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
            is_decoder=False,
            return_dict=True,
        )
        features = text.last_hidden_state[:, 0, :]
        rewards = self.mlp(features.to(self.mlp.layers[0].weight.dtype)).float()
        return (rewards - REWARD_MEAN) / REWARD_STD
