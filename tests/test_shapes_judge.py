"""The shapes judge: GenEval's rule engine on hand-made detections, the pixel detector, and the
judge's accuracy on renders with known answers (clean and perturbed)."""
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

import diffalign  # noqa: F401  (compat shim first)
from diffalign.shapes import (
    SHAPES,
    Detection,
    Scene,
    ShapeObject,
    detect_shapes,
    evaluate,
    judge_batch,
    judge_image,
    perturb,
    render_scene,
    sample_rows,
    scene_detections,
    scene_for_row,
    summarize,
)
from diffalign.shapes import prompts as P
from diffalign.shapes.geometry import relation_components, relative_position
from diffalign.shapes.imageops import connected_components
from diffalign.shapes.negatives import near_miss_kinds, near_miss_row, with_distractor
from diffalign.shapes.rules import keep_detections

CIRCLE_A = P.position_row("square", "right of", "circle")  # "a photo of a square right of a circle"


def det(label, box, score=0.99, color=None):
    return Detection(label, tuple(float(v) for v in box), score, color)


# ----------------------------------------------------------------------------- geometry / rules


def test_relative_position_numbers():
    a, b = (12, 0, 22, 10), (0, 0, 10, 10)
    # offset (12, 0), shrink 0.1 * (10 + 10) = 2 -> (10, 0) / 12
    assert relation_components(a, b) == pytest.approx((10 / 12, 0.0))
    assert relative_position(a, b) == {"right of"}
    # offset (4, 3), shrunk (2, 1), / 5 -> (0.4, 0.2): no relation passes the 0.5 cut-off
    assert relation_components((4, 3, 14, 13), b) == pytest.approx((0.4, 0.2))
    assert relative_position((4, 3, 14, 13), b) == set()
    # offset (-20, 20): (-18, 18) / 28.28 = (-0.636, 0.636): left of and below
    assert relative_position((-20, 20, -10, 30), b) == {"left of", "below"}
    assert relative_position(b, b) == set()


def test_rules_single_and_two_object():
    row = P.two_object_row("circle", "square")
    ok = [det("circle", (0, 0, 10, 10)), det("square", (20, 20, 30, 30))]
    assert evaluate(row, ok) == (True, "")
    assert evaluate(row, ok[:1]) == (False, "expected square>=1, found 0")
    assert evaluate(row, []) == (False, "expected circle>=1, found 0\nexpected square>=1, found 0")
    # GenEval's threshold is strict: score 0.3 is dropped, 0.31 kept
    assert evaluate(P.single_object_row("circle"), [det("circle", (0, 0, 9, 9), 0.3)])[0] is False
    assert evaluate(P.single_object_row("circle"), [det("circle", (0, 0, 9, 9), 0.31)])[0] is True
    # extra objects of other classes do not matter; extra objects of the class neither (no exclude)
    extra = ok + [det("triangle", (40, 0, 50, 10)), det("circle", (40, 40, 50, 50))]
    assert evaluate(row, extra) == (True, "")


def test_rules_counting_uses_strict_threshold_and_exclude():
    row = P.counting_row("circle", 3)
    boxes = [(i * 12, 0, i * 12 + 10, 10) for i in range(5)]
    three = [det("circle", b, 0.95) for b in boxes[:3]]
    assert evaluate(row, three) == (True, "")
    # a fourth circle below the counting threshold (0.9) is ignored ...
    assert evaluate(row, three + [det("circle", boxes[3], 0.8)]) == (True, "")
    # ... but counts with the general threshold when the tag is not counting
    assert evaluate({**row, "tag": "two_object"}, three + [det("circle", boxes[3], 0.8)])[0] is False
    assert evaluate(row, three + [det("circle", boxes[3], 0.95)]) == (False, "expected circle<4, found 4")
    assert evaluate(row, three[:2] + [det("circle", boxes[2], 0.85)]) == (False, "expected circle>=3, found 2")
    # at most 16 kept per class: 20 detections never reach an exclude count of 17
    many = [det("circle", (i, 0, i + 5, 5), 0.95) for i in range(20)]
    assert len(keep_detections(many)["circle"]) == 16
    assert evaluate({"tag": "counting", "include": [{"class": "circle", "count": 16}],
                     "exclude": [{"class": "circle", "count": 17}], "prompt": "x"}, many) == (True, "")


