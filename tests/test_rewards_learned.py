"""Learned rewards: each real architecture from a tiny config, a random state dict saved in the official
file format and key layout, loaded through the real loader, and scored against an independent reference
path (the original's preprocessing done with PIL / torchvision, the model called directly)."""
import argparse
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import diffalign  # noqa: F401  (compat shim first)
from diffalign.pipelines.tokenizers import clip_tokenizer
from diffalign.rewards import load
from diffalign.rewards.blip import REWARD_MEAN, REWARD_STD
from diffalign.rewards.checkpoints import read_state_dict
from diffalign.rewards.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from reward_checks import pil_clip_processor_class

PROMPTS = ["a photo of a red circle", "two blue squares"]
SIZE = 32



def pictures(n=2, h=40, w=52, seed=0) -> list[np.ndarray]:
    """Non-square smooth uint8 test images."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = (rng.random((h // 6, w // 6, 3)) * 255).astype(np.uint8)
        out.append(np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC)))
    return out


def tensor_of(images) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def torchvision_reference(images, letterbox=False) -> torch.Tensor:
    """The originals' PIL / torchvision preprocessing: Resize(32, bicubic) + CenterCrop (OpenAI CLIP,
    ImageReward) or ToTensor + HPSv2's ResizeMaxSize (longest side, zero pad)."""
    import torchvision.transforms.functional as TF
    from torchvision import transforms as T

    out = []
    for img in images:
        if letterbox:
            t = TF.to_tensor(Image.fromarray(img))
            h, w = t.shape[1:]
            new = [round(h * SIZE / max(h, w)), round(w * SIZE / max(h, w))]
            t = TF.resize(t, new, T.InterpolationMode.BICUBIC, antialias=True)
            ph, pw = SIZE - new[0], SIZE - new[1]
            t = TF.pad(t, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
        else:
            t = T.Compose([T.Resize(SIZE, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(SIZE), T.ToTensor()])(
                Image.fromarray(img)
            )
        out.append(TF.normalize(t, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD))
    return torch.stack(out)


def unit(x: torch.Tensor) -> torch.Tensor:
    x = x if isinstance(x, torch.Tensor) else x.pooler_output
    return x / x.norm(dim=-1, keepdim=True)


def assert_gradient_reaches_pixels(reward, prompts=PROMPTS):
    x = tensor_of(pictures(seed=5)).requires_grad_(True)
    out = reward(x, prompts)
    assert out.shape == (2,) and out.requires_grad
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.abs().sum((1, 2, 3)) > 0).all()


# --------------------------------------------------------------------------- transformers CLIP


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny transformers CLIPModel (real CLIP vocabulary size) + its preprocessor config, saved like a hub repo."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=SIZE, patch_size=8),
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    return str(folder)


def hf_reference_cosine(clip_dir, images, prompts):
    """Cosine via transformers' own PIL processor + tokenizer + model calls."""
    from transformers import CLIPModel
    CLIPImageProcessorPil = pil_clip_processor_class()

    model = CLIPModel.from_pretrained(clip_dir).eval()
    pixels = CLIPImageProcessorPil.from_pretrained(clip_dir)(images=[Image.fromarray(i) for i in images], return_tensors="pt").pixel_values
    tokens = clip_tokenizer()(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        img = unit(model.get_image_features(pixel_values=pixels))
        txt = unit(model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask))
    return (img * txt).sum(-1), model.logit_scale.exp().item()


def test_clip_score(clip_dir):
    images = pictures()
    cos, _ = hf_reference_cosine(clip_dir, images, PROMPTS)
    raw = load("clip_score", model=clip_dir, clamp=False)
    assert torch.allclose(raw(images, PROMPTS), 100 * cos, atol=0.3)
    clipped = load("clip_score", model=clip_dir)
    assert torch.allclose(clipped(images, PROMPTS), (100 * cos).clamp(min=0), atol=0.3)
    hessel = load("clip_score", model=clip_dir, scale=2.5, clamp=False)
    assert torch.allclose(hessel(images, PROMPTS), 2.5 * cos, atol=0.01)
    assert_gradient_reaches_pixels(raw)
    assert not raw(images, PROMPTS[::-1]).allclose(raw(images, PROMPTS))  # the prompt matters


def test_pickscore(clip_dir):
    images = pictures(seed=1)
    cos, scale = hf_reference_cosine(clip_dir, images, PROMPTS)
    reward = load("pickscore", model=clip_dir)
    assert reward.differentiable and reward.higher_is_better
    assert torch.allclose(reward(images, PROMPTS), scale * cos, atol=0.05)
    assert_gradient_reaches_pixels(reward)


def test_clip_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load("clip_score", model=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        load("pickscore", model=str(tmp_path))  # a folder without a model


# --------------------------------------------------------------------------- LAION aesthetic


def aesthetic_head(embed_dim: int, seed: int = 0) -> dict:
    """A random head in the original file's layout: keys layers.{0,2,4,6,7}.{weight,bias}."""
    g = torch.Generator().manual_seed(seed)
    dims = [(0, embed_dim, 1024), (2, 1024, 128), (4, 128, 64), (6, 64, 16), (7, 16, 1)]
    state = {}
    for idx, fan_in, fan_out in dims:
        state[f"layers.{idx}.weight"] = torch.randn(fan_out, fan_in, generator=g) / fan_in**0.5
        state[f"layers.{idx}.bias"] = torch.randn(fan_out, generator=g) * 0.1
    return state


def test_aesthetic(clip_dir, tmp_path):
    from transformers import CLIPModel

    head = aesthetic_head(16)
    torch.save(head, tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    reward = load("aesthetic", path=str(tmp_path), clip_model=clip_dir)
    assert not reward.requires_prompt
    images = pictures(seed=2)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        y = unit(model.get_image_features(pixel_values=torchvision_reference(images)))
        for idx in (0, 2, 4, 6, 7):  # the head is affine in eval mode
            y = y @ head[f"layers.{idx}.weight"].T + head[f"layers.{idx}.bias"]
    assert torch.allclose(reward(images), y.squeeze(-1), atol=5e-3)
    explicit = load("aesthetic", path=str(tmp_path / "sac+logos+ava1-l14-linearMSE.pth"), clip_model=clip_dir)
    assert torch.allclose(explicit(images), reward(images))
    assert_gradient_reaches_pixels(reward, prompts=None)
    with pytest.raises(FileNotFoundError, match=r"sac\+logos\+ava1-l14-linearMSE.pth.*huggingface-cli download trl-lib"):
        load("aesthetic", path=str(tmp_path / "empty"), clip_model=clip_dir)


# --------------------------------------------------------------------------- HPSv2 / HPSv2.1 (open_clip)

TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": SIZE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def hps_dir(tmp_path_factory):
    """HPS_v2_compressed.pt and HPS_v2.1_compressed.pt: torch.save({'state_dict': ...}) of two tiny open_clip CLIPs."""
    import open_clip

    folder = tmp_path_factory.mktemp("hps")
    models = {}
    for seed, name in ((0, "HPS_v2_compressed.pt"), (1, "HPS_v2.1_compressed.pt")):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**TINY_OPEN_CLIP).eval()
        torch.save({"state_dict": model.state_dict(), "epoch": 1}, folder / name)
        models[name] = model
    return str(folder), models


def test_hpsv2_and_hpsv21(hps_dir):
    import open_clip

    folder, models = hps_dir
    tokens = open_clip.get_tokenizer("ViT-H-14")(PROMPTS)
    for name, file in (("hpsv2", "HPS_v2_compressed.pt"), ("hpsv2.1", "HPS_v2.1_compressed.pt")):
        reward = load(name, path=folder, model_config=TINY_OPEN_CLIP)
        for images in (pictures(2, 40, 52, seed=3), pictures(2, 52, 40, seed=4)):  # padding on either axis
            with torch.no_grad():
                img, txt, _ = models[file](torchvision_reference(images, letterbox=True), tokens)
            assert torch.allclose(reward(images, PROMPTS), (img * txt).sum(-1), atol=1e-4), name
        assert_gradient_reaches_pixels(reward)
    images = pictures(seed=3)
    v2, v21 = (load(n, path=folder, model_config=TINY_OPEN_CLIP) for n in ("hpsv2", "hpsv2.1"))
    assert not torch.allclose(v2(images, PROMPTS), v21(images, PROMPTS))


def test_hps_alignprop_preprocessing_is_torchvision_resize_bilinear(hps_dir):
    """``preprocess="alignprop"``: AlignProp's hps_loss_fn, ``torchvision.transforms.Resize(224)`` on the
    float tensor (torchvision 0.15: bilinear, no antialiasing), then OpenAI mean / std."""
    import open_clip
    from torchvision.transforms import InterpolationMode, Normalize, Resize

    folder, models = hps_dir
    reward = load("hpsv2", path=folder, model_config=TINY_OPEN_CLIP, preprocess="alignprop")
    size = reward.preprocess.size
    images = tensor_of(pictures(2, 3 * size, 3 * size, seed=5))  # square, as AlignProp's 512 x 512 samples
    reference = Normalize(reward.preprocess.mean, reward.preprocess.std)(
        Resize(size, interpolation=InterpolationMode.BILINEAR, antialias=False)(images))
    torch.testing.assert_close(reward.preprocess(images), reference, rtol=0, atol=1e-6)
    with torch.no_grad():
        img, txt, _ = models["HPS_v2_compressed.pt"](reference, open_clip.get_tokenizer("ViT-H-14")(PROMPTS))
    assert torch.allclose(reward(images, PROMPTS), (img * txt).sum(-1), atol=1e-4)
    default = load("hpsv2", path=folder, model_config=TINY_OPEN_CLIP)
    assert (default.preprocess(images) - reward.preprocess(images)).abs().max() > 1e-2  # the gradients differ too
    assert_gradient_reaches_pixels(reward)
    with pytest.raises(ValueError, match="unknown HPS preprocess 'bicubic'; expected one of hpsv2, alignprop"):
        load("hpsv2", path=folder, model_config=TINY_OPEN_CLIP, preprocess="bicubic")


def test_hps_checkpoint_formats_and_errors(hps_dir, tmp_path):
    from safetensors.torch import save_file

    folder, models = hps_dir
    state = read_state_dict(os.path.join(folder, "HPS_v2_compressed.pt"), key="state_dict")
    save_file(state, tmp_path / "hps.safetensors")
    a = load("hpsv2", path=str(tmp_path / "hps.safetensors"), model_config=TINY_OPEN_CLIP)
    b = load("hpsv2", path=folder, model_config=TINY_OPEN_CLIP)
    x = tensor_of(pictures(seed=6))
    assert torch.allclose(a(x, PROMPTS), b(x, PROMPTS))

    # training scripts often pickle their argparse namespace next to the weights: refused by weights_only=True
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1e-5)}, tmp_path / "HPS_v2_compressed.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        load("hpsv2", path=str(tmp_path), model_config=TINY_OPEN_CLIP)
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("visual.")}}, tmp_path / "HPS_v2.1_compressed.pt")
    with pytest.raises(ValueError, match=r"missing \d+ keys \(e.g. \['visual"):
        load("hpsv2.1", path=str(tmp_path), model_config=TINY_OPEN_CLIP)
    with pytest.raises(FileNotFoundError, match="HPS_v2_compressed.pt.*huggingface-cli download xswu/HPSv2"):
        load("hpsv2", path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load("hpsv2.1")  # no path, hub disabled by the test environment, nothing cached


# --------------------------------------------------------------------------- ImageReward (BLIP)

TINY_VISION = {"image_size": SIZE, "patch_size": 16, "width": 48, "depth": 2, "heads": 2}
WORDS = ["a", "photo", "of", "red", "blue", "circle", "two", "square", "##s"]


@pytest.fixture(scope="module")
def imagereward_files(tmp_path_factory):
    """ImageReward.pt (torch.save of the model state dict, official keys), med_config.json, a WordPiece vocab."""
    from diffalign.rewards.blip import ImageRewardModel

    folder = tmp_path_factory.mktemp("imagereward")
    tok_dir = folder / "bert"
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    vocab = 5 + len(WORDS) + 2  # + [DEC] and [ENC], as 30522 + 2 = 30524 in the real config
    med = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
           "layer_norm_eps": 1e-12, "max_position_embeddings": 40, "model_type": "bert", "num_attention_heads": 2,
           "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": vocab,
           "encoder_width": 768, "add_cross_attention": True}
    (folder / "med_config.json").write_text(json.dumps(med))
    torch.manual_seed(0)
    model = ImageRewardModel(med, TINY_VISION)
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    state = dict(model.state_dict())
    # the original carries these too (BLIP_Pretrain's projections, med.py's persistent position_ids buffer)
    state.update({"blip.vision_proj.weight": torch.randn(256, 48), "blip.vision_proj.bias": torch.zeros(256),
                  "blip.text_proj.weight": torch.randn(256, 32), "blip.text_proj.bias": torch.zeros(256),
                  "blip.text_encoder.embeddings.position_ids": torch.arange(40)[None]})
    expected_layout = {  # key -> shape, from ImageReward's BLIP code (vit.py, med.py, ImageReward.py)
        "blip.visual_encoder.cls_token": (1, 1, 48),
        "blip.visual_encoder.pos_embed": (1, 5, 48),
        "blip.visual_encoder.patch_embed.proj.weight": (48, 3, 16, 16),
        "blip.visual_encoder.blocks.1.attn.qkv.weight": (144, 48),
        "blip.visual_encoder.blocks.1.mlp.fc2.weight": (48, 192),
        "blip.visual_encoder.norm.weight": (48,),
        "blip.text_encoder.embeddings.word_embeddings.weight": (vocab, 32),
        "blip.text_encoder.embeddings.position_embeddings.weight": (40, 32),
        "blip.text_encoder.embeddings.LayerNorm.weight": (32,),
        "blip.text_encoder.encoder.layer.0.attention.self.query.weight": (32, 32),
        "blip.text_encoder.encoder.layer.1.crossattention.self.key.weight": (32, 48),
        "blip.text_encoder.encoder.layer.1.crossattention.output.LayerNorm.bias": (32,),
        "blip.text_encoder.encoder.layer.1.intermediate.dense.weight": (64, 32),
        "blip.text_encoder.encoder.layer.1.output.dense.weight": (32, 64),
        "mlp.layers.0.weight": (1024, 32),
        "mlp.layers.7.weight": (1, 16),
    }
    for key, shape in expected_layout.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("token_type" in k or "pooler" in k for k in state)
    torch.save(state, folder / "ImageReward.pt")
    return folder, tok_dir, state


