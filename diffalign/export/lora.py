"""LoRA export formats (``diffalign export RUN_DIR --format ...``).

A run folder (or one of its ``checkpoints/step-N`` folders) holds ``pytorch_lora_weights.safetensors``
in diffusers' layout (``unet.<module>.lora_A.weight`` ..., alphas in the file's
``lora_adapter_metadata``). The formats:

- ``diffusers``: that file, copied;
- ``kohya``: ``lora_unet_<module with _>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``
  (diffusers' ``convert_state_dict_to_kohya``; the alpha is the trained ``lora_alpha``, so the
  scale ``alpha / rank`` survives). Read by A1111, kohya-ss, InvokeAI and diffusers' own
  ``load_lora_weights``. UNet families (SD, SDXL) only: kohya's tools have no key map for MMDiT;
- ``comfyui``: what ComfyUI's ``load_lora`` maps without "lora key not loaded": for UNet families
  the kohya layout (ComfyUI maps ``lora_unet_<diffusers module>`` through ``unet_to_diffusers``;
  it does not map diffusers' ``unet.<...>.to_q`` keys, which it expects as ``.processor.to_q``),
  for MMDiT (SD3) the ``transformer.<module>.lora_A/B.weight`` keys plus ``<module>.alpha``;
- ``merged``: a full pipeline folder with the LoRA fused in.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

import torch

LORA_FILE = "pytorch_lora_weights.safetensors"
EXPORT_FORMATS = ("diffusers", "kohya", "comfyui", "merged")
DEFAULT_NAMES = {"diffusers": LORA_FILE, "kohya": "lora_kohya.safetensors", "comfyui": "lora_comfyui.safetensors",
                 "merged": "merged"}


def find_lora_file(run_dir: str) -> str:
    """``RUN_DIR/pytorch_lora_weights.safetensors`` (a run's output or a checkpoint folder), or the
    file itself."""
    path = run_dir if os.path.isfile(run_dir) else os.path.join(run_dir, LORA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir}: no {LORA_FILE} there (not a LoRA run output or checkpoint folder)")
    return path


def read_lora(path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The diffusers-layout state dict and its ``lora_adapter_metadata`` (``{}`` when absent)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    return load_file(path), json.loads(meta.get("lora_adapter_metadata", "{}") or "{}")


def _alpha(meta: dict[str, Any], prefix: str, rank: int) -> float:
    alpha = meta.get(f"{prefix}.lora_alpha")
    return float(alpha) if alpha is not None else float(rank)


def _prefix(state: dict[str, torch.Tensor]) -> str:
    prefixes = {k.split(".", 1)[0] for k in state}
    if len(prefixes) != 1:
        raise ValueError(f"LoRA file mixes components {sorted(prefixes)}; diffalign exports one denoiser's LoRA")
    return prefixes.pop()


def to_kohya(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers layout -> kohya / A1111 (``lora_unet_*``), alphas from the metadata."""
    from diffusers.utils import convert_state_dict_to_kohya, convert_unet_state_dict_to_peft

    prefix = _prefix(state)
    if prefix != "unet":
        raise ValueError(f"kohya format: kohya's tools have no key map for a {prefix!r} LoRA (MMDiT); "
                         "use --format comfyui or diffusers")
    kohya = convert_state_dict_to_kohya(convert_unet_state_dict_to_peft(state))
    for key in [k for k in kohya if k.endswith(".alpha")]:
        rank = kohya[key.replace(".alpha", ".lora_down.weight")].shape[0]
        kohya[key] = torch.tensor(_alpha(meta, prefix, rank))
    return {k: v.contiguous() for k, v in kohya.items()}


def to_comfyui(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers layout -> keys ComfyUI's LoRA loader maps (see the module docstring)."""
    prefix = _prefix(state)
    if prefix == "unet":
        return to_kohya(state, meta)
    from diffusers.utils import convert_unet_state_dict_to_peft

    out = {k: v.contiguous() for k, v in convert_unet_state_dict_to_peft(state).items()}
    for key, value in list(out.items()):
        if key.endswith(".lora_A.weight"):
            out[key[: -len(".lora_A.weight")] + ".alpha"] = torch.tensor(_alpha(meta, prefix, value.shape[0]))
    return out


def export_lora(run_dir: str, fmt: str, out: str | None = None) -> str:
    """Write the run's LoRA in ``fmt`` (diffusers | kohya | comfyui) to ``out`` (a file; default
    ``RUN_DIR/exports/<format name>``); return the path."""
    from safetensors.torch import save_file

    src = find_lora_file(run_dir)
    out = out or os.path.join(os.path.dirname(src), "exports", DEFAULT_NAMES[fmt])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if fmt == "diffusers":
        if os.path.abspath(out) != os.path.abspath(src):
            shutil.copyfile(src, out)
        return out
    state, meta = read_lora(src)
    converters = {"kohya": to_kohya, "comfyui": to_comfyui}
    if fmt not in converters:
        raise ValueError(f"unknown LoRA export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    metadata = {"format": "pt", "ss_network_module": "networks.lora", "ss_network_dim": str(meta.get(f"{_prefix(state)}.r", "")),
                "ss_network_alpha": str(meta.get(f"{_prefix(state)}.lora_alpha", "")), "diffalign_source": "diffalign"}
    save_file(converters[fmt](state, meta), out, metadata=metadata)
    return out


def read_run_config(run_dir: str) -> dict[str, Any]:
    """The training config of a run folder (``config.yaml``) or of a checkpoint folder (its
    ``state.json``'s ``config``, else the run's ``config.yaml`` two levels up)."""
    from omegaconf import OmegaConf

    folder = run_dir if os.path.isdir(run_dir) else os.path.dirname(run_dir)
    state = os.path.join(folder, "state.json")
    if os.path.isfile(state):
        with open(state, encoding="utf-8") as f:
            config = json.load(f).get("config")
        if config:
            return config
    for candidate in (os.path.join(folder, "config.yaml"), os.path.join(folder, "..", "..", "config.yaml")):
        if os.path.isfile(candidate):
            return OmegaConf.to_container(OmegaConf.load(candidate), resolve=True)
    raise FileNotFoundError(f"{run_dir}: no config.yaml (nor a checkpoint's state.json) saying which base model was trained")


def export_merged(run_dir: str, out: str | None = None, *, pipeline: Any = None, single_file: bool = False) -> str:
    """Fuse the run's LoRA into its base pipeline (``fuse_lora`` + ``unload_lora_weights``) and
    save the full pipeline folder ``out`` (default ``RUN_DIR/exports/merged``), or with
    ``single_file`` (SD / SDXL) one original-layout checkpoint file (default
    ``RUN_DIR/exports/merged.safetensors``; :mod:`diffalign.export.single_file`); ``pipeline``: the
    base pipeline when already loaded (else read from the run's config)."""
    src = find_lora_file(run_dir)
    out = out or os.path.join(os.path.dirname(src), "exports", DEFAULT_NAMES["merged"] + (".safetensors" if single_file else ""))
    if pipeline is None:
        from diffalign.pipelines.models import ModelConfig, load_model

        model = read_run_config(run_dir).get("model", {})
        pipeline = load_model(ModelConfig(**model)).pipe
    pipeline.load_lora_weights(os.path.dirname(src), weight_name=os.path.basename(src), adapter_name="diffalign")
    pipeline.fuse_lora(adapter_names=["diffalign"])
    pipeline.unload_lora_weights()
    if single_file:
        from diffalign.export.single_file import save_single_file

        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        return save_single_file(pipeline, out)
    pipeline.save_pretrained(out)
    return out


def export(run_dir: str, fmt: str, out: str | None = None, single_file: bool = False) -> str:
    """:func:`export_lora` or :func:`export_merged` by ``fmt`` (``single_file``: merged only)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if single_file and fmt != "merged":
        raise ValueError(f"--single-file goes with --format merged (a full checkpoint), not {fmt}")
    return export_merged(run_dir, out, single_file=single_file) if fmt == "merged" else export_lora(run_dir, fmt, out)
