"""GenEval's colour classifier: zero-shot CLIP over the ten colour names, on object crops.

For each object GenEval checks: if the detector gave a mask, the object is pasted over a flat grey
(``#999``) canvas; the picture is then cropped to the object's box (PIL rounds the box) and
classified by OpenCLIP ``ViT-L-14`` (``pretrained="openai"``, with the QuickGELU activation those
weights were trained with, as GenEval's open-clip-torch 2.20 built it) and the model's own evaluation
transform. Per class, the text classifier is clip_benchmark's ``zero_shot_classifier``: for each
colour, the three templates of :data:`~diffalign.geneval.vocab.COLOR_TEMPLATES` are encoded,
L2-normalised, averaged and normalised again; the predicted colour is the argmax of the cosine
similarity with the normalised image embedding.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from PIL import Image

from diffalign.geneval.rules import Detection
from diffalign.geneval.vocab import COLOR_NAMES, COLOR_TEMPLATES

BACKGROUND = "#999"
"""GenEval's canvas colour for masked objects (``bgcolor``); ``"original"`` keeps the image."""


def object_crop(image: Image.Image, det: Detection, background: str = BACKGROUND, crop: bool = True) -> Image.Image:
    """The picture GenEval classifies for one object: masked onto ``background`` when ``det.mask``
    is set, then cropped to ``det.box`` (when ``crop``)."""
    image = image.convert("RGB")
    if det.mask is not None:
        mask = Image.fromarray((det.mask.astype("uint8") * 255))
        if mask.size != image.size:
            raise ValueError(f"mask of {det.label!r} is {mask.size[::-1]}, image is {image.size[::-1]} (H, W)")
        blank = image.copy() if background == "original" else Image.new("RGB", image.size, color=background)
        image = Image.composite(image, blank, mask)
    if crop:
        image = image.crop(tuple(det.box[:4]))
    return image


class ClipColorClassifier:
    """Names the colour of detected objects like GenEval (see the module docstring).

    By default builds OpenCLIP ``model`` with ``pretrained`` weights (a tag such as ``"openai"`` or a
    local checkpoint file). Tests and custom set-ups pass ``clip_model`` (an open_clip ``CLIP``),
    ``preprocess`` (PIL -> [3, H, W] tensor) and ``tokenizer`` (list of str -> token ids) instead.
    """

    def __init__(
        self,
        model: str = "ViT-L-14",
        pretrained: str = "openai",
        *,
        clip_model: torch.nn.Module | None = None,
        preprocess: Callable[[Image.Image], torch.Tensor] | None = None,
        tokenizer: Callable[[list[str]], torch.Tensor] | None = None,
        device: str | torch.device | None = None,
        background: str = BACKGROUND,
        crop: bool = True,
        batch_size: int = 16,
    ):
        import open_clip

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if clip_model is None:
            # OpenAI's weights use QuickGELU (open_clip 2.x's "openai" loader applied it; 3.x needs the flag)
            try:
                clip_model, _, preprocess_val = open_clip.create_model_and_transforms(
                    model, pretrained=pretrained, force_quick_gelu=pretrained == "openai")
            except RuntimeError as e:  # open_clip: an unknown tag, a missing file, a failed download
                raise FileNotFoundError(
                    f"GenEval colour classifier: could not load the OpenCLIP model {model} with weights {pretrained!r} ({e}); "
                    "give --clip-pretrained a local checkpoint file, or download the weights while online") from e
            preprocess = preprocess or preprocess_val
            self.name = f"clip:{model}/{pretrained}"
        else:
            if preprocess is None:
                size = clip_model.visual.image_size
                preprocess = open_clip.image_transform(size if isinstance(size, int) else size[0], is_train=False)
            self.name = f"clip:{model}/custom"
        self.model = clip_model.to(device).eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer or open_clip.get_tokenizer(model)
        self.background = background
        self.crop = crop
        self.batch_size = batch_size
        self._classifiers: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        """Where the CLIP model is (inputs follow it)."""
        return next(self.model.parameters()).device

    def text_classifier(self, classname: str) -> torch.Tensor:
        """[embed_dim, 10] matrix of normalised, template-averaged colour embeddings for ``classname``."""
        if classname not in self._classifiers or self._classifiers[classname].device != self.device:
            columns = []
            with torch.no_grad():
                for color in COLOR_NAMES:
                    texts = [t.format(c=color, cls=classname) for t in COLOR_TEMPLATES]
                    emb = self.model.encode_text(self.tokenizer(texts).to(self.device))
                    emb = torch.nn.functional.normalize(emb.float(), dim=-1).mean(dim=0)
                    columns.append(emb / emb.norm())
            self._classifiers[classname] = torch.stack(columns, dim=1)
        return self._classifiers[classname]

    def classify(self, image: Image.Image, objects: Sequence[Detection], classname: str) -> list[str]:
        """One colour name per object of class ``classname`` in ``image``."""
        if not objects:
            return []
        weights = self.text_classifier(classname)
        names = []
        crops = [object_crop(image, det, self.background, self.crop) for det in objects]
        with torch.no_grad():
            for start in range(0, len(crops), self.batch_size):
                pixels = torch.stack([self.preprocess(c) for c in crops[start : start + self.batch_size]])
                pixels = pixels.to(self.device, next(self.model.parameters()).dtype)
                feats = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
                names.extend(COLOR_NAMES[i] for i in (feats @ weights).argmax(dim=1).tolist())
        return names

    def for_image(self, image: Image.Image) -> Callable[[Sequence[Detection], str], list[str]]:
        """The ``classify_colors`` callback :func:`~diffalign.geneval.rules.judge` takes, for one image."""
        return lambda objects, classname: self.classify(image, objects, classname)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "background": self.background, "crop": self.crop}
