"""Atomic training checkpoints: ``OUT/checkpoints/step-000100/``.

A checkpoint is written into a hidden temporary folder, flushed, then renamed into place in one
``os.replace``; a crash while saving leaves the previous checkpoint untouched and at most a stale
``.tmp-*`` folder, which is ignored and cleaned up (an error such as a full disk removes it at once). Contents:

- ``trainable.safetensors``: the trainable parameters by name (LoRA weights, or the full network);
- ``optimizer.pt`` / ``lr_scheduler.pt``: their ``state_dict()`` (read back with
  ``torch.load(weights_only=True)``);
- ``state.json``: the global step and whatever small JSON state the trainer adds;
- ``extra.safetensors`` (optional): other tensors a trainer keeps (e.g. EMA weights);
- ``pytorch_lora_weights.safetensors`` (LoRA runs): the trained LoRA in diffusers' layout, so
  ``pipe.load_lora_weights("OUT/checkpoints/step-000100")`` loads an intermediate checkpoint like
  the final output (as diffusers' training scripts' ``checkpoint-*`` folders do).

Sharded runs (FSDP / DeepSpeed, or ``checkpoint_format: accelerate``) write the model and optimizer
through accelerate's ``save_state`` instead (``accelerate_state/``: every process writes its shards;
FSDP's sharded state dicts go through ``torch.distributed.checkpoint``, which reshards on load), with
the same hidden temporary folder, ``state.json`` written last and one rename
(:func:`save_accelerate_checkpoint` / :func:`load_accelerate_checkpoint`). FSDP2 runs on CPU (torch's
``fully_shard``, :mod:`diffalign.train.fsdp_cpu`) write ``dcp/`` with ``torch.distributed.checkpoint``
(trainable weights, optimizer state by parameter name, extra tensors; every process its shards),
which any run loads, sharded or not, on any number of processes (:func:`save_dcp_checkpoint` /
:func:`load_dcp_checkpoint`).

Trainers draw every random number from generators seeded by ``(seed, step)`` and order data by
``(seed, epoch)``, so restoring the step restores the randomness: resuming continues exactly.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)$")
TRAINABLE_FILE = "trainable.safetensors"
EXTRA_FILE = "extra.safetensors"
STATE_FILE = "state.json"
ACCELERATE_DIR = "accelerate_state"
DCP_DIR = "dcp"


@dataclass
class Checkpoint:
    path: str
    step: int


def list_checkpoints(output_dir: str) -> list[Checkpoint]:
    """Complete checkpoints under ``output_dir``, oldest first."""
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = _NAME.match(name)
        if m and os.path.exists(os.path.join(root, name, STATE_FILE)):
            found.append(Checkpoint(os.path.join(root, name), int(m.group(1))))
    return sorted(found, key=lambda c: c.step)


def resolve_resume(output_dir: str, resume: str | None) -> Checkpoint | None:
    """``None``/``""`` -> no resume; ``"latest"`` -> newest complete checkpoint (or none yet);
    a path -> that checkpoint folder (must be complete)."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = os.path.abspath(resume)
    if not os.path.exists(os.path.join(path, STATE_FILE)):
        raise FileNotFoundError(f"resume={resume}: no {STATE_FILE} there, not a complete diffalign checkpoint")
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return Checkpoint(path, int(json.load(f)["step"]))


