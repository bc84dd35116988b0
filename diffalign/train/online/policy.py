"""``PolicyGradientTrainer``: the step phase of DDPO, D3PO and Flow-GRPO (sample -> score -> advantages
-> replay), filled into the :class:`~diffalign.train.trainer.Trainer` template.

Per step (iteration):

1. ``sampling.num_batches`` rollout batches with the current policy (no graph; the network in eval
   mode), the chosen steps' transitions stored with their log-probs; each batch's images go to the
   reward scorer (worker threads) while the next batch samples;
2. ``compute_advantages`` (subclass): gathers rewards and prompts from every process, normalises,
   keeps this process's part;
3. ``num_inner_epochs`` passes: ``micro_batches`` (subclass order) and, for every micro-batch and
   every trained timestep, ``unit_loss`` -> one backward (scaled by 1 / (accumulation x timesteps)),
   so the graph of one denoiser call is alive at a time; gradients are all-reduced only on the last
   backward before each optimizer step.

The largest ``|log pi_theta - log pi_old|`` over the units trained before the iteration's first
optimizer step is logged as ``onpolicy_log_ratio_max``: it is exactly 0 when sampling and training
take the same path (research notes §1.4's sanity check).
"""
from __future__ import annotations

import time
import warnings
from collections import defaultdict

import torch

from diffalign.train.online.base import OnlineTrainer
from diffalign.train.online.config import PolicyGradientConfig
from diffalign.pipelines.sampling import Guidance, sample_chain, step_gradient_scales
from diffalign.train.online.scoring import component_weights
from diffalign.train.online.trajectories import Trajectories


