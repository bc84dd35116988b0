"""The ``ocr`` reward: Flow-GRPO's formula on known strings, and the rapidocr backend on rendered
text when ``rapidocr_onnxruntime`` is installed (it ships its models, so it runs offline)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import diffalign.rewards
from diffalign.rewards.ocr import levenshtein, ocr_score, target_text


def test_levenshtein_and_the_score_by_hand():
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0
    assert target_text('a sign that says "Hello World" at night') == "Hello World"
    assert target_text("no quotes here") == "no quotes here"
    prompt = 'a sign that says "Hello World"'  # target "helloworld", 10 characters
    assert ocr_score("HELLO WORLD", prompt) == 1.0
    assert ocr_score("xx hello world yy", prompt) == 1.0  # contained: extra characters cost nothing
    assert ocr_score("hallo world", prompt) == pytest.approx(0.9)  # one substitution
    assert ocr_score("helo", prompt) == pytest.approx(0.4)  # six deletions
    assert ocr_score("completely unrelated text here", prompt) == 0.0  # distance capped at len(target)
    assert ocr_score("anything", 'say ""') == 0.0


def test_the_reward_with_a_given_recognizer():
    seen = []

    def recognizer(image):
        seen.append((image.shape, image.dtype, int(image[0, 0, 0])))
        return "hallo world" if image[0, 0, 0] > 127 else ""

    reward = diffalign.rewards.load("ocr", recognizer=recognizer)
    x = torch.zeros(2, 3, 4, 5)
    x[0] = 1.0
    scores = reward(x, ['"Hello World"', '"Hello World"'])
    assert scores.tolist() == pytest.approx([0.9, 0.0])
    assert seen == [((4, 5, 3), np.uint8, 255), ((4, 5, 3), np.uint8, 0)]  # HWC uint8 RGB


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("rapidocr_onnxruntime") is None,
                    reason="rapidocr_onnxruntime is not installed (pip install rapidocr-onnxruntime)")
def test_rapidocr_reads_rendered_text():
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (320, 96), "white")
    font = ImageFont.load_default(size=40)
    ImageDraw.Draw(image).text((16, 24), "HELLO 42", fill="black", font=font)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    reward = diffalign.rewards.load("ocr")
    scores = reward(torch.cat([pixels, torch.ones_like(pixels)]), ['a sign "hello 42"', 'a sign "hello 42"'])
    assert scores.tolist() == pytest.approx([1.0, 0.0])
