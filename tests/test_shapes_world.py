"""The shapes world: vocabulary, scenes, renders, GenEval-format prompts and metadata files."""
import json
import os
from collections import Counter

import numpy as np
import pytest

import diffalign  # noqa: F401  (compat shim first)
from diffalign.shapes import (
    BACKGROUND,
    CATEGORIES,
    COLORS,
    SHAPES,
    Scene,
    ShapeObject,
    pretrained_path,
    prompt_split,
    evaluate,
    read_metadata,
    render_scene,
    sample_rows,
    scene_detections,
    scene_for_row,
    split_rows,
    write_metadata,
)
from diffalign.shapes import prompts as P
from diffalign.shapes.geometry import relative_position
from diffalign.shapes.imageops import srgb_to_lab

GENEVAL_METADATA = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "geneval", "evaluation_metadata.jsonl"
)
GENEVAL_COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
AREA_FACTOR = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5, "diamond": 0.5}


def test_vocabulary():
    assert list(COLORS) == GENEVAL_COLORS
    assert CATEGORIES == ("single_object", "two_object", "counting", "colors", "position", "color_attr")
    assert {"circle", "square", "triangle"} <= set(SHAPES)
    rgb = np.array(list(COLORS.values()), dtype=float)
    assert np.linalg.norm(rgb - np.array(BACKGROUND), axis=-1).min() > 100  # far from the grey in RGB
    lab = srgb_to_lab(rgb / 255)
    dist = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.eye(len(rgb)) * 1e9
    assert dist.min() > 45  # well separated perceptually (CIE76 delta E)
    assert np.linalg.norm(lab - srgb_to_lab(np.array(BACKGROUND) / 255), axis=-1).min() > 40
    # the Lab conversion itself: white -> L 100, a = b = 0; pure red -> (53.2, 80.1, 67.2)
    assert srgb_to_lab([1.0, 1.0, 1.0]) == pytest.approx([100, 0, 0], abs=0.01)
    assert srgb_to_lab([1.0, 0.0, 0.0]) == pytest.approx([53.24, 80.09, 67.20], abs=0.05)


