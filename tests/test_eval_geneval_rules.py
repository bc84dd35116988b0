"""GenEval's rule engine (diffalign.geneval.judge) on hand-made detection sets: every tag, every
failure reason, every constant, and the official metadata (when ../shared is present)."""
import json
import os
import random

import pytest
from conftest import shared_path

from diffalign.geneval import (
    COLOR_NAMES,
    OBJECT_NAMES,
    TAGS,
    Detection,
    box_iou,
    judge,
    keep_detections,
    partial_credit,
    read_metadata,
    relative_position,
    summarize,
    summarize_results,
    validate_row,
)
from diffalign.geneval.vocab import geneval_class_name

OFFICIAL = shared_path("data", "geneval", "evaluation_metadata.jsonl")


def det(label, box, score=0.95, color=None):
    return Detection(label, tuple(float(v) for v in box), score, color)


# rows written like GenEval's own metadata
SINGLE = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
TWO = {"tag": "two_object", "include": [{"class": "dog", "count": 1}, {"class": "cat", "count": 1}],
       "prompt": "a photo of a dog and a cat"}
COUNT3 = {"tag": "counting", "include": [{"class": "apple", "count": 3}], "exclude": [{"class": "apple", "count": 4}],
          "prompt": "a photo of three apples"}
COLORS = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}
POSITION = {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
                                           {"class": "dog", "count": 1, "position": ["right of", 0]}],
            "prompt": "a photo of a dog right of a teddy bear"}
COLOR_ATTR = {"tag": "color_attr", "include": [{"class": "bus", "count": 1, "color": "yellow"},
                                               {"class": "tv remote", "count": 1, "color": "black"}],
              "prompt": "a photo of a yellow bus and a black tv remote"}

BEAR = det("teddy bear", (100, 100, 200, 200))


def test_every_tag_passes_and_fails_with_geneval_reasons():
    # single_object
    assert judge(SINGLE, [det("bench", (0, 0, 50, 40))]) == (True, "")
    assert judge(SINGLE, [det("chair", (0, 0, 50, 40))]) == (False, "expected bench>=1, found 0")
    # two_object: both reasons, in clause order
    assert judge(TWO, [det("cat", (0, 0, 9, 9)), det("dog", (20, 0, 29, 9))]) == (True, "")
    assert judge(TWO, []) == (False, "expected dog>=1, found 0\nexpected cat>=1, found 0")
    # counting: include and exclude
    apples = [det("apple", (i * 20, 0, i * 20 + 15, 15), 0.95) for i in range(4)]
    assert judge(COUNT3, apples[:3]) == (True, "")
    assert judge(COUNT3, apples[:2]) == (False, "expected apple>=3, found 2")
    assert judge(COUNT3, apples) == (False, "expected apple<4, found 4")
    # colors: the tally lists colours in GenEval's order
    assert judge(COLORS, [det("car", (0, 0, 30, 20), color="red")]) == (True, "")
    assert judge(COLORS, [det("car", (0, 0, 30, 20), color="blue")]) == (False, "expected red car>=1, found 0 red; and 1 blue")
    # position
    assert judge(POSITION, [BEAR, det("dog", (250, 100, 350, 200))]) == (True, "")
    assert judge(POSITION, [BEAR, det("dog", (0, 100, 80, 200))]) == (False, "expected dog right of target, found left of target")
    assert judge(POSITION, [det("dog", (250, 100, 350, 200))]) == (
        False, "expected teddy bear>=1, found 0\nno target for dog to be right of")
    # color_attr: each object its own colour; a swap fails both clauses
    bus, remote = det("bus", (0, 0, 100, 60), color="yellow"), det("tv remote", (150, 0, 170, 40), color="black")
    assert judge(COLOR_ATTR, [bus, remote]) == (True, "")
    swapped = [det("bus", bus.box, color="black"), det("tv remote", remote.box, color="yellow")]
    assert judge(COLOR_ATTR, swapped) == (False, "expected yellow bus>=1, found 0 yellow; and 1 black\n"
                                                 "expected black tv remote>=1, found 0 black; and 1 yellow")


