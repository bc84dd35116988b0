"""The pytest-xdist grouping of ``make test`` (tests/conftest.py): every test module that launches
``torchrun`` is in the one "torchrun" group, so two 2-process runs never share the two cores, and
the scheduler's unit of work is the group for those modules and the single test for the others."""
from __future__ import annotations

import os

from conftest import XDIST_GROUPS, xdist_scope

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_every_torchrun_module_is_in_the_torchrun_group():
    launching = set()
    for folder, _, files in os.walk(TESTS):
        for name in files:
            if name.startswith("test_") and name.endswith(".py") and name != os.path.basename(__file__):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    source = f.read()
                if "TORCHRUN" in source or "torch.distributed.run" in source:
                    launching.add(os.path.relpath(os.path.join(folder, name), os.path.dirname(TESTS)).replace(os.sep, "/"))
    assert {"tests/test_train_scale.py", "tests/test_eval_sharded.py"} <= launching  # the scan finds them
    assert {m for m in launching if XDIST_GROUPS.get(m) != "torchrun"} == set()
    assert all(os.path.exists(os.path.join(os.path.dirname(TESTS), m)) for m in XDIST_GROUPS)


def test_scope_is_the_group_or_the_test_itself():
    assert xdist_scope("tests/test_train_scale.py::test_two_gloo_ranks_reproduce_one_process") == "torchrun"
    assert xdist_scope("tests/test_eval_sharded.py::test_compare_on_two_processes_matches_one") == "torchrun"
    assert xdist_scope("tests/reliability/test_reliability_faults.py::test_killed_and_resumed_run_is_byte_identical[export]") == "kill_resume"
    assert xdist_scope("tests/test_demo.py::test_eval_only_reports_every_category") == "tests/test_demo.py::test_eval_only_reports_every_category"
