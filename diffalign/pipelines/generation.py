"""Loading ``PIPE[+LORA]`` and seeded generation, shared by every evaluation job and ``diffalign sample``.

Seeding follows GenEval's generation script, which re-seeds before every prompt: image ``k`` of
every prompt starts from the noise of ``seed + k`` (a CPU generator per image), whatever the batch
size. Two pipelines evaluated with the same seed therefore start from the same noise for the same
prompt and image index.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from PIL import Image

from diffalign.pipelines.sampling_file import SAMPLING_FILE, read_sampling_file  # noqa: F401 (re-exported)
"""A pipeline folder may ship the sampling settings it was tuned for (the shapes pipelines do)."""


@dataclass(frozen=True)
class PipelineSpec:
    """A diffusers pipeline (local folder, hub id, or ``shapes-sd`` / ``shapes-sd3``) and an optional
    LoRA (a folder or ``.safetensors`` file that ``pipe.load_lora_weights`` reads). ``revision``
    pins a hub id's download (branch, tag or commit), as ``from_pretrained(revision=...)``."""

    pipeline: str
    lora: str | None = None
    revision: str | None = None

    @classmethod
    def parse(cls, text: str, lora: str | None = None, revision: str | None = None) -> "PipelineSpec":
        """``"PIPE"``, ``"PIPE+LORA"`` (split at the last ``+``) or either with ``@REVISION`` after
        ``PIPE`` (``org/model@v1.0+lora.safetensors``); an explicit ``lora`` / ``revision`` wins."""
        pipeline, plus, tail = text.rpartition("+")
        if not (plus and pipeline and tail and lora is None):
            pipeline, tail = text, lora
        if "@" in pipeline and not os.path.exists(pipeline):
            pipeline, _, pinned = pipeline.rpartition("@")
            revision = revision or pinned
        return cls(pipeline, tail, revision)

    @property
    def label(self) -> str:
        pipeline = self.pipeline if self.revision is None else f"{self.pipeline}@{self.revision}"
        return pipeline if self.lora is None else f"{pipeline}+{self.lora}"


def resolve_pipeline_path(name: str) -> str:
    """``shapes-sd`` / ``shapes-sd3`` -> the embedded folder; anything else unchanged."""
    from diffalign.pipelines.models import resolve_pretrained

    return resolve_pretrained(name)


def load_pipeline_spec(spec: PipelineSpec, *, device: str | None = None, dtype: str | None = None):
    """The diffusers pipeline of ``spec`` with its LoRA loaded, on ``device`` (default CUDA when
    available), progress bars off."""
    import torch
    from diffusers import DiffusionPipeline

    from diffalign.pipelines.loading import load_pipeline
    from diffalign.utils.dtypes import torch_dtype as as_torch_dtype

    torch_dtype = as_torch_dtype(dtype)
    path = resolve_pipeline_path(spec.pipeline)
    hub = {"revision": spec.revision} if spec.revision and not os.path.isdir(path) else {}
    pipe = load_pipeline(DiffusionPipeline, path, torch_dtype=torch_dtype, **hub)
    if spec.lora:
        if not os.path.exists(spec.lora):
            raise FileNotFoundError(f"LoRA {spec.lora} not found (expected a folder or a .safetensors file)")
        load_lora(pipe, spec.lora)
    pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_lora(pipe, path: str) -> None:
    """``pipe.load_lora_weights(path)``; a pipeline without a LoRA loader (``HunyuanVideo15Pipeline``)
    gets the file (a folder holding ``pytorch_lora_weights.safetensors``, or the file) through its
    transformer's ``load_lora_adapter``, which reads the alpha from the file's metadata."""
    if hasattr(pipe, "load_lora_weights"):
        pipe.load_lora_weights(path)
        return
    from diffalign.pipelines.base import LORA_WEIGHT_NAME

    folder, name = (os.path.dirname(path), os.path.basename(path)) if os.path.isfile(path) else (path, LORA_WEIGHT_NAME)
    pipe.transformer.load_lora_adapter(folder, weight_name=name, prefix="transformer")


