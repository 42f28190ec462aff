"""Training recipes as data: a recipe is a TOML file (`recipes/NAME.toml`) of `TrainConfig`
settings that `train.py --recipe` runs; options given beside it override its values.

    model = "efficientnet_lite0"          # any setting of TrainConfig (training.settings)
    data = "../shared/data"
    epochs = 2

    [experts]                             # optional: source experts (detector.experts)
    branch_from = "block9_expand_conv"
    probes = ["ffhq_stylegan"]

    [experts.branch_settings]             # settings for the branch experts only
    fine_tune_epochs = 8

Where a run is written (`out`, the experts' folder) and how chatty it is are not part of a
recipe: they are options of `train.py`. A key the recipe cannot hold, or a value of the
wrong type, is a RecipeError naming the file, the key and what it must be. The card of a
run records its recipe (`runfolder.recipe_entry`): the file it came from and the resolved
settings, which `from_card` reads back.
"""
from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from detector import training, zoo

ROOT = Path(__file__).resolve().parent.parent
EXPERTS_KEYS = ("branch_from", "branch_settings", "probes")
# Settings every branch expert takes from its own source, not from the recipe or --branch-set.
BRANCH_FIXED = ("data", "out", "train_sources", "extra", "fine_tune_from", "init_from", "recipe")


class RecipeError(ValueError):
    """A recipe key that is not a setting, or a value of the wrong type."""


@dataclass
class Recipe:
    """A parsed recipe: TrainConfig settings, and the experts table (None: a plain run)."""
    settings: dict
    experts: dict | None = None
    file: str | None = None


def field_types() -> dict[str, type]:
    """Every TrainConfig field -> its type, None left out: int, float, bool, str, list or dict."""
    hints = typing.get_type_hints(training.TrainConfig)
    kinds = {}
    for f in fields(training.TrainConfig):
        hint = hints[f.name]
        base = next(a for a in (typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,))
                    if a is not type(None))
        kinds[f.name] = typing.get_origin(base) or base
    return kinds


KINDS = field_types()
WHAT = {int: "a whole number", float: "a number", bool: "true or false", str: "text", list: "a list of names",
        dict: "a table"}
SETTINGS = tuple(name for name in KINDS if name not in training.NOT_SETTINGS)
BRANCH_SETTINGS = tuple(name for name in KINDS if name not in BRANCH_FIXED)


def check_value(key: str, value, where: str):
    """`value` for the setting `key`, checked against the field's type (an int is taken for
    a float); RecipeError otherwise."""
    kind = KINDS[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = (isinstance(value, list) and all(isinstance(v, str) for v in value) if kind is list
          else isinstance(value, kind) and (kind is bool or not isinstance(value, bool)))
    if not ok:
        raise RecipeError(f"{where}: {key} must be {WHAT[kind]}, not {value!r}")
    if key == "model" and value not in zoo.REGISTRY:
        raise RecipeError(f"{where}: model {value!r} is not in the zoo ({', '.join(sorted(zoo.REGISTRY))})")
    return value


def parse_text(key: str, text: str, where: str):
    """A setting given as text (`--branch-set KEY=VALUE`) -> its field's type."""
    kind = KINDS[key]
    try:
        value = (int(text) if kind is int else float(text) if kind is float
                 else text.lower() in ("1", "true", "yes") if kind is bool else text.split(",") if kind is list
                 else text)
    except ValueError:
        raise RecipeError(f"{where}: {key} must be {WHAT[kind]}, not {text!r}") from None
    return check_value(key, value, where)


def _check_table(table: dict, allowed: tuple[str, ...], where: str, why: str) -> dict:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise RecipeError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} ({why}; "
                          f"known: {', '.join(allowed)})")
    return {k: check_value(k, v, where) for k, v in table.items()}


def parse(table: dict, where: str = "recipe", file: str | None = None) -> Recipe:
    """A recipe's table (what TOML gives) -> Recipe; RecipeError for an unknown key or a
    value of the wrong type."""
    table = dict(table)
    experts = table.pop("experts", None)
    settings = _check_table(table, SETTINGS, where, "a recipe holds TrainConfig settings; where a run is "
                                                    "written is train.py's --out")
    if experts is not None:
        if not isinstance(experts, dict):
            raise RecipeError(f"{where}: experts must be a table ([experts]), not {experts!r}")
        unknown = sorted(set(experts) - set(EXPERTS_KEYS))
        if unknown:
            raise RecipeError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in "
                              f"[experts] (known: {', '.join(EXPERTS_KEYS)})")
        experts = dict(experts)
        if not isinstance(experts.get("branch_from", ""), str):
            raise RecipeError(f"{where}: experts.branch_from must be a layer name, not {experts['branch_from']!r}")
        probes = experts.get("probes", [])
        if not (isinstance(probes, list) and all(isinstance(p, str) for p in probes)):
            raise RecipeError(f"{where}: experts.probes must be a list of source names, not {probes!r}")
        branch = experts.get("branch_settings", {})
        if not isinstance(branch, dict):
            raise RecipeError(f"{where}: experts.branch_settings must be a table, not {branch!r}")
        experts["branch_settings"] = _check_table(branch, BRANCH_SETTINGS, f"{where} [experts.branch_settings]",
                                                  "a branch expert takes these from its own source")
    return Recipe(settings, experts, file)


def load(path: str | Path) -> Recipe:
    """Read and check a recipe file."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    return parse(table, str(path), file_name(path))


def file_name(path: str | Path) -> str:
    """How a card names a recipe file: relative to the repository when it lies inside it
    (`recipes/NAME.toml`), else its name alone (no absolute paths in a card)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def config(recipe: Recipe, **overrides) -> training.TrainConfig:
    """The TrainConfig a recipe gives, with `overrides` (e.g. train.py's options) on top."""
    return training.TrainConfig(**{**recipe.settings, **overrides})


def from_card(card: dict) -> Recipe:
    """The recipe a card recorded (`runfolder.recipe_entry`), checked as a recipe file is."""
    entry = card.get("recipe") or {}
    table = dict(entry.get("settings") or {})
    if entry.get("experts") is not None:
        table["experts"] = entry["experts"]
    return parse(table, f"{card.get('name', 'card')}: recipe", entry.get("file"))
