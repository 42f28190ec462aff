"""Detect: images (uploads, zips, camera, samples, a server folder) -> per-face verdicts, Grad-CAM,
forensics, CSV/HTML. The results table fills in as the images are scored."""
import functools
import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import evidence as evidence_ui
from app import live_ui, ui
from detector import explain, forensics, images, inputs, memory, report, warmup

st.title("Detect deepfakes")
st.caption("Every face in an image is scored; the image's verdict is its most fake face. An image with no "
           "face, a face too small to judge or unlike the training faces gets NO FACE / CANNOT JUDGE, not "
           "REAL or FAKE. Images are analysed in memory and never stored.")

names = ui.require_models()

# --- settings (sidebar) ------------------------------------------------------------------
with st.sidebar:
    st.subheader("Detection settings")
    primary = ui.model_select("Model", key="det_model")
    extra = st.multiselect("Ensemble with", [n for n in names if n != primary], key="det_ensemble",
                           help="Average the calibrated P(fake) of several models.",
                           disabled=len(names) < 2)
    models = [primary, *extra]
    cards = [ui.card(m) for m in models]
    card_threshold = float(np.mean([c.get("threshold", 0.5) for c in cards]))
    threshold = ui.threshold_slider(
        "Decision threshold", card_threshold, key="det_thr_" + "+".join(models),
        help=f"P(fake) at or above this is FAKE. Default: the calibrated threshold chosen on "
             f"validation data ({card_threshold:.3f}" + (", mean of the models" if len(models) > 1 else "") + ").")
    band = st.slider("Uncertainty band (±)", 0.0, 0.25, 0.05, 0.01, key="det_band",
                     help="Scores this close to the threshold are reported as UNCERTAIN.")
    gradcam = st.toggle("Grad-CAM heatmaps", value=True, key="det_gradcam",
                        help=f"Where {primary} looked: red regions pushed the score towards fake.")
    alpha = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="det_alpha", disabled=not gradcam)
    show_forensics = st.toggle("Forensic views", value=False, key="det_forensics",
                               help="Error level analysis, FFT spectrum and EXIF per image.")
    stable = evidence_ui.stability_toggle()
    c = cards[0]
    test = (c.get("metrics") or {}).get("test") or {}
    st.caption(f"**{primary}**: {c.get('architecture', '?')}, {c.get('input_size', '?')} px input, "
               f"test accuracy {ui.fmt(test.get('accuracy'))}, AUC {ui.fmt(test.get('auc'))}."
               + ("" if (c.get("novelty") or {}).get("usable", True) else
                  " It cannot flag unfamiliar faces: its features do not tell a blurred smear or noise "
                  "from a training face."))

# --- inputs ------------------------------------------------------------------------------
# no `type=` filter: the browser would drop other files with only a red mark on the chip; here each
# one is listed below with the reason (inputs.expand). The size limit is server.maxUploadSize
# (.streamlit/config.toml), kept equal to inputs.MAX_MEMBER_BYTES.
uploads = st.file_uploader("Images or zips of images", accept_multiple_files=True, key="det_upload",
                           help="JPEG, PNG, WebP, BMP, GIF (first frame) or TIFF; several at once; each file "
                                f"(a zip too) up to {inputs.MAX_MEMBER_BYTES // 1024 ** 2} MB and "
                                f"{images.WEB_MAX_PIXELS / 1e6:g} megapixels. A .zip is opened "
                                f"in memory: up to {inputs.MAX_MEMBERS} of its images are analysed. Other files "
                                "are listed with the reason they were not analysed.")
left, right = st.columns([3, 1], vertical_alignment="bottom")
samples = {p.name: p for p in ui.sample_files()}
sample_label = inputs.sample_labels(ui.SAMPLES_DIR)
chosen = left.multiselect("Or try sample images", list(samples), key="det_samples",
                          format_func=lambda n: f"{n} ({sample_label[n]})" if n in sample_label else n,
                          help="Public-domain pictures shipped with the project, and fakes it made from them "
                               "(see sample_images/SOURCES.md). A sample marked real or fake is checked: the "
                               "table says whether its verdict was right.")
