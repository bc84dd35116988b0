"""``Trajectories``: what the policy-gradient trainers store per rollout (research notes §1.2)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from diffalign.pipelines import PromptEmbeds


@dataclass
class Trajectories:
    """A batch of rollouts, batch on dim 0 of every tensor.

    ``latents`` / ``next_latents`` [B, S, ...]: the state before and after each stored step;
    ``timesteps`` [B, S]; ``log_probs`` [B, S]: the behaviour policy's log-probs of the stored
    transitions (fp32); ``noise_level``: the sampler stochasticity of every stored step;
    ``cond`` the prompt embeddings; ``images`` the decoded final samples (for rewards and grids);
    ``rewards`` [B] and ``advantages`` [B] once computed; ``prompts`` / ``metadata`` per sample.
    """

    prompts: list[str]
    metadata: list | None
    cond: PromptEmbeds
    latents: torch.Tensor
    next_latents: torch.Tensor
    timesteps: torch.Tensor
    log_probs: torch.Tensor
    noise_level: float | None
    images: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    #: the components [B, K] of a combined reward (kept only for per-reward advantages).
    reward_components: torch.Tensor | None = None
    #: the behaviour policy's transition means [B, S, ...] (kept only for GRPO-Guard's RatioNorm).
    means: torch.Tensor | None = None
    #: [B] each rollout's global id (:meth:`~diffalign.train.online.base.OnlineTrainer.sample_ids`).
    sample_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.latents.shape[0]

    @property
    def num_steps(self) -> int:
        return self.latents.shape[1]

    def select(self, index: torch.Tensor | list[int]) -> "Trajectories":
        """The rollouts at ``index`` (a list/tensor of positions or a boolean mask)."""
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().reshape(-1)
        positions = idx.tolist()
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                out[f.name] = value[idx.to(value.device)]
            elif isinstance(value, PromptEmbeds):
                out[f.name] = value[idx.to(next(iter(value.tensors.values())).device)]
            elif isinstance(value, list):
                out[f.name] = [value[i] for i in positions]
            else:
                out[f.name] = value
        return Trajectories(**out)

    def permute_steps(self, order: torch.Tensor) -> "Trajectories":
        """Reorder the step axis per sample: ``order`` [B, S'] of step positions (S' <= S keeps a prefix)."""
        rows = torch.arange(len(self), device=order.device)[:, None]

        def take(x: torch.Tensor) -> torch.Tensor:
            return x[rows.to(x.device), order.to(x.device)]

        return replace(
            self, latents=take(self.latents), next_latents=take(self.next_latents),
            timesteps=take(self.timesteps), log_probs=take(self.log_probs),
            means=None if self.means is None else take(self.means),
        )

    @staticmethod
    def cat(items: list["Trajectories"]) -> "Trajectories":
        first = items[0]
        out = {}
        for f in fields(first):
            values = [getattr(it, f.name) for it in items]
            if isinstance(values[0], torch.Tensor):
                out[f.name] = torch.cat(values, dim=0)
            elif isinstance(values[0], PromptEmbeds):
                out[f.name] = PromptEmbeds.cat(values)
            elif isinstance(values[0], list):
                out[f.name] = [v for vs in values for v in vs]
            elif f.name == "metadata":
                out[f.name] = None
            else:
                if any(v != values[0] for v in values):
                    raise ValueError(f"cannot concatenate trajectories with different {f.name}: {values}")
                out[f.name] = values[0]
        return Trajectories(**out)


__all__ = ["Trajectories"]
