"""Test-wide set-up: no network, deterministic threads, and diffalign imported first (it makes
torchvision importable next to a CPU-only torch build).

Under pytest-xdist (``make test`` runs ``pytest -n auto --dist loadgroup``) every worker gets its
share of the cores as torch threads (1 each with 2 workers on 2 cores; processes the tests launch
inherit it through ``OMP_NUM_THREADS``), a test that changes torch's thread count (the demo) has it
put back afterwards, so one test cannot oversubscribe the machine for the next, and the modules of
``XDIST_GROUPS`` run on one worker each group (see there)."""
from __future__ import annotations

import os

import pytest

#: number of pytest-xdist workers (0: no xdist)
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
if XDIST_WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // XDIST_WORKERS)))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import diffalign  # noqa: E402,F401  (import before anything pulls in torchvision)
import torch  # noqa: E402

if XDIST_WORKERS > 1:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))


def shared_path(*parts: str) -> str:
    """Path under the ``../shared`` folder next to the checkout (absent on a user's machine)."""
    return os.path.join(SHARED, *parts)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Put torch's intra-op thread count back after a test that changed it."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


#: test modules whose tests one pytest-xdist worker runs, one after another (``--dist loadgroup``;
#: every other test goes to whichever worker is free): the 2-process torchrun runs (already two
#: processes each, and test_train_scale's module fixture runs them once for several tests) and the
#: kill-and-resume cases (their uninterrupted reference run is a module fixture). Kept here rather
#: than as ``xdist_group`` marks: pytest-xdist 3.8 tags marked tests through a node attribute that
#: pytest 9 no longer reads, so the marks are silently ignored there.
XDIST_GROUPS = {
    "tests/test_train_scale.py": "torchrun",
    "tests/test_train_scale_online.py": "torchrun",
    "tests/test_eval_sharded.py": "torchrun",
    "tests/reliability/test_reliability_faults.py": "kill_resume",
}


def xdist_scope(nodeid: str) -> str:
    """The unit of work the scheduler hands to one worker: a group name or the test itself."""
    return XDIST_GROUPS.get(nodeid.split("::", 1)[0], nodeid)


@pytest.hookimpl(optionalhook=True)  # no error where pytest-xdist is not installed
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` with the groups above (pytest-xdist's own hook; absent without xdist)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return GroupScheduling(config, log)