def save_checkpoint(
    output_dir: str,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any = None,
    extra_state: dict[str, Any] | None = None,
    keep_last: int | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    adapter: Any = None,
) -> str:
    """Write a complete checkpoint for ``step`` atomically; prune to ``keep_last``; return its path.
    ``extra_tensors`` (e.g. EMA weights) go to ``extra.safetensors``; with ``adapter`` (a
    :class:`~diffalign.pipelines.PipelineAdapter` holding a LoRA) its ``pytorch_lora_weights.safetensors``
    is written too."""
    from safetensors.torch import save_file

    root = os.path.join(output_dir, CHECKPOINT_DIR)
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"step-{step:06d}")
    tmp = os.path.join(root, f".tmp-step-{step:06d}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, os.path.join(tmp, TRAINABLE_FILE))
        if adapter is not None:
            adapter.save_lora(tmp)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
        _write_small_files(tmp, step, lr_scheduler, extra_state, extra_tensors)
    except BaseException:  # a full disk, an interrupt: leave no half-written folder (the previous checkpoint stays)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _publish(output_dir, tmp, final, keep_last)


def _publish(output_dir: str, tmp: str, final: str, keep_last: int | None) -> str:
    """Rename a complete temporary checkpoint into place, clean stale ones, prune to ``keep_last``."""
    if os.path.exists(final):  # re-saving the same step: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _remove_stale_tmp(os.path.dirname(final), keep=tmp)
    if keep_last:
        for old in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(old.path, ignore_errors=True)
    return final


def _write_small_files(tmp: str, step: int, lr_scheduler, extra_state, extra_tensors) -> None:
    from safetensors.torch import save_file

    if extra_tensors:
        save_file({k: v.detach().contiguous().cpu() for k, v in extra_tensors.items()}, os.path.join(tmp, EXTRA_FILE))
    if lr_scheduler is not None:
        torch.save(lr_scheduler.state_dict(), os.path.join(tmp, "lr_scheduler.pt"))
    with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:  # last: marks the folder complete
        json.dump({"step": step, **(extra_state or {})}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def save_accelerate_checkpoint(
    accelerator,
    output_dir: str,
    step: int,
    lr_scheduler: Any = None,
    extra_state: dict[str, Any] | None = None,
    keep_last: int | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    write_outputs=None,
) -> str | None:
    """Called on EVERY process: ``accelerator.save_state`` (each process writes its shards of the
    prepared model and optimizer) into a hidden temporary folder; then the main process adds the
    schedule, ``extra_tensors``, whatever ``write_outputs(folder)`` writes (the gathered LoRA) and
    ``state.json``, and renames the folder into place. Returns the path on the main process."""
    return _save_sharded(accelerator, output_dir, step, lambda tmp: accelerator.save_state(os.path.join(tmp, ACCELERATE_DIR)),
                         "accelerate", lr_scheduler, extra_state, keep_last, extra_tensors, write_outputs)


def save_dcp_checkpoint(
    accelerator,
    output_dir: str,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any = None,
    extra_state: dict[str, Any] | None = None,
    keep_last: int | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    write_outputs=None,
) -> str | None:
    """Called on EVERY process: the trainable weights of ``model`` (the unwrapped network, sharded or
    not), the ``optimizer``'s state (by parameter name) and ``extra_tensors`` go through
    ``torch.distributed.checkpoint`` into ``dcp/`` (every process writes its shards; loading
    reshards them to any number of processes, see :func:`load_dcp_checkpoint`); then as
    :func:`save_accelerate_checkpoint` (schedule, outputs, ``state.json`` last, one rename)."""
    import torch.distributed.checkpoint as dcp

    state = _dcp_state(model, optimizer, extra_tensors)
    return _save_sharded(accelerator, output_dir, step, lambda tmp: dcp.save(state, checkpoint_id=os.path.join(tmp, DCP_DIR)),
                         "dcp", lr_scheduler, extra_state, keep_last, None, write_outputs)


def _dcp_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, extra_tensors: dict | None) -> dict:
    """What a DCP checkpoint holds, named as in any process layout: the trainable weights by name (a
    LoRA checkpoint holds the LoRA, not the frozen base), the optimizer state by parameter name, extras."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    weights = {k: v for k, v in get_model_state_dict(model).items() if k in trainable}
    state = {"model": weights}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    if extra_tensors:
        state["extra"] = dict(extra_tensors)
    return state


def load_dcp_checkpoint(
    checkpoint: Checkpoint | str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Called on every process (or in a plain one-process run): read ``dcp/`` resharded to this run's
    layout into ``model`` (unwrapped; sharded or not), ``optimizer`` and the tensors shaped like
    ``extra_tensors`` (the trainer's current ones); then the schedule. Returns ``state.json`` and the
    extra tensors."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    path = checkpoint.path if isinstance(checkpoint, Checkpoint) else str(checkpoint)
    state = _dcp_state(model, optimizer, extra_tensors)
    try:
        dcp.load(state, checkpoint_id=os.path.join(path, DCP_DIR))
    except Exception as e:  # keys or shapes of another model: say which checkpoint
        raise ValueError(f"checkpoint {path} does not match the model being trained: {str(e).splitlines()[0][:300]}") from e
    set_model_state_dict(model, state["model"], options=StateDictOptions(strict=False))
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optimizer"])
    if lr_scheduler is not None and os.path.exists(os.path.join(path, "lr_scheduler.pt")):
        lr_scheduler.load_state_dict(torch.load(os.path.join(path, "lr_scheduler.pt"), weights_only=True))
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return json.load(f), state.get("extra", {})


def is_dcp_checkpoint(checkpoint: Checkpoint | str) -> bool:
    path = checkpoint.path if isinstance(checkpoint, Checkpoint) else str(checkpoint)
    return os.path.isdir(os.path.join(path, DCP_DIR))


def _save_sharded(accelerator, output_dir, step, write_shards, fmt, lr_scheduler, extra_state, keep_last,
                  extra_tensors, write_outputs) -> str | None:
    """Every process writes its shards (``write_shards(tmp)``) into the hidden temporary folder; the
    main process adds the rest, ``state.json`` last, and renames it into place."""
    root = os.path.join(output_dir, CHECKPOINT_DIR)
    final = os.path.join(root, f"step-{step:06d}")
    tmp = os.path.join(root, f".tmp-step-{step:06d}-shards")
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    accelerator.wait_for_everyone()
    write_shards(tmp)
    accelerator.wait_for_everyone()
    path = None
    if main:
        try:
            if write_outputs is not None:
                write_outputs(tmp)
            _write_small_files(tmp, step, lr_scheduler, {**(extra_state or {}), "format": fmt}, extra_tensors)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        path = _publish(output_dir, tmp, final, keep_last)
    accelerator.wait_for_everyone()
    return path


def is_accelerate_checkpoint(checkpoint: Checkpoint | str) -> bool:
    path = checkpoint.path if isinstance(checkpoint, Checkpoint) else str(checkpoint)
    return os.path.isdir(os.path.join(path, ACCELERATE_DIR))


def load_accelerate_checkpoint(accelerator, checkpoint: Checkpoint | str, lr_scheduler: Any = None) -> dict[str, Any]:
    """Called on every process: ``accelerator.load_state`` (shards resharded to this run's processes
    where the engine supports it), then the schedule; returns ``state.json``."""
    path = checkpoint.path if isinstance(checkpoint, Checkpoint) else str(checkpoint)
    accelerator.load_state(os.path.join(path, ACCELERATE_DIR))
    if lr_scheduler is not None and os.path.exists(os.path.join(path, "lr_scheduler.pt")):
        lr_scheduler.load_state_dict(torch.load(os.path.join(path, "lr_scheduler.pt"), weights_only=True))
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def load_checkpoint(
    checkpoint: Checkpoint | str,
    parameters: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any = None,
) -> dict[str, Any]:
    """Restore parameters (by name, strictly), optimizer and scheduler; return ``state.json``."""
    from safetensors.torch import load_file

    path = checkpoint.path if isinstance(checkpoint, Checkpoint) else str(checkpoint)
    weights = load_file(os.path.join(path, TRAINABLE_FILE))
    missing = sorted(set(parameters) - set(weights))
    unexpected = sorted(set(weights) - set(parameters))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match the model being trained: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    with torch.no_grad():
        for name, param in parameters.items():
            param.copy_(weights[name].to(param.device, param.dtype))
    if optimizer is not None and os.path.exists(os.path.join(path, "optimizer.pt")):
        optimizer.load_state_dict(torch.load(os.path.join(path, "optimizer.pt"), weights_only=True, map_location="cpu"))
    if lr_scheduler is not None and os.path.exists(os.path.join(path, "lr_scheduler.pt")):
        lr_scheduler.load_state_dict(torch.load(os.path.join(path, "lr_scheduler.pt"), weights_only=True))
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def load_extra_tensors(checkpoint: Checkpoint | str) -> dict[str, torch.Tensor]:
    """The ``extra_tensors`` a checkpoint was saved with (empty when it has none)."""
    from safetensors.torch import load_file

    path = checkpoint.path if isinstance(checkpoint, Checkpoint) else str(checkpoint)
    file = os.path.join(path, EXTRA_FILE)
    return load_file(file) if os.path.exists(file) else {}


def _remove_stale_tmp(root: str, keep: str) -> None:
    for name in os.listdir(root):
        p = os.path.join(root, name)
        if name.startswith(".tmp-") and p != keep:
            shutil.rmtree(p, ignore_errors=True)