camera_on = right.toggle("Use the camera", key="det_camera_on")
photo = st.camera_input("Take a photo", key="det_camera") if camera_on else None
live_on = right.toggle("Live camera", key="det_live_on",
                       help=f"Stream the camera: faces boxed and labelled live by {primary}; freeze a frame to analyse it.")
frozen = live_ui.live_camera(primary, threshold, band) if live_on else None

folder_items: list[inputs.Entry] = []
folder_path = ui.folder_input(  # confined to the operator's data roots; off without them (detector.roots)
    "Or analyse images in a folder on the server", "det_folder",
    placeholder="a folder of images, or of real/ and fake/ sub-folders",
    help="Images below a folder named real or fake carry that label, and the table then "
         "says whether each verdict was right. Sub-folders are searched too; a folder of "
         f"more than {inputs.MAX_LISTED} images lists a balanced sample across its labels "
         "(the same every time).")
folder = str(folder_path) if folder_path is not None else ""
if folder.strip():
    try:
        listing = inputs.list_folder(folder)
    except (OSError, ValueError) as exc:
        st.warning(f"Cannot use this folder: {ui.safe_md(exc)}", icon=":material/folder_off:")
    else:
        n, found = listing.counts(), listing.found or listing.counts()
        st.caption(f"{len(listing.files)} image(s) listed in {ui.code_md(listing.root)}: {n['real']} real, {n['fake']} fake, "
                   f"{n['unlabelled']} unlabelled."
                   + (f" The folder holds more ({found['real']} real, {found['fake']} fake, {found['unlabelled']} "
                      f"unlabelled found): the list is a "
                      f"balanced sample of {inputs.MAX_LISTED} across the labels, the same every time."
                      if listing.truncated else ""))
        f1, f2 = st.columns([1, 4], vertical_alignment="bottom")
        use_all = f1.checkbox(f"All {len(listing.files)}", key="det_folder_all")
        picked = f2.multiselect("Images from the folder", listing.files, key="det_folder_pick",
                                disabled=use_all, placeholder="Pick images, or tick 'All'")
        folder_items = inputs.read_folder(listing, listing.files if use_all else picked)

entries = inputs.expand((u.name, u.getvalue()) for u in uploads or [])
if photo is not None:
    entries.append(inputs.Entry("camera photo", photo.getvalue()))
if frozen is not None:
    entries.append(inputs.Entry("live camera (frozen frame)", frozen))
entries += [inputs.Entry(f"sample: {n}", samples[n].read_bytes(), "", sample_label.get(n, "")) for n in chosen]
entries += folder_items

if not entries:
    st.info("Add images above: upload images or a zip, take a photo, pick a sample or name a folder.")
    st.stop()

# --- scoring: the table and the counts grow as the images are scored ------------------------
# what a verdict of these models covers, shown beside every verdict (report.coverage_text)
coverage = (report.coverage_text(cards[0]) if len(models) == 1 else
            " ".join(f"{m}: {report.coverage_text(c)}" for m, c in zip(models, cards)))
label = models[0] if len(models) == 1 else "ensemble(" + "+".join(models) + ")"
labels = [e.label for e in entries]
# what is not loaded yet (TensorFlow, MTCNN, each model, Grad-CAM) is loaded up front, the bar saying
# which (#24): the start-up warm-up (streamlit_app) has usually done it; its steps are waited for
bar = st.progress(0.0, text="Preparing...")
warmup.run_all(warmup.plan([ui.model_dir(m) for m in models], gradcam),
               lambda i, n, message: bar.progress(i / n, text=message))
for m in models:
    ui.detector(m)  # the page's own handle (cached), so the bar below measures images, not loading
