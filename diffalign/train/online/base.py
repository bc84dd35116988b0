"""``OnlineTrainer``: what the online trainers share to fill in the :class:`~diffalign.train.trainer.Trainer`
phases (it has no loop of its own: :class:`~diffalign.train.online.policy.PolicyGradientTrainer`
and :class:`~diffalign.train.online.reward_gradient.RewardGradientTrainer` each implement ``step``).

Set-up: prompts (:class:`PromptSet` + :class:`KRepeatSampler`), the reward (a registered name, a
:class:`~diffalign.rewards.Reward`, a plain callable or several with weights) and its scorer, the
sample size and the sampling scheduler. Also here: prompt encoding with a memo, the gradient
bookkeeping of hand-synchronised accumulation (``backward`` / ``optimizer_step``), gathering across
processes, sample grids and the evaluate phase (held-out reward). Every random draw of step ``s``
comes from :meth:`rng` seeded by ``(seed, s, stream)`` and either the process or (per-sample draws,
:meth:`sample_rngs`) the sample's global id, so a resumed run continues exactly and W processes with
batch b draw what one process with batch W x b draws.
"""
from __future__ import annotations

import contextlib
import hashlib
from typing import Sequence

import torch

import diffalign.rewards
from diffalign.pipelines import PromptEmbeds
from diffalign.train.online.config import OnlineConfig
from diffalign.train.online.grouping import KRepeatSampler
from diffalign.train.online.prompts import PromptSet
from diffalign.pipelines.sampling import Guidance, make_sampling_scheduler, sample_chain
from diffalign.train.online.scoring import RewardScorer
from diffalign.train.trainer import Trainer

#: named random streams of one iteration (the value is mixed into the seed).
STREAMS = {"noise": 1, "order": 2, "window": 3, "truncation": 4, "filter": 5, "lv": 6}


