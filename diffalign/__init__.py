"""diffalign: align image and video diffusion models with human preferences.

Subpackages:
- ``diffalign.pipelines``: one adapter per diffusers model family (sd, sdxl, sd3, cogvideox).
- ``diffalign.shapes``: the embedded synthetic text-to-image world with an exact judge.
- ``diffalign.train``: trainers and the sampling kernels they share.
- ``diffalign.rewards``: reward models behind one interface.
- ``diffalign.eval``: evaluation jobs (GenEval, HPSv2, win-rates).
"""
from diffalign._compat import ensure_torchvision_importable as _ensure_tv

_ensure_tv()

__version__ = "0.1.0"