errors_box = st.container()
summary_slot = st.empty()
table_slot = st.empty()
MAX_ERRORS = 10
COLUMNS = {
    "thumbnail": st.column_config.ImageColumn("image", width="small"),
    "file": st.column_config.TextColumn("file"),
    "label": st.column_config.TextColumn("label", help=report.COLUMN_HELP["label"].capitalize()),
    "faces": st.column_config.NumberColumn("faces", help=report.COLUMN_HELP["faces"].capitalize()),
    "p_fake": st.column_config.ProgressColumn(
        "P(fake)", min_value=0.0, max_value=1.0, format="%.3f",
        help="The model's calibrated probability that the image's most fake judged face is fake. Blank for "
             "NO FACE / CANNOT JUDGE: the image's details (and the CSV) still give the score."),
    "verdict": st.column_config.TextColumn("verdict", help=report.COLUMN_HELP["verdict"].capitalize()),
    "reason": st.column_config.TextColumn("reason", help=report.COLUMN_HELP["reason"].capitalize()),
    "correct": st.column_config.TextColumn("correct", help="right / wrong: the verdict against the label "
                                                           "(empty: no label, or no REAL/FAKE verdict). "
                                                           "Wrong rows are shaded red."),
    "expert": st.column_config.TextColumn(
        "expert", help="Source-experts models route each face to the expert trained on images like it: "
                       + "; ".join(f"{k}: {v}" for k, v in report.SOURCE_KINDS.items())
                       + ". The share is the router's weight for that expert."),
    "unfamiliar": st.column_config.TextColumn(
        "unfamiliar", help="A face in this image is unlike the faces the model was trained on (not a face, "
                           "heavy blur or noise, a tiny face, a drawing...): that face gets CANNOT JUDGE. "
                           "About 1 in 100 ordinary faces is flagged too."),
    "ms": st.column_config.NumberColumn("ms", format="%.0f", help="Time to find faces and score them"),
}


COLUMNS.update(evidence_ui.COLUMNS)


def draw(results: list, final: bool):
    """The counts, the labelled accuracy and the table of the results so far."""
    table = report.results_frame(results, threshold, band, labels=labels[:len(results)], thumbnails=True)
    counts = table["verdict"].value_counts()
    with summary_slot.container():
        for col, (name, n, why) in zip(st.columns(5), (
                ("Fake", counts.get(report.FAKE, 0), None), ("Uncertain", counts.get(report.UNCERTAIN, 0), None),
                ("Real", counts.get(report.REAL, 0), None),
                ("Cannot judge", sum(counts.get(v, 0) for v in report.NOT_JUDGED),
                 "NO FACE / CANNOT JUDGE: no face found, a face too small, or unlike the training faces. "
                 "Counted in neither Real nor Fake."),
                ("Error", counts.get("ERROR", 0), None))):
            col.metric(name, int(n), help=why)
        if "unfamiliar" in table and table["unfamiliar"].fillna(False).any():
            st.caption(f":orange[:material/warning:] {int(table['unfamiliar'].fillna(False).sum())} image(s) hold a "
                       "face unlike the training faces: such a face gets CANNOT JUDGE, not a verdict.")
        acc = report.label_accuracy(table)
        if acc:
            lo, hi = acc["accuracy_ci"]
            rate = f" ({acc['accuracy']:.0%}; 95% interval {lo:.0%}-{hi:.0%})" if acc["decided"] else ""
            st.caption(f"Labelled images: {acc['labelled']}. Correct: {acc['correct']} of {acc['decided']} "
                       f"REAL/FAKE verdicts{rate}; {acc['uncertain']} uncertain, {acc['not_judged']} no face / "
                       f"cannot judge, {acc['errors']} could not be analysed.")
    shown = report.readable_frame(table)
    if "correct" in shown:  # a wrong verdict's row is shaded, so it is seen without reading the column
        shown = shown.style.apply(lambda row: ["background-color: rgba(239, 68, 68, 0.18)" if row["correct"] == "wrong"
                                               else "" for _ in row], axis=1)
    if not final:
        table_slot.dataframe(shown, hide_index=True, column_config=COLUMNS)
        return table, None
    return table, table_slot.dataframe(shown, hide_index=True, key="det_table", on_select="rerun",
                                       selection_mode="multi-row", column_config=COLUMNS)