class OnlineTrainer(Trainer):
    config_class = OnlineConfig
    progress_keys = ("reward_mean", "eval_reward_mean")
    syncs_by_hand = True
    #: group size of the prompt sampler (Flow-GRPO: K rollouts per prompt).
    group_size: int = 1

    def __init__(self, config: OnlineConfig, adapter=None, reward=None):
        #: the reward given in Python (overrides ``config.reward.name``): see :func:`resolve_reward`.
        self._given_reward = reward
        super().__init__(config, adapter)

    # ------------------------------------------------------------------ hooks for subclasses
    def updates_per_iteration(self) -> int:
        """Optimizer steps one iteration makes."""
        raise TypeError(f"{type(self).__name__} must implement updates_per_iteration()")

    def prompts_per_batch(self) -> int:
        """Prompt draws per sampling batch and process (D3PO: one per pair)."""
        return self.config.sampling.batch_size

    # ------------------------------------------------------------------ template phases
    def num_optimizer_steps(self) -> int:
        return self.config.max_steps * self.updates_per_iteration()

    def setup(self) -> None:
        cfg: OnlineConfig = self.config  # type: ignore[assignment]
        acc = self.accelerator
        self.prompt_set = PromptSet.from_config(cfg.prompts, seed=cfg.seed)
        self.prompt_sampler = KRepeatSampler(
            len(self.prompt_set), self.prompts_per_batch(), self.group_size, acc.num_processes, acc.process_index, cfg.seed
        )
        if self._given_reward is None:
            self.reward = diffalign.rewards.load(cfg.reward.name, device=self.device, **cfg.reward.options)
        else:  # an object given in Python: a name, a Reward, a callable, or several with weights
            self.reward = diffalign.rewards.as_reward(self._given_reward).to(self.device)
        self.scorer = RewardScorer(self.reward, cfg.reward.workers)
        self._prompt_memo: dict[str, PromptEmbeds] = {}
        self._uncond: PromptEmbeds | None = None
        default_h, default_w, default_f = self.adapter.default_size()
        self.sample_size = (cfg.sampling.height or default_h, cfg.sampling.width or default_w,
                            cfg.sampling.num_frames or default_f)
        self.scheduler = self.make_scheduler(cfg.sampling.num_inference_steps)
        self.optimizer_steps_done = 0
        self.eval_set: PromptSet | None = None  # built on the first evaluation

    def global_batch(self) -> dict[str, int]:
        return {**super().global_batch(),
                "rollouts": self.prompts_per_batch() * self.batches_per_iteration() * self.accelerator.num_processes}

    def resume(self) -> int:
        start_step = super().resume()
        self.optimizer_steps_done = start_step * self.updates_per_iteration()
        return start_step

    def close(self) -> None:
        self.scorer.close()

    # ------------------------------------------------------------------ randomness and prompts
    def rng(self, step: int, stream: str, index: int = 0, shared: bool = False, device=None,
            position: int | None = None) -> torch.Generator:
        """A generator for draw ``index`` of ``stream`` in iteration ``step``; ``shared`` ones are the
        same on every process; ``position`` keys it by a sample's global id instead of the process
        (the same whatever the number of processes)."""
        rank = f"s{position}" if position is not None else 0 if shared else self.accelerator.process_index
        key = f"{self.config.seed}/{step}/{STREAMS[stream]}/{index}/{rank}".encode()
        seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "little") % (2**63)
        return torch.Generator(device=device or "cpu").manual_seed(seed)

    def sample_rngs(self, step: int, stream: str, index: int, ids, device=None) -> list[torch.Generator]:
        """One generator per sample, keyed by the samples' global ``ids`` (:meth:`sample_ids`): W
        processes with batch b draw exactly what one process with batch W x b draws."""
        return [self.rng(step, stream, index, device=device, position=int(i)) for i in ids]

    def sample_ids(self, count: int, batch: int = 0, num_batches: int = 1) -> torch.Tensor:
        """Global ids of this process's ``count`` samples of sampling batch ``batch`` (of
        ``num_batches``): the sample at place ``p`` of the batch over all processes (``rank x count +
        j``) gets ``p x num_batches + batch``. Sorted, the ids of one process are a contiguous range and
        the order is the same for any number of processes (a process's rollouts, batch after batch)."""
        first = self.accelerator.process_index * count
        return (first + torch.arange(count)) * num_batches + batch

    def batches_per_iteration(self) -> int:
        """Sampling batches one iteration draws prompts for."""
        return self.config.sampling.num_batches

    def prompt_batch(self, step: int, batch: int) -> tuple[list[str], list | None]:
        """Prompts and metadata of sampling batch ``batch`` of iteration ``step`` on this process."""
        number = step * self.batches_per_iteration() + batch
        indices = self.prompt_sampler.indices(number)
        return self.prompt_set.prompts(indices), self.prompt_set.metadata(indices)

    def make_scheduler(self, num_steps: int):
        """The sampling scheduler (shared by rollouts and the training re-evaluation)."""
        return make_sampling_scheduler(self.adapter, num_steps, *self.sample_size)

    def guidance(self, prompts: Sequence[str], guidance_scale: float | None = None, cfg_on: bool = True) -> Guidance:
        """Encoded prompts (memoised) and, when guiding, the unconditional embeddings."""
        scale = self.config.sampling.guidance_scale if guidance_scale is None else guidance_scale
        cond = self.adapter.encode_prompt_cached(list(prompts), self._prompt_memo)
        if not cfg_on or scale == 1.0:
            return Guidance(cond, None, 1.0)
        if self._uncond is None:
            self._uncond = self.adapter.encode_negative_prompt(self.config.sampling.negative_prompt, 1).detach()
        return Guidance(cond, self._uncond.repeat(len(cond)), scale)

    def initial_latents(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        h, w, f = self.sample_size
        return self.adapter.initial_latents(batch_size, h, w, num_frames=f, generator=generator, scheduler=self.scheduler)

    def same_noise_latents(self, prompts: Sequence[str], step: int) -> torch.Tensor:
        """Initial noise that depends only on ``(seed, step, prompt)``: a group shares it across processes."""
        out = []
        for p in prompts:
            digest = int.from_bytes(hashlib.sha256(p.encode()).digest()[:4], "little")
            out.append(self.initial_latents(1, self.rng(step, "noise", index=digest, shared=True)))
        return torch.cat(out)

    # ------------------------------------------------------------------ gradient bookkeeping
    def backward(self, loss: torch.Tensor, sync: bool) -> None:
        """Backward of one accumulation unit; gradients are all-reduced only when ``sync``."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {float(loss)} at optimizer step {self.optimizer_steps_done}")
        context = contextlib.nullcontext() if sync else self.accelerator.no_sync(self.network)
        with context:
            self.accelerator.backward(loss)

    def optimizer_step(self) -> dict[str, float]:
        """Clip, step the optimizer and the schedule, clear the gradients; count the step."""
        stats = self.clip_and_step()
        self.after_optimizer_step(self.optimizer_steps_done)
        self.optimizer_steps_done += 1
        return stats

    def after_optimizer_step(self, index: int) -> None:
        """Called after global optimizer step ``index`` (0-based)."""

    # ------------------------------------------------------------------ processes
    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Concatenate a per-process tensor over processes (rank order)."""
        return self.accelerator.gather(values.to(self.device).contiguous()).cpu()

    def gather_list(self, items: list) -> list:
        if self.accelerator.num_processes == 1:
            return list(items)
        from accelerate.utils import gather_object

        return gather_object(list(items))

    def local_slice(self, values: torch.Tensor) -> torch.Tensor:
        """This process's part of a gathered tensor."""
        acc = self.accelerator
        return values.reshape(acc.num_processes, -1, *values.shape[1:])[acc.process_index]

    # ------------------------------------------------------------------ grids
    def save_sample_grid(self, step: int, images: torch.Tensor, prompts: Sequence[str], rewards: torch.Tensor,
                         folder: str = "samples") -> None:
        """A grid of (at most ``sample_grid_size``) images captioned with their rewards (main process)."""
        if not self.is_main:
            return
        from diffalign.utils.images import make_grid

        n = min(len(prompts), self.config.sample_grid_size)
        frames = images[:n].float().cpu()
        if frames.ndim == 5:  # video [B, F, 3, H, W]: a strip of frames per clip
            from diffalign.train.video_outputs import video_tiles

            frames = video_tiles(frames)
        captions = [f"{r:.3g} | {p}" for r, p in zip(rewards[:n].tolist(), prompts[:n])]
        grid = make_grid(frames, captions=captions, ncols=min(8 if images.ndim == 4 else 2, n), title=f"step {step}")
        self.save_grid(step, folder, grid)

    # ------------------------------------------------------------------ evaluate phase
    def evaluate(self, step: int) -> dict[str, float]:
        """The held-out reward every ``evaluation.every_steps`` steps (and before training), then the
        validation grid when due."""
        every = self.config.evaluation.every_steps
        stats = self.held_out_reward(step) if every and step % every == 0 else {}
        super().evaluate(step)
        return stats

    def gold_reward(self):
        """``evaluation.gold_reward`` loaded on first use (None when unset)."""
        gold = self.config.evaluation.gold_reward
        if gold.name and getattr(self, "_gold", None) is None:
            self._gold = diffalign.rewards.load(gold.name, device=self.device, **gold.options)
        return getattr(self, "_gold", None)

    @torch.no_grad()
    def held_out_reward(self, step: int) -> dict[str, float]:
        """Mean reward of deterministic samples on the held-out prompts (same noise every time)."""
        cfg: OnlineConfig = self.config  # type: ignore[assignment]
        ev, acc = cfg.evaluation, self.accelerator
        if self.eval_set is None:
            self.eval_set = PromptSet.from_config(cfg.prompts, evaluation=True, seed=ev.seed, num_rows=ev.num_prompts)
            if self.network_sharded() and len(self.eval_set) % acc.num_processes:  # unequal forwards would hang
                raise ValueError(
                    f"evaluation: {len(self.eval_set)} held-out prompts do not split evenly over {acc.num_processes} processes, "
                    f"which sharded weights (FSDP / ZeRO-3) need: set evaluation.num_prompts to a multiple of {acc.num_processes}")
        num_steps = ev.num_inference_steps or cfg.sampling.num_inference_steps
        scheduler = self.scheduler if num_steps == cfg.sampling.num_inference_steps else self.make_scheduler(num_steps)
        levels = [0.0 if ev.noise_level is None else ev.noise_level] * num_steps
        mine = list(range(acc.process_index, len(self.eval_set), acc.num_processes))
        rewards, golds, shown = [], [], None
        self.adapter.denoiser.eval()
        with self.evaluation_weights():
            for start in range(0, len(mine), ev.batch_size):
                idx = mine[start : start + ev.batch_size]
                prompts, meta = self.eval_set.prompts(idx), self.eval_set.metadata(idx)
                guidance = self.guidance(prompts, ev.guidance_scale)
                gen = torch.Generator("cpu").manual_seed(ev.seed * 1_000_003 + idx[0])
                x = sample_chain(self.adapter, scheduler, self.initial_latents(len(idx), gen), guidance, levels,
                                 generator=gen).final
                images = self.adapter.decode_latents(x)
                scores = self.scorer.submit(images, prompts, meta).result().cpu()
                rewards.append(scores)
                if self.gold_reward() is not None:
                    golds.append(self.gold_reward()(images, prompts, meta).cpu())
                if shown is None:
                    shown = (images, prompts, scores)
        self.adapter.denoiser.train()
        local = torch.cat(rewards) if rewards else torch.zeros(0)
        all_rewards = torch.tensor([float(v) for v in self.gather_list(local.tolist())])
        all_idx = self.gather_list(mine)
        stats = {"eval_reward_mean": float(all_rewards.mean())}
        if golds:
            stats["gold_reward_mean"] = float(torch.tensor([float(v) for v in self.gather_list(torch.cat(golds).tolist())]).mean())
        tags = [self.eval_set.rows[i].get("tag") for i in all_idx]
        if all(tags):
            for tag in sorted(set(tags)):
                stats[f"eval_reward_{tag}"] = float(all_rewards[[t == tag for t in tags]].mean())
        if shown is not None:
            self.save_sample_grid(step, *shown, folder="eval")
        return stats


__all__ = ["OnlineTrainer", "STREAMS"]
