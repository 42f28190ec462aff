"""Datasets: labelled folders -> frames of paths -> pixel arrays -> tf.data pipelines.

A dataset root holds `real/` and `fake/` folders, or `train/ val/ test/` splits that each
hold them; `label_of` is the one labelling rule (the deepest folder named real or fake, any
case, at any depth; hidden files and `__MACOSX/` never count). A `MANIFEST.csv` (columns `path,label,source`) beside the splits, or one level
up, adds the source of every image so results can be broken down per source.

Pixels go through `images.decode_image` and `images.resize_to` only: the very functions the
app and the CLI use, so training sees what serving sees. Images in these folders are face
crops already (see `faces.FACE_CROP_FRACTION`), so they are used whole.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from detector import images, roots

log = logging.getLogger(__name__)

CLASS_NAMES = ("real", "fake")  # index = label: 1 means fake
SPLITS = ("train", "val", "test")
_JUNK_FOLDERS = {"__macosx"}
CACHE_ENV = "DEEPFAKE_LAB_CACHE"
CACHE_MAX_ENV = "DEEPFAKE_LAB_CACHE_MAX_MB"
CACHE_MAX_MB = 2048
"""Default size cap of the cache folder (pixel arrays and `features_*` folders together), in
MB; `DEEPFAKE_LAB_CACHE_MAX_MB` sets another (0 or less: no cap). Beyond it the oldest files
go (`trim_cache`): everything in the cache can be made again from the images."""
CACHE_GRACE_S = 600
"""Files written this recently are never removed by `trim_cache`: another process (a
training or generalisation run) may be about to read back what it has just written."""


def cache_dir() -> Path:
    """Where decoded pixel arrays are kept between runs (never inside the repo)."""
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "deepfake-lab"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_limit_bytes() -> int | None:
    """The cache's size cap in bytes (`DEEPFAKE_LAB_CACHE_MAX_MB`, default `CACHE_MAX_MB`);
    None when switched off (0 or less)."""
    try:
        mb = float(os.environ.get(CACHE_MAX_ENV, CACHE_MAX_MB))
    except ValueError:
        mb = CACHE_MAX_MB
    return int(mb * 1024 ** 2) if mb > 0 else None


def _cache_files(root: Path) -> list[tuple[float, int, Path]]:
    """(mtime, size, path) of the cache's own files: `pixels_*.npy` at the top and the
    `.npy` files of the `features_*` folders; nothing else in the folder is touched."""
    found = []
    candidates = [*root.glob("pixels_*.npy"), *(f for sub in root.glob("features_*") if sub.is_dir()
                                              for f in sub.glob("*.npy"))]
    for path in candidates:
        try:
            st = path.stat()
        except OSError:  # removed meanwhile by another process
            continue
        found.append((st.st_mtime, st.st_size, path))
    return found


def trim_cache(max_bytes: int | None = -1, *, root: str | Path | None = None, keep=(),
               grace_s: float = CACHE_GRACE_S) -> list[Path]:
    """Remove the oldest cache files (by modification time; a pixel array read back is
    touched, so this is least recently used for those) until the cache holds at most
    `max_bytes` (-1: `cache_limit_bytes()`; None: no cap, nothing removed). Files in `keep`
    and files written in the last `grace_s` seconds stay, even if the cache stays over its
    cap. Returns the removed paths."""
    if max_bytes == -1:
        max_bytes = cache_limit_bytes()
    if max_bytes is None:
        return []
    root = Path(root) if root is not None else cache_dir()
    files = sorted(_cache_files(root), key=lambda f: f[0])
    total = sum(size for _, size, _ in files)
    keep = {Path(p).resolve() for p in keep}
    removed, now = [], time.time()
    for mtime, size, path in files:
        if total <= max_bytes:
            break
        if now - mtime < grace_s or path.resolve() in keep:
            continue
        try:
            path.unlink()
        except FileNotFoundError:  # another process trimmed it first
            pass
        except OSError as exc:
            log.warning("cannot remove cache file %s: %s", path, exc)
            continue
        total -= size
        removed.append(path)
    if removed:
        log.info("cache %s over its cap: removed %d oldest file(s)", root, len(removed))
    return removed


def path_parts(path: str | os.PathLike) -> list[str]:
    """The names of a relative path (either slash), without empty and "." parts."""
    return [p for p in PurePosixPath(os.fspath(path).replace("\\", "/")).parts if p not in ("", "/", ".")]


def is_junk(path: str | os.PathLike) -> bool:
    """A relative path that is nobody's file: a hidden file, anything in a hidden folder,
    macOS's `__MACOSX/` (any case). Never labelled, never listed."""
    parts = path_parts(path)
    return not parts or any(p.startswith(".") or p.lower() in _JUNK_FOLDERS for p in parts)


