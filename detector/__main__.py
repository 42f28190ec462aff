"""Command line: `python -m detector {predict,evaluate,compare,models,audit,bench,robustness,...} ...` (see --help)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _expand(paths: list[str]) -> list[str]:
    from detector import images

    out = []
    for p in paths:
        if os.path.isdir(p):
            out += [str(f) for f in images.list_images(p)]
        else:
            out.append(p)
    return out


def cmd_predict(args) -> int:
    """One row per face (or per image when it failed): a bad file never stops the rest.
    Faces are numbered from 1, left to right, as on the Detect page. `verdict` is REAL / FAKE,
    or NO FACE / CANNOT JUDGE with the `reason` (`inference.cannot_judge`, the page's rule):
    then `p_fake` is a score the model cannot vouch for. Each row also carries the file's
    SHA-256, its provenance findings and the reconciled line (detector.evidence), and the
    chain-of-custody columns (detector.custody); --pdf also writes the PDF report,
    --stability re-scores each face under detector.stability (`unstable`)."""
    import csv

    if getattr(args, "engine", "local") == "ray":
        from detector import scale

        return scale.cmd_predict_ray(args)
    from detector import batch, custody, fastpath, inference, novelty, store

    try:
        det = inference.load_detector(args.model)
    except (store.ModelNotFoundError, store.CardError, fastpath.FastPathError) as exc:
        print(exc, file=sys.stderr)  # the reason and the way out, not a traceback
        return 1
    threshold = det.threshold if args.threshold is None else args.threshold
    block = batch.custody_block(det, threshold)
    fields = batch.fields(det, block, with_stability=args.stability)
    rows, scored, not_judged, scores = [], 0, 0, []
    for path in _expand(args.paths):
        # one way to build a file's rows, shared with the Ray engine (detector.batch)
        result = batch.file_rows(path, batch.read_bytes(path), det, threshold, gradcam=bool(args.pdf),
                                 stable=args.stability, keep_preview=bool(args.pdf))
        rows += result.rows
        scores.append(result.score)
        scored += result.scored
        not_judged += result.not_judged
    for r in rows:
        r.update(custody.columns(block))
    from detector import textsafe

    # a file named "=HYPERLINK(...).jpg" must stay text when the CSV is opened in a spreadsheet (#27)
    rows = [{k: textsafe.csv_cell(v) for k, v in r.items()} for r in rows]
    writer = csv.DictWriter(sys.stdout, fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    if args.pdf:
        from detector import pdf_report

        with open(args.pdf, "wb") as fh:
            fh.write(pdf_report.pdf_report(scores, threshold, custody=block))
    unfamiliar = int(novelty.unfamiliar([r["novelty"] for r in rows if r.get("novelty") is not None]).sum())
    print(f"{scored} of {len(set(r['path'] for r in rows))} images scored with {det.name} "
          f"(threshold {threshold:.3f})"
          + (f"; {not_judged} image(s) NO FACE / CANNOT JUDGE (see reason)" if not_judged else "")
          + (f"; {unfamiliar} face(s) unlike the training faces (novelty > 1): CANNOT JUDGE"
             if unfamiliar else ""), file=sys.stderr)
    return 0 if scored else 1


def evaluate_folder(folder: str, model=None, split: str = "test", threshold: float | None = None) -> dict:
    """Score a labelled folder with a model's serving path and compute the card metrics.
    Images are face crops (like the training data), so each is scored whole."""
    import pandas as pd

    from detector import data, evaluation, inference, novelty

    t0 = time.time()
    det = inference.load_detector(model)
    frame = data.scan(folder)
    if split and split in set(frame["split"]):
        frame = frame[frame["split"] == split].reset_index(drop=True)
    pixels = data.load_pixels(frame["path"].tolist(), det.size, progress=sys.stderr.isatty())
    scored = inference.BatchScores.concat([det.score(pixels[i:i + 64]) for i in range(0, len(pixels), 64)])
    scores = scored.p_fake
    thr = det.threshold if threshold is None else threshold
    m = evaluation.evaluate_predictions(
        pd.DataFrame({"label": frame["label"], "p_fake": scores, "source": frame["source"]}), thr)
    m["ece"] = evaluation.expected_calibration_error(frame["label"], scores)
    per_source = {s: {k: v.get(k) for k in ("n", "accuracy", "accuracy_ci", "auc", "auc_ci")}
                  for s, v in (m.get("per_source") or {}).items()}
    familiar = {}
    if scored.novelty is not None:  # how many of these images the model calls unlike its training faces
        familiar["unfamiliar"] = novelty.unfamiliar_share(scored.novelty) if len(scored.novelty) else None
        for s, v in per_source.items():
            v["unfamiliar"] = novelty.unfamiliar_share(scored.novelty[(frame["source"] == s).to_numpy()])
    return evaluation.to_jsonable({
        "model": det.name, "data": os.path.abspath(folder), "split": split, **{k: m[k] for k in (
            "n", "threshold", "accuracy", "accuracy_ci", "precision", "recall", "f1", "auc", "auc_ci", "ap", "eer", "ece",
            "confusion")},
        **familiar, "per_source": per_source, "seconds": round(time.time() - t0, 2)})


def _interval(ci) -> str:
    """' [lo, hi]' for a 95% interval, '' when there is none (one class, no images)."""
    return f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci and None not in ci else ""


def cmd_evaluate(args) -> int:
    result = evaluate_folder(args.folder, args.model, args.split, args.threshold)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']} on {result['data']} ({result['n']} images, threshold {result['threshold']:.3f})")
    for k in ("accuracy", "precision", "recall", "f1", "auc", "ap", "eer", "ece", "unfamiliar"):
        if k not in result:
            continue
        v = result[k]
        print(f"  {k:<11}{'n/a' if v is None else f'{v:.4f}'}{_interval(result.get(k + '_ci'))}")
    print("  confusion " + " ".join(f"{k}={v}" for k, v in result["confusion"].items()))
    for s, v in result["per_source"].items():
        auc = "n/a" if v["auc"] is None else f"{v['auc']:.4f}{_interval(v.get('auc_ci'))}"
        share = f" unfamiliar={v['unfamiliar']:.1%}" if "unfamiliar" in v else ""
        print(f"  {s:<16} n={v['n']:<5} accuracy={v['accuracy']:.4f}{_interval(v.get('accuracy_ci'))} "
              f"auc={auc}{share}")
    print("  (95% confidence intervals in brackets: Wilson for accuracy, DeLong for AUC)")
    print(f"  {result['seconds']} s")
    return 0


def compare_saved(models: list[str], split: str = "test", source: str | None = None) -> dict:
    """Two or more models on their stored predictions of one split (no TensorFlow): each one's
    accuracy and AUC with 95% intervals at its card's threshold, and every pair tested on the
    images both scored (`comparison.pairwise_tests`). Raises ValueError with a reason to show."""
    import pandas as pd

    from detector import comparison, evaluation, store

    if len(models) < 2:
        raise ValueError("give at least two models to compare")
    data, thresholds = {}, {}
    for given in models:
        card = store.read_card(given)
        name = card["name"] if card["name"] not in data else given  # two folders of the same name
        preds = store.read_predictions(given)
        part = preds[preds["split"] == split] if preds is not None and "split" in preds else pd.DataFrame()
        if part.empty:
            raise ValueError(f"{given}: no stored {split} predictions (predictions.csv)")
        data[name], thresholds[name] = part, float(card.get("threshold", 0.5))
    spans = comparison.intervals_frame(data, thresholds, source)
    if (spans["n"] == 0).all():
        raise ValueError(f"no {split} images of source {source!r}")
    per_model = {m: {"threshold": thresholds[m], "n": int(g["n"].iloc[0]),
                     **{row.metric: row.value for row in g.itertuples()},
                     **{f"{row.metric}_ci": [row.lo, row.hi] for row in g.itertuples()}}
                 for m, g in spans.groupby("model", sort=False)}
    pairs = comparison.pairwise_tests(data, thresholds, source)
    return evaluation.to_jsonable({"split": split, "source": source, "models": per_model,
                                   "pairs": pairs.to_dict(orient="records")})


def cmd_compare(args) -> int:
    from detector import store

    try:
        result = compare_saved(args.models, args.split, args.source)
    except (store.ModelNotFoundError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    where = f"{result['split']} split" + (f", source {result['source']}" if result["source"] else "")
    print(f"Stored predictions, {where}; 95% intervals in brackets (Wilson, DeLong)")
    for m, v in result["models"].items():
        auc = "n/a" if v["auc"] is None else f"{v['auc']:.4f}{_interval(v['auc_ci'])}"
        print(f"  {m}: n={v['n']} threshold={v['threshold']:.3f} accuracy={v['accuracy']:.4f}"
              f"{_interval(v['accuracy_ci'])} auc={auc}")
    print("Pairs (images both scored; exact McNemar on accuracy, DeLong on AUC):")
    for r in result["pairs"]:
        auc_p = "n/a" if r["auc_p"] is None else f"{r['auc_p']:.2g}"
        print(f"  {r['model_a']} vs {r['model_b']} (n={r['n']}): only A right {r['only_a']}, only B right "
              f"{r['only_b']}, accuracy p={r['accuracy_p']:.2g}; AUC A-B "
              f"{'n/a' if r['auc_diff'] is None else format(r['auc_diff'], '+.4f')}, p={auc_p} -> {r['finding']}")
    return 0


def _cell_text(cell: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{v:.0%}"
    auc = "n/a" if cell.get("auc") is None else f"{cell['auc']:.3f}{_interval(cell.get('auc_ci'))}"
    return (f"AUC {auc}, accuracy {pct(cell.get('accuracy'))}, fakes caught {pct(cell.get('recall'))}, "
            f"reals called fake {pct(cell.get('real_called_fake'))}; "
            f"caught at 10% reals flagged {pct(cell.get('caught_at_10pct_fpr'))}"
            + ("" if cell.get("fake_passed_as_real") is None else
               f"; on the Detect page: fakes marked cannot judge {pct(cell.get('cannot_judge_fake'))}, "
               f"fakes passed as real with no warning {pct(cell.get('fake_passed_as_real'))}, "
               f"reals marked cannot judge {pct(cell.get('cannot_judge_real'))}"))


def cmd_generalization(args) -> int:
    """The cross-source matrix (detector.generalization): trained on x tested on."""
    from detector import evaluation, foundation, generalization, report, store

    say = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        result = generalization.run(args.root, args.heldout, model=args.model, recipe=args.recipe,
                                    cap=args.max_train, say=say)
    except (FileNotFoundError, ValueError, store.ModelNotFoundError, foundation.FoundationUnavailable) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.record and result.get("model"):
        store.update_card(args.model, coverage=generalization.coverage(result, report.SOURCE_FAKE_KINDS))
    if args.json:
        print(json.dumps(evaluation.to_jsonable(result)))
        return 0
    print(f"{result.get('model') or 'recipe ' + result['recipe']}: trained on (rows) x tested on (columns); "
          f"95% intervals in brackets")
    for row in result["rows"]:
        print(f"{generalization.row_label(row)}  (threshold {row['threshold']:.3f})")
        for col, cell in row["cells"].items():
            kind = "held-out" if col in result["heldout"] else "LEFT OUT" if col in row["left_out"] else "seen"
            print(f"  {col:<16} {kind:<8} n={cell['n']:<5} {_cell_text(cell)}")
    print(result["explain"])
    if result.get("model"):
        summary = generalization.heldout_summary(result)
        if summary["worst_heldout_auc"] is not None:
            print(f"worst held-out AUC: {summary['worst_heldout_auc']:.3f}")
        if summary["worst_heldout_caught_at_10pct_fpr"] is not None:
            print(f"worst held-out share of fakes caught at 10% reals flagged: "
                  f"{summary['worst_heldout_caught_at_10pct_fpr']:.0%}")
        if summary["worst_heldout_passed_as_real"] is not None:
            print(f"largest held-out share of fakes passed as real with no warning: "
                  f"{summary['worst_heldout_passed_as_real']:.0%}")
    print(f"{result['seconds']} s")
    return 0


def cmd_learning_curve(args) -> int:
    from detector import learning_curve, store

    say = (lambda done, total, line: print(f"[{done}/{total}] {line}", file=sys.stderr, flush=True)) \
        if not args.json else None
    try:
        result = learning_curve.run(args.data or str(store.SHARED_DATA), args.source, args.model, args.img_size,
                                    args.sizes, args.draws, args.seed, progress=say, confine=False)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(exc, file=sys.stderr)
        return 1
    table, law = result["table"], result["law"]
    if args.json:
        from detector import evaluation

        print(json.dumps(evaluation.to_jsonable({**result, "table": table.to_dict(orient="records")})))
        return 0
    means = table.groupby("size").mean(numeric_only=True).drop(columns="draw")
    print(f"Probes on {args.source} ({result['n_train']} training images), mean AUC per subset size "
          f"({args.draws} draws below the full set):")
    print(means.round(3).to_string())
    if law is None:
        print("Val AUC reaches 1.0: nothing to extrapolate, the data are not the limit.")
        return 0
    print(f"Power law through val: 1 - AUC = {law['a']:.3g} * n^{law['b']:.2f}"
          + ("" if law["b"] < 0 else " (not climbing: more images of this kind may not help)"))
    for target, n in result["images_for"].items():
        print(f"  AUC {target}: ~{n:,.0f} training images" if np.isfinite(n) else f"  AUC {target}: never")
    return 0


def _fmt3(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def cmd_models(args) -> int:
    from detector import generalization, store

    cards = store.list_cards()
    if args.json:
        print(json.dumps([{k: c.get(k) for k in ("name", "architecture", "input_size", "params", "file_mb",
                                                 "threshold", "default")} | {"test": c.get("metrics", {}).get("test")}
                          | {"worst_heldout_auc": generalization.worst_heldout_auc(c)}
                          for c in cards]))
        return 0
    if not cards:
        print("no models in", store.MODELS_DIR)
        return 1
    if args.markdown:
        print(models_markdown(cards))
        return 0
    wn = max(len("name"), *(len(c["name"]) for c in cards)) + 2  # long names never run into the next column
    wa = max(len("arch"), *(len(c["architecture"]) for c in cards)) + 2
    print(f"{'':2}{'name':<{wn}}{'arch':<{wa}}{'size':>5}{'params':>11}{'MB':>7}{'thr':>7}{'acc':>7}{'auc':>7}"
          f"{'held-out':>10}")
    for c in cards:
        t = c.get("metrics", {}).get("test") or {}
        acc, auc = t.get("accuracy"), t.get("auc")
        print(f"{'*' if c['default'] else ' ':2}{c['name']:<{wn}}{c['architecture']:<{wa}}{c['input_size']:>5}"
              f"{c['params']:>11,}{c['file_mb']:>7.1f}{c['threshold']:>7.3f}"
              f"{acc if acc is None else format(acc, '.3f'):>7}{auc if auc is None else format(auc, '.3f'):>7}"
              f"{_fmt3(generalization.worst_heldout_auc(c)):>10}")
    print("* = default model; acc/auc: shared test split; held-out: worst AUC on generators it never saw "
          "(python -m detector generalization)")
    return 0


def _pct(v, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def models_markdown(cards: list[dict]) -> str:
    """The README's model table, from the cards: test split (overall and per source) and the
    held-out generators of each card's `coverage` (`python -m detector generalization --record`)."""
    sources = sorted({s for c in cards for s in ((c.get("metrics") or {}).get("test") or {}).get("per_source") or {}})
    head = ["model", "input", "params", "MB", "threshold", "acc", "AUC", "EER", "ECE"]
    heldout = list(dict.fromkeys(h for c in cards for h in ((c.get("coverage") or {}).get("heldout") or {})))
    head += [f"{s} acc / AUC" for s in sources]
    head += [f"held-out {h}: AUC / caught / reals called fake / fakes shown REAL, no warning" for h in heldout]
    head += ["train time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cards:
        t = (c.get("metrics") or {}).get("test") or {}
        ps = t.get("per_source") or {}
        secs = (c.get("training") or {}).get("total_seconds")
        row = [("**" + c["name"] + "** *" if c.get("default") else c["name"]), f"{c['input_size']} px",
               f"{c['params'] / 1e6:.2f} M", f"{c['file_mb']:.1f}", f"{c['threshold']:.3f}",
               _pct(t.get("accuracy")), _num(t.get("auc")), _num(t.get("eer")), _num(t.get("ece"))]
        row += [f"{_pct(ps.get(s, {}).get('accuracy'))} / {_num(ps.get(s, {}).get('auc'))}" for s in sources]
        held = (c.get("coverage") or {}).get("heldout") or {}
        row += [" / ".join([_num(held.get(h, {}).get("auc"), 2)] + [_pct(held.get(h, {}).get(k), 0) for k in
                ("recall", "real_called_fake", "fake_passed_as_real")]) for h in heldout]
        row.append("n/a" if secs is None else f"{secs / 60:.0f} min")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cmd_audit(args) -> int:
    from detector import audit, evaluation

    report = audit.audit(args.folder, max_distance=args.max_distance,  # the CLI's user may follow links
                         min_similarity=None if args.min_similarity < -1 else args.min_similarity, confine=False)
    if args.json:
        print(json.dumps(evaluation.to_jsonable(report)))
    else:
        print(audit.format_report(report))
    return 0


def cmd_bench(args) -> int:
    from detector import bench, evaluation, store

    if args.engines:  # predict's engines end to end on the same images (detector.scale, docs/performance.md)
        from detector import scale

        try:
            result = scale.bench_engines(args.engines, args.model, n=args.n, workers=tuple(args.workers))
        except scale.ScaleError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(json.dumps(evaluation.to_jsonable(result)) if args.json else scale.format_bench(result))
        return 0
    try:
        result = bench.bench([args.model] if args.model else None, repeats=args.repeats,
                             record=args.record)
    except store.ModelNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(evaluation.to_jsonable(result)))
    else:
        print(bench.format_table(result))
    return 0


def cmd_calibrate(args) -> int:
    from detector import store, training

    card = training.recalibrate(store.resolve(args.model))
    test = card["metrics"].get("test") or {}
    print(json.dumps({k: card[k] for k in ("threshold", "temperature", "bias")}
                     | {"test_accuracy": test.get("accuracy"), "test_ece": test.get("ece")}))
    return 0


def cmd_clip_expert(args) -> int:
    from detector import experts, foundation, store

    try:
        card = experts.add_clip_expert(args.model, args.data or str(store.SHARED_DATA), args.source,
                                       experts.CLIP_WEIGHT if args.weight is None else args.weight,
                                       say=lambda m: print(m, file=sys.stderr, flush=True))
    except (store.ModelNotFoundError, FileNotFoundError, ValueError, foundation.FoundationUnavailable) as exc:
        print(exc, file=sys.stderr)
        return 1
    test = card["metrics"].get("test") or {}
    print(json.dumps({"clip_expert": card["clip_expert"], "threshold": card["threshold"],
                      "test_auc": test.get("auc"), "test_per_source": {
                          s: {k: m.get(k) for k in ("accuracy", "auc", "recall")}
                          for s, m in (test.get("per_source") or {}).items()}}, indent=2))
    return 0


def cmd_export_fast(args) -> int:
    from detector import fastpath

    print(json.dumps(fastpath.export_and_verify(args.model, args.data, args.n), indent=2))
    return 0


def cmd_robustness(args) -> int:
    from detector import robustness, store

    try:
        table = robustness.run(args.model, args.data, n=args.n or None, seed=args.seed)
    except (store.ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(robustness.format_table(table))
    return 0


def cmd_novelty(args) -> int:
    from detector import novelty, store

    root = args.data or str(store.SHARED_DATA)
    try:
        summary = novelty.fit_folder(args.model, root)
    except (store.ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m detector", description="Deepfake Lab command line")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict", help="score image files or folders; one CSV row per face")
    pr.add_argument("paths", nargs="+")
    pr.add_argument("--model", help="shipped model name or a model folder (default: the default model)")
    pr.add_argument("--threshold", type=float, help="decision threshold (default: the model's calibrated one)")
    pr.add_argument("--csv", help="also write the rows to this CSV file")
    pr.add_argument("--pdf", help="also write the PDF report (summary, custody, one section per image)")
    pr.add_argument("--stability", action="store_true",
                    help="re-score each face after a JPEG q70 re-save, a 0.5x down-and-up scale and a small crop "
                         "shift; `unstable` says whether its verdict crossed the threshold (cost: `bench`)")
    pr.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local: one file after another in this process; ray: Ray Data actors, resumable "
                         "(needs requirements-scale.txt and --csv or --out; docs/scale.md)")
    pr.add_argument("--address", help="ray: a running cluster (ray://host:port, or auto); default: a local Ray "
                                      "sized to this machine, shut down afterwards")
    pr.add_argument("--workers", type=int, help="ray: scoring actors, each holding one model (default: one per CPU)")
    pr.add_argument("--batch-size", type=int, default=16, help="ray: files per batch (a killed job loses at most "
                                                               "the batches in flight)")
    pr.add_argument("--out", help="ray: write the rows to this .parquet (a folder of parts) or .csv")
    pr.set_defaults(func=cmd_predict)

    ev = sub.add_parser("evaluate", help="metrics on a labelled folder (real/ fake/, or a split root)")
    ev.add_argument("folder")
    ev.add_argument("--model")
    ev.add_argument("--split", default="test", help="split to score when FOLDER holds train/val/test")
    ev.add_argument("--threshold", type=float)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=cmd_evaluate)

    co = sub.add_parser("compare", help="two or more models on their stored predictions: 95%% intervals and "
                                        "whether each pair really differs (McNemar, DeLong)")
    co.add_argument("models", nargs="+", help="shipped model names or model folders")
    co.add_argument("--split", default="test", help="stored split to compare on (default: test)")
    co.add_argument("--source", help="only the images of this source (e.g. ffhq_stylegan)")
    co.add_argument("--json", action="store_true", help="print one JSON object")
    co.set_defaults(func=cmd_compare)

    lc = sub.add_parser("learning-curve", help="would more data of a source help? the probes' AUC vs training "
                                               "images, and a power law through it")
    lc.add_argument("--source", required=True, help="the source to study (MANIFEST.csv source), e.g. ffhq_stylegan")
    lc.add_argument("--data", help="split root (default: ../shared/data next to the repo)")
    lc.add_argument("--model", default="efficientnet_lite0", help="zoo model whose frozen trunk the probes read")
    lc.add_argument("--img-size", type=int, default=256)
    lc.add_argument("--sizes", type=int, nargs="+", help="training subset sizes (default: 1/8 .. all)")
    lc.add_argument("--draws", type=int, default=3, help="random subsets per size below the full set")
    lc.add_argument("--seed", type=int, default=0)
    lc.add_argument("--json", action="store_true", help="print one JSON object")
    lc.set_defaults(func=cmd_learning_curve)

    ge = sub.add_parser("generalization", help="cross-source matrix: trained on x tested on (each source "
                                               "left out in turn, and held-out generator folders)")
    ge.add_argument("root", help="split root with train/ val/ test/ and a MANIFEST.csv naming sources")
    ge.add_argument("--heldout", nargs="*", default=[], help="held-out folders (real/ + fake/), scored only")
    pick = ge.add_mutually_exclusive_group()
    pick.add_argument("--model", help="a shipped model scored as it is (one row; default: the default model)")
    pick.add_argument("--recipe", help="a frozen-feature recipe refitted per row (leave-one-source-out): dinov2")
    ge.add_argument("--max-train", type=int, default=600, help="recipe: training images per source and class")
    ge.add_argument("--record", action="store_true", help="--model: write the held-out numbers into its card "
                                                          "(the coverage line the Detect page shows)")
    ge.add_argument("--json", action="store_true", help="print one JSON object")
    ge.set_defaults(func=cmd_generalization)

    mo = sub.add_parser("models", help="list the shipped models and their test numbers")
    mo.add_argument("--json", action="store_true")
    mo.add_argument("--markdown", action="store_true", help="the README's model table")
    mo.set_defaults(func=cmd_models)

    au = sub.add_parser("audit", help="data audit: counts, sizes, JPEG quality, shortcuts, duplicates, leakage")
    au.add_argument("folder", help="split root (train/ val/ test/) or a real/ fake/ folder")
    au.add_argument("--max-distance", type=int, default=4, help="dhash Hamming distance for near duplicates")
    au.add_argument("--min-similarity", type=float, default=0.95,
                    help="thumbnail correlation that confirms a dhash match (below -1: keep every dhash match)")
    au.add_argument("--json", action="store_true", help="print one JSON object")
    au.set_defaults(func=cmd_audit)

    be = sub.add_parser("bench", help="size, GFLOPs, throughput and latency of the shipped models")
    be.add_argument("--model", help="one model name or model folder (default: every shipped model)")
    be.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (after a warm-up)")
    be.add_argument("--json", action="store_true", help="print one JSON object")
    be.add_argument("--record", action="store_true",
                    help="also write each model's numbers into its card.json (shown on the compare page)")
    be.add_argument("--engines", metavar="SRC", help="instead: images/s of `predict` with the plain engine and "
                                                     "with --engine ray on the first --n images under SRC")
    be.add_argument("--n", type=int, default=200, help="--engines: how many images")
    be.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="--engines: Ray worker counts to run")
    be.set_defaults(func=cmd_bench)

    ro = sub.add_parser("robustness", help="accuracy/AUC under JPEG, down-scaling and blur; writes robustness.csv")
    ro.add_argument("--model")
    ro.add_argument("--data", help="dataset root (default: ../shared/data next to the repo); its test split is used")
    ro.add_argument("--n", type=int, default=400, help="stratified sample size (0: every test image)")
    ro.add_argument("--seed", type=int, default=42)
    ro.set_defaults(func=cmd_robustness)
    ca = sub.add_parser("calibrate", help="refit calibration + threshold on a run's stored val predictions")
    ca.add_argument("--model")
    ca.set_defaults(func=cmd_calibrate)

    ce = sub.add_parser("clip-expert", help="blend a linear probe on frozen CLIP features into one expert "
                                            "of an experts model; rescore and recalibrate it on val")
    ce.add_argument("--model")
    ce.add_argument("--data", help="the data root the model was trained on (default: ../shared/data next to the repo)")
    ce.add_argument("--source", default="ffhq_stylegan", help="the expert to blend with (default: ffhq_stylegan)")
    ce.add_argument("--weight", type=float, help="CLIP's share of the blended logit (1: replace the expert; "
                                                  "default experts.CLIP_WEIGHT, chosen on the held-out sets)")
    ce.set_defaults(func=cmd_clip_expert)

    ex = sub.add_parser("export-fast", help="derive model.tflite (LiteRT/XNNPACK) and verify it against Keras")
    ex.add_argument("--model")
    ex.add_argument("--data", help="data root the model was trained on (default: from its card)")
    ex.add_argument("--n", type=int, help="check only the first N test images")
    ex.set_defaults(func=cmd_export_fast)

    no = sub.add_parser("novelty", help="fit the reference that flags faces unlike the training faces "
                                        "(train.py does this for new runs)")
    no.add_argument("--model")
    no.add_argument("--data", help="the data root the model was trained on (default: ../shared/data next to the repo)")
    no.set_defaults(func=cmd_novelty)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


import numpy as np  # noqa: E402  (after the TF log level is set)

if __name__ == "__main__":
    sys.exit(main())
