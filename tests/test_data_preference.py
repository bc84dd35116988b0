"""The preference data layer: every kind of example from every storage format, preprocessing,
reproducible augmentation, located errors, fingerprints and the pair writer."""
from __future__ import annotations

import io
import json
import os
import shutil

import diffalign  # noqa: F401  (installs the torchvision shim before anything else)
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from diffalign.config import load_config
from diffalign.data import (
    DataConfig,
    DatasetError,
    EpochSampler,
    PairBatch,
    PairColumns,
    PairDataset,
    PairsAsUnpaired,
    Preprocess,
    build_dataset,
    detect_format,
    epoch_order,
    open_source,
    write_pairs_hf,
    write_pairs_jsonl,
)

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
CYAN, MAGENTA, GREY, WHITE = (0, 255, 255), (255, 0, 255), (128, 128, 128), (255, 255, 255)
FORMATS = ["hf", "parquet", "jsonl"]


# --------------------------------------------------------------------------- helpers
def encoded(color, size=(24, 20), fmt="PNG") -> bytes:
    """A solid-colour image (width, height) encoded as PNG or JPEG bytes."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def save_table(tmp_path, fmt: str, rows: list[dict], name: str = "pick") -> str:
    """Store ``rows`` as a parquet file, a saved ``datasets`` folder, or a jsonl whose bytes values
    (or lists of them) become image files next to it. Returns the path to load."""
    if fmt == "parquet":
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return str(path)
    if fmt == "hf":
        import datasets

        path = tmp_path / name
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
        return str(path)
    media = tmp_path / f"{name}_media"
    media.mkdir()

    def to_file(value, stem):
        if isinstance(value, bytes):
            (media / f"{stem}.png").write_bytes(value)
            return f"{name}_media/{stem}.png"
        if isinstance(value, list) and value and isinstance(value[0], bytes):
            return [to_file(v, f"{stem}_{k}") for k, v in enumerate(value)]
        return value

    path = tmp_path / f"{name}.jsonl"
    with open(path, "w") as fh:
        for r, row in enumerate(rows):
            fh.write(json.dumps({k: to_file(v, f"{r}_{k}") for k, v in row.items()}) + "\n")
    return str(path)


def mean_rgb(pixels: torch.Tensor) -> list[float]:
    """Mean colour of a [3, H, W] (or [..., 3, H, W]) tensor, in 0..255."""
    return (pixels.reshape(-1, 3, *pixels.shape[-2:]).mean(dim=(0, 2, 3)) * 255).tolist()


def assert_colour(pixels: torch.Tensor, colour, tol: float = 3.0):
    got = mean_rgb(pixels)
    assert max(abs(g - c) for g, c in zip(got, colour)) <= tol, f"expected {colour}, got {got}"
    assert float(pixels.min()) >= 0.0 and float(pixels.max()) <= 1.0


# Pick-a-Pic-style rows: (caption, image 0 colour, image 1 colour, label_0)
PICK = [
    ("a red square", RED, BLUE, 1.0),
    ("a green circle", GREEN, YELLOW, 0.0),
    ("a tie", CYAN, MAGENTA, 0.5),
    ("a grey thing", GREY, WHITE, 1.0),
]


def pick_rows(image_fmt="JPEG", **extra_columns):
    rows = [
        {"caption": c, "jpg_0": encoded(a, fmt=image_fmt), "jpg_1": encoded(b, fmt=image_fmt), "label_0": lab, "label_1": 1 - lab}
        for c, a, b, lab in PICK
    ]
    for name, values in extra_columns.items():
        for row, v in zip(rows, values):
            row[name] = v
    return rows


def pairs_cfg(path, **kw) -> DataConfig:
    return DataConfig(path=path, kind="pairs", resolution=kw.pop("resolution", 16), **kw)


# --------------------------------------------------------------------------- sources
def test_detect_format_and_open(tmp_path):
    parquet = save_table(tmp_path, "parquet", pick_rows())
    (tmp_path / "js").mkdir()
    jsonl = save_table(tmp_path / "js", "jsonl", pick_rows(), name="js")
    hf = save_table(tmp_path, "hf", pick_rows(), name="hfset")
    assert detect_format(parquet) == "parquet"
    assert detect_format(jsonl) == "jsonl"
    assert detect_format(os.path.dirname(jsonl)) == "jsonl"  # folder with one jsonl
    assert detect_format(hf) == "hf"
    assert detect_format(str(tmp_path / "*.parquet")) == "parquet"
    shards = tmp_path / "shards"
    shards.mkdir()
    shutil.copy(parquet, shards / "train-00000.parquet")
    shutil.copy(parquet, shards / "train-00001.parquet")
    assert detect_format(shards) == "parquet"
    both = open_source(shards)
    assert len(both) == 8
    assert both.where(5) == "train-00001.parquet row 1 (row 5 of " + str(shards) + ")"
    assert both.read_row(5, ["caption"]) == {"caption": PICK[1][0]}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no dataset found"):
        detect_format(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not found"):
        detect_format(tmp_path / "nope.parquet")
    with pytest.raises(DatasetError, match="unknown data format"):
        open_source(parquet, format="csv")


def test_hf_datasetdict_split_choice(tmp_path):
    import datasets

    rows = pick_rows()
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert len(build_dataset(pairs_cfg(str(tmp_path / "dd"), split="test"))) == 1
    assert len(build_dataset(pairs_cfg(str(tmp_path / "dd")))) == 3  # train, one tie dropped
    with pytest.raises(DatasetError, match="no split 'validation'; available splits: train, test"):
        build_dataset(pairs_cfg(str(tmp_path / "dd"), split="validation"))


def test_hf_image_feature_columns(tmp_path):
    """``datasets.Image`` columns (stored as {bytes, path}) are read undecoded and decoded by us."""
    import datasets

    features = datasets.Features({"caption": datasets.Value("string"), "jpg_0": datasets.Image(),
                                  "jpg_1": datasets.Image(), "label_0": datasets.Value("float64")})
    data = {"caption": ["x"], "jpg_0": [Image.new("RGB", (8, 8), RED)], "jpg_1": [Image.new("RGB", (8, 8), BLUE)],
            "label_0": [0.0]}
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(tmp_path / "img"))
    ex = build_dataset(pairs_cfg(str(tmp_path / "img"), resolution=8))[0]
    assert_colour(ex.winner, BLUE, tol=0)
    assert_colour(ex.loser, RED, tol=0)


# --------------------------------------------------------------------------- pairs
@pytest.mark.parametrize("fmt", FORMATS)
def test_pairs_every_format(tmp_path, fmt):
    ds = build_dataset(pairs_cfg(save_table(tmp_path, fmt, pick_rows())))
    assert isinstance(ds, PairDataset)
    assert len(ds) == 3 and ds.num_ties_dropped == 1
    assert [ds.source_row(i) for i in range(3)] == [0, 1, 3]
    expected = [(PICK[0][0], RED, BLUE), (PICK[1][0], YELLOW, GREEN), (PICK[3][0], GREY, WHITE)]
    for i, (caption, win, lose) in enumerate(expected):
        ex = ds[i]
        assert ex.index == i and ex.caption == caption and ds.caption(i) == caption
        assert ex.winner.shape == (3, 16, 16) and ex.winner.dtype == torch.float32
        assert_colour(ex.winner, win)
        assert_colour(ex.loser, lose)
        assert ex.soft_label == 1.0 and ex.is_tie is False and ex.caption_w is None
    assert ds.prompts() == sorted(c for c, *_ in expected)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=ds.collate)
    batch = next(iter(loader))
    assert isinstance(batch, PairBatch) and len(batch) == 3
    assert batch.winners.shape == (3, 3, 16, 16) and batch.losers.shape == (3, 3, 16, 16)
    assert batch.indices.tolist() == [0, 1, 2] and batch.soft_labels.tolist() == [1.0, 1.0, 1.0]
    assert batch.is_tie.tolist() == [False] * 3 and batch.captions_w is None
    assert batch.to("cpu", dtype=torch.float16).winners.dtype == torch.float16
    assert ds.describe()["ties_dropped"] == 1


def test_ties_kept_and_rejected(tmp_path):
    path = save_table(tmp_path, "parquet", pick_rows())
    ds = build_dataset(pairs_cfg(path, ties="keep"))
    assert len(ds) == 4 and ds.num_ties_dropped == 0
    tie = ds[2]
    assert tie.is_tie is True and tie.soft_label == 0.5
    assert_colour(tie.winner, CYAN)  # a kept tie keeps image 0 in the winner slot
    assert_colour(tie.loser, MAGENTA)
    assert ds.collate([ds[0], ds[2]]).is_tie.tolist() == [False, True]
    with pytest.raises(DatasetError, match=r"pick\.parquet row 2 column label_0: label_0 is a tie"):
        build_dataset(pairs_cfg(path, ties="error"))


def test_bad_labels_are_all_reported(tmp_path):
    rows = pick_rows()
    rows[1]["label_0"], rows[3]["label_0"] = 0.3, None
    with pytest.raises(DatasetError) as err:
        build_dataset(pairs_cfg(save_table(tmp_path, "parquet", rows)))
    msg = str(err.value)
    assert "2 bad label(s)" in msg
    assert "pick.parquet row 1 column label_0: label_0 must be 0, 0.5 or 1, got 0.3" in msg
    assert "pick.parquet row 3 column label_0: label_0 is missing" in msg
    assert len(err.value.problems) == 2


def test_soft_labels(tmp_path):
    path = save_table(tmp_path, "jsonl", pick_rows(p=[0.7, 0.6, 0.5, 0.9]))
    as_winner = build_dataset(pairs_cfg(path, columns={"soft_label": "p"}))
    assert [as_winner[i].soft_label for i in range(3)] == pytest.approx([0.7, 0.6, 0.9])
    # p = P(image 0 preferred): pair 1's winner is image 1, so its soft label is 1 - 0.6.
    as_image0 = build_dataset(pairs_cfg(path, columns={"soft_label": "p"}, soft_label_of="image_0"))
    assert [as_image0[i].soft_label for i in range(3)] == pytest.approx([0.7, 0.4, 0.9])
    assert as_image0.collate([as_image0[1]]).soft_labels.tolist() == pytest.approx([0.4])
    kept = build_dataset(pairs_cfg(path, ties="keep", columns={"soft_label": "p"}))
    assert kept[2].soft_label == pytest.approx(0.5) and kept[2].is_tie
    bad = save_table(tmp_path, "parquet", pick_rows(p=[0.7, 1.5, 0.5, 0.9]), name="bad")
    with pytest.raises(DatasetError, match=r"bad\.parquet row 1 column p: p must be a probability in \[0, 1\], got 1.5"):
        build_dataset(pairs_cfg(bad, columns={"soft_label": "p"}))


def test_dual_captions_follow_the_images(tmp_path):
    per_image = save_table(tmp_path, "parquet", pick_rows(c0=["w0", "x0", "y0", "z0"], c1=["w1", "x1", "y1", "z1"]))
    ds = build_dataset(pairs_cfg(per_image, columns={"caption_0": "c0", "caption_1": "c1"}))
    assert [(ds[i].caption_w, ds[i].caption_l) for i in range(3)] == [("w0", "w1"), ("x1", "x0"), ("z0", "z1")]
    batch = ds.collate([ds[0], ds[1]])
    assert batch.captions_w == ["w0", "x1"] and batch.captions_l == ["w1", "x0"]
    assert set(ds.prompts()) == {PICK[0][0], PICK[1][0], PICK[3][0], "w0", "w1", "x0", "x1", "z0", "z1"}
    per_role = build_dataset(pairs_cfg(per_image, columns={"caption_w": "c0", "caption_l": "c1"}))
    assert (per_role[1].caption_w, per_role[1].caption_l) == ("x0", "x1")  # taken as stored
    with pytest.raises(DatasetError, match="must be set together"):
        build_dataset(pairs_cfg(per_image, columns={"caption_0": "c0"}))


def test_same_image_pairs_and_winner_first_data(tmp_path):
    # TDPO: one image, a matched and a mismatched caption; no label column (winner first).
    rows = [{"image": encoded(RED), "good": "a red square", "bad": "a blue square"}]
    ds = build_dataset(pairs_cfg(save_table(tmp_path, "jsonl", rows), columns={
        "caption": "good", "image_0": "image", "image_1": "image", "label_0": None,
        "caption_w": "good", "caption_l": "bad"}))
    ex = ds[0]
    assert torch.equal(ex.winner, ex.loser) and (ex.caption_w, ex.caption_l) == ("a red square", "a blue square")
    assert_colour(ex.winner, RED)


def test_whole_video_pairs(tmp_path):
    frames = lambda c: np.broadcast_to(np.array(c, np.uint8), (3, 8, 8, 3)).copy()  # noqa: E731
    np.save(tmp_path / "a.npy", frames(RED))
    np.save(tmp_path / "b.npy", frames(BLUE))
    rows = [{"caption": "v", "jpg_0": "a.npy", "jpg_1": "b.npy", "label_0": 0.0}]
    ds = build_dataset(pairs_cfg(save_table(tmp_path, "parquet", rows), media="video", resolution=8))
    ex = ds[0]
    assert ex.winner.shape == (3, 3, 8, 8)
    assert_colour(ex.winner, BLUE)
    assert_colour(ex.loser, RED)


# --------------------------------------------------------------------------- preprocessing
def split_image(size=(40, 20)) -> bytes:
    """Left half red, right half blue (width 40, height 20)."""
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[:, : size[0] // 2] = RED
    a[:, size[0] // 2 :] = BLUE
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_resize_center_crop_and_flip_geometry():
    from diffalign.data import AugmentParams, load_image

    pixels = load_image(split_image())
    out = Preprocess(16)(pixels)  # 40x20 -> 32x16, centre crop columns 8..23
    assert out.shape == (3, 16, 16)
    assert (out[:, :, 0] * 255).round().tolist() == [[255.0] * 16, [0.0] * 16, [0.0] * 16]
    assert (out[:, :, 15] * 255).round().tolist() == [[0.0] * 16, [0.0] * 16, [255.0] * 16]
    flipped = Preprocess(16)(pixels, AugmentParams(flip=True))
    assert torch.equal(flipped, out.flip(-1))
    leftmost = Preprocess(16)(pixels, AugmentParams(crop_left=0.0))  # columns 0..15 of 32; 16.. are blue
    assert_colour(leftmost[:, :, :15], RED, tol=0.5)
    assert float(leftmost[2, 0, 15]) > 0.0  # the last column touches the blue half
    tall = Preprocess((8, 16))(pixels)  # non-square target: 20x40 covers 8x16 at scale 0.4
    assert tall.shape == (3, 8, 16)


def test_augmentation_is_reproducible(tmp_path):
    rows = [{"caption": f"p{i}", "jpg_0": split_image(), "jpg_1": split_image(), "label_0": 1.0} for i in range(3)]
    path = save_table(tmp_path, "parquet", rows)
    cfg = pairs_cfg(path, random_crop=True, random_flip=True)
    ds, again = build_dataset(cfg, seed=7), build_dataset(cfg, seed=7)
    outputs = []
    for epoch in range(6):
        for i in range(3):
            ex = ds.get(i, epoch=epoch)
            assert torch.equal(ex.winner, ex.loser)  # one crop and flip for both images of a pair
            assert torch.equal(ex.winner, again.get(i, epoch=epoch).winner)  # a fresh object (resume) agrees
            outputs.append(ex.winner)
    assert len({tuple(o.flatten().tolist()) for o in outputs}) > 2  # it does augment
    ds.set_epoch(3)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=ds.collate)
    batch = next(iter(loader))
    assert torch.equal(batch.winners, torch.stack([again.get(i, epoch=3).winner for i in range(3)]))
    other_seed = build_dataset(cfg, seed=8)
    assert any(not torch.equal(other_seed.get(i, 0).winner, ds.get(i, 0).winner) for i in range(3))
    centre = build_dataset(pairs_cfg(path), seed=7)
    assert all(torch.equal(centre.get(0, epoch=e).winner, centre.get(0, epoch=0).winner) for e in range(3))


def test_epoch_sampler_resumes_mid_epoch():
    full = list(EpochSampler(10, seed=3, epoch=2))
    assert sorted(full) == list(range(10)) and full != list(range(10))
    assert list(EpochSampler(10, seed=3, epoch=2, start=4)) == full[4:]
    assert full != epoch_order(10, 3, 1).tolist()
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- KTO
def test_unpaired_derived_from_pairs(tmp_path):
    path = save_table(tmp_path, "hf", pick_rows())
    ds = build_dataset(DataConfig(path=path, kind="unpaired", unpaired_from_pairs=True, resolution=16))
    assert isinstance(ds, PairsAsUnpaired) and len(ds) == 6
    expected = [(RED, True), (BLUE, False), (YELLOW, True), (GREEN, False), (GREY, True), (WHITE, False)]
    for k, (colour, desirable) in enumerate(expected):
        ex = ds[k]
        assert ex.desirable is desirable and ds.desirable(k) is desirable
        assert_colour(ex.image, colour)
    assert ds[2].caption == PICK[1][0] and ds.caption(3) == PICK[1][0]
    batch = ds.collate([ds[0], ds[1]])
    assert batch.desirable.tolist() == [True, False] and batch.images.shape == (2, 3, 16, 16)
    with pytest.raises(DatasetError, match="ties='drop'"):
        build_dataset(DataConfig(path=path, kind="unpaired", unpaired_from_pairs=True, ties="keep"))


def test_unpaired_derived_uses_role_captions(tmp_path):
    path = save_table(tmp_path, "parquet", pick_rows(c0=["w0", "x0", "y0", "z0"], c1=["w1", "x1", "y1", "z1"]))
    pairs = build_dataset(pairs_cfg(path, columns={"caption_0": "c0", "caption_1": "c1"}))
    ds = PairsAsUnpaired(pairs)
    assert [ds[k].caption for k in range(4)] == ["w0", "w1", "x1", "x0"]
    assert [ds.caption(k) for k in range(4)] == ["w0", "w1", "x1", "x0"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unpaired_source(tmp_path, fmt):
    rows = [
        {"prompt": "a", "img": encoded(RED), "good": True},
        {"prompt": "b", "img": encoded(BLUE), "good": False},
    ]
    cfg = DataConfig(path=save_table(tmp_path, fmt, rows), kind="unpaired", resolution=8,
                     columns={"caption": "prompt", "image": "img", "desirable": "good"})
    ds = build_dataset(cfg)
    assert len(ds) == 2 and ds.num_desirable == 1
    assert (ds[0].caption, ds[0].desirable, ds[1].desirable) == ("a", True, False)
    assert_colour(ds[1].image, BLUE)


def test_unpaired_bad_flag_and_word_flags(tmp_path):
    rows = [{"caption": "a", "image": encoded(RED), "desirable": v} for v in ("undesirable", 1, "maybe")]
    with pytest.raises(DatasetError, match=r"row 2 \(line 3\) column desirable: desirable label must be true/false"):
        build_dataset(DataConfig(path=save_table(tmp_path, "jsonl", rows), kind="unpaired", resolution=8))
    ok = build_dataset(DataConfig(path=save_table(tmp_path, "jsonl", rows[:2], name="ok"), kind="unpaired", resolution=8))
    assert [ok[0].desirable, ok[1].desirable] == [False, True]


# --------------------------------------------------------------------------- RankDPO lists
@pytest.mark.parametrize("fmt", FORMATS)
def test_ranked_lists(tmp_path, fmt):
    rows = [
        {"caption": "three", "images": [encoded(RED), encoded(GREEN), encoded(BLUE)], "scores": [0.2, 1.0, 0.5],
         "ranks": [1, 2, 2]},
        {"caption": "again", "images": [encoded(GREY), encoded(WHITE), encoded(CYAN)], "scores": [0.0, 0.1, 0.9],
         "ranks": [3, 1, 2]},
    ]
    path = save_table(tmp_path, fmt, rows)
    ds = build_dataset(DataConfig(path=path, kind="ranked", resolution=8))
    ex = ds[0]
    assert ex.images.shape == (3, 3, 8, 8) and ex.scores.tolist() == pytest.approx([0.2, 1.0, 0.5])
    for k, colour in enumerate([RED, GREEN, BLUE]):
        assert_colour(ex.images[k], colour)
    batch = ds.collate([ds[0], ds[1]])
    assert batch.images.shape == (2, 3, 3, 8, 8) and batch.scores.shape == (2, 3)
    # ranks (1 = best) -> fraction of the other images beaten, ties counting one half
    by_rank = build_dataset(DataConfig(path=path, kind="ranked", resolution=8, columns={"ranks": "ranks"}))
    assert by_rank[0].scores.tolist() == pytest.approx([1.0, 0.25, 0.25])
    assert by_rank[1].scores.tolist() == pytest.approx([0.0, 1.0, 0.5])


def test_ranked_list_errors(tmp_path):
    rows = [{"caption": "x", "images": [encoded(RED), encoded(GREEN)], "scores": [0.5]}]
    ds = build_dataset(DataConfig(path=save_table(tmp_path, "parquet", rows), kind="ranked", resolution=8))
    with pytest.raises(DatasetError, match=r"pick\.parquet row 0 column scores: scores has 1 entries for 2 images"):
        ds[0]
    rows = [{"caption": "x", "images": [encoded(RED), b"garbage"], "scores": [0.5, 0.1]}]
    ds = build_dataset(DataConfig(path=save_table(tmp_path, "parquet", rows, name="g"), kind="ranked", resolution=8))
    with pytest.raises(DatasetError, match=r"g\.parquet row 0 column images item 1: cannot decode image"):
        ds[0]


# --------------------------------------------------------------------------- DenseDPO video pairs
def write_videos(folder):
    """Three 4-frame videos in three storages, frame k of colour COLOURS[k]."""
    colours = [RED, GREEN, BLUE, WHITE]
    arrays = np.stack([np.broadcast_to(np.array(c, np.uint8), (12, 10, 3)) for c in colours])
    np.save(folder / "v0.npy", arrays)
    (folder / "frames").mkdir()
    for k, frame in enumerate(arrays[::-1]):  # reversed colours, named so that natural sort matters
        Image.fromarray(frame).save(folder / "frames" / f"f{k * 5}.png")
    Image.fromarray(arrays[0]).save(folder / "v2.gif", save_all=True, append_images=[Image.fromarray(a) for a in arrays[1:]])
    return colours


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_video_pairs_with_segment_labels(tmp_path, fmt):
    colours = write_videos(tmp_path)
    rows = [
        {"caption": "npy vs frames", "video_0": "v0.npy", "video_1": "frames", "segment_labels": [1, -1]},
        {"caption": "gif vs npy", "video_0": "v2.gif", "video_1": "v0.npy", "segment_labels": [0, 0]},
        {"caption": "mostly ties", "video_0": "v0.npy", "video_1": "v2.gif", "segment_labels": [0, 1, 0, 0]},
    ]
    path = save_table(tmp_path, fmt, rows)
    ds = build_dataset(DataConfig(path=path, kind="video_pairs", resolution=8))
    assert len(ds) == 3
    ex = ds[0]
    assert ex.video_0.shape == (4, 3, 8, 8) and ex.segment_labels.tolist() == [1, -1]
    assert ex.segment_labels.dtype == torch.long
    for k in range(4):
        assert_colour(ex.video_0[k], colours[k])
        assert_colour(ex.video_1[k], colours[::-1][k])
    for k in range(4):
        assert_colour(ds[1].video_0[k], colours[k], tol=4.0)  # gif palette
    batch = ds.collate([ds[0]])
    assert batch.videos_0.shape == (1, 4, 3, 8, 8) and batch.segment_labels.tolist() == [[1, -1]]
    short = build_dataset(DataConfig(path=path, kind="video_pairs", resolution=8, num_frames=2))
    assert short[0].video_1.shape == (2, 3, 8, 8)
    assert_colour(short[0].video_1[0], WHITE)
    dense = build_dataset(DataConfig(path=path, kind="video_pairs", resolution=8, min_nontie_fraction=0.5))
    assert len(dense) == 1 and dense.num_filtered == 2 and dense.source_row(0) == 0


def test_video_pair_errors(tmp_path):
    write_videos(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video")
    rows = [
        {"caption": "ok", "video_0": "v0.npy", "video_1": "broken.mp4", "segment_labels": [1]},
        {"caption": "bad", "video_0": "v0.npy", "video_1": "v0.npy", "segment_labels": [2, 1]},
    ]
    with pytest.raises(DatasetError, match=r"pick\.jsonl row 1 \(line 2\) column segment_labels: .*must be \+1, -1 or 0"):
        build_dataset(DataConfig(path=save_table(tmp_path, "jsonl", rows), kind="video_pairs", resolution=8))
    ds = build_dataset(DataConfig(path=save_table(tmp_path, "jsonl", rows[:1], name="one"), kind="video_pairs", resolution=8))
    with pytest.raises(DatasetError) as err:
        ds[0]
    assert "one.jsonl row 0 (line 1) column video_1: cannot decode video" in str(err.value)
    assert "broken.mp4" in str(err.value)
    too_short = build_dataset(DataConfig(path=str(tmp_path / "one.jsonl"), kind="video_pairs", resolution=8, num_frames=9,
                                         columns={"video_1": "video_0"}))
    with pytest.raises(DatasetError, match="video_0: video has 4 frames, fewer than num_frames=9"):
        too_short[0]


# --------------------------------------------------------------------------- errors and validation
def test_corrupt_image_names_file_row_and_column(tmp_path):
    rows = pick_rows()
    rows[1]["jpg_1"] = rows[1]["jpg_1"][:40]  # truncated JPEG
    ds = build_dataset(pairs_cfg(save_table(tmp_path, "parquet", rows, name="pickapic")))
    ds[0]
    with pytest.raises(DatasetError, match=r"^pickapic\.parquet row 1 column jpg_1: cannot decode image \("):
        ds[1]


def test_missing_image_file_names_the_path(tmp_path):
    path = save_table(tmp_path, "jsonl", pick_rows())
    os.remove(tmp_path / "pick_media" / "3_jpg_0.png")
    ds = build_dataset(pairs_cfg(path))
    with pytest.raises(DatasetError) as err:
        ds[2]
    msg = str(err.value)
    assert msg.startswith("pick.jsonl row 3 (line 4) column jpg_0: image file not found: ")
    assert msg.endswith(os.path.join("pick_media", "3_jpg_0.png"))


def test_missing_column_lists_available_ones(tmp_path):
    path = save_table(tmp_path, "parquet", pick_rows())
    with pytest.raises(DatasetError) as err:
        build_dataset(pairs_cfg(path, columns={"image_1": "jpg_2"}))
    assert str(err.value) == (
        "pick.parquet: column 'jpg_2' (image_1) not found; available columns: caption, jpg_0, jpg_1, label_0, label_1"
    )
    with pytest.raises(DatasetError, match="unknown column key 'picture' for PairColumns; valid keys: caption, image_0"):
        build_dataset(pairs_cfg(path, columns={"picture": "jpg_0"}))


def test_validate_reports_every_bad_row(tmp_path):
    rows = pick_rows()
    rows[0]["jpg_0"] = b"not an image"
    rows[3]["jpg_1"] = None
    ds = build_dataset(pairs_cfg(save_table(tmp_path, "hf", rows)))
    problems = ds.validate(raise_on_error=False)
    assert len(problems) == 2
    assert problems[0].startswith("pick row 0 column jpg_0: cannot decode image")
    assert problems[1] == "pick row 3 column jpg_1: no image (the value is empty)"
    with pytest.raises(DatasetError, match="2 of 3 examples failed validation") as err:
        ds.validate()
    assert err.value.problems == problems
    assert build_dataset(pairs_cfg(save_table(tmp_path, "hf", pick_rows(), name="ok"))).validate() == []


# --------------------------------------------------------------------------- fingerprints
def test_fingerprint_tracks_data_and_options(tmp_path):
    path = save_table(tmp_path, "parquet", pick_rows())
    fp = build_dataset(pairs_cfg(path)).fingerprint()
    assert build_dataset(pairs_cfg(path)).fingerprint() == fp  # stable across opens
    assert build_dataset(pairs_cfg(path, resolution=32)).fingerprint() != fp
    assert build_dataset(pairs_cfg(path, ties="keep")).fingerprint() != fp
    rows = pick_rows()
    rows[0]["label_0"] = 0.0
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert build_dataset(pairs_cfg(path)).fingerprint() != fp


def test_fingerprint_covers_referenced_media_files(tmp_path):
    (tmp_path / "orig").mkdir()
    path = save_table(tmp_path / "orig", "jsonl", pick_rows())
    ds = build_dataset(pairs_cfg(path))
    fp, fp_content = ds.fingerprint(), ds.fingerprint(content=True)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "orig", copy)
    moved = build_dataset(pairs_cfg(str(copy / "pick.jsonl")))
    assert moved.fingerprint(content=True) == fp_content  # same bytes, other place
    assert moved.fingerprint() != fp  # stat mode keys on paths
    (copy / "pick_media" / "1_jpg_1.png").write_bytes(encoded((0, 0, 0)))  # only an image changes
    assert build_dataset(pairs_cfg(str(copy / "pick.jsonl"))).fingerprint(content=True) != fp_content


# --------------------------------------------------------------------------- the bench set and the writer
def test_reads_make_fake_parquet_schema(tmp_path):
    """The exact table ../shared/bench/make_fake.py's ``dataset()`` writes (there: 256 rows, 512 px)."""
    n, res = 4, 32
    rng = np.random.default_rng(0)

    def jpg():
        a = (rng.random((res // 8, res // 8, 3)) * 255).astype(np.uint8)
        b = io.BytesIO()
        Image.fromarray(a).resize((res, res)).save(b, format="JPEG")
        return b.getvalue()

    rows = dict(caption=[f"a photo of object {i} on a table" for i in range(n)], jpg_0=[jpg() for _ in range(n)],
                jpg_1=[jpg() for _ in range(n)], label_0=[float(i % 2) for i in range(n)],
                label_1=[float(1 - i % 2) for i in range(n)])
    folder = tmp_path / "pick512"
    folder.mkdir()
    pq.write_table(pa.table(rows), folder / "train-00000-of-00001.parquet")
    ds = build_dataset(DataConfig(path=str(folder), resolution=res))
    assert len(ds) == n and ds.num_ties_dropped == 0
    for i in range(n):
        ex = ds[i]
        winner_bytes = rows["jpg_1"][i] if i % 2 == 0 else rows["jpg_0"][i]  # label_0 = 0 on even rows
        expected = torch.from_numpy(np.array(Image.open(io.BytesIO(winner_bytes)).convert("RGB"))).permute(2, 0, 1) / 255
        assert torch.allclose(ex.winner, expected, atol=1e-6)
        assert ex.caption == f"a photo of object {i} on a table"


def test_write_pairs_jsonl_round_trip(tmp_path):
    grad = np.linspace(0, 1, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    pairs = [
        {"caption": "tensor pair", "jpg_0": torch.from_numpy(grad), "jpg_1": Image.new("RGB", (8, 8), RED),
         "label_0": 0.0, "soft_label": torch.tensor(0.75), "judge": [1, 0]},
        {"caption": "array pair", "jpg_0": np.full((8, 8, 3), 200, np.uint8), "jpg_1": encoded(GREEN, (8, 8)),
         "label_0": 1, "soft_label": 0.6, "judge": [1, 1]},
    ]
    out = write_pairs_jsonl(tmp_path / "gen", pairs)
    assert out == tmp_path / "gen" / "pairs.jsonl" and detect_format(tmp_path / "gen") == "jsonl"
    record = json.loads(out.read_text().splitlines()[0])
    assert record["jpg_0"] == "images/000000_0.png" and record["label_1"] == 1.0 and record["soft_label"] == 0.75
    ds = build_dataset(pairs_cfg(str(tmp_path / "gen"), resolution=8, columns={"soft_label": "soft_label"}))
    assert len(ds) == 2
    assert_colour(ds[0].winner, RED, tol=0)
    assert torch.equal(ds[0].loser, (torch.from_numpy(grad) * 255).round() / 255)  # PNG is lossless
    assert torch.equal(ds[1].winner, torch.full((3, 8, 8), 200 / 255))
    assert [ds[0].soft_label, ds[1].soft_label] == pytest.approx([0.75, 0.6])
    with pytest.raises(DatasetError, match="already exists"):
        write_pairs_jsonl(tmp_path / "gen", pairs)
    with pytest.raises(DatasetError, match="pair 1: label_0 must be 0, 0.5 or 1"):
        write_pairs_jsonl(tmp_path / "bad", [pairs[0], {**pairs[1], "label_0": 0.2}])
    hf = write_pairs_hf(tmp_path / "genhf", pairs)
    assert detect_format(hf) == "hf"
    again = build_dataset(pairs_cfg(str(hf), resolution=8))
    assert torch.equal(again[0].loser, ds[0].loser) and again.caption(1) == "array pair"


def test_data_config_from_recipe_overrides():
    cfg = load_config(DataConfig, None, ["path=x.parquet", "kind=ranked", "columns.ranks=ranking", "columns.scores=",
                                         "num_frames=8", "random_flip=true"])
    assert cfg.columns == {"ranks": "ranking", "scores": None} and cfg.num_frames == 8 and cfg.random_flip
    with pytest.raises(DatasetError, match="unknown data kind 'triples'"):
        build_dataset(DataConfig(path="x", kind="triples"))
