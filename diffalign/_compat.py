"""Environment compatibility fixes applied once at import time.

PyPI only carries CUDA builds of torchvision. On a machine with a CPU-only torch build (the
offline CPU wheel used by this project's Makefile), torchvision's compiled ops cannot load and its
``import`` then fails while registering fake kernels for ``torchvision::nms``/``qnms``. Everything
diffalign needs from torchvision (transforms, used by open_clip and timm) is pure Python, so when
the compiled extension cannot load we declare the two op schemas before torchvision is imported.
Calling the compiled ops (``torchvision.ops.nms``) still raises torchvision's own clear error.
"""
from __future__ import annotations

import importlib.util
import os

_done = False


def ensure_torchvision_importable() -> None:
    global _done
    if _done:
        return
    _done = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import sys

    if "torchvision" in sys.modules:
        return
    import torch

    folder = list(spec.submodule_search_locations)[0]
    lib = os.path.join(folder, "_C.so")
    if not os.path.exists(lib):
        return
    try:
        torch.ops.load_library(lib)
        return
    except (OSError, ImportError, RuntimeError):
        pass
    try:
        defs = torch.library.Library("torchvision", "DEF")  # noqa: F841 - must stay alive
        defs.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        defs.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        globals()["_torchvision_defs"] = defs
    except RuntimeError:
        # Already defined (by torchvision itself or an earlier call): nothing to do.
        pass