def test_render_matches_scene():
    objs = [
        ShapeObject("square", "red", 0.25, 0.25, 0.25),
        ShapeObject("circle", "blue", 0.75, 0.25, 0.25),
        ShapeObject("triangle", "white", 0.25, 0.75, 0.25),
        ShapeObject("diamond", "black", 0.75, 0.75, 0.25),
    ]
    img = render_scene(Scene(objs), size=64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    for o in objs:  # box centre lies inside every shape
        assert tuple(img[int(o.cy * 64), int(o.cx * 64)]) == COLORS[o.color]
        # coverage inside the object's box: exact shape area within 2%
        x0, y0, x1, y1 = (int(round(v * 64)) for v in o.box)
        patch = img[y0:y1, x0:x1].astype(float)
        bg, fg = np.array(BACKGROUND, float), np.array(COLORS[o.color], float)
        cover = ((patch - bg) @ (fg - bg) / ((fg - bg) @ (fg - bg))).sum()
        assert cover == pytest.approx(AREA_FACTOR[o.shape] * 16 * 16, rel=0.02), o.shape
    covered = np.zeros((64, 64), bool)  # nothing is drawn outside the boxes
    for o in objs:
        x0, y0, x1, y1 = (int(round(v * 64)) for v in o.box)
        covered[y0:y1, x0:x1] = True
    assert (img[~covered] == np.array(BACKGROUND, np.uint8)).all()
    # the triangle points up: more of it in the lower half of its box
    tri = (img[16:48, 0:32] == COLORS["white"]).all(-1)
    assert tri[40 - 16:48 - 16].sum() > 2 * tri[32 - 16:40 - 16].sum()


def test_render_size_and_empty_scene():
    img = render_scene(Scene([]), size=32)
    assert img.shape == (32, 32, 3) and (img == np.array(BACKGROUND, np.uint8)).all()


def test_shape_object_validation():
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        ShapeObject("star", "red", 0.5, 0.5, 0.2)
    with pytest.raises(ValueError, match="unknown colour 'teal'"):
        ShapeObject("circle", "teal", 0.5, 0.5, 0.2)


@pytest.mark.parametrize("tag", CATEGORIES)
def test_scene_for_row_satisfies_row(tag):
    rng = np.random.default_rng(0)
    rows = sample_rows(40, seed=1, categories=[tag])
    for row in rows:
        scene = scene_for_row(row, rng)
        assert evaluate(row, scene_detections(scene)) == (True, "")  # GenEval's rules on exact objects
        counts = Counter(o.shape for o in scene.objects)
        expected = Counter({c["class"]: c["count"] for c in row["include"]})
        assert counts == expected, row["prompt"]
        for ex in row.get("exclude", []):
            assert counts[ex["class"]] < ex["count"]
        for clause in row["include"]:
            if "color" in clause:
                assert [o.color for o in scene.objects if o.shape == clause["class"]] == [clause["color"]]
            if "position" in clause:
                rel, group = clause["position"]
                (a,) = [o for o in scene.objects if o.shape == row["include"][group]["class"]]
                (b,) = [o for o in scene.objects if o.shape == clause["class"]]
                assert relative_position(b.box, a.box) == {rel}, row["prompt"]
        boxes = [o.box for o in scene.objects]
        for i, bi in enumerate(boxes):
            assert min(bi) >= 0 and max(bi) <= 1
            for bj in boxes[i + 1:]:
                gap = max(bj[0] - bi[2], bi[0] - bj[2], bj[1] - bi[3], bi[1] - bj[3])
                assert gap >= 0.05


def test_scene_for_row_random_colours_and_seeding():
    row = P.counting_row("circle", 4)
    colours = {o.color for s in range(20) for o in scene_for_row(row, s).objects}
    assert len(colours) >= 6  # colours not fixed by the row are random
    assert scene_for_row(row, 7) == scene_for_row(row, 7)
    assert scene_for_row(row, 7) != scene_for_row(row, 8)
    with pytest.raises(ValueError, match="not a shape"):
        scene_for_row({"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "x"}, 0)


def test_sample_rows_balanced_and_reproducible():
    rows = sample_rows(120, seed=3)
    assert rows == sample_rows(120, seed=3)
    assert rows != sample_rows(120, seed=4)
    assert Counter(r["tag"] for r in rows) == {t: 20 for t in CATEGORIES}
    # drawn without replacement while the category has prompts left
    pos = [r["prompt"] for r in rows if r["tag"] == "position"]
    assert len(set(pos)) == len(pos)
    singles = [r["prompt"] for r in rows if r["tag"] == "single_object"]
    assert Counter(singles) == {f"a photo of {'an' if s[0] in 'aeiou' else 'a'} {s}": 5 for s in SHAPES}
    only = sample_rows(10, seed=0, categories=["counting"])
    assert {r["tag"] for r in only} == {"counting"}
    with pytest.raises(ValueError, match="unknown category 'nope'"):
        sample_rows(3, categories=["nope"])


def test_row_phrasing():
    assert P.single_object_row("circle")["prompt"] == "a photo of a circle"
    assert P.counting_row("square", 3) == {
        "tag": "counting",
        "include": [{"class": "square", "count": 3}],
        "exclude": [{"class": "square", "count": 4}],
        "prompt": "a photo of three squares",
    }
    assert P.colors_row("triangle", "orange")["prompt"] == "a photo of an orange triangle"
    assert P.position_row("triangle", "right of", "circle") == {
        "tag": "position",
        "include": [{"class": "circle", "count": 1}, {"class": "triangle", "count": 1, "position": ["right of", 0]}],
        "prompt": "a photo of a triangle right of a circle",
    }
    assert P.color_attr_row("circle", "blue", "square", "orange")["prompt"] == (
        "a photo of a blue circle and an orange square"
    )


def test_split_is_disjoint_and_covers_everything():
    train, test = split_rows("train"), split_rows("test")
    tr, te = {r["prompt"] for r in train}, {r["prompt"] for r in test}
    assert not tr & te
    for tag in CATEGORIES:
        universe = {r["prompt"] for r in P.all_rows(tag)}
        n_test = sum(r["tag"] == tag for r in test)
        assert 1 <= n_test < len(universe)
        assert {r["prompt"] for r in train + test if r["tag"] == tag} == universe
    assert len(te) == pytest.approx(0.2 * (len(tr) + len(te)), rel=0.1)
    held = sample_rows(60, seed=0, split="test")
    assert all(prompt_split(r["prompt"], r["tag"]) == "test" for r in held)
    assert all(r["prompt"] not in te for r in sample_rows(60, seed=0, split="train"))


def test_metadata_roundtrip_and_errors(tmp_path):
    rows = sample_rows(30, seed=5)
    path = tmp_path / "sub" / "meta.jsonl"
    write_metadata(path, rows)
    assert read_metadata(path) == rows
    lines = path.read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[0]) == rows[0]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n\n" + "{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: invalid JSON"):
        read_metadata(bad)
    bad.write_text(lines[0] + "\n" + json.dumps({"tag": "counting", "prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: missing key 'include'"):
        read_metadata(bad)
    bad.write_text(json.dumps({"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "teal"}],
                               "prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: include\[0\]: unknown color 'teal'"):
        read_metadata(bad)
    bad.write_text(json.dumps({"tag": "position", "include": [{"class": "circle", "count": 1,
                                                               "position": ["above", 0]}], "prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: include\[0\]: position group 0"):
        read_metadata(bad)


def test_rows_match_geneval_structure():
    if not os.path.isfile(GENEVAL_METADATA):
        pytest.skip("GenEval metadata (../shared/data/geneval) not available")
    real = read_metadata(GENEVAL_METADATA)  # our reader accepts GenEval's own file
    assert len(real) == 553
    builders = {
        "single_object": lambda inc: P.single_object_row(inc[0]["class"]),
        "two_object": lambda inc: P.two_object_row(inc[0]["class"], inc[1]["class"]),
        "counting": lambda inc: P.counting_row(inc[0]["class"], inc[0]["count"]),
        "colors": lambda inc: P.colors_row(inc[0]["class"], inc[0]["color"]),
        "position": lambda inc: P.position_row(inc[1]["class"], inc[1]["position"][0], inc[0]["class"]),
        "color_attr": lambda inc: P.color_attr_row(inc[0]["class"], inc[0]["color"], inc[1]["class"], inc[1]["color"]),
    }
    for row in real:  # our builders reproduce every GenEval row exactly from its classes/colours
        assert builders[row["tag"]](row["include"]) == row
    # and our rows have the same key structure per tag
    ours = sample_rows(60, seed=0)
    shape_of = lambda r: (tuple(r), tuple(tuple(c) for c in r["include"]), tuple(tuple(c) for c in r.get("exclude", [])))
    real_shapes = {r["tag"]: shape_of(r) for r in real}
    for r in ours:
        assert shape_of(r) == real_shapes[r["tag"]]


def test_pretrained_path():
    with pytest.raises(ValueError, match="unknown pretrained family"):
        pretrained_path("sdxl")
    for family in ("sd", "sd3"):
        folder = os.path.join(os.path.dirname(diffalign.__file__), "pretrained", f"shapes-{family}")
        if os.path.isfile(os.path.join(folder, "model_index.json")):
            assert os.path.samefile(pretrained_path(family), folder)
        else:
            with pytest.raises(FileNotFoundError, match=f"shapes-{family}"):
                pretrained_path(family)