results: list = []
t_batch = drawn = time.perf_counter()
for i, e in enumerate(entries):
    # the bar's text is Markdown: the name is escaped (an image link there was fetched: #27)
    bar.progress(i / len(entries), text=f"Analysing {ui.safe_md(e.name)} ({i + 1} of {len(entries)})")
    t0 = time.perf_counter()
    data = e.data  # a zip member is decompressed now, once, and let go after this image (#27)
    if data is None:
        results.append(report.ImageError(e.name, e.error, label))
    else:
        try:
            results.append(evidence_ui.score(e.name, data, models, gradcam, stable))
        except images.ImageDecodeError as exc:
            results.append(report.ImageError(e.name, str(exc), label))
        except Exception as exc:  # one failing image must not stop the batch
            results.append(report.ImageError(e.name, f"analysis failed ({type(exc).__name__}: {exc})", label))
    if isinstance(results[-1], report.ImageError) and sum(isinstance(r, report.ImageError) for r in results) <= MAX_ERRORS:
        errors_box.error(f"**{ui.safe_md(e.name)}** could not be analysed: {ui.safe_md(results[-1].error)}",
                         icon=":material/broken_image:")
    now = time.perf_counter()
    # redraw after every image scored now; images from the cache (a rerun) at most twice a second
    if i < len(entries) - 1 and (now - t0 > 0.03 or now - drawn > 0.5):
        draw(results, final=False)
        drawn = time.perf_counter()
data = None  # the last image's bytes are not kept for the rest of the page
evidence_ui.hash_errors(results, entries)
n_errors = sum(isinstance(r, report.ImageError) for r in results)
if n_errors > MAX_ERRORS:
    errors_box.error(f"... and {n_errors - MAX_ERRORS} more file(s) could not be analysed: see the error "
                     "column of the table.", icon=":material/broken_image:")
bar.progress(1.0, text=f"{len(entries)} file(s) in {time.perf_counter() - t_batch:.1f} s "
                       "(unchanged files come from the cache)")
table, event = draw(results, final=True)
memory.release_free_memory()  # give the batch's freed buffers back: a long-lived server stays flat

d1, d2, d3, _ = st.columns([1, 1, 1, 2])
with d1:
    ui.csv_download(evidence_ui.with_custody(table.drop(columns="thumbnail"), models, threshold, band),
                    "deepfake_lab_results.csv", "Results CSV", key="det_csv")
with d2:
    # a partial over the report's inputs only: Streamlit keeps a deferred download's callable
    # after the session ends, and a lambda here would hold the page's globals (every upload) (#27)
    st.download_button("HTML report",
                       functools.partial(report.html_report, results, threshold, band, heatmap_alpha=alpha,
                                         labels=labels, coverage=coverage),
                       file_name="deepfake_lab_report.html", mime="text/html", key="det_html",
                       on_click="ignore", icon=":material/description:",
                       help="One self-contained file: the table, every image with its boxes, faces and heatmaps.")
with d3:
    evidence_ui.pdf_button(results, models, threshold, band, alpha, labels)
with st.expander("What the columns mean (table, CSV and reports)"):
    st.markdown("\n".join(f"- **{c}**: {report.COLUMN_HELP[c]}" for c in table.columns if c in report.COLUMN_HELP))

# --- details per image ------------------------------------------------------------------------
selected = list(getattr(getattr(event, "selection", None), "rows", []) or [])
MAX_DETAILS = 12
shown = selected or list(range(min(len(results), MAX_DETAILS)))
if not selected and len(results) > MAX_DETAILS:
    st.caption(f"Details for the first {MAX_DETAILS} images: select rows in the table to see others.")

