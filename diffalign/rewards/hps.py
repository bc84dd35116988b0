"""HPSv2 and HPSv2.1: OpenCLIP ViT-H-14 fine-tuned on human preferences; score = cos(image, prompt).

Facts checked against tgxs002/HPSv2 (``hpsv2/img_score.py`` and its vendored open_clip):

- the model is open_clip's ``CLIP`` with the ``ViT-H-14`` config; the checkpoint is a ``torch.save`` of
  ``{"state_dict": ...}`` loaded strictly into it. The state-dict keys and the forward pass of
  open-clip-torch 3.x's ``CLIP`` are identical to the vendored copy's (``visual.*``, ``transformer.*``,
  ``token_embedding``, ``positional_embedding``, ``ln_final``, ``text_projection``, ``logit_scale``),
  so the model is built with open_clip directly, without downloading the LAION base weights
  (the checkpoint overwrites every parameter);
- files: hub repo ``xswu/HPSv2``, ``HPS_v2_compressed.pt`` (v2.0) and ``HPS_v2.1_compressed.pt`` (v2.1);
- preprocessing (``light_augmentation=True`` val transform): ToTensor, then ``ResizeMaxSize(224)`` on the
  float tensor (longest side to 224 bicubic, zero padding to a square, centred), then OpenAI mean / std;
- tokenizer: open_clip's ``ViT-H-14`` tokenizer (CLIP BPE, 77 tokens, zero padding);
- score: normalised image features . normalised text features (no logit scale); roughly 0.2-0.35;
  v2.0 and v2.1 scores are not comparable. Differentiable.

``preprocess`` picks the image preprocessing: ``"hpsv2"`` (default, the above) or ``"alignprop"``,
what AlignProp's ``hps_loss_fn`` feeds the model (mihirp1998/AlignProp ``main.py``, torchvision 0.15.2):
``torchvision.transforms.Resize(224)`` on the float tensor, i.e. shortest side to 224, bilinear, not
antialiased (a square image is not cropped), then OpenAI mean / std. The two give different reward
gradients; ``sd15_alignprop_hps`` uses ``alignprop``.

``revision`` pins the hub download (branch, tag or commit); ``commit`` is the one the file came from.
``path`` is the checkpoint file or a folder holding it (``.pt`` read with ``weights_only=True``, or a
converted ``.safetensors`` holding the bare state dict). ``model_config`` overrides the open_clip
config (tests build a tiny one).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.checkpoints import load_exact, read_state_dict, resolve_file
from diffalign.utils.hub import hub_commit
from diffalign.utils.dtypes import torch_dtype
from diffalign.rewards.preprocess import ImagePreprocess

HUB_REPO = "xswu/HPSv2"
FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
ARCHITECTURE = "ViT-H-14"
#: image preprocessing choices (``preprocess=``), given the model's image size.
PREPROCESSING = {
    "hpsv2": lambda size: ImagePreprocess(size=size, resize_mode="letterbox", clamp=False),
    "alignprop": lambda size: ImagePreprocess(size=size, resize_mode="shortest_crop", interpolation="bilinear",
                                              crop_rounding="round", clamp=False, antialias=False),
}


def build_open_clip(model_config: Mapping[str, Any] | None = None):
    """open_clip ``CLIP`` with random weights from ``model_config`` (default: the ViT-H-14 config)."""
    import open_clip

    config = dict(model_config) if model_config is not None else open_clip.get_model_config(ARCHITECTURE)
    if config is None:
        raise RuntimeError(f"open_clip has no {ARCHITECTURE} config")
    return open_clip.CLIP(**config)


class HPSv2(Reward):
    """Human Preference Score v2 (``version="v2.0"``); ``hpsv2.1`` is the same with ``version="v2.1"``."""

    differentiable = True
    native_range = (0.0, 1.0)
    default_version = "v2.0"

    def __init__(
        self,
        path: str | None = None,
        version: str | None = None,
        model_config: Mapping[str, Any] | None = None,
        dtype=None,
        preprocess: str = "hpsv2",
        revision: str | None = None,
    ):
        super().__init__()
        import open_clip

        if preprocess not in PREPROCESSING:
            raise ValueError(f"unknown HPS preprocess {preprocess!r}; expected one of {', '.join(PREPROCESSING)}")

        self.version = version or self.default_version
        if self.version not in FILES:
            raise ValueError(f"unknown HPS version {self.version!r}; expected one of {', '.join(FILES)}")
        file = resolve_file(path, FILES[self.version], HUB_REPO, f"hpsv{self.version[1:]}", revision=revision)
        #: the hub commit the checkpoint came from (None for a local file)
        self.commit = hub_commit(file)
        self.model = build_open_clip(model_config)
        load_exact(self.model, read_state_dict(file, key="state_dict"), file)
        self.model.to(torch_dtype(dtype) or torch.float32)
        self.tokenizer = open_clip.get_tokenizer(ARCHITECTURE, context_length=self.model.context_length)
        self.preprocess = PREPROCESSING[preprocess](int(self.model.visual.image_size[0]))
        self.freeze()

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        device, dtype = self.model.logit_scale.device, self.model.logit_scale.dtype
        pixels = self.preprocess(samples.to(device)).to(dtype)
        image = self.model.encode_image(pixels, normalize=True)
        text = self.model.encode_text(self.tokenizer(prompts).to(device), normalize=True)
        return (image * text).sum(-1).float()


class HPSv21(HPSv2):
    """Human Preference Score v2.1."""

    default_version = "v2.1"