def label_of(path: str | os.PathLike) -> tuple[str, str] | None:
    """THE labelling rule: (label, source) of a path relative to the folder being read, or
    None. The label is the deepest folder named real or fake (any case); the folder right
    below it, if any, is the source; junk (`is_junk`) is never labelled. Training and
    evaluation (`scan`), the audit and the learning curve, the Compare page's labelled
    folders and zips and the Detect page's folder listings all label through it."""
    if is_junk(path):
        return None
    folders = path_parts(path)[:-1]
    for i in range(len(folders) - 1, -1, -1):
        name = folders[i].lower()
        if name in CLASS_NAMES:
            return name, (folders[i + 1] if i + 1 < len(folders) else "")
    return None


def _labelled_files(folder: Path) -> list[tuple[Path, int]]:
    """(path, label index) of every image below `folder` that `label_of` labels."""
    files = set(images.list_images(folder))
    for sub in folder.iterdir():  # a linked folder just below (real/ -> elsewhere) is followed, as
        if sub.is_symlink() and sub.is_dir():  # list_images(folder / "real") always did
            files.update(images.list_images(sub))
    rows = []
    for p in sorted(files):
        found = label_of(p.relative_to(folder))
        if found is not None:
            rows.append((p, CLASS_NAMES.index(found[0])))
    return sorted(rows, key=lambda r: r[1])  # reals first, then fakes, each in path order (stable)


def _read_manifest(root: Path, confine: bool = False) -> tuple[Path, pd.DataFrame] | None:
    for folder in (root,) if confine else (root, root.parent):
        path = folder / "MANIFEST.csv"
        if path.is_file() and (not confine or roots.inside(path, [root])):
            return folder, pd.read_csv(path, dtype=str, keep_default_na=False)
    return None