def test_partial_credit_by_hand():
    """partial_credit: mean over the row's checks; 1.0 exactly where judge() passes."""
    apples = [det("apple", (i * 20, 0, i * 20 + 15, 15), 0.95) for i in range(5)]
    # counting "three apples": checks = count (found/3), exclude (fewer than 4)
    assert partial_credit(COUNT3, apples[:3]) == 1.0
    assert partial_credit(COUNT3, apples[:2]) == pytest.approx((2 / 3 + 1) / 2)
    assert partial_credit(COUNT3, apples[:5]) == pytest.approx((1 + 0) / 2)
    assert partial_credit(COUNT3, []) == pytest.approx((0 + 1) / 2)
    # two_object: two counts
    assert partial_credit(TWO, [det("cat", (0, 0, 9, 9))]) == pytest.approx(0.5)
    # color_attr: count + colour per clause; a swap keeps both counts, loses both colours
    bus, remote = det("bus", (0, 0, 100, 60), color="yellow"), det("tv remote", (150, 0, 170, 40), color="black")
    assert partial_credit(COLOR_ATTR, [bus, remote]) == 1.0
    swapped = [det("bus", bus.box, color="black"), det("tv remote", remote.box, color="yellow")]
    assert partial_credit(COLOR_ATTR, swapped) == pytest.approx(0.5)
    assert partial_credit(COLOR_ATTR, [bus]) == pytest.approx(0.5)  # bus 1 + 1, remote 0 + 0
    # position: bear count, dog count, relation
    assert partial_credit(POSITION, [BEAR, det("dog", (250, 100, 350, 200))]) == 1.0
    assert partial_credit(POSITION, [BEAR, det("dog", (0, 100, 80, 200))]) == pytest.approx(2 / 3)
    assert partial_credit(POSITION, [det("dog", (250, 100, 350, 200))]) == pytest.approx(1 / 3)  # no target
    # the verdict and the credit agree on every random detection set: credit 1.0 iff correct
    rng = random.Random(0)
    for _ in range(300):
        row = rng.choice([SINGLE, TWO, COUNT3, COLORS, POSITION, COLOR_ATTR])
        labels = [c["class"] for c in row["include"]] + ["chair"]
        dets = []
        for _ in range(rng.randint(0, 5)):
            x, y = rng.uniform(0, 400), rng.uniform(0, 400)
            dets.append(det(rng.choice(labels), (x, y, x + rng.uniform(5, 80), y + rng.uniform(5, 80)),
                            rng.uniform(0.2, 1.0), rng.choice(["red", "yellow", "black", "blue"])))
        credit = partial_credit(row, dets)
        assert 0.0 <= credit <= 1.0
        assert (credit == 1.0) == judge(row, dets)[0], (row["prompt"], dets)


def test_thresholds_caps_and_order():
    # strict '>' at 0.3; counting prompts use 0.9 for every clause
    assert judge(SINGLE, [det("bench", (0, 0, 9, 9), 0.3)])[0] is False
    assert judge(SINGLE, [det("bench", (0, 0, 9, 9), 0.3001)])[0] is True
    three = [det("apple", (i * 20, 0, i * 20 + 15, 15), s) for i, s in enumerate([0.95, 0.92, 0.91])]
    weak4 = det("apple", (80, 0, 95, 15), 0.85)
    assert judge(COUNT3, three + [weak4]) == (True, "")  # 0.85 <= 0.9: not counted
    assert judge(COUNT3, three[:2] + [weak4]) == (False, "expected apple>=3, found 2")
    assert judge(COUNT3, three + [weak4], counting_threshold=0.8) == (False, "expected apple<4, found 4")
    assert judge(SINGLE, [det("bench", (0, 0, 9, 9), 0.25)], threshold=0.2)[0] is True
    # at most 16 per class: 20 confident apples never reach an exclude count of 17
    many = [det("apple", (i * 20, 0, i * 20 + 15, 15), 0.99) for i in range(20)]
    row = {"tag": "counting", "include": [{"class": "apple", "count": 16}], "exclude": [{"class": "apple", "count": 17}],
           "prompt": "x"}
    assert judge(row, many) == (True, "")
    assert judge(row, many, max_objects=20) == (False, "expected apple<17, found 20")
    # only the top-`count` objects are colour-checked, whatever order the detections come in
    red_low, blue_high = det("car", (0, 0, 30, 20), 0.6, "red"), det("car", (40, 0, 70, 20), 0.8, "blue")
    for dets in ([red_low, blue_high], [blue_high, red_low]):
        assert judge(COLORS, dets) == (False, "expected red car>=1, found 0 red; and 1 blue")
    # ... and position-checked: a second dog on the wrong side is ignored
    far_dog = det("dog", (250, 100, 350, 200), 0.9)
    wrong_dog = det("dog", (0, 100, 80, 200), 0.5)
    assert judge(POSITION, [wrong_dog, BEAR, far_dog]) == (True, "")
    assert judge(POSITION, [BEAR, det("dog", far_dog.box, 0.4), det("dog", wrong_dog.box, 0.5)])[0] is False
    # unrelated classes and shuffling change nothing
    noise = [det(name, (5 * i, 5 * i, 5 * i + 9, 5 * i + 9), 0.99) for i, name in enumerate(OBJECT_NAMES[:30])
             if name not in ("teddy bear", "dog")]
    mixed = noise + [BEAR, far_dog]
    random.Random(0).shuffle(mixed)
    assert judge(POSITION, mixed) == (True, "")


