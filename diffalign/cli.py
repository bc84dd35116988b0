"""The ``diffalign`` command line: ``diffalign <command> [args]``.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
``COMMANDS`` maps command names to those modules, so adding a command is one entry here.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("diffalign.demo", "sample the embedded shapes-sd pipeline on held-out prompts and judge it"),
    "train": ("diffalign.train_command", "train from a recipe: diffalign train RECIPE [key=value ...]"),
    "eval": ("diffalign.eval.command", "evaluation jobs with reports: diffalign eval {geneval,hps,compare} ..."),
    "sample": ("diffalign.sample_command", "generate images from a pipeline (+ LoRA) for a prompt file"),
    "export": ("diffalign.export.command", "export a run's LoRA: diffalign export RUN_DIR --format kohya|comfyui|diffusers|merged"),
    "serve-reward": ("diffalign.serve.command", "serve a registered reward over HTTP: diffalign serve-reward NAME [--port]"),
}


def build_parser() -> argparse.ArgumentParser:
    from diffalign import __version__

    parser = argparse.ArgumentParser(
        prog="diffalign",
        description="Align image and video diffusion models with human preferences.",
    )
    parser.add_argument("--version", action="version", version=f"diffalign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
