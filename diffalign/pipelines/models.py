"""The model section of a config (:class:`ModelConfig`) and turning it into a loaded adapter.

Pipelines shipped inside the package (the shapes world's ``shapes-sd`` and ``shapes-sd3``) live in
``diffalign/pretrained/<name>`` and are addressed by name wherever a hub id or a folder is accepted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from diffalign.config import apply_parsers, bounded, choice, parsed
from diffalign.pipelines import FAMILIES, PipelineAdapter, load_adapter
from diffalign.pipelines.attention import BACKENDS
from diffalign.pipelines.checkpointing import checkpoint_blocks_value
from diffalign.utils.dtypes import dtype_name

#: pipelines embedded in the package: name -> family.
EMBEDDED = {"shapes-sd": "sd", "shapes-sd3": "sd3", "shapes-flux2": "flux2", "shapes-cogvideox": "cogvideox",
            "shapes-wan": "wan"}
EMBEDDED_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")


@dataclass
class ModelConfig:
    #: hub id, local diffusers folder, or an embedded shapes pipeline: ``shapes-sd`` / ``shapes-sd3`` / ``shapes-flux2`` /
    #: ``shapes-cogvideox`` / ``shapes-wan``.
    pretrained: str = "shapes-sd"
    #: model family (``sd``, ``sdxl``, ``sd3``, ``flux``, ``flux2``, ``qwenimage``, ``zimage``, ``cogvideox``, ``wan``); detected from model_index.json if unset.
    family: Optional[str] = choice(None, FAMILIES.names)
    revision: Optional[str] = None
    variant: Optional[str] = None
    #: dtype of the frozen weights (VAE, text encoders, base network): fp32 | fp16 | bf16 (or
    #: float32 | float16 | bfloat16).
    weight_dtype: str = parsed("fp32", dtype_name)
    #: attention kernel: sdpa | xformers | flash.
    attention: str = choice("sdpa", BACKENDS)
    gradient_checkpointing: bool = False
    #: selective checkpointing: only these denoiser sub-modules (dotted names, e.g. ``down_blocks.0``,
    #: ``up_blocks.3``: the highest-resolution UNet blocks, which hold most activations) recompute
    #: their activations in the backward; ``[]`` / ``none`` = as ``gradient_checkpointing`` says (all
    #: or none); ``auto`` (default; offline trainer) = those two UNet blocks when a micro-batch holds
    #: >= 1024 latent positions (e.g. 2 pairs at 256 px), else as ``gradient_checkpointing`` says
    #: (``diffalign/pipelines/checkpointing.py``; measured in docs/benchmarks.md).
    checkpoint_blocks: Any = parsed("auto", checkpoint_blocks_value)
    #: channels-last memory format for the convolutional networks (UNet, VAE): same results, faster
    #: convolutions on CPU (oneDNN; ~20 % on the shapes pipelines) and on recent GPUs.
    channels_last: bool = False
    #: frozen base network quantized on load, LoRA trained on top (CUDA only): none | nf4 | int8
    #: (bitsandbytes) | fp8 (torchao).
    quantize: str = choice("none", ("none", "nf4", "int8", "fp8"))
    #: keep the frozen text encoders and VAE in CPU memory, each moved to the GPU only for its own
    #: forward (CUDA only): saves their GPU memory at the cost of a host-to-GPU copy per call.
    offload_frozen: bool = False
    #: ``torch.compile`` the denoiser's forward in place (one graph, no graph break, the reference
    #: pass with adapters off compiles once more; saved weights keep their names). Needs a C compiler
    #: on CPU; the first steps pay the compile time (minutes for SD-size networks).
    compile: bool = False
    #: guidance-distilled FLUX.1 (``flux``): the value fed to the transformer's guidance embedding in
    #: training and sampling (the pipeline's ``guidance_scale``); unset = the adapter's 3.5.
    embedded_guidance: Optional[float] = bounded(None, 0.0)
    #: FLUX.1 (``flux``): classifier-free guidance against the negative prompt (the pipeline's
    #: ``true_cfg_scale`` = the trainer's ``sampling.guidance_scale``); unset = off (guidance-distilled).
    true_cfg: Optional[bool] = None
    #: diffusers' VAE memory switches for decoding (and encoding) large images and videos:
    #: ``vae_tiling`` (``vae.enable_tiling()``: spatial tiles, blended) and ``vae_slicing``
    #: (``vae.enable_slicing()``: one sample of the batch at a time). Same results up to tile seams.
    vae_tiling: bool = False
    vae_slicing: bool = False
    #: the VAE's own gradient checkpointing (diffusers' ``vae.enable_gradient_checkpointing()``):
    #: reward-gradient trainers (AlignProp, DRaFT, ReFL) back-propagate through the decoder, whose
    #: activations over every frame are the peak of a video step; tiling and slicing do not lower
    #: that peak (every tile's graph is kept for the backward), this does (docs/benchmarks.md).
    vae_gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        apply_parsers(self)


def embedded_path(name: str) -> str:
    """Folder of the embedded pipeline ``name`` (``shapes-sd`` / ``shapes-sd3`` / ``shapes-flux2``), loadable with
    ``DiffusionPipeline.from_pretrained``. Raises ``FileNotFoundError`` if it is absent."""
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded pipeline {name!r}; expected one of {', '.join(EMBEDDED)}")
    path = os.path.join(EMBEDDED_ROOT, name)
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise FileNotFoundError(
            f"pretrained shapes pipeline {name!r} not found at {path} (no model_index.json); "
            "it ships with the package; reinstall diffalign or train it with python -m diffalign.shapes.pretrain"
        )
    return path


def resolve_pretrained(name: str) -> str:
    """``shapes-sd`` / ``shapes-sd3`` / ``shapes-flux2`` / ... -> the embedded folder; anything else is a hub id or a
    path. A local pipeline folder of the same name (one with a ``model_index.json``) wins over the embedded one, as a
    local folder wins over a hub id in ``from_pretrained``."""
    if name in EMBEDDED and not os.path.isfile(os.path.join(name, "model_index.json")):
        return embedded_path(name)
    return name


def load_model(cfg: ModelConfig, device="cpu", dtype: torch.dtype = torch.float32, run_device=None) -> PipelineAdapter:
    """Load the model section's pipeline onto ``device``; ``run_device`` (default ``device``) is where
    it will run (``model.quantize`` needs CUDA there; with ``model.offload_frozen`` a trainer loads on
    the CPU and moves only the denoiser)."""
    kwargs = {"torch_dtype": dtype, "device": device}
    if cfg.revision:
        kwargs["revision"] = cfg.revision
    if cfg.variant:
        kwargs["variant"] = cfg.variant
    if cfg.quantize != "none":
        kwargs["quantization_config"] = quantization_config(cfg.quantize, run_device or device, compute_dtype=dtype)
    adapter = load_adapter(resolve_pretrained(cfg.pretrained), family=cfg.family, **kwargs)
    if cfg.channels_last:
        use_channels_last(adapter.pipe)
    return configure_adapter(adapter, cfg)


def configure_adapter(adapter: PipelineAdapter, cfg: ModelConfig) -> PipelineAdapter:
    """Apply the model section's settings that act on a loaded pipeline to ``adapter``: the VAE's tiling and
    slicing switches (``vae_tiling`` / ``vae_slicing``, turned on when set) and the family settings
    (``embedded_guidance``, ``true_cfg``). Trainers call it on an adapter given in Python too, so those keys hold
    whichever way the model came. A setting the family does not have is a one-line ``ValueError``; unset keys
    leave the adapter as it is."""
    if cfg.vae_tiling or cfg.vae_slicing:
        use_vae_memory_switches(adapter.pipe, tiling=cfg.vae_tiling, slicing=cfg.vae_slicing)
    for key in ("embedded_guidance", "true_cfg"):
        value = getattr(cfg, key)
        if value is None:
            continue
        if not hasattr(adapter, key):
            raise ValueError(f"model.{key}: the {adapter.family} family has no {key} setting (FLUX.1, family flux, has)")
        setattr(adapter, key, float(value) if key == "embedded_guidance" else bool(value))
    return adapter


#: diffusers' quantization backends for ``model.quantize``: (package, backend, options).
QUANT_BACKENDS = {"nf4": ("bitsandbytes", "bitsandbytes_4bit", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}),
                  "int8": ("bitsandbytes", "bitsandbytes_8bit", {"load_in_8bit": True}),
                  "fp8": ("torchao", "torchao", {})}
#: the pipeline components ``model.quantize`` quantizes (the denoiser, whatever the family calls it).
QUANTIZED_COMPONENTS = ("unet", "transformer")


def quantization_config(kind: str, device, compute_dtype: torch.dtype = torch.bfloat16):
    """diffusers' ``PipelineQuantizationConfig`` quantizing the denoiser (``unet`` / ``transformer``) on
    load: bitsandbytes nf4 (computing in ``compute_dtype``) / int8, or torchao's float8 weight-only
    (``TorchAoConfig(Float8WeightOnlyConfig())``: diffusers >= 0.36 takes a torchao config object).
    CUDA only; a missing package is a one-line error."""
    import importlib.util

    if torch.device(device).type != "cuda":
        raise ValueError(f"model.quantize={kind} needs a CUDA GPU (bitsandbytes / torchao kernels); on "
                         f"{torch.device(device).type} set model.quantize=none (or model.weight_dtype=bf16 to halve memory)")
    package, backend, options = QUANT_BACKENDS[kind]
    if importlib.util.find_spec(package) is None:
        raise ValueError(f"model.quantize={kind} needs the {package} package: pip install {package}")
    from diffusers.quantizers import PipelineQuantizationConfig

    if kind == "fp8":
        from diffusers import TorchAoConfig
        from torchao.quantization import Float8WeightOnlyConfig

        ao = TorchAoConfig(quant_type=Float8WeightOnlyConfig())
        return PipelineQuantizationConfig(quant_mapping={name: ao for name in QUANTIZED_COMPONENTS})
    if kind == "nf4":
        options = {**options, "bnb_4bit_compute_dtype": compute_dtype}
    return PipelineQuantizationConfig(quant_backend=backend, quant_kwargs=options,
                                      components_to_quantize=list(QUANTIZED_COMPONENTS))


#: the frozen parts ``model.offload_frozen`` keeps in CPU memory.
OFFLOADED = ("text_encoder", "text_encoder_2", "text_encoder_3", "vae")
#: the methods that run an offloaded part (a VAE is run through ``encode`` / ``decode``, not ``forward``).
OFFLOADED_CALLS = ("forward", "encode", "decode")


def offload_frozen(adapter: PipelineAdapter, device) -> list[str]:
    """Keep the pipeline's frozen text encoders and VAE on the CPU; each visits ``device`` for each of
    its calls (``forward``, and a VAE's ``encode`` / ``decode``) and goes back when it returns (the
    denoiser stays on ``device``). Returns the offloaded component names."""
    device = check_offload_device(device)
    return offload_modules(adapter.pipe, device, home="cpu")


def check_offload_device(device) -> torch.device:
    """``model.offload_frozen`` is for a CUDA GPU; elsewhere a one-line error."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"model.offload_frozen keeps frozen parts in CPU memory for a CUDA GPU; on {device.type} "
                         "they already are in that memory: set model.offload_frozen=false")
    return device


