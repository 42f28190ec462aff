"""Compare: shipped models side by side, on their saved predictions (predictions.csv) or on a
labelled set the user supplies (a zip or a server folder of real/ and fake/ images).

Everything is recomputed from a predictions frame (split, path, source, label, p_fake) at the
thresholds of the sliders, so the saved-predictions view needs no TensorFlow: store /
evaluation / pandas / plotly only. TensorFlow is loaded only when a labelled set is scored
(`detector.comparison`) or a row of the disagreement explorer is selected (its Grad-CAM view);
the explorer's thumbnails and enlarged image are read through `comparison.SetImages` (the
uploaded zip's bytes in memory, or the data folders on this machine).
"""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app import ui
from detector import comparison, evaluation, images, jobs, summaries

SPLIT_ORDER = {"test": 0, "val": 1, "cv": 2}
SAVED, LABELLED = "Saved predictions", "Your labelled set"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
EXPLORER_ROWS = 300  # rows of the disagreement explorer (each gets a thumbnail)
CURVE_TOLERANCE = 0.004  # ROC / PR points closer than this on both axes are drawn as one (~1.5 px)
ROBUSTNESS_AXES = {"jpeg_quality": "JPEG quality", "downscale": "Downscale factor", "gaussian_blur": "Blur sigma (px)"}

st.title("Compare models")
st.caption("Metrics, confusion matrices and curves recomputed from each model's predictions on a "
           "labelled set. Move a threshold slider: everything that depends on it follows (and only that "
           "is redrawn).")

names = ui.require_models()
chosen = st.multiselect("Models", names, default=comparison.preselect(names, {m: ui.card(m) for m in names},
                                                                      ui.default_model()),
                        key="cmp_models", format_func=ui.model_label,
                        help="The default model and the next best (by test AUC) to start with; add the "
                             "others here (custom_cnn and deep_cnn are weak baselines).")
if not chosen:
    st.info("Choose at least one model.")
    st.stop()
cards = {m: ui.card(m) for m in chosen}
colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(chosen)}
source = st.segmented_control("Evaluate on", [SAVED, LABELLED], default=SAVED, key="cmp_source",
                              help="Saved predictions: the labelled splits scored when each model was "
                                   "trained. Your labelled set: images you supply, scored now.") or SAVED


def saved_predictions() -> tuple[dict, str, dict, str, comparison.SetImages] | None:
    """{model: frame} of the chosen split of predictions.csv, a title, ms per image, its help
    and where the images are (the cards' data folders, paths being relative to them)."""
    preds = {m: ui.predictions(m) for m in chosen}
    if missing := [m for m, p in preds.items() if p is None]:
        st.warning(f"No predictions.csv for: {', '.join(missing)} (re-run training or `python -m detector evaluate`).")
    preds = {m: p for m, p in preds.items() if p is not None}
    if not preds:
        return None
    splits = sorted({s for p in preds.values() for s in p["split"].dropna().astype(str).unique()},
                    key=lambda s: (SPLIT_ORDER.get(s, 9), s))
    split = st.selectbox("Labelled split", splits, index=0, key="cmp_split",
                         help="test: held out from training and threshold choice (the honest numbers). "
                              "val: used to pick each threshold. cv: k-fold held-out scores.")
    data = {m: p[p["split"].astype(str) == split].reset_index(drop=True) for m, p in preds.items()}
    if empty := [m for m, d in data.items() if d.empty]:
        st.caption(f"No {split} predictions for: {', '.join(empty)}.")
    data = {m: d for m, d in data.items() if not d.empty}
    if split == "cv":
        st.info("k-fold scores are uncalibrated fold models (folds.csv used threshold 0.5); "
                "the card thresholds are for the final calibrated model.")
    ms = {m: summaries.bench_ms(cards[m]) for m in data}
    found = comparison.SetImages(roots=comparison.data_roots(*(cards[m] for m in data)))
    return data, split, ms, ("Single-image latency p50 from the model card's bench numbers "
                             "(`python -m detector bench`); blank when the card has none."), found


