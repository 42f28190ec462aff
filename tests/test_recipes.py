"""Recipes as data (`detector.recipes`, `recipes/NAME.toml`): train.py's options are made from
TrainConfig's fields, a recipe file gives the same TrainConfig as the equivalent options, a
key a recipe cannot hold fails with its name, every shipped card names the recipe that made
it, and a new run's card records its resolved recipe."""
from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from detector import recipes, runfolder, store, training
from detector.training import TrainConfig

sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402

CARDS = sorted(REPO_ROOT.glob("models/*/card.json"))

# Every option train.py had when its parser was written by hand: scripts and docs use them.
OLD_FLAGS = ("--model --data --out --epochs --fine-tune-epochs --img-size --batch-size --lr --fine-tune-lr "
             "--fine-tune-from --kfold --seed --no-augment --aug-strength --no-cache-features --cache-views "
             "--balance-sources --patience --no-pretrained --max-train --self-blend --train-sources --ema "
             "--label-smoothing --average-last --mixup --init-from --experts --branch-from --branch-set "
             "--probes --experts-dir").split()

# A run touching every kind of field: ints, floats, yes/no both ways, a layer name, a list.
FLAGS = ["--model", "efficientnet_lite0", "--data", "some/data", "--epochs", "2", "--fine-tune-epochs", "7",
         "--img-size", "256", "--batch-size", "16", "--lr", "0.002", "--fine-tune-lr", "3e-4",
         "--fine-tune-from", "block5_expand_conv", "--seed", "7", "--no-augment", "--aug-strength", "0.5",
         "--cache-views", "5", "--balance-sources", "1", "--patience", "4", "--max-train", "300",
         "--self-blend", "0.5", "--train-sources", "alpha", "beta", "--ema", "0.998", "--label-smoothing", "0.1",
         "--average-last", "3", "--mixup", "0.4", "--no-pretrained"]
TOML = """
model = "efficientnet_lite0"
data = "some/data"
epochs = 2
fine_tune_epochs = 7
img_size = 256
batch_size = 16
learning_rate = 0.002
fine_tune_lr = 3e-4
fine_tune_from = "block5_expand_conv"
seed = 7
augment = false
aug_strength = 0.5
cache_views = 5
balance_sources = 1          # an integer is taken for a float setting
patience = 4
max_train = 300
self_blend = 0.5
train_sources = ["alpha", "beta"]
ema = 0.998
label_smoothing = 0.1
average_last = 3
mixup = 0.4
pretrained = false
"""


def _resolve(argv):
    return train.resolve(train.parse_args(argv))


