"""How a run finds its processes: accelerate on top of torch.distributed, on GPUs or on CPU (gloo).

- ``torchrun --nproc_per_node W -m diffalign train ...`` (or ``accelerate launch --multi_gpu
  --num_processes W``) on a machine without a GPU gives W cooperating gloo ranks: the trainer builds
  its ``Accelerator`` with ``cpu=True`` when the launcher says there are several processes and no
  GPU is present (a plain ``Accelerator()`` would make each process believe it is alone, so W
  independent runs would write one folder).
- ``accelerate launch --cpu --num_processes W`` (accelerate 1.x) starts W processes only through
  ``mpirun`` (``--mpirun_hostfile``); without it, it starts ONE process. That case stops with a
  one-line error saying how to launch instead of silently training alone.
"""
from __future__ import annotations

import os

import torch

#: environment variables a launcher sets to the number of processes (torchrun, MPI flavours).
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world_size() -> int:
    """The number of processes the launcher started (1 when launched as a plain script)."""
    for name in WORLD_SIZE_VARS:
        value = os.environ.get(name)
        if value:
            return int(value)
    return 1


def has_accelerator_device() -> bool:
    """A GPU (or other torch accelerator) that accelerate would use for distributed training."""
    if torch.cuda.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


def use_cpu_processes() -> bool:
    """Several processes on a machine without a GPU: run them as cooperating gloo ranks."""
    return launched_world_size() > 1 and not has_accelerator_device()


def check_launch() -> None:
    """Stop (one line) when ``accelerate launch --cpu --num_processes W`` started a single process."""
    asked_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    from_accelerate = "ACCELERATE_MIXED_PRECISION" in os.environ
    if asked_cpu and from_accelerate and "MASTER_ADDR" in os.environ and launched_world_size() == 1:
        raise RuntimeError(
            "`accelerate launch --cpu --num_processes N` starts one process without mpirun; for N CPU processes run "
            "`torchrun --nproc_per_node N -m diffalign train RECIPE` (or `accelerate launch --multi_gpu --num_processes N`)"
        )


def requested_engine() -> str | None:
    """The sharding engine an accelerate config asked for (``accelerate launch`` exports it): FSDP, DeepSpeed or None."""
    for var, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(var, "").lower() in ("1", "true", "yes"):
            return name
    return None


def fsdp_version() -> int:
    """``fsdp_version`` of the launching accelerate config (``FSDP_VERSION``; accelerate's default is 1)."""
    return int(os.environ.get("FSDP_VERSION", "1") or 1)


def check_engine(trainer: str, hand_synced: bool) -> None:
    """Stop (one line) where the requested FSDP / DeepSpeed config cannot run: without a GPU
    (accelerate 1.x builds them on CUDA only; on CPU it would silently fall back to DDP) except FSDP2,
    which the trainer then builds with torch's ``fully_shard`` (:mod:`diffalign.train.fsdp_cpu`), and
    DeepSpeed ZeRO for trainers that accumulate gradients by hand with ``no_sync`` (the online ones)."""
    engine = requested_engine()
    if engine is None:
        return
    if not has_accelerator_device():
        if engine == "FSDP" and fsdp_version() == 2:  # torch's fully_shard over gloo (diffalign.train.fsdp_cpu)
            return
        what = "FSDP1 (fsdp_version: 1)" if engine == "FSDP" else engine
        raise RuntimeError(
            f"the {what} accelerate config needs GPUs (accelerate builds it on CUDA only); on CPU use an FSDP2 config "
            "(fsdp2_lora / fsdp2_full) or launch `torchrun --nproc_per_node N -m diffalign train RECIPE` (DDP over gloo)"
        )
    if engine == "DeepSpeed" and hand_synced:
        raise RuntimeError(
            f"the {trainer} trainer accumulates gradients with no_sync, which DeepSpeed ZeRO does not support; "
            "use the fsdp2_lora / fsdp2_full or multi_gpu accelerate config (diffalign train --list-accelerate)"
        )


def check_resume_batch(saved: dict | None, current: dict, checkpoint: str) -> None:
    """Resuming on another number of processes is exact when the global sizes (per-process sizes x
    processes, see ``Trainer.global_batch``) are the checkpoint's; otherwise stop with one line."""
    if not saved or saved == current:
        return
    diff = ", ".join(f"{k} {saved.get(k)} -> {current.get(k)}" for k in sorted(set(saved) | set(current))
                     if saved.get(k) != current.get(k))
    raise ValueError(
        f"{checkpoint} was trained with other global batch sizes ({diff}); sizes in a recipe are per process: "
        "resume on N processes with per-process sizes = global / N (e.g. batch_size) so the run continues exactly"
    )


def accelerator_kwargs() -> dict:
    """Extra ``Accelerator`` arguments for the way the run was launched (after :func:`check_launch`)."""
    check_launch()
    return {"cpu": True} if use_cpu_processes() else {}
