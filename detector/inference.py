"""Image -> per-face verdicts. The one scoring path behind the CLI, the evaluator and the app:

    decode (images) -> faces (faces) -> resize_to model size -> model -> calibration -> verdict

A `Detector` wraps one model folder: the Keras model with a fixed-signature forward
function (no retracing), the calibration (temperature + bias) and the decision threshold from its card.
For a source-experts model the same forward pass also gives the router's weights, so each
face says which expert judged it; when the folder holds a novelty reference, it also says how
unlike the training faces each face is (`detector.novelty`).
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detector import clip_expert, evaluation, faces, fastpath, images, novelty, store

FAKE, REAL, UNCERTAIN = "FAKE", "REAL", "UNCERTAIN"
NO_FACE, CANNOT_JUDGE = "NO FACE", "CANNOT JUDGE"
"""The verdicts of a region the model cannot vouch for (`cannot_judge`): it is still scored,
and the score is kept for whoever asks, but it gets no REAL/FAKE and is counted in neither."""
NOT_JUDGED = (NO_FACE, CANNOT_JUDGE)

MIN_FACE_SIDE = 64
"""Smallest region (the square cut around a face, in the image's own pixels) that gets a
REAL/FAKE verdict. The models read blending seams and skin texture; a smaller cut is blown up
several times to the model's input size, and those traces are gone: its score is noise."""

NO_FACE_REASON = "no face found: the whole image was scored, and the models only know faces"
SMALL_FACE_REASON = ("the face is {side} px, below the {min_side} px the model needs: "
                     "too few pixels to show the traces of a fake")
UNFAMILIAR_REASON = ("the face is unlike the faces the model was trained on (novelty {novelty:.2f}, "
                     "above {limit:g}): its score cannot be trusted")


def verdict_for(p_fake: float, threshold: float, band: float = 0.0) -> str:
    """FAKE at or above the threshold, REAL below; UNCERTAIN within +-band of it."""
    if band > 0 and abs(p_fake - threshold) < band:
        return UNCERTAIN
    return FAKE if p_fake >= threshold else REAL


def cannot_judge(kind: str, box: tuple[int, int, int, int], novelty_value: float | None = None
                 ) -> tuple[str, str] | None:
    """The one rule for regions that get no REAL/FAKE verdict, used by the Detect page, its
    CSV and HTML report and `python -m detector predict` alike: (NO_FACE or CANNOT_JUDGE,
    the reason in words), or None when the region can be judged. In this order:

    * no face was found (`faces` scored the whole image, kind "no_face"): NO_FACE;
    * the region's short side is under `MIN_FACE_SIDE` pixels: CANNOT_JUDGE;
    * the model's novelty check calls the face unfamiliar (`novelty.unfamiliar`): CANNOT_JUDGE.

    A model without a novelty reference skips the last check (novelty None)."""
    if kind == "no_face":
        return NO_FACE, NO_FACE_REASON
    side = int(min(box[2], box[3]))
    if side < MIN_FACE_SIDE:
        return CANNOT_JUDGE, SMALL_FACE_REASON.format(side=side, min_side=MIN_FACE_SIDE)
    if novelty_value is not None and bool(novelty.unfamiliar(novelty_value)):
        return CANNOT_JUDGE, UNFAMILIAR_REASON.format(novelty=float(novelty_value), limit=novelty.LIMIT)
    return None


def judged_verdict(p_fake: float, threshold: float, band: float, kind: str, box: tuple[int, int, int, int],
                   novelty_value: float | None = None) -> str:
    """The verdict shown for a region: NO_FACE / CANNOT_JUDGE by `cannot_judge`, else
    `verdict_for` its score."""
    refused = cannot_judge(kind, box, novelty_value)
    return refused[0] if refused else verdict_for(p_fake, threshold, band)


def most_fake(items: list, judgeable) -> object:
    """The item an image's verdict rests on: its most fake judgeable face, or its most fake
    region when none can be judged (then the image's verdict is NO_FACE / CANNOT_JUDGE)."""
    pool = [f for f in items if judgeable(f)] or items
    return max(pool, key=lambda f: f.p_fake)


@dataclass
class FaceResult:
    region: faces.FaceRegion
    p_fake: float
    verdict: str
    heatmap: np.ndarray | None = field(default=None, repr=False)
    route: dict[str, float] | None = None  # experts model: router weight per source expert
    novelty: float | None = None  # distance from the training faces / the familiar limit (> 1: unfamiliar)
    reason: str = ""  # why the verdict is NO_FACE / CANNOT_JUDGE (`cannot_judge`), "" when judged


@dataclass
class BatchScores:
    """What one forward pass says about a batch of faces."""
    p_fake: np.ndarray                 # calibrated P(fake)
    route: np.ndarray | None = None    # (N, K) router weights in `Detector.sources` order
    novelty: np.ndarray | None = None  # see `detector.novelty`; None without a reference

    @classmethod
    def concat(cls, parts: list[BatchScores]) -> BatchScores:
        def join(name):
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)
        return cls(join("p_fake"), join("route"), join("novelty"))


