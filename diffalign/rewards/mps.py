"""MPS (Multi-dimensional Preference Score, Kwai-Kolors) "overall" model.

Facts checked against Kwai-Kolors/MPS (``trainer/models/clip_model.py``, ``cross_modeling.py``,
``eval_overall_mps_on_hpdv2.py``, README):

- backbone: a transformers ``CLIPModel`` (OpenCLIP ViT-H/14 sizes, ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``
  config and tokenizer) whose text features are the projection of *every* token of the final hidden
  state (text called without attention mask) and whose image features are the projection of every
  vision token *before* the post-layernorm;
- a condition string (the fixed list of aspects below) is encoded the same way; for each prompt token,
  its highest similarity to any condition token, divided by the maximum, must exceed ``mask_threshold``
  (0.01 in the model code, 0.3 in the HPDv2 evaluation script) or the token is hidden from the fusion;
- fusion (``cross_model``, 4 layers, 16 heads of 64, dim 1024): per layer a residual cross-attention of
  the image tokens to the prompt tokens (multi-query: one key / value head; bias-free LayerNorm; parallel
  SwiGLU feed-forward), then a residual parallel self-attention + SwiGLU block with rotary embeddings;
- score = ``logit_scale.exp() * cos(prompt EOS feature, fused image CLS token)``. Differentiable.

Weights: the only release is ``MPS_overall_checkpoint.pth``, a ``torch.save`` of the whole module that
needs the repository's classes to unpickle, so it is not read here. Convert it once where you trust
the file (with the MPS repository on ``sys.path``): ``m = torch.load(path, weights_only=False)`` then
``safetensors.torch.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, "mps_overall.safetensors")``
and pass that file as ``path``. Its keys are ``model.*`` (the CLIP model) and ``cross_model.*``.
The masking normalises per prompt (the original divides by the maximum over the whole batch, which
makes scores depend on batch composition; the two agree when one prompt is scored at a time).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from diffalign.rewards.base import Reward
from diffalign.rewards.checkpoints import download_hint, hub_offline, load_exact, read_state_dict
from diffalign.rewards.hf_clip import load_tokenizer, looks_like_path
from diffalign.utils.dtypes import torch_dtype
from diffalign.rewards.preprocess import ImagePreprocess

DEFAULT_CLIP_CONFIG = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
CONDITION = (
    "light, color, clarity, tone, style, ambiance, artistry, shape, face, hair, hands, limbs, structure, "
    "instance, texture, quantity, attributes, position, number, location, word, things."
)
FUSION = {"layers": 4, "heads": 16, "dim_head": 64, "ff_mult": 4}
UNUSED_KEYS = ("position_ids",)


class BiaslessLayerNorm(nn.Module):
    """LayerNorm with a learned scale and a fixed zero bias (kept as a buffer, as in the original)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("bias", torch.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias)


class SwiGLU(nn.Module):
    def forward(self, x):
        value, gate = x.chunk(2, dim=-1)
        return F.silu(gate) * value


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x, *args):
        return self.fn(x, *args) + x


class Rotary(nn.Module):
    def __init__(self, dim_head: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim_head, 2).float() / dim_head)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Rotary position embedding over the second-to-last axis of ``t`` [..., n, d]."""
        freqs = torch.outer(torch.arange(t.shape[-2], device=t.device, dtype=self.inv_freq.dtype), self.inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1).to(t.dtype)
        first, second = t.chunk(2, dim=-1)
        return t * angles.cos() + torch.cat((-second, first), dim=-1) * angles.sin()


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-query attention: q [b,h,i,d] (pre-scaled), one key / value head k, v [b,j,d] -> [b,i,h*d]."""
    sim = torch.einsum("bhid,bjd->bhij", q, k)
    if bias is not None:
        sim = sim + bias[:, None]
    sim = sim - sim.amax(dim=-1, keepdim=True).detach()
    out = torch.einsum("bhij,bjd->bhid", sim.softmax(dim=-1), v)
    return out.transpose(1, 2).flatten(2)


class CrossAttention(nn.Module):
    """Image tokens attend to prompt tokens (additive mask), plus a parallel SwiGLU feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.norm = BiaslessLayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * ff_mult * dim, bias=False), SwiGLU(), nn.Linear(ff_mult * dim, dim, bias=False))

    def forward(self, x, context, mask):
        x = self.norm(x)
        q = self.to_q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2) * self.scale
        k, v = self.to_kv(context).chunk(2, dim=-1)
        return self.to_out(_attend(q, k, v, mask)) + self.ff(x)


class ParallelBlock(nn.Module):
    """Self-attention (rotary, multi-query) and SwiGLU feed-forward computed in parallel from one projection."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.split = (heads * dim_head, dim_head, dim_head, 2 * ff_mult * dim)
        self.norm = BiaslessLayerNorm(dim)
        self.rotary_emb = Rotary(dim_head)
        self.fused_attn_ff_proj = nn.Linear(dim, sum(self.split), bias=False)
        self.attn_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.ff_out = nn.Sequential(SwiGLU(), nn.Linear(ff_mult * dim, dim, bias=False))

    def forward(self, x):
        q, k, v, ff = self.fused_attn_ff_proj(self.norm(x)).split(self.split, dim=-1)
        q = self.rotary_emb(q.unflatten(-1, (self.heads, -1)).transpose(1, 2))
        k = self.rotary_emb(k)
        return self.attn_out(_attend(q * self.scale, k, v)) + self.ff_out(ff)


