"""The model card written with every final output: ``OUT/README.md``.

YAML front matter with what the Hub and diffusers read (``base_model``, ``library_name``,
``license``, ``tags``, ``pipeline_tag``), then the run's evaluation results (first and last value of
every ``eval_*`` / ``gold_*`` stat in ``logs/metrics.jsonl``), a usage snippet and the training config.
"""
from __future__ import annotations

import json
import os
from typing import Any

CARD_FILE = "README.md"
_PIPELINE_TAGS = {"cogvideox": "text-to-video"}


def eval_results(output_dir: str) -> dict[str, tuple[int, float, int, float]]:
    """``stat -> (first step, first value, last step, last value)`` for the run's ``eval_*`` and
    ``gold_*`` stats (empty when the run logged none)."""
    path = os.path.join(output_dir, "logs", "metrics.jsonl")
    found: dict[str, tuple[int, float, int, float]] = {}
    if not os.path.isfile(path):
        return found
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for key, value in row.items():
                if (key.startswith("eval_") or key.startswith("gold_")) and isinstance(value, (int, float)):
                    first = found.get(key, (row["step"], float(value)))[:2]
                    found[key] = (*first, row["step"], float(value))
    return found


def _is_hub_id(name: str) -> bool:
    return bool(name) and not os.path.exists(name) and name.count("/") == 1 and not name.startswith((".", "/"))


def model_card(config: dict[str, Any], output_dir: str, *, license: str | None = None, lora: bool = True) -> str:
    """The card's text for a run with ``config`` (the saved training config as a dict)."""
    import yaml

    model = config.get("model", {}) or {}
    base, family = str(model.get("pretrained", "")), model.get("family") or ""
    trainer = str(config.get("trainer", ""))
    tags = ["diffusers", "diffalign", _PIPELINE_TAGS.get(family, "text-to-image")]
    tags += [t for t in (f"diffalign-{trainer}" if trainer else "", family, "lora" if lora else "") if t]
    meta: dict[str, Any] = {}
    if _is_hub_id(base):
        meta["base_model"] = base
    meta.update(library_name="diffusers", license=license or "other", tags=tags,
                pipeline_tag=_PIPELINE_TAGS.get(family, "text-to-image"))
    name = os.path.basename(os.path.abspath(output_dir))
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# {name}", "",
             f"{'A LoRA for' if lora else 'A fine-tune of'} `{base}` trained with diffalign's `{trainer}` trainer "
             f"for {config.get('max_steps', '?')} steps.", ""]
    results = eval_results(output_dir)
    lines += ["## Evaluation results", ""]
    if results:
        lines += ["| metric | first step | first | last step | last |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {s0} | {v0:.4g} | {s1} | {v1:.4g} |" for k, (s0, v0, s1, v1) in sorted(results.items())]
    else:
        lines.append("The run logged no evaluation metrics.")
    load = (f'pipe.load_lora_weights("{name}")' if lora else "")
    lines += ["", "## Usage", "", "```python", "from diffusers import DiffusionPipeline", "",
              f'pipe = DiffusionPipeline.from_pretrained("{base if lora else name}")'] + ([load] if load else [])
    lines += ["```", "", "## Training config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def write_model_card(config: dict[str, Any], output_dir: str, **kwargs) -> str:
    """Write ``output_dir/README.md``; return its path."""
    path = os.path.join(output_dir, CARD_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(model_card(config, output_dir, **kwargs))
    return path
