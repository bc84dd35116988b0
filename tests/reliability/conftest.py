"""Fixtures of the fault-injection suite (helpers in ``reliability_helpers``)."""
from __future__ import annotations

import pytest
from reliability_helpers import pair_rows

from diffalign.data import write_pairs_jsonl


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability-data") / "pairs"
    write_pairs_jsonl(str(root), pair_rows())
    return root
