"""The offline preference trainer: every loss of ``diffalign.losses`` on every model family.

One trainer serves Diffusion-DPO, MaPO, DSPO, SmPO, KTO, DCPO, TDPO, RankDPO, DenseDPO, Flow-DPO
and SFT. The loss's :class:`~diffalign.losses.LossSpec` says which forward passes it needs
(``inputs`` layout, reference or not, how the halves are conditioned); this module computes
exactly those per-sample errors with the model adapter and hands them to the loss by argument name.
So a new algorithm is a loss function plus a registry entry and a recipe.

Per step and pair (the unified step of the research notes, §1.1): one noise tensor and one
timestep per pair shared by winner and loser; the policy forward on [winners; losers] with grad;
the reference forward (adapters disabled, or the frozen copy) without grad; per-sample errors in
fp32, mean over every non-batch element.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from diffalign.data import DataConfig, build_dataset
from diffalign.config import choice
from diffalign.losses import LOSSES, get_loss
from diffalign.pipelines import PromptEmbeds
from diffalign.train.config import TrainConfig
from diffalign.train.encoding import collate_encoded, conditioning, encode_batch, split_encoded
from diffalign.train.latent_cache import LatentCache, cache_key, default_cache_root, model_fingerprint
from diffalign.train.trainer import Trainer

#: data kind each loss input layout needs.
DATA_KIND = {
    "pair": "pairs",
    "pair_winner_elements": "pairs",
    "winner": "pairs",
    "single": "unpaired",
    "list": "ranked",
    "pair_segments": "video_pairs",
}


@dataclass
class CacheConfig:
    #: encode latents + text once to disk (only when preprocessing is deterministic).
    enabled: bool = True
    #: cache root; default $DIFFALIGN_CACHE or ~/.cache/diffalign/encoded.
    dir: Optional[str] = None
    shard_size: int = 256
    encode_batch_size: int = 8


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
    proportion_empty_prompts: float = 0.0


class OfflinePreferenceTrainer(Trainer):
    config_class = OfflineConfig

    def __init__(self, config: OfflineConfig, adapter=None):
        self.spec = get_loss(config.method)
        unknown = set(config.loss) - set(self.spec.parameters)
        if unknown:
            raise ValueError(
                f"loss.{sorted(unknown)[0]}: not an argument of {config.method} "
                f"(arguments: {', '.join(self.spec.parameters)})"
            )
        if not self.spec.needs_reference and self.spec.inputs not in ("pair", "winner"):
            raise ValueError(f"method {config.method} is not an offline method")
        super().__init__(config, adapter)

    # ------------------------------------------------------------------ data
    def setup_data(self) -> None:
        cfg: OfflineConfig = self.config  # type: ignore[assignment]
        wanted = DATA_KIND.get(self.spec.inputs)
        if wanted is None:
            raise ValueError(f"method {cfg.method} needs rollouts, not an offline data set (use the online trainer)")
        if cfg.data.kind != wanted and not (wanted == "unpaired" and cfg.data.unpaired_from_pairs):
            raise ValueError(f"method {cfg.method} trains on data.kind={wanted}, but data.kind={cfg.data.kind}")
        self.dataset = build_dataset(cfg.data, seed=cfg.seed)
        self._prompt_memo: dict[str, PromptEmbeds] = {}
        self.cache: LatentCache | None = None
        if cfg.cache.enabled and not self.dataset.preprocess.is_random:
            self.cache = self._build_cache()
        self._empty_cond = self.adapter.encode_prompt([""]) if cfg.proportion_empty_prompts > 0 else None

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

    def num_examples(self) -> int:
        return len(self.dataset)

    def get_batch(self, indices: list[int], micro_step: int) -> dict[str, torch.Tensor]:
        if self.cache is not None:
            encoded = self.cache.batch(indices)
        else:
            epoch = self.sampler.epoch_of(micro_step)
            batch = self.dataset.collate([self.dataset.get(i, epoch) for i in indices])
            gen = torch.Generator(device=self.device).manual_seed(self.config.seed * 65_537 + micro_step)
            encoded = encode_batch(self.adapter, batch, gen, self._prompt_memo)
        return {k: v.to(self.device) for k, v in encoded.items()}

    # ------------------------------------------------------------------ objective
    def _drop_captions(self, cond: PromptEmbeds, generator: torch.Generator) -> PromptEmbeds:
        p = self.config.proportion_empty_prompts  # type: ignore[attr-defined]
        if p <= 0:
            return cond
        drop = torch.rand(len(cond), generator=generator, device=self.device) < p
        empty = self._empty_cond.repeat(len(cond)).to(self.device)
        return PromptEmbeds({k: torch.where(drop.view(-1, *[1] * (v.ndim - 1)), empty[k].to(v.dtype), v)
                             for k, v in cond.tensors.items()})

    def _forward_errors(self, latents, noise, timesteps, cond, reference: bool, reduce_segments: int | None = None):
        adapter = self.adapter
        noisy = adapter.add_noise(latents, noise, timesteps)
        target = adapter.training_target(latents, noise, timesteps)
        if reference:
            with torch.no_grad(), adapter.reference():
                pred = adapter.forward(noisy, timesteps, cond)
        else:
            pred = adapter.forward(noisy, timesteps, cond)
        if reduce_segments:
            err = (pred.float() - target.float()) ** 2  # [B, F, C, H, W]: segments along frames
            errors = torch.stack([c.reshape(c.shape[0], -1).mean(1) for c in err.tensor_split(reduce_segments, dim=1)], 1)
        else:
            errors = adapter.per_sample_error(pred, target)
        return errors, pred, target

    def compute_loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator):
        spec, adapter = self.spec, self.adapter
        cond = self._drop_captions(conditioning(batch), generator)
        need_ref = spec.needs_reference
        inputs: dict[str, Any] = {}
        if spec.inputs in ("pair", "pair_winner_elements", "winner", "pair_segments"):
            first, second = ("v0", "v1") if spec.inputs == "pair_segments" else ("w", "l")
            x0, x1 = batch[first], batch[second]
            b = x0.shape[0]
            noise = adapter.sample_noise(x0, generator)
            t = adapter.sample_timesteps(b, generator, device=self.device)
            if spec.inputs == "winner":
                inputs["policy_w"] = self._forward_errors(x0, noise, t, cond, False)[0]
            else:
                if spec.conditioning == "shared":
                    cond2 = cond.repeat(2)
                else:  # dual_caption (DCPO) / caption_contrast (TDPO): each half with its own caption
                    if "cond_w.prompt_embeds" not in batch and not any(k.startswith("cond_w.") for k in batch):
                        raise ValueError(
                            f"method {self.config.method} conditions winner and loser on their own captions: set "  # type: ignore[attr-defined]
                            "data.columns.caption_w/caption_l (or caption_0/caption_1) to the data's caption columns"
                        )
                    cond2 = PromptEmbeds.cat([conditioning(batch, "cond_w"), conditioning(batch, "cond_l")])
                lat, noise2, t2 = torch.cat([x0, x1]), torch.cat([noise, noise]), torch.cat([t, t])
                segments = batch["segment_labels"].shape[1] if spec.inputs == "pair_segments" else None
                pol, pred, target = self._forward_errors(lat, noise2, t2, cond2, False, segments)
                names = ("policy_0", "policy_1", "ref_0", "ref_1") if segments else ("policy_w", "policy_l", "ref_w", "ref_l")
                inputs[names[0]], inputs[names[1]] = pol.chunk(2)
                if need_ref:
                    ref, ref_pred, _ = self._forward_errors(lat, noise2, t2, cond2, True, segments)
                    inputs[names[2]], inputs[names[3]] = ref.chunk(2)
                    inputs["ref_pred_w"] = ref_pred[:b]
                inputs["policy_pred_w"], inputs["target_w"] = pred[:b], target[:b]
                if "soft_labels" in batch:
                    inputs["soft_label"] = batch["soft_labels"]
                if segments:
                    inputs["segment_labels"] = batch["segment_labels"]
        elif spec.inputs == "single":
            x = batch["x"]
            noise = adapter.sample_noise(x, generator)
            t = adapter.sample_timesteps(x.shape[0], generator, device=self.device)
            inputs["policy"] = self._forward_errors(x, noise, t, cond, False)[0]
            inputs["ref"] = self._forward_errors(x, noise, t, cond, True)[0]
            inputs["desirable"] = batch["desirable"]
        elif spec.inputs == "list":
            x = batch["x"]  # [B, K, ...]: one timestep per list, own noise per image
            b, k = x.shape[:2]
            flat = x.flatten(0, 1)
            noise = adapter.sample_noise(flat, generator)
            t = adapter.sample_timesteps(b, generator, device=self.device).repeat_interleave(k)
            cond_k = cond.repeat_interleave(k)
            inputs["policy"] = self._forward_errors(flat, noise, t, cond_k, False)[0].view(b, k)
            inputs["ref"] = self._forward_errors(flat, noise, t, cond_k, True)[0].view(b, k)
            inputs["scores"] = batch["scores"]
        else:
            raise ValueError(f"the offline trainer cannot run a loss with inputs {spec.inputs!r}")
        if "num_train_timesteps" in spec.parameters and "num_train_timesteps" not in self.config.loss:  # type: ignore[attr-defined]
            inputs["num_train_timesteps"] = adapter.num_train_timesteps
        args = {name: inputs[name] for name in spec.parameters if name in inputs}
        return spec(**args, **self.config.loss)  # type: ignore[attr-defined]
