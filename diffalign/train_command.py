"""Train from a recipe: ``diffalign train RECIPE [key=value ...]``.

RECIPE is a YAML file or the name of a recipe shipped in ``diffalign/recipes`` (``diffalign train
--list`` shows them). ``key=value`` overrides any config field with dotted paths
(``optim.lr=1e-5 lora.rank=16 data.path=/data/pickapic``). Works the same under
``accelerate launch -m diffalign train RECIPE``.
"""
from __future__ import annotations

import argparse
import os

RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")
ACCELERATE_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accelerate_configs")


def recipe_path(name: str) -> str:
    if os.path.exists(name):
        return name
    candidate = os.path.join(RECIPES_DIR, name if name.endswith(".yaml") else name + ".yaml")
    if os.path.exists(candidate):
        return candidate
    raise FileNotFoundError(f"recipe {name!r} is neither a file nor a shipped recipe; shipped: {', '.join(list_recipes())}")


def list_recipes() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(RECIPES_DIR) if f.endswith(".yaml"))


def list_accelerate_configs() -> list[tuple[str, str]]:
    """The shipped accelerate configs as (name, path): ``accelerate launch --config_file PATH ...``."""
    return [(f[:-5], os.path.join(ACCELERATE_CONFIGS_DIR, f))
            for f in sorted(os.listdir(ACCELERATE_CONFIGS_DIR)) if f.endswith(".yaml")]


def trainer_name(path: str) -> str:
    from diffalign.config import read_recipe

    return str(read_recipe(path).get("trainer", "offline"))


def trainer_class(path: str, overrides: list[str]):
    """The trainer class the recipe (or a ``trainer=`` override) names; an unknown name is a
    one-line ``ConfigError`` saying where it was given and the choices."""
    from diffalign.config import COMMAND_LINE, ConfigError
    from diffalign.registry import UnknownNameError
    from diffalign.train import get_trainer_class

    given = [o.split("=", 1)[1] for o in overrides if o.startswith("trainer=")]
    name, source = (given[-1], COMMAND_LINE) if given else (trainer_name(path), path)
    try:
        return get_trainer_class(name)
    except UnknownNameError as e:
        raise ConfigError(f"{source}: trainer: {e}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe YAML path or shipped recipe name")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    p.add_argument("--list-accelerate", action="store_true",
                   help="list the shipped accelerate configs (name and path, for accelerate launch --config_file) and exit")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "list_accelerate", False):
        print("\n".join(f"{name}\t{path}" for name, path in list_accelerate_configs()))
        return 0
    if args.list or not args.recipe:
        print("\n".join(list_recipes()))
        return 0 if args.list else 2
    from diffalign.config import load_config

    path = recipe_path(args.recipe)
    cls = trainer_class(path, args.overrides)  # a ConfigError is one line (diffalign.cli)
    cfg = load_config(cls.config_class, path, args.overrides)
    result = cls(cfg).train()
    print(f"done: {result.steps} steps; outputs in {result.output_dir}"
          + (f"; LoRA {result.lora_path}" if result.lora_path else "")
          + (f"; pipeline {result.pipeline_path}" if result.pipeline_path else ""))
    return 0