def test_imagereward_tokenizer_and_score(imagereward_files):
    folder, tok_dir, state = imagereward_files
    reward = load("imagereward", path=str(folder), tokenizer=str(tok_dir), vision_config=TINY_VISION)
    tok = reward.tokenize(["a photo of two red circles"])
    assert tok.input_ids.shape == (1, 35)
    assert reward.tokenizer.convert_ids_to_tokens(tok.input_ids[0, :9].tolist()) == [
        "[CLS]", "a", "photo", "of", "two", "red", "circle", "##s", "[SEP]"]
    assert tok.attention_mask[0].sum() == 9 and reward.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [14, 15]

    images = pictures(seed=7)
    # reference: torchvision preprocessing, then the loaded checkpoint's tensors applied by hand in the head
    m = reward.model
    with torch.no_grad():
        vis = m.blip.visual_encoder.forward_features(torchvision_reference(images))
        ids = reward.tokenize(PROMPTS)
        hidden = m.blip.text_encoder(input_ids=ids.input_ids, attention_mask=ids.attention_mask, encoder_hidden_states=vis,
                                     encoder_attention_mask=torch.ones(vis.shape[:2], dtype=torch.long)).last_hidden_state[:, 0]
        y = hidden
        for idx in (0, 2, 4, 6, 7):
            y = y @ state[f"mlp.layers.{idx}.weight"].T + state[f"mlp.layers.{idx}.bias"]
    expected = (y.squeeze(-1) - REWARD_MEAN) / REWARD_STD
    scores = reward(images, PROMPTS)
    assert torch.allclose(scores, expected, atol=2e-3)
    assert not torch.allclose(reward(images, PROMPTS[::-1]), scores)
    for key in ("blip.visual_encoder.blocks.0.attn.qkv.weight", "blip.text_encoder.encoder.layer.1.crossattention.self.value.bias"):
        assert torch.equal(reward.model.state_dict()[key], state[key])  # every weight comes from the file
    assert_gradient_reaches_pixels(reward)


