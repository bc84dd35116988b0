"""Memory for big models: quantized frozen base weights with a LoRA on top (``model.quantize``) and
frozen parts kept in CPU memory (``model.offload_frozen``). The CUDA runs are skipped without a GPU
(and without bitsandbytes / torchao); on CPU the offload mechanism is checked with the parts' moves
recorded, and both options stop with one line."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import diffalign  # noqa: F401  (before diffusers / transformers: the torchvision fix)
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffusers import AutoencoderKL  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bitsandbytes / torchao kernels, "
                          "GPU memory); run on a GPU machine: pytest tests/test_gpu_memory.py")


def test_offload_moves_each_frozen_part_for_its_own_calls_only(monkeypatch):
    """The mechanism of model.offload_frozen (here with CPU as both places, moves recorded): a part
    goes home at once, visits the run device for each call (a VAE's encode / decode too, which do not
    go through forward) and goes back, once per outer call; outputs are unchanged."""
    from diffalign.pipelines.models import offload_modules

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(4,), norm_num_groups=4, latent_channels=4, layers_per_block=1,
                        mid_block_add_attention=False).eval()
    pipe = SimpleNamespace(vae=vae, text_encoder=torch.nn.Linear(4, 4))
    x, z = torch.randn(1, 4), torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        before = pipe.text_encoder(x), pipe.vae.decode(z).sample
    moves = []
    for cls in (AutoencoderKL, torch.nn.Linear):
        original = cls.to
        monkeypatch.setattr(cls, "to", lambda self, *a, _o=original, **k: moves.append((type(self).__name__, a)) or _o(self, *a, **k))
    assert offload_modules(pipe, device="cpu", home="cpu", names=("text_encoder", "vae", "missing")) == ["text_encoder", "vae"]
    assert moves == [("Linear", ("cpu",)), ("AutoencoderKL", ("cpu",))]
    moves.clear()
    with torch.no_grad():
        after = pipe.text_encoder(x), pipe.vae.decode(z).sample
        pipe.vae(torch.zeros(1, 3, 4, 4))  # forward runs encode + decode inside: one visit
    assert [m[0] for m in moves] == ["Linear"] * 2 + ["AutoencoderKL"] * 4
    for a, b in zip(before, after):
        assert torch.equal(a, b)


def test_quantize_and_offload_errors():
    """CPU: one line each; a quantized base cannot be fully fine-tuned."""
    from diffalign.pipelines.models import check_offload_device, quantization_config
    from diffalign.train.api import build_trainer

    with pytest.raises(ValueError, match="model.quantize=nf4 needs a CUDA GPU"):
        quantization_config("nf4", "cpu")
    with pytest.raises(ValueError, match="model.offload_frozen keeps frozen parts in CPU memory for a CUDA GPU"):
        check_offload_device("cpu")
    with pytest.raises(ValueError, match=r"model.quantize=int8 freezes the base network .*lora.enabled: true"):
        build_trainer({"trainer": "offline", "output_dir": "/nonexistent/x", "model": {"quantize": "int8"},
                       "lora": {"enabled": False}})


def _train(tmp_path, **model):
    """Two LoRA steps of the offline trainer on the tiny SD pipeline (saved to disk: quantization
    happens while loading) on the GPU; returns the trainer and the LoRA before / after."""
    from diffalign.data import write_pairs_jsonl
    from diffalign.train.api import build_trainer

    rng = np.random.default_rng(0)
    pairs = [{"caption": f"thing {i}", "jpg_0": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
              "jpg_1": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "label_0": 1.0} for i in range(4)]
    write_pairs_jsonl(str(tmp_path / "pairs"), pairs)
    build_tiny_pipeline("sd").save_pretrained(tmp_path / "model")
    trainer = build_trainer({
        "trainer": "offline", "method": "diffusion_dpo", "output_dir": str(tmp_path / "out"), "max_steps": 2,
        "batch_size": 2, "progress_bar": False, "model": {"pretrained": str(tmp_path / "model"), "weight_dtype": "bf16", **model},
        "lora": {"rank": 4}, "optim": {"lr": 0.01}, "data": {"path": str(tmp_path / "pairs"), "resolution": 32},
        "cache": {"enabled": False}, "validation": {"prompts": ["thing 0"], "every_steps": 2, "num_inference_steps": 2},
    })
    before = {n: p.detach().clone() for n, p in trainer.trainable_named_parameters().items()}
    trainer.train()
    return trainer, before, trainer.trainable_named_parameters()


@CUDA
@pytest.mark.parametrize("kind,package", [("nf4", "bitsandbytes"), ("int8", "bitsandbytes"), ("fp8", "torchao")])
def test_quantized_base_trains_a_lora_on_cuda(tmp_path, kind, package):
    """model.quantize: the UNet's linear layers hold quantized weights, the LoRA on top trains (fp32)
    and is exported; validation sampling runs through the quantized network."""
    pytest.importorskip(package)
    trainer, before, after = _train(tmp_path, quantize=kind)
    bases = [m.base_layer for m in trainer.adapter.denoiser.modules() if hasattr(m, "base_layer")]
    expected = {"nf4": "Linear4bit", "int8": "Linear8bitLt"}
    if kind in expected:
        assert {type(b).__name__ for b in bases if isinstance(b, torch.nn.Linear)} == {expected[kind]}
    else:
        assert any("Float8" in type(b.weight).__name__ for b in bases if isinstance(b, torch.nn.Linear))
    assert all(p.dtype == torch.float32 and p.is_cuda for p in after.values())
    assert max(float((after[n] - before[n]).abs().max()) for n in before) > 0
    assert (tmp_path / "out" / "pytorch_lora_weights.safetensors").exists()
    assert (tmp_path / "out" / "validation" / "step-000002.png").exists()


@CUDA
def test_offload_frozen_keeps_encoders_in_cpu_memory_on_cuda(tmp_path):
    """model.offload_frozen: the text encoder and VAE sit in CPU memory between calls (during and after
    training, whose uncached batches encode images and captions every step), the UNet on the GPU."""
    trainer, before, after = _train(tmp_path, offload_frozen=True)
    pipe = trainer.adapter.pipe
    assert next(pipe.unet.parameters()).is_cuda
    assert not next(pipe.text_encoder.parameters()).is_cuda and not next(pipe.vae.parameters()).is_cuda
    assert max(float((after[n] - before[n]).abs().max()) for n in before) > 0
    assert (tmp_path / "out" / "validation" / "step-000002.png").exists()
