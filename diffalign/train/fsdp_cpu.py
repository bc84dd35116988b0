"""FSDP2 through the trainer on a machine without GPU: torch's ``fully_shard`` over gloo ranks.

accelerate 1.16 builds FSDP only on CUDA: on CPU ``Accelerator(cpu=True)`` with an FSDP2 config gives
plain DDP (``DistributedType.MULTI_CPU``). When an FSDP2 accelerate config is launched on a machine
without GPU (``accelerate launch --config_file fsdp2_lora.yaml`` or ``torchrun`` with
``ACCELERATE_USE_FSDP=true FSDP_VERSION=2``, several processes), the trainer keeps accelerate for the
processes (gloo ranks, the optimizer wrapper, accumulation) and shards the trainable network with
``torch.distributed.fsdp.fully_shard`` as accelerate's own FSDP2 preparation does on CUDA: every
module of a class named by ``fsdp_transformer_layer_cls_to_wrap`` (default: the model's
``_no_split_modules``), bottom-up, then the root. On CUDA accelerate's plugin is used unchanged.

Checkpoints of such runs are ``torch.distributed.checkpoint`` folders (every rank writes its shards;
loading reshards, so a checkpoint resumes on any number of processes, sharded or not); the outputs
come from the full state dict gathered on the main process (:func:`full_state_dict`,
:func:`unsharded_copy`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from diffalign.train import distributed

_TRUE = ("1", "true", "yes")


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.lower() in _TRUE


def requested() -> bool:
    """An FSDP2 accelerate config launched on a machine without GPU (what this module runs)."""
    return distributed.requested_engine() == "FSDP" and distributed.fsdp_version() == 2 and not distributed.has_accelerator_device()


@dataclass
class CpuFsdp2:
    """The FSDP2 settings of the launching accelerate config (``FSDP_*`` variables) that apply on CPU."""

    reshard_after_forward: bool = True
    #: class names sharded as their own unit (None: the model's ``_no_split_modules``).
    wrap_classes: tuple[str, ...] | None = None
    #: ``fsdp_auto_wrap_policy``: TRANSFORMER_BASED_WRAP (blocks, then the root) or NO_WRAP (the root only).
    auto_wrap: bool = True
    activation_checkpointing: bool = False

    @classmethod
    def from_env(cls) -> "CpuFsdp2":
        """Read the launcher's variables; what FSDP2 on CPU cannot do is a one-line error."""
        world = distributed.launched_world_size()
        if world < 2:
            raise RuntimeError(
                "the FSDP2 accelerate config on a machine without GPU needs several processes (it shards over them): "
                "launch `torchrun --nproc_per_node N -m diffalign train RECIPE` with N >= 2, or drop the config")
        if _flag("FSDP_OFFLOAD_PARAMS"):
            raise RuntimeError("fsdp_offload_params moves FSDP shards to CPU memory for GPUs; on a machine without GPU "
                               "they already are there: set fsdp_offload_params: false in the accelerate config")
        policy = os.environ.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
        if policy not in ("TRANSFORMER_BASED_WRAP", "NO_WRAP"):
            raise RuntimeError(f"fsdp_auto_wrap_policy {policy} is not supported by FSDP2 on CPU: use TRANSFORMER_BASED_WRAP "
                               "(the model's blocks) or NO_WRAP")
        names = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP")
        return cls(
            reshard_after_forward=_flag("FSDP_RESHARD_AFTER_FORWARD", True),
            wrap_classes=tuple(n.strip() for n in names.split(",") if n.strip()) if names else None,
            auto_wrap=policy == "TRANSFORMER_BASED_WRAP",
            activation_checkpointing=_flag("FSDP_ACTIVATION_CHECKPOINTING"),
        )

    def shard(self, module: torch.nn.Module) -> list[str]:
        """``fully_shard`` the blocks of ``module`` (bottom-up) and then ``module`` itself, in place
        (its parameters become ``DTensor`` shards: build the optimizer afterwards). Returns the
        sharded blocks' class names."""
        names = self.wrap_classes if self.wrap_classes is not None else tuple(getattr(module, "_no_split_modules", None) or ())
        present = {type(m).__name__ for m in module.modules()}
        missing = [n for n in names if n not in present] if self.wrap_classes is not None else []
        if missing:
            raise ValueError(f"fsdp_transformer_layer_cls_to_wrap names {missing}, which {type(module).__name__} does not have")
        from torch.distributed.fsdp import FSDPModule, fully_shard

        wrap = set(names) & present if self.auto_wrap else set()
        blocks = [m for m in _children_bottom_up(module)[:-1] if type(m).__name__ in wrap]
        for block in blocks:
            if not isinstance(block, FSDPModule):
                fully_shard(block, reshard_after_forward=self.reshard_after_forward)
        fully_shard(module, reshard_after_forward=self.reshard_after_forward)
        return sorted({original_class(b).__name__ for b in blocks})


def _children_bottom_up(module: torch.nn.Module) -> list[torch.nn.Module]:
    """Every submodule, children before their parents, ``module`` last (accelerate's order)."""
    out: list[torch.nn.Module] = []

    def visit(m: torch.nn.Module) -> None:
        for child in m.children():
            visit(child)
        out.append(m)

    visit(module)
    return out


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether ``module`` (or one of its submodules) was sharded with ``fully_shard``."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in module.modules())


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict, gathered on CPU (a collective: call on every process); complete on
    rank 0, empty on the others."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def original_class(module: torch.nn.Module) -> type:
    """The class ``fully_shard`` subclassed (``FSDPUNet2DConditionModel`` -> ``UNet2DConditionModel``)."""
    from torch.distributed.fsdp import FSDPModule

    cls = type(module)
    while issubclass(cls, FSDPModule) and cls is not FSDPModule:
        cls = next(b for b in cls.__bases__ if b is not FSDPModule)
    return cls


def unsharded_copy(module: torch.nn.Module, full: dict[str, torch.Tensor], lora_config=None,
                   adapter_name: str = "default") -> torch.nn.Module:
    """A plain (unsharded) copy of the sharded diffusers network ``module`` holding ``full`` (from
    :func:`full_state_dict`): built on the meta device from its config (with the same peft LoRA
    when ``lora_config`` is given) and filled with the gathered tensors, buffers copied. For the
    outputs (a pipeline folder, a merged export) on the main process."""
    cls = original_class(module)
    with torch.device("meta"):
        copy = cls.from_config(module.config)
        if lora_config is not None:
            copy.add_adapter(lora_config, adapter_name=adapter_name)
    missing, unexpected = copy.load_state_dict(full, strict=False, assign=True)
    buffers = dict(module.named_buffers())
    missing = [k for k in missing if k not in buffers]
    if missing or unexpected:
        raise RuntimeError(f"the gathered state dict does not fit {cls.__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, buf in buffers.items():
        owner, _, leaf = name.rpartition(".")
        target = copy.get_submodule(owner) if owner else copy
        target.register_buffer(leaf, buf.detach().clone(), persistent=leaf not in target._non_persistent_buffers_set)
    meta = [n for n, t in [*copy.named_parameters(), *copy.named_buffers()] if t.is_meta]
    if meta:
        raise RuntimeError(f"unsharded copy of {cls.__name__}: {meta[:5]} not filled")
    return copy.requires_grad_(False).eval()


def grad_norm(value) -> float:
    """A clipping norm as a float (a ``DTensor`` under FSDP2: its full value)."""
    full = getattr(value, "full_tensor", None)
    return float(full() if callable(full) else value)