def labelled_set() -> tuple[dict, str, dict, str, comparison.SetImages] | None:
    """{model: frame} of a zip / folder of real/ and fake/ images scored now by each model, a
    title, ms per image, its help and where the images are (the zip's bytes stay in memory)."""
    st.caption("Give a zip (or a folder on the server) holding `real/` and `fake/` folders, at any depth "
               "(`set/Real/a.jpg` counts; a sub-folder below them, e.g. `fake/stylegan/`, names the source). "
               "The images are assumed to be **face crops** and are scored **whole**, like "
               "`python -m detector evaluate` (no face detection). They are decoded in memory and never stored.")
    left, right = st.columns(2)
    upload = left.file_uploader("Labelled zip", type=["zip"], key="cmp_zip",
                                help="A .zip with real/ and fake/ folders of images.")
    path = ui.folder_input("Or a folder on the server", "cmp_folder", container=right,
                           help="A folder holding real/ and fake/ folders (read, never written).")
    folder = str(path) if path is not None else ""
    if upload is None and not folder:
        st.info("Upload a zip (or, where the server allows it, type a folder) to score a labelled set "
                "with the chosen models.")
        return None
    bar = st.progress(0.0, text="Reading images...")
    try:
        if upload is not None:
            what, found = upload.name, comparison.SetImages(blob=upload.getvalue())
            result = ui.labelled_zip_scores(found.blob, chosen, progress=bar.progress)
        else:
            what, found = folder, comparison.SetImages(roots=[folder])
            result = ui.labelled_folder_scores(folder, chosen, progress=bar.progress)
    except ValueError as exc:
        bar.empty()
        st.error(f"Cannot use {ui.safe_md(what)}: {ui.safe_md(exc)}", icon=":material/folder_off:")
        return None
    n, frame = result["n_images"], result["frame"]
    note = " (from the cache: timings of the first run)" if result["cached"] else ""
    rate = n * len(chosen) / result["score_seconds"] if result["score_seconds"] > 0 else float("nan")
    bar.progress(1.0, text=f"{n} image(s) x {len(chosen)} model(s) in {result['seconds']:.1f} s "
                           f"(reading {result['read_seconds']:.1f} s, scoring {result['score_seconds']:.1f} s, "
                           f"{rate:.1f} images/s){note}")
    st.caption(f"**{ui.safe_md(what)}**: {n} image(s) scored in {result['seconds']:.1f} s, "
               f"{n / result['seconds'] if result['seconds'] > 0 else float('nan'):.1f} images/s overall "
               f"(decode + {len(chosen)} model(s)){note}.")
    if result["errors"]:
        st.warning(f"{len(result['errors'])} file(s) could not be read and were skipped.",
                   icon=":material/broken_image:")
        with st.expander("Skipped files"):
            skipped = pd.DataFrame(result["errors"], columns=["file", "label", "error"])
            ui.show_table(skipped, key="cmp_lab_errors")
            ui.csv_download(skipped, "skipped_files.csv", "Skipped files CSV", key="cmp_lab_errors_csv")
    if result["ignored"]:
        st.caption(f"{len(result['ignored'])} file(s) outside real/ and fake/ folders were ignored.")
    if result.get("left_out"):
        st.warning(f"{result['left_out']} more labelled file(s) were not read: this server scores at most "
                   f"{jobs.WEB_MAX_FILES} images of one set (the first ones in the set's order). "
                   "`python -m detector evaluate` has no such limit.", icon=":material/content_cut:")
    if not n:
        st.error("No readable images in the set.")
        return None
    ui.csv_download(frame, "labelled_predictions.csv", "Predictions CSV", key="cmp_lab_preds")
    data = {m: frame[frame["model"] == m].drop(columns="model").reset_index(drop=True) for m in chosen}
    return data, "your set", result["ms_per_image"], (
        "Measured now: resize + model forward pass on this set (batches of 32), divided by the images."), found


# Caches of what the charts and tables are made of, so that a slider move recomputes only the
# moved model's numbers at its new threshold (everything else is a hit). Keyed by `summaries.frame_key`;
# the frames themselves are not hashed (the leading underscore).

@st.cache_data(show_spinner=False, max_entries=1024)
def _threshold_part(key: str, threshold: float, _d: pd.DataFrame) -> dict:
    return evaluation.threshold_metrics(_d["label"], _d["p_fake"], threshold)


def point_metrics(key: str, threshold: float, _d: pd.DataFrame) -> dict:
    """evaluation.binary_metrics of one model's frame at one threshold: its threshold part
    (counting, per threshold) and its ranking part (AUC with DeLong's interval, AP, EER: once
    per frame, in `ranking`)."""
    point = _threshold_part(key, threshold, _d)
    return {**point, **ranking(key, _d)["ranking"]}


@st.cache_data(show_spinner=False, max_entries=1024)
def source_metrics(key: str, threshold: float, _d: pd.DataFrame) -> pd.DataFrame | None:
    """summaries.per_source_frame of one model's frame at one threshold."""
    return summaries.per_source_frame(_d, threshold)