@dataclass
class ImageError:
    """The error variant of an image's result: a file that could not be analysed (unreadable,
    not an image, the analysis failed). Results lists (the Detect page's, `predict`'s) hold
    `report.ImageScore`s and `ImageError`s; the table, the HTML and PDF reports show an
    ImageError as an ERROR row with its reason. `sha256` is of the bytes when they were read."""
    name: str
    error: str
    model: str = ""
    sha256: str = ""


@dataclass
class ImageResult:
    faces: list[FaceResult]
    model: str
    threshold: float
    seconds: float

    @property
    def worst(self) -> FaceResult:
        """The image's verdict is its most fake face that can be judged (`most_fake`)."""
        return most_fake(self.faces, lambda f: f.reason == "")

    @property
    def p_fake(self) -> float:
        return self.worst.p_fake

    @property
    def verdict(self) -> str:
        return self.worst.verdict

    @property
    def no_face(self) -> bool:
        return len(self.faces) == 1 and self.faces[0].region.kind == "no_face"


class Detector:
    """One loaded model folder, ready to score face crops. Shared and read-only."""

    def __init__(self, name_or_path: str | Path | None = None, use_fast_path: bool = True):
        import keras
        import tensorflow as tf

        self.card = store.read_card(name_or_path)
        self.name = self.card["name"]
        self.model = store.load_keras_model(self.card["dir"])
        self.size = int(self.card["input_size"])
        self.threshold = float(self.card.get("threshold", 0.5))
        self.temperature = float(self.card.get("temperature", 1.0))
        self.bias = float(self.card.get("bias", 0.0))
        self.gradcam_layer = self.card.get("gradcam_layer")
        from detector import layers

        # One forward pass gives everything shown per face: P(fake), the router's weights of
        # an experts model, and the features that say how familiar the face is.
        outputs = {"p": self.model.output}
        routed = layers.router_output(self.model)
        self.sources = routed[1] if routed else None  # router order; None for a single network
        if routed:
            outputs["route"] = routed[0]
        self.familiarity = novelty.load(self.card["dir"])  # None: the folder has no reference
        if self.familiarity is not None:
            outputs["features"] = novelty.feature_output(self.model, self.familiarity.layers)
        # a CLIP expert blended into one expert (`detector.clip_expert`): the mixture's inputs
        # come out of the same pass, and the mixture is redone with the CLIP score blended in
        self.clip = clip_expert.load(self.card["dir"])
        if self.clip is not None:
            if not routed or self.clip.source not in self.sources:
                raise ValueError(f"{self.card['dir']}: a CLIP expert for {self.clip.source!r} needs an "
                                 "experts model with that source")
            mixture = self.model.get_layer("mixture")
            outputs.update({f"expert_{k}": t for k, t in enumerate(mixture.input[1:])})
            self._mixture = (list(mixture.temperatures), list(mixture.biases), self.sources.index(self.clip.source))
        net = keras.Model(self.model.inputs, outputs)
        self._forward = tf.function(
            lambda x: net(x, training=False),
            input_signature=[tf.TensorSpec([None, self.size, self.size, 3], tf.float32)],
            # no AutoGraph: it would write the converted lambda as a .py file to the temp
            # folder on the first trace, and uploads must never touch the disk
            autograph=False,
        )
        # the verified LiteRT copy, when the folder has one; a copy whose bytes are not the
        # verified ones (card's fast_path.sha256) raises fastpath.FastPathError: never run
        self.fast = fastpath.verified_runner(self.card) if use_fast_path and self.clip is None else None
        if self.fast is not None and self.familiarity is not None and not self.fast.has_features():
            # a copy exported before the reference existed gives P(fake) only: the features
            # then come from the Keras layers below them
            self._features = novelty.extractor(self.model, self.familiarity.layers)
        self.score_batch(np.zeros((1, self.size, self.size, 3), np.uint8))  # warm-up: trace once

    def prepare(self, crops: list[np.ndarray]) -> np.ndarray:
        """Face crops of any size -> (N, S, S, 3) uint8 through the one resize."""
        return np.stack([images.resize_to(c, self.size) for c in crops])

    def raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(N, S, S, 3) uint8 at the model's size -> (P(fake) before the card's calibration,
        the router's weights or None, the novelty features or None). A verified LiteRT copy
        gives P(fake) and the novelty features in one call (a copy exported without them: the
        Keras layers below the features run beside it); it has no router. With a CLIP expert
        the mixture is redone in numpy with its score blended into its source's expert."""
        pixels = batch
        batch = np.asarray(batch, np.float32)
        if self.fast is not None:
            raw, features = self.fast.run(batch)
            route = None
            if self.familiarity is not None and features is None:
                features = self._features(batch)
            return raw.reshape(-1), route, features
        out = {k: v.numpy() for k, v in self._forward(batch).items()}
        raw, route, features = out["p"].reshape(-1), out.get("route"), out.get("features")
        if self.clip is not None:
            temperatures, biases, index = self._mixture
            raw = clip_expert.remix(route, [out[f"expert_{k}"] for k in range(len(temperatures))],
                                    temperatures, biases, index, self.clip.score(pixels), self.clip.weight)
        return raw, route, features

    def score(self, batch: np.ndarray) -> BatchScores:
        """(N, S, S, 3) uint8 at the model's size -> calibrated P(fake), with the router's
        weights (experts model) and each face's novelty (folder with a reference)."""
        raw, route, features = self.raw(batch)
        familiar = None if self.familiarity is None or features is None else self.familiarity.novelty(features)
        return BatchScores(evaluation.apply_temperature(raw, self.temperature, self.bias), route, familiar)

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 at the model's size -> calibrated P(fake)."""
        return self.score(batch).p_fake

    def score_crops(self, crops: list[np.ndarray], batch_size: int = 64) -> BatchScores:
        """Face crops (or whole images) of any size, each through the one resize -> scores."""
        if not crops:
            return BatchScores(np.zeros(0))
        return BatchScores.concat([self.score(self.prepare(crops[i:i + batch_size]))
                                   for i in range(0, len(crops), batch_size)])

    def heatmaps(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        from detector import explain

        if not crops or not self.gradcam_layer:
            return [None] * len(crops)
        return list(explain.gradcam(self.model, self.prepare(crops).astype(np.float32), self.gradcam_layer))

    def analyze(self, rgb: np.ndarray, *, threshold: float | None = None, band: float = 0.0,
                gradcam: bool = False, regions: list[faces.FaceRegion] | None = None) -> ImageResult:
        """Every face of an RGB image scored in one batch (the whole image if none)."""
        t0 = time.perf_counter()
        threshold = self.threshold if threshold is None else threshold
        regions = regions if regions is not None else faces.find_faces(rgb)
        crops = [r.crop for r in regions]
        scored = self.score_crops(crops)
        maps = self.heatmaps(crops) if gradcam else [None] * len(crops)
        routes = ([None] * len(crops) if scored.route is None else
                  [{s: round(float(w), 4) for s, w in zip(self.sources, g)} for g in scored.route])
        novelties = [None] * len(crops) if scored.novelty is None else [round(float(v), 3) for v in scored.novelty]
        results = []
        for r, p, h, route, nov in zip(regions, scored.p_fake, maps, routes, novelties):
            refused = cannot_judge(r.kind, r.box, nov)
            verdict = refused[0] if refused else verdict_for(float(p), threshold, band)
            results.append(FaceResult(r, float(p), verdict, h, route, nov, refused[1] if refused else ""))
        return ImageResult(results, self.name, threshold, time.perf_counter() - t0)

    def analyze_source(self, source, **kwargs) -> ImageResult:
        """Path, bytes or upload -> result; raises images.ImageDecodeError for bad input."""
        return self.analyze(images.decode_image(source), **kwargs)


@functools.lru_cache(maxsize=store.MAX_LOADED)  # least recently used out: memory stays bounded
def _cached(path: str) -> Detector:
    return Detector(path)


_loading: dict[str, threading.Lock] = {}
_loading_guard = threading.Lock()


def load_detector(name_or_path: str | Path | None = None) -> Detector:
    """A Detector per model folder, built once per process. Two threads asking for the same
    folder at once (a page and the start-up warm-up, `detector.warmup`) get one build: the
    second waits for the first's instead of loading a second copy."""
    path = str(store.resolve(name_or_path))
    with _loading_guard:
        lock = _loading.setdefault(path, threading.Lock())
    with lock:
        return _cached(path)
