"""Speed of the Detect page's live camera mode (docs/performance.md, "Live camera").

Usage, from the repository root:

    python tools/live_bench.py [--model NAME] [--seconds 20] [--fps 30] [--clip CLIP.y4m]

A 640x480 clip is made in memory from the shipped sample faces (`live.demo_clip`: the real
astronaut and the face-swap fake side by side, drifting), or read from a .y4m file, and played in
real time at --fps, looping, for --seconds: each frame that is due is handed, as an av.VideoFrame,
to `LiveProcessor.video_frame_callback`, the callback the page gives streamlit-webrtc (frames that
fall due while the callback runs are skipped, as streamlit-webrtc's worker skips them). Prints the
frames sent back per second, the frames analysed (faces found and scored) per second, the mean
analysis time, and the labels at the end. Nothing is written to disk.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector import images, inference, live  # noqa: E402

SAMPLES = ("astronaut.jpg", "fake_face_swap.jpg")


def sample_clip(n_frames: int = 90) -> list:
    pictures = [live.around_face(images.decode_image(ROOT / "sample_images" / name)) for name in SAMPLES]
    return live.demo_clip(pictures, n_frames=n_frames, size=(640, 480))


def run(processor: live.LiveProcessor, frames: list, seconds: float, fps: float) -> dict:
    """Play `frames` in real time at `fps` (looping) through the processor's frame callback."""
    import av

    clip = [av.VideoFrame.from_ndarray(f, format="rgb24") for f in frames]
    start = time.perf_counter()
    last, skipped, labels = -1, 0, Counter()
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * fps)
        if due == last:
            time.sleep(max(0.0, (due + 1) / fps - now))
            continue
        skipped += max(0, due - last - 1)
        last = due
        processor.video_frame_callback(clip[due % len(clip)])
    processor.stop()
    stats = processor.stats()
    labels.update(lab.verdict for lab in stats.labels)
    return {"returned_fps": stats.returned / seconds, "processed_fps": stats.processed / seconds,
            "analyse_ms": stats.analyse_ms, "returned": stats.returned, "processed": stats.processed,
            "labelled": stats.labelled, "skipped": skipped, "labels": stats.labels, "error": stats.error}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder name (default: models/DEFAULT)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=30.0, help="the camera's frame rate")
    ap.add_argument("--clip", default=None, help="a .y4m clip instead of the sample-face clip")
    ap.add_argument("--detect-side", type=int, default=live.DETECT_SIDE)
    args = ap.parse_args(argv)

    frames = live.read_y4m(Path(args.clip).read_bytes()) if args.clip else sample_clip()
    detector = inference.load_detector(args.model)
    processor = live.LiveProcessor(detector, detect_side=args.detect_side)
    import av

    processor.video_frame_callback(av.VideoFrame.from_ndarray(frames[0], format="rgb24"))
    processor.stop()  # the first frame warms up MTCNN and the model; not counted
    processor.reset_counts()
    out = run(processor, frames, args.seconds, args.fps)
    h, w = frames[0].shape[:2]
    print(f"model {detector.name} ({'LiteRT fast path' if detector.fast is not None else 'Keras'}), "
          f"{w}x{h} clip of {len(frames)} frames at {args.fps:g} fps for {args.seconds:g} s, "
          f"faces found on a {args.detect_side} px copy")
    print(f"returned  {out['returned_fps']:.1f} frames/s ({out['returned']} frames, {out['skipped']} due while busy)")
    print(f"processed {out['processed_fps']:.1f} frames/s ({out['processed']} analysed, "
          f"{out['analyse_ms']:.0f} ms each on average)")
    print(f"labelled  {out['labelled']} returned frames carried a face label")
    print("last labels: " + (", ".join(lab.text for lab in out["labels"]) or "none"))
    if out["error"]:
        print(f"analysis error: {out['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
