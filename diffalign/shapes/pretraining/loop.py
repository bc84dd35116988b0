"""The shared optimisation loop: AdamW with warm-up, EMA weights, periodic fp16 checkpoints."""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable

import torch
from diffusers.training_utils import EMAModel

from diffalign.shapes.pretraining.autoencoder import encode_latents
from diffalign.shapes.pretraining.components import denoiser, text_encoders


@dataclass
class LoopConfig:
    steps: int
    lr: float = 5e-4
    warmup_steps: int = 200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    train_text_encoder: bool = True
    checkpoint_every: int = 500
    log_every: int = 25
    extra_json: dict | None = None
    """{file name: JSON object} written into every saved pipeline folder (e.g. sampling settings)."""
    max_minutes: float | None = None
    seed: int = 0


def trainable_modules(pipe, train_text_encoder: bool) -> list[torch.nn.Module]:
    return [denoiser(pipe)] + (text_encoders(pipe) if train_text_encoder else [])


def save_fp16(
    pipe, folder: str, ema: EMAModel | None = None, modules: list[torch.nn.Module] | None = None,
    extra_json: dict | None = None,
) -> str:
    """Save a float16 copy of ``pipe`` (with the EMA weights copied into ``modules`` when given)
    as a plain diffusers folder (safetensors) plus the ``extra_json`` files; written to a
    temporary name then renamed."""
    snapshot = copy.deepcopy(pipe)
    if ema is not None:
        names = {id(m): name for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}
        targets = [getattr(snapshot, names[id(m)]) for m in modules]
        ema.copy_to([p for m in targets for p in m.parameters()])
    snapshot.to(torch.float16)
    tmp = folder.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    snapshot.save_pretrained(tmp, safe_serialization=True)
    _load_transformers_models_in_fp32(tmp)
    for name, content in (extra_json or {}).items():
        with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def _load_transformers_models_in_fp32(folder: str) -> None:
    """Mark the saved transformers models (text encoders) to load in float32 like the diffusers
    models: transformers >= 5 otherwise loads them in the checkpoint's float16 and the pipeline then
    feeds half-precision prompt embeddings to a float32 denoiser."""
    for name in sorted(os.listdir(folder)):
        config = os.path.join(folder, name, "config.json")
        if not os.path.isfile(config):
            continue
        with open(config, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("dtype") == "float16" or data.get("torch_dtype") == "float16":
            data["dtype"] = "float32"
            data.pop("torch_dtype", None)
            with open(config, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)


def train_denoiser(
    pipe,
    batches: Callable[[int], tuple[torch.Tensor, list[str]]],
    loss_fn: Callable[..., torch.Tensor],
    config: LoopConfig,
    checkpoint_dir: str | None,
    log: Callable[[dict], None] = print,
) -> tuple[EMAModel, list[torch.nn.Module]]:
    """Train the denoiser (and text encoders) of ``pipe`` with ``loss_fn(pipe, latents, captions,
    generator)`` on ``batches(step)``; the VAE stays frozen. Stops after ``config.steps`` or
    ``config.max_minutes``. Saves EMA fp16 pipelines to ``checkpoint_dir/step-XXXXXX``."""
    modules = trainable_modules(pipe, config.train_text_encoder)
    pipe.vae.eval().requires_grad_(False)
    for m in text_encoders(pipe):
        m.requires_grad_(config.train_text_encoder)
    params = [p for m in modules for p in m.parameters()]
    for m in modules:
        m.train().requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, config.warmup_steps)))
    ema = EMAModel(params, decay=config.ema_decay, use_ema_warmup=True, power=0.75)
    generator = torch.Generator().manual_seed(config.seed)
    start, running = time.time(), None
    step = 0
    for step in range(1, config.steps + 1):
        images, captions = batches(step)
        latents = images if getattr(batches, "yields_latents", False) else encode_latents(pipe.vae, images, generator)
        loss = loss_fn(pipe, latents, captions, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        warmup.step()
        ema.step(params)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        elapsed = time.time() - start
        out_of_time = config.max_minutes is not None and elapsed > 60 * config.max_minutes
        if step % config.log_every == 0 or step == config.steps or out_of_time:
            log({"stage": "denoiser", "step": step, "loss": loss.item(), "loss_ema": running,
                 "grad_norm": float(grad_norm), "lr": opt.param_groups[0]["lr"], "elapsed_s": round(elapsed, 1)})
        if checkpoint_dir and (step % config.checkpoint_every == 0 or step == config.steps or out_of_time):
            save_fp16(pipe, os.path.join(checkpoint_dir, f"step-{step:06d}"), ema, modules, config.extra_json)
        if out_of_time:
            break
    for m in modules:
        m.eval().requires_grad_(False)
    return ema, modules


class JsonlLog:
    """Callable logger: prints each record and appends it to a jsonl file."""

    def __init__(self, path: str | None):
        self.path = path
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def __call__(self, record: dict) -> None:
        print(json.dumps(record), flush=True)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
