"""Reduced precision is described plainly: accelerate's fp16 mixed precision has no autocast on CPU
(it sets ``native_amp`` only where fp16 autocast exists), bf16 autocasts; fp32 runs say nothing.
(Stand-in accelerators: accelerate's state is process-wide, a real one here would bind the other tests.)"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from diffalign.train.precision import describe_precision


def accelerator(mixed: str, native_amp: bool, device: str = "cpu"):
    return SimpleNamespace(mixed_precision=mixed, native_amp=native_amp, device=torch.device(device))


def test_cpu_fp16_says_there_is_no_autocast():
    assert describe_precision(accelerator("fp16", native_amp=False), "fp16") == (
        "precision on cpu: frozen weights fp16; trainable weights and loss fp32; no autocast: mixed_precision=fp16 "
        "has no autocast on cpu, forward passes run in the weights' dtypes")


def test_bf16_autocasts_and_fp32_says_nothing():
    assert describe_precision(accelerator("bf16", native_amp=True), "fp32") == (
        "precision on cpu: frozen weights fp32; trainable weights and loss fp32; forward passes under bf16 autocast")
    assert describe_precision(accelerator("fp16", native_amp=True, device="cuda"), "fp16").endswith(
        "forward passes under fp16 autocast")
    assert describe_precision(accelerator("no", native_amp=False), "fp32") is None
    assert describe_precision(accelerator("no", native_amp=False), "bf16") == (
        "precision on cpu: frozen weights bf16; trainable weights and loss fp32; no autocast")
