"""GenEval's aggregation (``summary_scores.py``): accuracy per tag, ``overall`` = the unweighted mean
of the tag scores (not the share of correct images), "% correct images" and "% correct prompts"
(prompts with at least one correct image)."""
from __future__ import annotations

import json
from typing import Iterable, Mapping, Sequence

from diffalign.geneval.vocab import TAGS


def summarize(rows: Sequence[Mapping], corrects: Iterable) -> dict[str, float]:
    """Accuracy per tag (tags present, in GenEval's order; unknown tags after them) and ``overall``
    = unweighted mean of those tag scores. ``corrects`` holds bools or ``(correct, reason)`` pairs."""
    flags = [bool(c[0]) if isinstance(c, tuple) else bool(c) for c in corrects]
    if len(flags) != len(rows):
        raise ValueError(f"summarize got {len(rows)} rows but {len(flags)} verdicts")
    if not rows:
        raise ValueError("summarize needs at least one row")
    per_tag: dict[str, list[bool]] = {}
    for row, flag in zip(rows, flags):
        per_tag.setdefault(row["tag"], []).append(flag)
    order = [t for t in TAGS if t in per_tag] + sorted(t for t in per_tag if t not in TAGS)
    scores = {t: sum(per_tag[t]) / len(per_tag[t]) for t in order}
    scores["overall"] = sum(scores.values()) / len(scores)
    return scores


def summarize_results(results: Sequence[Mapping]) -> dict:
    """The full summary of per-image results (dicts with ``tag``, ``correct`` and ``metadata``, as
    ``results.jsonl`` holds them): ``overall``, ``per_tag`` scores, ``per_tag_counts``
    ([correct, images]), ``correct_images`` and ``correct_prompts`` (fractions), ``images`` and
    ``prompts`` (counts), and ``distinct_prompts``. A prompt is a row of the prompt file
    (``prompt_index`` when the results carry it, as this package's jobs write them) else a metadata
    record, as GenEval does; ``distinct_prompts`` counts the metadata records (fewer when a prompt repeats)."""
    rows = [{"tag": r["tag"]} for r in results]
    scores = summarize(rows, [bool(r["correct"]) for r in results])
    counts: dict[str, list[int]] = {}
    by_prompt: dict = {}
    distinct = set()
    for r in results:
        c = counts.setdefault(r["tag"], [0, 0])
        c[0] += bool(r["correct"])
        c[1] += 1
        record = r["metadata"] if isinstance(r["metadata"], str) else json.dumps(r["metadata"])
        distinct.add(record)
        key = ("index", r["prompt_index"]) if "prompt_index" in r else record
        by_prompt[key] = by_prompt.get(key, False) or bool(r["correct"])
    overall = scores.pop("overall")
    return {
        "overall": overall,
        "per_tag": scores,
        "per_tag_counts": {t: counts[t] for t in scores},
        "correct_images": sum(bool(r["correct"]) for r in results) / len(results),
        "correct_prompts": sum(by_prompt.values()) / len(by_prompt),
        "images": len(results),
        "prompts": len(by_prompt),
        "distinct_prompts": len(distinct),
    }
