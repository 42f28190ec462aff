"""Compare: shipped models side by side on their saved predictions (predictions.csv).

Everything here is recomputed from the predictions at the thresholds of the sliders, so
this page needs no TensorFlow: store/evaluation/pandas/plotly only.
"""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from detector import evaluation
from pages import ui

SPLIT_ORDER = {"test": 0, "val": 1, "cv": 2}

st.title("Compare models")
st.caption("Metrics, confusion matrices and curves recomputed from each model's saved "
           "predictions on a labelled split. Move a threshold slider: everything follows.")

names = ui.require_models()
chosen = st.multiselect("Models", names, default=names, key="cmp_models", format_func=ui.model_label)
if not chosen:
    st.info("Choose at least one model.")
    st.stop()

preds = {m: ui.predictions(m) for m in chosen}
if missing := [m for m, p in preds.items() if p is None]:
    st.warning(f"No predictions.csv for: {', '.join(missing)} (re-run training or `python -m detector evaluate`).")
preds = {m: p for m, p in preds.items() if p is not None}
if not preds:
    st.stop()

splits = sorted({s for p in preds.values() for s in p["split"].dropna().astype(str).unique()},
                key=lambda s: (SPLIT_ORDER.get(s, 9), s))
split = st.selectbox("Labelled split", splits, index=0, key="cmp_split",
                     help="test: held out from training and threshold choice (the honest numbers). "
                          "val: used to pick each threshold. cv: k-fold held-out scores.")
data = {m: p[p["split"].astype(str) == split].reset_index(drop=True) for m, p in preds.items()}
if empty := [m for m, d in data.items() if d.empty]:
    st.caption(f"No {split} predictions for: {', '.join(empty)}.")
data = {m: d for m, d in data.items() if not d.empty}
if not data:
    st.stop()
if split == "cv":
    st.info("k-fold scores are uncalibrated fold models (folds.csv used threshold 0.5); "
            "the card thresholds are for the final calibrated model.")
models = list(data)
cards = {m: ui.card(m) for m in models}

# --- thresholds ------------------------------------------------------------------------------
st.subheader("Operating thresholds")
per_row = min(len(models), 4)
cols = st.columns(per_row)
thr = {}
for i, m in enumerate(models):
    default = float(cards[m].get("threshold", 0.5))
    thr[m] = ui.threshold_slider(m, default, key=f"cmp_thr_{m}", container=cols[i % per_row],
                                 help=f"Default {default:.3f}: the threshold chosen on validation data.")

# --- metrics table ------------------------------------------------------------------------------
rows, source_rows = [], []
for m, d in data.items():
    met = evaluation.binary_metrics(d["label"], d["p_fake"], thr[m])
    c = cards[m]
    rows.append({"model": m, "n": met["n"], "accuracy": met["accuracy"], "precision": met["precision"],
                 "recall": met["recall"], "f1": met["f1"], "auc": met["auc"], "ap": met["ap"], "eer": met["eer"],
                 **met["confusion"], "threshold": thr[m], "params": c.get("params"), "file_mb": c.get("file_mb"),
                 "architecture": c.get("architecture"), "input_size": c.get("input_size")})
    per = ui.per_source_frame(d, thr[m])
    if per is not None:
        source_rows.append(per.assign(model=m))
metrics = pd.DataFrame(rows)
st.subheader(f"Metrics on {split} ({', '.join(f'{m}: {len(d)}' for m, d in data.items())} images)")
number = {k: st.column_config.NumberColumn(k, format="%.3f")
          for k in ("accuracy", "precision", "recall", "f1", "auc", "ap", "eer", "threshold")}
st.dataframe(metrics, hide_index=True, key="cmp_metrics", column_config={
    **number, "params": st.column_config.NumberColumn("params", format="localized"),
    "eer": st.column_config.NumberColumn("EER", format="%.3f", help="Equal error rate: lower is better"),
    "tn": st.column_config.NumberColumn("TN", help="real judged real"),
    "fp": st.column_config.NumberColumn("FP", help="real judged fake"),
    "fn": st.column_config.NumberColumn("FN", help="fake judged real"),
    "tp": st.column_config.NumberColumn("TP", help="fake judged fake")})

per_source = pd.concat(source_rows, ignore_index=True) if source_rows else None
if per_source is not None:
    per_source = per_source[["model", *[c for c in per_source.columns if c != "model"]]]
    st.markdown("**Per source** (a detector often generalises unevenly across generators)")
    st.dataframe(per_source, hide_index=True, key="cmp_per_source",
                 column_config={k: st.column_config.NumberColumn(k, format="%.3f")
                                for k in ("accuracy", "precision", "recall", "f1", "auc", "eer")})
