"""Config dataclasses shared by every trainer (TRL-style: one config per trainer on a shared base).

A recipe YAML fills these (see ``recipes/``); any field can be overridden on the command line as
``key=value`` with dotted paths (``optim.lr=1e-5``, ``lora.rank=16``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from diffalign.config import apply_parsers, bounded, choice, parsed
from diffalign.pipelines.models import ModelConfig  # noqa: F401 (part of the trainer configs)
from diffalign.utils.dtypes import mixed_precision_name

OPTIMIZERS = ("adamw", "adamw8bit", "adafactor")
REPORTERS = ("jsonl", "tensorboard", "wandb")


def _trainer_names() -> list[str]:
    from diffalign.train import TRAINERS

    return TRAINERS.names()


def _scheduler_names() -> list[str]:
    from diffusers.optimization import SchedulerType

    return [s.value for s in SchedulerType]


@dataclass
class LoraConfig:
    #: train a peft LoRA (reference = adapters disabled); False = full fine-tuning of the network
    #: (reference = a frozen copy).
    enabled: bool = True
    rank: int = bounded(8, 1)
    #: LoRA alpha; defaults to the rank (scale 1).
    alpha: Optional[float] = None
    #: module names on the denoiser; default: the family's attention projections.
    target_modules: Optional[list[str]] = None
    init: str = "gaussian"
    dropout: float = bounded(0.0, 0)

    def __post_init__(self) -> None:
        apply_parsers(self)


@dataclass
class OptimConfig:
    #: adamw | adamw8bit (bitsandbytes) | adafactor (transformers)
    optimizer: str = choice("adamw", OPTIMIZERS)
    lr: float = bounded(1e-5, 0, exclusive=True)
    #: multiply lr by the number of processes x gradient accumulation x per-device batch
    #: (the official Diffusion-DPO launchers' convention).
    scale_lr: bool = False
    weight_decay: float = bounded(1e-2, 0)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = bounded(1e-8, 0)
    max_grad_norm: float = bounded(1.0, 0)
    #: any diffusers.optimization scheduler name: constant, constant_with_warmup, linear, cosine, ...
    lr_scheduler: str = choice("constant_with_warmup", _scheduler_names)
    warmup_steps: int = bounded(0, 0)

    def __post_init__(self) -> None:
        apply_parsers(self)


@dataclass
class ValidationConfig:
    #: prompts sampled at fixed seeds every ``every_steps`` optimizer steps (0 = never).
    prompts: list[str] = field(default_factory=list)
    every_steps: int = bounded(0, 0)
    num_inference_steps: int = bounded(20, 1)
    guidance_scale: float = 5.0
    seed: int = 0


@dataclass
class PushToHubConfig:
    #: Hub repo to upload the final outputs and model card to (unset = no upload).
    repo_id: Optional[str] = None
    private: bool = True
    #: license written in the model card's metadata (default ``other``).
    license: Optional[str] = None


@dataclass
class WandbConfig:
    #: wandb project / entity / run name (default: the output folder's name) / tags, for ``report_to: [wandb]``.
    project: str = "diffalign"
    entity: Optional[str] = None
    name: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Fields every trainer has."""

    #: which trainer runs the recipe (see ``diffalign.train.TRAINERS``); set by each trainer's config.
    trainer: str = choice("offline", _trainer_names)
    output_dir: str = "outputs/run"
    seed: int = 0
    #: optimizer steps to train for.
    max_steps: int = bounded(100, 0)
    #: examples per device per micro-batch (pairs for pairwise methods).
    batch_size: int = bounded(1, 1)
    gradient_accumulation_steps: int = bounded(1, 1)
    #: no | fp16 | bf16 (autocast; trainable weights and all loss math stay fp32); float16, bfloat16
    #: and fp32/float32 (= no) are accepted too.
    mixed_precision: str = parsed("no", mixed_precision_name)
    allow_tf32: bool = True
    #: DDP: allow trainable parameters that get no gradient in a step (needed for SD3 LoRA on the
    #: attention context projections of the last block, whose outputs are discarded).
    ddp_find_unused_parameters: bool = False
    #: save a checkpoint every N optimizer steps (0 = only at the end).
    checkpointing_steps: int = bounded(0, 0)
    checkpoints_total_limit: Optional[int] = bounded(None, 1)
    #: auto (accelerate's save_state for FSDP / DeepSpeed runs, whose weights are sharded; the
    #: trainable weights by name otherwise) | accelerate | trainable.
    checkpoint_format: str = choice("auto", ("auto", "accelerate", "trainable"))
    #: ``latest`` or a checkpoint folder; unset = start fresh.
    resume: Optional[str] = None
    #: a fresh run into a folder holding another run's files refuses unless this is true (then the
    #: old run's files are removed first); see ``diffalign.train.rundir``.
    overwrite: bool = False
    #: any of jsonl (always on), tensorboard, wandb.
    report_to: list[str] = field(default_factory=lambda: ["jsonl"], metadata={"choices": REPORTERS})
    #: what to write at the end: lora | pipeline | both (full fine-tuning: pipeline).
    save: str = choice("lora", ("lora", "pipeline", "both"))
    #: extra LoRA export written beside the diffusers file: diffusers (none) | kohya | comfyui | merged.
    save_format: str = choice("diffusers", ("diffusers", "kohya", "comfyui", "merged"))
    push_to_hub: PushToHubConfig = field(default_factory=PushToHubConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    #: torch threads on CPU (0 = torch's default).
    num_threads: int = bounded(0, 0)
    #: CPU training: glibc malloc keeps freed memory for reuse (no per-step page-fault storm; faster
    #: steps, no higher peak; see diffalign.utils.memory). No effect with a GPU or another C library.
    cpu_reuse_freed_memory: bool = True
    progress_bar: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    removed_keys: ClassVar[dict[str, str]] = {"extra": "it was never read"}

    def __post_init__(self) -> None:
        apply_parsers(self)
