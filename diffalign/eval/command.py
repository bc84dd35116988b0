"""``diffalign eval {geneval,hps,compare,video}``: evaluation jobs that write JSON results and reports."""
from __future__ import annotations

import argparse
import importlib

# sub-command -> (module with add_arguments / run, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "geneval": ("diffalign.eval.geneval.command", "GenEval (compositional prompts) with a pluggable detector"),
    "hps": ("diffalign.eval.hps_benchmark", "the HPSv2 benchmark: HPSv2 / HPSv2.1 per style and mean"),
    "compare": ("diffalign.eval.compare", "win-rate of pipeline A over B per reward, with a Wilson interval"),
    "video": ("diffalign.eval.video.command", "moving-shapes video prompts with the temporal judge, mp4s and a report"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="eval_command", metavar="JOB", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sp)
        sp.set_defaults(_eval_module=module)


def run(args: argparse.Namespace) -> int:
    return int(args._eval_module.run(args) or 0)
