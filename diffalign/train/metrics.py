"""Training logs: every step's stats as one JSON line, plus tensorboard / wandb when asked for.

``MetricsLogger(out_dir, report_to=["tensorboard"])`` appends to ``OUT/logs/metrics.jsonl``
(``{"step": .., "time": .., <stat>: <float>, ...}``). On resume the file is truncated to the
resumed step so the log reads like one uninterrupted run. tensorboard and wandb go through the
packages themselves and are only imported when named; a named but missing one is a clear error.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping, Sequence

LOG_DIR = "logs"
METRICS_FILE = "metrics.jsonl"


def wandb_init_kwargs(options: Mapping[str, Any] | None, run_name: str) -> dict[str, Any]:
    """``wandb.init`` keywords from the config's ``wandb`` section (project, entity, name, tags);
    the run name defaults to ``run_name`` (the output folder's name)."""
    options = dict(options or {})
    kwargs = {"project": options.get("project") or "diffalign", "name": options.get("name") or run_name}
    if options.get("entity"):
        kwargs["entity"] = options["entity"]
    if options.get("tags"):
        kwargs["tags"] = list(options["tags"])
    return kwargs


class MetricsLogger:
    def __init__(
        self,
        output_dir: str,
        report_to: Sequence[str] = (),
        run_name: str = "diffalign",
        config: Mapping[str, Any] | None = None,
        resume_step: int | None = None,
        enabled: bool = True,
        wandb_options: Mapping[str, Any] | None = None,
    ):
        self.enabled = enabled
        self.path = os.path.join(output_dir, LOG_DIR, METRICS_FILE)
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if resume_step is not None:
            truncate_metrics(self.path, resume_step)
        elif os.path.exists(self.path):
            os.remove(self.path)
        for name in report_to:
            if name in ("", "none", "jsonl"):
                continue
            if name == "tensorboard":
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as e:
                    raise ImportError("report_to=tensorboard needs the tensorboard package: pip install tensorboard") from e
                self._tb = SummaryWriter(os.path.join(output_dir, LOG_DIR, "tensorboard"))
            elif name == "wandb":
                try:
                    import wandb
                except ImportError as e:
                    raise ImportError("report_to=wandb needs the wandb package: pip install wandb") from e
                self._wandb = wandb.init(**wandb_init_kwargs(wandb_options, run_name), config=dict(config or {}),
                                         dir=output_dir, resume="allow")
            else:
                raise ValueError(f"unknown report_to entry {name!r}; use jsonl, tensorboard or wandb")

    def log(self, step: int, stats: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: _to_float(v) for k, v in stats.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **clean}) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                if v is not None and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def log_image(self, step: int, tag: str, image) -> None:
        if self._tb is not None:
            import numpy as np

            self._tb.add_image(tag, np.asarray(image), step, dataformats="HWC")
        if self._wandb is not None:
            import wandb

            self._wandb.log({tag: wandb.Image(image)}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(path: str, step: int) -> None:
    """Keep only the lines with ``step <= step`` (after resuming from that step)."""
    if not os.path.exists(path):
        return
    keep = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in keep:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _to_float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
