"""``torch.compile`` of the denoiser inside the training forward (``model.compile``): the whole
UNet forward is one graph (``fullgraph=True`` turns any graph break into an error), the reference
pass with the adapters off compiles too, and errors, loss and LoRA gradients equal eager's.

``aot_eager`` runs dynamo + AOT autograd (graph capture, forward and backward graphs) without code
generation, so it is fast; the ``inductor`` case adds the generated C++ kernels and needs a C
compiler. It takes several minutes for even the tiny UNet on a 2-core machine, so it runs only
with ``DIFFALIGN_TEST_INDUCTOR=1``."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from diffalign.losses import get_loss
from diffalign.pipelines.tiny import build_tiny_adapter


def _adapter():
    adapter = build_tiny_adapter("sd")
    adapter.add_lora(rank=4, init_lora_weights="gaussian")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero B: the policy differs from the reference (a zero B gives loss = log 2)
        for name, p in adapter.denoiser.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    adapter.denoiser.enable_gradient_checkpointing()
    adapter.denoiser.train()
    return adapter


def _dpo_step(adapter, latents, cond, noise, timesteps):
    err, _ = adapter.training_errors(latents, cond, noise=noise, timesteps=timesteps)
    ref, _ = adapter.training_errors(latents, cond, noise=noise, timesteps=timesteps, reference=True)
    loss, _ = get_loss("diffusion_dpo")(policy_w=err[:2], policy_l=err[2:], ref_w=ref[:2], ref_l=ref[2:])
    loss.backward()
    grads = {n: p.grad.clone() for n, p in adapter.denoiser.named_parameters() if p.requires_grad}
    adapter.denoiser.zero_grad(set_to_none=True)
    return err.detach(), ref, loss.detach(), grads


INDUCTOR = pytest.param("inductor", marks=[
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="inductor on CPU needs a C compiler"),
    pytest.mark.skipif(os.environ.get("DIFFALIGN_TEST_INDUCTOR") != "1",
                       reason="inductor codegen of the tiny UNet takes minutes on a small CPU; set DIFFALIGN_TEST_INDUCTOR=1"),
])


@pytest.mark.slow  # ~16 CPU s with aot_eager (dynamo tracing of the tiny UNet, forward + backward graphs)
@pytest.mark.parametrize("backend", ["aot_eager", INDUCTOR])
def test_compiled_training_step_is_one_graph_and_matches_eager(backend):
    from torch._dynamo.utils import counters

    eager_adapter = _adapter()
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(4, *eager_adapter.latent_shape(64, 64), generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    timesteps = torch.tensor([10, 500, 10, 500])
    cond = eager_adapter.encode_prompt(["a red square", "a blue circle"] * 2)
    eager = _dpo_step(eager_adapter, latents, cond, noise, timesteps)

    torch._dynamo.reset()
    counters.clear()
    adapter = _adapter()
    adapter.compile_network(backend=backend, fullgraph=True, dynamic=False)
    for _ in range(2):  # the second step runs the cached graphs (policy and reference)
        compiled = _dpo_step(adapter, latents, cond, noise, timesteps)
    assert not counters["graph_break"]
    assert not torch.allclose(eager[0], eager[1])  # policy != reference: the check below is not vacuous
    for e, c in zip(eager[:3], compiled[:3]):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-6)
    assert eager[3].keys() == compiled[3].keys() and eager[3]
    for name in eager[3]:
        torch.testing.assert_close(compiled[3][name], eager[3][name], rtol=1e-3, atol=1e-6)
    # the compiled module keeps its parameter names (LoRA saving reads them)
    assert [n for n, _ in adapter.denoiser.named_parameters()] == [n for n, _ in eager_adapter.denoiser.named_parameters()]
