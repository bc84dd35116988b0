"""A tiny offline run that kills itself with SIGKILL at a chosen point (run by the fault-injection
tests as ``python faulty_run.py '<json>'``).

JSON keys: ``out``, ``data``, ``cache``, ``steps``, ``checkpointing_steps``, ``resume`` (or null),
``kill``: null, ``"step:N"`` (inside step N, after its backward pass, before the optimizer step),
``"checkpoint:N"`` (inside the write of checkpoint N, after its first file) or ``"export"``
(half-way through writing the final LoRA).
"""
from __future__ import annotations

import json
import os
import signal
import sys


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(spec: dict) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import safetensors.torch
    from reliability_helpers import offline_config

    import diffalign.train.trainer as trainer_module
    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.tiny import build_tiny_pipeline
    from diffalign.train.offline import OfflinePreferenceTrainer

    cfg = offline_config(spec["out"], spec["data"], spec["cache"], seed=7)
    cfg.max_steps, cfg.checkpointing_steps, cfg.resume = spec["steps"], spec["checkpointing_steps"], spec["resume"]
    kill = spec.get("kill") or ""
    where, _, at = kill.partition(":")
    trainer = OfflinePreferenceTrainer(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))

    if where == "step":
        steps_done = {"n": 0}
        clip_and_step = trainer.clip_and_step

        def dying_clip_and_step():
            steps_done["n"] += 1
            if steps_done["n"] == int(at):
                die()
            return clip_and_step()

        trainer.clip_and_step = dying_clip_and_step
    elif where == "checkpoint":
        save_checkpoint, save_file = trainer_module.save_checkpoint, safetensors.torch.save_file

        def dying_save_file(tensors, filename, *args, **kwargs):
            save_file(tensors, filename, *args, **kwargs)
            die()

        def dying_save_checkpoint(output_dir, step, *args, **kwargs):
            if step == int(at):
                safetensors.torch.save_file = dying_save_file
            return save_checkpoint(output_dir, step, *args, **kwargs)

        trainer_module.save_checkpoint = dying_save_checkpoint
    elif where == "export":
        export = trainer.export

        def dying_export():
            with open(os.path.join(cfg.output_dir, "pytorch_lora_weights.safetensors"), "wb") as f:
                f.write(b"half a LoRA")
            die()
            return export()

        trainer.export = dying_export
    trainer.train()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
