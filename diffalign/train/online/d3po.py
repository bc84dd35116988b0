"""D3PO (Yang et al., CVPR 2024): DPO on denoising steps of paired rollouts, no reward model needed
beyond a preference (here: which of the two rollouts the reward scores higher).

Each sampling batch of ``b`` rollouts is ``b / 2`` pairs: the same prompt and the same initial
noise, different DDIM (or SDE) noise along the chain. Laid out ``[first members; second members]``.
For every trained step of a pair (the same randomly ordered steps for both members), the policy's
and the reference's log-probs of both stored transitions give :func:`diffalign.losses.d3po_loss`;
the reference is the base network (adapters disabled, or the frozen copy). Ties use the same
trajectory as winner and loser, which gives the constant log 2 and no gradient, as the reference
code's ``(0, 0)`` preference does while still counting in the mean.
"""
from __future__ import annotations

import torch

from diffalign.losses import d3po_loss
from diffalign.train.online.config import D3POConfig
from diffalign.train.online.policy import PolicyGradientTrainer
from diffalign.pipelines.sampling import transition_log_prob
from diffalign.train.online.trajectories import Trajectories


class D3POTrainer(PolicyGradientTrainer):
    config_class = D3POConfig

    def __init__(self, config: D3POConfig, adapter=None, reward=None):
        if config.sampling.batch_size % 2:
            raise ValueError(f"D3PO samples pairs: sampling.batch_size must be even, got {config.sampling.batch_size}")
        if config.advantages.per_reward:
            raise ValueError("advantages.per_reward does not apply to D3PO: it keeps only which member of a pair has the "
                             "higher total reward (use ddpo or flow_grpo for per-reward normalisation)")
        pairs = config.sampling.batch_size // 2 * config.sampling.num_batches
        if pairs % (config.batch_size * config.gradient_accumulation_steps):
            raise ValueError(
                f"the {pairs} pairs per iteration and process must be a multiple of batch_size x "
                f"gradient_accumulation_steps = {config.batch_size * config.gradient_accumulation_steps} (batch_size counts pairs)"
            )
        self.check_exclude_final_steps(config)
        super().__init__(config, adapter, reward)

    def setup(self) -> None:
        super().setup()
        self.warn_if_one_step_dominates(self.config.exclude_final_steps)

    def updates_per_iteration(self) -> int:
        cfg = self.config
        pairs = cfg.sampling.batch_size // 2 * cfg.sampling.num_batches
        return pairs // (cfg.batch_size * cfg.gradient_accumulation_steps) * cfg.num_inner_epochs

    def prompts_per_batch(self) -> int:
        return self.config.sampling.batch_size // 2  # one prompt per pair

    # ------------------------------------------------------------------ sampling
    def rollout_ids(self, count: int, batch: int) -> torch.Tensor:
        """Pair ``p`` (global id over all processes) holds rollouts ``2p`` (first member) and ``2p + 1``."""
        pairs = self.sample_ids(count // 2, batch, self.batches_per_iteration())
        return torch.cat([2 * pairs, 2 * pairs + 1])

    def rollout_prompts(self, step: int, batch: int):
        prompts, meta = self.prompt_batch(step, batch)
        pairs = self.sample_ids(len(prompts), batch, self.batches_per_iteration())
        x = self.initial_latents(len(prompts), self.sample_rngs(step, "noise", batch, pairs))
        return prompts + prompts, (meta + meta) if meta is not None else None, torch.cat([x, x])

    def collect(self, step: int) -> Trajectories:
        """Batches re-laid out so the whole iteration is ``[first members; second members]``."""
        traj = super().collect(step)
        half, n = self.config.sampling.batch_size // 2, len(traj)
        first = [b * 2 * half + i for b in range(n // (2 * half)) for i in range(half)]
        return traj.select(first + [i + half for i in first])

    # ------------------------------------------------------------------ preferences
    def compute_advantages(self, traj: Trajectories, step: int):
        """``advantages`` of the first member of each pair = +1 (it won), -1 (it lost) or 0 (tie);
        the second member holds the opposite."""
        n = len(traj) // 2
        diff = traj.rewards[:n] - traj.rewards[n:]
        pref = torch.sign(diff).float()
        traj.advantages = torch.cat([pref, -pref])
        all_pref = self.gather(pref)
        return traj, {"tie_fraction": float((all_pref == 0).float().mean()),
                      "reward_gap": float(self.gather(diff.abs()).mean())}

    # ------------------------------------------------------------------ training
    def micro_batches(self, traj: Trajectories, step: int, inner_epoch: int) -> list[Trajectories]:
        n = len(traj) // 2
        ids = traj.sample_ids[:n]  # the first members: one id per pair
        order = self.step_orders(n, traj.num_steps, step, inner_epoch, shuffle=True,
                                 exclude_final=self.config.exclude_final_steps, ids=ids)
        out = []
        for chosen in self.micro_batch_indices(ids, step, inner_epoch, self.config.batch_size):
            chosen = torch.tensor(chosen)
            mb = traj.select(torch.cat([chosen, chosen + n]))
            out.append(mb.permute_steps(torch.cat([order[chosen], order[chosen]])))
        return out

    def unit_loss(self, mb: Trajectories, j: int):
        cfg: D3POConfig = self.config  # type: ignore[assignment]
        args = (self.adapter, self.scheduler, mb.latents[:, j], mb.next_latents[:, j], mb.timesteps[:, j],
                self.train_guidance(mb), mb.noise_level)
        log_prob, _ = transition_log_prob(*args)
        with torch.no_grad(), self.adapter.reference():
            ref_log_prob, _ = transition_log_prob(*args)
        n = len(mb) // 2
        pref = mb.advantages[:n]
        first, second = slice(0, n), slice(n, 2 * n)

        def pick(values: torch.Tensor, use_second: torch.Tensor) -> torch.Tensor:
            return torch.where(use_second, values[second], values[first])

        winner_second, loser_second = pref < 0, pref > 0
        return d3po_loss(
            pick(log_prob, winner_second), pick(ref_log_prob, winner_second),
            pick(log_prob, loser_second), pick(ref_log_prob, loser_second), cfg.loss.beta, cfg.loss.eps,
        )


__all__ = ["D3POTrainer"]