@st.cache_resource(show_spinner=False, max_entries=128)  # shared, read-only: no copy per call
def ranking(key: str, _d: pd.DataFrame) -> dict:
    """What does not depend on the threshold: ECE, AUC / AP / EER, ROC / PR / reliability
    points, sanity flags. Callers only read it."""
    y, p = summaries.labels01(_d), _d["p_fake"]
    # the curves as drawn: thinned to what a chart shows (comparison.thin_curve), so the browser
    # redraws a few hundred points per curve on every slider move, not one per image
    return {"ece": evaluation.expected_calibration_error(y, p), "ranking": evaluation.ranking_metrics(_d["label"], p),
            "roc": comparison.thin_curve(evaluation.roc_points(_d["label"], p), "fpr", "tpr", CURVE_TOLERANCE),
            "pr": comparison.thin_curve(evaluation.pr_points(_d["label"], p), "recall", "precision", CURVE_TOLERANCE),
            "reliability": evaluation.reliability_curve(y, p, n_bins=10), "flags": comparison.sanity_flags(_d)}


@st.cache_data(show_spinner=False, max_entries=1024)
def model_intervals(key: str, threshold: float, source: str | None, model: str, _d: pd.DataFrame) -> pd.DataFrame:
    """comparison.intervals_frame of one model (the forest plot's rows), per threshold."""
    return comparison.intervals_frame({model: _d}, {model: threshold}, source)


def intervals(keys: dict, thr: dict, source: str | None, data: dict) -> pd.DataFrame:
    """The forest plot's rows of every model; on all images straight from `point_metrics`
    (the numbers of the table above), on one source from `model_intervals`."""
    if source is not None:
        return pd.concat([model_intervals(keys[m], thr[m], source, m, d) for m, d in data.items()],
                         ignore_index=True)
    rows = [row for m, d in data.items() for row in summaries.interval_rows(m, point_metrics(keys[m], thr[m], d))]
    return pd.DataFrame(rows, columns=summaries.INTERVAL_COLUMNS)


# Figures of one model at one threshold, kept as they are (st.plotly_chart only reads them):
# a slider move rebuilds the moved model's figures alone.

@st.cache_resource(show_spinner=False, max_entries=256)
def confusion_chart(key: str, threshold: float, model: str, _counts: dict) -> go.Figure:
    title = ui.chart_title(model, f"at threshold {threshold:.3f}")
    fig = ui.confusion_figure(_counts)
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=30 + 19 * (title["text"].count("<br>") + 1), b=10))
    return fig


@st.cache_resource(show_spinner=False, max_entries=256)
def intervals_chart(keys: tuple, thresholds: tuple, on: str, colours: tuple, _spans: pd.DataFrame) -> go.Figure:
    """Accuracy (at the thresholds) and AUC with 95% intervals, one row per model (`colours`
    in the models' order); `on`: the images ("all" or a source), the title's and the cache's."""
    palette = dict(zip(_spans["model"].drop_duplicates(), colours))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy at the slider threshold", "AUC"),
                        horizontal_spacing=0.06, shared_yaxes=True)
    for col, metric in enumerate(("accuracy", "auc"), start=1):
        part = _spans[_spans["metric"] == metric]
        fig.add_trace(go.Scatter(
            x=part["value"].tolist(), y=part["model"].tolist(), mode="markers", showlegend=False,
            marker=dict(size=10, color=[palette[m] for m in part["model"]]),
            error_x=dict(type="data", symmetric=False, array=(part["hi"] - part["value"]).tolist(),
                         arrayminus=(part["value"] - part["lo"]).tolist(), thickness=2, width=6),
            customdata=part[["lo", "hi", "n"]].to_numpy(),
            hovertemplate="%{y}: %{x:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}] on %{customdata[2]} images"
                          "<extra></extra>"), row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"95% confidence intervals ({ui.plot_text(on)} images)", height=90 + 45 * len(colours),
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig


@st.cache_resource(show_spinner=False, max_entries=256)
def histogram_chart(key: str, threshold: float, model: str, _d: pd.DataFrame) -> go.Figure:
    """P(fake) of real and fake images, the threshold as a dashed line."""
    bars = summaries.score_histogram(_d)  # counted here (41 bars) rather than binned in the browser from every score
    fig = go.Figure()
    for name, col in (("real", "#16a34a"), ("fake", "#dc2626")):
        fig.add_trace(go.Bar(x=bars["centres"], y=bars[name], width=bars["width"], name=name,
                             marker_color=col, opacity=0.6,
                             hovertemplate=f"{name}: %{{y}} images at P(fake) %{{x:.3f}}<extra></extra>"))
    fig.add_vline(x=threshold, line_dash="dash", line_color="black")
    fig.update_layout(barmode="overlay", bargap=0, title=model, height=300, xaxis_title="P(fake)", yaxis_title="images",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=1.12, x=0.6))
    return fig


