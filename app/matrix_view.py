"""The cross-source matrix as a heatmap (Training page, "Does it hold on new fakes?" tab):
rows what a detector was trained on, columns what it was tested on; data from
`detector.generalization` (the shipped models' cards, written by `python -m detector
generalization --record`)."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import ui
from detector import generalization

METRICS = {"AUC": "auc", "accuracy": "accuracy", "fakes caught": "recall", "reals called fake": "real_called_fake",
           "caught at 10% reals flagged": "caught_at_10pct_fpr", "fakes passed as real, no warning": "fake_passed_as_real"}
#: Metrics where lower is better: coloured the other way round.
LOWER_IS_BETTER = {"real_called_fake", "fake_passed_as_real"}


def heatmap(frame, metric: str, title: str) -> go.Figure:
    """One metric of a `generalization.long_frame` as a heatmap with the value in each cell;
    held-out columns are marked, and the metrics where lower is better are coloured the other way round."""
    table = frame.pivot(index="trained_on", columns="tested_on", values=METRICS[metric])
    kinds = frame.drop_duplicates("tested_on").set_index("tested_on")["kind"]
    columns = list(dict.fromkeys(frame["tested_on"]))
    table = table.reindex(index=list(dict.fromkeys(frame["trained_on"])), columns=columns)
    labels = [f"{c}<br>({'held-out' if kinds.get(c) == 'held-out generator' else 'test split'})" for c in columns]
    text = [[ui.fmt(v, 2) for v in row] for row in table.to_numpy()]
    reverse = METRICS[metric] in LOWER_IS_BETTER
    fig = go.Figure(go.Heatmap(z=table.to_numpy(dtype=float), x=labels, y=list(table.index), text=text,
                               texttemplate="%{text}", zmin=0.0 if metric != "AUC" else 0.4, zmax=1.0,
                               colorscale="RdYlGn_r" if reverse else "RdYlGn", colorbar=dict(title=metric),
                               hovertemplate="trained: %{y}<br>tested: %{x}<br>" + metric + ": %{text}<extra></extra>"))
    fig.update_layout(title=ui.chart_title(title), height=140 + 60 * len(table), margin=dict(t=70, l=10, r=10, b=10),
                      yaxis=dict(autorange="reversed"))
    return fig


def _draw(result: dict, metric: str, title: str, key: str) -> None:
    frame = generalization.long_frame(result)
    ui.chart(heatmap(frame, metric, title), key=f"{key}_heatmap", filename=key, width="stretch")
    ui.show_table(frame, key=f"{key}_table")
    ui.csv_download(frame, f"{key}.csv", "Matrix CSV", key=f"{key}_csv")


def show(cards: list[dict]) -> None:
    result = generalization.shipped_result(cards)
    st.caption(result["explain"])
    metric = st.segmented_control("Metric", list(METRICS), default="AUC", key="gen_metric",
                                  help="AUC: how well scores rank fakes above reals (0.5 = guessing). Fakes caught "
                                       "and reals called fake: at each row's own threshold. Caught at 10% reals flagged: the "
                                       "most fakes any threshold catches while calling at most 1 real photo in "
                                       "10 fake (what the default is chosen by). Fakes passed as real, no warning: fakes the Detect "
                                       "page calls REAL without marking them cannot judge (unlike the training faces): the "
                                       "misses that mislead.") or "AUC"
    if result["rows"]:
        _draw(result, metric, f"{metric}: shipped models (rows) on each test set (columns)", "generalization_matrix")
    else:
        st.info("No shipped model has held-out numbers yet: run `python -m detector generalization "
                "../shared/data --heldout ../shared/heldout/stylegan3 ../shared/heldout/diffusion_sd21 "
                "--model NAME --record`.")
    upload = st.file_uploader("Or draw a matrix saved from `python -m detector generalization ... --json`",
                              type=["json"], key="gen_upload",
                              help="e.g. a leave-one-source-out matrix of a frozen-feature recipe (--recipe dinov2): "
                                   "rows trained without one source, that source's column is the number that matters.")
    if upload is not None:
        try:
            loaded = generalization.load_result(upload.getvalue())
        except ValueError as exc:
            st.error(f"Not a generalization matrix: {ui.safe_md(str(exc))}")
            return
        what = loaded.get("model") or f"recipe {loaded.get('recipe')}"
        _draw(loaded, metric, f"{metric}: {what}, trained on (rows) x tested on (columns)", "generalization_loaded")
