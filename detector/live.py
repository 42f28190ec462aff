"""Live camera: the frames of a video stream -> each face boxed and labelled, smoothed per face.

The Detect page's "Live camera" mode (streamlit-webrtc) hands every frame the browser sends to
`LiveProcessor.video_frame_callback` and sends back what it returns. Nothing here imports
Streamlit, and no frame is ever written to disk: the last raw frame is kept in memory only, for
the page's "freeze" button, which runs it through the normal Detect path.

One frame's analysis is the Detect page's, made cheaper where it can be:

* faces are found (`faces.find_faces`, the same rules: 1.3x squares, a face that fills the frame
  is judged whole) on a copy whose longest side is `DETECT_SIDE`; each region is then cut from
  the full-size frame, so the model sees the same pixels as on a photo;
* the regions are scored in one batch by `inference.Detector.score_crops` (its LiteRT fast path
  when the model folder has a verified one);
* the label of a face is `inference.judged_verdict` (the one rule: NO FACE / CANNOT JUDGE by
  `inference.cannot_judge`, else REAL / FAKE / UNCERTAIN by the threshold and band) applied to
  its P(fake) and novelty averaged over the last `WINDOW` analyses of its track. A track follows
  a face from frame to frame by box overlap (IoU), so one bad frame does not flip a label.

Keeping up: the analysis runs in its own thread on the newest frame only (older ones are
skipped), while the frame callback just draws the newest labels on the frame it got and returns
it. So the stream comes back at the camera's rate and every k-th frame is analysed, k being
whatever the analysis time allows (about camera fps / analysed fps); skipped frames carry the last
boxes. `background=False` analyses every frame inline instead (tests, scripts).
"""
from __future__ import annotations

import io
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from detector import faces, images, inference, report

DETECT_SIDE = 320
"""Longest side of the copy that faces are looked for in. MTCNN's smallest face is 20 px there:
in a 640x480 frame, a face from about 40 px, and a face needs a 64 px square to be judged anyway
(`inference.MIN_FACE_SIDE`)."""
WINDOW = 5        # a track's label averages its last WINDOW analysed frames
MATCH_IOU = 0.3   # a face continues a track when their boxes overlap at least this much (IoU)
MAX_MISSES = 2    # a track not matched in this many analyses in a row is dropped
IDLE_EXIT_S = 5.0  # the analysis thread ends after this long without a new frame
ICE_ENV = "DEEPFAKE_LAB_ICE_SERVERS"
"""The ICE servers (STUN/TURN) the live stream may use, as a JSON list of RTCIceServer dicts
(`[{"urls": ["stun:stun.example.org:3478"]}]`). Empty by default: on localhost, or a LAN, the
browser and the server reach each other directly and nothing is asked of the internet."""


def ice_servers(setting=None) -> list[dict]:
    """The ICE servers from `setting` (a list, or its JSON text) or else the ICE_ENV variable;
    [] when neither is set. Each entry must be a dict with "urls"; anything else raises
    ValueError (a wrong setting is said, not silently replaced by a public server)."""
    if setting is None or setting == "":
        setting = os.environ.get(ICE_ENV, "").strip()
    if isinstance(setting, str):
        if not setting:
            return []
        try:
            setting = json.loads(setting)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{ICE_ENV}: not JSON ({exc})") from None
    servers = [dict(s) for s in setting] if isinstance(setting, (list, tuple)) else None
    if servers is None or any("urls" not in s for s in servers):
        raise ValueError('ICE servers: a list of {"urls": [...], "username": ..., "credential": ...}')
    return servers


def iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when either is empty."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def find_regions(rgb: np.ndarray, detect_side: int = DETECT_SIDE) -> list[faces.FaceRegion]:
    """`faces.find_faces` run on a copy whose longest side is at most `detect_side`, its
    regions mapped back and cut from the full-size frame (kinds and rules unchanged)."""
    height, width = rgb.shape[:2]
    scale = min(1.0, detect_side / max(height, width))
    if scale >= 1.0:
        return faces.find_faces(rgb)
    small = images.resize_to(rgb, (max(1, round(width * scale)), max(1, round(height * scale))))
    fx, fy = width / small.shape[1], height / small.shape[0]
    out = []
    for r in faces.find_faces(small):
        if r.kind == "no_face":
            return [faces.whole_image_region(rgb, kind="no_face")]
        x, y, w, h = r.face_box
        x0, y0 = int(round(x * fx)), int(round(y * fy))
        face_box = (x0, y0, max(1, min(width - x0, int(round(w * fx)))), max(1, min(height - y0, int(round(h * fy)))))
        if r.kind == "face_crop":
            out.append(faces.FaceRegion(box=(0, 0, width, height), face_box=face_box, confidence=r.confidence,
                                        kind="face_crop", crop=rgb))
        else:
            sx, sy, side, _ = faces.square_box(face_box, rgb.shape)
            out.append(faces.FaceRegion(box=(sx, sy, side, side), face_box=face_box, confidence=r.confidence,
                                        kind="face", crop=rgb[sy:sy + side, sx:sx + side].copy()))
    return out


@dataclass(frozen=True)
class Label:
    """One face as drawn on the returned frames."""
    track: int
    box: tuple[int, int, int, int]  # drawn box: the face square, or the face itself when judged whole
    verdict: str
    p_fake: float                   # the track's smoothed P(fake)
    frames: int                     # how many analysed frames the smoothing averaged

    @property
    def text(self) -> str:
        if self.verdict in inference.NOT_JUDGED:
            return self.verdict
        return f"{self.verdict} {self.p_fake:.2f}"


class Track:
    """One face followed across analysed frames: its last WINDOW scores and its box."""

    def __init__(self, track_id: int, region: faces.FaceRegion, window: int):
        self.id = track_id
        self.p = deque(maxlen=window)
        self.novelty = deque(maxlen=window)
        self.misses = 0
        self.update(region, None, None)

    def update(self, region: faces.FaceRegion, p_fake: float | None, novelty: float | None) -> None:
        self.region = region
        self.misses = 0
        if p_fake is not None:
            self.p.append(float(p_fake))
        if novelty is not None:
            self.novelty.append(float(novelty))

    @property
    def match_box(self) -> tuple:
        return self.region.face_box or self.region.box

    @property
    def p_fake(self) -> float:
        return float(np.mean(self.p))

    def label(self, threshold: float, band: float) -> Label:
        """The one labelling rule (`inference.judged_verdict`) on the smoothed scores."""
        nov = float(np.mean(self.novelty)) if self.novelty else None
        r = self.region
        verdict = inference.judged_verdict(self.p_fake, threshold, band, r.kind, r.box, nov)
        box = r.box if r.kind == "face" else (r.face_box or r.box)
        return Label(self.id, tuple(int(v) for v in box), verdict, self.p_fake, len(self.p))


@dataclass(frozen=True)
class LiveStats:
    """What the page shows under the stream (and the bench prints)."""
    returned: int        # frames sent back
    processed: int       # frames analysed (faces found and scored)
    labelled: int        # frames sent back carrying at least one face label
    seconds: float       # since the first frame
    analyse_ms: float    # mean time of one analysis
    labels: tuple[Label, ...]  # the newest labels
    error: str = ""      # the last analysis failure, "" when none

    @property
    def processed_fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def returned_fps(self) -> float:
        return self.returned / self.seconds if self.seconds > 0 else 0.0


