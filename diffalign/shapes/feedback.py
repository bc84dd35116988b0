"""AI feedback on the shapes world: sample a pipeline, let the judge label pairs.

For each prompt row, ``images_per_prompt`` samples are drawn; every (correct, incorrect) pair of
samples of the same prompt becomes a preference pair (winner = judged correct), at most
``max_pairs_per_prompt`` per prompt. The pairs are returned in the Pick-a-Pic layout
(``caption``, ``jpg_0``, ``jpg_1``, ``label_0``) that :func:`diffalign.data.write_pairs_jsonl`
writes and every offline trainer reads.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from diffalign.shapes.judge import judge_batch
from diffalign.shapes.sampling import generate_for_rows


@dataclass
class FeedbackResult:
    pairs: list[dict]
    images: list[np.ndarray]
    rows: list[dict]
    corrects: list[bool]

    @property
    def accuracy(self) -> float:
        return sum(self.corrects) / max(1, len(self.corrects))


def judged_pairs(
    pipe,
    rows: Sequence[Mapping],
    *,
    images_per_prompt: int = 4,
    max_pairs_per_prompt: int = 2,
    num_inference_steps: int = 20,
    guidance_scale: float = 5.0,
    seed: int = 0,
    batch_size: int = 64,
    height: int = 64,
    width: int = 64,
    **call_kwargs,
) -> FeedbackResult:
    """Sample ``images_per_prompt`` images per row, judge them, and pair correct with incorrect
    (``call_kwargs``: further pipeline call arguments, e.g. SD3's ``max_sequence_length``)."""
    expanded = [dict(r) for r in rows for _ in range(images_per_prompt)]
    images = generate_for_rows(
        pipe, expanded, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
        seed=seed, batch_size=batch_size, height=height, width=width, **call_kwargs,
    )
    corrects = [bool(c) for c, _ in judge_batch(images, expanded)]
    rng = np.random.default_rng(seed)
    pairs: list[dict] = []
    for p, row in enumerate(rows):
        group = range(p * images_per_prompt, (p + 1) * images_per_prompt)
        good = [i for i in group if corrects[i]]
        bad = [i for i in group if not corrects[i]]
        candidates = list(itertools.product(good, bad))
        rng.shuffle(candidates)
        for w, l in candidates[:max_pairs_per_prompt]:
            # randomise which slot holds the winner, as in human-labelled sets
            if rng.random() < 0.5:
                pairs.append({"caption": row["prompt"], "jpg_0": images[w], "jpg_1": images[l], "label_0": 1.0, "tag": row["tag"]})
            else:
                pairs.append({"caption": row["prompt"], "jpg_0": images[l], "jpg_1": images[w], "label_0": 0.0, "tag": row["tag"]})
    return FeedbackResult(pairs=pairs, images=images, rows=expanded, corrects=corrects)
