"""A merged SD / SDXL pipeline as one original-layout (LDM / SGM) ``.safetensors`` checkpoint, the
file A1111, ComfyUI's checkpoint loader and diffusers' ``from_single_file`` read.

diffusers 0.42 has no diffusers -> original converter in the package (only the reverse, in
``diffusers.loaders.single_file_utils``, plus scripts outside the package hard-wired to SD 1.x's
block counts). This module inverts the package's own reverse conversion, driven by the same tables
(``DIFFUSERS_TO_LDM_MAPPING``, the resnet / attention renames of ``convert_ldm_unet_checkpoint``,
``convert_ldm_vae_checkpoint`` and ``convert_open_clip_checkpoint``) and by the model configs, so any
block layout works: read back by ``from_single_file``, the file gives the exact weights of the tiny
SD / SDXL pipelines (``tests/test_export.py``) and of shapes-sd (checked once by hand).

Keys: UNet ``model.diffusion_model.*``, VAE ``first_stage_model.*``; SD text encoder
``cond_stage_model.transformer.text_model.*``; SDXL ``conditioner.embedders.0.transformer.text_model.*``
(CLIP-L) and ``conditioner.embedders.1.model.*`` (OpenCLIP-G layout: fused ``in_proj`` q/k/v,
``text_projection`` transposed).
"""
from __future__ import annotations

import re
from typing import Any

import torch

#: diffusers -> LDM renames inside a resnet (the inverse of ``update_unet_resnet_ldm_to_diffusers``).
_UNET_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
#: diffusers -> LDM renames inside the VAE's mid attention (the inverse of ``update_vae_attentions_ldm_to_diffusers``).
_VAE_ATTENTION = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]


def _resnet(rest: str) -> str:
    for new, old in _UNET_RESNET:
        rest = rest.replace(new, old)
    return rest


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict -> LDM ``model.diffusion_model.*`` keys."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    maps = DIFFUSERS_TO_LDM_MAPPING["unet"]
    fixed = dict(maps["layers"])
    if config.get("addition_embed_type") == "text_time":
        fixed.update(maps["addition_embed_type"])
    if config.get("class_embed_type") in ("timestep", "projection"):
        fixed.update(maps["class_embed_type"])
    per_level = config["layers_per_block"] + 1
    up_has_attention = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        parts = key.split(".")
        if parts[0] == "down_blocks":
            b, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"input_blocks.{1 + b * per_level + j}.0.{_resnet(rest)}"
            elif kind == "attentions":
                new = f"input_blocks.{1 + b * per_level + j}.1.{rest}"
            else:  # downsamplers.0.conv.weight
                new = f"input_blocks.{(b + 1) * per_level}.0.op.{parts[-1]}"
        elif parts[0] == "mid_block":
            j, rest = int(parts[2]), ".".join(parts[3:])
            new = f"middle_block.{2 * j}.{_resnet(rest)}" if parts[1] == "resnets" else f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            b, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"output_blocks.{b * per_level + j}.0.{_resnet(rest)}"
            elif kind == "attentions":
                new = f"output_blocks.{b * per_level + j}.1.{rest}"
            else:  # upsamplers.0.conv.weight: after the level's last resnet (and attention)
                new = f"output_blocks.{b * per_level + per_level - 1}.{2 if up_has_attention[b] else 1}.conv.{parts[-1]}"
        else:
            raise ValueError(f"single-file export: no LDM name for UNet key {key!r}")
        out[new] = value
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict -> LDM ``first_stage_model.*`` keys (the mid
    attention's linear weights as 1x1 convolutions)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    levels = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        new = key
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.",
                     lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.block.", new)
        new = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.upsample.", new)
        new = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m.group(1)) + 1}.", new)
        if ".mid_block.attentions.0." in new:
            new = new.replace(".mid_block.attentions.0.", ".mid.attn_1.")
            for old, ldm in _VAE_ATTENTION:
                new = new.replace(".attn_1." + old, ".attn_1." + ldm)
            if value.ndim == 2:
                value = value[:, :, None, None]
        new = new.replace("conv_shortcut", "nin_shortcut")
        if new == key:
            raise ValueError(f"single-file export: no LDM name for VAE key {key!r}")
        out[new] = value
    return {"first_stage_model." + k: v for k, v in out.items()}


def clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model -> ``prefix + text_model.*`` (the inverse of ``convert_ldm_clip_checkpoint``)."""
    return {prefix + (k if k.startswith("text_model.") else "text_model." + k): v
            for k, v in state.items() if not k.endswith("position_ids")}


def open_clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPTextModelWithProjection`` -> OpenCLIP keys under ``prefix`` (the inverse of
    ``convert_open_clip_checkpoint``: q/k/v fused into ``in_proj``, the projection transposed)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    maps = DIFFUSERS_TO_LDM_MAPPING["openclip"]
    renames = [(d, o) for d, o in maps["transformer"].items() if not d.startswith("transformer.")]
    out, fused = {}, {}
    for key, value in state.items():
        key = key if key.startswith(("text_model.", "text_projection")) else "text_model." + key
        if key.endswith("position_ids"):
            continue
        if key in maps["layers"]:
            ldm = maps["layers"][key]
            out[prefix + ldm] = value.T.contiguous() if ldm == "text_projection" else value
            continue
        match = re.match(r"(.*)\.self_attn\.([qkv])_proj\.(weight|bias)$", key)
        if match:
            fused.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
            continue
        new = key
        for d, o in renames:
            new = new.replace(d, o)
        out[prefix + "transformer." + new] = value
    for (layer, kind), qkv in fused.items():
        new = layer
        for d, o in renames:
            new = new.replace(d, o)
        out[f"{prefix}transformer.{new}.attn.in_proj_{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]])
    return out


def pipeline_to_ldm(pipeline: Any) -> dict[str, torch.Tensor]:
    """The whole checkpoint of an SD or SDXL pipeline (UNet, VAE, text encoder(s))."""
    unet, vae = pipeline.unet, pipeline.vae
    state = {**unet_to_ldm(unet.state_dict(), dict(unet.config)), **vae_to_ldm(vae.state_dict(), dict(vae.config))}
    if getattr(pipeline, "text_encoder_2", None) is not None:  # SDXL
        if pipeline.text_encoder is not None:
            state.update(clip_to_ldm(pipeline.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(pipeline.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        state.update(clip_to_ldm(pipeline.text_encoder.state_dict(), "cond_stage_model.transformer."))
    return {k: v.detach().contiguous() for k, v in state.items()}


def save_single_file(pipeline: Any, path: str) -> str:
    """Write :func:`pipeline_to_ldm` of an SD / SDXL pipeline to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    name = type(pipeline).__name__
    if not name.startswith(("StableDiffusionPipeline", "StableDiffusionXLPipeline")):
        raise ValueError(f"a single-file checkpoint is written for SD and SDXL pipelines only, not {name} "
                         "(use the merged pipeline folder)")
    save_file(pipeline_to_ldm(pipeline), path, metadata={"format": "pt", "written_by": "diffalign"})
    return path


__all__ = ["clip_to_ldm", "open_clip_to_ldm", "pipeline_to_ldm", "save_single_file", "unet_to_ldm", "vae_to_ldm"]