@st.cache_data(show_spinner=False, max_entries=256)
def pairs(keys: tuple, thresholds: tuple, source: str | None, _data: dict) -> pd.DataFrame:
    return comparison.pairwise_tests(_data, dict(zip(_data, thresholds)), source)


@st.cache_data(show_spinner=False, max_entries=256)
def explorer_table(keys: tuple, thresholds: tuple, _data: dict) -> tuple[pd.DataFrame, dict]:
    """comparison.explorer_frame and its counts (attrs do not survive the cache's copy)."""
    table = comparison.explorer_frame(_data, dict(zip(_data, thresholds)))
    return table, dict(table.attrs)


def reliability_figure(data: dict, keys: dict) -> go.Figure:
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"),
                               name="perfect calibration", hoverinfo="skip"))
    for m in data:
        r = ranking(keys[m], data[m])
        curve, ece = r["reliability"], r["ece"]
        fig.add_trace(go.Scatter(
            x=curve["mean_score"], y=curve["frac_fake"], mode="lines+markers", name=f"{m} (ECE {ece:.3f})",
            line=dict(color=colour[m]), customdata=curve["count"],
            marker=dict(size=np.clip(4 + 2 * np.sqrt(curve["count"].to_numpy(float)), 5, 18)),
            hovertemplate="mean P(fake) %{x:.3f}, fraction fake %{y:.3f}, %{customdata} images"))
    fig.update_layout(title="Reliability (10 bins; marker size: images in the bin)", height=420,
                      xaxis_title="mean predicted P(fake)", yaxis_title="observed fraction of fakes",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(x=0.02, y=0.98))
    fig.update_xaxes(range=[-0.01, 1.01])
    fig.update_yaxes(range=[-0.01, 1.02])
    return fig


def analyse(data: dict, where: str, ms: dict, ms_help: str, found: comparison.SetImages, key: str) -> None:
    """Sanity flags, the threshold fragment (`at_thresholds`: a slider move reruns only that)
    and the calibration chart; what is outside the fragment is drawn once per choice of models
    and set."""
    keys = {m: summaries.frame_key(m, d) for m, d in data.items()}

    # --- sanity flags (first: a broken model's numbers below mean nothing) ------------------------
    flagged = False
    for m, d in data.items():
        if flags := ranking(keys[m], d)["flags"]:
            flagged = True
            st.error(f"**{ui.safe_md(m)}** looks broken on {ui.safe_md(where)}: " + ui.safe_md("; ".join(flags)) + ".",
                     icon=":material/warning:")
    if not flagged:
        st.caption(f"Sanity checks passed: every model's scores vary (std of P(fake) >= "
                   f"{comparison.MIN_SCORE_STD}) and no AUC is within {comparison.AUC_MARGIN} of 0.5.")

    at_thresholds(data, keys, where, ms, ms_help, found, key)

    # --- calibration ---------------------------------------------------------------------------
    st.subheader("Calibration")
    st.caption("Does P(fake) = 0.8 mean that 80% of such images are fake? Points on the diagonal are "
               "well calibrated; below it the model is over-confident about fakes, above it under-confident. "
               "ECE (in the legend and the table) is the count-weighted gap, 15 bins as in "
               "`python -m detector evaluate`.")
    left, _ = st.columns([3, 2])
    ui.chart(reliability_figure(data, keys), key=f"{key}_reliability", filename="reliability", container=left)


