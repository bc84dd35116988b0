"""The GenEval job: generate images in GenEval's layout (or take a folder made elsewhere), judge every
image, and write ``results.jsonl``, ``summary.json``, ``report.html`` and ``report.md``.

With several processes (``torchrun`` / ``accelerate launch``; :func:`diffalign.eval.processes.eval_state`)
the prompts are split over the processes for generation and the images for judging
(accelerate's ``split_between_processes``), the verdicts gathered in file order, and the main
process writes the outputs: the same files as one process writes (each image's seed depends only on
its index within its prompt).

``results.jsonl`` has one line per image with GenEval's own columns (``filename``, ``tag``,
``prompt``, ``correct``, ``reason``, ``metadata`` and ``details`` as JSON strings, so GenEval's
``summary_scores.py`` reads it) plus ``detections`` (kept objects with label, box, score and the
colour named for them), ``detector``, ``prompt_index`` and ``image_index``.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

from PIL import Image

from diffalign.eval.geneval import layout
from diffalign.geneval.evaluator import GenEvalEvaluator
from diffalign.geneval.summary import summarize_results

GENEVAL_SAMPLING = {"num_inference_steps": 50, "guidance_scale": 9.0}
"""GenEval's reference generation settings (4 images per prompt, seed 42)."""
IMAGES_PER_PROMPT = 4
SEED = 42


def generate_layout(
    pipe,
    rows: Sequence[Mapping],
    root: str,
    *,
    images_per_prompt: int | Sequence[int] = IMAGES_PER_PROMPT,
    seed: int = SEED,
    batch_size: int = 8,
    indices: Sequence[int] | None = None,
    **sampling: Any,
) -> None:
    """Generate ``images_per_prompt`` images per row with ``pipe`` into GenEval's layout at ``root``
    (images are written as each batch finishes); ``indices``: the rows' prompt indices (default 0, 1, ...)."""
    from diffalign.pipelines.generation import generate

    indices = list(range(len(rows))) if indices is None else list(indices)
    for i, row in zip(indices, rows):
        layout.write_metadata_record(root, i, row)

    def save(done):
        for i, k, image in done:
            image.save(layout.sample_path(root, indices[i], k))

    generate(pipe, [r["prompt"] for r in rows], images_per_prompt=images_per_prompt, seed=seed,
             batch_size=batch_size, on_batch=save, **sampling)


def _details(detections) -> str:
    """GenEval's ``details`` column: class -> [[x0, y0, x1, y1, score], ...] of the kept objects."""
    out: dict[str, list] = {}
    for d in detections:
        out.setdefault(d.label, []).append([*(float(v) for v in d.box), float(d.score)])
    return json.dumps(out)


def evaluate_layout(
    root: str,
    evaluator: GenEvalEvaluator,
    *,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    state=None,
) -> list[dict]:
    """Judge every image of a GenEval folder; one result dict per image (the ``results.jsonl`` lines).
    With ``state`` (accelerate's ``PartialState`` of several processes) each process judges its share
    of the files and every process gets all results, in file order."""
    files = layout.scan(root)
    if state is not None and state.num_processes > 1:
        from accelerate.utils import gather_object

        with state.split_between_processes(files) as mine:
            return gather_object(_judge(mine, evaluator, batch_size, progress))
    return _judge(files, evaluator, batch_size, progress)


def _judge(files, evaluator: GenEvalEvaluator, batch_size: int, progress) -> list[dict]:
    results = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        images = []
        for f in chunk:
            with Image.open(f.path) as im:
                images.append(im.convert("RGB"))
        for f, verdict in zip(chunk, evaluator.evaluate(images, [f.row for f in chunk])):
            results.append({
                "filename": f.path,
                "prompt_index": f.prompt_index,
                "image_index": f.image_index,
                "tag": f.row["tag"],
                "prompt": f.row["prompt"],
                "correct": verdict["correct"],
                "reason": verdict["reason"],
                "metadata": json.dumps(f.row),
                "details": _details(verdict["detections"]),
                "detections": [d.as_dict() for d in verdict["detections"]],
                "detector": evaluator.detector.name,
            })
        if progress is not None:
            progress(len(results), len(files))
    return results


def write_results(out: str, results: Sequence[Mapping], info: Mapping[str, Any]) -> dict:
    """Write ``results.jsonl``, ``summary.json`` (the summary plus ``info``) and the reports; return the summary."""
    from diffalign.eval.geneval.report import write_report

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.jsonl"), "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    summary = {"benchmark": "geneval", **info, **summarize_results(results)}
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    write_report(out, results, summary)
    return summary


def run(
    out: str,
    evaluator: GenEvalEvaluator,
    *,
    rows: Sequence[Mapping] | None = None,
    pipe=None,
    images_dir: str | None = None,
    images_per_prompt: int | Sequence[int] = IMAGES_PER_PROMPT,
    seed: int = SEED,
    batch_size: int = 8,
    sampling: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    state=None,
) -> dict | None:
    """The whole job. With ``pipe`` and ``rows``: generate into ``out`` (GenEval's layout) and judge;
    with ``images_dir``: judge that folder. Returns the summary written to ``out/summary.json`` (on
    the main process; None on the others when ``state`` has several processes)."""
    t0 = time.time()
    many = state is not None and state.num_processes > 1
    main = not many or state.is_main_process
    info = dict(info or {})
    if images_dir is None:
        if pipe is None or rows is None:
            raise ValueError("give either images_dir, or pipe and rows to generate from")
        stale = [n for n in os.listdir(out) if n.isdigit()] if os.path.isdir(out) else []
        if many:
            state.wait_for_everyone()  # every process looked before any writes
        if stale:
            raise FileExistsError(f"{out} already holds GenEval prompt folders ({len(stale)}); generate into a new --out "
                                  "or judge that folder with --images-only")
        sampling = dict(sampling or {})
        count = f"x {images_per_prompt}" if isinstance(images_per_prompt, int) else f"({sum(images_per_prompt)} in all)"
        if main:
            log(f"generating {len(rows)} prompts {count} images into {out}")
        if many:
            with state.split_between_processes(list(range(len(rows)))) as mine:
                counts = images_per_prompt if isinstance(images_per_prompt, int) else [images_per_prompt[i] for i in mine]
                generate_layout(pipe, [rows[i] for i in mine], out, images_per_prompt=counts, seed=seed,
                                batch_size=batch_size, indices=mine, **sampling)
            state.wait_for_everyone()
        else:
            generate_layout(pipe, rows, out, images_per_prompt=images_per_prompt, seed=seed, batch_size=batch_size, **sampling)
        info["generation"] = {**info.get("generation", {}), "images_per_prompt": images_per_prompt if isinstance(images_per_prompt, int) else list(images_per_prompt),
                              "seed": seed, **sampling}
        images_dir = out
    info["images_dir"] = os.path.abspath(images_dir)
    if main:
        log(f"judging {images_dir} ({evaluator.label})")
    results = evaluate_layout(images_dir, evaluator, batch_size=max(batch_size, 1), state=state)
    if not main:
        return None
    info["processes"] = state.num_processes if many else 1
    return write_results(out, results, {**evaluator.describe(), **info, "seconds": round(time.time() - t0, 1)})
