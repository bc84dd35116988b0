"""Prompt sets for online training: the prompt of each row and the metadata its reward reads."""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

from diffalign.train.online.config import PromptsConfig

SOURCES = ("shapes", "shapes_video", "list", "file")


class PromptSet:
    """An indexed list of rows ``{"prompt": str, ...}``; ``metadata`` is the row itself for sources
    that carry one (shapes rows, jsonl files) and None otherwise."""

    def __init__(self, rows: Sequence[Mapping], has_metadata: bool, origin: str):
        if not rows:
            raise ValueError(f"{origin}: no prompts")
        for i, row in enumerate(rows):
            if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
                raise ValueError(f"{origin}: row {i} has no non-empty 'prompt' string: {dict(row)!r:.200}")
        self.rows = [dict(r) for r in rows]
        self.has_metadata = has_metadata
        self.origin = origin

    def __len__(self) -> int:
        return len(self.rows)

    def prompts(self, indices: Sequence[int]) -> list[str]:
        return [self.rows[i]["prompt"] for i in indices]

    def metadata(self, indices: Sequence[int]) -> list[dict] | None:
        return [self.rows[i] for i in indices] if self.has_metadata else None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_config(
        cls, cfg: PromptsConfig, evaluation: bool = False, seed: int = 0, num_rows: int | None = None
    ) -> "PromptSet":
        """The training prompts, or (``evaluation=True``) the held-out ones. ``num_rows`` (shapes:
        rows drawn balanced over the categories; other sources: the first ``num_rows`` prompts)
        defaults to ``cfg.shapes_rows`` for training; 0 or None keeps every row."""
        if cfg.source not in SOURCES:
            raise ValueError(f"prompts.source={cfg.source!r}; expected one of {', '.join(SOURCES)}")
        if cfg.source == "shapes":
            from diffalign.shapes import sample_rows, split_rows

            split = cfg.eval_split if evaluation else cfg.split
            n = num_rows if (evaluation or num_rows is not None) else cfg.shapes_rows
            if n:
                rows = sample_rows(n, seed=seed, categories=cfg.categories, split=split)
            else:
                rows = split_rows(split, cfg.categories)
            return cls(rows, True, f"shapes prompts (split {split})")
        if cfg.source == "shapes_video":
            from diffalign.shapes.video import VIDEO_CATEGORIES, sample_video_rows, video_prompts

            split = cfg.eval_split if evaluation else cfg.split
            n = num_rows if (evaluation or num_rows is not None) else cfg.shapes_rows
            cats = list(cfg.categories or VIDEO_CATEGORIES)
            unknown = [c for c in cats if c not in VIDEO_CATEGORIES]
            if unknown:
                raise ValueError(f"prompts.categories: unknown moving-shapes category {unknown[0]!r}; "
                                 f"expected some of {', '.join(VIDEO_CATEGORIES)}")
            # balanced over the categories: ceil(n / categories) rows of each, interleaved, cut to n
            rows = (sample_video_rows(-(-n // len(cats)), seed=seed, split=split, categories=cats)[:n] if n
                    else video_prompts(split, cats))
            return cls(rows, True, f"moving-shapes video prompts (split {split})")
        if cfg.source == "list":
            if not cfg.items:
                raise ValueError("prompts.source=list needs prompts.items")
            found = cls([{"prompt": p} for p in cfg.items], False, "prompts.items")
        else:
            path = cfg.eval_path if evaluation and cfg.eval_path else cfg.path
            if not path:
                raise ValueError("prompts.source=file needs prompts.path (a .txt or .jsonl file)")
            found = cls.from_file(path)
        if num_rows:
            found.rows = found.rows[:num_rows]
        return found

    @classmethod
    def from_file(cls, path: str) -> "PromptSet":
        """``.txt``: one prompt per non-empty line; ``.jsonl``: one JSON row per line with ``prompt``."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"prompt file not found: {path}")
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        if path.endswith(".jsonl"):
            rows = []
            for n, line in enumerate(lines, 1):
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON: {e}") from e
                if not isinstance(rows[-1], dict):
                    raise ValueError(f"{path}:{n}: expected a JSON object with a 'prompt' key")
            return cls(rows, True, path)
        return cls([{"prompt": p} for p in lines if p], False, path)


__all__ = ["PromptSet", "SOURCES"]
