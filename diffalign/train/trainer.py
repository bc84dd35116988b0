"""The trainer template every diffalign trainer fills in.

:class:`Trainer` fixes the order of the phases and owns what they share: accelerate (one to many
processes), the model adapter with a LoRA adapter or full fine-tuning plus its reference, optimizer
and schedule, exact resume, atomic checkpoints, logs and the final diffusers-loadable output. A
trainer fills in the phases:

- **set-up** (:meth:`Trainer.setup`): its data, prompts, reward... (the network, optimizer and
  schedule are already built);
- **step** (:meth:`Trainer.step`): one step of the run (the offline trainer: one optimizer step over
  ``gradient_accumulation_steps`` micro-batches; online trainers: one iteration of sampling and
  updates); returns the stats to log;
- **evaluate** (:meth:`Trainer.evaluate`): held-out metrics and sample grids when due;
- **checkpoint** (:meth:`Trainer.checkpoint` with the hooks :meth:`Trainer.checkpoint_state`,
  :meth:`Trainer.checkpoint_tensors`, :meth:`Trainer.restore_checkpoint_state`);
- **export** (:meth:`Trainer.export`): the LoRA and/or pipeline (inside :meth:`Trainer.evaluation_weights`).

``train()`` = resume -> evaluate(0) -> [step -> evaluate -> log -> checkpoint] x max_steps -> export.
No trainer overrides ``train()``: the loop exists once.

Randomness is a pure function of ``(seed, step)`` and the place of each example / rollout in the
batch over all processes (every trainer seeds its generators from them), so W processes with batch
b run exactly like one with batch W x b and a run resumed from a checkpoint continues exactly like
an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from dataclasses import dataclass
from typing import Iterator

import torch

from diffalign.config import config_to_dict, save_config
from diffalign.pipelines import PipelineAdapter
from diffalign.pipelines.checkpointing import resolve_checkpoint_blocks
from diffalign.pipelines.models import (
    check_offload_device, configure_adapter, load_model, offload_frozen, use_vae_gradient_checkpointing,
)
from diffalign.train import fsdp_cpu
from diffalign.train.checkpoint import (
    is_accelerate_checkpoint, is_dcp_checkpoint, load_accelerate_checkpoint, load_checkpoint, load_dcp_checkpoint,
    load_extra_tensors, resolve_resume, save_accelerate_checkpoint, save_checkpoint, save_dcp_checkpoint,
)
from diffalign.train.config import TrainConfig
from diffalign.train.distributed import accelerator_kwargs, check_engine, check_resume_batch
from diffalign.train.metrics import MetricsLogger
from diffalign.train.optim import build_lr_scheduler, build_optimizer
from diffalign.train.precision import describe_precision
from diffalign.train.rundir import check_output_dir, clear_previous_run
from diffalign.utils.dtypes import mixed_precision_name, torch_dtype
from diffalign.utils.hub import resolve_model_commit



@dataclass
class TrainResult:
    output_dir: str
    steps: int
    lora_path: str | None
    pipeline_path: str | None
    metrics_path: str


class Trainer:
    """The template. Subclasses implement :meth:`setup` and :meth:`step`, and override
    :meth:`evaluate`, the checkpoint hooks and :meth:`evaluation_weights` when they have more to do."""

    config_class: type[TrainConfig] = TrainConfig
    #: logged stats shown on the progress bar.
    progress_keys: tuple[str, ...] = ("loss",)
    #: gradients accumulated by hand with ``accelerator.no_sync`` (DeepSpeed ZeRO cannot run it).
    syncs_by_hand: bool = False

    def __init__(self, config: TrainConfig, adapter: PipelineAdapter | None = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

        self.config = config
        if config.model.quantize != "none" and not config.lora.enabled:
            raise ValueError(f"model.quantize={config.model.quantize} freezes the base network in quantized form: train a "
                             "LoRA on top (lora.enabled: true) or set model.quantize=none for full fine-tuning")
        check_output_dir(config.output_dir, config.resume, config.overwrite)  # before loading anything
        check_engine(getattr(config, "trainer", type(self).__name__), self.syncs_by_hand)
        #: FSDP2 asked on a machine without GPU: torch's fully_shard over the gloo ranks (accelerate builds it on CUDA only)
        self.cpu_fsdp = fsdp_cpu.CpuFsdp2.from_env() if fsdp_cpu.requested() else None
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        if config.cpu_reuse_freed_memory and not torch.cuda.is_available():
            from diffalign.utils.memory import reuse_freed_memory

            reuse_freed_memory()
        if config.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.accelerator = Accelerator(
            mixed_precision=mixed_precision_name(config.mixed_precision),
            gradient_accumulation_steps=self.accelerator_accumulation_steps(),
            project_config=ProjectConfiguration(project_dir=config.output_dir),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.ddp_find_unused_parameters)],
            **accelerator_kwargs(),
        )
        self.is_main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        precision = describe_precision(self.accelerator, config.model.weight_dtype)
        if precision:
            self.accelerator.print(precision)
        weight_dtype = torch_dtype(config.model.weight_dtype)
        offload = config.model.offload_frozen
        if offload:
            check_offload_device(self.device)  # before loading anything
        # with offload_frozen the pipeline is loaded in CPU memory and only the denoiser goes to the GPU
        self.adapter = adapter if adapter is not None else load_model(
            config.model, device="cpu" if offload else self.device, dtype=weight_dtype, run_device=self.device)
        configure_adapter(self.adapter, config.model)
        if offload:
            offload_frozen(self.adapter, self.device)
            self.adapter.denoiser.to(self.device)
        else:
            self.adapter.to(device=self.device)
        self.logger: MetricsLogger | None = None
        self.setup_network()
        self.setup()

    # ------------------------------------------------------------------ phases to fill in
    def setup(self) -> None:
        """Set-up phase: the trainer's data, prompts, reward (the network and optimizer exist)."""

    def step(self, index: int) -> dict[str, float]:
        """Step phase: run step ``index`` (0-based) of the run and return the stats to log."""
        raise TypeError(f"{type(self).__name__} must implement step()")

    def evaluate(self, step: int) -> dict[str, float]:
        """Evaluate phase, called before training (``step`` 0) and after every step: the validation
        grid every ``validation.every_steps`` steps; trainers add held-out metrics (returned to log)."""
        val = self.config.validation
        if step and val.every_steps and step % val.every_steps == 0:
            self.validate(step)
        return {}

    def checkpoint_state(self) -> dict:
        """Small JSON state saved with every checkpoint (beyond weights/optimizer/schedule)."""
        return {}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Extra tensors saved with every checkpoint (e.g. EMA weights)."""
        return {}

    def restore_checkpoint_state(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what ``checkpoint_state`` / ``checkpoint_tensors`` saved."""

    @contextlib.contextmanager
    def evaluation_weights(self) -> Iterator[None]:
        """Weights used for evaluation and the exported outputs (EMA trainers swap theirs in)."""
        yield

    def close(self) -> None:
        """Release what the set-up started (worker threads); called when the loop ends or fails."""

    # ------------------------------------------------------------------ hooks with defaults
    def accelerator_accumulation_steps(self) -> int:
        """Gradient accumulation accelerate manages (trainers that sync by hand return 1)."""
        return 1

    def num_optimizer_steps(self) -> int:
        """Optimizer steps of the whole run (the length of the lr schedule)."""
        return self.config.max_steps

    def global_batch(self) -> dict[str, int]:
        """Sizes over all processes that make a step (saved with checkpoints: a run resumed on another
        number of processes must keep them to continue exactly)."""
        cfg = self.config
        return {"batch": cfg.batch_size * cfg.gradient_accumulation_steps * self.accelerator.num_processes}

    def latent_positions(self) -> int | None:
        """Latent positions (examples x latent height x latent width) of one training micro-batch, for
        ``model.checkpoint_blocks: auto``; None where the trainer does not fix it (nothing is then
        checkpointed by ``auto``)."""
        return None

    # ------------------------------------------------------------------ set-up of the network
    def setup_network(self) -> None:
        """LoRA (trainable weights upcast to fp32) or full fine-tuning with a frozen reference copy;
        optimizer and schedule; everything through ``accelerator.prepare``."""
        from diffusers.training_utils import cast_training_params

        cfg, adapter = self.config, self.adapter
        if cfg.model.attention:
            adapter.set_attention_backend(cfg.model.attention)
        if cfg.lora.enabled:
            # the LoRA initialisation draws from the run's seed, not from whatever state earlier work
            # (model loading, sampling) left the global generator in: same seed, same run
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(cfg.seed)
                adapter.add_lora(
                    rank=cfg.lora.rank, alpha=cfg.lora.alpha, target_modules=cfg.lora.target_modules,
                    init_lora_weights=cfg.lora.init, dropout=cfg.lora.dropout,
                )
            # trainable weights stay fp32 whatever the frozen weights' dtype
            cast_training_params(adapter.denoiser, dtype=torch.float32)
        else:
            adapter.freeze()
            reference = copy.deepcopy(adapter.denoiser).requires_grad_(False).eval()
            adapter.set_reference_network(reference)
            adapter.denoiser.float().requires_grad_(True)
        cpu_fsdp_ckpt = self.cpu_fsdp is not None and self.cpu_fsdp.activation_checkpointing
        blocks = [] if cpu_fsdp_ckpt else resolve_checkpoint_blocks(
            cfg.model.checkpoint_blocks, cfg.model.gradient_checkpointing, adapter.denoiser, self.latent_positions())
        if blocks is not None:
            adapter.enable_gradient_checkpointing(blocks or None)
        if blocks and cfg.model.checkpoint_blocks == "auto":
            self.accelerator.print(f"activation checkpointing in {', '.join(blocks)} only (model.checkpoint_blocks: auto, "
                                   f"{self.latent_positions()} latent positions per micro-batch)")
        if cfg.model.vae_gradient_checkpointing:
            use_vae_gradient_checkpointing(adapter.pipe)
        if cfg.model.compile:
            adapter.compile_network()
        adapter.denoiser.train()
        lr = cfg.optim.lr
        if cfg.optim.scale_lr:
            lr *= self.accelerator.num_processes * cfg.gradient_accumulation_steps * cfg.batch_size
        if self.cpu_fsdp is not None:  # shard in place first: the optimizer holds the DTensor shards
            blocks = self.cpu_fsdp.shard(adapter.denoiser)
            self.accelerator.print(f"FSDP2 on CPU: torch fully_shard over {self.accelerator.num_processes} gloo processes "
                                   f"(blocks: {', '.join(blocks) or 'none'}; then the whole {adapter.denoiser_name})")
        self.optimizer = build_optimizer(adapter.trainable_parameters(), cfg.optim, lr=lr)
        # the schedule is NOT passed to accelerator.prepare: accelerate's wrapper steps it num_processes
        # times per optimizer step (it assumes a data loader shrunk W times); it counts optimizer steps
        # here (clip_and_step), so the lr at every step is the one-process run's on any number of processes
        self.lr_scheduler = build_lr_scheduler(self.optimizer, cfg.optim, self.num_optimizer_steps())
        if self.cpu_fsdp is not None:  # the network is already sharded: accelerate wraps the optimizer only
            network, self.optimizer = adapter.denoiser, self.accelerator.prepare(self.optimizer)
        else:
            network, self.optimizer = self.accelerator.prepare(adapter.denoiser, self.optimizer)
        adapter.bind_network(network)
        self.network = network

    def trainable_named_parameters(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.adapter.denoiser.named_parameters() if p.requires_grad}

    def clip_and_step(self) -> dict[str, float]:
        """Clip the gradients (``optim.max_grad_norm`` > 0), step the optimizer and the schedule,
        clear the gradients; return ``grad_norm`` when clipped."""
        stats = {}
        max_norm = self.config.optim.max_grad_norm
        if self.accelerator.sync_gradients and max_norm > 0:
            stats["grad_norm"] = fsdp_cpu.grad_norm(self.accelerator.clip_grad_norm_(self.adapter.trainable_parameters(), max_norm))
        self.optimizer.step()
        # once per optimizer step that really happened (not on accumulation micro-steps, nor skipped fp16 steps)
        if self.accelerator.sync_gradients and not getattr(self.optimizer, "step_was_skipped", False):
            self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    # ------------------------------------------------------------------ the loop (the template)
    def train(self) -> TrainResult:
        """Resume if asked, run the phases to ``max_steps``, checkpoint and export the outputs."""
        cfg = self.config
        start_step = self.resume()
        logger = self.logger
        try:
            if start_step == 0:
                stats = self.evaluate(0)
                if stats:
                    logger.log(0, stats)
            bar = self.progress_bar(start_step)
            for index in range(start_step, cfg.max_steps):
                t0 = time.time()
                stats = self.step(index)
                done = index + 1
                stats.update(lr=self.lr_scheduler.get_last_lr()[0], step_time=time.time() - t0)
                stats.update(self.evaluate(done))
                logger.log(done, stats)
                bar.update(1)
                bar.set_postfix({k: f"{stats[k]:.4g}" for k in self.progress_keys if k in stats})
                if cfg.checkpointing_steps and done % cfg.checkpointing_steps == 0 and done < cfg.max_steps:
                    self.checkpoint(done)
            bar.close()
        finally:
            self.close()
        self.check_ranks_in_sync()
        if cfg.max_steps > start_step:
            self.checkpoint(cfg.max_steps)
        result = self.export()
        logger.close()
        return result

    def resume(self) -> int:
        """Create the output folder, restore the checkpoint to resume from (if any), save the
        config and open the metrics log (``self.logger``); return the step to start from."""
        cfg, acc = self.config, self.accelerator
        if cfg.overwrite and not cfg.resume and self.is_main:
            clear_previous_run(cfg.output_dir)
        acc.wait_for_everyone()
        os.makedirs(cfg.output_dir, exist_ok=True)
        start_step = 0
        ckpt = resolve_resume(cfg.output_dir, cfg.resume)
        if ckpt is not None:
            if self.cpu_fsdp is not None and not is_dcp_checkpoint(ckpt):
                raise ValueError(f"{ckpt.path} was written by an unsharded run; FSDP2 on CPU resumes from its own "
                                 "torch.distributed.checkpoint folders (dcp/): resume this one without the FSDP2 config "
                                 "(torchrun: DDP over gloo)")
            if is_dcp_checkpoint(ckpt):  # any layout: resharded to this run's processes
                state, extra = load_dcp_checkpoint(ckpt, self.adapter.denoiser, getattr(self.optimizer, "optimizer", self.optimizer),
                                                   self.lr_scheduler, self.checkpoint_tensors())
            elif is_accelerate_checkpoint(ckpt):
                state, extra = load_accelerate_checkpoint(acc, ckpt, self.lr_scheduler), load_extra_tensors(ckpt)
            else:
                state = load_checkpoint(ckpt, self.trainable_named_parameters(), self.optimizer, self.lr_scheduler)
                extra = load_extra_tensors(ckpt)
            check_resume_batch(state.get("global_batch"), self.global_batch(), ckpt.path)
            self.restore_checkpoint_state(state, extra)
            start_step = int(state["step"])
            acc.print(f"resumed from {ckpt.path} at step {start_step}")
        if self.is_main:
            save_config(cfg, os.path.join(cfg.output_dir, "config.yaml"))
        self.logger = MetricsLogger(
            cfg.output_dir, report_to=cfg.report_to, run_name=os.path.basename(cfg.output_dir.rstrip("/")),
            config=config_to_dict(cfg), resume_step=start_step if ckpt is not None else None, enabled=self.is_main,
            wandb_options=config_to_dict(cfg.wandb),
        )
        return start_step

    def progress_bar(self, start_step: int):
        from tqdm.auto import tqdm

        cfg = self.config
        return tqdm(total=cfg.max_steps, initial=start_step, disable=not (self.is_main and cfg.progress_bar), desc="train")

    def mean_over_processes(self, stats: dict[str, float]) -> dict[str, float]:
        """Per-process means (the same keys on every process) -> means over all processes, which with
        equal per-process batches are the global batch's means (what one process would log)."""
        if self.accelerator.num_processes == 1 or not stats:
            return stats
        values = torch.tensor([stats[k] for k in sorted(stats)], dtype=torch.float64, device=self.device)
        values = self.accelerator.reduce(values, reduction="mean")
        return dict(zip(sorted(stats), values.tolist()))

    def check_ranks_in_sync(self) -> None:
        """With several processes, every rank must hold the same trained weights (a gradient-sync
        bug would silently diverge them): compare a checksum across ranks."""
        acc = self.accelerator
        if acc.num_processes == 1 or self.network_sharded():  # sharded: one copy of each weight, nothing to compare
            return
        params = self.adapter.trainable_parameters()
        checksum = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1).to(self.device)
        sums = acc.gather(checksum)
        if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-9, atol=1e-9):
            raise RuntimeError(f"trained weights differ across processes (checksums {sums.tolist()}): gradients were not synchronised")

    # ------------------------------------------------------------------ checkpoint and export phases
    def network_sharded(self) -> bool:
        """Whether the network's weights are sharded over the processes (FSDP, DeepSpeed ZeRO-3, FSDP2 on
        CPU): then every forward is a collective, run by every process."""
        from accelerate.utils import DistributedType

        acc = self.accelerator
        if acc.distributed_type == DistributedType.DEEPSPEED:  # ZeRO-3 shards the weights, ZeRO-2 does not
            return getattr(acc.state.deepspeed_plugin, "zero_stage", 0) == 3
        return self.cpu_fsdp is not None or acc.distributed_type == DistributedType.FSDP

    def sharded_state(self) -> bool:
        """Whether checkpoints are written by every process (``checkpoint_format``; ``auto``: FSDP /
        DeepSpeed runs, whose weights and optimizer states are sharded over the processes, through
        accelerate's ``save_state``; FSDP2 on CPU through ``torch.distributed.checkpoint``)."""
        from accelerate.utils import DistributedType

        if self.cpu_fsdp is not None:
            return True
        fmt = self.config.checkpoint_format
        if fmt == "auto":
            return self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        return fmt == "accelerate"

    def gathered_lora_state(self) -> dict[str, torch.Tensor]:
        """The LoRA weights gathered from every process's shards (``accelerator.get_state_dict``; a
        collective: call on every process); a copy, complete on the main process."""
        if self.cpu_fsdp is not None:
            full = fsdp_cpu.full_state_dict(self.adapter.denoiser)
        else:
            full = self.accelerator.get_state_dict(self.network) or {}
        return {k: v.detach().to("cpu", copy=True) for k, v in full.items() if "lora_" in k}

    def checkpoint(self, step: int) -> str | None:
        """Checkpoint phase: write ``OUT/checkpoints/step-N`` (main process, or every process with
        sharded state); return its path."""
        acc, path, cfg = self.accelerator, None, self.config
        extra = {"config": config_to_dict(cfg), "global_batch": self.global_batch(), "num_processes": acc.num_processes}
        acc.wait_for_everyone()
        if self.sharded_state():
            lora = self.gathered_lora_state() if cfg.lora.enabled else None
            write_lora = (lambda folder: self.adapter.save_lora(folder, state_dict=lora)) if lora is not None else None
            if self.cpu_fsdp is not None:
                return save_dcp_checkpoint(
                    acc, cfg.output_dir, step, self.adapter.denoiser, self.optimizer.optimizer, self.lr_scheduler,
                    {**extra, **self.checkpoint_state()}, keep_last=cfg.checkpoints_total_limit,
                    extra_tensors=self.checkpoint_tensors(), write_outputs=write_lora,
                )
            return save_accelerate_checkpoint(
                acc, cfg.output_dir, step, self.lr_scheduler, {**extra, **self.checkpoint_state()},
                keep_last=cfg.checkpoints_total_limit, extra_tensors=self.checkpoint_tensors(), write_outputs=write_lora,
            )
        if self.is_main:
            path = save_checkpoint(
                cfg.output_dir, step, self.trainable_named_parameters(), self.optimizer, self.lr_scheduler,
                extra_state={**extra, **self.checkpoint_state()}, keep_last=cfg.checkpoints_total_limit,
                extra_tensors=self.checkpoint_tensors(), adapter=self.adapter if cfg.lora.enabled else None,
            )
        acc.wait_for_everyone()
        return path

    def export(self) -> TrainResult:
        """Export phase: the LoRA (``pytorch_lora_weights.safetensors``) and/or the full pipeline,
        with the evaluation weights (EMA when kept), and ``train_summary.json``."""
        cfg = self.config
        lora_path = pipeline_path = gathered = full = None
        self.accelerator.wait_for_everyone()
        if self.cpu_fsdp is not None:  # FSDP2 on CPU: the whole network gathered from every process's shards
            with self.evaluation_weights():
                full = fsdp_cpu.full_state_dict(self.adapter.denoiser)
            gathered = {k: v for k, v in full.items() if "lora_" in k} if cfg.lora.enabled else None
        elif self.sharded_state() and cfg.lora.enabled:  # the full LoRA from every process's shards
            with self.evaluation_weights():
                gathered = self.gathered_lora_state()
        if self.is_main:
            whole = cfg.save in ("pipeline", "both") or not cfg.lora.enabled or cfg.save_format == "merged"
            with self.evaluation_weights(), self.unsharded_network(full if whole else None):
                if cfg.lora.enabled and cfg.save in ("lora", "both"):
                    lora_path = self.adapter.save_lora(cfg.output_dir, state_dict=gathered)
                if cfg.save in ("pipeline", "both") or not cfg.lora.enabled:
                    pipeline_path = self.adapter.save_pretrained(os.path.join(cfg.output_dir, "pipeline"))
                if lora_path and cfg.save_format == "merged":  # the trained adapter fused into its own base
                    self.adapter.save_pretrained(os.path.join(cfg.output_dir, "exports", "merged"))
            with open(os.path.join(cfg.output_dir, "train_summary.json"), "w", encoding="utf-8") as f:
                model = {"pretrained": cfg.model.pretrained, "revision": cfg.model.revision,
                         "commit": resolve_model_commit(cfg.model.pretrained, cfg.model.revision)}
                json.dump({"steps": cfg.max_steps, "lora": lora_path, "pipeline": pipeline_path, "model": model,
                           "num_processes": self.accelerator.num_processes,
                           "sharded": fsdp_cpu.is_sharded(self.adapter.denoiser)}, f, indent=2)
            from diffalign.export.command import finish_outputs

            hub = cfg.push_to_hub
            fmt = cfg.save_format if lora_path and cfg.save_format != "merged" else "diffusers"
            finish_outputs(cfg.output_dir, config_to_dict(cfg), save_format=fmt,
                           repo_id=hub.repo_id, private=hub.private, license=hub.license, lora=lora_path is not None)
        self.accelerator.wait_for_everyone()
        return TrainResult(cfg.output_dir, cfg.max_steps, lora_path, pipeline_path,
                           os.path.join(cfg.output_dir, "logs", "metrics.jsonl"))

    @contextlib.contextmanager
    def unsharded_network(self, full: dict[str, torch.Tensor] | None) -> Iterator[None]:
        """Inside the block the pipeline holds a plain copy of the sharded network filled with ``full``
        (its gathered state dict), for the outputs that save the whole network (main process only);
        nothing to do when ``full`` is None."""
        if full is None:
            yield
            return
        adapter, name = self.adapter, self.adapter.denoiser_name
        sharded = adapter.denoiser
        lora_name = adapter._lora_config["adapter_name"] if adapter.has_lora else "default"
        lora = sharded.peft_config[lora_name] if adapter.has_lora else None
        setattr(adapter.pipe, name, fsdp_cpu.unsharded_copy(sharded, full, lora_config=lora, adapter_name=lora_name))
        try:
            yield
        finally:
            setattr(adapter.pipe, name, sharded)

    @torch.no_grad()
    def validate(self, step: int) -> None:
        """Sample the validation prompts at fixed seeds and save a grid (main process); video families
        also write each clip as ``validation/step-N/<k>.mp4`` and show frame strips in the grid."""
        val = self.config.validation
        if not val.prompts or not (self.is_main or self.network_sharded()):  # sharded: every process runs the forwards
            return
        from diffalign.utils.images import make_grid

        self.adapter.denoiser.eval()
        generator = torch.Generator(device="cpu").manual_seed(val.seed)
        with self.evaluation_weights():
            output = self.adapter.generate(
                list(val.prompts), num_inference_steps=val.num_inference_steps, guidance_scale=val.guidance_scale,
                generator=generator, output_type="np",
            )
        self.adapter.denoiser.train()
        if not self.is_main:
            return
        if getattr(self.adapter, "modality", "image") == "video":  # mp4s in validation/step-N/, strips in the grid
            from diffalign.train.video_outputs import video_tiles

            folder = os.path.join(self.config.output_dir, "validation", f"step-{step:06d}")
            images = video_tiles(output.frames, folder)
        else:
            images = output.images
        grid = make_grid(list(images), captions=list(val.prompts), ncols=min(8, len(images)), title=f"step {step}")
        self.save_grid(step, "validation", grid)

    def save_grid(self, step: int, folder: str, grid) -> None:
        """Write ``OUT/<folder>/step-N.png`` and send it to tensorboard / wandb."""
        out = os.path.join(self.config.output_dir, folder)
        os.makedirs(out, exist_ok=True)
        grid.save(os.path.join(out, f"step-{step:06d}.png"))
        if self.logger is not None:
            self.logger.log_image(step, folder, grid)
