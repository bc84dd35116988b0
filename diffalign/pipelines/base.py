"""The one interface trainers, rewards and evaluation jobs use to drive a diffusers model family.

A ``PipelineAdapter`` wraps a real diffusers pipeline object (``self.pipe``) and exposes the pieces
of it a training algorithm needs, in a family-neutral vocabulary:

- conditioning: ``encode_prompt`` -> :class:`PromptEmbeds` (batched, cacheable);
- latents: ``encode_pixels`` / ``decode_latents`` (pixels are float RGB in [0, 1]);
- the training distribution: ``sample_timesteps``, ``sample_noise``, ``add_noise``,
  ``training_target``; ``forward`` is the conditioned network call;
- sampling: ``sampling_scheduler`` + ``sampler_step`` (which also returns the log-probability of
  the step) + ``guided_forward`` (classifier-free guidance); the one chain built from them is
  :mod:`diffalign.pipelines.sampling`;
- LoRA via peft (``add_lora``; ``reference()`` runs the same network with adapters disabled),
  ``save_lora`` (``pytorch_lora_weights.safetensors`` that the family's diffusers pipeline loads with
  ``load_lora_weights``) and ``save_pretrained`` (a full pipeline folder);
- ``set_attention_backend`` (``sdpa`` default, ``xformers``, ``flash``) and gradient checkpointing.

Timesteps are always the network's own timestep values: integers in [0, T) for DDPM-family models
(SD, SDXL, CogVideoX) and ``sigma * 1000`` floats for rectified-flow models (SD3), as diffusers'
schedulers produce them. Family specifics live only in the subclasses.
"""
from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator, Sequence

import torch

from diffalign.pipelines.conditioning import PromptEmbeds
from diffalign.utils.random import randn

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