export = pd.concat([metrics.assign(source="ALL")] + ([per_source] if per_source is not None else []),
                   ignore_index=True)
ui.csv_download(export.assign(split=split), f"compare_{split}.csv", "Metrics CSV", key="cmp_csv")

# --- confusion matrices ---------------------------------------------------------------------
st.subheader("Confusion matrices")
counts = {m: evaluation.confusion_counts(d["label"], d["p_fake"], thr[m]) for m, d in data.items()}
cols = st.columns(per_row)
for i, m in enumerate(models):
    with cols[i % per_row]:
        st.plotly_chart(ui.confusion_figure(counts[m], f"{m} @ {thr[m]:.3f}"), key=f"cmp_cm_{m}")

# --- ROC and PR ----------------------------------------------------------------------------------
palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
colour = {m: palette[i % len(palette)] for i, m in enumerate(models)}
roc, pr = go.Figure(), go.Figure()
roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"),
                         name="chance", hoverinfo="skip"))
for m, d in data.items():
    r = evaluation.roc_points(d["label"], d["p_fake"])
    p = evaluation.pr_points(d["label"], d["p_fake"])
    if r.empty:
        st.caption(f"{m}: only one class in this split, no curves.")
        continue
    met = metrics.set_index("model").loc[m]
    roc.add_trace(go.Scatter(x=r["fpr"], y=r["tpr"], mode="lines", name=f"{m} (AUC {met['auc']:.3f})",
                             line=dict(color=colour[m]), customdata=r["threshold"],
                             hovertemplate="FPR %{x:.3f}, TPR %{y:.3f}, threshold %{customdata:.3f}"))
    pr.add_trace(go.Scatter(x=p["recall"], y=p["precision"], mode="lines", name=f"{m} (AP {met['ap']:.3f})",
                            line=dict(color=colour[m]), customdata=p["threshold"],
                            hovertemplate="recall %{x:.3f}, precision %{y:.3f}, threshold %{customdata:.3f}"))
    c = counts[m]
    fpr = c["fp"] / max(c["fp"] + c["tn"], 1)
    tpr = c["tp"] / max(c["tp"] + c["fn"], 1)
    prec = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
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
c1.plotly_chart(roc, key="cmp_roc")
c2.plotly_chart(pr, key="cmp_pr")

# --- score histograms ---------------------------------------------------------------------------
st.subheader("Score distributions")
st.caption("P(fake) of real (green) and fake (red) images; the dashed line is the threshold. "
           "Overlap is where mistakes happen.")
cols = st.columns(per_row)
for i, (m, d) in enumerate(data.items()):
    y = ui.labels01(d)
    lo, hi = float(d["p_fake"].min()), float(d["p_fake"].max())
    size = max((hi - lo) / 40, 1e-4)  # shared bins for both classes, fitted to the scores' range
    fig = go.Figure()
    for cls, name, col in ((0, "real", "#16a34a"), (1, "fake", "#dc2626")):
        fig.add_trace(go.Histogram(x=d["p_fake"][y == cls], name=name, marker_color=col, opacity=0.6,
                                   xbins=dict(start=lo, end=hi + size, size=size)))
    fig.add_vline(x=thr[m], line_dash="dash", line_color="black")
    fig.update_layout(barmode="overlay", title=m, height=300, xaxis_title="P(fake)", yaxis_title="images",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=1.12, x=0.6))
    with cols[i % per_row]:
        st.plotly_chart(fig, key=f"cmp_hist_{m}")

# --- disagreements --------------------------------------------------------------------------------
if len(models) > 1:
    st.subheader("Disagreements")
    wide = None
    for m, d in data.items():
        part = d[["path", "label", "p_fake"]].drop_duplicates("path").rename(columns={"p_fake": m})
        wide = part if wide is None else wide.merge(part.drop(columns="label"), on="path", how="inner")
    calls = pd.DataFrame({m: np.where(wide[m] >= thr[m], "fake", "real") for m in models})
    differ = calls.nunique(axis=1) > 1
    st.caption(f"{int(differ.sum())} of {len(wide)} images get different verdicts from the chosen models "
               "at their thresholds.")
    if differ.any():
        show = wide[differ.to_numpy()].copy()
        for m in models:
            show[f"verdict[{m}]"] = calls.loc[differ, m].to_numpy()
        st.dataframe(show.head(500), hide_index=True, key="cmp_disagree")
