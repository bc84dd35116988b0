"""A transformers ``CLIPModel`` as a differentiable image / text embedder (CLIP score, PickScore, aesthetic).

- Model: ``CLIPModel.from_pretrained`` on a local folder or a hub id (cache only when
  ``HF_HUB_OFFLINE`` is set); a missing model raises with the download command.
- Preprocessing: :class:`~diffalign.rewards.preprocess.ImagePreprocess` built from the
  ``preprocessor_config.json`` of ``processor`` (default: the model itself); without one, OpenAI CLIP's
  (shortest side + centre crop at the model's image size, bicubic, OpenAI mean / std).
- Tokenizer: ``tokenizer`` (a folder or hub id, loaded with ``AutoTokenizer``), else the real CLIP BPE
  tokenizer built offline (:func:`diffalign.pipelines.tokenizers.clip_tokenizer`); every OpenAI and
  LAION CLIP checkpoint uses that same vocabulary. Prompts are truncated to the model's context length.
- transformers 4.x returns projected features from ``get_image_features`` / ``get_text_features`` as a
  tensor, 5.x as an output object with them in ``pooler_output``; both are handled.
"""
from __future__ import annotations

import json
import os

import torch
from torch import nn

from diffalign.rewards.checkpoints import download_hint, hub_offline
from diffalign.rewards.preprocess import ImagePreprocess
from diffalign.utils.dtypes import torch_dtype


def projected(output) -> torch.Tensor:
    """Projected embeddings from ``get_*_features`` under transformers 4.x (tensor) or 5.x (output object)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"unexpected CLIP features output {type(output).__name__} (no pooler_output)")
    return pooled


def looks_like_path(source: str) -> bool:
    """A filesystem path rather than an ``owner/name`` hub id."""
    return os.path.isabs(source) or source.startswith(".") or source.count("/") > 1 or os.sep != "/" and os.sep in source


def dtype_kwargs(dtype) -> dict:
    """``from_pretrained`` dtype keyword: ``dtype`` on transformers 5, ``torch_dtype`` before."""
    import transformers

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return {key: torch_dtype(dtype) or torch.float32}


def load_clip_model(name_or_path: str, what: str, dtype=None, revision: str | None = None):
    from transformers import CLIPModel

    source = os.path.expanduser(str(name_or_path))
    if os.path.isfile(source):
        raise ValueError(f"{what}: {source} is a file; expected a CLIP model folder (config.json + weights) or a hub id")
    local = os.path.isdir(source)
    if not local and looks_like_path(source):
        raise FileNotFoundError(f"{what}: the model folder {source} does not exist. {download_hint('<hub id>')}")
    try:
        return CLIPModel.from_pretrained(source, local_files_only=local or hub_offline(), **revision_kwargs(local, revision),
                                         **dtype_kwargs(dtype))
    except (OSError, ValueError) as e:
        if local:
            raise FileNotFoundError(
                f"{what}: {source} is not a CLIPModel folder (config.json + weights, as save_pretrained writes them): {e}. "
                f"{download_hint('<hub id>')}"
            ) from e
        raise FileNotFoundError(f"{what}: could not load a CLIPModel from the hub id {source!r}: {e}. {download_hint(source)}") from e


def revision_kwargs(local: bool, revision: str | None) -> dict:
    """``revision=`` for a hub download (a branch, tag or commit); a local folder has none."""
    return {"revision": revision} if revision and not local else {}


def load_preprocess(processor: str, default_size: int, explicit: bool, what: str, revision: str | None = None) -> ImagePreprocess:
    """Preprocessing from ``processor``'s ``preprocessor_config.json`` (see the module docstring)."""
    source = os.path.expanduser(str(processor))
    if os.path.isdir(source):
        if explicit and not os.path.isfile(os.path.join(source, "preprocessor_config.json")):
            raise FileNotFoundError(f"{what}: {source} has no preprocessor_config.json")
        return ImagePreprocess.from_hf_folder(source, default_size)
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(source, "preprocessor_config.json", local_files_only=hub_offline(),
                               **revision_kwargs(False, revision))
    except Exception as e:
        if explicit:
            raise FileNotFoundError(
                f"{what}: could not get preprocessor_config.json of {source!r}: {e}. {download_hint(source, 'preprocessor_config.json')}"
            ) from e
        return ImagePreprocess(size=default_size)
    with open(path, encoding="utf-8") as f:
        return ImagePreprocess.from_hf_config(json.load(f), default_size)


def load_tokenizer(tokenizer: str | None, what: str, pad_token: str = "<|endoftext|>", revision: str | None = None):
    """``tokenizer`` (folder or hub id) with ``AutoTokenizer``, else the built-in CLIP BPE tokenizer padding with
    ``pad_token`` (OpenAI checkpoints pad with ``<|endoftext|>``, LAION ones with ``!``)."""
    if tokenizer is None:
        from diffalign.pipelines.tokenizers import clip_tokenizer

        return clip_tokenizer(pad_token=pad_token)
    from transformers import AutoTokenizer

    source = os.path.expanduser(str(tokenizer))
    try:
        local = os.path.isdir(source)
        return AutoTokenizer.from_pretrained(source, local_files_only=local or hub_offline(), **revision_kwargs(local, revision))
    except OSError as e:
        raise FileNotFoundError(f"{what}: could not load the tokenizer {source!r}: {e}. {download_hint(source)}") from e


class HFClipEmbedder(nn.Module):
    """L2-normalised CLIP image and text embeddings, differentiable with respect to the pixels."""

    def __init__(self, model, preprocess: ImagePreprocess, tokenizer):
        super().__init__()
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.context_length = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def load(cls, model: str, what: str, processor: str | None = None, tokenizer: str | None = None, dtype=None,
             revision: str | None = None) -> "HFClipEmbedder":
        """``revision`` pins the hub download of ``model`` (and of its preprocessor config when
        ``processor`` is not given); separate ``processor`` / ``tokenizer`` ids are fetched at their default branch."""
        clip = load_clip_model(model, what, dtype, revision)
        size = int(clip.config.vision_config.image_size)
        preprocess = load_preprocess(processor or model, size, explicit=processor is not None, what=what,
                                     revision=None if processor else revision)
        if preprocess.size != size:
            raise ValueError(f"{what}: the preprocessor resizes to {preprocess.size} px but the model expects {size} px")
        return cls(clip, preprocess, load_tokenizer(tokenizer, what))

    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [0, 1] -> [B, D] unit vectors."""
        pixels = self.preprocess(images.to(self.device)).to(self.model.dtype)
        feats = projected(self.model.get_image_features(pixel_values=pixels))
        return feats / feats.norm(dim=-1, keepdim=True)

    def text_features(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.context_length, return_tensors="pt"
        ).to(self.device)
        feats = projected(self.model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask))
        return feats / feats.norm(dim=-1, keepdim=True)

    def cosine(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Per-pair cosine similarity [B] (image i with prompt i)."""
        return (self.image_features(images) * self.text_features(prompts)).sum(-1).float()