def _write(tmp_path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_one_option_per_config_field_and_the_old_flags_kept():
    """Each TrainConfig field but `extra` (the card's free-form additions) is exactly one
    option of train.py, whose value lands in that field; every option the hand-written parser
    had is still there."""
    parser = train.build_parser()
    by_dest = {}
    for action in parser._actions:
        by_dest.setdefault(action.dest, []).append(action)
    names = [f.name for f in fields(TrainConfig)]
    assert [n for n in names if not any(a.dest == n for a in parser._actions)] == ["extra"]
    assert all(len(by_dest[n]) == 1 for n in names if n != "extra")
    flags = {s for a in parser._actions for s in a.option_strings}
    assert [f for f in OLD_FLAGS if f not in flags] == []


def test_old_flags_give_the_config_the_hand_written_parser_gave():
    """The options map onto TrainConfig as train.py's hand-written copy did (--lr ->
    learning_rate, --no-augment -> augment False, ...) and unset ones keep its defaults."""
    cfg, experts = _resolve(FLAGS + ["--out", "x/run"])
    assert experts is None
    assert cfg == TrainConfig(model="efficientnet_lite0", data="some/data", out="x/run", epochs=2,
                              fine_tune_epochs=7, img_size=256, batch_size=16, learning_rate=0.002,
                              fine_tune_lr=3e-4, fine_tune_from="block5_expand_conv", seed=7, augment=False,
                              aug_strength=0.5, cache_views=5, balance_sources=1.0, patience=4, max_train=300,
                              self_blend=0.5, train_sources=["alpha", "beta"], ema=0.998, label_smoothing=0.1,
                              average_last=3, mixup=0.4, pretrained=False)
    plain, _ = _resolve(["--model", "custom_cnn", "--data", "d"])
    assert plain == TrainConfig(model="custom_cnn", data="d", out="runs/custom_cnn")


def test_a_recipe_gives_the_same_config_as_the_flags(tmp_path):
    """A recipe file and the equivalent options give one TrainConfig (only the recorded recipe
    name differs), and options given beside a recipe override its values."""
    path = _write(tmp_path, TOML)
    from_flags, _ = _resolve(FLAGS + ["--out", "o"])
    from_recipe, _ = _resolve(["--recipe", str(path), "--out", "o"])
    assert from_recipe.recipe == "r.toml" and from_flags.recipe is None  # a file outside the repo: its name
    assert training.settings(from_recipe) == training.settings(from_flags)
    assert from_recipe == TrainConfig(**{**training.settings(from_flags), "out": "o", "recipe": "r.toml"})
    assert isinstance(from_recipe.balance_sources, float)

    over, _ = _resolve(["--recipe", str(path), "--epochs", "9", "--augment", "--train-sources", "gamma"])
    assert (over.epochs, over.augment, over.train_sources, over.fine_tune_epochs) == (9, True, ["gamma"], 7)
    assert over.out == "runs/r"  # default run folder: the recipe's name


def test_unknown_or_mistyped_recipe_keys_fail_clearly(tmp_path):
    """A misspelt setting, a where-to-write key, a value of the wrong type or an unknown
    [experts] key is an error naming the key, never silently ignored."""
    cases = {
        'model = "custom_cnn"\ndata = "d"\nepoch = 3\n': ("unknown key epoch", "epochs"),
        'model = "custom_cnn"\ndata = "d"\nout = "models/x"\n': ("unknown key out", "--out"),
        'model = "custom_cnn"\ndata = "d"\nepochs = "five"\n': ("epochs must be a whole number", "'five'"),
        'model = "custom_cnn"\ndata = "d"\naugment = 1\n': ("augment must be true or false",),
        'model = "custom_cnn"\ndata = "d"\nepochs = 2.5\n': ("epochs must be a whole number",),
        'model = "no_such_net"\ndata = "d"\n': ("not in the zoo",),
        'model = "custom_cnn"\n[experts]\nprobe = ["a"]\n': ("unknown key probe in [experts]",),
        'model = "custom_cnn"\n[experts.branch_settings]\ndata = "x"\n': ("unknown key data",),
        'model = "custom_cnn"\nepochs = [\n': ("not valid TOML",),
    }
    for text, needles in cases.items():
        path = _write(tmp_path, text)
        with pytest.raises(recipes.RecipeError) as err:
            recipes.load(path)
        assert str(path) in str(err.value) and all(n in str(err.value) for n in needles), (text, str(err.value))
        with pytest.raises(SystemExit, match="r.toml"):  # train.py stops before any training
            _resolve(["--recipe", str(path), "--data", "d"])
    with pytest.raises(SystemExit, match="no such recipe"):
        _resolve(["--recipe", str(tmp_path / "missing.toml")])
    with pytest.raises(SystemExit, match="--data"):  # neither the options nor the recipe name the data
        _resolve(["--recipe", str(_write(tmp_path, 'model = "custom_cnn"\n'))])


def test_an_experts_recipe_turns_experts_on_and_options_add_to_it(tmp_path):
    """An [experts] table is train.py --experts with its branch settings and probes;
    --branch-set adds to the recipe's branch settings and --probes replaces its list."""
    path = _write(tmp_path, 'model = "efficientnet_lite0"\ndata = "d"\n[experts]\nprobes = ["b"]\n'
                            '[experts.branch_settings]\nepochs = 1\ncache_views = 5\n')
    cfg, experts = _resolve(["--recipe", str(path)])
    assert experts == {"branch_from": None, "branch_settings": {"epochs": 1, "cache_views": 5}, "probes": ["b"]}
    _, experts = _resolve(["--recipe", str(path), "--branch-set", "epochs=3", "augment=false", "--probes", "c",
                           "--branch-from", "block5_expand_conv"])
    assert experts == {"branch_from": "block5_expand_conv", "probes": ["c"],
                       "branch_settings": {"epochs": 3, "cache_views": 5, "augment": False}}
    assert _resolve(["--model", "custom_cnn", "--data", "d"])[1] is None
    with pytest.raises(SystemExit, match="needs --experts"):
        _resolve(["--model", "custom_cnn", "--data", "d", "--probes", "b"])


@pytest.mark.skipif(not CARDS, reason="no shipped models")
@pytest.mark.parametrize("card_path", CARDS, ids=[p.parent.name for p in CARDS])
def test_each_shipped_card_names_the_recipe_that_made_it(card_path):
    """The card's recipe file exists, parses, and gives every setting the card recorded for
    the run (an experts card: its branch cut, branch settings and probed sources too)."""
    card = store.validate_card(json.loads(card_path.read_text()), card_path)
    name = card["recipe"]["file"]
    assert name == f"recipes/{card_path.parent.name}.toml" and (REPO_ROOT / name).is_file()
    recipe = recipes.load(REPO_ROOT / name)
    assert recipe.file == name
    settings = training.settings(recipes.config(recipe, out="unused"))
    recorded = card["training"]
    differ = {k: (v, recorded[k]) for k, v in settings.items() if k in recorded and v != recorded[k]}
    assert not differ, f"{name} differs from what {card_path} recorded (recipe, card): {differ}"
    assert {"model", "data", "epochs", "img_size"} <= set(recorded)
    if "branch_settings" in recorded:
        assert recipe.experts is not None
        assert recipe.experts["branch_settings"] == recorded["branch_settings"]
        assert recipe.experts["branch_from"] == recorded["branch_from"]
        assert sorted(recipe.experts["probes"]) == sorted(recorded.get("probes") or {})
    else:
        assert recipe.experts is None


def test_every_recipe_file_is_a_shipped_models():
    """recipes/ holds the shipped models' recipes, each parsing: no orphan or broken file."""
    files = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "recipes").glob("*.toml"))
    named = sorted(json.loads(p.read_text())["recipe"]["file"] for p in CARDS)
    assert files == named
    for f in files:
        assert recipes.load(REPO_ROOT / f).settings["model"]


