"""Held-out prompt rows: a repeat is announced, balance is kept, and the summary counts rows and
distinct prompts apart."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from diffalign.geneval.summary import summarize_results
from diffalign.shapes.prompts import sample_rows


def test_repeated_prompt_is_announced_and_balance_kept():
    with pytest.warns(UserWarning, match=r"split 'test' has fewer prompts than rows in single_object "
                                         r"\(1 prompts for 2 rows\); prompts repeat"):
        rows = sample_rows(12, seed=1, split="test")
    assert Counter(r["tag"] for r in rows) == {t: 2 for t in {r["tag"] for r in rows}} and len(rows) == 12
    assert len({r["prompt"] for r in rows}) == 11  # the one single_object prompt twice
    results = [{"tag": r["tag"], "correct": i % 3 == 0, "metadata": json.dumps(r), "prompt_index": i}
               for i, r in enumerate(rows)]
    summary = summarize_results(results)
    assert (summary["images"], summary["prompts"], summary["distinct_prompts"]) == (12, 12, 11)
    assert summary["correct_prompts"] == 4 / 12


def test_no_warning_while_prompts_suffice(recwarn):
    rows = sample_rows(6, seed=1, split="test")
    assert len({r["prompt"] for r in rows}) == 6 and not [w for w in recwarn if "repeat" in str(w.message)]
