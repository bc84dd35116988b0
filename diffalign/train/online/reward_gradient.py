"""Reward-gradient trainers: back-propagate a differentiable reward through (part of) the sampler.

All three share :class:`RewardGradientTrainer`: per iteration ``gradient_accumulation_steps``
micro-batches of fresh rollouts from new initial noise, each decoded with the graph attached,
scored by the (differentiable) reward, shaped by :func:`diffalign.losses.reward_loss`, one backward;
then one optimizer step. They differ only in how the differentiable sample is produced
(:meth:`differentiable_samples`):

- :class:`AlignPropTrainer`: the full chain, steps ``i >= c`` keep the graph with a random cut-off
  ``c`` (randomised truncated back-prop);
- :class:`DRaFTTrainer`: the last ``K`` steps keep the graph (all for plain DRaFT); with
  ``lv_samples = n`` (DRaFT-LV) the final sample is re-noised ``n`` times to the last step's noise
  level and denoised in one differentiable step, the loss averaging the ``n`` estimates;
- :class:`ReFLTrainer`: the chain without graph up to a random late step, one differentiable
  denoiser call there, and the reward of its predicted clean sample.

Every graph-keeping denoiser call of a chain is wrapped in ``torch.utils.checkpoint``
(``checkpoint_steps``), so the activations of only one call are alive during the backward; what
grows with the number of back-propagated steps is one stored latent per step.
"""
from __future__ import annotations


import torch

from diffalign.losses import reward_loss
from diffalign.train.online.base import OnlineTrainer
from diffalign.train.online.config import TRUNCATIONS, AlignPropConfig, DRaFTConfig, ReFLConfig, RewardGradientConfig
from diffalign.pipelines.sampling import Guidance, guided_output, sample_chain
from diffalign.train.online.scoring import require_differentiable
from diffalign.utils.random import randn



