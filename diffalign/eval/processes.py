"""Evaluation jobs on several processes: ``torchrun --nproc_per_node N -m diffalign eval ...`` (or
``accelerate launch``) gives each process its share of the prompts / images through accelerate's
``PartialState`` (gloo ranks on a machine without GPU, one GPU per process otherwise)."""
from __future__ import annotations

import atexit


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def eval_state():
    """accelerate's ``PartialState`` when the launcher started several processes, else None.

    The process group is destroyed when the process exits: a rank that is done (the others' results
    gathered, the main process still writing) then exits cleanly instead of leaving gloo's threads to
    the interpreter's shutdown, which can abort it ("terminate called without an active exception").
    """
    from diffalign.train.distributed import check_launch, launched_world_size, use_cpu_processes

    check_launch()
    if launched_world_size() <= 1:
        return None
    from accelerate import PartialState

    state = PartialState(cpu=use_cpu_processes())
    atexit.register(_destroy_process_group)
    return state


def process_device(state, device: str | None) -> str | None:
    """The device of this process: the one asked for, else (several processes) accelerate's per-process device."""
    if device or state is None:
        return device
    return str(state.device)


__all__ = ["eval_state", "process_device"]