def test_colour_callback_sees_only_the_checked_objects():
    calls = []

    def classify(objects, classname):
        calls.append((classname, [o.score for o in objects]))
        return ["red", "green"][: len(objects)]

    cars = [det("car", (0, 0, 30, 20), 0.5), det("car", (40, 0, 70, 20), 0.9), det("car", (80, 0, 99, 20), 0.7)]
    assert judge(COLORS, cars, classify_colors=classify) == (True, "")
    assert calls == [("car", [0.9])]  # the most confident car only, not the detections' own colours
    row2 = {"tag": "colors", "include": [{"class": "car", "count": 2, "color": "red"}], "prompt": "x"}
    assert judge(row2, cars, classify_colors=classify) == (False, "expected red car>=2, found 1 red; and 1 red, 1 green")
    # no colour clause: the classifier is never called
    calls.clear()
    judge(SINGLE, [det("bench", (0, 0, 9, 9))], classify_colors=classify)
    assert calls == []


def test_position_rule_numbers_and_constants():
    # A (dog) 60 px right of B (bear): offset (150-0)=..., worked out by hand:
    # centres (300, 150) vs (150, 150); shrink 0.1 * (100 + 100) = 20 -> (130, 0) / 150
    assert relative_position((250, 100, 350, 200), BEAR.box) == {"right of"}
    # diagonal offset (70, 70) with 40 px boxes: shrink 8 each -> (62, 62) / 98.99 = 0.626 on both axes
    assert relative_position((120, 120, 160, 160), (50, 50, 90, 90)) == {"right of", "below"}
    reason = judge({**POSITION, "include": [POSITION["include"][0], {"class": "dog", "count": 1, "position": ["above", 0]}]},
                   [det("teddy bear", (50, 50, 90, 90)), det("dog", (120, 120, 160, 160))])
    assert reason == (False, "expected dog above target, found right of and below target")
    # close boxes: offset (30, 0), shrink 0.1 * 200 = 20 -> 10 / 30 = 0.33 < 0.5: no relation
    close = [BEAR, det("dog", (130, 100, 230, 200))]
    assert judge(POSITION, close) == (False, "expected dog right of target, found  target")
    assert judge(POSITION, close, position_margin=0.0)[0] is True  # raw offset 30 / 30 = 1
    assert judge(POSITION, close, position_cutoff=0.3)[0] is True  # 0.33 > 0.3
    # GenEval's "no offset" test is on the shrunk offset in pixels (< 1e-3 on both axes)
    assert relative_position((0, 0, 0, 0), (-0.0005, 0, -0.0005, 0)) == set()
    assert relative_position((0, 0, 0, 0), (-0.002, 0, -0.002, 0)) == {"right of"}


def test_iou_uses_genevals_inclusive_pixels_and_nms_is_optional():
    # (0,0,10,10) and (5,0,15,10): 11x11 boxes, intersection 6x11 = 66, union 121 + 121 - 66 = 176
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(66 / 176)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    dup = [det("cup", (0, 0, 10, 10), 0.9), det("cup", (5, 0, 15, 10), 0.8), det("cup", (40, 0, 50, 10), 0.7)]
    assert [d.score for d in keep_detections(dup)["cup"]] == [0.9, 0.8, 0.7]  # max_overlap=1.0: off
    assert [d.score for d in keep_detections(dup, max_overlap=0.37)["cup"]] == [0.9, 0.7]  # 0.375 >= 0.37
    assert [d.score for d in keep_detections(dup, max_overlap=0.38)["cup"]] == [0.9, 0.8, 0.7]
    row = {"tag": "counting", "include": [{"class": "cup", "count": 2}], "exclude": [{"class": "cup", "count": 3}], "prompt": "x"}
    assert judge(row, dup, counting_threshold=0.5) == (False, "expected cup<3, found 3")
    assert judge(row, dup, counting_threshold=0.5, max_overlap=0.37) == (True, "")


def test_detection_record_and_class_names():
    import numpy as np

    a = Detection("cup", (0.0, 0.0, 1.0, 1.0), 0.5, "red", mask=np.ones((2, 2), bool))
    assert a == Detection("cup", (0.0, 0.0, 1.0, 1.0), 0.5, "red")  # masks are not compared
    assert a.as_dict() == {"label": "cup", "box": [0.0, 0.0, 1.0, 1.0], "score": 0.5, "color": "red"}
    assert [geneval_class_name(n) for n in ("mouse", "Remote", "keyboard", "tv", "hair_drier", " dog ")] == [
        "computer mouse", "tv remote", "computer keyboard", "tv", "hair drier", "dog"]
    assert len(OBJECT_NAMES) == 80 and len(set(OBJECT_NAMES)) == 80
    assert {"computer mouse", "tv remote", "computer keyboard"} <= set(OBJECT_NAMES)