def scan(root: str | Path, *, confine: bool = False) -> pd.DataFrame:
    """Every labelled image under `root` as a frame: path, rel, split, label, source.

    `split` is train/val/test when the root holds split folders, the root's own name when
    the root itself is one of those split folders, else "all".

    `confine=True` (what the web app's audit and learning curve read through): a file whose
    real location (symlinks followed) is outside `root` is not listed (a link to a file, or a
    real/, fake/ or split folder that is a link out), and MANIFEST.csv is read only from
    `root` itself, not its parent; `frame.attrs["links_out"]` lists the skipped files as
    (rel, split, label). The default follows links, as training from the command line does.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    found = [s for s in SPLITS if (root / s).is_dir()]
    if found:
        parts = [(s, _labelled_files(root / s)) for s in found]
    else:
        parts = [(root.name if root.name in SPLITS else "all", _labelled_files(root))]
    rows = [(str(p), split, label) for split, files in parts for p, label in files]
    links_out = []
    if confine:
        kept = [roots.inside(r[0], [root]) for r in rows]
        links_out = [(os.path.relpath(r[0], root).replace(os.sep, "/"), r[1], r[2]) for r, k in zip(rows, kept) if not k]
        rows = [r for r, k in zip(rows, kept) if k]
    if not rows:
        n = len(links_out)
        why = f" ({n} link{'s' * (n != 1)} to files outside this folder, not read)" if n else ""
        raise ValueError(f"no images found under {root}{why}: expected real/ and fake/ folders "
                         f"(or train/ val/ test/ splits holding them)")
    df = pd.DataFrame(rows, columns=["path", "split", "label"])
    df["source"] = ""
    manifest = _read_manifest(root, confine)
    if manifest is not None and "source" in manifest[1].columns:
        base, table = manifest
        sources = dict(zip(table["path"], table["source"]))
        rel = [os.path.relpath(p, base).replace(os.sep, "/") for p in df["path"]]
        df["source"] = [sources.get(r, "") for r in rel]
    df["rel"] = [os.path.relpath(p, root).replace(os.sep, "/") for p in df["path"]]
    df = df[["path", "rel", "split", "label", "source"]]
    df.attrs["links_out"] = links_out
    return df


def ensure_splits(df: pd.DataFrame, seed: int = 42, val_fraction: float = 0.15,
                  test_fraction: float = 0.15) -> dict[str, pd.DataFrame]:
    """train/val/test frames; a folder without splits is split here, stratified and seeded."""
    if set(df["split"]) & {"train"}:
        return {s: df[df["split"] == s].reset_index(drop=True) for s in SPLITS}
    from sklearn.model_selection import train_test_split

    strata = df["label"].astype(str) + "/" + df["source"]
    rest, test = train_test_split(df, test_size=test_fraction, random_state=seed, stratify=strata)
    strata = rest["label"].astype(str) + "/" + rest["source"]
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  random_state=seed, stratify=strata)
    out = {"train": train, "val": val, "test": test}
    return {s: f.assign(split=s).reset_index(drop=True) for s, f in out.items()}


def source_weights(df: pd.DataFrame, power: float = 0.5) -> np.ndarray:
    """Per-sample loss weights that lift minority sources (w ~ n_source^-power, mean 1),
    so a rare kind of fake is not drowned out by the common one."""
    counts = df["source"].map(df["source"].value_counts()).to_numpy(dtype="float64")
    w = counts ** -power
    return (w / w.mean()).astype("float32")


def _cache_key(paths: list[str], size: int) -> str:
    h = hashlib.sha1(f"v1|{size}".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"|{p}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:20]


def load_pixels(paths: list[str], size: int, *, use_cache: bool = True,
                progress: bool = True) -> np.ndarray:
    """(N, size, size, 3) uint8 through the one decoder and the one resize; cached on disk."""
    paths = [str(p) for p in paths]
    target = cache_dir() / f"pixels_{_cache_key(paths, size)}.npy" if use_cache else None
    if target is not None and target.exists():
        try:
            os.utime(target)  # recently used: trim_cache removes the least recently used first
            return np.load(target, mmap_mode=None)
        except (FileNotFoundError, ValueError, EOFError):  # trimmed or cut short by another process
            pass
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    iterator = paths
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(paths, desc=f"decoding {len(paths)} images", unit="img",
                        mininterval=0.2 if os.isatty(2) else 10)
    for i, p in enumerate(iterator):
        out[i] = images.resize_to(images.decode_image(p), size)
    if target is not None:
        tmp = target.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(target)
        trim_cache(keep=[target])
    return out


# --- augmentation (training only) -------------------------------------------------------

def _gaussian_blur(img, sigma):
    import tensorflow as tf

    radius = 3
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-(x ** 2) / (2.0 * sigma ** 2))
    k = k / tf.reduce_sum(k)
    kernel = tf.tile(tf.reshape(tf.tensordot(k, k, axes=0), (2 * radius + 1, 2 * radius + 1, 1, 1)),
                     (1, 1, 3, 1))
    padded = tf.pad(img[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


def augment_image(img, strength: float = 1.0):
    """One uint8 HxWx3 tensor -> float32 0..255, randomly perturbed the way images are
    perturbed in the wild: mirror, down-and-up scaling (a small face blown up to the model's
    size), JPEG re-compression, colour shifts, blur. Geometry (rotation/zoom) is done per
    batch by Keras layers in `make_dataset`."""
    import tensorflow as tf

    img = tf.image.random_flip_left_right(img)
    if strength > 0:
        img = tf.cond(tf.random.uniform(()) < 0.25 * strength, lambda: _down_up(img), lambda: img)
        img = tf.cond(tf.random.uniform(()) < 0.3 * strength,
                      lambda: tf.image.random_jpeg_quality(img, 50, 95), lambda: img)
    x = tf.cast(img, tf.float32) / 255.0
    if strength > 0:
        x = tf.image.random_brightness(x, 0.08 * strength)
        x = tf.image.random_contrast(x, 1 - 0.15 * strength, 1 + 0.15 * strength)
        x = tf.image.random_saturation(x, 1 - 0.15 * strength, 1 + 0.15 * strength)
        x = tf.cond(tf.random.uniform(()) < 0.2 * strength,
                    lambda: _gaussian_blur(x, tf.random.uniform((), 0.3, 1.2)), lambda: x)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def _down_up(img):
    """Shrink a uint8 image to 30-90% of its side and scale it back: the softness of a small
    face enlarged to the model's input, which real photos often have and crops rarely do."""
    import tensorflow as tf

    size = tf.shape(img)[:2]
    factor = tf.random.uniform((), 0.3, 0.9)
    small = tf.maximum(tf.cast(tf.cast(size, tf.float32) * factor, tf.int32), 8)
    x = tf.image.resize(tf.image.resize(img, small, method="area"), size, method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)


def make_dataset(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, *,
                 batch_size: int = 32, training: bool = False, augment: bool = True,
                 seed: int = 42, strength: float = 1.0):
    """tf.data over in-memory uint8 images; seeded shuffle and augmentation only when training."""
    import keras
    import tensorflow as tf

    tensors = (x, y.astype("float32")) if w is None else (x, y.astype("float32"), w)
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if training and augment:
        ds = ds.map(lambda img, *rest: (augment_image(img, strength), *rest),
                    num_parallel_calls=tf.data.AUTOTUNE)
        geometry = keras.Sequential([keras.layers.RandomRotation(0.03, fill_mode="reflect", seed=seed),
                                     keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed)])
        ds = ds.batch(batch_size).map(lambda img, *rest: (geometry(img, training=True), *rest),
                                      num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda img, *rest: (tf.cast(img, tf.float32), *rest)).batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def stratified_folds(df: pd.DataFrame, k: int, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, held_out_idx) per fold, stratified on label and source."""
    from sklearn.model_selection import StratifiedKFold

    strata = df["label"].astype(str) + "/" + df["source"]
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(df)), strata))
