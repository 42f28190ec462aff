"""Speed and size of the shipped models on this machine.

    python -m detector bench [--model NAME] [--json] [--repeats N]

Per model: parameters, file size, GFLOPs per image (counted from the Keras graph), forward
throughput at batch 32, single-image latency, and end-to-end latency for one 1024 px photo
with one face (JPEG bytes -> decode -> MTCNN -> crop -> score), with and without Grad-CAM,
and the extra cost of the stability check on that photo (its face re-scored after a JPEG
q70 re-save, a 0.5x down-and-up scale and a crop shift: `detector.stability`).

Every timing excludes a warm-up run and is the median (or p95) of `repeats` runs; the
single-image latency takes 4x as many samples because it is cheap and its p95 needs them.
All timings go through the serving path (`inference.Detector`), so they are what the app
and the CLI pay.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np

from detector import images, store

BATCH = 32
PHOTO_SIZE = (1024, 768)  # (width, height)
FACE_SIDE = 300


# --------------------------------------------------------------------------- #
# FLOPs
# --------------------------------------------------------------------------- #
def _spatial(shape, data_format: str) -> int:
    """Product of the spatial dims of a batch-of-one output shape."""
    dims = shape[2:] if data_format == "channels_first" else shape[1:-1]
    return int(np.prod([int(d) for d in dims])) if len(dims) else 1


def layer_macs(layer, output_shape) -> int:
    """Multiply-accumulates of one call of a conv / dense layer (batch of one), else 0.

    Conv2D: out_pixels * prod(kernel) (kernel = kh*kw*cin/groups*cout);
    DepthwiseConv2D: out_pixels * kh*kw*cin*multiplier;
    SeparableConv2D: out_pixels * (depthwise kernel + pointwise kernel);
    Dense: prod(leading output dims) * in*units. Biases, BatchNorm and activations are not
    counted (they are a rounding error next to the convolutions)."""
    import keras

    fmt = getattr(layer, "data_format", "channels_last")
    if isinstance(layer, keras.layers.SeparableConv2D):
        return _spatial(output_shape, fmt) * (int(np.prod(layer.depthwise_kernel.shape))
                                              + int(np.prod(layer.pointwise_kernel.shape)))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _spatial(output_shape, fmt) * int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Conv2D):
        return _spatial(output_shape, fmt) * int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod([int(d) for d in output_shape[1:-1]] or [1])) * int(np.prod(layer.kernel.shape))
    return 0


def _all_layers(model) -> list:
    """Every layer, nested ones included (sub-models, and layers owned by custom layers such
    as `SpatialAttention`'s conv, which never appear in the functional graph)."""
    seen, out = set(), []

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        out.append(layer)
        for child in getattr(layer, "_layers", None) or []:
            visit(child)

    for layer in model.layers:
        visit(layer)
    return out


def count_flops(model, input_shape: tuple[int, ...] | None = None) -> int:
    """FLOPs (2 x MACs) of one forward pass on ONE image, summed over every call of every
    Conv2D / DepthwiseConv2D / SeparableConv2D / Dense layer.

    The output shape of each call is recorded during one eager forward pass, so shared
    layers count once per call and layers inside custom layers are included. The layers'
    `call` is wrapped for that pass only and restored afterwards."""
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
             keras.layers.Dense)
    if input_shape is None:
        input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    total = [0]
    patched = []

    def wrap(layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            total[0] += layer_macs(layer, tuple(out.shape))
            return out

        patched.append((layer, vars(layer).get("call")))  # an instance-level call, if any
        object.__setattr__(layer, "call", call)

    try:
        for layer in _all_layers(model):
            if isinstance(layer, kinds):
                wrap(layer)
        model(np.zeros((1, *input_shape), np.float32), training=False)
    finally:
        for layer, own in patched:
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)
    return 2 * total[0]


# --------------------------------------------------------------------------- #
# Timing
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=1)
def test_photo() -> bytes:
    """JPEG bytes of a 1024x768 photo with exactly one face: scikit-image's astronaut
    (public domain) scaled to ~300 px on a plain gradient."""
    from skimage import data as skdata

    width, height = PHOTO_SIZE
    ramp = np.linspace(200, 110, width).round().astype(np.uint8)
    canvas = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2)
    face = images.resize_to(skdata.astronaut(), FACE_SIDE)
    x, y = (width - FACE_SIDE) // 2, (height - FACE_SIDE) // 2
    canvas[y:y + FACE_SIDE, x:x + FACE_SIDE] = face
    return images.encode_jpeg(canvas, 90)


def _times(fn, repeats: int, warmup: int = 1) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return np.array(out)