@st.fragment
def at_thresholds(data: dict, keys: dict, where: str, ms: dict, ms_help: str, found: comparison.SetImages,
                  key: str) -> None:
    """Everything that follows the threshold sliders: metrics, pairwise tests, confusion
    matrices, ROC / PR operating points, score histograms and the disagreement explorer of
    {model: predictions frame (split, path, source, label, p_fake)}; `found` reads the images
    the frames name. A Streamlit fragment: moving a slider reruns this function only, and every
    number that did not change (the other models', the threshold-free ones) comes from a cache."""
    models = list(data)
    per_row = min(len(models), 4)

    # --- thresholds ------------------------------------------------------------------------
    st.subheader("Operating thresholds", help=ui.GLOSSARY["threshold"])
    cols = st.columns(per_row)
    thr = {}
    for i, m in enumerate(models):
        default = float(cards[m].get("threshold", 0.5))
        thr[m] = ui.threshold_slider(m, default, key=f"cmp_thr_{m}", container=cols[i % per_row],
                                     help=f"Default {default:.3f}: the threshold chosen on validation data.")

    # --- metrics table --------------------------------------------------------------------------
    metrics = summaries.metrics_frame([
        summaries.metrics_row(m, point_metrics(keys[m], thr[m], d), ranking(keys[m], d)["ece"],
                              comparison.unfamiliar_share(d), thr[m], ms.get(m), cards[m])
        for m, d in data.items()])
    st.subheader(f"Metrics on {where} ({', '.join(f'{m}: {len(d)}' for m, d in data.items())} images)")
    number = {k: st.column_config.NumberColumn(k, format="%.3f") for k in ("accuracy", "precision", "recall", "f1", "ap")}
    ui.show_table(metrics, key=f"{key}_metrics", column_config={
        **number, "params": st.column_config.NumberColumn("params", format="localized"),
        "accuracy 95% CI": st.column_config.TextColumn("accuracy 95% CI", help=ui.INTERVAL_HELP),
        "auc": st.column_config.NumberColumn("AUC", format="%.3f", help=ui.GLOSSARY["auc"]),
        "auc 95% CI": st.column_config.TextColumn("AUC 95% CI", help=ui.INTERVAL_HELP),
        "eer": st.column_config.NumberColumn("EER", format="%.3f", help=ui.GLOSSARY["eer"]),
        "ece": st.column_config.NumberColumn("ECE", format="%.3f", help=ui.GLOSSARY["ece"]),
        "threshold": st.column_config.NumberColumn("threshold", format="%.3f", help=ui.GLOSSARY["threshold"]),
        "ms_per_image": st.column_config.NumberColumn("ms per image", format="%.2f",
                                                      help=f"{ms_help} {ui.GLOSSARY['ms_per_image']}"),
        "unfamiliar": st.column_config.NumberColumn("unfamiliar", format="percent", help=ui.GLOSSARY["unfamiliar"]),
        "file_mb": st.column_config.NumberColumn("file MB", format="%.1f"),
        "tn": st.column_config.NumberColumn("TN", help="real judged real"),
        "fp": st.column_config.NumberColumn("FP", help="real judged fake"),
        "fn": st.column_config.NumberColumn("FN", help="fake judged real"),
        "tp": st.column_config.NumberColumn("TP", help="fake judged fake")})
    if metrics.isna().any().any():
        st.caption("n/a: a number that does not exist here; hover a column's name for why (e.g. no bench "
                   "timing on the card, no novelty reference, one class only).")

    per_source = summaries.per_source_table({m: source_metrics(keys[m], thr[m], d) for m, d in data.items()})
    if per_source is not None:
        st.markdown("**Per source** (a detector often generalises unevenly across generators)")
        ui.show_table(per_source, key=f"{key}_per_source", column_config={
            **{k: st.column_config.NumberColumn(k, format="%.3f") for k in ("accuracy", "precision", "recall", "f1")},
            "auc": st.column_config.NumberColumn("AUC", format="%.3f", help=ui.GLOSSARY["auc"]),
            "eer": st.column_config.NumberColumn("EER", format="%.3f", help=ui.GLOSSARY["eer"])})
    slug = where.replace(" ", "_")
    ui.csv_download(summaries.metrics_export(metrics, per_source, where), f"compare_{slug}.csv", "Metrics CSV", key=f"{key}_csv")

    if len(models) > 1:
        differences(data, keys, thr, key)

    # --- confusion matrices -----------------------------------------------------------------
    st.subheader("Confusion matrices")
    counts = {m: point_metrics(keys[m], thr[m], d)["confusion"] for m, d in data.items()}
    per_row_cm = min(len(models), 3)  # three across at most: each title (model, threshold) fits its column
    cols = st.columns(per_row_cm)
    for i, m in enumerate(models):
        ui.chart(confusion_chart(keys[m], thr[m], m, counts[m]), key=f"{key}_cm_{m}", filename=f"confusion_{m}", container=cols[i % per_row_cm])

    # --- ROC and PR ------------------------------------------------------------------------------
    roc, pr = go.Figure(), go.Figure()
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"),
                             name="chance", hoverinfo="skip"))
    for m, d in data.items():
        r, p = ranking(keys[m], d)["roc"], ranking(keys[m], d)["pr"]
        if r.empty:
            st.caption(f"{m}: only one class in this set, no curves.")
            continue
        met = metrics.set_index("model").loc[m]
        roc.add_trace(go.Scatter(x=r["fpr"], y=r["tpr"], mode="lines", name=f"{m} (AUC {met['auc']:.3f})",
                                 line=dict(color=colour[m]), customdata=r["threshold"],
                                 hovertemplate="FPR %{x:.3f}, TPR %{y:.3f}, threshold %{customdata:.3f}"))
        pr.add_trace(go.Scatter(x=p["recall"], y=p["precision"], mode="lines", name=f"{m} (AP {met['ap']:.3f})",
                                line=dict(color=colour[m]), customdata=p["threshold"],
                                hovertemplate="recall %{x:.3f}, precision %{y:.3f}, threshold %{customdata:.3f}"))
        at = summaries.operating_point(counts[m])
        fpr, tpr, prec = at["fpr"], at["tpr"], at["precision"]
        marker = dict(color=colour[m], size=12, symbol="x", line=dict(width=1, color="black"))
        roc.add_trace(go.Scatter(x=[fpr], y=[tpr], mode="markers", marker=marker, showlegend=False,
                                 name=f"{m} @ {thr[m]:.3f}", hovertemplate=f"{m} @ {thr[m]:.3f}<br>FPR %{{x:.3f}}, TPR %{{y:.3f}}"))
        pr.add_trace(go.Scatter(x=[tpr], y=[prec], mode="markers", marker=marker, showlegend=False,
                                name=f"{m} @ {thr[m]:.3f}", hovertemplate=f"{m} @ {thr[m]:.3f}<br>recall %{{x:.3f}}, precision %{{y:.3f}}"))
    roc.update_layout(title="ROC (x: operating point at the slider)", xaxis_title="false positive rate (real flagged)",
                      yaxis_title="true positive rate (fakes caught)", height=420, legend=dict(x=0.45, y=0.05))
    pr.update_layout(title="Precision-recall (fake class)", xaxis_title="recall", yaxis_title="precision",
                     height=420, legend=dict(x=0.02, y=0.05))
    for fig in (roc, pr):
        fig.update_xaxes(range=[-0.01, 1.01])
        fig.update_yaxes(range=[-0.01, 1.02])
        fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    c1, c2 = st.columns(2)
    ui.chart(roc, key=f"{key}_roc", filename="roc", container=c1)
    ui.chart(pr, key=f"{key}_pr", filename="precision_recall", container=c2)

    # --- score histograms -----------------------------------------------------------------------
    st.subheader("Score distributions")
    st.caption("P(fake) of real (green) and fake (red) images; the dashed line is the threshold. "
               "Overlap is where mistakes happen.")
    cols = st.columns(per_row)
    for i, (m, d) in enumerate(data.items()):
        ui.chart(histogram_chart(keys[m], thr[m], m, d), key=f"{key}_hist_{m}", filename=f"scores_{m}", container=cols[i % per_row])

    # --- disagreements ----------------------------------------------------------------------------
    explorer(data, keys, thr, found, key)


