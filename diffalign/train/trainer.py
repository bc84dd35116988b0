"""The training loop every diffalign trainer shares.

``Trainer`` owns the orchestration: accelerate (one to many processes), the model adapter with a
LoRA adapter or full fine-tuning plus its reference, optimizer and schedule, exact resume,
atomic checkpoints, logs, validation grids and the final diffusers-loadable output. A subclass
supplies only its data (``setup_data``/``get_batch``) and its objective (``compute_loss``);
trainers with another loop shape (the online trainers) override ``run_loop`` and the hooks
(``build_index_sampler``, ``num_optimizer_steps``, ``checkpoint_state``...) and keep the rest:
``train()`` = ``begin_training`` (resume, config, log) -> ``run_loop`` -> ``finish_training``.

Randomness is a pure function of ``(seed, micro-step, process)``: data order comes from
:class:`ResumableIndexSampler` and every noise/timestep draw from :meth:`Trainer.generator`, so a
run resumed from a checkpoint continues exactly like an uninterrupted one.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
import torch

from diffalign.config import config_to_dict, save_config
from diffalign.pipelines import PipelineAdapter
from diffalign.train.checkpoint import load_checkpoint, load_extra_tensors, resolve_resume, save_checkpoint
from diffalign.train.config import TrainConfig
from diffalign.train.metrics import MetricsLogger
from diffalign.pipelines.models import load_model
from diffalign.train.optim import build_lr_scheduler, build_optimizer
from diffalign.utils.dtypes import mixed_precision_name, torch_dtype



class ResumableIndexSampler:
    """Which example indices a process uses at each micro-step: a fresh seeded permutation per
    epoch, cut into global batches of ``batch_size x num_processes``, each process taking its slice.
    A pure function of the micro-step, so resuming needs no sampler state."""

    def __init__(self, num_examples: int, batch_size: int, num_processes: int = 1, process_index: int = 0, seed: int = 0):
        per_global = batch_size * num_processes
        if num_examples < per_global:
            raise ValueError(
                f"the dataset has {num_examples} examples, fewer than one global batch "
                f"(batch_size {batch_size} x {num_processes} processes)"
            )
        self.n, self.batch_size, self.world, self.rank, self.seed = num_examples, batch_size, num_processes, process_index, seed
        self.batches_per_epoch = num_examples // per_global

    def epoch_of(self, micro_step: int) -> int:
        return micro_step // self.batches_per_epoch

    def indices(self, micro_step: int) -> list[int]:
        epoch, pos = divmod(micro_step, self.batches_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        perm = torch.randperm(self.n, generator=gen)
        start = pos * self.batch_size * self.world + self.rank * self.batch_size
        return perm[start : start + self.batch_size].tolist()


@dataclass
class TrainResult:
    output_dir: str
    steps: int
    lora_path: str | None
    pipeline_path: str | None
    metrics_path: str


class Trainer:
    """Base trainer. Subclasses implement ``setup_data``, ``num_examples``, ``get_batch`` and
    ``compute_loss``; everything else is shared."""

    config_class: type[TrainConfig] = TrainConfig

    def __init__(self, config: TrainConfig, adapter: PipelineAdapter | None = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

        self.config = config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        if config.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.accelerator = Accelerator(
            mixed_precision=mixed_precision_name(config.mixed_precision),
            gradient_accumulation_steps=self.accelerator_accumulation_steps(),
            project_config=ProjectConfiguration(project_dir=config.output_dir),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.ddp_find_unused_parameters)],
        )
        self.is_main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        weight_dtype = torch_dtype(config.model.weight_dtype)
        self.adapter = adapter if adapter is not None else load_model(config.model, device=self.device, dtype=weight_dtype)
        self.adapter.to(device=self.device)
        self._setup_network(weight_dtype)
        self.setup_data()
        self.sampler = self.build_index_sampler()

    # ------------------------------------------------------------------ to implement
    def setup_data(self) -> None:
        """Load (and cache) the training data."""

    def num_examples(self) -> int:
        raise TypeError(f"{type(self).__name__} must implement num_examples()")

    def get_batch(self, indices: list[int], micro_step: int):
        raise TypeError(f"{type(self).__name__} must implement get_batch()")

    def compute_loss(self, batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        raise TypeError(f"{type(self).__name__} must implement compute_loss()")

    # ------------------------------------------------------------------ hooks with defaults
    def build_index_sampler(self) -> ResumableIndexSampler | None:
        """Which examples each micro-step reads (trainers without a data set return None)."""
        acc = self.accelerator
        return ResumableIndexSampler(
            self.num_examples(), self.config.batch_size, acc.num_processes, acc.process_index, self.config.seed
        )

    def accelerator_accumulation_steps(self) -> int:
        """Gradient accumulation accelerate manages (trainers that sync by hand return 1)."""
        return self.config.gradient_accumulation_steps

    def num_optimizer_steps(self) -> int:
        """Optimizer steps of the whole run (the length of the lr schedule)."""
        return self.config.max_steps

    def checkpoint_state(self) -> dict:
        """Small JSON state saved with every checkpoint (beyond weights/optimizer/schedule)."""
        return {}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Extra tensors saved with every checkpoint (e.g. EMA weights)."""
        return {}

    def restore_checkpoint_state(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what ``checkpoint_state`` / ``checkpoint_tensors`` saved."""

    # ------------------------------------------------------------------ set-up
    def _setup_network(self, weight_dtype: torch.dtype) -> None:
        cfg, adapter = self.config, self.adapter
        if cfg.model.attention:
            adapter.set_attention_backend(cfg.model.attention)
        if cfg.lora.enabled:
            params = adapter.add_lora(
                rank=cfg.lora.rank, alpha=cfg.lora.alpha, target_modules=cfg.lora.target_modules,
                init_lora_weights=cfg.lora.init, dropout=cfg.lora.dropout,
            )
            for p in params:  # trainable weights stay fp32 whatever the frozen weights' dtype
                p.data = p.data.float()
        else:
            adapter.freeze()
            reference = copy.deepcopy(adapter.denoiser).requires_grad_(False).eval()
            adapter.set_reference_network(reference)
            adapter.denoiser.float().requires_grad_(True)
        if cfg.model.gradient_checkpointing:
            adapter.enable_gradient_checkpointing()
        adapter.denoiser.train()
        lr = cfg.optim.lr
        if cfg.optim.scale_lr:
            lr *= self.accelerator.num_processes * cfg.gradient_accumulation_steps * cfg.batch_size
        self.optimizer = build_optimizer(adapter.trainable_parameters(), cfg.optim, lr=lr)
        self.lr_scheduler = build_lr_scheduler(self.optimizer, cfg.optim, self.num_optimizer_steps())
        network, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            adapter.denoiser, self.optimizer, self.lr_scheduler
        )
        adapter.bind_network(network)
        self.network = network

    def trainable_named_parameters(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.adapter.denoiser.named_parameters() if p.requires_grad}

    def generator(self, micro_step: int) -> torch.Generator:
        """The random stream of one micro-step on this process (noise, timesteps, dropout draws)."""
        seed = (self.config.seed * 1_000_003 + micro_step * 1_009 + self.accelerator.process_index) % (2**63)
        return torch.Generator(device=self.device).manual_seed(seed)

    # ------------------------------------------------------------------ loop
    def train(self) -> TrainResult:
        """Resume if asked, run the loop to ``max_steps``, checkpoint and save the outputs."""
        start_step, logger = self.begin_training()
        self.run_loop(start_step, logger)
        return self.finish_training(start_step, logger)

    def begin_training(self) -> tuple[int, MetricsLogger]:
        """Create the output folder, restore the checkpoint to resume from (if any), save the
        config and open the metrics log; return the step to start from and the logger."""
        cfg, acc = self.config, self.accelerator
        os.makedirs(cfg.output_dir, exist_ok=True)
        start_step = 0
        ckpt = resolve_resume(cfg.output_dir, cfg.resume)
        if ckpt is not None:
            state = load_checkpoint(ckpt, self.trainable_named_parameters(), self.optimizer, self.lr_scheduler)
            self.restore_checkpoint_state(state, load_extra_tensors(ckpt))
            start_step = int(state["step"])
            acc.print(f"resumed from {ckpt.path} at step {start_step}")
        if self.is_main:
            save_config(cfg, os.path.join(cfg.output_dir, "config.yaml"))
        logger = MetricsLogger(
            cfg.output_dir, report_to=cfg.report_to, run_name=os.path.basename(cfg.output_dir.rstrip("/")),
            config=config_to_dict(cfg), resume_step=start_step if ckpt is not None else None, enabled=self.is_main,
        )
        return start_step, logger

    def progress_bar(self, start_step: int):
        from tqdm.auto import tqdm

        cfg = self.config
        return tqdm(total=cfg.max_steps, initial=start_step, disable=not (self.is_main and cfg.progress_bar), desc="train")

    def after_step(self, done: int, logger: MetricsLogger) -> None:
        """Periodic work after step ``done``: checkpoint and validation grid when due."""
        cfg = self.config
        if cfg.checkpointing_steps and done % cfg.checkpointing_steps == 0 and done < cfg.max_steps:
            self.save_checkpoint(done)
        if cfg.validation.every_steps and done % cfg.validation.every_steps == 0:
            self.validate(done, logger)

    def finish_training(self, start_step: int, logger: MetricsLogger) -> TrainResult:
        """Check the ranks agree, write the final checkpoint and the outputs, close the log."""
        cfg = self.config
        self.check_ranks_in_sync()
        if cfg.max_steps > start_step:
            self.save_checkpoint(cfg.max_steps)
        result = self.save_outputs()
        logger.close()
        return result

    def run_loop(self, start_step: int, logger: MetricsLogger) -> None:
        """The offline loop: ``gradient_accumulation_steps`` micro-batches per optimizer step."""
        cfg, acc = self.config, self.accelerator
        bar = self.progress_bar(start_step)
        accum = cfg.gradient_accumulation_steps
        t_last = time.time()
        for step in range(start_step, cfg.max_steps):
            step_stats: dict[str, float] = {}
            for micro in range(accum):
                k = step * accum + micro
                batch = self.get_batch(self.sampler.indices(k), k)
                with acc.accumulate(self.network):
                    loss, stats = self.compute_loss(batch, self.generator(k))
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"non-finite loss {loss.item()} at step {step} (micro-batch {micro}): {stats}")
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.optim.max_grad_norm > 0:
                        grad_norm = acc.clip_grad_norm_(self.adapter.trainable_parameters(), cfg.optim.max_grad_norm)
                        step_stats["grad_norm"] = float(grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                stats = {**stats, "loss": float(loss.detach())}
                for key, value in stats.items():
                    step_stats[key] = step_stats.get(key, 0.0) + value / accum
            done = step + 1
            now = time.time()
            step_stats["lr"] = self.lr_scheduler.get_last_lr()[0]
            step_stats["step_time"] = now - t_last
            step_stats["epoch"] = self.sampler.epoch_of(done * accum - 1)
            t_last = now
            logger.log(done, step_stats)
            bar.update(1)
            bar.set_postfix({k: f"{step_stats[k]:.4g}" for k in ("loss", "implicit_acc") if k in step_stats})
            self.after_step(done, logger)
        bar.close()

    def check_ranks_in_sync(self) -> None:
        """With several processes, every rank must hold the same trained weights (a gradient-sync
        bug would silently diverge them): compare a checksum across ranks."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return
        params = self.adapter.trainable_parameters()
        checksum = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1).to(self.device)
        sums = acc.gather(checksum)
        if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-9, atol=1e-9):
            raise RuntimeError(f"trained weights differ across processes (checksums {sums.tolist()}): gradients were not synchronised")

    # ------------------------------------------------------------------ outputs
    def save_checkpoint(self, step: int) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if self.is_main:
            save_checkpoint(
                self.config.output_dir, step, self.trainable_named_parameters(), self.optimizer, self.lr_scheduler,
                extra_state={"config": config_to_dict(self.config), **self.checkpoint_state()},
                keep_last=self.config.checkpoints_total_limit, extra_tensors=self.checkpoint_tensors(),
            )
        acc.wait_for_everyone()

    def save_outputs(self) -> TrainResult:
        cfg = self.config
        lora_path = pipeline_path = None
        self.accelerator.wait_for_everyone()
        if self.is_main:
            if cfg.lora.enabled and cfg.save in ("lora", "both"):
                lora_path = self.adapter.save_lora(cfg.output_dir)
            if cfg.save in ("pipeline", "both") or not cfg.lora.enabled:
                pipeline_path = self.adapter.save_pretrained(os.path.join(cfg.output_dir, "pipeline"))
            with open(os.path.join(cfg.output_dir, "train_summary.json"), "w", encoding="utf-8") as f:
                json.dump({"steps": cfg.max_steps, "lora": lora_path, "pipeline": pipeline_path}, f, indent=2)
        self.accelerator.wait_for_everyone()
        return TrainResult(cfg.output_dir, cfg.max_steps, lora_path, pipeline_path,
                           os.path.join(cfg.output_dir, "logs", "metrics.jsonl"))

    @torch.no_grad()
    def validate(self, step: int, logger: MetricsLogger) -> None:
        """Sample the validation prompts at fixed seeds and save a grid (main process)."""
        val = self.config.validation
        if not val.prompts or not self.is_main:
            return
        from diffalign.utils.images import make_grid

        self.adapter.denoiser.eval()
        generator = torch.Generator(device="cpu").manual_seed(val.seed)
        images = self.adapter.generate(
            list(val.prompts), num_inference_steps=val.num_inference_steps, guidance_scale=val.guidance_scale,
            generator=generator, output_type="np",
        ).images
        self.adapter.denoiser.train()
        grid = make_grid(list(images), captions=list(val.prompts), ncols=min(8, len(images)), title=f"step {step}")
        folder = os.path.join(self.config.output_dir, "validation")
        os.makedirs(folder, exist_ok=True)
        grid.save(os.path.join(folder, f"step-{step:06d}.png"))
        logger.log_image(step, "validation", grid)