class RewardGradientTrainer(OnlineTrainer):
    config_class = RewardGradientConfig
    #: name used in messages.
    method: str = "reward-gradient training"

    def __init__(self, config: RewardGradientConfig, adapter=None, reward=None):
        config.loss.validate()
        super().__init__(config, adapter, reward)

    def setup(self) -> None:
        super().setup()
        require_differentiable(self.reward, self.method)

    def updates_per_iteration(self) -> int:
        return 1

    def batches_per_iteration(self) -> int:
        return self.config.gradient_accumulation_steps

    def noise_levels(self) -> list[float | None]:
        return [self.config.sampling.noise_level] * self.config.sampling.num_inference_steps

    def differentiable_samples(self, step: int, micro: int, x: torch.Tensor, guidance: Guidance) -> tuple[torch.Tensor, int, dict]:
        """Decoded samples with the graph attached, how many samples each prompt produced (rows are
        ``[all prompts] x repeats``), and stats."""
        raise TypeError(f"{type(self).__name__} must implement differentiable_samples()")

    def step(self, step: int) -> dict[str, float]:
        """Step phase: ``gradient_accumulation_steps`` differentiable rollouts, one optimizer step."""
        cfg: RewardGradientConfig = self.config  # type: ignore[assignment]
        accum = cfg.gradient_accumulation_steps
        sums: dict[str, float] = {}
        shown = None
        for micro in range(accum):
            prompts, meta = self.prompt_batch(step, micro)
            guidance = self.guidance(prompts)
            x = self.initial_latents(len(prompts), self.sample_rngs(step, "noise", micro, self.sample_ids(len(prompts))))
            samples, repeats, extra = self.differentiable_samples(step, micro, x, guidance)
            rewards = self.reward(samples, prompts * repeats, meta * repeats if meta is not None else None)
            loss, stats = reward_loss(rewards, cfg.loss.kind, cfg.loss.target, cfg.loss.scale)
            self.backward(loss / accum, sync=micro == accum - 1)
            for k, v in {**stats, **extra}.items():
                sums[k] = sums.get(k, 0.0) + v / accum
            if shown is None:
                shown = (samples[: len(prompts)].detach(), prompts, rewards[: len(prompts)].detach())
        sums = self.mean_over_processes(sums)  # the global batch's means, as one process logs them
        sums.update(self.optimizer_step())
        if cfg.sample_grid_every and (step + 1) % cfg.sample_grid_every == 0:
            self.save_sample_grid(step + 1, *shown)
        sums["optimizer_steps"] = self.optimizer_steps_done
        return sums

    def chain_rngs(self, step: int, micro: int, stream: str = "noise", index: int | None = None) -> list[torch.Generator]:
        """Per-sample generators (keyed by global id) for the sampler noise of micro-batch ``micro``."""
        count = self.config.sampling.batch_size
        device = self.device if stream == "noise" else None
        return self.sample_rngs(step, stream, 1_000 + micro if index is None else index, self.sample_ids(count), device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.adapter.decode_latents(latents)


class AlignPropTrainer(RewardGradientTrainer):
    config_class = AlignPropConfig
    method = "AlignProp"

    def __init__(self, config: AlignPropConfig, adapter=None, reward=None):
        if config.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation={config.truncation!r}; expected one of {', '.join(TRUNCATIONS)}")
        if config.truncation == "fixed" and not 1 <= config.truncation_index < config.sampling.num_inference_steps:
            raise ValueError(
                f"truncation_index={config.truncation_index} must be in [1, {config.sampling.num_inference_steps}) "
                f"(sampling.num_inference_steps={config.sampling.num_inference_steps})"
            )
        if config.truncation == "uniform" and not (
            config.truncation_min < config.truncation_max and config.truncation_max > 1
            and config.truncation_min < config.sampling.num_inference_steps
        ):
            raise ValueError(
                f"truncation range [{config.truncation_min}, {config.truncation_max}) holds no cut-off in "
                f"[1, {config.sampling.num_inference_steps})"
            )
        super().__init__(config, adapter, reward)

    def cutoff(self, step: int, micro: int) -> int:
        """The first sampling-loop index whose denoiser output keeps the graph (``1 <= c < N``)."""
        cfg: AlignPropConfig = self.config  # type: ignore[assignment]
        n = cfg.sampling.num_inference_steps
        if cfg.truncation == "fixed":
            return cfg.truncation_index
        gen = self.rng(step, "truncation", micro, shared=True)  # one cut-off for the batch over all processes
        for _ in range(10_000):
            if cfg.truncation == "gaussian":
                c = int(cfg.truncation_mean + cfg.truncation_std * float(torch.randn((), generator=gen)))
            else:
                c = int(torch.randint(cfg.truncation_min, cfg.truncation_max, (), generator=gen))
            if 1 <= c < n:
                return c
        raise ValueError(
            f"the {cfg.truncation} truncation ({cfg.truncation_mean} +- {cfg.truncation_std}) never falls in [1, {n}): "
            "set truncation_mean/std for this number of sampling steps"
        )

    def differentiable_samples(self, step, micro, x, guidance):
        c = self.cutoff(step, micro)
        chain = sample_chain(self.adapter, self.scheduler, x, guidance, self.noise_levels(),
                             generator=self.chain_rngs(step, micro), grad_from=c, checkpoint=self.config.checkpoint_steps)
        return self.decode(chain.final), 1, {"backprop_steps": float(self.config.sampling.num_inference_steps - c)}


class DRaFTTrainer(RewardGradientTrainer):
    config_class = DRaFTConfig
    method = "DRaFT"

    def __init__(self, config: DRaFTConfig, adapter=None, reward=None):
        n = config.sampling.num_inference_steps
        if not 0 <= config.backprop_steps <= n:
            raise ValueError(f"backprop_steps={config.backprop_steps} must be in [0, {n}] (0 = the whole chain)")
        if config.lv_samples < 0 or (config.lv_samples and config.backprop_steps != 1):
            raise ValueError(f"DRaFT-LV (lv_samples={config.lv_samples} > 0) back-propagates one step: set backprop_steps=1")
        super().__init__(config, adapter, reward)

    def differentiable_samples(self, step, micro, x, guidance):
        cfg: DRaFTConfig = self.config  # type: ignore[assignment]
        n = cfg.sampling.num_inference_steps
        gen = self.chain_rngs(step, micro)
        if not cfg.lv_samples:
            k = cfg.backprop_steps or n
            chain = sample_chain(self.adapter, self.scheduler, x, guidance, self.noise_levels(), generator=gen,
                                 grad_from=n - k, checkpoint=cfg.checkpoint_steps)
            return self.decode(chain.final), 1, {"backprop_steps": float(k)}
        with torch.no_grad():
            x0 = sample_chain(self.adapter, self.scheduler, x, guidance, self.noise_levels(), generator=gen).final
        t = self.scheduler.timesteps[-1]
        t_batch = torch.as_tensor(t, device=x0.device).expand(x0.shape[0])
        lv_gen = self.chain_rngs(step, micro, "lv", micro)
        decoded = []
        for _ in range(cfg.lv_samples):
            noise = randn(x0.shape, lv_gen).to(device=x0.device, dtype=x0.dtype)
            noisy = self.adapter.add_noise(x0, noise, t_batch)
            out = guided_output(self.adapter, self.scheduler, noisy, t, guidance)
            decoded.append(self.decode(self.adapter.predict_original(out, t_batch, noisy)))
        return torch.cat(decoded), cfg.lv_samples, {"backprop_steps": 1.0}


class ReFLTrainer(RewardGradientTrainer):
    config_class = ReFLConfig
    method = "ReFL"

    def __init__(self, config: ReFLConfig, adapter=None, reward=None):
        n = config.sampling.num_inference_steps
        if not 0 <= config.step_min <= config.step_max < n:
            raise ValueError(
                f"ReFL's step range [{config.step_min}, {config.step_max}] must lie in [0, {n - 1}] "
                f"(sampling.num_inference_steps={n})"
            )
        super().__init__(config, adapter, reward)

    def differentiable_samples(self, step, micro, x, guidance):
        cfg: ReFLConfig = self.config  # type: ignore[assignment]
        i = int(torch.randint(cfg.step_min, cfg.step_max + 1, (), generator=self.rng(step, "truncation", micro, shared=True)))
        with torch.no_grad():
            x_i = sample_chain(self.adapter, self.scheduler, x, guidance, self.noise_levels(),
                               generator=self.chain_rngs(step, micro), stop_at=i).final
        t = self.scheduler.timesteps[i]
        out = guided_output(self.adapter, self.scheduler, x_i, t, guidance)
        t_batch = torch.as_tensor(t, device=x_i.device).expand(x_i.shape[0])
        return self.decode(self.adapter.predict_original(out, t_batch, x_i)), 1, {"refl_step": float(i)}


__all__ = ["AlignPropTrainer", "DRaFTTrainer", "ReFLTrainer", "RewardGradientTrainer", "TRUNCATIONS"]