for idx in shown:
    r = results[idx]
    if isinstance(r, report.ImageError):
        continue
    verdict = r.verdict(threshold, band)
    right = report.correct(verdict, labels[idx])
    with st.container(border=True):
        h1, h2 = st.columns([3, 2], vertical_alignment="center")
        h1.markdown(f"#### {ui.safe_md(r.name)}")  # a file / zip member name: user text, escaped (#27)
        with h2:
            ui.verdict_heading(verdict)
        if r.judged:
            st.markdown(f"**P(fake) {r.p_fake:.3f}** · {r.model_label} · {r.seconds * 1000:.0f} ms · "
                        f"{r.size[0]}×{r.size[1]} px · {len(r.faces)} region(s) scored")
        else:
            st.info(f"**{verdict}**: {r.reason[0].upper() + r.reason[1:]}. It is counted in neither Real nor "
                    "Fake.", icon=":material/block:")
            with st.expander("Show the score anyway (not a verdict)"):
                st.caption(f"P(fake) {r.p_fake:.3f} from {r.model_label}: a score the model cannot vouch for "
                           f"here. {r.seconds * 1000:.0f} ms · {r.size[0]}×{r.size[1]} px.")
        evidence_ui.headline(r, threshold, band)
        st.caption(coverage)
        if labels[idx]:
            mark = ("" if right is None else " · :green[:material/check: right]" if right
                    else " · :red[**:material/close: wrong**]")
            st.markdown(f"Label: **{labels[idx]}**{mark}")
        if r.note and r.judged:
            st.info(ui.safe_md(r.note), icon=":material/info:")
        pic, facecol = st.columns([1, 1])
        pic.image(report.annotate(r, threshold, band), width="stretch",
                  caption="Boxes numbered as the faces on the right")
        with facecol:
            for j, (f, v) in enumerate(zip(r.faces, r.verdicts(threshold, band)), start=1):
                name = f"Face {j}" if f.kind == "face" else "Whole image"
                st.markdown(f"**{name}**: " + (f"{ui.verdict_markdown(v)} P(fake) {f.p_fake:.3f}" if not f.refused
                                               else f"{ui.verdict_markdown(v)} {f.reason}"))
                # the crop and its heatmap side by side, the same size
                c1, c2 = st.columns(2)
                c1.image(f.crop, caption=name, width="stretch")
                if gradcam and f.heatmap is not None:
                    c2.image(explain.overlay(f.crop, f.heatmap, alpha), caption=f"Grad-CAM, {name.lower()}",
                             width="stretch")
                elif gradcam:
                    c2.caption("No Grad-CAM layer for this model.")
                if f.refused:
                    st.caption(f"Its score, not a verdict: P(fake) {f.p_fake:.3f}.")
                if f.expert and not f.refused:  # a region that was not judged was judged by no expert
                    top = report.top_route(f.route)[0]
                    st.caption(f.expert[0].upper() + f.expert[1:], help=f"This model holds one expert per "
                               f"kind of training image; the router judged this face closest to "
                               f"{report.source_kind(top)}.")
                if f.unfamiliar:
                    text = report.familiarity_text(f.novelty)
                    st.caption(":orange[:material/warning: Unlike the training faces]",
                               help=text[0].upper() + text[1:] + ".")
            if len(r.models) > 1 or len(r.faces) > 1:
                st.dataframe(report.faces_frame(r, threshold, band), hide_index=True)
        evidence_ui.panel(r, threshold, band)
        if show_forensics:
            with st.expander("Forensic views", expanded=True):
                fv = ui.forensic_views(entries[idx].data)
                f1, f2 = st.columns(2)
                f1.image(fv["ela"], width="stretch",
                         caption="Error level analysis (re-saved as JPEG q90, auto contrast): edited or "
                                 "pasted regions often stand out; uniform noise means nothing either way.")
                f2.image(fv["fft"], width="stretch", clamp=True,
                         caption="FFT log spectrum (grey image): regular dots or a grid away from the "
                                 "centre are typical of generator upsampling.")
                prof = fv["profile"]
                fig = go.Figure(go.Scatter(x=np.linspace(0, 1, len(prof)), y=prof, mode="lines"))
                fig.update_layout(height=220, margin=dict(l=10, r=10, t=30, b=10),
                                  title="Radial power spectrum", xaxis_title="frequency (0 = DC, 1 = corner)",
                                  yaxis_title="mean log power")
                st.plotly_chart(fig, key=f"det_prof_{idx}")
                ex = fv["exif"]
                for note in forensics.exif_notes(ex):
                    st.caption(ui.safe_md(note))  # EXIF text (Software, Make, Model) is the file's author's
                rows = {k: ex[k] for k in ("format", "width", "height", "mode", "frames", "bytes",
                                           "jpeg_quality_estimate", "progressive", "icc_profile",
                                           "has_exif", "gps_present") if k in ex}
                rows.update(ex.get("exif") or {})
                st.dataframe([{"field": k, "value": str(v)} for k, v in rows.items()], hide_index=True)
