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
        probe = os.path.join(out, f".diffalign-write-test-{os.getpid()}")  # one per process (sharded jobs)
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
    names = [spec.split(":")[0] for spec in specs]
    for spec, name in zip(specs, names):
        # keyed by name; by the whole spec when a name comes twice (video:reward=a video:reward=b)
        key = name if names.count(name) == 1 else spec
        rewards[key] = diffalign.rewards.load(spec, device=device, **(defaults(name) if defaults else {}))
    return rewards