def test_imagereward_normalisation_and_errors(imagereward_files, tmp_path):
    folder, tok_dir, state = imagereward_files
    constant = {k: (torch.zeros_like(v) if k.startswith("mlp.") else v) for k, v in state.items()}
    constant["mlp.layers.7.bias"] = torch.tensor([REWARD_MEAN + 2.0 * REWARD_STD])
    torch.save(constant, tmp_path / "ImageReward.pt")
    reward = load("imagereward", path=str(tmp_path / "ImageReward.pt"), med_config=str(folder / "med_config.json"),
                  tokenizer=str(tok_dir), vision_config=TINY_VISION)
    assert torch.allclose(reward(pictures(), PROMPTS), torch.tensor([2.0, 2.0]), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="med_config.json.*huggingface-cli download THUDM/ImageReward"):
        load("imagereward", path=str(tmp_path), tokenizer=str(tok_dir), vision_config=TINY_VISION)
    with pytest.raises(ValueError, match="does not match"):
        load("imagereward", path=str(folder), tokenizer=str(tok_dir), vision_config={**TINY_VISION, "width": 64})


# --------------------------------------------------------------------------- MPS

TINY_CLIP_CONFIG = {
    "text_config": {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "image_size": SIZE, "patch_size": 8},
    "projection_dim": 24,
}
TINY_FUSION = {"layers": 2, "heads": 3, "dim_head": 8, "ff_mult": 2}


