"""The offline preference trainer: every loss of ``diffalign.losses`` on every model family.

One trainer serves Diffusion-DPO, MaPO, DSPO, SmPO, KTO, DCPO, TDPO, RankDPO, DenseDPO, Flow-DPO,
SFT and any loss registered with :func:`diffalign.losses.register_loss`. The loss's
:class:`~diffalign.losses.LossSpec` names its input layout (``inputs``), whether it needs the
reference network and how the halves are conditioned; the layout (``diffalign.losses.INPUT_LAYOUTS``,
built-ins in :mod:`diffalign.train.layouts`) says which data kind it reads and computes the
per-sample errors with the adapter's one training forward (``PipelineAdapter.training_errors``);
the trainer hands them to the loss by argument name. So a new algorithm is a loss function (plus,
for a new kind of example, an input layout) registered from any code, and a recipe.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch

from diffalign.data import DataConfig, build_dataset
from diffalign.config import bounded, choice
from diffalign.losses import INPUT_LAYOUTS, LOSSES, get_loss
from diffalign.pipelines import PromptEmbeds
from diffalign.train.config import TrainConfig
from diffalign.train.encoding import collate_encoded, conditioning, encode_batch, split_encoded
from diffalign.train.layouts import ExampleGenerators, draw_uniform
from diffalign.train.latent_cache import LatentCache, cache_key, default_cache_root, model_fingerprint
from diffalign.train.method_checks import check_method
from diffalign.train.trainer import Trainer


@dataclass
class CacheConfig:
    #: encode latents + text once to disk (only when preprocessing is deterministic).
    enabled: bool = True
    #: cache root; default $DIFFALIGN_CACHE or ~/.cache/diffalign/encoded.
    dir: Optional[str] = None
    shard_size: int = 256
    encode_batch_size: int = 8
    #: with a complete cache, free the VAE's and text encoders' weights for the run (they would sit
    #: idle: ~0.8 GB fp32 for SD1.5). Kept when validation sampling, a pipeline export or a merged
    #: export needs them, and for a model passed in from Python (``adapter=``).
    free_encoders: bool = True


@dataclass
class OfflineConfig(TrainConfig):
    """Config of :class:`OfflinePreferenceTrainer`."""

    #: a loss name from ``diffalign.losses`` (diffusion_dpo, mapo, smpo, dspo_sd15, kto, ...).
    method: str = choice("diffusion_dpo", lambda: LOSSES)
    #: keyword arguments of the loss (beta, kind, gamma, ...), overriding its defaults.
    loss: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    #: fraction of examples trained with the empty caption (official Diffusion-DPO: 0.2).
    proportion_empty_prompts: float = bounded(0.0, 0)

    #: loss arguments belong to the method they were given for (a later ``method=`` drops them).
    scoped_keys: ClassVar[dict[str, str]] = {"loss": "method"}


class ResumableIndexSampler:
    """Which example indices a process uses at each micro-step: a fresh seeded permutation per
    epoch, cut into global batches of ``batch_size x num_processes``, each process taking its slice.
    A pure function of the micro-step, so resuming needs no sampler state."""

    def __init__(self, num_examples: int, batch_size: int, num_processes: int = 1, process_index: int = 0, seed: int = 0):
        per_global = batch_size * num_processes
        if num_examples < per_global:
            raise ValueError(
                f"the dataset has {num_examples} examples, fewer than one global batch "
                f"(batch_size {batch_size} x {num_processes} processes)"
            )
        self.n, self.batch_size, self.world, self.rank, self.seed = num_examples, batch_size, num_processes, process_index, seed
        self.batches_per_epoch = num_examples // per_global

    def epoch_of(self, micro_step: int) -> int:
        return micro_step // self.batches_per_epoch

    def indices(self, micro_step: int) -> list[int]:
        epoch, pos = divmod(micro_step, self.batches_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        perm = torch.randperm(self.n, generator=gen)
        start = pos * self.batch_size * self.world + self.rank * self.batch_size
        return perm[start : start + self.batch_size].tolist()


class OfflinePreferenceTrainer(Trainer):
    """Fills in the :class:`~diffalign.train.trainer.Trainer` phases for offline preference data:
    set-up = the dataset (from ``config.data``, or ``dataset=`` given in Python) and its latent
    cache; step = ``gradient_accumulation_steps`` micro-batches, each ``compute_loss`` -> backward,
    one optimizer step through accelerate's accumulation.

    ``dataset`` may be a :class:`~diffalign.data.PreferenceDataset`, a ``datasets.Dataset``, a torch
    map-style dataset of dicts or a list of dicts with the columns of ``config.data.kind`` (the
    same columns as a parquet / jsonl file; images as PIL images, arrays, bytes or paths)."""

    config_class = OfflineConfig
    progress_keys = ("loss", "implicit_acc")

    def __init__(self, config: OfflineConfig, adapter=None, dataset=None):
        self.spec = get_loss(config.method)
        self.layout = INPUT_LAYOUTS.get(self.spec.inputs)
        self.data_config = check_method(config, self.spec, self.layout)  # before loading anything
        self._given_dataset = dataset
        self._owns_model = adapter is None
        super().__init__(config, adapter)

    def accelerator_accumulation_steps(self) -> int:
        return self.config.gradient_accumulation_steps

    def latent_positions(self) -> int | None:
        data = self.data_config
        try:
            shape = self.adapter.latent_shape(*data.size, data.num_frames)
        except (ValueError, NotImplementedError):
            return None
        return self.config.batch_size * math.prod(shape[1:])

    # ------------------------------------------------------------------ set-up phase
    def setup(self) -> None:
        cfg: OfflineConfig = self.config  # type: ignore[assignment]
        self.dataset = build_dataset(self.data_config, seed=cfg.seed, rows=self._given_dataset)
        self._prompt_memo: dict[str, PromptEmbeds] = {}
        self.cache: LatentCache | None = None
        if cfg.cache.enabled and not self.dataset.preprocess.is_random:
            self.cache = self._build_cache()
        self._empty_cond = self.adapter.encode_prompt([""]) if cfg.proportion_empty_prompts > 0 else None
        if self.cache is not None and cfg.cache.free_encoders and self._owns_model and not self._encoders_needed_later():
            self.adapter.drop_encoder_weights()
        acc = self.accelerator
        self.sampler = ResumableIndexSampler(len(self.dataset), cfg.batch_size, acc.num_processes, acc.process_index, cfg.seed)

    def _encoders_needed_later(self) -> bool:
        cfg = self.config
        validating = bool(cfg.validation.prompts) and cfg.validation.every_steps > 0
        return validating or not cfg.lora.enabled or cfg.save != "lora" or cfg.save_format == "merged"

    def _build_cache(self) -> LatentCache:
        cfg: OfflineConfig = self.config  # type: ignore[assignment]
        key = cache_key(
            model_fingerprint(self.adapter, cfg.model.pretrained, cfg.model.revision),
            self.dataset.fingerprint(), {"dtype": str(self.adapter.vae.dtype), "seed": cfg.seed},
        )
        folder = os.path.join(cfg.cache.dir or default_cache_root(), key)

        def encode_range(start: int, stop: int) -> dict[str, torch.Tensor]:
            parts = []
            for s in range(start, stop, cfg.cache.encode_batch_size):
                idx = list(range(s, min(stop, s + cfg.cache.encode_batch_size)))
                batch = self.dataset.collate([self.dataset.get(i) for i in idx])
                gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 65_537 + s)
                parts.extend(split_encoded(encode_batch(self.adapter, batch, gen, self._prompt_memo)))
            return collate_encoded(parts)

        acc = self.accelerator
        return LatentCache.build(
            folder, len(self.dataset), encode_range, shard_size=cfg.cache.shard_size,
            process_index=acc.process_index, num_processes=acc.num_processes, wait=acc.wait_for_everyone,
            progress=cfg.progress_bar,
        )

    def get_batch(self, indices: list[int], micro_step: int) -> dict[str, torch.Tensor]:
        if self.cache is not None:
            encoded = self.cache.batch(indices)
        else:
            epoch = self.sampler.epoch_of(micro_step)
            batch = self.dataset.collate([self.dataset.get(i, epoch) for i in indices])
            gen = torch.Generator(device=self.device).manual_seed(self.config.seed * 65_537 + micro_step)
            encoded = encode_batch(self.adapter, batch, gen, self._prompt_memo)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def generator(self, micro_step: int) -> torch.Generator:
        """The random stream of one micro-step on this process (noise, timesteps, dropout draws): one
        generator per example, keyed by ``(seed, micro-step, position in the global batch)``, so W
        processes with batch b draw exactly what one process with batch W x b draws."""
        base = (self.config.seed * 1_000_003 + micro_step) * 1_000_033
        first = self.accelerator.process_index * self.config.batch_size
        gen = ExampleGenerators(device=self.device)
        gen.manual_seed((base + 999_983) % (2**63))
        gen.rows = [torch.Generator(device=self.device).manual_seed((base + first + i) % (2**63))
                    for i in range(self.config.batch_size)]
        return gen

    # ------------------------------------------------------------------ step phase
    def step(self, index: int) -> dict[str, float]:
        """One optimizer step: ``gradient_accumulation_steps`` micro-batches through accelerate."""
        acc, accum = self.accelerator, self.config.gradient_accumulation_steps
        stats_sum: dict[str, float] = {}
        for micro in range(accum):
            k = index * accum + micro
            batch = self.get_batch(self.sampler.indices(k), k)
            with acc.accumulate(self.network):
                loss, stats = self.compute_loss(batch, self.generator(k))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at step {index} (micro-batch {micro}): {stats}")
                acc.backward(loss)
                stats_sum.update(self.clip_and_step())
            stats = {**stats, "loss": float(loss.detach())}
            for key, value in stats.items():
                stats_sum[key] = stats_sum.get(key, 0.0) + value / accum
        stats_sum = self.mean_over_processes(stats_sum)
        stats_sum["epoch"] = self.sampler.epoch_of((index + 1) * accum - 1)
        return stats_sum

    # ------------------------------------------------------------------ objective
    def _drop_captions(self, cond: PromptEmbeds, generator: torch.Generator) -> PromptEmbeds:
        p = self.config.proportion_empty_prompts  # type: ignore[attr-defined]
        if p <= 0:
            return cond
        drop = draw_uniform(len(cond), generator, self.device) < p
        empty = self._empty_cond.repeat(len(cond)).to(self.device)
        return PromptEmbeds({k: torch.where(drop.view(-1, *[1] * (v.ndim - 1)), empty[k].to(v.dtype), v)
                             for k, v in cond.tensors.items()})

    def compute_loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator):
        spec, adapter = self.spec, self.adapter
        cond = self._drop_captions(conditioning(batch), generator)
        inputs = dict(self.layout.errors(adapter, batch, cond, generator, spec))
        if "num_train_timesteps" in spec.parameters and "num_train_timesteps" not in self.config.loss:  # type: ignore[attr-defined]
            inputs["num_train_timesteps"] = adapter.num_train_timesteps
        args = {name: inputs[name] for name in spec.parameters if name in inputs}
        missing = [name for name in spec.required if name not in args and name not in self.config.loss]  # type: ignore[attr-defined]
        if missing:
            raise ValueError(
                f"loss {spec.name} takes {missing} that input layout {spec.inputs!r} does not give "
                f"(it gives: {', '.join(sorted(inputs))})"
            )
        return spec(**args, **self.config.loss)  # type: ignore[attr-defined]