class LiveProcessor:
    """Frames in, the same frames out with each face boxed and labelled. Thread-safe: the
    streamlit-webrtc worker calls it, the page reads `stats()` and `snapshot()` and sets
    `configure()` from its own thread."""

    def __init__(self, detector, threshold: float | None = None, band: float = 0.0, *,
                 detect_side: int = DETECT_SIDE, window: int = WINDOW, background: bool = True):
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self.detect_side = int(detect_side)
        self.window = int(window)
        self.background = background
        self.detector = detector
        self.threshold = float(detector.threshold if threshold is None else threshold)
        self.band = float(band)
        self._tracks: list[Track] = []
        self._next_id = 1
        self._labels: tuple[Label, ...] = ()
        self._no_face = False
        self._pending: np.ndarray | None = None
        self._last: np.ndarray | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._returned = self._processed = self._labelled = 0
        self._analyse_s = 0.0
        self._t0: float | None = None
        self._error = ""

    # --- settings and read-outs (the page's thread) --------------------------------------------
    def configure(self, detector=None, threshold: float | None = None, band: float | None = None) -> None:
        """The page's current settings. Another model starts the tracks afresh."""
        with self._lock:
            if detector is not None and detector is not self.detector:
                self.detector = detector
                self._tracks, self._labels = [], ()
            if threshold is not None:
                self.threshold = float(threshold)
            if band is not None:
                self.band = float(band)

    def snapshot(self) -> np.ndarray | None:
        """A copy of the newest raw frame (RGB, unlabelled), or None before the first."""
        with self._lock:
            return None if self._last is None else self._last.copy()

    def stats(self) -> LiveStats:
        with self._lock:
            seconds = 0.0 if self._t0 is None else time.perf_counter() - self._t0
            ms = 1000 * self._analyse_s / self._processed if self._processed else 0.0
            return LiveStats(self._returned, self._processed, self._labelled, seconds, ms, self._labels,
                             self._error)

    def reset_counts(self) -> None:
        with self._lock:
            self._returned = self._processed = self._labelled = 0
            self._analyse_s, self._t0 = 0.0, None

    # --- analysis --------------------------------------------------------------------------------
    def analyse(self, rgb: np.ndarray) -> tuple[Label, ...]:
        """Find and score the faces of one RGB frame, update the tracks, return their labels."""
        t0 = time.perf_counter()
        with self._lock:
            detector = self.detector
        regions = find_regions(rgb, self.detect_side)
        no_face = len(regions) == 1 and regions[0].kind == "no_face"
        scored = None if no_face else detector.score_crops([r.crop for r in regions])
        with self._lock:
            if detector is not self.detector:  # the model changed meanwhile: these scores are stale
                return self._labels
            if no_face:
                matched = []
            else:
                novelty = [None] * len(regions) if scored.novelty is None else list(scored.novelty)
                matched = self._match(regions, list(scored.p_fake), novelty)
            self._labels = tuple(t.label(self.threshold, self.band) for t in matched)
            self._no_face = no_face
            self._processed += 1
            self._analyse_s += time.perf_counter() - t0
            return self._labels

    def _match(self, regions, p_fake, novelty) -> list[Track]:
        """Greedy IoU matching of the new regions to the tracks (best overlaps first)."""
        pairs = sorted(((iou(r.face_box or r.box, t.match_box), i, j) for i, r in enumerate(regions)
                        for j, t in enumerate(self._tracks)), reverse=True)
        used_r, used_t, matched = set(), set(), {}
        for overlap, i, j in pairs:
            if overlap < MATCH_IOU:
                break
            if i in used_r or j in used_t:
                continue
            used_r.add(i)
            used_t.add(j)
            matched[i] = self._tracks[j]
        for i, region in enumerate(regions):
            if i not in matched:
                matched[i] = Track(self._next_id, region, self.window)
                self._next_id += 1
                self._tracks.append(matched[i])
            matched[i].update(region, p_fake[i], novelty[i])
        live = {id(t) for t in matched.values()}
        for t in self._tracks:
            if id(t) not in live:
                t.misses += 1
        self._tracks = [t for t in self._tracks if t.misses < MAX_MISSES]
        return [matched[i] for i in range(len(regions))]

    def _worker(self) -> None:
        while True:
            with self._wake:
                if self._pending is None and not self._stopped:
                    self._wake.wait(IDLE_EXIT_S)
                frame, self._pending = self._pending, None
                if frame is None or self._stopped:
                    self._thread = None
                    return
            try:
                self.analyse(frame)
            except Exception as exc:  # the stream goes on; the page shows what failed
                with self._lock:
                    self._error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        """End the analysis thread (the stream ended); a new frame starts it again."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        with self._lock:
            self._stopped = False

    # --- the frame callback ----------------------------------------------------------------------
    def process(self, rgb: np.ndarray) -> np.ndarray:
        """One frame of the stream (RGB uint8 HxWx3) -> the frame to send back, labelled."""
        images.check_rgb(rgb)
        with self._wake:
            if self._t0 is None:
                self._t0 = time.perf_counter()
            self._last = rgb
            if self.background:
                self._pending = rgb
                if self._thread is None:
                    self._thread = threading.Thread(target=self._worker, name="live-analysis", daemon=True)
                    self._thread.start()
                self._wake.notify()
        if not self.background:
            try:
                self.analyse(rgb)
            except Exception as exc:
                with self._lock:
                    self._error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            labels, no_face = self._labels, self._no_face
            seconds = time.perf_counter() - self._t0
            rate = f"analysed {self._processed / seconds:.1f} frames/s" if seconds >= 1 else ""
        out = draw(rgb, labels, note="no face found" if no_face else "", status=rate)
        with self._lock:
            self._returned += 1
            self._labelled += bool(labels)
        return out

    def video_frame_callback(self, frame):
        """streamlit-webrtc's `video_frame_callback`: av.VideoFrame in, av.VideoFrame out."""
        import av

        out = self.process(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(out, format="rgb24")


def draw(rgb: np.ndarray, labels, note: str = "", status: str = "") -> np.ndarray:
    """A copy of the frame with each label's box and text in its verdict's colour (the colours
    of the Detect page's pictures, `report.VERDICT_COLOURS`); `note` on grey at the top left,
    `status` (the analysis rate) in small white text at the bottom left."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(rgb))
    pen = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 250))
    font = report._font(max(12, round(max(img.size) / 40)))
    for lab in labels:
        colour = report.VERDICT_COLOURS[lab.verdict]
        x, y, w, h = lab.box
        x1, y1 = min(img.width - 1, x + w - 1), min(img.height - 1, y + h - 1)
        pen.rectangle([x, y, x1, y1], outline=colour, width=width)
        tb = pen.textbbox((0, 0), lab.text, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = y - th - 2 * width if y - th - 2 * width >= 0 else y + width
        pen.rectangle([x, ty, x + tw + 2 * width, ty + th + 2 * width], fill=colour)
        pen.text((x + width, ty + width - tb[1]), lab.text, fill=(255, 255, 255), font=font)
    if note:
        tb = pen.textbbox((0, 0), note, font=font)
        pen.rectangle([0, 0, tb[2] - tb[0] + 2 * width, tb[3] - tb[1] + 2 * width],
                      fill=report.VERDICT_COLOURS[inference.NO_FACE])
        pen.text((width, width - tb[1]), note, fill=(255, 255, 255), font=font)
    if status:
        small = report._font(max(10, round(max(img.size) / 60)))
        tb = pen.textbbox((0, 0), status, font=small)
        pen.text((width, img.height - (tb[3] - tb[1]) - 2 * width - tb[1]), status, fill=(255, 255, 255),
                 font=small, stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(img)


def frame_png(rgb: np.ndarray) -> bytes:
    """A frame as PNG bytes, in memory (the frozen frame handed to the Detect path)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


# --- clips: the bench's input and the browser test's fake camera ---------------------------------
def around_face(rgb: np.ndarray, context: float = 1.8) -> np.ndarray:
    """A square cut of a photo around its largest face, `context` times the face's 1.3x square
    (the whole photo when no face is found): a picture to put in a clip at webcam scale."""
    found = [r for r in faces.find_faces(rgb) if r.face_box is not None]
    if not found:
        return rgb
    x, y, w, h = max((r.face_box for r in found), key=lambda b: b[2] * b[3])
    sx, sy, side, _ = faces.square_box((x, y, w, h), rgb.shape, margin=faces.MARGIN * context)
    return rgb[sy:sy + side, sx:sx + side].copy()


def demo_clip(pictures: list[np.ndarray], n_frames: int = 60, size: tuple[int, int] = (640, 480),
              face_side: int = 300) -> list[np.ndarray]:
    """`n_frames` RGB frames of `size` (width, height): the pictures (face photos), each scaled to
    `face_side`, side by side on a grey background, drifting a few pixels per frame as a hand-held
    camera would."""
    width, height = size
    tiles = [images.resize_to(p, face_side) for p in pictures]
    gap = max(0, (width - face_side * len(tiles)) // (len(tiles) + 1))
    frames = []
    for i in range(n_frames):
        frame = np.full((height, width, 3), 96, np.uint8)
        dx = int(round(12 * np.sin(2 * np.pi * i / max(n_frames, 1))))
        dy = int(round(8 * np.cos(2 * np.pi * i / max(n_frames, 1))))
        for k, tile in enumerate(tiles):
            x = min(max(0, gap + k * (face_side + gap) + dx), width - face_side)
            y = min(max(0, (height - face_side) // 2 + dy), height - face_side)
            frame[y:y + face_side, x:x + face_side] = tile
        frames.append(frame)
    return frames


def y4m_bytes(frames: list[np.ndarray], fps: int = 15) -> bytes:
    """Frames (RGB, even width and height) as a YUV4MPEG2 (4:2:0) file's bytes: what chromium's
    `--use-file-for-fake-video-capture` plays as a camera."""
    h, w = frames[0].shape[:2]
    out = [f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode()]
    for rgb in frames:
        f = rgb.astype(np.float32)
        r, g, b = f[..., 0], f[..., 1], f[..., 2]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        u = (b - y) * 0.564 + 128
        v = (r - y) * 0.713 + 128
        sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
        planes = [np.clip(p, 0, 255).round().astype(np.uint8) for p in (y, sub(u), sub(v))]
        out.append(b"FRAME\n" + b"".join(p.tobytes() for p in planes))
    return b"".join(out)


def read_y4m(data: bytes) -> list[np.ndarray]:
    """The RGB frames of a 4:2:0 YUV4MPEG2 file's bytes (`y4m_bytes`' inverse, up to rounding)."""
    header, _, rest = data.partition(b"\n")
    fields = header.split()
    if not fields or fields[0] != b"YUV4MPEG2":
        raise ValueError("not a YUV4MPEG2 file")
    w = int(next(f[1:] for f in fields if f.startswith(b"W")))
    h = int(next(f[1:] for f in fields if f.startswith(b"H")))
    n = w * h + 2 * (w // 2) * (h // 2)
    frames = []
    while rest.startswith(b"FRAME"):
        _, _, rest = rest.partition(b"\n")
        buf = np.frombuffer(rest[:n], np.uint8)
        rest = rest[n:]
        y = buf[:w * h].reshape(h, w).astype(np.float32)
        u = buf[w * h:w * h + (w // 2) * (h // 2)].reshape(h // 2, w // 2).astype(np.float32) - 128
        v = buf[w * h + (w // 2) * (h // 2):].reshape(h // 2, w // 2).astype(np.float32) - 128
        u, v = (np.repeat(np.repeat(c, 2, axis=0), 2, axis=1) for c in (u, v))
        r, b = y + v / 0.713, y + u / 0.564
        g = (y - 0.299 * r - 0.114 * b) / 0.587
        frames.append(np.clip(np.stack([r, g, b], -1), 0, 255).round().astype(np.uint8))
    return frames