def test_rules_colors_check_only_top_objects():
    row = P.colors_row("circle", "red")
    assert evaluate(row, [det("circle", (0, 0, 9, 9), color="red")]) == (True, "")
    assert evaluate(row, [det("circle", (0, 0, 9, 9), color="blue")]) == (
        False, "expected red circle>=1, found 0 red; and 1 blue")
    # only the most confident circle is colour-checked
    two = [det("circle", (0, 0, 9, 9), 0.9, "blue"), det("circle", (20, 0, 29, 9), 0.8, "red")]
    assert evaluate(row, two)[0] is False
    assert evaluate(row, two[::-1])[0] is False  # order of input does not matter, scores do
    assert evaluate(row, [det("circle", two[0].box, 0.7, "blue"), two[1]])[0] is True
    # colour tally lists colours in GenEval's order
    row2 = {"tag": "colors", "include": [{"class": "circle", "count": 3, "color": "red"}], "prompt": "x"}
    dets = [det("circle", (i * 12, 0, i * 12 + 9, 9), 0.9, c) for i, c in enumerate(["white", "red", "blue"])]
    assert evaluate(row2, dets) == (False, "expected red circle>=3, found 1 red; and 1 red, 1 blue, 1 white")
    # a colour classifier callback replaces the detections' own colours (as GenEval's CLIP does)
    calls = []

    def classify(objs, name):
        calls.append((len(objs), name))
        return ["red"] * len(objs)

    assert evaluate(row2, dets, classify_colors=classify) == (True, "")
    assert calls == [(3, "circle")]


def test_rules_position():
    a = det("circle", (0, 0, 10, 10))
    assert evaluate(CIRCLE_A, [a, det("square", (12, 0, 22, 10))]) == (True, "")
    assert evaluate(CIRCLE_A, [a, det("square", (-12, 0, -2, 10))]) == (
        False, "expected square right of target, found left of target")
    assert evaluate(CIRCLE_A, [a, det("square", (4, 3, 14, 13))]) == (
        False, "expected square right of target, found  target")
    assert evaluate(CIRCLE_A, [a, det("square", (20, 20, 30, 30))]) == (True, "")  # right of and below
    below = P.position_row("square", "above", "circle")
    assert evaluate(below, [a, det("square", (20, 20, 30, 30))]) == (
        False, "expected square above target, found right of and below target")
    # the target group failed: GenEval reports it and the position clause has no target
    assert evaluate(CIRCLE_A, [det("square", (12, 0, 22, 10))]) == (
        False, "expected circle>=1, found 0\nno target for square to be right of")
    # the position margin is configurable (0 = raw centre offsets)
    near = [a, det("square", (4, 3, 14, 13))]
    assert evaluate(CIRCLE_A, near, position_margin=0.0)[0] is True


def test_keep_detections_nms():
    dup = [det("circle", (0, 0, 10, 10), 0.9), det("circle", (1, 0, 11, 10), 0.8), det("circle", (30, 0, 40, 10), 0.7)]
    assert len(keep_detections(dup)["circle"]) == 3  # NMS off by default (GenEval)
    kept = keep_detections(dup, max_overlap=0.5)["circle"]
    assert [d.score for d in kept] == [0.9, 0.7]


