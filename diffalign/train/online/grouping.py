"""Which prompts each process samples: groups of K rollouts per prompt, correct across processes.

:class:`KRepeatSampler` re-expresses Flow-GRPO's ``DistributedKRepeatSampler``: for sampling batch
``n`` the ``W`` processes together sample ``W x b`` rollouts (``b`` per process) made of
``m = W x b / K`` distinct prompts, each repeated ``K`` times. The repeated list is shuffled by a
generator seeded from ``(seed, n)`` only, so every process computes the same global list and takes
its own slice ``[rank x b, (rank + 1) x b)``: a group may be spread over processes, and advantages
are computed after gathering rewards and prompts from all of them. With ``K = 1`` it draws ``W x b``
distinct prompts (DDPO's independent prompts). A pure function of ``n``: resuming needs no state.
"""
from __future__ import annotations

import torch


class KRepeatSampler:
    def __init__(
        self,
        num_prompts: int,
        batch_size: int,
        group_size: int = 1,
        num_processes: int = 1,
        process_index: int = 0,
        seed: int = 0,
    ):
        if batch_size < 1 or group_size < 1 or num_processes < 1:
            raise ValueError(
                f"batch_size, group_size and num_processes must be >= 1, got {batch_size}, {group_size}, {num_processes}"
            )
        if not 0 <= process_index < num_processes:
            raise ValueError(f"process_index {process_index} is not in [0, {num_processes})")
        total = batch_size * num_processes
        if total % group_size:
            raise ValueError(
                f"the group size {group_size} must divide the rollouts per sampling batch over all processes "
                f"({batch_size} per process x {num_processes} processes = {total})"
            )
        self.num_unique = total // group_size
        if self.num_unique > num_prompts:
            raise ValueError(
                f"a sampling batch needs {self.num_unique} distinct prompts but the prompt set has {num_prompts}"
            )
        self.num_prompts, self.batch_size, self.group_size = num_prompts, batch_size, group_size
        self.num_processes, self.process_index, self.seed = num_processes, process_index, seed

    def global_indices(self, batch_number: int) -> list[int]:
        """Prompt indices of all processes' rollouts for sampling batch ``batch_number`` (rank-major)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + batch_number)
        unique = torch.randperm(self.num_prompts, generator=gen)[: self.num_unique]
        repeated = unique.repeat_interleave(self.group_size)
        return repeated[torch.randperm(len(repeated), generator=gen)].tolist()

    def indices(self, batch_number: int) -> list[int]:
        """This process's prompt indices for sampling batch ``batch_number``."""
        start = self.process_index * self.batch_size
        return self.global_indices(batch_number)[start : start + self.batch_size]


__all__ = ["KRepeatSampler"]
