"""FSDP2 (``torch.distributed.fsdp.fully_shard``) with a LoRA on CPU (gloo), against DDP.

accelerate 1.16 builds FSDP only on CUDA (on CPU ``Accelerator(cpu=True, fsdp_plugin=...)`` gives
``DistributedType.MULTI_CPU``, i.e. DDP), so the trainer cannot run FSDP2 on CPU; this script checks
what torch itself does there, on the tiny SD UNet with diffalign's LoRA: a few AdamW steps on a
global batch split over the processes, sharded (``fsdp2``) or replicated (``ddp``); writes the
losses, the world size and the full LoRA (gathered with ``get_model_state_dict(full_state_dict=True)``)
to ``OUT/<mode>.json`` / ``OUT/<mode>.safetensors``. ``fsdp2`` also saves a sharded
``torch.distributed.checkpoint`` (``OUT/dcp``), which ``load`` (run on any number of processes)
reads back into an unsharded model and exports.

  torchrun --standalone --nproc_per_node 2 bench/fsdp2_cpu_check.py ddp OUT
  torchrun --standalone --nproc_per_node 2 bench/fsdp2_cpu_check.py fsdp2 OUT
  torchrun --standalone --nproc_per_node 1 bench/fsdp2_cpu_check.py load OUT
"""
from __future__ import annotations

import json
import os
import sys

STEPS, GLOBAL_BATCH = 3, 4


def main(mode: str, out: str) -> int:
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

    import diffalign  # noqa: F401  (compat shim first)
    from diffalign.pipelines import adapter_for
    from diffalign.pipelines.tiny import build_tiny_pipeline

    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    adapter = adapter_for(build_tiny_pipeline("sd"))
    torch.manual_seed(0)
    adapter.add_lora(rank=4, init_lora_weights="gaussian")
    unet = adapter.denoiser.float()
    lora_keys = [k for k, p in unet.named_parameters() if p.requires_grad]

    def export(name: str, losses: list[float]) -> None:
        full = get_model_state_dict(unet, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            save_file({k: full[k].contiguous() for k in lora_keys}, os.path.join(out, f"{name}.safetensors"))
            with open(os.path.join(out, f"{name}.json"), "w") as f:
                json.dump({"world_size": world, "losses": losses, "sharded": sharded}, f)

    if mode == "load":
        state = get_model_state_dict(unet)
        dcp.load({"model": state}, checkpoint_id=os.path.join(out, "dcp"))
        set_model_state_dict(unet, state)
        sharded = False
        export("load", [])
        dist.destroy_process_group()
        return 0

    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
            fully_shard(block)
        model = fully_shard(unet)
    else:
        model = torch.nn.parallel.DistributedDataParallel(unet)
    sharded = type(next(p for p in unet.parameters() if p.requires_grad)).__name__
    opt = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    size = unet.config.sample_size
    x = torch.randn(GLOBAL_BATCH, unet.config.in_channels, size, size, generator=gen)
    cond = torch.randn(GLOBAL_BATCH, 8, unet.config.cross_attention_dim, generator=gen)
    target = torch.randn(GLOBAL_BATCH, unet.config.out_channels, size, size, generator=gen)
    t = torch.randint(0, 1000, (GLOBAL_BATCH,), generator=gen)
    mine = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    losses = []
    for _ in range(STEPS):
        loss = torch.nn.functional.mse_loss(model(x[mine], t[mine], encoder_hidden_states=cond[mine]).sample, target[mine])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(float(mean) / world)
    export(mode, losses)
    if mode == "fsdp2":
        dcp.save({"model": get_model_state_dict(unet)}, checkpoint_id=os.path.join(out, "dcp"))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("ddp", "fsdp2", "load"):
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