def test_summarize_is_unweighted_mean_of_tags():
    rows = [{"tag": "counting"}] * 4 + [{"tag": "single_object"}] + [{"tag": "position"}] * 2
    flags = [True, False, False, True, True, False, False]
    scores = summarize(rows, flags)
    assert list(scores) == ["single_object", "counting", "position", "overall"]
    assert scores["counting"] == 0.5 and scores["single_object"] == 1.0 and scores["position"] == 0.0
    assert scores["overall"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3, not 3/7
    assert summarize(rows, [(f, "") for f in flags]) == scores
    with pytest.raises(ValueError, match="7 rows but 6 verdicts"):
        summarize(rows, flags[:6])


# ----------------------------------------------------------------------------- the detector


def test_connected_components():
    m = np.zeros((8, 9), bool)
    m[1:7, 1] = m[6, 1:6] = m[1:7, 5] = True  # a U: one component reached only around the bend
    m[0, 7] = m[1, 8] = True  # diagonal neighbours: two components under 4-connectivity
    m[3, 3] = True
    labels, n = connected_components(m)
    assert n == 4
    assert len(np.unique(labels[m])) == 4 and (labels[~m] == 0).all()
    assert len(np.unique(labels[1:7, 1])) == 1 and labels[1, 1] == labels[1, 5]
    assert labels[0, 7] != labels[1, 8]
    assert labels[0, 7] == 1  # numbered in raster order of first pixels

SCENE = Scene([
    ShapeObject("circle", "red", 0.2, 0.2, 0.22),
    ShapeObject("square", "blue", 0.7, 0.25, 0.2),
    ShapeObject("triangle", "yellow", 0.25, 0.72, 0.24),
    ShapeObject("diamond", "purple", 0.72, 0.75, 0.26),
])


def _match(dets, scene, size=64):
    out = []
    for o in scene.objects:
        d = min(dets, key=lambda d: abs((d.box[0] + d.box[2]) / 2 - o.cx * size) + abs((d.box[1] + d.box[3]) / 2 - o.cy * size))
        out.append((o, d))
    return out


def test_detector_labels_colours_and_boxes():
    img = render_scene(SCENE)
    dets = detect_shapes(img)
    assert len(dets) == 4
    for o, d in _match(dets, SCENE):
        assert (d.label, d.color) == (o.shape, o.color)
        assert np.allclose(d.box, [v * 64 for v in o.box], atol=0.75), (o, d.box)
        assert d.score == 1.0
    # the same answer from PIL images and float tensors [3,H,W] in [0, 1]
    assert detect_shapes(Image.fromarray(img)) == dets
    assert detect_shapes(torch.from_numpy(img).permute(2, 0, 1).float() / 255) == dets


def test_detector_ignores_specks_and_keeps_border_objects():
    img = render_scene(Scene([ShapeObject("square", "green", 0.5, 0.5, 0.25),
                              ShapeObject("circle", "white", 0.04, 0.5, 0.25)]))  # cut by the left border
    img[5:8, 50:53] = (220, 30, 30)  # a 3x3 red speck (9 px < 16 px)
    dets = detect_shapes(img)
    assert sorted((d.label, d.color) for d in dets) == [("circle", "white"), ("square", "green")]
    # a blob that is no shape (an L) gets a low score, below GenEval's counting threshold
    ell = np.full((64, 64, 3), 128, np.uint8)
    ell[10:40, 10:20] = ell[30:40, 10:40] = (30, 110, 230)
    (blob,) = detect_shapes(ell)
    assert blob.score < 0.9


def test_detector_under_blur_and_noise():
    rng = np.random.default_rng(0)
    for _ in range(5):
        img = perturb(render_scene(SCENE), rng, blur=1.0, noise=0.08, color_shift=0.05)
        dets = detect_shapes(img)
        assert len(dets) == 4
        for o, d in _match(dets, SCENE):
            assert (d.label, d.color) == (o.shape, o.color)
            assert np.allclose(d.box, [v * 64 for v in o.box], atol=1.5)


# ----------------------------------------------------------------------------- known-answer accuracy


def _known_answer_cases(n, seed):
    """(row, scene, expected verdict, kind): a third positives, a third near misses (cycling through
    each row's applicable kinds), a third positives with a distractor shape where one fits."""
    rng = np.random.default_rng(seed)
    cases = []
    for i, row in enumerate(sample_rows(n, seed=seed)):
        kinds = near_miss_kinds(row)
        if i % 3 == 1:
            kind = kinds[(i // 3) % len(kinds)]
            draw, expect = near_miss_row(row, kind, rng), False
        elif i % 3 == 2 and len(row["include"]) == 1:
            kind, draw, expect = "distractor", with_distractor(row, rng), True
        else:
            kind, draw, expect = "positive", row, True
        scene = scene_for_row(draw, rng)
        # the intended answer is GenEval's answer on the scene's exact objects
        assert evaluate(row, scene_detections(scene))[0] is expect, (kind, row["prompt"], scene)
        cases.append((row, scene, expect, kind))
    return cases


def test_near_miss_and_distractor_errors():
    with pytest.raises(ValueError, match="near miss 'count' does not apply"):
        near_miss_row(P.single_object_row("circle"), "count", 0)
    with pytest.raises(ValueError, match="no shape left for a distractor"):
        with_distractor({"tag": "x", "include": [{"class": s, "count": 1} for s in SHAPES], "prompt": "x"}, 0)
    assert near_miss_kinds(P.color_attr_row("circle", "red", "square", "blue")) == [
        "color", "swap_colors", "shape", "missing"]


def _accuracy(cases, transform):
    images = [transform(render_scene(scene), k) for k, (_, scene, _, _) in enumerate(cases)]
    verdicts = judge_batch(images, [c[0] for c in cases])
    right = Counter((kind, ok == expect) for (_, _, expect, kind), (ok, _) in zip(cases, verdicts))
    return sum(v for (_, good), v in right.items() if good) / len(cases), right


@pytest.mark.slow
def test_judge_accuracy_on_clean_renders():
    cases = _known_answer_cases(300, seed=0)
    kinds = Counter(c[3] for c in cases)
    assert set(kinds) == {"positive", "distractor", "count", "color", "swap_colors", "position", "shape", "missing"}
    acc, detail = _accuracy(cases, lambda img, k: img)
    assert acc >= 0.99, detail


@pytest.mark.slow
def test_judge_accuracy_on_perturbed_renders():
    # blur sigma 0.5-1.2 px, noise std 0.03-0.08, colour gain/offset +-0.05. Measured on 2,400
    # such images (blur 1.0, noise 0.08): 99.75% right; the bar is 97% (a third of the errors
    # allowed again on top of those at blur 1.5, where 97.5% are still right).
    cases = _known_answer_cases(240, seed=1)
    rng = np.random.default_rng(1)
    params = [(rng.uniform(0.5, 1.2), rng.uniform(0.03, 0.08)) for _ in cases]
    acc, detail = _accuracy(cases, lambda img, k: perturb(img, k, blur=params[k][0], noise=params[k][1], color_shift=0.05))
    assert acc >= 0.97, detail


@pytest.mark.parametrize(
    "row, mutate, reason",
    [
        (P.counting_row("circle", 3), lambda r: {**r, "include": [{"class": "circle", "count": 4}]}, "expected circle<4, found 4"),
        (P.counting_row("circle", 3), lambda r: {**r, "include": [{"class": "circle", "count": 2}]}, "expected circle>=3, found 2"),
        (P.colors_row("square", "green"), lambda r: P.colors_row("square", "pink"),
         "expected green square>=1, found 0 green; and 1 pink"),
        (P.color_attr_row("circle", "red", "triangle", "blue"), lambda r: P.color_attr_row("circle", "blue", "triangle", "red"),
         "expected red circle>=1, found 0 red; and 1 blue\nexpected blue triangle>=1, found 0 blue; and 1 red"),
        (P.position_row("diamond", "left of", "square"), lambda r: P.position_row("diamond", "right of", "square"),
         "expected diamond left of target, found right of target"),
        (P.single_object_row("triangle"), lambda r: P.single_object_row("diamond"), "expected triangle>=1, found 0"),
        (P.two_object_row("circle", "diamond"), lambda r: P.single_object_row("circle"), "expected diamond>=1, found 0"),
    ],
    ids=["extra", "too-few", "colour", "swapped-colours", "position", "shape", "missing"],
)
def test_judge_reasons_per_failure_kind(row, mutate, reason):
    for seed in range(3):
        img = render_scene(scene_for_row(mutate(row), seed))
        assert judge_image(img, row) == (False, reason)
        assert judge_image(render_scene(scene_for_row(row, seed)), row) == (True, "")


def test_judge_batch_accepts_tensor_batches():
    rows = [P.colors_row(s, "orange") for s in SHAPES]
    imgs = np.stack([render_scene(scene_for_row(r, i)) for i, r in enumerate(rows)])
    batch = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    assert judge_batch(batch, rows) == [(True, "")] * len(rows)
    assert [v for v, _ in judge_batch(batch, rows[1:] + rows[:1])] == [False] * len(rows)
    with pytest.raises(ValueError, match="4 images but 3 rows"):
        judge_batch(batch, rows[:3])