class ConditionFusion(nn.Module):
    """MPS's ``cross_model``: ``layers.{i}.0`` cross-attention and ``layers.{i}.1`` parallel block, both residual."""

    def __init__(self, dim: int, layers: int = 4, heads: int = 16, dim_head: int = 64, ff_mult: int = 4):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([Residual(CrossAttention(dim, heads, dim_head, ff_mult)), Residual(ParallelBlock(dim, heads, dim_head, ff_mult))])
            for _ in range(layers)
        )

    def forward(self, image_tokens, text_tokens, mask):
        for cross, block in self.layers:
            image_tokens = block(cross(image_tokens, text_tokens, mask))
        return image_tokens


class MPSModel(nn.Module):
    """``model`` (CLIP) + ``cross_model`` (fusion), the original key layout."""

    def __init__(self, clip_config, fusion: Mapping[str, int] = FUSION):
        super().__init__()
        from transformers import CLIPModel

        self.model = CLIPModel(clip_config)
        self.cross_model = ConditionFusion(int(clip_config.projection_dim), **dict(fusion))

    def token_text_features(self, input_ids):
        out = self.model.text_model(input_ids=input_ids)
        return self.model.text_projection(out.last_hidden_state), self.model.text_projection(out.pooler_output)

    def token_image_features(self, pixels):
        return self.model.visual_projection(self.model.vision_model(pixel_values=pixels).last_hidden_state)

    def forward(self, pixels, text_ids, condition_ids, threshold: float = 0.01) -> torch.Tensor:
        text_tokens, text_eos = self.token_text_features(text_ids)
        condition_tokens, _ = self.token_text_features(condition_ids)
        relevance = torch.einsum("bid,bjd->bji", text_tokens, condition_tokens).amax(dim=1)  # [B, text tokens]
        relevance = relevance / relevance.amax(dim=-1, keepdim=True)
        image_tokens = self.token_image_features(pixels)
        bias = torch.zeros_like(relevance).masked_fill(relevance <= threshold, float("-inf"))
        bias = bias[:, None, :].expand(-1, image_tokens.shape[1], -1).to(image_tokens.dtype)
        fused = self.cross_model(image_tokens, text_tokens, bias)[:, 0]
        cos = F.cosine_similarity(fused.float(), text_eos.float(), dim=-1)
        return self.model.logit_scale.exp().float() * cos


def load_clip_config(source: str | Mapping[str, Any]):
    from transformers import CLIPConfig

    if isinstance(source, Mapping):
        return CLIPConfig(**dict(source))
    path = os.path.expanduser(str(source))
    if not os.path.isdir(path) and looks_like_path(path):
        raise FileNotFoundError(f"mps: the CLIP config folder {path} does not exist")
    try:
        return CLIPConfig.from_pretrained(path, local_files_only=os.path.isdir(path) or hub_offline())
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"mps: could not read the CLIP config {path!r}: {e}. {download_hint(str(source), 'config.json')}") from e


class MPS(Reward):
    differentiable = True
    native_range = (0.0, 100.0)

    def __init__(
        self,
        path: str | None = None,
        clip_config: str | Mapping[str, Any] = DEFAULT_CLIP_CONFIG,
        tokenizer: str | None = None,
        condition: str = CONDITION,
        mask_threshold: float = 0.01,
        fusion_config: Mapping[str, int] | None = None,
        dtype=None,
    ):
        super().__init__()
        if path is None:
            raise FileNotFoundError(
                "mps: pass path= to a converted MPS state dict (.safetensors or a weights-only .pt); the official "
                "MPS_overall_checkpoint.pth is a pickled module (see diffalign.rewards.mps for the one-time conversion)"
            )
        file = os.path.expanduser(str(path))
        if not os.path.isfile(file):
            raise FileNotFoundError(f"mps: {file} does not exist (expected a converted MPS state dict)")
        config = load_clip_config(clip_config)
        self.model = MPSModel(config, {**FUSION, **dict(fusion_config or {})})
        try:
            state = read_state_dict(file)
        except ValueError as e:
            raise ValueError(f"{e}\nFor MPS_overall_checkpoint.pth, see the conversion recipe in diffalign.rewards.mps.") from e
        load_exact(self.model, state, file, ignore_prefixes=UNUSED_KEYS)
        self.model.to(torch_dtype(dtype) or torch.float32)
        # the laion tokenizer pads with "!" (id 0); padded positions are prompt tokens the fusion can attend to
        self.tokenizer = load_tokenizer(tokenizer, "mps", pad_token="!")
        self.condition = condition
        self.threshold = float(mask_threshold)
        self.context_length = int(config.text_config.max_position_embeddings)
        self.preprocess = ImagePreprocess(size=int(config.vision_config.image_size))
        self.freeze()

    def _ids(self, texts: list[str], device) -> torch.Tensor:
        return self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.context_length, return_tensors="pt").input_ids.to(device)

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        scale = self.model.model.logit_scale
        pixels = self.preprocess(samples.to(scale.device)).to(scale.dtype)
        return self.model(pixels, self._ids(prompts, scale.device), self._ids([self.condition] * len(prompts), scale.device), self.threshold)
