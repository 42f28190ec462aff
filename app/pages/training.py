"""Training runs: card summaries, learning curves, k-fold results and test reports.

Reads run folders only (card.json, history.csv, predictions.csv, folds.csv): no TensorFlow,
except when a learning curve is asked for (its frozen trunk). A run that is still training has
just history.csv; its curves show, its reports do not.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import matrix_view, ui
from detector import audit, evaluation, jobs, learning_curve, report, store, summaries


def audit_section() -> None:
    """Check a labelled folder before trusting numbers trained on it (detector.audit)."""
    st.caption("Counts, sizes, formats and JPEG quality per class (a class that differs in compression "
               "is a shortcut a model will learn), unreadable files, and exact and near duplicates "
               "within and across splits (a test image repeating a training image is leakage). "
               "Same as `python -m detector audit DIR --json`.")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    base = ui.folder_input("Labelled folder", "aud_folder", container=c1,
                           help="A split root (train/ val/ test/ holding real/ fake/) or one real/ fake/ folder. "
                                "A MANIFEST.csv with a source column adds per-source counts.")
    saved = c2.file_uploader("or an audit JSON", type="json", key="aud_json")
    if saved is not None:
        try:
            st.session_state["aud_report"] = json.loads(saved.getvalue())
        except ValueError as exc:
            st.error(f"That file is not an audit JSON: {ui.safe_md(exc)}")
    if st.button("Run audit", key="aud_run", icon=":material/fact_check:", disabled=base is None):
        bar = st.progress(0.0, text="Reading every file...")
        try:  # a heavy job: one at a time on the server, at most jobs.WEB_MAX_FILES images
            with jobs.heavy_job("a data audit", on_wait=lambda message: bar.progress(0.0, text=message)):
                st.session_state["aud_report"] = audit.audit(
                    base, max_files=jobs.WEB_MAX_FILES,
                    progress=lambda done, total: bar.progress(done / max(total, 1),
                                                              text=f"Audited {done} of {total} files"))
        except (FileNotFoundError, ValueError, jobs.JobsBusy) as exc:
            st.error(f"Cannot audit {ui.code_md(base)}: {ui.safe_md(exc)}")
        bar.empty()
    report = st.session_state.get("aud_report")
    if not report:
        return
    try:
        t = audit.tables(report)
    except (KeyError, TypeError) as exc:
        st.error(f"Not an audit report (missing {ui.safe_md(exc)}).")
        return
    lk, ex, nd = report["leakage"], report["exact_duplicates"], report["near_duplicates"]
    st.markdown(f"**{ui.safe_md(report['root'])}**: {ui.safe_md(report['n_files'])} files, "
                f"audited in {ui.safe_md(report['seconds'])} s")
    m = st.columns(5)
    m[0].metric("Files", report["n_files"])
    m[1].metric("Unreadable", len(report["unreadable"]))
    m[2].metric("Exact duplicate groups", ex["groups"])
    m[3].metric("Near-duplicate pairs", nd["pairs"])
    m[4].metric("Leaks across splits", lk["pairs"])
    if lk["pairs"]:
        st.error(ui.safe_md(f"{lk['pairs']} image pair(s) repeat across splits ({lk['exact']} exact, {lk['near']} near): "
                            f"{lk['by_splits']}. Numbers on the later split are optimistic."), icon=":material/warning:")
    else:
        st.success("No leakage: no image repeats across splits.", icon=":material/check_circle:")
    for sc in report["shortcuts"]:
        st.error(ui.safe_md(f"Shortcut [{sc['group']}]: {sc['detail']}"), icon=":material/warning:")
    if not report["shortcuts"]:
        st.success("No shortcut: formats, sizes and JPEG quality do not tell the classes apart.",
                   icon=":material/check_circle:")
    a, b = st.columns(2)
    ui.show_table(t["counts"], key="aud_counts", container=a)
    if not t["by_source"].empty:
        ui.show_table(t["by_source"], key="aud_sources", container=b)
    ui.show_table(t["files"], key="aud_files")
    ui.csv_download(t["files"], "audit_files.csv", "Files CSV", key="aud_files_csv")
    hist = t["quality_histogram"]
    if not hist.empty:
        fig = go.Figure([go.Bar(x=g["quality"], y=g["files"], name=cls, opacity=0.7)
                         for cls, g in hist.groupby("class")])
        fig.update_layout(barmode="overlay", height=280, margin=dict(l=10, r=10, t=30, b=10),
                          title="Estimated JPEG quality per class", xaxis_title="quality", yaxis_title="files")
        ui.chart(fig, key="aud_quality", filename="audit_jpeg_quality")
    if not t["unreadable"].empty:
        st.markdown("**Unreadable files**")
        ui.show_table(t["unreadable"], key="aud_unreadable")
    if not t["pairs"].empty:
        st.markdown("**Duplicate pairs** (`leak`: the two are in different splits)")
        ui.show_table(t["pairs"], key="aud_pairs")
        ui.csv_download(t["pairs"], "audit_duplicate_pairs.csv", "Duplicate pairs CSV", key="aud_pairs_csv")
    st.download_button("Audit JSON", json.dumps(report, indent=1), file_name="audit.json",
                       mime="application/json", key="aud_download", on_click="ignore")


@st.cache_data(show_spinner=False, ttl=60)
def _sources(folder: str) -> list[str]:
    try:
        return learning_curve.sources(folder)
    except (FileNotFoundError, ValueError):
        return []


def learning_figure(result: dict) -> go.Figure:
    """AUC against training images (log scale): every draw, the mean per size, and the power
    law through val carried on to where it reaches AUC 0.99."""
    table, law = result["table"], result["law"]
    fig = go.Figure()
    for split, colour in (("val", "#2563eb"), ("test", "#ea580c")):
        col = f"auc_{split}"
        if col not in table:
            continue
        fig.add_trace(go.Scatter(x=table["size"].tolist(), y=table[col].tolist(), mode="markers", name=f"{split}, each draw",
                                 marker=dict(color=colour, size=6, opacity=0.45), legendgroup=split))
        means = table.groupby("size")[col].mean()
        fig.add_trace(go.Scatter(x=means.index.tolist(), y=means.tolist(), mode="lines+markers", name=f"{split}, mean",
                                 line=dict(color=colour), legendgroup=split,
                                 hovertemplate=f"{split}: AUC %{{y:.3f}} with %{{x}} images<extra></extra>"))
    if law is not None:
        start = float(table["size"].min())
        stop = min(max(result["images_for"].get(0.99, start), float(table["size"].max())) * 1.2, 1e7)
        n = np.geomspace(start, stop, 60)
        fig.add_trace(go.Scatter(x=n.tolist(), y=(1 - law["a"] * n ** law["b"]).tolist(), mode="lines",
                                 name=f"power law (val): 1 - AUC = {law['a']:.3g} n^{law['b']:.2f}",
                                 line=dict(color="#2563eb", dash="dash"),
                                 hovertemplate="AUC %{y:.3f} with %{x:,.0f} images<extra></extra>"))
    fig.add_hline(y=0.99, line_dash="dot", line_color="grey", annotation_text="AUC 0.99",
                  annotation_position="bottom right")
    fig.update_xaxes(type="log", title="training images of this source (classes balanced)")
    fig.update_yaxes(title="AUC of the probes", range=[max(0.0, float(table.filter(like="auc_").min().min()) - 0.05), 1.0])
    fig.update_layout(title=f"Learning curve: {result['source']}", height=420, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def learning_section() -> None:
    """Would more data of a source help? (detector.learning_curve)"""
    st.caption("The position-aware probes (linear models on the frozen ImageNet EfficientNet-Lite0 maps that the "
               "default model blends into its StyleGAN expert) refitted on growing, class-balanced subsets of one "
               "source's training images, scored on val and test. If AUC still climbs at the full set, more images "
               "of that source would help; the dashed power law says roughly how many. A cheap lower bound on what "
               "the data can teach (no fine-tuning): about 1.5 min for 1,200 images on 2 cores. Same as "
               "`python -m detector learning-curve --source NAME`.")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    base = ui.folder_input("Split root", "lc_folder", container=c1,
                           help="A folder with train/ and val/ (test/ is scored too when present) and a MANIFEST.csv "
                                "whose source column names each image's source.")
    names = _sources(str(base)) if base is not None else []
    source = c2.selectbox("Source", names, key="lc_source", disabled=not names)
    if base is not None and not names:
        st.info("No sources here: the folder needs train/ and val/ splits and a MANIFEST.csv with a source column.",
                icon=":material/info:")
    if st.button("Run learning curve", key="lc_run", icon=":material/trending_up:", disabled=not names):
        bar = st.progress(0.0, text="Reading the images through the frozen trunk...")
        try:  # a heavy job: one at a time on the server, at most jobs.WEB_MAX_FILES images
            with jobs.heavy_job("a learning curve", on_wait=lambda message: bar.progress(0.0, text=message)):
                st.session_state["lc_result"] = learning_curve.run(
                    str(base), source, max_files=jobs.WEB_MAX_FILES, progress=lambda done, total, text: bar.progress(
                        done / total, text=f"{text} ({done} of {total})"))
        except (FileNotFoundError, ValueError, jobs.JobsBusy) as exc:
            st.error(f"Cannot draw a learning curve of {ui.code_md(source)} in {ui.code_md(base)}: {ui.safe_md(exc)}")
        bar.empty()
    result = st.session_state.get("lc_result")
    if not result:
        return
    ui.chart(learning_figure(result), key="lc_figure", filename=f"learning_curve_{result['source']}")
    law = result["law"]
    if law is None:
        st.success("Val AUC reaches 1.0: the data are not the limit.", icon=":material/check_circle:")
    elif law["b"] >= 0:
        st.info("The curve does not climb: more images of this kind may not help; a better learner might.",
                icon=":material/info:")
    else:
        cols = st.columns(len(result["images_for"]))
        for col, (target, n) in zip(cols, result["images_for"].items()):
            col.metric(f"Images for AUC {target}", f"~{n:,.0f}" if np.isfinite(n) else "never",
                       help=f"By the power law through val; this source has {result['n_train']:,} training images.")
    means = summaries.learning_curve_means(result["table"])
    ui.show_table(means, key="lc_table", column_config={
        c: st.column_config.NumberColumn(c, format="%.3f") for c in means.columns if c.startswith("auc_")})
    ui.csv_download(result["table"], f"learning_curve_{result['source']}.csv", "Learning curve CSV", key="lc_csv")


st.title("Training runs")
runs_tab, held_tab, audit_tab, curve_tab = st.tabs(["Runs", "Does it hold on new fakes?", "Data audit",
                                                     "Would more data help?"])
with held_tab:
    matrix_view.show([ui.card(n) for n in ui.model_names()])
with audit_tab:
    audit_section()
with curve_tab:
    learning_section()
with runs_tab:
    st.caption("Shipped models, plus run folders inside the server's data roots (e.g. `runs/`, when the "
               "operator names it a root).")

    base = ui.folder_input("Also look for runs in this folder", "trn_folder",
                           help="A run folder, or a folder holding run folders (each with card.json or history.csv).")

    runs: dict[str, Path] = {n: Path(ui.model_dir(n)) for n in ui.model_names()}
    if base is not None:
        found = ui.run_folders(base)
        if not found:
            st.warning(f"No run folders in {ui.code_md(base)}.")
        known = {p.resolve() for p in runs.values()}
        for p in found:
            if p.resolve() not in known:
                runs[f"{base.name}/{p.name}" if p != base else p.name] = p
    if not runs:
        st.info(f"No runs yet: no models in {ui.code_md(ui.models_root())}. Type a folder above.")
        st.stop()

    # --- summary ---------------------------------------------------------------------------------
    cards = {name: ui.run_card(path) for name, path in runs.items()}


    def epochs_logged(name: str) -> int:
        hist = ui.table(runs[name], store.HISTORY)
        return 0 if hist is None else len(hist)


    summary = pd.DataFrame([summaries.run_summary_row(n, c, epochs_logged(n) if c is None else 0) for n, c in cards.items()])
    ui.show_table(summary, key="trn_summary", column_config={
        **{k: st.column_config.NumberColumn(k, format="%.3f") for k in ("best_val_auc", "test_accuracy")},
        "test_auc": st.column_config.NumberColumn("test_auc", format="%.3f", help=ui.GLOSSARY["auc"]),
        "threshold": st.column_config.NumberColumn("threshold", format="%.3f", help=ui.GLOSSARY["threshold"]),
        "kfold": st.column_config.NumberColumn("kfold", help="Folds of the k-fold run; n/a: trained once, no folds."),
        "averaged_epochs": st.column_config.TextColumn(
            "averaged_epochs", help="Epochs whose weights were averaged (--average-last); n/a: not asked for."),
        "kept_average": st.column_config.TextColumn(
            "kept_average", help="yes: the averaged weights scored no worse on val and were kept; n/a: no averaging."),
        "params": st.column_config.NumberColumn("params", format="localized")})
    st.caption("n/a: not recorded for that run (e.g. no k-fold, no averaging, still training).")
    ui.csv_download(summary, "training_runs.csv", "Runs CSV", key="trn_csv")

    # --- curves --------------------------------------------------------------------------------------
    default = [next(iter(runs))]
    selected = st.multiselect("Runs to plot", list(runs), default=default, key="trn_runs")
    histories = {}
    for name in selected:
        h = ui.table(runs[name], store.HISTORY)
        if h is None or h.empty:
            st.caption(f"{ui.safe_md(name)}: no history.csv.")
            continue
        histories.update(store.history_curves(name, h))  # an experts run: one curve per expert

    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    colour = {n: palette[i % len(palette)] for i, n in enumerate(histories)}


    def curve(metric: str, title: str) -> go.Figure | None:
        fig, drawn = go.Figure(), False
        for name, h in histories.items():
            for col, dash, label in ((metric, "solid", "train"), (f"val_{metric}", "dash", "val")):
                if col in h:
                    drawn = True
                    fig.add_trace(go.Scatter(x=h["x"], y=h[col], mode="lines+markers", name=f"{ui.plot_text(name)} {label}",
                                             line=dict(color=colour[name], dash=dash), marker=dict(size=5)))
            drops = summaries.lr_drops(h)
            if not drops.empty and f"val_{metric}" in h:
                fig.add_trace(go.Scatter(x=drops["x"], y=drops[f"val_{metric}"], mode="markers", showlegend=False,
                                         marker=dict(symbol="triangle-down", size=12, color=colour[name]),
                                         name=f"{ui.plot_text(name)}: learning rate lowered",
                                         hovertemplate="learning rate lowered at epoch %{x}<extra></extra>"))
            side = ("top left", "bottom left", "top right", "bottom right")[list(histories).index(name) % 4]
            for x, phase in summaries.phase_changes(h):  # each run's labels on its own side of the line
                fig.add_vline(x=x, line_dash="dot", line_color=colour[name], annotation_text=phase,
                              annotation_position=side, annotation_font_color=colour[name])
        if not drawn:
            return None
        n_epochs = max(len(h) for h in histories.values())
        fig.update_xaxes(dtick=1 if n_epochs <= 20 else None)
        fig.update_layout(title=title, height=340, xaxis_title="epoch (head, then fine-tuning)",
                          margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
        return fig


    def per_source_curve() -> go.Figure | None:
        """Val AUC of each source by epoch (runs trained with two or more sources log it);
        the thick line is their mean, which picks the kept epoch."""
        fig = go.Figure()
        dashes = ["dash", "dot", "dashdot", "longdash"]
        for name, h in histories.items():
            cols = sorted(c for c in h if c.startswith("val_auc_"))
            for i, col in enumerate(cols):
                fig.add_trace(go.Scatter(x=h["x"], y=h[col], mode="lines+markers", marker=dict(size=5),
                                         name=f"{ui.plot_text(name)} {ui.plot_text(col.removeprefix('val_auc_'))}",
                                         line=dict(color=colour[name], dash=dashes[i % len(dashes)])))
            if "val_source_auc" in h:
                fig.add_trace(go.Scatter(x=h["x"], y=h["val_source_auc"], mode="lines", name=f"{ui.plot_text(name)} mean",
                                         line=dict(color=colour[name], width=4)))
                kept = summaries.kept_point(cards.get(name))
                if kept is not None:
                    fig.add_trace(go.Scatter(x=[kept[0]], y=[kept[1]], mode="markers", name=f"{ui.plot_text(name)} kept",
                                             marker=dict(symbol="star", size=16, color=colour[name],
                                                         line=dict(color="white", width=1)),
                                             hovertemplate=kept[2] + "<extra></extra>"))
        if not fig.data:
            return None
        fig.update_xaxes(dtick=1 if max(len(h) for h in histories.values()) <= 20 else None)
        fig.update_layout(title="Validation AUC per source", height=340, xaxis_title="epoch (head, then fine-tuning)",
                          margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
        return fig


    if histories:
        st.caption("Solid: training, dashed: validation. Dotted vertical line: start of a new phase "
                   "(e.g. fine-tuning). Triangles: the learning rate was lowered. A source-experts run draws "
                   "one curve per expert, each trained on its own source.")
        figs = [curve("loss", "Loss"), curve("accuracy", "Accuracy"), curve("auc", "AUC"), per_source_curve()]
        if any("learning_rate" in h for h in histories.values()):
            lr = go.Figure([go.Scatter(x=h["x"], y=h["learning_rate"], mode="lines+markers", name=ui.plot_text(n),
                                       line=dict(color=colour[n], shape="hv")) for n, h in histories.items()
                            if "learning_rate" in h])
            lr.update_xaxes(dtick=1 if max(len(h) for h in histories.values()) <= 20 else None)
            lr.update_layout(title="Learning rate", height=340, yaxis_type="log", xaxis_title="epoch",
                             margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
            figs.append(lr)
        figs = [f for f in figs if f is not None]
        for i in range(0, len(figs), 2):
            cols = st.columns(2)
            for col, fig, k in zip(cols, figs[i:i + 2], range(i, i + 2)):
                ui.chart(fig, key=f"trn_curve_{k}", filename=f"training_curve_{k}", container=col)

    # --- reports for one run ---------------------------------------------------------------------------
    st.divider()
    with_card = [n for n in runs if cards[n] is not None]
    if not with_card:
        st.stop()
    order = [n for n in selected if n in with_card] + [n for n in with_card if n not in selected]
    run = st.selectbox("Reports for run", order, key="trn_report_run")
    c = cards[run]
    path = runs[run]
    preds = ui.table(path, store.PREDICTIONS)
    threshold = float(c.get("threshold", 0.5))

    for line in (report.familiarity_summary(c), report.probes_summary(c)):
        if line:
            st.caption(line)
    with st.expander("Model card (card.json)"):
        st.json(c, expanded=False)
        if c.get("training", {}).get("command"):
            st.code(c["training"]["command"], language="bash")


    def report_block(df: pd.DataFrame, thr: float, key: str) -> None:
        left, right = st.columns([2, 3])
        counts = evaluation.confusion_counts(df["label"], df["p_fake"], thr)
        ui.chart(ui.confusion_figure(counts, f"threshold {thr:.3f}, n = {len(df)}"), key=f"{key}_cm",
                 filename=f"confusion_{key}", container=left)
        rep = summaries.report_frame(evaluation.classification_report_dict(df["label"], df["p_fake"], thr))
        met = evaluation.binary_metrics(df["label"], df["p_fake"], thr)
        with right:
            ui.show_table(rep, key=f"{key}_report", column_config={
                k: st.column_config.NumberColumn(k, format="%.3f") for k in ("precision", "recall", "f1-score")})
            st.caption("n/a: accuracy is one number for both classes (no precision, recall or support of its own).")
            st.caption(f"accuracy {ui.fmt(met['accuracy'])} ({summaries.interval(met['accuracy_ci'])}) · "
                       f"AUC {ui.fmt(met['auc'])} ({summaries.interval(met['auc_ci'])}) · AP {ui.fmt(met['ap'])} · "
                       f"EER {ui.fmt(met['eer'])} · F1 (fake) {ui.fmt(met['f1'])} · in parentheses: 95% confidence "
                       "intervals (Wilson, DeLong)")
            per = summaries.per_source_frame(df, thr)
            if per is not None:
                ui.show_table(per, key=f"{key}_sources", column_config={
                    k: st.column_config.NumberColumn(k, format="%.3f")
                    for k in ("accuracy", "precision", "recall", "f1", "auc", "eer")})


    folds = ui.table(path, store.FOLDS)
    if folds is not None and not folds.empty:
        st.subheader(f"{len(folds)}-fold cross-validation")
        num = summaries.fold_metrics(folds)
        ui.show_table(summaries.folds_table(folds), key="trn_folds", column_config={
                         **{k: st.column_config.NumberColumn(k, format="%.3f") for k in num},
                         **{k: st.column_config.NumberColumn(k, format="%d") for k in folds if k not in num}})
        st.caption(summaries.folds_line(folds))
        cv = preds[preds["split"] == "cv"] if preds is not None else None
        if cv is not None and not cv.empty:
            st.markdown("**Pooled held-out folds** (threshold 0.5, as the folds were scored)")
            report_block(cv, 0.5, "trn_cv")

    st.subheader("Test report")
    if preds is None:
        st.caption("No predictions.csv in this run.")
    else:
        for split in ("test", "val"):
            part = preds[preds["split"] == split]
            if not part.empty:
                if split != "test":
                    st.caption("No test split in this run: the validation split is shown.")
                report_block(part, threshold, f"trn_{split}")
                break