def differences(data: dict, keys: dict, thr: dict, key: str) -> None:
    """Pairwise tests: does a gap between two models' numbers hold, or is it the draw of images?"""
    st.subheader("Are the differences real?")
    sources = sorted(set().union(*(set(d["source"].dropna().astype(str)) for d in data.values()
                                   if "source" in d.columns)) - {""})
    on = st.radio("Images", ["all", *sources], horizontal=True, key=f"{key}_pairs_on", format_func=ui.safe_md,
                  help="Test on all images both models scored, or on one source only.")
    chosen_source = None if on == "all" else on
    key_tuple, thr_tuple = tuple(keys[m] for m in data), tuple(thr[m] for m in data)
    fig = intervals_chart(key_tuple, thr_tuple, on, tuple(colour[m] for m in data),
                          intervals(keys, thr, chosen_source, data))
    slug = ui.digest(on.encode())[:8] if on != "all" else "all"  # a source is user text: not in keys or file names
    ui.chart(fig, key=f"{key}_intervals_{slug}", filename=f"intervals_{slug}")
    tests = pairs(key_tuple, thr_tuple, chosen_source, data)
    st.caption(f"Each pair on the {int(tests['n'].iloc[0]) if len(tests) else 0} images every model scored. "
               "Accuracy at each model's slider threshold, exact McNemar test on the images only one of the two "
               "gets right; AUC: DeLong's paired test. A p below 0.05 is a difference these images show; "
               "above it, the gap may be the luck of the draw.")
    number = {k: st.column_config.NumberColumn(k.replace("_a", " A").replace("_b", " B"), format="%.3f")
              for k in ("accuracy_a", "accuracy_b", "auc_a", "auc_b")}
    ui.show_table(tests, key=f"{key}_pairs_{slug}", column_config={
        **number, "model_a": "model A", "model_b": "model B",
        "auc_a": st.column_config.NumberColumn("AUC A", format="%.3f", help=ui.GLOSSARY["auc"]),
        "auc_b": st.column_config.NumberColumn("AUC B", format="%.3f", help=ui.GLOSSARY["auc"]),
        "auc_diff": st.column_config.NumberColumn("AUC A - B", format="%.3f"),
        "only_a": st.column_config.NumberColumn("only A right", help="images model A gets right and B wrong"),
        "only_b": st.column_config.NumberColumn("only B right", help="images model B gets right and A wrong"),
        "accuracy_p": st.column_config.NumberColumn("accuracy p", format="%.2g", help="exact McNemar test"),
        "auc_diff_lo": st.column_config.NumberColumn("AUC diff low", format="%.3f", help="95% interval, DeLong"),
        "auc_diff_hi": st.column_config.NumberColumn("AUC diff high", format="%.3f", help="95% interval, DeLong"),
        "auc_p": st.column_config.NumberColumn("AUC p", format="%.2g", help="DeLong's paired test"),
        "finding": st.column_config.TextColumn("finding", width="large")})
    ui.csv_download(tests.assign(images=on), f"pairwise_tests_{slug}.csv", "Pairwise tests CSV", key=f"{key}_pairs_csv")