def offload_modules(pipe, device, home="cpu", names=OFFLOADED) -> list[str]:
    """The mechanism of :func:`offload_frozen` (``home`` is where the parts live between calls): each
    named module goes to ``home`` and its calls are wrapped to move it to ``device`` and back (nested
    calls, e.g. ``decode`` running ``forward`` of a submodule, move it once)."""
    import functools

    offloaded = []
    for name in names:
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        module.to(home)
        depth = [0]

        def visiting(call, module=module, depth=depth):
            @functools.wraps(call)
            def run(*args, **kwargs):
                if depth[0] == 0:
                    module.to(device)
                depth[0] += 1
                try:
                    return call(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:
                        module.to(home)
            return run

        for method in OFFLOADED_CALLS:
            if callable(getattr(module, method, None)):
                object.__setattr__(module, method, visiting(getattr(module, method)))
        offloaded.append(name)
    return offloaded


def use_vae_memory_switches(pipe, *, tiling: bool = False, slicing: bool = False) -> None:
    """Turn on the pipeline VAE's own tiling / slicing (``model.vae_tiling`` / ``model.vae_slicing``)."""
    vae = getattr(pipe, "vae", None)
    for wanted, switch, key in ((tiling, "enable_tiling", "model.vae_tiling"), (slicing, "enable_slicing", "model.vae_slicing")):
        if not wanted:
            continue
        if not callable(getattr(vae, switch, None)):
            raise ValueError(f"{key}: the VAE of this pipeline ({type(vae).__name__}) has no {switch}()")
        getattr(vae, switch)()


def use_vae_gradient_checkpointing(pipe) -> None:
    """Turn on the pipeline VAE's gradient checkpointing (``model.vae_gradient_checkpointing``)."""
    vae = getattr(pipe, "vae", None)
    if not getattr(vae, "_supports_gradient_checkpointing", False):
        raise ValueError(f"model.vae_gradient_checkpointing: the VAE of this pipeline ({type(vae).__name__}) "
                         "does not support gradient checkpointing")
    vae.enable_gradient_checkpointing()


def use_channels_last(pipe) -> None:
    """Put a pipeline's convolutional networks (UNet, VAE) in channels-last memory format; the
    outputs are the same, convolutions run faster (a transformer denoiser is left as it is)."""
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            module.to(memory_format=torch.channels_last)
