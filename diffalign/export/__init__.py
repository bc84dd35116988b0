"""Results that load everywhere: LoRA export formats, merged pipelines, model cards, Hub upload.

- :func:`export_lora` converts a run's ``pytorch_lora_weights.safetensors`` (diffusers layout) to
  ``kohya`` (A1111 / kohya-ss ``lora_unet_*`` keys with ``lora_down`` / ``lora_up`` / ``alpha``,
  through diffusers' ``convert_state_dict_to_kohya``) or ``comfyui`` (the keys ComfyUI's LoRA loader
  maps: the kohya layout for UNet families, ``transformer.*`` keys with alphas for MMDiT ones);
- :func:`export_merged` fuses the LoRA into a full pipeline folder (``fuse_lora`` + ``unload_lora_weights``);
- :mod:`diffalign.export.card` writes the model card, :mod:`diffalign.export.hub` uploads.
"""
from diffalign.export.lora import (
    EXPORT_FORMATS,
    export,
    export_lora,
    export_merged,
    find_lora_file,
    read_run_config,
    to_comfyui,
    to_kohya,
)

__all__ = [
    "EXPORT_FORMATS", "export", "export_lora", "export_merged", "find_lora_file", "read_run_config", "to_comfyui",
    "to_kohya",
]