def test_mps(tmp_path):
    from safetensors.torch import save_file
    from transformers import CLIPModel
    CLIPImageProcessorPil = pil_clip_processor_class()

    from diffalign.rewards.mps import MPSModel

    torch.manual_seed(0)
    model = MPSModel(CLIPModel.config_class(**TINY_CLIP_CONFIG), TINY_FUSION)
    for p in model.cross_model.parameters():
        p.data.normal_(0, 0.3)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    layout = {  # key -> shape, from MPS's cross_modeling.py (dim 24, 3 heads of 8, ff_mult 2) and XCLIPModel
        "cross_model.layers.0.0.fn.norm.weight": (24,),
        "cross_model.layers.0.0.fn.norm.bias": (24,),  # a buffer in the original, saved with the weights
        "cross_model.layers.0.0.fn.to_q.weight": (24, 24),
        "cross_model.layers.0.0.fn.to_kv.weight": (16, 24),
        "cross_model.layers.0.0.fn.to_out.weight": (24, 24),
        "cross_model.layers.0.0.fn.ff.0.weight": (96, 24),
        "cross_model.layers.0.0.fn.ff.2.weight": (24, 48),
        "cross_model.layers.1.1.fn.rotary_emb.inv_freq": (4,),
        "cross_model.layers.1.1.fn.fused_attn_ff_proj.weight": (24 + 8 + 8 + 96, 24),
        "cross_model.layers.1.1.fn.attn_out.weight": (24, 24),
        "cross_model.layers.1.1.fn.ff_out.1.weight": (24, 48),
        "model.text_model.embeddings.token_embedding.weight": (49408, 32),
        "model.visual_projection.weight": (24, 32),
        "model.logit_scale": (),
    }
    for key, shape in layout.items():
        assert tuple(state[key].shape) == shape, key
    save_file(state, tmp_path / "mps.safetensors")
    options = dict(clip_config=TINY_CLIP_CONFIG, fusion_config=TINY_FUSION)
    reward = load("mps", path=str(tmp_path / "mps.safetensors"), **options)
    images = pictures(seed=8)
    scores = reward(images, PROMPTS)
    assert torch.isfinite(scores).all() and not torch.allclose(reward(images, PROMPTS[::-1]), scores)
    assert_gradient_reaches_pixels(reward)

    # with a zero fusion (every residual branch adds 0) the score is logit_scale * cos(prompt EOS, image CLS token)
    zero = {k: (torch.zeros_like(v) if k.startswith("cross_model.") and k.endswith("weight") and v.ndim == 2 else v) for k, v in state.items()}
    save_file(zero, tmp_path / "zero.safetensors")
    reward0 = load("mps", path=str(tmp_path / "zero.safetensors"), **options)
    clip = model.model.eval()
    pixels = CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})(
        images=[Image.fromarray(i) for i in images], return_tensors="pt").pixel_values
    ids = clip_tokenizer(pad_token="!")(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        img = unit(clip.visual_projection(clip.vision_model(pixel_values=pixels).last_hidden_state[:, 0]))
        txt = unit(clip.text_projection(clip.text_model(input_ids=ids).pooler_output))
    assert torch.allclose(reward0(images, PROMPTS), clip.logit_scale.exp() * (img * txt).sum(-1), atol=0.02)

    torch.save(model, tmp_path / "MPS_overall_checkpoint.pth")  # the official format: a pickled module
    with pytest.raises(ValueError, match="(?s)weights_only=True.*conversion recipe"):
        load("mps", path=str(tmp_path / "MPS_overall_checkpoint.pth"), **options)
    with pytest.raises(FileNotFoundError, match="converted MPS state dict"):
        load("mps", **options)
