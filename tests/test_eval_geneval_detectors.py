"""Detectors behind GenEval's interface on tiny random-init transformers models built offline (DETR,
OWLv2, Mask2Former when scipy is installed), and GenEval's CLIP colour classifier on a tiny open_clip
model with the real tokenizer."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

import diffalign  # noqa: F401  (compat shim first)
from diffalign.geneval import judge
from diffalign.geneval.colors import ClipColorClassifier, object_crop
from diffalign.geneval.detectors import load_detector
from diffalign.geneval.evaluator import GenEvalEvaluator
from diffalign.geneval.hf_detector import TransformersDetector, mask_to_box
from diffalign.geneval.rules import Detection
from diffalign.geneval.vocab import COLOR_NAMES

W, H = 64, 48


def picture(seed=0, w=W, h=H):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _logit(p):
    return math.log(p / (1 - p))


@pytest.fixture(scope="module")
def detr_dir(tmp_path_factory):
    """A tiny DETR whose heads are set so that every query says: class 1 ("mouse") at the box
    centre (0.5, 0.25), size (0.5, 0.25) of the image."""
    from transformers import (
        DetrConfig,
        DetrForObjectDetection,
        DetrImageProcessor,
        ResNetConfig,
    )

    labels = {0: "person", 1: "mouse", 2: "N/A", 3: "remote"}
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", out_features=["stage2"])
    config = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, d_model=16,
                        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=3, id2label=labels,
                        label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    model = DetrForObjectDetection(config).eval()
    with torch.no_grad():
        model.class_labels_classifier.weight.zero_()
        model.class_labels_classifier.bias.copy_(torch.tensor([0.0, 10.0, 0.0, 0.0, 0.0]))  # last: "no object"
        last = model.bbox_predictor.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([_logit(0.5), _logit(0.25), _logit(0.5), _logit(0.25)]))
    folder = tmp_path_factory.mktemp("detr")
    model.save_pretrained(folder)
    DetrImageProcessor(size={"shortest_edge": 48, "longest_edge": 64}).save_pretrained(folder)
    return str(folder)


def test_detr_plumbing_boxes_scores_and_renamed_classes(detr_dir):
    detector = load_detector(detr_dir, device="cpu", batch_size=2)
    assert isinstance(detector, TransformersDetector) and detector.kind == "detection"
    assert detector.name == f"detr:{detr_dir}" and not detector.provides_colors
    # COCO's "mouse" / "remote" become GenEval's names; DETR's unused "N/A" id is dropped
    assert detector.class_names == {0: "person", 1: "computer mouse", 2: None, 3: "tv remote"}
    found = detector.detect_many([picture(0), picture(1), picture(2)])  # two batches
    expected_score = math.exp(10) / (math.exp(10) + 4)
    for dets in found:
        assert len(dets) == 3
        for d in dets:
            assert d.label == "computer mouse" and d.score == pytest.approx(expected_score, rel=1e-5)
            # centre (32, 12), size (32, 12) in the 64x48 image
            assert d.box == pytest.approx((16.0, 6.0, 48.0, 18.0), abs=1e-3)
    single = {"tag": "single_object", "include": [{"class": "computer mouse", "count": 1}], "prompt": "a photo of a computer mouse"}
    two = {"tag": "counting", "include": [{"class": "computer mouse", "count": 2}],
           "exclude": [{"class": "computer mouse", "count": 3}], "prompt": "a photo of two computer mice"}
    assert judge(single, found[0]) == (True, "")
    assert judge(two, found[0]) == (False, "expected computer mouse<3, found 3")  # three identical queries
    assert judge(two, found[0], max_overlap=0.5) == (False, "expected computer mouse>=2, found 1")  # NMS merges them
    evaluator = GenEvalEvaluator(detector, color_classifier="clip")
    verdict = evaluator.evaluate([picture(0)], [single])[0]
    assert verdict["correct"] and len(verdict["detections"]) == 3 and evaluator.label == f"GenEval protocol, detector=detr:{detr_dir}"


def test_geneval_reward_with_a_transformers_detector(detr_dir):
    from diffalign.rewards import load

    reward = load("geneval", detector=detr_dir, color_classifier="clip", detector_options={"device": "cpu"}, threshold=0.5)
    assert isinstance(reward.detector_model, torch.nn.Module)  # moves with reward.to(...)
    rows = [{"tag": "single_object", "include": [{"class": c, "count": 1}], "prompt": f"a photo of a {c}"}
            for c in ("computer mouse", "tv remote")]
    images = np.stack([np.asarray(picture(i)) for i in range(2)])
    assert reward(images, None, rows).tolist() == [1.0, 0.0]
    assert reward.last_reasons == ["", "expected tv remote>=1, found 0"]
    with pytest.raises(ValueError, match="unknown GenEval rule options"):
        load("geneval", detector="shapes", treshold=0.2)


def test_detr_background_class_and_label_map(detr_dir):
    from transformers import DetrForObjectDetection

    detector = TransformersDetector(detr_dir, device="cpu", label_map={"computer mouse": "mouse pad"}, name="my-detr")
    assert detector.name == "my-detr" and {d.label for d in detector.detect(picture())} == {"mouse pad"}
    # a model whose best class is DETR's "N/A" reports nothing
    model = DetrForObjectDetection.from_pretrained(detr_dir)
    with torch.no_grad():
        model.class_labels_classifier.bias.copy_(torch.tensor([0.0, 0.0, 10.0, 0.0, 0.0]))
    detector.model = model.eval()
    assert detector.detect(picture()) == []


@pytest.mark.slow
def test_owlv2_plumbing_matches_a_direct_run(tmp_path):
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    from diffalign.pipelines.tokenizers import clip_tokenizer

    config = Owlv2Config(
        text_config=dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         max_position_embeddings=16),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                           patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 32, "width": 32}),
                               tokenizer=clip_tokenizer(pad_token="!", model_max_length=16))
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    queries = ["cat", "computer mouse", "tv remote"]
    detector = TransformersDetector(str(tmp_path), device="cpu", queries=queries)
    assert detector.kind == "zero_shot" and detector.name.startswith("owlv2:")
    image = picture(3)
    dets = detector.detect(image)
    # the same model run by hand: text queries from the template, boxes scaled to the padded square (64 x 64)
    inputs = processor(text=[[f"a photo of a {q}" for q in queries]], images=[image], return_tensors="pt")
    with torch.no_grad():
        ref = processor.image_processor.post_process_object_detection(model(**inputs), threshold=0.0, target_sizes=[(64, 64)])[0]
    assert len(dets) == len(ref["scores"]) == 16  # (32 / 8)^2 patches, one box each
    assert [d.score for d in dets] == pytest.approx(ref["scores"].tolist())
    assert [d.label for d in dets] == [queries[i] for i in ref["labels"].tolist()]
    for d, box in zip(dets, ref["boxes"].tolist()):
        clipped = (min(max(box[0], 0), W), min(max(box[1], 0), H), min(max(box[2], 0), W), min(max(box[3], 0), H))
        assert d.box == pytest.approx(clipped, abs=1e-4)
    assert detector.describe()["queries"] == 3
    default = TransformersDetector(str(tmp_path), device="cpu")
    assert len(default.queries) == 80 and default.class_names[64] == "computer mouse"


def test_mask2former_plumbing_masks_and_boxes(tmp_path):
    pytest.importorskip("scipy", reason="transformers' Mask2Former needs scipy (its training loss imports it)")
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    labels = {0: "person", 1: "mouse", 2: "keyboard"}
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, use_pretrained_backbone=False, feature_size=32, mask_feature_size=32,
                               hidden_dim=32, encoder_feedforward_dim=16, dim_feedforward=16, encoder_layers=1, decoder_layers=2,
                               num_attention_heads=2, num_queries=4, common_stride=4, id2label=labels,
                               label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():
        model.class_predictor.weight.zero_()
        model.class_predictor.bias.copy_(torch.tensor([0.0, 0.0, 8.0, 0.0]))  # "keyboard" wins every query
    model.save_pretrained(tmp_path)
    Mask2FormerImageProcessor(size={"shortest_edge": 48, "longest_edge": 64}).save_pretrained(tmp_path)
    detector = load_detector(str(tmp_path), device="cpu")
    assert detector.kind == "instance"
    dets = detector.detect(picture(4))
    assert dets and {d.label for d in dets} == {"computer keyboard"}
    for d in dets:
        assert d.mask.shape == (H, W) and d.mask.dtype == bool and d.mask.any()
        assert d.box == mask_to_box(d.mask)
        assert 0 < d.score < 1


def test_mask_to_box_is_mmdets_mask2bbox():
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:7] = True
    assert mask_to_box(mask) == (3.0, 2.0, 7.0, 4.0)  # first column / row, last + 1
    assert mask_to_box(np.zeros((3, 3), bool)) == (0.0, 0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- CLIP colour classifier

TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip():
    import open_clip

    torch.manual_seed(0)
    return open_clip.CLIP(**TINY_OPEN_CLIP).eval()


def test_object_crop_pastes_masked_object_on_grey_and_crops():
    pixels = np.zeros((10, 12, 3), np.uint8)
    pixels[...] = (200, 0, 0)
    image = Image.fromarray(pixels)
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:6] = True
    crop = np.asarray(object_crop(image, Detection("cup", (2.0, 1.0, 7.0, 6.0), 0.9, mask=mask)))
    assert crop.shape == (5, 5, 3)
    assert (crop[1:4, 1:4] == (200, 0, 0)).all()  # the masked object
    assert (crop[0] == 153).all() and (crop[:, 4] == 153).all()  # #999 around it
    no_mask = np.asarray(object_crop(image, Detection("cup", (2.4, 1.0, 7.0, 6.0), 0.9)))
    assert no_mask.shape == (5, 5, 3) and (no_mask == (200, 0, 0)).all()  # plain crop; PIL rounds the box
    kept = np.asarray(object_crop(image, Detection("cup", (0, 0, 12, 10), 0.9, mask=mask), background="original"))
    assert (kept == pixels).all()
    with pytest.raises(ValueError, match="mask of 'cup'"):
        object_crop(image, Detection("cup", (0, 0, 4, 4), 0.9, mask=np.ones((4, 4), bool)))


def test_clip_colour_classifier_matches_genevals_zero_shot_recipe(tiny_clip):
    import open_clip

    seen = []
    tokenizer = open_clip.get_tokenizer("ViT-L-14")

    def recording_tokenizer(texts):
        seen.extend(texts)
        return tokenizer(texts)

    clf = ClipColorClassifier(clip_model=tiny_clip, tokenizer=recording_tokenizer, device="cpu")
    weights = clf.text_classifier("tv remote")
    assert weights.shape == (16, 10)
    assert seen[:3] == ["a photo of a red tv remote", "a photo of a red-colored tv remote", "a photo of a red object"]
    assert len(seen) == 30 and seen[-1] == "a photo of a white object"
    # per colour: normalise each template embedding, average, normalise again
    with torch.no_grad():
        emb = tiny_clip.encode_text(tokenizer(seen[3:6]))
    col = torch.nn.functional.normalize(emb, dim=-1).mean(0)
    assert torch.allclose(weights[:, 1], col / col.norm(), atol=1e-6)  # orange
    assert torch.allclose(weights.norm(dim=0), torch.ones(10), atol=1e-6)
    clf.text_classifier("tv remote")
    assert len(seen) == 30  # cached per class

    image = picture(5)
    objects = [Detection("tv remote", (4, 4, 30, 20), 0.9), Detection("tv remote", (30, 10, 60, 40), 0.8)]
    names = clf.classify(image, objects, "tv remote")
    preprocess = open_clip.image_transform(32, is_train=False)
    with torch.no_grad():
        feats = torch.nn.functional.normalize(tiny_clip.encode_image(torch.stack(
            [preprocess(image.crop(o.box)) for o in objects])), dim=-1)
    assert names == [COLOR_NAMES[i] for i in (feats @ weights).argmax(1).tolist()]
    assert clf.name == "clip:ViT-L-14/custom"


def test_evaluator_records_the_classified_colours(detr_dir, tiny_clip):
    clf = ClipColorClassifier(clip_model=tiny_clip, device="cpu")
    evaluator = GenEvalEvaluator(detr_dir, color_classifier=clf, detector_options={"device": "cpu"})
    image = picture(6)
    named = clf.classify(image, [evaluator.detector.detect(image)[0]], "computer mouse")[0]
    for color in (named, next(c for c in COLOR_NAMES if c != named)):
        row = {"tag": "colors", "include": [{"class": "computer mouse", "count": 1, "color": color}], "prompt": "x"}
        verdict = evaluator.evaluate([image], [row])[0]
        assert verdict["correct"] is (color == named)
        colours = [d.color for d in verdict["detections"]]
        assert colours.count(named) == 1 and colours.count(None) == 2  # only the top object was classified
    assert evaluator.describe()["color_classifier"]["name"] == "clip:ViT-L-14/custom"


def test_default_colour_classifier_is_genevals_openai_vit_l14(monkeypatch, tiny_clip):
    import open_clip

    calls = []

    def fake_create(name, pretrained=None, **kwargs):
        calls.append((name, pretrained, kwargs))
        return tiny_clip, None, open_clip.image_transform(32, is_train=False)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    clf = ClipColorClassifier(device="cpu")
    # OpenAI's CLIP weights need QuickGELU (open_clip 3.x only warns without the flag)
    assert calls == [("ViT-L-14", "openai", {"force_quick_gelu": True})] and clf.name == "clip:ViT-L-14/openai"
    ClipColorClassifier(pretrained="/models/clip.pt", device="cpu")
    assert calls[-1] == ("ViT-L-14", "/models/clip.pt", {"force_quick_gelu": False})