def sampling_settings(pipeline: str | None, defaults: dict | None = None, **overrides: Any) -> dict:
    """Sampling keyword arguments: ``defaults`` (a protocol's), then the pipeline folder's
    :data:`SAMPLING_FILE` if any, then the ``overrides`` that are not None. Keys are the diffusers
    call's (``num_inference_steps``, ``guidance_scale``, ``height``, ``width``)."""
    settings = dict(defaults or {})
    if pipeline is not None:
        try:
            folder = resolve_pipeline_path(pipeline)
        except FileNotFoundError:  # an embedded pipeline that is not installed: loading will say so
            folder = None
        if folder is not None and os.path.isdir(folder):
            settings.update(read_sampling_file(folder))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def generate(
    pipe,
    prompts: Sequence[str],
    *,
    images_per_prompt: int | Sequence[int] = 1,
    seed: int = 0,
    batch_size: int = 8,
    on_batch: Callable[[list[tuple[int, int, Image.Image]]], None] | None = None,
    video: bool = False,
    **sampling: Any,
) -> list[list[Image.Image]]:
    """``images_per_prompt`` PIL images per prompt; image ``k`` of each prompt from ``seed + k``.

    ``images_per_prompt`` is one count for every prompt or a count per prompt (an evaluation that
    wants as many images per category when its categories hold different numbers of prompts).

    ``pipe`` is any diffusers-style callable (``pipe(prompt=[...], generator=[...], output_type="pil",
    **sampling).images``). ``on_batch`` gets ``(prompt index, image index, image)`` triples as they
    come (to save them without waiting for the whole run). ``video=True`` (a video pipeline, see
    :func:`is_video_pipeline`) yields uint8 arrays [T, H, W, 3] instead, from ``.frames``.
    """
    import torch

    counts = per_prompt_counts(images_per_prompt, len(prompts))
    jobs = [(i, k) for i, n in enumerate(counts) for k in range(n)]
    out: list[list[Image.Image | None]] = [[None] * n for n in counts]
    for start in range(0, len(jobs), max(1, batch_size)):
        chunk = jobs[start : start + batch_size]
        generators = [torch.Generator("cpu").manual_seed(seed + k) for _, k in chunk]
        if video:
            import numpy as np

            frames = pipe(prompt=[prompts[i] for i, _ in chunk], generator=generators, output_type="np", **sampling).frames
            images = [np.clip(np.round(np.asarray(f, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8) for f in frames]
        else:
            images = pipe(prompt=[prompts[i] for i, _ in chunk], generator=generators, output_type="pil", **sampling).images
        if len(images) != len(chunk):
            raise RuntimeError(f"the pipeline returned {len(images)} images for {len(chunk)} prompts")
        done = []
        for (i, k), image in zip(chunk, images):
            out[i][k] = image
            done.append((i, k, image))
        if on_batch is not None:
            on_batch(done)
    return out  # type: ignore[return-value]


def is_video_pipeline(pipe) -> bool:
    """True for a pipeline whose ``__call__`` takes ``num_frames`` (CogVideoX, Wan, ...)."""
    import inspect

    try:
        return "num_frames" in inspect.signature(pipe).parameters
    except (TypeError, ValueError):
        return False


def per_prompt_counts(images_per_prompt: int | Sequence[int], num_prompts: int) -> list[int]:
    """``images_per_prompt`` as one count per prompt (checked: every count >= 1)."""
    if isinstance(images_per_prompt, int):
        counts = [images_per_prompt] * num_prompts
    else:
        counts = [int(n) for n in images_per_prompt]
        if len(counts) != num_prompts:
            raise ValueError(f"images_per_prompt has {len(counts)} counts for {num_prompts} prompts")
    bad = [n for n in counts if n < 1]
    if bad:
        raise ValueError(f"images_per_prompt must be >= 1, got {bad[0]}")
    return counts
