"""Train any model of the zoo on a folder of real/ and fake/ images (or a train/val/test root)
and write the run folder the dashboard reads. A thin CLI over detector.training.

    python train.py --model efficientnet_lite0 --data ../shared/data --out models/efficientnet_lite0
    python train.py --recipe recipes/efficientnet_lite0.toml --out models/efficientnet_lite0

A recipe (recipes/NAME.toml, detector/recipes.py) holds the settings of a run; options given
beside it override its values. Every TrainConfig field is an option (detector/training.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import MISSING, fields
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _default_text(f) -> str:
    if isinstance(f.default, bool):
        return f" (default: --{'' if f.default else 'no-'}{f.name.replace('_', '-')})"
    return "" if f.default is None or f.default is MISSING else f" (default: {f.default})"


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, from the field's type, default and metadata (help,
    flags, metavar): `--field-name` unless the field names its flags; yes/no fields get
    `--x` and `--no-x`. Every default is left out of the namespace (argparse.SUPPRESS), so
    only the options given override a recipe."""
    from detector import recipes
    from detector.training import TrainConfig

    for f in fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        kind = recipes.KINDS[f.name]
        flags = f.metadata.get("flags") or (f"--{f.name.replace('_', '-')}",)
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata["help"] + _default_text(f)}
        if "metavar" in f.metadata:
            kw["metavar"] = f.metadata["metavar"]
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]()
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind is list:
            kw["nargs"] = "+"
        else:
            kw["type"] = kind
        p.add_argument(*flags, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p)
    p.add_argument("--experts", action="store_true",
                   help="source experts: a trunk expert on the largest source, a branch per other source "
                        "fine-tuned from --branch-from on that source alone, and a router, assembled into "
                        "one model (needs a MANIFEST.csv 'source' column); a recipe's [experts] table turns it on")
    p.add_argument("--branch-from", metavar="LAYER",
                   help="with --experts: first layer of each source's own branch (default: the recipe's, else "
                        "where the model's fine-tuning starts, e.g. block9_expand_conv for efficientnet_lite0)")
    p.add_argument("--branch-set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="with --experts: settings for the branch experts only, e.g. epochs=1 "
                        "fine_tune_epochs=8 cache_views=5 (a small source's expert is cheap to train longer), "
                        "or model=efficientnet_lite0_pos (a zoo model with the same trunk); on top of the "
                        "recipe's [experts.branch_settings]")
    p.add_argument("--probes", nargs="+", metavar="SOURCE",
                   help="with --experts: blend these sources' branches with position-aware linear probes "
                        "on frozen trunk maps (for aligned portraits, e.g. ffhq_stylegan; default: the recipe's)")
    p.add_argument("--experts-dir", metavar="DIR",
                   help="with --experts: where the expert runs are kept and reused (default: runs/<out name>_experts)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def parse_settings(pairs: list[str]) -> dict:
    """KEY=VALUE pairs -> TrainConfig overrides for the branch experts, each value converted
    to its field's type."""
    from detector import recipes

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in recipes.BRANCH_SETTINGS:
            raise SystemExit(f"--branch-set: '{pair}' is not KEY=VALUE with KEY a training setting "
                             "(e.g. epochs=1 fine_tune_epochs=8 cache_views=5)")
        try:
            settings[key] = recipes.parse_text(key, value, "--branch-set")
        except recipes.RecipeError as exc:
            raise SystemExit(str(exc)) from None
    return settings


def resolve(args: argparse.Namespace):
    """The run train.py was asked for: (TrainConfig, experts or None). The dataclass defaults,
    then the recipe's values, then the options given; experts is a dict of train_experts'
    arguments (branch_from, branch_settings, probes) when --experts or the recipe asks for them."""
    from detector import recipes
    from detector.training import TrainConfig

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    try:
        recipe = recipes.load(given["recipe"]) if given.get("recipe") else recipes.Recipe({})
    except recipes.RecipeError as exc:
        raise SystemExit(str(exc)) from None
    merged = {**recipe.settings, **given}
    missing = [f"--{k}" for k in ("model", "data") if k not in merged]
    if missing:
        raise SystemExit(f"train.py: {' and '.join(missing)} required (as options or in a --recipe)")
    if given.get("recipe"):
        merged["recipe"] = recipe.file
    merged.setdefault("out", f"runs/{Path(given['recipe']).stem if given.get('recipe') else merged['model']}")
    cfg = TrainConfig(**merged)
    with_experts = args.experts or recipe.experts is not None
    if args.probes and not with_experts:
        raise SystemExit("--probes blends a source's branch: it needs --experts")
    if not with_experts:
        return cfg, None
    table = recipe.experts or {}
    return cfg, {"branch_from": args.branch_from or table.get("branch_from"),
                 "branch_settings": {**table.get("branch_settings", {}), **parse_settings(args.branch_set)},
                 "probes": args.probes if args.probes is not None else table.get("probes", [])}


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cfg, experts = resolve(args)
    if experts is not None:
        from detector.experts import train_experts

        card = train_experts(cfg, experts["branch_from"],
                             args.experts_dir or Path("runs") / f"{Path(cfg.out).name}_experts",
                             branch_settings=experts["branch_settings"], probe_sources=experts["probes"])
    else:
        from detector.training import train

        card = train(cfg)
    test = card["metrics"].get("test") or card["metrics"]["val"]
    summary = {k: test.get(k) for k in ("n", "accuracy", "auc", "f1", "eer")}
    summary["per_source"] = {s: {k: v.get(k) for k in ("n", "accuracy", "auc")}
                             for s, v in (test.get("per_source") or {}).items()}
    print(json.dumps({"out": cfg.out, "threshold": card["threshold"], "seconds": card["training"]["total_seconds"],
                      "test": summary}, indent=2))


if __name__ == "__main__":
    main()