def cpu_name() -> str:
    """'<model name from /proc/cpuinfo>, N cores' (cores this process may use)."""
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        import platform

        name = platform.processor() or name
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return f"{name}, {cores} cores"


def bench_model(name_or_path=None, repeats: int = 5, seed: int = 0) -> dict:
    """All numbers for one model (see the module docstring)."""
    from detector import inference

    det = inference.load_detector(name_or_path)
    folder = Path(det.card["dir"])
    size = det.size
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)
    one = batch[:1]

    batch_t = _times(lambda: det.score_batch(batch), repeats)
    single_t = _times(lambda: det.score_batch(one), 4 * repeats)
    photo = test_photo()
    result = det.analyze_source(photo)  # also the warm-up of MTCNN
    faces = [f.region.kind for f in result.faces]
    e2e_t = _times(lambda: det.analyze_source(photo), repeats)
    cam_t = _times(lambda: det.analyze_source(photo, gradcam=True), repeats)
    from detector import faces as faces_mod
    from detector import stability

    rgb = images.decode_image(photo)
    regions = faces_mod.find_faces(rgb)
    stab_t = _times(lambda: stability.rescore(rgb, regions, [det]), repeats)
    return {
        "name": det.name,
        "params": int(det.model.count_params()),
        "file_mb": round((folder / store.MODEL_FILE).stat().st_size / 1e6, 2),
        "input_size": size,
        "gflops": count_flops(det.model) / 1e9,
        "batch_ips": round(BATCH / float(np.median(batch_t)), 2),
        "latency_ms_p50": round(1e3 * float(np.median(single_t)), 2),
        "latency_ms_p95": round(1e3 * float(np.percentile(single_t, 95)), 2),
        "e2e_ms_p50": round(1e3 * float(np.median(e2e_t)), 1),
        "e2e_gradcam_ms_p50": round(1e3 * float(np.median(cam_t)), 1),
        "stability_ms_p50": round(1e3 * float(np.median(stab_t)), 1),  # extra per image with one face
        "e2e_faces": faces,
        "gradcam": bool(det.gradcam_layer),
        "repeats": repeats,
    }


def bench(models: list | None = None, repeats: int = 5, root: Path | None = None,
          record: bool = False) -> dict:
    """Bench `models` (names or folders; default: every model under `root`, i.e. the shipped
    ones in `store.MODELS_DIR`). One JSON-ready dict:
    {"models": {name: {...}}, "default": name, "cpu": "..."}. With `record`, each model's
    numbers are also written into its card (`card["bench"]`)."""
    root = Path(root) if root is not None else store.MODELS_DIR
    names = list(models) if models else [root / n for n in store.model_names(root)]
    if not names:
        raise store.ModelNotFoundError(f"no trained models found in {root}")
    out = {}
    cpu = cpu_name()
    for n in names:
        r = bench_model(n, repeats)
        name = r.pop("name")
        out[name] = r
        if record:  # the comparison page shows these as "ms per image"
            store.update_card(n, bench={**r, "cpu": cpu, "measured": time.strftime("%Y-%m-%d")})
    return {"models": out, "default": store.default_model_name(root), "cpu": cpu}


def format_table(result: dict) -> str:
    lines = [f"CPU: {result['cpu']}; batch {BATCH}; medians after a warm-up", "",
             f"{'model':<26}{'size':>5}{'params':>12}{'MB':>7}{'GFLOPs':>8}{'img/s':>8}"
             f"{'1 img p50':>11}{'p95':>8}{'photo p50':>11}{'+Grad-CAM':>11}{'+stability':>12}"]
    for name, m in result["models"].items():
        star = "*" if name == result.get("default") else " "
        lines.append(f"{star}{name:<25}{m['input_size']:>5}{m['params']:>12,}{m['file_mb']:>7.1f}"
                     f"{m['gflops']:>8.2f}{m['batch_ips']:>8.1f}{m['latency_ms_p50']:>9.1f}ms"
                     f"{m['latency_ms_p95']:>6.1f}ms{m['e2e_ms_p50']:>9.0f}ms{m['e2e_gradcam_ms_p50']:>9.0f}ms"
                     + (f"{m['stability_ms_p50']:>10.0f}ms" if m.get("stability_ms_p50") is not None else ""))
        if m["e2e_faces"] != ["face"]:
            lines.append(f"  note: the test photo gave regions {m['e2e_faces']}, expected one face")
        if not m["gradcam"]:
            lines.append("  note: no Grad-CAM layer on the card; the +Grad-CAM time adds nothing")
    lines += ["", "photo = one 1024x768 JPEG with one face: decode + MTCNN + crop + score (ms)",
              "+stability = the stability check's extra cost on that photo (3 perturbed crops re-scored)",
              "* = default model"]
    return "\n".join(lines)
