"""Train any model of the zoo on a folder of real/ and fake/ images (or a train/val/test root)
and write the run folder the dashboard reads. A thin CLI over detector.training.

    python train.py --model efficientnet_lite0 --data ../shared/data --out models/efficientnet_lite0
"""
from __future__ import annotations

import argparse
import json
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None) -> argparse.Namespace:
    from detector import zoo

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(zoo.REGISTRY))
    p.add_argument("--data", required=True, help="folder with real/ and fake/, or with train/ val/ test/")
    p.add_argument("--out", help="run folder (default: runs/<model>)")
    p.add_argument("--epochs", type=int, default=10, help="epochs (head phase for backbones)")
    p.add_argument("--fine-tune-epochs", type=int, default=0, help="second phase for backbones")
    p.add_argument("--img-size", type=int, help="square input size (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (head phase)")
    p.add_argument("--fine-tune-lr", type=float, default=1e-4)
    p.add_argument("--fine-tune-from", help="first layer unfrozen in phase 2 (default: the zoo's)")
    p.add_argument("--kfold", type=int, default=0, help="also train K stratified folds -> folds.csv")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--aug-strength", type=float, default=1.0)
    p.add_argument("--no-cache-features", action="store_true",
                   help="recompute the frozen base every step (slower; for augmentations the cache cannot hold)")
    p.add_argument("--cache-views", type=int, default=2, help="cached views per image (1 plain + augmented)")
    p.add_argument("--balance-sources", type=float, default=0.5, help="power of per-source reweighting; 0 = off")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--no-pretrained", action="store_true", help="random init even where ImageNet weights exist")
    p.add_argument("--max-train", type=int, help="use at most this many training images")
    p.add_argument("--self-blend", type=float, default=0.0, metavar="FRACTION",
                   help="add self-blended pseudo-fakes made from this fraction of the real training images "
                        "(Shiohara & Yamasaki 2022; helps on unseen kinds of fakes); above 1, several "
                        "differently blended copies per real image")
    p.add_argument("--train-sources", nargs="+", metavar="SOURCE",
                   help="train and validate on these sources only (MANIFEST.csv 'source'); the test split "
                        "keeps every source: a leave-one-source-out run")
    p.add_argument("--ema", type=float, default=0.0, metavar="MOMENTUM",
                   help="backbones' fine-tune phase: judge and keep an exponential moving average of the "
                        "weights (e.g. 0.998; 0 = off)")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="S",
                   help="train towards 1 - S/2 and S/2 instead of 1 and 0 (e.g. 0.1; 0 = off)")
    p.add_argument("--average-last", type=int, default=0, metavar="N",
                   help="last phase: also try the mean weights of its last N epochs (stochastic weight "
                        "averaging) and keep them if they score at least as well on val as the best epoch")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="backbones with cached features: mix each training sample's features and label "
                        "with a partner's, weight ~ Beta(ALPHA, ALPHA) (manifold mixup, e.g. 0.4; 0 = off)")
    p.add_argument("--init-from", metavar="RUN",
                   help="start from the weights of a finished run (its folder or model.keras; same architecture)")
    p.add_argument("--experts", action="store_true",
                   help="source experts: a trunk expert on the largest source, a branch per other source "
                        "fine-tuned from --branch-from on that source alone, and a router, assembled into "
                        "one model (needs a MANIFEST.csv 'source' column)")
    p.add_argument("--branch-from", metavar="LAYER",
                   help="with --experts: first layer of each source's own branch (default: where the "
                        "model's fine-tuning starts, e.g. block9_expand_conv for efficientnet_lite0)")
    p.add_argument("--branch-set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="with --experts: settings for the branch experts only, e.g. epochs=1 "
                        "fine_tune_epochs=8 cache_views=5 (a small source's expert is cheap to train longer), "
                        "or model=efficientnet_lite0_pos (a zoo model with the same trunk)")
    p.add_argument("--probes", nargs="+", default=[], metavar="SOURCE",
                   help="with --experts: blend these sources' branches with position-aware linear probes "
                        "on frozen trunk maps (for aligned portraits, e.g. ffhq_stylegan)")
    p.add_argument("--experts-dir", metavar="DIR",
                   help="with --experts: where the expert runs are kept and reused (default: runs/<out name>_experts)")
    return p.parse_args(argv)


def parse_settings(pairs: list[str]) -> dict:
    """KEY=VALUE pairs -> TrainConfig overrides, each value converted to its field's type."""
    import dataclasses

    from detector import zoo
    from detector.training import TrainConfig

    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types or key in ("data", "out", "train_sources", "extra", "fine_tune_from", "init_from"):
            raise SystemExit(f"--branch-set: '{pair}' is not KEY=VALUE with KEY a training setting "
                             "(e.g. epochs=1 fine_tune_epochs=8 cache_views=5)")
        if key == "model" and value not in zoo.REGISTRY:
            raise SystemExit(f"--branch-set: model {value!r} is not in the zoo ({', '.join(sorted(zoo.REGISTRY))})")
        kind = str(types[key])
        try:
            settings[key] = (int(value) if kind.startswith("int") else float(value) if kind.startswith("float")
                             else value.lower() in ("1", "true", "yes") if kind.startswith("bool") else value)
        except ValueError:
            raise SystemExit(f"--branch-set: {key} needs a {kind.split(' ')[0]}, not '{value}'") from None
    return settings


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from detector.training import TrainConfig, train

    cfg = TrainConfig(
        model=args.model, data=args.data, out=args.out or f"runs/{args.model}",
        epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs, img_size=args.img_size,
        batch_size=args.batch_size, learning_rate=args.lr, fine_tune_lr=args.fine_tune_lr,
        fine_tune_from=args.fine_tune_from, kfold=args.kfold, seed=args.seed,
        augment=not args.no_augment, aug_strength=args.aug_strength,
        cache_features=not args.no_cache_features, cache_views=args.cache_views,
        balance_sources=args.balance_sources, patience=args.patience,
        pretrained=not args.no_pretrained, max_train=args.max_train,
        self_blend=args.self_blend, train_sources=args.train_sources, ema=args.ema,
        average_last=args.average_last, label_smoothing=args.label_smoothing, mixup=args.mixup,
        init_from=args.init_from,
    )
    if args.probes and not args.experts:
        raise SystemExit("--probes blends a source's branch: it needs --experts")
    if args.experts:
        from pathlib import Path

        from detector.experts import train_experts

        card = train_experts(cfg, args.branch_from,
                             args.experts_dir or Path("runs") / f"{Path(cfg.out).name}_experts",
                             branch_settings=parse_settings(args.branch_set), probe_sources=args.probes)
    else:
        card = train(cfg)
    test = card["metrics"].get("test") or card["metrics"]["val"]
    summary = {k: test.get(k) for k in ("n", "accuracy", "auc", "f1", "eer")}
    summary["per_source"] = {s: {k: v.get(k) for k in ("n", "accuracy", "auc")}
                             for s, v in (test.get("per_source") or {}).items()}
    print(json.dumps({"out": cfg.out, "threshold": card["threshold"], "seconds": card["training"]["total_seconds"],
                      "test": summary}, indent=2))


if __name__ == "__main__":
    main()