def explorer(data: dict, keys: dict, thr: dict, found: comparison.SetImages, key: str) -> None:
    """The images the models disagree on or all get wrong, with thumbnails and every score;
    a selected row is shown large beside each model's Grad-CAM heatmap."""
    models = list(data)
    st.subheader("Disagreements and shared mistakes" if len(models) > 1 else "Mistakes")
    table, n = explorer_table(tuple(keys[m] for m in data), tuple(thr[m] for m in data), data)
    st.caption(f"{n['n_disagree']} of {n['n_images']} images get different verdicts from the chosen models at "
               f"their thresholds; {n['n_all_wrong']} are misjudged by every one. "
               "**Select a row** to see the image large with each model's Grad-CAM heatmap.")
    if table.empty:
        return
    ui.csv_download(table, f"disagreements_{key}.csv", "Disagreements CSV", key=f"{key}_explore_csv")
    show = table.head(EXPLORER_ROWS).copy()
    if len(table) > len(show):
        st.caption(f"The first {len(show)} of {len(table)} (all-wrong first, then the widest spread of scores).")
    show.insert(0, "image", ui.thumbnails(found, show["path"]))
    if show["image"].isna().all():
        st.caption(f"No thumbnails: the images are not on this machine (looked in {ui.safe_md(found.where())}).")
    # the key follows the listed rows: a threshold that changes the list clears the selection
    # instead of pointing it at another image
    listing = ui.digest("\n".join([*models, *show["path"]]).encode())[:12]
    picked = ui.show_table(show, key=f"{key}_explore_{listing}", on_select="rerun",
                           selection_mode="single-row", column_config={
                              "image": st.column_config.ImageColumn("image", width="small"),
                              **{m: st.column_config.NumberColumn(m, format="%.3f", help=f"P(fake) by {m}")
                                 for m in models}})
    if picked.selection.rows:
        enlarge(show.iloc[picked.selection.rows[0]], models, thr, found)


def enlarge(row: pd.Series, models: list[str], thr: dict, found: comparison.SetImages) -> None:
    """One image large, each model's Grad-CAM overlay beside it (scored whole, like the set)."""
    name = str(row["path"])
    source = f", source {ui.safe_md(row['source'])}" if str(row.get("source", "") or "").strip() else ""
    st.markdown(f"**{ui.safe_md(name)}**: truly **{ui.safe_md(row['label'])}**{source}")
    raw = found.read(name)
    if raw is None:
        st.info(f"{ui.code_md(name)} is not on this machine (looked in {ui.safe_md(found.where())}), so it cannot be shown. "
                "Saved predictions name images relative to the data folder each model was trained on "
                "(its card's `data.path`, or `../shared/data` beside the repository).",
                icon=":material/image_not_supported:")
        return
    try:
        explained = ui.explain_image(raw, models)
    except images.ImageDecodeError as exc:
        st.error(f"Cannot show {ui.code_md(name)}: {ui.safe_md(exc)}", icon=":material/broken_image:")
        return
    cols = st.columns(1 + len(explained["views"]))
    cols[0].image(explained["image"], caption=f"{ui.safe_md(name)} (true: {ui.safe_md(row['label'])})", width="stretch")
    for col, view in zip(cols[1:], explained["views"]):
        m, p = view["model"], view["p_fake"]
        verdict = "FAKE" if p >= thr[m] else "REAL"
        text = f"{m}: P(fake) {p:.3f}, {verdict} at {thr[m]:.3f}"
        if m in row and abs(float(row[m]) - p) > 1e-3:
            text += f" (table: {float(row[m]):.3f})"
        if view["heatmap"] is None:
            text += "; no Grad-CAM layer on this model"
        col.image(view["overlay"], caption=text, width="stretch")
    st.caption("Grad-CAM: red marks the regions that pushed P(fake) up. Each model sees the whole image "
               "resized to its input size, exactly as it was scored.")


