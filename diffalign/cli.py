"""The ``diffalign`` command line: ``diffalign <command> [args]``.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
``COMMANDS`` maps command names to those modules, so adding a command is one entry here.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

#: set to 1 (or pass ``--debug``) to see the full traceback of a user error.
DEBUG_ENV = "DIFFALIGN_DEBUG"

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("diffalign.demo_video", "align the embedded shapes-sd (or with 'video', shapes-cogvideox) pipeline, judged before/after"),
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
    debug_help = f"show the full traceback of an error (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip().splitlines()[0])
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(args._module.run(args) or 0)
    except user_errors() as e:
        if debug:
            raise
        print(f"diffalign {args.command}: error: {one_line(e)} (--debug shows the traceback)", file=sys.stderr)
        return 2 if isinstance(e, user_errors()[:1]) else 1


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix (a config, a data set, a missing file or weights): the
    command line prints them as one line; the first (config errors) exit 2, the others 1."""
    from diffalign.config import ConfigError
    from diffalign.data.errors import DatasetError
    from diffalign.data.media import MediaError
    from diffalign.registry import UnknownNameError

    return (ConfigError, DatasetError, MediaError, UnknownNameError, FileNotFoundError)


def one_line(error: BaseException) -> str:
    """The error's message on one line; a data error standing for several rows gives the count and the first."""
    problems = getattr(error, "problems", None) or []
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    head = " ".join(text.splitlines()[0].split()) if text.strip() else type(error).__name__
    first = " ".join(problems[0].split()) if problems else ""
    if len(problems) > 1:
        head = f"{head.rstrip(':')} ({len(problems)} problems; first: {first})"
    elif first and first != head:
        head = f"{head.rstrip(':')}: {first}"
    return head


if __name__ == "__main__":
    raise SystemExit(main())
