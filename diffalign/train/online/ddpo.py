"""DDPO (Black et al., ICLR 2024): PPO over the DDIM-with-eta denoising chain.

Rollouts with eta > 0 (default 1) and CFG; rewards normalised per prompt by the persistent
:class:`PerPromptStatTracker` (or over the gathered batch; with ``advantages.per_reward`` one
tracker per component of a combined reward, the normalised components then weighted); per inner epoch the samples are shuffled,
each sample's time axis is shuffled independently and the first ``int(N x timestep_fraction)``
steps trained, each as one PPO-clip backward with CFG in the training forward (``train_cfg``).
Any family works (UNet families are the published setting).
"""
from __future__ import annotations

import torch

from diffalign.losses import ppo_loss
from diffalign.train.online.advantages import PerPromptStatTracker, global_advantages, per_reward_advantages
from diffalign.train.online.config import DDPOConfig
from diffalign.train.online.policy import PolicyGradientTrainer
from diffalign.pipelines.sampling import transition_log_prob
from diffalign.train.online.trajectories import Trajectories


class DDPOTrainer(PolicyGradientTrainer):
    config_class = DDPOConfig

    def __init__(self, config: DDPOConfig, adapter=None, reward=None):
        per_iteration = config.sampling.batch_size * config.sampling.num_batches
        step_batch = config.batch_size * config.gradient_accumulation_steps
        if per_iteration % step_batch:
            raise ValueError(
                f"the {per_iteration} rollouts per iteration and process (sampling.batch_size x sampling.num_batches) "
                f"must be a multiple of batch_size x gradient_accumulation_steps = {step_batch}"
            )
        self.check_exclude_final_steps(config)
        self.group_size = config.group_size
        super().__init__(config, adapter, reward)

    def updates_per_iteration(self) -> int:
        cfg = self.config
        per_iteration = cfg.sampling.batch_size * cfg.sampling.num_batches
        return per_iteration // (cfg.batch_size * cfg.gradient_accumulation_steps) * cfg.num_inner_epochs

    def setup(self) -> None:
        super().setup()
        cfg: DDPOConfig = self.config  # type: ignore[assignment]
        self.tracker = PerPromptStatTracker(cfg.tracker_buffer_size, cfg.tracker_min_count)
        #: advantages.per_reward: one tracker per component of the combined reward
        self.component_trackers = [PerPromptStatTracker(cfg.tracker_buffer_size, cfg.tracker_min_count)
                                   for _ in (self.reward_weights or ())]
        self.warn_if_one_step_dominates(cfg.exclude_final_steps)

    # ------------------------------------------------------------------ advantages
    def compute_advantages(self, traj: Trajectories, step: int):
        cfg: DDPOConfig = self.config  # type: ignore[assignment]
        prompts, rewards, order = self.gathered_rollouts(traj)

        def normalise(k: int | None, values):
            if not cfg.per_prompt_stat_tracking:
                return global_advantages(values)
            return (self.tracker if k is None else self.component_trackers[k]).update(prompts, values)

        if traj.reward_components is None:
            advantages = normalise(None, rewards)
        else:  # advantages.per_reward: each component normalised on its own, then weighted
            advantages = per_reward_advantages(prompts, self.gather(traj.reward_components)[order],
                                               list(self.reward_weights.values()), normalise=normalise)
        traj.advantages = self.scatter_back(advantages, order).float().to(self.device)
        return traj, {"advantage_abs_mean": float(advantages.abs().mean()),
                      "tracked_prompts": float(len(self.tracker.stats))}

    # ------------------------------------------------------------------ training
    def micro_batches(self, traj: Trajectories, step: int, inner_epoch: int) -> list[Trajectories]:
        order = self.step_orders(len(traj), traj.num_steps, step, inner_epoch, shuffle=True,
                                 exclude_final=self.config.exclude_final_steps, ids=traj.sample_ids)
        return self.micro_batches_over_processes(traj.permute_steps(order), step, inner_epoch, self.config.batch_size)

    def unit_loss(self, mb: Trajectories, j: int):
        cfg: DDPOConfig = self.config  # type: ignore[assignment]
        log_prob, _ = transition_log_prob(
            self.adapter, self.scheduler, mb.latents[:, j], mb.next_latents[:, j], mb.timesteps[:, j],
            self.train_guidance(mb), mb.noise_level,
        )
        loss, stats = ppo_loss(log_prob, mb.log_probs[:, j], mb.advantages, cfg.loss.clip_range, cfg.loss.adv_clip_max)
        stats["abs_log_ratio_max"] = float((log_prob.detach() - mb.log_probs[:, j]).abs().max())
        return loss, stats

    # ------------------------------------------------------------------ resume
    def checkpoint_state(self) -> dict:
        return {"stat_tracker": self.tracker.state_dict(),
                "component_trackers": [t.state_dict() for t in self.component_trackers]}

    def restore_checkpoint_state(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        if "stat_tracker" in state:
            self.tracker.load_state_dict(state["stat_tracker"])
        for tracker, saved in zip(self.component_trackers, state.get("component_trackers", [])):
            tracker.load_state_dict(saved)


__all__ = ["DDPOTrainer"]
