"""Dtype names: every place a dtype is given (configs, ``--dtype``, reward options) accepts the
short and the torch spelling alike: ``fp32``/``float32``, ``fp16``/``float16``/``half``,
``bf16``/``bfloat16``."""
from __future__ import annotations

from typing import Any

import torch

#: accepted spelling -> the short name configs store.
DTYPE_NAMES: dict[str, str] = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
    "bf16": "bf16", "bfloat16": "bf16",
}
TORCH_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dtype_name(value: Any) -> str:
    """The short name (``fp32`` | ``fp16`` | ``bf16``) of any accepted spelling or torch dtype."""
    if isinstance(value, torch.dtype):
        for name, dtype in TORCH_DTYPES.items():
            if dtype == value:
                return name
    elif isinstance(value, str) and value.lower() in DTYPE_NAMES:
        return DTYPE_NAMES[value.lower()]
    raise ValueError(f"unknown dtype {value!r}; choose one of: {', '.join(DTYPE_NAMES)}")


def torch_dtype(value: Any) -> torch.dtype | None:
    """``"fp16"`` / ``"float16"`` / ``torch.float16`` ... -> ``torch.float16``; None stays None."""
    return None if value is None else TORCH_DTYPES[dtype_name(value)]


def mixed_precision_name(value: Any) -> str:
    """Accelerate's ``mixed_precision`` (``no`` | ``fp16`` | ``bf16``) from ``no``/``false`` or a dtype
    spelling (``fp32``/``float32`` mean no autocast)."""
    if value is False or (isinstance(value, str) and value.lower() in ("no", "false", "none")):
        return "no"
    try:
        name = dtype_name(value)
    except ValueError:
        raise ValueError(f"unknown mixed precision {value!r}; choose one of: no, {', '.join(DTYPE_NAMES)}") from None
    return "no" if name == "fp32" else name


__all__ = ["DTYPE_NAMES", "TORCH_DTYPES", "dtype_name", "mixed_precision_name", "torch_dtype"]
