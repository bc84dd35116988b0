"""Flow-GRPO (Liu et al., NeurIPS 2025) for rectified-flow families, with the Fast (SDE window) and
CPS variants.

- Rollouts: groups of ``group_size`` per prompt (:class:`KRepeatSampler`, groups spread over
  processes), the flow SDE (or CPS) at ``noise_level`` on every step, or only inside a random window
  of ``sde_window_size`` steps (Fast; the other steps are ODE steps and are neither stored nor
  trained); optionally the same initial noise for a whole group (``same_latent``).
- Advantages: :func:`group_advantages` over the gathered rewards (group mean; group or global std;
  with ``advantages.per_reward`` each component of a combined reward on its own, then weighted),
  ``zero_std_ratio`` logged; zero-advantage rollouts dropped (:func:`keep_nonzero`).
- Training: steps in order (no time shuffle), micro-batch = sampling batch, PPO-clip plus
  ``beta x KL`` to the same network with adapters disabled (the frozen copy for full fine-tuning):
  ``mean((mean_theta - mean_ref)^2) / (2 kl_scale^2)`` with Flow-GRPO's scale (the SDE's ``std_t``).
  Guards: adaptive KL (``loss.target_kl``), GRPO-Guard's RatioNorm (``loss.ratio_norm``) and its
  per-step gradient reweighting (``loss.step_reweight``: the step's policy loss times ``1 / |dt|``).
- EMA of the trained weights (decay ``min((1+k)/(10+k), ema_decay)`` every ``ema_update_interval``
  optimizer steps), used for evaluation and the saved outputs.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from diffalign.losses import AdaptiveKLController, ppo_loss, ratio_norm_log_ratio, step_reweight
from diffalign.train.online.advantages import group_advantages, keep_nonzero, per_reward_advantages, zero_std_ratio
from diffalign.train.online.config import FlowGRPOConfig
from diffalign.train.online.ema import ParameterEMA
from diffalign.train.online.policy import PolicyGradientTrainer
from diffalign.pipelines.sampling import guided_output
from diffalign.train.online.trajectories import Trajectories
from diffalign.samplers import flow_step_size, gaussian_kl

SDE_TYPES = ("sde", "cps")


class FlowGRPOTrainer(PolicyGradientTrainer):
    config_class = FlowGRPOConfig

    def __init__(self, config: FlowGRPOConfig, adapter=None, reward=None):
        if config.sde_type not in SDE_TYPES:
            raise ValueError(f"sde_type={config.sde_type!r}; expected one of {', '.join(SDE_TYPES)}")
        if config.sampling.num_batches % config.gradient_accumulation_steps:
            raise ValueError(
                f"sampling.num_batches={config.sampling.num_batches} (the training micro-batches) must be a multiple "
                f"of gradient_accumulation_steps={config.gradient_accumulation_steps}"
            )
        if config.sde_window_size:
            lo, hi = config.sde_window_range
            if not 0 <= lo <= hi - config.sde_window_size or hi > config.sampling.num_inference_steps:
                raise ValueError(
                    f"sde_window_range={list(config.sde_window_range)} cannot hold a window of {config.sde_window_size} "
                    f"steps inside the {config.sampling.num_inference_steps} sampling steps"
                )
        if config.loss.step_reweight and config.sde_type != "sde":
            raise ValueError("loss.step_reweight (GRPO-Guard's 1/|dt| weights) is defined for the flow SDE (sde_type: sde), "
                             f"not for sde_type={config.sde_type!r}")
        self.group_size = config.group_size
        super().__init__(config, adapter, reward)

    def updates_per_iteration(self) -> int:
        cfg = self.config
        return cfg.sampling.num_batches // cfg.gradient_accumulation_steps * cfg.num_inner_epochs

    def setup(self) -> None:
        cfg: FlowGRPOConfig = self.config  # type: ignore[assignment]
        if not hasattr(self.adapter, "sde_type"):
            raise ValueError(
                f"Flow-GRPO samples with the flow SDE and needs a rectified-flow family (sd3, flux, flux2, qwenimage, zimage, wan, hunyuanvideo15); the "
                f"{self.adapter.family} family samples with DDIM: use the ddpo trainer for it"
            )
        self.adapter.sde_type = cfg.sde_type
        self.adapter.cps_reference_log_prob = cfg.cps_reference_log_prob
        super().setup()
        self.ema = ParameterEMA(self.adapter.trainable_parameters(), cfg.ema_decay, cfg.ema_update_interval) if cfg.ema else None
        self.kl_control = (
            AdaptiveKLController(cfg.loss.beta, cfg.loss.target_kl, cfg.loss.kl_horizon, cfg.loss.kl_beta_min, cfg.loss.kl_beta_max)
            if cfg.loss.target_kl else None
        )
        self._kl_since_step: list[float] = []

    def keeps_means(self) -> bool:
        return self.config.loss.ratio_norm

    def kl_beta(self) -> float:
        """The KL coefficient now (adaptive when ``loss.target_kl`` is set)."""
        return self.kl_control.beta if self.kl_control is not None else self.config.loss.beta

    # ------------------------------------------------------------------ sampling
    def step_plan(self, step: int, batch: int):
        cfg: FlowGRPOConfig = self.config  # type: ignore[assignment]
        n, level = cfg.sampling.num_inference_steps, cfg.sampling.noise_level
        if not cfg.sde_window_size:
            return [level] * n, [True] * n
        lo, hi = cfg.sde_window_range
        gen = self.rng(step, "window", batch, shared=True)  # one window per sampling batch over all processes
        start = int(torch.randint(lo, hi - cfg.sde_window_size + 1, (1,), generator=gen))
        inside = [start <= i < start + cfg.sde_window_size for i in range(n)]
        return [level if w else 0.0 for w in inside], inside

    def rollout_prompts(self, step: int, batch: int):
        if not self.config.same_latent:
            return super().rollout_prompts(step, batch)
        prompts, meta = self.prompt_batch(step, batch)
        return prompts, meta, self.same_noise_latents(prompts, step)

    def num_trained_steps(self, stored_steps: int) -> int:
        return stored_steps if self.config.sde_window_size else super().num_trained_steps(stored_steps)

    # ------------------------------------------------------------------ advantages
    def compute_advantages(self, traj: Trajectories, step: int):
        cfg: FlowGRPOConfig = self.config  # type: ignore[assignment]
        prompts, rewards, order = self.gathered_rollouts(traj)
        if traj.reward_components is None:
            advantages = group_advantages(prompts, rewards, cfg.global_std, cfg.advantage_eps)
        else:  # advantages.per_reward: each component normalised within its groups, then weighted
            advantages = per_reward_advantages(prompts, self.gather(traj.reward_components)[order],
                                               list(self.reward_weights.values()), cfg.global_std, cfg.advantage_eps)
        traj.advantages = self.scatter_back(advantages, order).float().to(self.device)
        stats = {"zero_std_ratio": zero_std_ratio(prompts, rewards), "advantage_abs_mean": float(advantages.abs().mean())}
        if cfg.drop_zero_advantage:
            keep = keep_nonzero(traj.advantages.cpu(), cfg.sampling.num_batches, self.rng(step, "filter"))
            stats["kept_fraction"] = float(keep.float().mean())
            traj = traj.select(keep)
        return traj, stats

    # ------------------------------------------------------------------ training
    def micro_batches(self, traj: Trajectories, step: int, inner_epoch: int) -> list[Trajectories]:
        timed = traj.permute_steps(self.step_orders(len(traj), traj.num_steps, step, inner_epoch, False))
        return self.micro_batches_over_processes(timed, step, inner_epoch, len(timed) // self.config.sampling.num_batches)

    def unit_loss(self, mb: Trajectories, j: int):
        cfg: FlowGRPOConfig = self.config  # type: ignore[assignment]
        adapter, scheduler = self.adapter, self.scheduler
        x, x_next, t = mb.latents[:, j], mb.next_latents[:, j], mb.timesteps[:, j]
        guidance = self.train_guidance(mb)
        out = guided_output(adapter, scheduler, x, t, guidance, cfg.detach_uncond)
        _, log_prob = adapter.sampler_step(scheduler, out, t, x, noise_level=mb.noise_level, prev_sample=x_next)
        old_log_prob = mb.log_probs[:, j]
        stats_extra = {"abs_log_ratio_max": float((log_prob.detach() - old_log_prob).abs().max())}
        beta = self.kl_beta()
        moments = adapter.transition_moments(scheduler, out, t, x, noise_level=mb.noise_level) if (beta > 0 or cfg.loss.ratio_norm) else None
        if cfg.loss.ratio_norm:  # GRPO-Guard: clip the normalised ratio
            log_prob = old_log_prob + ratio_norm_log_ratio(log_prob, old_log_prob, moments.mean, mb.means[:, j], moments.std)
        loss, stats = ppo_loss(log_prob, old_log_prob, mb.advantages, cfg.loss.clip_range, cfg.loss.adv_clip_max)
        stats.update(stats_extra)
        if cfg.loss.step_reweight:  # GRPO-Guard: the same gradient scale at every step
            dt = flow_step_size(scheduler, t, x)
            loss = step_reweight(loss, dt)
            stats["step_weight"] = float(1.0 / dt.mean())
            stats["loss"] = float(loss.detach())
        if beta > 0:
            with torch.no_grad(), adapter.reference():
                ref_out = guided_output(adapter, scheduler, x, t, guidance)
                ref_mean = adapter.transition_moments(scheduler, ref_out, t, x, noise_level=mb.noise_level).mean
            kl = gaussian_kl(moments, ref_mean).mean()
            stats["policy_loss"] = float(loss.detach())
            stats["kl_loss"] = float(kl.detach())
            self._kl_since_step.append(stats["kl_loss"])
            loss = loss + beta * kl
            stats["loss"] = float(loss.detach())
            stats["kl_beta"] = beta
        return loss, stats

    # ------------------------------------------------------------------ EMA
    def after_optimizer_step(self, index: int) -> None:
        if self.ema is not None:
            self.ema.step(self.adapter.trainable_parameters(), index)
        if self.kl_control is not None and self._kl_since_step:
            kl = self.accelerator.reduce(torch.tensor(sum(self._kl_since_step) / len(self._kl_since_step), device=self.device), "mean")
            self.kl_control.update(float(kl))
        self._kl_since_step = []

    def checkpoint_state(self) -> dict:
        state = super().checkpoint_state()
        if self.kl_control is not None:
            state["kl_control"] = self.kl_control.state_dict()
        return state

    @contextlib.contextmanager
    def evaluation_weights(self) -> Iterator[None]:
        if self.ema is None:
            yield
            return
        with self.ema.swapped_in(self.adapter.trainable_parameters()):
            yield

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        if self.ema is None:
            return {}
        return self.ema.state_tensors(list(self.trainable_named_parameters()))

    def restore_checkpoint_state(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        super().restore_checkpoint_state(state, tensors)
        if self.kl_control is not None and "kl_control" in state:
            self.kl_control.load_state_dict(state["kl_control"])
        if self.ema is not None:
            self.ema.load_state_tensors(list(self.trainable_named_parameters()), tensors)


__all__ = ["FlowGRPOTrainer", "SDE_TYPES"]
