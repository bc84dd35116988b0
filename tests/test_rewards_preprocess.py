"""Torch preprocessing of the reward models against PIL / torchvision references of the originals."""
import numpy as np
import pytest
import torch
from PIL import Image

import diffalign  # noqa: F401  (compat shim first)
from diffalign.rewards.preprocess import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ImagePreprocess,
    center_crop,
    letterbox,
    shortest_side_size,
)
from reward_checks import pil_clip_processor_class

# PIL resamples uint8 images in two passes, rounding and clipping in between: a few levels of 255 at
# sharp edges, well under one level on average (differences are after normalisation).
TOL = 6 / 255 / min(OPENAI_CLIP_STD)
TOL_MEAN = 0.75 / 255 / min(OPENAI_CLIP_STD)


def close(ours: torch.Tensor, ref: torch.Tensor) -> bool:
    d = (ours - ref).abs()
    return ours.shape == ref.shape and d.max().item() < TOL and d.mean().item() < TOL_MEAN


def smooth_image(h, w, seed=0) -> np.ndarray:
    """A smooth random uint8 image (bicubic-upsampled noise) plus a sharp-edged square."""
    rng = np.random.default_rng(seed)
    small = (rng.random((h // 8 + 2, w // 8 + 2, 3)) * 255).astype(np.uint8)
    img = np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC))
    img[h // 4 : h // 2, w // 4 : w // 2] = (230, 20, 40)
    return img


def as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float()[None] / 255


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(OPENAI_CLIP_MEAN)[:, None, None]) / torch.tensor(OPENAI_CLIP_STD)[:, None, None]


def pil_shortest_crop(img: np.ndarray, size: int, rounding: str) -> torch.Tensor:
    """PIL reference: shortest side to ``size`` (bicubic, uint8), centre crop, ToTensor, normalise."""
    h, w = img.shape[:2]
    short, long = min(h, w), max(h, w)
    new_long = int(size * long / short)
    nw, nh = (size, new_long) if w <= h else (new_long, size)
    resized = Image.fromarray(img).resize((nw, nh), Image.BICUBIC)
    if rounding == "floor":
        top, left = (nh - size) // 2, (nw - size) // 2
    else:
        top, left = int(round((nh - size) / 2)), int(round((nw - size) / 2))
    crop = np.asarray(resized.crop((left, top, left + size, top + size)))
    return normalize(torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("hw", [(300, 200), (201, 303), (224, 224), (40, 50)])
def test_shortest_side_crop_matches_hf_clip_processor(hw):
    """HF CLIPImageProcessor semantics (PickScore, CLIP score): transformers' own PIL processor."""
    CLIPImageProcessorPil = pil_clip_processor_class()

    img = smooth_image(*hw)
    ref = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})(
        images=Image.fromarray(img), return_tensors="pt"
    ).pixel_values[0]
    ours = ImagePreprocess(size=32)(as_tensor(img))[0]
    assert ours.shape == (3, 32, 32)
    assert close(ours, ref) and close(ours, pil_shortest_crop(img, 32, "floor"))


@pytest.mark.parametrize("hw", [(303, 200), (200, 303), (64, 48)])
def test_torchvision_resize_center_crop(hw):
    """OpenAI CLIP / ImageReward / aesthetic: torchvision Resize(size, bicubic) + CenterCrop on PIL."""
    from torchvision import transforms as T

    img = smooth_image(*hw, seed=1)
    tv = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor(),
                    T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])
    ref = tv(Image.fromarray(img))
    ours = ImagePreprocess(size=32, crop_rounding="round")(as_tensor(img))[0]
    assert close(ours, ref) and close(ours, pil_shortest_crop(img, 32, "round"))


def test_crop_rounding_differs_where_the_originals_differ():
    x = torch.arange(7.0)[None, None, :, None].expand(1, 1, 7, 4)  # 7 rows: offset (7-4)/2 = 1.5
    assert center_crop(x, 4, "floor")[0, 0, :, 0].tolist() == [1, 2, 3, 4]
    assert center_crop(x, 4, "round")[0, 0, :, 0].tolist() == [2, 3, 4, 5]
    assert shortest_side_size(303, 200, 224) == (339, 224) and shortest_side_size(200, 303, 224) == (224, 339)


@pytest.mark.parametrize("hw", [(300, 200), (201, 333), (16, 16)])
def test_letterbox_matches_hpsv2_resize_max_size(hw):
    """HPSv2 val transform: ToTensor, ResizeMaxSize(size) on the float tensor (torchvision, fill 0), normalise."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    img = smooth_image(*hw, seed=2)
    t = as_tensor(img)[0]
    h, w = t.shape[1:]
    scale = 32 / max(h, w)
    new = [round(h * scale), round(w * scale)]
    ref = TF.resize(t, new, InterpolationMode.BICUBIC, antialias=True)
    ph, pw = 32 - new[0], 32 - new[1]
    ref = normalize(TF.pad(ref, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0))
    pre = ImagePreprocess(size=32, resize_mode="letterbox", clamp=False)
    ours = pre(t[None])[0]
    assert torch.allclose(ours, ref, atol=1e-5)
    # and against a PIL resize of the uint8 image (the same geometry, PIL's resampler)
    pil = np.asarray(Image.fromarray(img).resize((new[1], new[0]), Image.BICUBIC)).astype(np.float32) / 255
    canvas = np.zeros((32, 32, 3), np.float32)
    canvas[ph // 2 : ph // 2 + new[0], pw // 2 : pw // 2 + new[1]] = pil
    assert close(ours, normalize(torch.from_numpy(canvas).permute(2, 0, 1)))
    if ph or pw:  # padding is black in pixel space
        assert torch.allclose(pre.geometry(t[None])[0, :, 0, 0] if ph else pre.geometry(t[None])[0, :, :, 0].T[0], torch.zeros(3))


def test_preprocessing_is_differentiable():
    x = torch.rand(2, 3, 45, 30, requires_grad=True)
    for pre in (ImagePreprocess(size=16), ImagePreprocess(size=16, resize_mode="letterbox", clamp=False)):
        x.grad = None
        pre(x).pow(2).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_letterbox_shape_and_preprocessor_config():
    assert letterbox(torch.rand(1, 3, 10, 20), 8).shape == (1, 3, 8, 8)
    pre = ImagePreprocess.from_hf_config({"size": {"shortest_edge": 48}, "crop_size": {"height": 48, "width": 48},
                                          "resample": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    assert (pre.size, pre.interpolation, pre.mean, pre.crop_rounding) == (48, "bilinear", (0.5, 0.5, 0.5), "floor")
    with pytest.raises(ValueError, match="crops"):
        ImagePreprocess.from_hf_config({"size": 224, "crop_size": 200})