class PipelineAdapter(ABC):
    """Base class of the per-family adapters. Subclasses set the class attributes and implement the
    abstract methods; everything else is shared."""

    #: short family name used in configs and the registry ("sd", "sdxl", "sd3", "cogvideox").
    family: ClassVar[str]
    #: the diffusers pipeline class this family wraps.
    pipeline_class: ClassVar[type]
    #: attribute name of the trained network on the pipeline ("unet" or "transformer").
    denoiser_name: ClassVar[str] = "unet"
    #: default peft LoRA target modules on the denoiser.
    default_lora_targets: ClassVar[tuple[str, ...]] = ("to_q", "to_k", "to_v", "to_out.0")
    #: modality of the pixels the family produces: "image" or "video".
    modality: ClassVar[str] = "image"
    #: key layout of saved LoRA weights: "diffusers" (the UNet scripts' ``lora.down/up`` layout) or
    #: "peft" (``lora_A/B``, what diffusers' DiT scripts save and their loaders expect: SD3, CogVideoX).
    lora_key_format: ClassVar[str] = "diffusers"
    #: the diffusers LoRA loader class whose ``save_lora_weights`` writes the file (None: the pipeline
    #: class; a family whose pipeline has no loader mixin names one with the same key layout).
    lora_loader: ClassVar[type | None] = None

    def __init__(self, pipe, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        if not isinstance(pipe, self.pipeline_class):
            raise TypeError(
                f"{type(self).__name__} wraps {self.pipeline_class.__name__}, got {type(pipe).__name__}"
            )
        self.pipe = pipe
        if device is not None or dtype is not None:
            pipe.to(device=device, dtype=dtype)
        self.attention_backend = "sdpa"
        self._lora_config: dict[str, Any] | None = None
        # What ``forward`` calls: the denoiser itself, or a wrapper of it (DDP/FSDP from accelerate)
        # bound by a trainer, or temporarily a frozen reference copy (full fine-tuning).
        self._network: torch.nn.Module | None = None
        self._reference_network: torch.nn.Module | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        **kwargs,
    ) -> "PipelineAdapter":
        """Load the family's diffusers pipeline from a hub id or a local diffusers folder.

        Uses the real ``from_pretrained`` path, so ``HF_HUB_OFFLINE``/``local_files_only``,
        ``revision``, ``variant`` and ``cache_dir`` behave as in diffusers.
        """
        from diffalign.pipelines.loading import load_pipeline

        pipe = load_pipeline(cls.pipeline_class, name_or_path, torch_dtype=torch_dtype, **kwargs)
        adapter = cls(pipe, device=device)
        if os.path.isdir(str(name_or_path)):
            from diffalign.pipelines.sampling_file import read_sampling_file

            adapter.apply_recorded_settings(read_sampling_file(str(name_or_path)))
        return adapter

    def apply_recorded_settings(self, settings: dict) -> None:
        """Take what a pipeline folder's ``diffalign_sampling.json`` records about conditioning: its
        ``max_sequence_length`` (the text tokens a shapes-world pipeline was trained and samples
        with, e.g. 40 for shapes-flux2) for families whose adapter pads prompts to one."""
        if settings.get("max_sequence_length") is not None and hasattr(self, "max_sequence_length"):
            self.max_sequence_length = int(settings["max_sequence_length"])

    # ------------------------------------------------------------------ properties
    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, self.denoiser_name)

    @property
    def network(self) -> torch.nn.Module:
        """The module ``forward`` calls: ``denoiser`` unless a trainer bound a wrapper of it."""
        return self._network if self._network is not None else self.denoiser

    def bind_network(self, module: torch.nn.Module | None) -> None:
        """Make ``forward`` call ``module`` (e.g. the accelerate-prepared, DDP-wrapped denoiser)."""
        self._network = module

    def set_reference_network(self, module: torch.nn.Module | None) -> None:
        """A frozen copy of the denoiser that ``reference()`` runs (full fine-tuning)."""
        self._reference_network = module

    @property
    def vae(self) -> torch.nn.Module:
        return self.pipe.vae

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    @property
    def num_train_timesteps(self) -> int:
        return int(self.pipe.scheduler.config.num_train_timesteps)

    # ------------------------------------------------------------------ conditioning
    @abstractmethod
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """Encode prompts (batched) into the conditioning the denoiser consumes. No CFG doubling."""

    def encode_prompt_cached(self, prompts: Sequence[str], cache: dict[str, PromptEmbeds] | None) -> PromptEmbeds:
        """``encode_prompt`` with a per-prompt memo (a plain dict the caller owns)."""
        if cache is None:
            return self.encode_prompt(prompts)
        missing = [p for p in dict.fromkeys(prompts) if p not in cache]
        if missing:
            enc = self.encode_prompt(missing)
            for i, p in enumerate(missing):
                cache[p] = enc[i : i + 1].detach()
        return PromptEmbeds.cat([cache[p] for p in prompts])

    def encode_negative_prompt(self, negative_prompt: str | None, batch_size: int) -> PromptEmbeds:
        """Unconditional embeddings for classifier-free guidance, as the family's pipeline makes them
        (``None``: the pipeline default; the empty prompt unless a family overrides this)."""
        return self.encode_prompt([negative_prompt or ""] * batch_size)

    # ------------------------------------------------------------------ latents
    @abstractmethod
    def encode_pixels(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Float RGB in [0, 1] ([B,3,H,W]; video [B,F,3,H,W]) -> scaled latents the denoiser sees."""

    @abstractmethod
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> float RGB in [0, 1], same layout as ``encode_pixels`` takes."""

    @abstractmethod
    def latent_shape(self, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
        """Shape of one sample's latents (no batch dim) for an output of this size."""

    # ------------------------------------------------------------------ training distribution
    @abstractmethod
    def sample_timesteps(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """Timesteps drawn from the family's training distribution, shape [batch_size]."""

    def sample_noise(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)

    @abstractmethod
    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward-noise clean latents to the given timesteps."""

    @abstractmethod
    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the network is trained to predict (epsilon, v, or flow velocity)."""

    @abstractmethod
    def forward(self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: PromptEmbeds) -> torch.Tensor:
        """The conditioned network forward; returns a prediction shaped like ``noisy_latents``."""

    @staticmethod
    def batch_timesteps(timesteps, like: torch.Tensor) -> torch.Tensor:
        """``timesteps`` as a tensor on ``like``'s device with one entry per sample (a scalar is expanded)."""
        t = torch.as_tensor(timesteps, device=like.device)
        return t.expand(like.shape[0]) if t.ndim == 0 else t

    @staticmethod
    def per_sample_error(prediction: torch.Tensor, target: torch.Tensor, segments: int | None = None) -> torch.Tensor:
        """Squared error averaged over every non-batch element, in fp32: shape [B].

        ``segments=S`` splits dim 1 (the frames of video latents ``[B, F, C, H, W]``) into ``S``
        contiguous chunks and averages each: shape [B, S] (DenseDPO's per-segment errors).
        """
        err = (prediction.float() - target.float()) ** 2
        if segments:
            return torch.stack([c.reshape(c.shape[0], -1).mean(1) for c in err.tensor_split(segments, dim=1)], 1)
        return err.reshape(err.shape[0], -1).mean(dim=1)

    def training_errors(
        self,
        latents: torch.Tensor,
        cond: PromptEmbeds,
        *,
        noise: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        reference: bool = False,
        segments: int | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training forward every offline loss uses: noise, timesteps, ``add_noise``, the network
        forward, ``training_target`` -> per-sample error [B] (fp32, see :meth:`per_sample_error`).

        ``noise`` / ``timesteps`` are drawn (in that order, from ``generator``) when not given.
        ``reference=True`` runs the reference network (``reference()``) without grad;
        ``segments=S`` returns per-segment errors [B, S] for video. Returns ``(errors, parts)`` where
        ``parts`` holds ``noise``, ``timesteps``, ``prediction`` and ``target``.
        """
        if noise is None:
            noise = self.sample_noise(latents, generator)
        if timesteps is None:
            timesteps = self.sample_timesteps(latents.shape[0], generator, device=latents.device)
        noisy = self.add_noise(latents, noise, timesteps)
        target = self.training_target(latents, noise, timesteps)
        if reference:
            with torch.no_grad(), self.reference():
                pred = self.forward(noisy, timesteps, cond)
        else:
            pred = self.forward(noisy, timesteps, cond)
        return self.per_sample_error(pred, target, segments), {
            "noise": noise,
            "timesteps": timesteps,
            "prediction": pred,
            "target": target,
        }

    # ------------------------------------------------------------------ sampling
    @abstractmethod
    def sampling_scheduler(self, num_inference_steps: int):
        """A fresh scheduler for sampling with ``set_timesteps`` already called."""

    @abstractmethod
    def sampler_step(
        self,
        scheduler,
        model_output: torch.Tensor,
        timestep: torch.Tensor | int | float,
        sample: torch.Tensor,
        *,
        noise_level: float | None = None,
        prev_sample: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One stochastic sampler step and its log-probability [B] (fp32, mean over non-batch dims).

        UNet families: DDIM with ``eta = noise_level`` (> 0). Flow families: the flow SDE step with
        ``noise_level`` as Flow-GRPO's ``a`` (0 gives the Euler ODE step). When ``prev_sample`` is
        given it is not resampled and the log-probability is that of ``prev_sample``.
        """

    @abstractmethod
    def predict_original(self, model_output: torch.Tensor, timesteps: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        """The network's estimate of the clean latents from its output at ``timesteps`` (differentiable;
        used by reward-gradient trainers that score one-step predictions, e.g. ReFL)."""

    @abstractmethod
    def transition_moments(
        self,
        scheduler,
        model_output: torch.Tensor,
        timestep: torch.Tensor | int | float,
        sample: torch.Tensor,
        *,
        noise_level: float | None = None,
    ):
        """The Gaussian of ``sampler_step`` at these inputs as a
        :class:`~diffalign.samplers.StepMoments` (``mean``, ``std``, ``kl_scale``), for KL
        penalties between the policy and the reference network (Flow-GRPO, DPOK)."""

    def initial_latents(
        self,
        batch_size: int,
        height: int,
        width: int,
        *,
        num_frames: int | None = None,
        generator: torch.Generator | None = None,
        scheduler=None,
    ) -> torch.Tensor:
        shape = (batch_size, *self.latent_shape(height, width, num_frames))
        x = randn(shape, generator, "cpu").to(device=self.device, dtype=self.dtype)
        sigma = getattr(scheduler, "init_noise_sigma", 1.0) if scheduler is not None else 1.0
        return x * sigma

    def guided_forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | int | float,
        cond: PromptEmbeds,
        uncond: PromptEmbeds | None = None,
        guidance_scale: float = 1.0,
        detach_uncond: bool = False,
    ) -> torch.Tensor:
        """Network output with classifier-free guidance (one batched forward when guiding);
        ``detach_uncond`` stops the gradient through the unconditional branch."""
        b = latents.shape[0]
        t = torch.as_tensor(timestep, device=latents.device)
        if t.ndim == 0:
            t = t.expand(b)
        if uncond is None or guidance_scale == 1.0:
            return self.forward(latents, t, cond)
        out = self.forward(torch.cat([latents, latents]), torch.cat([t, t]), PromptEmbeds.cat([uncond, cond]))
        out_u, out_c = out.chunk(2)
        if detach_uncond:
            out_u = out_u.detach()
        return out_u + guidance_scale * (out_c - out_u)

    def default_resolution(self) -> int:
        """Default output side in pixels (the network's sample size times the VAE factor)."""
        return int(self.pipe.default_sample_size * self.pipe.vae_scale_factor)

    def default_size(self) -> tuple[int, int, int | None]:
        """Default ``(height, width, num_frames)`` of a sample (``num_frames`` None for images)."""
        side = self.default_resolution()
        return side, side, None

    def generate(self, prompts: Sequence[str] | str, **kwargs):
        """Plain inference through the real diffusers pipeline ``__call__`` (drop-in behaviour)."""
        return self.pipe(prompt=prompts, **kwargs)

    # ------------------------------------------------------------------ LoRA (peft)
    def add_lora(
        self,
        rank: int = 8,
        alpha: float | None = None,
        target_modules: Sequence[str] | None = None,
        init_lora_weights: str | bool = "gaussian",
        dropout: float = 0.0,
        adapter_name: str = "default",
    ) -> list[torch.nn.Parameter]:
        """Attach a peft LoRA adapter to the denoiser; freeze the rest; return trainable params."""
        from peft import LoraConfig

        alpha = float(rank if alpha is None else alpha)
        targets = list(target_modules or self.default_lora_targets)
        config = LoraConfig(
            r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=init_lora_weights,
            lora_dropout=dropout,
        )
        self.freeze()
        self.denoiser.add_adapter(config, adapter_name=adapter_name)
        self._lora_config = {"rank": rank, "alpha": alpha, "target_modules": targets, "adapter_name": adapter_name}
        params = [p for p in self.denoiser.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"LoRA targets {targets} matched no module of the {self.family} {self.denoiser_name}")
        return params

    @property
    def has_lora(self) -> bool:
        return self._lora_config is not None

    def freeze(self) -> None:
        for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3", self.denoiser_name):
            module = getattr(self.pipe, name, None)
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)

    def drop_encoder_weights(self) -> list[str]:
        """Free the weights of the VAE and text encoders (moved to the ``meta`` device; configs and
        dtypes stay) once nothing will run them: training from cached latents and text. Returns the
        names dropped; running a dropped module afterwards raises torch's meta-tensor error."""
        dropped = []
        for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
            module = getattr(self.pipe, name, None)
            if isinstance(module, torch.nn.Module):
                module.to("meta")
                dropped.append(name)
        return dropped

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.denoiser.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def reference(self) -> Iterator[None]:
        """Run ``forward`` as the reference model inside the block: the frozen copy set with
        ``set_reference_network`` (full fine-tuning), else the same network with LoRA disabled."""
        if self._reference_network is not None:
            previous = self._network
            self._network = self._reference_network
            try:
                yield
            finally:
                self._network = previous
            return
        if not self.has_lora:
            raise RuntimeError(
                "reference() needs a LoRA adapter (the reference is the same network with adapters "
                "disabled) or a frozen copy set with set_reference_network() for full fine-tuning."
            )
        self.denoiser.disable_adapters()
        try:
            yield
        finally:
            self.denoiser.enable_adapters()

    def lora_state_dict(self, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The adapter's weights in diffusers' key layout (what ``save_lora`` writes); taken from
        ``state_dict`` (the denoiser's full state dict, e.g. gathered from FSDP shards) when given."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        if not self.has_lora:
            raise RuntimeError("no LoRA adapter attached; call add_lora() first")
        sd = get_peft_model_state_dict(self.denoiser, state_dict=state_dict, adapter_name=self._lora_config["adapter_name"])
        return convert_state_dict_to_diffusers(sd) if self.lora_key_format == "diffusers" else sd

    def lora_metadata(self) -> dict[str, Any]:
        cfg = self._lora_config or {}
        return {"r": cfg.get("rank"), "lora_alpha": cfg.get("alpha"), "target_modules": cfg.get("target_modules")}

    def save_lora(self, save_directory: str | os.PathLike, *, dtype: torch.dtype | None = None,
                  state_dict: dict[str, torch.Tensor] | None = None) -> str:
        """Write ``pytorch_lora_weights.safetensors`` loadable by the family pipeline's
        ``load_lora_weights`` (from ``state_dict``, the denoiser's full state dict, when given); returns the file path."""
        state = self.lora_state_dict(state_dict)
        if dtype is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        kwargs = {
            f"{self.denoiser_name}_lora_layers": state,
            f"{self.denoiser_name}_lora_adapter_metadata": self.lora_metadata(),
        }
        (self.lora_loader or self.pipeline_class).save_lora_weights(str(save_directory), weight_name=LORA_WEIGHT_NAME, **kwargs)
        return os.path.join(str(save_directory), LORA_WEIGHT_NAME)

    def save_pretrained(self, save_directory: str | os.PathLike, *, merge_lora: bool = True, **kwargs) -> str:
        """Write a full diffusers pipeline folder (LoRA merged into the weights when attached: a copy
        of the denoiser goes through diffusers' ``fuse_lora`` + ``unload_lora``, the trained one keeps its adapter)."""
        if self.has_lora and merge_lora:
            import copy

            denoiser = copy.deepcopy(self.denoiser)
            denoiser.fuse_lora(adapter_names=[self._lora_config["adapter_name"]])
            denoiser.unload_lora()
            original = self.denoiser
            setattr(self.pipe, self.denoiser_name, denoiser)
            try:
                self.pipe.save_pretrained(str(save_directory), **kwargs)
            finally:
                setattr(self.pipe, self.denoiser_name, original)
        else:
            self.pipe.save_pretrained(str(save_directory), **kwargs)
        return str(save_directory)

    # ------------------------------------------------------------------ efficiency
    def set_attention_backend(self, backend: str = "sdpa") -> None:
        """Select the attention kernel: ``sdpa`` (default), ``xformers`` or ``flash``."""
        from diffalign.pipelines.attention import set_attention_backend

        set_attention_backend(self.denoiser, backend)
        self.attention_backend = backend

    def enable_gradient_checkpointing(self, blocks: list[str] | None = None) -> None:
        """Activation checkpointing in the denoiser: everywhere, or (``blocks``: dotted sub-module
        names) only inside those sub-modules."""
        self.denoiser.enable_gradient_checkpointing()
        if not blocks:
            return
        modules = dict(self.denoiser.named_modules())
        unknown = [b for b in blocks if b not in modules]
        if unknown:
            raise ValueError(f"model.checkpoint_blocks: {unknown} are not sub-modules of the "
                             f"{type(self.denoiser).__name__} (e.g. down_blocks.0, up_blocks.3)")
        for name, module in modules.items():
            if name and hasattr(module, "gradient_checkpointing") and not any(
                    name == b or name.startswith(b + ".") for b in blocks):
                module.gradient_checkpointing = False

    def compile_network(self, **kwargs) -> None:
        """``torch.compile`` the denoiser's forward in place (``nn.Module.compile``: parameter and
        state-dict names unchanged, so LoRA saving and ``reference()`` work as before). ``kwargs``
        go to ``torch.compile`` (``fullgraph=True`` makes a graph break an error)."""
        self.denoiser.compile(**kwargs)

    def to(self, device=None, dtype=None) -> "PipelineAdapter":
        self.pipe.to(device=device, dtype=dtype)
        return self