def test_a_new_run_records_its_resolved_recipe(tiny_run):
    """A run's card holds its resolved settings as a recipe (no None values: TOML has none),
    which reads back into the TrainConfig it was trained with; a run started without a recipe
    file records none."""
    card = store.read_card(tiny_run)
    entry = card["recipe"]
    assert entry["file"] is None and "experts" not in entry
    assert None not in entry["settings"].values()
    assert entry["settings"] == {k: v for k, v in card["training"].items()
                                 if k in recipes.SETTINGS and v is not None}
    assert (entry["settings"]["model"], entry["settings"]["img_size"], entry["settings"]["epochs"]) == \
        ("custom_cnn", 32, 1)
    back = recipes.config(recipes.from_card(card), out=str(tiny_run))
    assert training.settings(back) == {k: card["training"][k] for k in recipes.SETTINGS}


def test_recipe_entry_shape_and_old_cards(tmp_path):
    """runfolder.recipe_entry drops None values and keeps the experts table; a card with a
    recipe validates and reads back, and one without (older cards) still does."""
    entry = runfolder.recipe_entry("recipes/x.toml", {"model": "custom_cnn", "img_size": None, "epochs": 2},
                                   {"branch_from": None, "branch_settings": {"epochs": 1}, "probes": []})
    assert entry == {"file": "recipes/x.toml", "settings": {"model": "custom_cnn", "epochs": 2},
                     "experts": {"branch_settings": {"epochs": 1}, "probes": []}}
    assert recipes.from_card({"recipe": entry}).experts == {"branch_settings": {"epochs": 1}, "probes": []}
    runfolder.write_card(tmp_path, {"name": "x", "recipe": entry})
    assert store.validate_card(runfolder.read_card(tmp_path))["recipe"] == entry
    with pytest.raises(store.CardError, match="recipe"):
        store.validate_card({"recipe": "recipes/x.toml"})
    (tmp_path / runfolder.CARD).write_text(json.dumps({"name": "old", "threshold": 0.5}))
    assert "recipe" not in store.validate_card(runfolder.read_card(tmp_path))
    with pytest.raises(recipes.RecipeError, match="unknown key"):
        recipes.from_card({"recipe": {"file": None, "settings": {"model": "custom_cnn", "out": "x"}}})


@pytest.mark.slow
def test_train_py_runs_a_recipe_and_the_card_names_it(tiny_dataset, tmp_path, capsys):
    """train.py --recipe trains what the file says (options beside it on top) and the card
    records the file and the resolved settings."""
    path = _write(tmp_path, f'model = "custom_cnn"\ndata = "{tiny_dataset.as_posix()}"\nimg_size = 32\n'
                            'epochs = 1\nbatch_size = 8\n', "tiny.toml")
    out = tmp_path / "run"
    train.main(["--recipe", str(path), "--out", str(out), "--max-train", "24", "--verbose", "0"])
    assert f'"out": "{out}"' in capsys.readouterr().out
    card = store.read_card(out)
    assert card["recipe"]["file"] == "tiny.toml"
    assert card["recipe"]["settings"] == {**{k: card["training"][k] for k in recipes.SETTINGS
                                             if card["training"][k] is not None}}
    assert (card["recipe"]["settings"]["max_train"], card["recipe"]["settings"]["img_size"]) == (24, 32)