def robustness_section() -> None:
    """Accuracy and AUC under JPEG re-compression, down-scaling and blur (robustness.csv)."""
    st.subheader("Robustness")
    tables = {m: ui.robustness_table(m) for m in chosen}
    for m, t in tables.items():
        if t is None:
            st.info(f"No robustness.csv for **{ui.safe_md(m)}**: create it with "
                    f"`python -m detector robustness --model {m}`.", icon=":material/info:")
    tables = {m: comparison.robustness_frame(t) for m, t in tables.items() if t is not None and not t.empty}
    if not tables:
        return
    st.caption("Test images degraded the way the web degrades them (and past it), scored at each card's "
               "threshold: one row per number, accuracy (bars: 95% confidence intervals, Wilson, on these "
               "images), AUC and, for models with a novelty reference, the share of images called unlike the "
               "training faces. The first level of each chart is the untouched image. Click a model in a "
               "legend to hide it; the camera icon saves a chart as PNG.")
    cols = st.columns(len(ROBUSTNESS_AXES))
    key = tuple((m, ui.digest(pd.util.hash_pandas_object(t, index=False).to_numpy().tobytes()), colour[m])
                for m, t in tables.items())
    for col, (kind, fig) in zip(cols, robustness_figures(key, tables).items()):
        ui.chart(fig, key=f"cmp_rob_{kind}", filename=f"robustness_{kind}", container=col)


@st.cache_resource(show_spinner=False, max_entries=32)
def robustness_figures(key: tuple, _tables: dict) -> dict[str, go.Figure]:
    """One figure per degradation (ROBUSTNESS_AXES), a row per number (accuracy with its 95%
    interval, AUC, the share called unfamiliar when any model has it), a line per model in its
    colour. Cached per (models, their tables, colours): built once, not on every rerun."""
    tables = _tables
    colours = {m: c for m, _, c in key}
    metrics = [(k, name) for k, name in (("accuracy", "accuracy (bars: 95% CI)"), ("auc", "AUC"),
                                         ("unfamiliar", "share called unfamiliar"))
               if any(t[k].notna().any() for t in tables.values())]
    figures = {}
    for kind, axis in ROBUSTNESS_AXES.items():
        fig = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, vertical_spacing=0.09,
                            subplot_titles=[name for _, name in metrics])
        for m, t in tables.items():
            part = t[t["perturbation"] == kind]
            if part.empty:
                continue
            for row, (metric, _) in enumerate(metrics, start=1):
                if part[metric].isna().all():
                    continue
                # one legend entry per model (its accuracy line), which shows or hides all its lines
                bars = None if metric != "accuracy" else dict(  # its 95% interval on these n images
                    type="data", symmetric=False, array=(part["accuracy_hi"] - part["accuracy"]).tolist(),
                    arrayminus=(part["accuracy"] - part["accuracy_lo"]).tolist(), thickness=1, width=3)
                fig.add_trace(go.Scatter(x=part["level"], y=part[metric], mode="lines+markers", error_y=bars,
                                         name=m if metric == "accuracy" else f"{m} {'AUC' if metric == 'auc' else metric}",
                                         showlegend=metric == "accuracy",
                                         line=dict(color=colours[m]), legendgroup=m,
                                         hovertemplate=f"{m}: {metric} %{{y:.3f}} at {axis} %{{x}}<extra></extra>"),
                              row=row, col=1)
        fig.update_xaxes(type="category")
        fig.update_xaxes(title=axis, row=len(metrics), col=1)
        fig.update_yaxes(range=[0, 1.02])
        fig.update_annotations(font_size=12)
        top = 54 + 26 * len(tables)  # the title, then the legend: a line per model in a narrow column
        height = top + 20 + 170 * len(metrics)
        # the title on top, the legend (one entry per model) under it, both in the top margin
        fig.update_layout(title=dict(text=axis, yref="container", y=1 - 8 / height, yanchor="top"), height=height,
                          margin=dict(l=10, r=10, t=top, b=10),
                          legend=dict(orientation="h", x=0, yref="container", y=1 - 36 / height, yanchor="top",
                                      font=dict(size=11)))
        figures[kind] = fig
    return figures


picked = saved_predictions() if source == SAVED else labelled_set()
if picked is not None and picked[0]:
    analyse(*picked, key="cmp" if source == SAVED else "cmp_lab")
robustness_section()
