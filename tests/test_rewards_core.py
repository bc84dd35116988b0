"""Reward interface, registry, composition, rule-based rewards, and the video / multi-view wrappers."""
import io
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from PIL import Image

import diffalign  # noqa: F401  (compat shim first)
from diffalign import rewards
from diffalign.rewards import Reward, as_samples, load, register
from diffalign.rewards import registry as reg
from diffalign.rewards.video import frame_weights, select_frames
from diffalign.shapes import all_rows, render_row
from diffalign.shapes.judge import judge_image
from diffalign.shapes.vocab import COLOR_NAMES


class Brightness(Reward):
    """Test reward with a known answer: mean pixel value (differentiable)."""

    differentiable = True
    requires_prompt = False

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = offset

    def score(self, samples, prompts, metadata):
        return samples.mean((1, 2, 3)) + self.offset


class PromptLength(Reward):
    """Non-differentiable test reward: number of words of the prompt."""

    def score(self, samples, prompts, metadata):
        return torch.tensor([float(len(p.split())) for p in prompts])


register("test_brightness", Brightness, override=True)
register("test_prompt_length", PromptLength, override=True)


def flat(values, size=8):
    """Images [N,3,size,size] whose pixels all equal values[i]."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 3, size, size).clone()


# --------------------------------------------------------------------------- inputs


def test_accepted_input_forms_agree():
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    expected = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255
    for form in (arrays, list(arrays), [Image.fromarray(a) for a in arrays], torch.from_numpy(arrays).permute(0, 3, 1, 2), expected):
        assert torch.allclose(as_samples(form), expected)
    video = as_samples([[Image.fromarray(a) for a in arrays]] * 3, "video")
    assert video.shape == (3, 2, 3, 6, 5) and torch.allclose(video[1], expected)
    assert as_samples(np.stack([arrays] * 2), "multiview").shape == (2, 2, 3, 6, 5)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        as_samples(torch.full((1, 3, 4, 4), -1.0))
    with pytest.raises(ValueError, match="channel-first"):
        as_samples(torch.rand(1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"samples\[1\]"):
        as_samples([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="wrap it"):
        load("test_brightness")(torch.rand(1, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="2 prompts for 3 samples"):
        load("test_prompt_length")(torch.rand(3, 3, 4, 4), ["a", "b"])
    with pytest.raises(ValueError, match="needs one prompt"):
        load("test_prompt_length")(torch.rand(1, 3, 4, 4))


# --------------------------------------------------------------------------- registry


def test_registry_names_and_options():
    names = rewards.available()
    for name in ("jpeg_compressibility", "jpeg_incompressibility", "shapes", "clip_score", "pickscore",
                 "hpsv2", "hpsv2.1", "aesthetic", "imagereward", "mps", "video", "multiview", "weighted_sum"):
        assert name in names
    r = load("test_brightness", offset=0.5)
    assert r.name == "test_brightness" and not r.training
    assert all(not p.requires_grad for p in r.parameters())
    assert torch.allclose(r(flat([0.25])), torch.tensor([0.75]))
    with pytest.raises(TypeError, match="unknown options.*offset"):
        load("test_brightness", offest=1.0)
    with pytest.raises(KeyError) as e:
        load("nope")
    assert str(e.value) == "unknown reward 'nope'; choose one of: " + ", ".join(rewards.available())
    # a command-line spec carries options; they override keyword options
    assert torch.allclose(load("test_brightness:offset=0.5", offset=2.0)(flat([0.25])), torch.tensor([0.75]))
    with pytest.raises(ValueError, match="already registered"):
        register("test_brightness", PromptLength)


def test_register_decorator_and_entry_points(monkeypatch):
    @register("test_decorated", override=True)
    class Decorated(Brightness):
        pass

    assert isinstance(load("test_decorated"), Decorated)
    monkeypatch.setattr(reg.REWARDS, "_entries", dict(reg.REWARDS._entries))
    monkeypatch.setattr(reg.REWARDS, "_entry_points_read", False)
    ep = EntryPoint("plugin_jpeg", "diffalign.rewards.jpeg:JpegIncompressibility", reg.ENTRY_POINT_GROUP)
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group=None: [ep] if group == reg.ENTRY_POINT_GROUP else [])
    r = load("plugin_jpeg")
    assert type(r).__name__ == "JpegIncompressibility" and r.name == "plugin_jpeg"


def test_outside_reward_family_and_trainer_by_name(monkeypatch):
    """One registry mechanism: a reward, a model family and a trainer registered from outside the
    package come back by name; unknown names give one line naming the kind and the choices."""
    from diffalign.pipelines import FAMILIES, PIPELINE_CLASS_TO_FAMILY, adapter_for, families, get_adapter_class, register_adapter
    from diffalign.pipelines.sd import SDAdapter
    from diffalign.pipelines.tiny import build_tiny_pipeline
    from diffalign.train import TRAINERS, get_trainer_class

    monkeypatch.setattr(reg.REWARDS, "_entries", dict(reg.REWARDS._entries))
    monkeypatch.setattr(FAMILIES, "_entries", dict(FAMILIES._entries))
    monkeypatch.setattr(TRAINERS, "_entries", dict(TRAINERS._entries))
    monkeypatch.setattr("diffalign.pipelines.PIPELINE_CLASS_TO_FAMILY", dict(PIPELINE_CLASS_TO_FAMILY))

    @register("outside_half")
    class Half(Reward):
        requires_prompt = False

        def score(self, samples, prompts, metadata):
            return samples.mean((1, 2, 3)) / 2

    assert isinstance(load("outside_half"), Half) and Half.name == "outside_half"
    assert torch.allclose(load("outside_half")(flat([0.5, 1.0])), torch.tensor([0.25, 0.5]))

    class MyPipeline(type(build_tiny_pipeline("sd"))):
        pass

    @register_adapter("outside_sd")
    class OutsideAdapter(SDAdapter):
        family = "outside_sd"
        pipeline_class = MyPipeline

    assert get_adapter_class("outside_sd") is OutsideAdapter and "outside_sd" in families()
    pipe = build_tiny_pipeline("sd")
    pipe.__class__ = MyPipeline  # a pipeline of the new class is detected as the new family
    assert type(adapter_for(pipe)) is OutsideAdapter

    class OutsideTrainer:
        config_class = dict

    TRAINERS.register("outside", OutsideTrainer)
    assert get_trainer_class("outside") is OutsideTrainer

    for lookup, kind, names in ((get_adapter_class, "model family", families()), (get_trainer_class, "trainer", TRAINERS.names())):
        with pytest.raises(KeyError) as e:
            lookup("nope")
        assert str(e.value) == f"unknown {kind} 'nope'; choose one of: {', '.join(names)}"
    assert {"sd", "sdxl", "sd3", "cogvideox", "outside_sd"} <= set(families())
    assert {"offline", "ddpo", "d3po", "flow_grpo", "alignprop", "draft", "refl", "outside"} == set(TRAINERS.names())


def test_family_from_entry_point(monkeypatch, tmp_path):
    """An entry point in ``diffalign.families`` is found by name and by its pipeline class."""
    import json

    from diffalign.pipelines import FAMILIES, PIPELINE_CLASS_TO_FAMILY, detect_family

    monkeypatch.setattr(FAMILIES, "_entries", dict(FAMILIES._entries))
    monkeypatch.setattr(FAMILIES, "_entry_points_read", False)
    monkeypatch.setattr("diffalign.pipelines.PIPELINE_CLASS_TO_FAMILY", dict(PIPELINE_CLASS_TO_FAMILY))
    ep = EntryPoint("plugin_sdxl", "diffalign.pipelines.sdxl:SDXLAdapter", "diffalign.families")
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group=None: [ep] if group == "diffalign.families" else [])
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    assert detect_family(str(tmp_path)) == "sdxl"  # the built-in keeps its pipeline class
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    with pytest.raises(ValueError, match="NoSuchPipeline.*plugin_sdxl"):
        detect_family(str(tmp_path))
    assert FAMILIES.get("plugin_sdxl").__name__ == "SDXLAdapter"


# --------------------------------------------------------------------------- composition


def test_weighted_sum_total_and_components():
    combo = load("weighted_sum", rewards={"test_brightness": 2.0, "shift": {"reward": "test_brightness", "weight": -1.0, "offset": 1.0}})
    x = flat([0.2, 0.6])
    total, parts = combo.score_components(x)
    assert torch.allclose(parts["test_brightness"], torch.tensor([0.2, 0.6]))
    assert torch.allclose(parts["shift"], torch.tensor([1.2, 1.6]))
    assert torch.allclose(total, torch.tensor([2 * 0.2 - 1.2, 2 * 0.6 - 1.6]))
    assert torch.allclose(combo(x), total)
    assert combo.differentiable and not combo.requires_prompt
    x.requires_grad_(True)
    combo(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 1.0 / (3 * 8 * 8)))  # (2 - 1) * d mean / d pixel

    mixed = load("weighted_sum", rewards={"test_brightness": 1.0, "test_prompt_length": 0.5})
    assert not mixed.differentiable and mixed.requires_prompt
    out = mixed(flat([0.5], 4).requires_grad_(True), ["one two three"])
    assert not out.requires_grad and torch.allclose(out, torch.tensor([0.5 + 1.5]))
    with pytest.raises(ValueError, match="different modalities"):
        load("weighted_sum", rewards={"test_brightness": 1.0, "temporal_consistency": 1.0})


# --------------------------------------------------------------------------- JPEG


def ddpo_jpeg_kb(image_float_hwc: np.ndarray) -> float:
    """DDPO's definition, written independently: uint8 by x255-round-clip, PIL JPEG q95, bytes / 1000."""
    array = np.clip(np.round(image_float_hwc * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return len(buffer.getvalue()) / 1000


def test_jpeg_rewards_match_ddpo():
    rng = np.random.default_rng(0)
    noisy = rng.random((32, 32, 3)).astype(np.float32)
    flat_img = np.full((32, 32, 3), 0.5, np.float32)
    x = torch.from_numpy(np.stack([noisy, flat_img])).permute(0, 3, 1, 2).requires_grad_(True)
    inc = load("jpeg_incompressibility")(x)
    com = load("jpeg_compressibility")(x)
    expected = torch.tensor([ddpo_jpeg_kb(noisy), ddpo_jpeg_kb(flat_img)])
    assert torch.allclose(inc, expected) and torch.allclose(com, -expected)
    assert inc[0] > 2 * inc[1]  # noise compresses badly
    assert not inc.requires_grad and not com.requires_grad
    assert torch.allclose(load("jpeg_compressibility", scale=1 / 500)(x), -expected / 500)
    uint8 = (x.detach() * 255).round().to(torch.uint8)
    assert torch.allclose(load("jpeg_incompressibility")(uint8), expected)  # same bytes from uint8 input


# --------------------------------------------------------------------------- shapes


def recolored(row, shift=3):
    """The row with every requested colour replaced by a named colour the row does not ask for."""
    asked = {c["color"] for c in row["include"]}
    out = {**row, "include": [dict(c) for c in row["include"]]}
    for clause in out["include"]:
        i = COLOR_NAMES.index(clause["color"]) + shift
        while COLOR_NAMES[i % len(COLOR_NAMES)] in asked:
            i += 1
        clause["color"] = COLOR_NAMES[i % len(COLOR_NAMES)]
    return out


@pytest.fixture(scope="module")
def color_cases():
    """(row, correct image, wrong-colour image) for colour prompts of the shapes world."""
    rng = np.random.default_rng(0)
    rows = all_rows("colors")[::4] + all_rows("color_attr")[::9]
    return [(row, render_row(row, rng), render_row(recolored(row, 1 + i % 3), rng)) for i, row in enumerate(rows)]


def test_shapes_judge_reward(color_cases):
    judge = load("shapes")
    cases = color_cases[:3] + color_cases[-3:]
    rows = [row for row, _, _ in cases for _ in range(2)]
    images = [img for _, good, bad in cases for img in (good, bad)]
    x = as_samples(images).requires_grad_(True)
    scores = judge(x, [r["prompt"] for r in rows], rows)
    assert torch.equal(scores, torch.tensor([1.0, 0.0] * len(cases))) and not scores.requires_grad
    assert [judge_image(images[i], rows[i])[0] for i in (0, 1)] == [True, False]
    assert len(judge.last_reasons) == len(rows)
    # partial credit: the right shapes in the wrong colours keep their count checks, lose the colour ones
    partial = load("shapes", partial=True)(x, [r["prompt"] for r in rows], rows)
    assert torch.equal(partial, torch.tensor([1.0, 0.5] * len(cases)))
    with pytest.raises(ValueError, match="needs metadata"):
        judge(images[:1], [rows[0]["prompt"]])
    with pytest.raises(ValueError, match=r"metadata\[0\]: missing key 'tag'"):
        judge(images[:1], None, [{"include": [], "prompt": "x"}])


def test_shapes_color_reward_tracks_judge_colors(color_cases):
    reward = load("shapes_color")
    assert reward.differentiable
    for row, good, bad in color_cases:
        with_meta = reward([good, bad], None, [row, row])
        from_prompt = reward([good, bad], [row["prompt"]] * 2)
        assert torch.allclose(with_meta, from_prompt)
        assert with_meta[0] > 0.5 and with_meta[1] < 0.0, row["prompt"]  # judge: right vs wrong colours
    no_color = reward(torch.rand(1, 3, 16, 16), ["a photo of a circle"])
    assert no_color.item() == 0.0


def test_shapes_color_gradient_moves_pixels_to_requested_color(color_cases):
    row, good, bad = color_cases[0]
    reward = load("shapes_color")
    x = as_samples([bad]).clone().requires_grad_(True)
    start = reward(x, [row["prompt"]]).item()
    opt = torch.optim.Adam([x], lr=0.02)
    for _ in range(30):
        opt.zero_grad()
        (-reward(x, [row["prompt"]]).sum()).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    assert reward(x, [row["prompt"]]).item() > start + 0.5


# --------------------------------------------------------------------------- video


def ramp_video(batch=2, frames=16, size=4):
    """Video whose frame t has every pixel equal to t / 100 (+ 0.5 for the second video)."""
    values = torch.arange(frames, dtype=torch.float32) / 100
    video = values[None, :, None, None, None].expand(batch, frames, 3, size, size).clone()
    video[1:] += 0.5
    return video


def test_frame_selection_indices():
    assert select_frames(1, 16, "uniform", 4).tolist() == [[0, 5, 10, 15]]
    assert select_frames(1, 16, "fml").tolist() == [[0, 8, 15]]
    assert select_frames(2, 5, "all").tolist() == [[0, 1, 2, 3, 4]] * 2
    assert select_frames(1, 16, "tsn", 4, tsn_offset="first").tolist() == [[0, 4, 8, 12]]
    assert select_frames(1, 17, "tsn", 4, tsn_offset="middle").tolist() == [[2, 6, 10, 14]]
    g = torch.Generator().manual_seed(0)
    idx = select_frames(50, 16, "tsn", 4, generator=g)
    assert ((idx // 4) == torch.arange(4)).all()  # one frame inside each segment
    assert len(set(map(tuple, idx.tolist()))) > 1  # random offsets differ between videos
    w = frame_weights(torch.tensor([[0, 4, 8, 12]]), 16, "attenuated", lambda_tar=1.0)
    assert torch.allclose(w, torch.exp(-torch.tensor([[8.0, 4.0, 0.0, 4.0]])) / 4)
    with pytest.raises(ValueError, match="num_frames"):
        select_frames(1, 3, "tsn", 4)


def test_video_wrapper_known_answers():
    video = ramp_video()
    uniform = load("video", reward="test_brightness", frames="uniform", num_frames=4)
    assert uniform.modality == "video" and uniform.differentiable
    assert torch.allclose(uniform(video), torch.tensor([0.075, 0.575]))  # mean of frames 0, 5, 10, 15
    fml = load("video", reward="test_brightness", frames="fml")
    assert torch.allclose(fml(video), torch.tensor([23 / 300, 0.5 + 23 / 300]))
    tar = load("video", reward="test_brightness", frames="tsn", num_frames=4, tsn_offset="first", weighting="attenuated")
    w = torch.exp(-torch.tensor([8.0, 4.0, 0.0, 4.0])) / 4
    assert torch.allclose(tar(video), torch.stack([(w * torch.tensor([0.0, 0.04, 0.08, 0.12])).sum(),
                                                    (w * torch.tensor([0.5, 0.54, 0.58, 0.62])).sum()]))
    tsn = load("video", reward="test_brightness", frames="tsn", num_frames=4, seed=0)
    scores = tsn(video)
    picked = tsn.last_frame_indices
    assert torch.allclose(scores, picked.float().mean(1) / 100 + torch.tensor([0.0, 0.5]))
    assert torch.equal(load("video", reward="test_brightness", frames="tsn", num_frames=4, seed=0)(video), scores)


def test_video_wrapper_gradient_and_prompts():
    video = ramp_video().requires_grad_(True)
    load("video", reward="test_brightness", frames="uniform", num_frames=4)(video).sum().backward()
    touched = video.grad.abs().sum((0, 2, 3, 4)) > 0
    assert touched.nonzero().flatten().tolist() == [0, 5, 10, 15]
    words = load("video", reward="test_prompt_length", frames="all")
    out = words(ramp_video(frames=3), ["one two", "one two three"])
    assert torch.equal(out, torch.tensor([2.0, 3.0])) and not words.differentiable
    with pytest.raises(ValueError, match="wraps an image reward"):
        load("video", reward="temporal_consistency")


def test_temporal_consistency():
    still = torch.full((1, 5, 3, 4, 4), 0.3)
    flicker = still.clone()
    flicker[:, 1::2] = 0.7  # every frame differs from the next by 0.4
    r = load("temporal_consistency")
    assert torch.allclose(r(torch.cat([still, flicker])), torch.tensor([1.0, 0.6]))
    x = flicker.clone().requires_grad_(True)
    r(x).sum().backward()
    assert x.grad.abs().sum() > 0


# --------------------------------------------------------------------------- multi-view


def test_multiview_reductions():
    views = torch.tensor([[0.1, 0.5, 0.3], [0.9, 0.2, 0.4]])[:, :, None, None, None].expand(2, 3, 3, 4, 4).clone()
    assert torch.allclose(load("multiview", reward="test_brightness")(views), torch.tensor([0.3, 0.5]))
    assert torch.allclose(load("multiview", reward="test_brightness", reduce="min")(views), torch.tensor([0.1, 0.2]))
    weighted = load("multiview", reward="test_brightness", reduce="weighted", view_weights=[2, 1, 1])
    assert torch.allclose(weighted(views), torch.tensor([(0.2 + 0.5 + 0.3) / 4, (1.8 + 0.2 + 0.4) / 4]))
    views.requires_grad_(True)
    load("multiview", reward="test_brightness", reduce="min")(views).sum().backward()
    per_view = views.grad.abs().sum((2, 3, 4))
    assert (per_view > 0).tolist() == [[True, False, False], [False, True, False]]
    with pytest.raises(ValueError, match="view_weights"):
        load("multiview", reward="test_brightness", reduce="weighted")
    with pytest.raises(ValueError, match="3 views"):
        load("multiview", reward="test_brightness", reduce="weighted", view_weights=[1, 1])(views.detach())
