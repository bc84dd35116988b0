"""Export a run's LoRA: ``diffalign export RUN_DIR --format kohya|comfyui|diffusers|merged [--single-file] [--out PATH] [--push REPO_ID]``.

RUN_DIR is a run's output folder or one of its ``checkpoints/step-N`` folders. LoRA formats write a
file (default ``RUN_DIR/exports/lora_<format>.safetensors``), ``merged`` a full pipeline folder
(default ``RUN_DIR/exports/merged``). ``--push REPO_ID`` uploads the export and the model card.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from diffalign.export.lora import EXPORT_FORMATS

    p.add_argument("run_dir", help="run output folder or a checkpoints/step-N folder")
    p.add_argument("--format", default="diffusers", choices=EXPORT_FORMATS, help="export format (default diffusers)")
    p.add_argument("--out", default=None, help="output file (LoRA formats, merged --single-file) or folder (merged)")
    p.add_argument("--single-file", action="store_true",
                   help="with --format merged (SD / SDXL): one original-layout .safetensors checkpoint instead of a folder")
    p.add_argument("--push", metavar="REPO_ID", default=None, help="upload the export and its model card to this Hub repo")
    p.add_argument("--public", action="store_true", help="with --push: create a public repo (default private)")
    p.add_argument("--license", default=None, help="license written in the model card (default: other)")


def finish_outputs(output_dir: str, config: dict, *, save_format: str = "diffusers", repo_id: str | None = None,
                   private: bool = True, license: str | None = None, lora: bool = True) -> list[str]:
    """After a run: the model card, the ``save_format`` export (beyond the diffusers file) and the
    upload when ``repo_id`` is set; return the paths written."""
    from diffalign.export.card import write_model_card
    from diffalign.export.hub import push_folder
    from diffalign.export.lora import export

    written = [write_model_card(config, output_dir, license=license, lora=lora)]
    if lora and save_format != "diffusers":
        written.append(export(output_dir, save_format))
    if repo_id:
        push_folder(output_dir, repo_id, private=private,
                    allow_patterns=["README.md", "*.safetensors", "exports/**", "pipeline/**", "config.yaml", "logs/*.jsonl"])
    return written


def run(args: argparse.Namespace) -> int:
    from diffalign.export.card import write_model_card
    from diffalign.export.hub import HubUploadError, push_folder
    from diffalign.export.lora import export, read_run_config

    try:
        out = export(args.run_dir, args.format, args.out, single_file=args.single_file)
        print(out)
        if args.push:
            config = read_run_config(args.run_dir)
            folder = out if os.path.isdir(out) else os.path.dirname(os.path.abspath(out))
            write_model_card(config, folder, license=args.license, lora=args.format != "merged")
            if os.path.isfile(out) and args.format not in ("diffusers", "merged"):  # the card's usage loads the diffusers file too
                shutil.copyfile(os.path.join(args.run_dir, "pytorch_lora_weights.safetensors"),
                                os.path.join(folder, "pytorch_lora_weights.safetensors"))
            print(push_folder(folder, args.push, private=not args.public))
    except (FileNotFoundError, ValueError, HubUploadError) as e:
        print(f"diffalign export: {e}", file=sys.stderr)
        return 1
    return 0
