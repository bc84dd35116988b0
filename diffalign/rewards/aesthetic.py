"""LAION aesthetic predictor v2 ("improved aesthetic predictor"): an MLP on CLIP ViT-L/14 image embeddings.

The image embedding (``openai/clip-vit-large-patch14``, OpenAI CLIP preprocessing: shortest side to 224
bicubic + centre crop, torchvision rounding) is L2-normalised and fed to the MLP
768 -> 1024 -> 128 -> 64 -> 16 -> 1 (:class:`~diffalign.rewards.heads.RatingMLP`). The head file
is a ``torch.save`` of its state dict with keys ``layers.{0,2,4,6,7}.{weight,bias}`` (checked on
``sac+logos+ava1-l14-linearMSE.pth``; it loads with ``weights_only=True``). ``path`` is that file or a
folder holding ``sac+logos+ava1-l14-linearMSE.pth``; without ``path`` the copy TRL uses is fetched from
the hub (``trl-lib/ddpo-aesthetic-predictor``, ``aesthetic-model.pth``). Scores are ratings of about
1-10. Differentiable; the prompt is ignored.
"""
from __future__ import annotations

import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.checkpoints import load_exact, read_state_dict, resolve_file
from diffalign.rewards.heads import RatingMLP
from diffalign.rewards.hf_clip import HFClipEmbedder
from diffalign.rewards.preprocess import ImagePreprocess

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
LOCAL_FILENAME = "sac+logos+ava1-l14-linearMSE.pth"
HUB_REPO, HUB_FILENAME = "trl-lib/ddpo-aesthetic-predictor", "aesthetic-model.pth"


class AestheticScore(Reward):
    differentiable = True
    requires_prompt = False
    native_range = (1.0, 10.0)

    def __init__(self, path: str | None = None, clip_model: str = DEFAULT_CLIP, processor: str | None = None, dtype=None,
                 revision: str | None = None, clip_revision: str | None = None):
        """``revision`` pins the hub download of the rating head, ``clip_revision`` that of ``clip_model``."""
        super().__init__()
        self.clip = HFClipEmbedder.load(clip_model, "aesthetic", processor, dtype=dtype, revision=clip_revision)
        if processor is None:  # the original runs OpenAI CLIP's torchvision transform
            self.clip.preprocess = ImagePreprocess(size=self.clip.preprocess.size, crop_rounding="round")
        if path is None:
            file = resolve_file(None, HUB_FILENAME, HUB_REPO, "aesthetic", revision=revision)
        else:
            file = resolve_file(path, LOCAL_FILENAME, HUB_REPO, "aesthetic")
        self.mlp = RatingMLP(int(self.clip.model.config.projection_dim))
        load_exact(self.mlp, read_state_dict(file), file)
        self.mlp.to(self.clip.device, self.clip.model.dtype)
        self.freeze()

    def score(self, samples, prompts, metadata) -> torch.Tensor:
        return self.mlp(self.clip.image_features(samples)).float()
