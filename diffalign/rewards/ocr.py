"""Text-rendering reward (Flow-GRPO's OCR reward): ``load("ocr")``.

The target is the text between the first pair of double quotes of the prompt (the whole prompt when
it has none), spaces removed and lower-cased; the recognised text of the image gets the same
treatment. Score ``1 - min(d, len(target)) / len(target)`` with ``d`` the Levenshtein distance, and
``d = 0`` when the target occurs inside the recognised text (so extra recognised characters cost
nothing), as ``flow_grpo/ocr.py``. A prompt whose target is empty scores 0.

Backend: ``rapidocr_onnxruntime`` (``pip install rapidocr-onnxruntime``; ``pip install
diffalign[ocr]``), which ships PaddleOCR's PP-OCRv4 detection and recognition models (the models
Flow-GRPO's PaddleOCR uses) as ONNX files inside the wheel, so it works offline; lines with a
recognition confidence of at least ``min_confidence`` are joined in reading order. Any
``recognizer(image_uint8_hwc) -> str`` can be given instead (``recognizer=``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from diffalign.rewards.base import Reward


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each 1)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def target_text(prompt: str) -> str:
    """The text a prompt asks to render: inside its first pair of double quotes, else the prompt."""
    parts = prompt.split('"')
    return parts[1] if len(parts) >= 3 else prompt


def ocr_score(recognised: str, prompt: str) -> float:
    """Flow-GRPO's OCR reward of one image (see the module docstring)."""
    target = target_text(prompt).replace(" ", "").lower()
    text = recognised.replace(" ", "").lower()
    if not target:
        return 0.0
    distance = 0 if target in text else min(levenshtein(text, target), len(target))
    return 1.0 - distance / len(target)


def rapidocr_recognizer(min_confidence: float = 0.0) -> Callable[[np.ndarray], str]:
    """``image [H, W, 3] uint8 RGB -> text`` with rapidocr_onnxruntime's bundled PP-OCRv4 models."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        raise ImportError("the ocr reward needs rapidocr_onnxruntime (pip install rapidocr-onnxruntime, "
                          "or pip install 'diffalign[ocr]'), or a recognizer= function") from None
    engine = RapidOCR()

    def recognise(image: np.ndarray) -> str:
        result, _ = engine(np.ascontiguousarray(image[..., ::-1]))  # the engine reads OpenCV's BGR order
        return "".join(text for _, text, confidence in (result or []) if float(confidence) >= min_confidence)

    return recognise


class OCRReward(Reward):
    """Flow-GRPO's text-rendering reward in [0, 1] (see the module docstring)."""

    modality = "image"
    differentiable = False
    requires_prompt = True
    native_range = (0.0, 1.0)

    def __init__(self, recognizer: Callable[[np.ndarray], str] | None = None, min_confidence: float = 0.0):
        super().__init__()
        self.recognizer = recognizer or rapidocr_recognizer(min_confidence)

    def score(self, samples: torch.Tensor, prompts: list[str], metadata: list | None) -> torch.Tensor:
        pixels = (samples.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return torch.tensor([ocr_score(self.recognizer(image), p) for image, p in zip(pixels, prompts)], dtype=torch.float32)


__all__ = ["OCRReward", "levenshtein", "ocr_score", "rapidocr_recognizer", "target_text"]
