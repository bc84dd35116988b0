"""Helpers shared by the reward tests."""
from __future__ import annotations


def pil_clip_processor_class():
    """transformers' PIL-based CLIP image processor (``CLIPImageProcessorPil`` on 5.x, the "slow"
    ``CLIPImageProcessor`` on 4.x): the reference for Hugging Face CLIP preprocessing."""
    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor as CLIPImageProcessorPil
    return CLIPImageProcessorPil
