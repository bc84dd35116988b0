"""Dtype names: every place a dtype is given (configs, ``--dtype``, reward and detector options)
accepts the short and the torch spelling alike: ``fp32``/``float32``, ``fp16``/``float16``/``half``,
``bf16``/``bfloat16``. (torch is imported only when a torch dtype is asked for, so the command-line
parser stays light.)"""
from __future__ import annotations

from typing import Any

#: accepted spelling -> the short name configs store.
DTYPE_NAMES: dict[str, str] = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
    "bf16": "bf16", "bfloat16": "bf16",
}
#: short name -> the name of the torch dtype.
TORCH_NAMES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def dtype_name(value: Any) -> str:
    """The short name (``fp32`` | ``fp16`` | ``bf16``) of any accepted spelling or torch dtype."""
    if isinstance(value, str):
        if value.lower() in DTYPE_NAMES:
            return DTYPE_NAMES[value.lower()]
    elif value is not None and type(value).__name__ == "dtype":  # a torch.dtype
        short = {v: k for k, v in TORCH_NAMES.items()}.get(str(value).removeprefix("torch."))
        if short is not None:
            return short
    raise ValueError(f"unknown dtype {value!r}; choose one of: {', '.join(DTYPE_NAMES)}")


def torch_dtype(value: Any):
    """``"fp16"`` / ``"float16"`` / ``torch.float16`` ... -> ``torch.float16``; None stays None."""
    if value is None:
        return None
    import torch

    return getattr(torch, TORCH_NAMES[dtype_name(value)])


def dtype_argument(value: str) -> str:
    """``argparse`` type of the ``--dtype`` options: the short name, or a usage error listing the spellings."""
    import argparse

    try:
        return dtype_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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


__all__ = ["DTYPE_NAMES", "TORCH_NAMES", "dtype_argument", "dtype_name", "mixed_precision_name", "torch_dtype"]
