"""Checks every evaluation job runs before its expensive work (loading a pipeline, generating images).

A job that would fail at the end (an output folder it cannot write, a LoRA that is not there, a
reward or colour classifier whose weights are missing) stops at once with one line instead.
"""
from __future__ import annotations

import os


def check_output_folder(out: str) -> None:
    """The output folder must be creatable and writable before any work starts."""
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".diffalign-write-test")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as e:
        raise FileNotFoundError(f"--out {out}: cannot write there ({e.strerror or e})") from e


def check_lora(lora: str | None, flag: str = "--lora") -> None:
    """A LoRA given on the command line must exist (a folder or a ``.safetensors`` file)."""
    if lora and not os.path.exists(lora):
        raise FileNotFoundError(f"{flag} {lora}: not found (expected a folder or a .safetensors file)")


def load_rewards_first(specs, device: str = "cpu", defaults=None) -> dict:
    """Every reward of ``specs`` (``NAME`` or ``NAME:key=value,...``) loaded on ``device`` now, so
    missing weights stop the job before any image is generated. ``defaults(name)`` gives extra
    keyword arguments per reward name."""
    import diffalign.rewards

    rewards = {}
    for spec in specs:
        name = spec.split(":")[0]
        rewards[name] = diffalign.rewards.load(spec, device=device, **(defaults(name) if defaults else {}))
    return rewards
