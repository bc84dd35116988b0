"""ImageReward v1.0 (THUDM): BLIP ViT-L + cross-attending BERT + rating MLP; scores are ~N(0, 1).

Files (hub repo ``THUDM/ImageReward``): ``ImageReward.pt`` (a ``torch.save`` of the model's state dict,
read here with ``weights_only=True``; a converted ``.safetensors`` works too) and ``med_config.json``
(the BERT config of the text encoder). ``path`` is the checkpoint or a folder holding both files;
``med_config`` overrides where the config comes from (default: next to the checkpoint, else the hub).

Tokenizer: ``bert-base-uncased``'s WordPiece (``tokenizer``: a folder with ``vocab.txt`` or a hub id),
plus ``[DEC]`` as BOS and ``[ENC]`` as an additional special token (ids 30522 and 30523, hence the
30,524-entry vocabulary); prompts are padded / truncated to 35 tokens. The ids go in unchanged
(ImageReward does not swap in ``[ENC]``).

Preprocessing: torchvision ``Resize(224, bicubic)`` + ``CenterCrop(224)`` on the PIL image, OpenAI
mean / std; reproduced in torch so the reward is differentiable (ReFL backpropagates through it).
The network layout is documented in :mod:`diffalign.rewards.blip`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.blip import UNUSED_KEYS, VIT_LARGE, ImageRewardModel
from diffalign.rewards.checkpoints import download_hint, hub_offline, load_exact, read_state_dict, resolve_file
from diffalign.utils.dtypes import torch_dtype
from diffalign.rewards.preprocess import ImagePreprocess

HUB_REPO = "THUDM/ImageReward"
CHECKPOINT = "ImageReward.pt"
MED_CONFIG = "med_config.json"
DEFAULT_TOKENIZER = "bert-base-uncased"
MAX_TOKENS = 35


def load_blip_tokenizer(tokenizer: str = DEFAULT_TOKENIZER):
    """``BertTokenizer`` + ``[DEC]`` (BOS) + ``[ENC]`` (additional special token), as BLIP's ``init_tokenizer``."""
    from transformers import BertTokenizer

    source = os.path.expanduser(str(tokenizer))
    try:
        tok = BertTokenizer.from_pretrained(source, local_files_only=os.path.isdir(source) or hub_offline())
    except OSError as e:
        raise FileNotFoundError(f"imagereward: could not load the BERT tokenizer {source!r}: {e}. {download_hint(source)}") from e
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e


class ImageReward(Reward):
    differentiable = True
    native_range = (-3.0, 3.0)

    def __init__(
        self,
        path: str | None = None,
        med_config: str | None = None,
        tokenizer: str = DEFAULT_TOKENIZER,
        vision_config: Mapping[str, Any] | None = None,
        dtype=None,
    ):
        super().__init__()
        checkpoint = resolve_file(path, CHECKPOINT, HUB_REPO, "imagereward")
        if med_config is None and path is not None:
            med_config = os.path.dirname(checkpoint)
        med_file = resolve_file(med_config, MED_CONFIG, HUB_REPO, "imagereward")
        vision = {**VIT_LARGE, **dict(vision_config or {})}
        self.model = ImageRewardModel(_read_json(med_file), vision, source=med_file)
        load_exact(self.model, read_state_dict(checkpoint), checkpoint, ignore_prefixes=UNUSED_KEYS)
        self.model.to(torch_dtype(dtype) or torch.float32)
        self.tokenizer = load_blip_tokenizer(tokenizer)
        vocab = self.model.blip.text_encoder.config.vocab_size
        if len(self.tokenizer) > vocab:
            raise ValueError(
                f"imagereward: the tokenizer has {len(self.tokenizer)} tokens with [DEC]/[ENC] but {med_file} "
                f"declares vocab_size={vocab}"
            )
        self.preprocess = ImagePreprocess(size=vision["image_size"], crop_rounding="round")
        self.freeze()

    def tokenize(self, prompts: list[str]):
        return self.tokenizer(prompts, padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt")

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        weight = self.model.blip.visual_encoder.cls_token
        pixels = self.preprocess(samples.to(weight.device)).to(weight.dtype)
        tokens = self.tokenize(prompts).to(weight.device)
        return self.model(pixels, tokens.input_ids, tokens.attention_mask)