def test_summaries_follow_summary_scores():
    rows = [{"tag": "counting"}] * 4 + [{"tag": "single_object"}] + [{"tag": "position"}] * 2
    flags = [True, False, False, True, True, False, False]
    scores = summarize(rows, flags)
    assert list(scores) == ["single_object", "counting", "position", "overall"]
    assert scores["overall"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3, not 3 / 7
    results = [{"tag": r["tag"], "correct": f, "metadata": json.dumps({"i": i // 2})} for i, (r, f) in enumerate(zip(rows, flags))]
    s = summarize_results(results)
    assert s["overall"] == pytest.approx(0.5) and s["per_tag"]["counting"] == 0.5
    assert s["per_tag_counts"] == {"single_object": [1, 1], "counting": [2, 4], "position": [0, 2]}
    assert s["correct_images"] == pytest.approx(3 / 7)
    # prompts {0: T,F}, {1: F,T}, {2: T,F}, {3: F} -> 3 of 4 have a correct image
    assert (s["prompts"], s["correct_prompts"]) == (4, 0.75)


def test_metadata_validation_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="row 3: unknown tag 'count'"):
        validate_row({**COUNT3, "tag": "count"}, "row 3")
    with pytest.raises(ValueError, match=r"include\[1\]: position group 1 must index an earlier include clause"):
        validate_row({**POSITION, "include": [POSITION["include"][0], {"class": "dog", "count": 1, "position": ["above", 1]}]})
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps(SINGLE) + "\n\n" + json.dumps({**COLORS, "include": [{"class": "car", "count": 1, "color": "teal"}]}) + "\n")
    with pytest.raises(ValueError, match=r"meta.jsonl:3: include\[0\]: unknown color 'teal'"):
        read_metadata(path)


@pytest.mark.skipif(not os.path.isfile(OFFICIAL), reason="GenEval's metadata is only in ../shared/data/geneval")
def test_official_metadata_perfect_and_broken_detections():
    """Every one of GenEval's 553 rows: a detection set built to satisfy it passes; removing an object,
    recolouring it, mirroring a position or adding an extra counted object fails with GenEval's reason."""
    rows = read_metadata(OFFICIAL)
    assert len(rows) == 553
    assert [sum(r["tag"] == t for r in rows) for t in TAGS] == [80, 99, 80, 94, 100, 100]
    offsets = {"left of": (-200, 0), "right of": (200, 0), "above": (0, -200), "below": (0, 200)}
    mirror = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
    for row in rows:
        dets = []
        for j, clause in enumerate(row["include"]):
            if "position" in clause:  # the target (clause 0) sits at (400, 400)
                dx, dy = offsets[clause["position"][0]]
                x, y = 400 + dx, 400 + dy
            else:
                x, y = (400, 400) if row["tag"] == "position" else (400 + 1000 * j, 400)
            for n in range(clause["count"]):
                dets.append(det(clause["class"], (x + 30 * n - 10, y - 10, x + 30 * n + 10, y + 10), 0.95, clause.get("color")))
        assert judge(row, dets) == (True, ""), row["prompt"]
        first = row["include"][0]
        missing = [d for d in dets if d.label != first["class"]] + [d for d in dets if d.label == first["class"]][1:]
        ok, reason = judge(row, missing)
        assert not ok and reason.startswith(f"expected {first['class']}>={first['count']}, found {first['count'] - 1}"), row
        if row["tag"] == "counting":
            extra = dets + [det(first["class"], (0, 0, 5, 5), 0.95)]
            assert judge(row, extra) == (False, f"expected {first['class']}<{first['count'] + 1}, found {first['count'] + 1}")
        if "color" in first:
            other = next(c for c in COLOR_NAMES if c != first["color"])
            recoloured = [Detection(d.label, d.box, d.score, other if d.label == first["class"] else d.color) for d in dets]
            ok, reason = judge(row, recoloured)
            assert not ok and reason.startswith(f"expected {first['color']} {first['class']}>=1, found 0 {first['color']}; and 1 {other}")
        if row["tag"] == "position":
            rel = row["include"][1]["position"][0]
            target = dets[0]
            cx, cy = (target.box[0] + target.box[2]) / 2, (target.box[1] + target.box[3]) / 2
            moved = dets[1]
            mx, my = (moved.box[0] + moved.box[2]) / 2, (moved.box[1] + moved.box[3]) / 2
            flipped = [target, Detection(moved.label, (2 * cx - mx - 10, 2 * cy - my - 10, 2 * cx - mx + 10, 2 * cy - my + 10), 0.95)]
            assert judge(row, flipped) == (False, f"expected {moved.label} {rel} target, found {mirror[rel]} target")