class PolicyGradientTrainer(OnlineTrainer):
    config_class = PolicyGradientConfig

    def setup(self) -> None:
        super().setup()
        #: ``{label: weight}`` of the combined reward's components when ``advantages.per_reward`` (else None).
        self.reward_weights = component_weights(self.reward) if self.config.advantages.per_reward else None
        #: the last :meth:`collect`'s time split (seconds): ``sampling_s``, ``reward_s``, ``reward_exposed_s``.
        self._timings: dict[str, float] = {"reward_exposed_s": 0.0}

    # ------------------------------------------------------------------ subclass hooks
    def compute_advantages(self, traj: Trajectories, step: int) -> tuple[Trajectories, dict[str, float]]:
        """Fill ``traj.advantages`` (this process's rollouts); may drop rollouts; return stats."""
        raise TypeError(f"{type(self).__name__} must implement compute_advantages()")

    def micro_batches(self, traj: Trajectories, step: int, inner_epoch: int) -> list[Trajectories]:
        """The training micro-batches of one inner epoch, steps already ordered and cut to the trained ones."""
        raise TypeError(f"{type(self).__name__} must implement micro_batches()")

    def keeps_means(self) -> bool:
        """Whether rollouts keep the transition means (for GRPO-Guard's RatioNorm)."""
        return False

    def unit_loss(self, mb: Trajectories, j: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of trained step ``j`` of micro-batch ``mb`` (with grad) and its stats."""
        raise TypeError(f"{type(self).__name__} must implement unit_loss()")

    def step_plan(self, step: int, batch: int) -> tuple[list[float | None], list[bool]]:
        """Noise level of every sampling-loop step and which steps' transitions are stored
        (default: the configured level everywhere, every step stored)."""
        n = self.config.sampling.num_inference_steps
        return [self.config.sampling.noise_level] * n, [True] * n

    def rollout_ids(self, count: int, batch: int) -> torch.Tensor:
        """Global ids of the ``count`` rollouts of sampling batch ``batch`` on this process."""
        return self.sample_ids(count, batch, self.batches_per_iteration())

    def rollout_prompts(self, step: int, batch: int) -> tuple[list[str], list | None, torch.Tensor]:
        """Prompts, metadata and initial latents of one sampling batch (default: independent noise,
        one generator per rollout keyed by its global id)."""
        prompts, meta = self.prompt_batch(step, batch)
        ids = self.rollout_ids(len(prompts), batch)
        return prompts, meta, self.initial_latents(len(prompts), self.sample_rngs(step, "noise", batch, ids))

    def num_trained_steps(self, stored_steps: int) -> int:
        frac = self.config.timestep_fraction
        n = int(stored_steps * frac)
        if n < 1:
            raise ValueError(f"timestep_fraction={frac} trains no step of the {stored_steps} stored ones")
        return n

    # ------------------------------------------------------------------ sampling
    def train_guidance(self, mb: Trajectories) -> Guidance:
        """The conditioning of a training forward: the rollout's guidance when ``train_cfg``."""
        cfg = self.config
        if not cfg.train_cfg or cfg.sampling.guidance_scale == 1.0:
            return Guidance(mb.cond, None, 1.0)
        return Guidance(mb.cond, self._uncond.repeat(len(mb)), cfg.sampling.guidance_scale)

    @torch.no_grad()
    def rollout(self, step: int, batch: int) -> tuple[Trajectories, object]:
        """Sample one batch; return its trajectories and the future of its rewards."""
        prompts, meta, x = self.rollout_prompts(step, batch)
        guidance = self.guidance(prompts)
        levels, store = self.step_plan(step, batch)
        stored_levels = {levels[i] for i in range(len(levels)) if store[i]}
        if len(stored_levels) != 1:
            raise ValueError(f"stored steps must share one noise level, got {sorted(map(str, stored_levels))}")
        ids = self.rollout_ids(len(prompts), batch)
        chain = sample_chain(self.adapter, self.scheduler, x, guidance, levels,
                             generator=self.sample_rngs(step, "noise", 10_000 + batch, ids, device=self.device),
                             store=store, store_means=self.keeps_means())
        images = self.adapter.decode_latents(chain.final)
        t_submit = time.perf_counter()
        future = self.scorer.submit(images, prompts, meta, components=self.reward_weights is not None)
        self._timings["reward_exposed_s"] += time.perf_counter() - t_submit  # scoring inline (reward.workers 0)
        traj = Trajectories(
            prompts=list(prompts), metadata=meta, cond=guidance.cond, latents=chain.latents,
            next_latents=chain.next_latents, timesteps=chain.timesteps, log_probs=chain.log_probs,
            noise_level=stored_levels.pop(), images=images, means=chain.means, sample_ids=ids,
        )
        return traj, future

    def collect(self, step: int) -> Trajectories:
        """All rollout batches of iteration ``step`` with their rewards. Batch ``k``'s rewards are
        scored on the scorer's worker thread while batch ``k + 1`` samples; only the last batch's
        scoring (and any scoring slower than sampling) is left exposed.

        Fills ``self._timings``: ``sampling_s`` (denoising + decoding, the reward's exposed time
        excluded), ``reward_s`` (the reward's own scoring time, hidden or not) and
        ``reward_exposed_s`` (the time the loop waited for rewards, or scored inline)."""
        self._timings = {"reward_exposed_s": 0.0}
        self.scorer.take_busy_s()
        t0 = time.perf_counter()
        self.adapter.denoiser.eval()
        parts = [self.rollout(step, b) for b in range(self.config.sampling.num_batches)]
        self.adapter.denoiser.train()
        t1 = time.perf_counter()
        for traj, future in parts:
            scores = future.result()
            if self.reward_weights is not None:
                scores, traj.reward_components = scores[0], scores[1].to(self.device)
            traj.rewards = scores.to(self.device)
        waited = time.perf_counter() - t1
        self._timings["sampling_s"] = t1 - t0 - self._timings["reward_exposed_s"]
        self._timings["reward_exposed_s"] += waited
        self._timings["reward_s"] = self.scorer.take_busy_s()
        return Trajectories.cat([t for t, _ in parts])

    # ------------------------------------------------------------------ iteration
    def step(self, step: int) -> dict[str, float]:
        """Step phase: one iteration (sample -> score -> advantages -> ``num_inner_epochs`` of updates)."""
        traj = self.collect(step)
        all_rewards = self.gather(traj.rewards)
        stats = {"reward_mean": float(all_rewards.mean()), "reward_std": float(all_rewards.std(unbiased=False)),
                 **self._timings}
        if traj.reward_components is not None:  # each component's raw mean beside the total
            means = self.gather(traj.reward_components).mean(dim=0).tolist()
            stats.update({f"reward_{label}_mean": m for label, m in zip(self.reward_weights, means)})
        if self.config.sample_grid_every and (step + 1) % self.config.sample_grid_every == 0:
            self.save_sample_grid(step + 1, traj.images, traj.prompts, traj.rewards)
        traj.images = None  # only needed for rewards and grids
        traj, adv_stats = self.compute_advantages(traj, step)
        stats.update(adv_stats)
        t1 = time.perf_counter()
        stats.update(self.train_on(traj, step))
        stats["train_s"] = time.perf_counter() - t1
        stats["optimizer_steps"] = self.optimizer_steps_done
        return stats

    def train_on(self, traj: Trajectories, step: int) -> dict[str, float]:
        cfg = self.config
        accum = cfg.gradient_accumulation_steps
        sums: dict[str, list[float]] = defaultdict(list)
        first_update = self.optimizer_steps_done
        onpolicy_max = 0.0
        for inner in range(cfg.num_inner_epochs):
            batches = self.micro_batches(traj, step, inner)
            if len(batches) % accum:
                raise ValueError(f"{len(batches)} micro-batches per inner epoch are not a multiple of "
                                 f"gradient_accumulation_steps={accum}")
            for i, mb in enumerate(batches):
                steps = mb.num_steps
                for j in range(steps):
                    loss, unit_stats = self.unit_loss(mb, j)
                    sync = (i + 1) % accum == 0 and j == steps - 1
                    self.backward(loss / (accum * steps), sync=sync)
                    if self.optimizer_steps_done == first_update and "abs_log_ratio_max" in unit_stats:
                        onpolicy_max = max(onpolicy_max, unit_stats["abs_log_ratio_max"])
                    for k, v in unit_stats.items():
                        sums[k].append(v)
                if (i + 1) % accum == 0:
                    for k, v in self.optimizer_step().items():
                        sums[k].append(v)
        out = self.mean_over_processes({k: sum(v) / len(v) for k, v in sums.items() if k != "abs_log_ratio_max"})
        if "abs_log_ratio_max" in sums:
            out["onpolicy_log_ratio_max"] = float(self.gather(torch.tensor([onpolicy_max])).max())
            out["log_ratio_max"] = float(self.gather(torch.tensor([max(sums["abs_log_ratio_max"])])).max())
        return out

    def warn_if_one_step_dominates(self, exclude_final: int, share: float = 0.9) -> None:
        """Warn when one trainable step holds more than ``share`` of the summed squared
        :func:`step_gradient_scales` of the trained steps: its nearly noiseless transition would
        carry almost every update (``exclude_final_steps`` keeps such final steps out)."""
        if not self.is_main:
            return
        scales = step_gradient_scales(self.adapter, self.scheduler, self.config.sampling.noise_level)
        trained = scales[: len(scales) - exclude_final] ** 2
        if trained.sum() <= 0:
            return
        shares = trained / trained.sum()
        i = int(shares.argmax())
        if float(shares[i]) > share:
            last = len(scales) - 1
            warnings.warn(
                f"sampling step {i} of {last + 1} (timestep {float(self.scheduler.timesteps[i]):g}) holds "
                f"{float(shares[i]):.0%} of the trained steps' squared log-prob gradient scale (|dmean/doutput| / std "
                f"= {float(scales[i]):.3g}; median {float(scales.median()):.3g}): its near-deterministic transition "
                f"will dominate every update. Consider exclude_final_steps={last - i + 1} (docs/online.md)",
                stacklevel=2,
            )

    # ------------------------------------------------------------------ processes
    def gathered_rollouts(self, traj: Trajectories) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """The prompts and rewards of every process's rollouts in global-id order (the same order for
        any number of processes, so order-dependent statistics such as DDPO's per-prompt FIFOs match
        one process), and ``place``: where each gathered rollout sits in that order (for
        :meth:`scatter_back`)."""
        ids = self.gather(traj.sample_ids)
        order = torch.argsort(ids)
        prompts = self.gather_list(traj.prompts)
        return [prompts[i] for i in order.tolist()], self.gather(traj.rewards)[order], order

    def scatter_back(self, values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """This process's part of ``values`` given in global-id order (``order`` from :meth:`gathered_rollouts`)."""
        gathered = torch.empty_like(values)
        gathered[order] = values
        return self.local_slice(gathered)

    # ------------------------------------------------------------------ shared orderings
    @staticmethod
    def check_exclude_final_steps(config) -> None:
        """Refuse, before any sampling, an ``exclude_final_steps`` that leaves no step to train."""
        n, steps = config.exclude_final_steps, config.sampling.num_inference_steps
        if not 0 <= n < steps:
            raise ValueError(f"exclude_final_steps={n} must be in [0, sampling.num_inference_steps={steps}): "
                             "it leaves no step of the chain to train")

    def shuffled(self, traj: Trajectories, step: int, inner: int) -> Trajectories:
        gen = self.rng(step, "order", inner)
        return traj.select(torch.randperm(len(traj), generator=gen))

    def micro_batch_indices(self, ids: torch.Tensor, step: int, inner: int, size: int) -> list[list[int]]:
        """Positions (into ``ids``) of this process's micro-batches of ``size``, in a random order such
        that, with the same number of rollouts on every process, the micro-batches of all processes
        together (what DDP averages) are the ones one process holding every rollout forms with
        ``W x size``: sorted by global id, the rollouts fall into ``size`` blocks of ``m = len / size``
        consecutive ones (a process holds whole blocks: its ids are a contiguous range), and each block
        sends its ``m`` rollouts to the ``m`` micro-batches in a random order keyed by the block's first id."""
        if len(ids) % size:
            raise ValueError(f"{len(ids)} rollouts do not split into micro-batches of {size}")
        order = torch.argsort(ids).tolist()
        m = len(ids) // size
        perms = [torch.randperm(m, generator=self.rng(step, "order", inner, position=int(ids[order[i * m]]))).tolist()
                 for i in range(size)]
        return [[order[i * m + perms[i][k]] for i in range(size)] for k in range(m)]

    def micro_batches_over_processes(self, traj: Trajectories, step: int, inner: int, size: int) -> list[Trajectories]:
        """This process's rollouts cut into micro-batches of ``size`` (:meth:`micro_batch_indices`)."""
        return [traj.select(idx) for idx in self.micro_batch_indices(traj.sample_ids, step, inner, size)]

    def step_orders(self, count: int, stored: int, step: int, inner: int, shuffle: bool,
                    exclude_final: int = 0, ids: torch.Tensor | None = None) -> torch.Tensor:
        """[count, T] step positions to train: a random permutation per row (``shuffle``) or in order,
        cut to the first ``num_trained_steps`` ones. The last ``exclude_final`` stored steps are
        never chosen (``timestep_fraction`` applies to the others). With ``ids`` (the rows' global
        ids) each row draws from its own generator, so the draws do not depend on the process count."""
        eligible = stored - exclude_final
        if exclude_final < 0 or eligible < 1:
            raise ValueError(f"exclude_final_steps={exclude_final} leaves no step of the {stored} stored ones to train")
        n = self.num_trained_steps(eligible)
        if not shuffle:
            return torch.arange(eligible)[:n].expand(count, n)
        if ids is not None:
            gens = self.sample_rngs(step, "order", 1_000 + inner, ids)
            return torch.stack([torch.randperm(eligible, generator=g)[:n] for g in gens])
        gen = self.rng(step, "order", 1_000 + inner)
        return torch.stack([torch.randperm(eligible, generator=gen)[:n] for _ in range(count)])


__all__ = ["PolicyGradientTrainer"]
