"""`predict --engine ray`: score a large collection on Ray Data, on this machine or a cluster.

The rows are the plain engine's (one per face, an error row per file that does not decode,
built by `detector.batch.file_rows`), only the work is spread: the driver lists the files
(local folders, or any URL that pyarrow or fsspec can read: s3://, gs://, file://), Ray Data
hands them out in batches to actors that each hold one `inference.Detector`, read each
file's bytes, decode and find faces with the project's own code, and send back the rows.
The driver appends each file's rows to the output as they arrive, so a killed job loses
only the batches in flight; re-running with the same output skips every file whose path and
SHA-256 are already in it. Without --address a local Ray is started, sized to this machine,
and shut down at the end. Ray is optional (requirements-scale.txt); docs/scale.md.
"""
from __future__ import annotations

import csv
import logging
import os
import pickle
import sys
import time
from pathlib import Path

from detector import batch, custody, images, inference, textsafe

INT_COLUMNS = ("face", "x", "y", "w", "h")
FLOAT_COLUMNS = ("p_fake", "expert_weight", "novelty", "threshold")
BOOL_COLUMNS = ("unstable",)


class ScaleError(Exception):
    """A run that cannot start: Ray missing, no output named, an output of another model."""


def is_url(path: str) -> bool:
    return "://" in path


def list_files(sources: list[str]) -> list[str]:
    """Every image file under the sources, in order: a local folder (recursive, by
    extension, as the plain engine), a URL of a folder or file, or a file path as given
    (kept even when it is not an image, so that it gets its error row)."""
    out: list[str] = []
    for src in sources:
        if is_url(src):
            out += _list_url(src)
        elif os.path.isdir(src):
            out += [str(p) for p in images.list_images(src)]
        else:
            out.append(src)
    return out


def _list_url(url: str) -> list[str]:
    scheme = url.split("://", 1)[0]
    try:
        from pyarrow import fs as pafs

        filesystem, root = pafs.FileSystem.from_uri(url)
    except Exception:  # a scheme pyarrow does not know: fsspec's (e.g. with its s3fs/gcsfs package)
        import fsspec

        filesystem, root = fsspec.core.url_to_fs(url)
        if not filesystem.isdir(root):
            return [url]
        return sorted(filesystem.unstrip_protocol(p) for p in filesystem.find(root)
                      if Path(p).suffix.lower() in images.IMAGE_EXTENSIONS)
    info = filesystem.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        return [url]
    found = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    prefix = "file://" if scheme == "file" else f"{scheme}://"
    return sorted(prefix + f.path for f in found
                  if f.type == pafs.FileType.File and Path(f.path).suffix.lower() in images.IMAGE_EXTENSIONS)


def read_any(path: str) -> bytes | None:
    """A file's bytes from a local path or a URL; None when it cannot be read."""
    if not is_url(path):
        return batch.read_bytes(path)
    try:
        from pyarrow import fs as pafs

        filesystem, inner = pafs.FileSystem.from_uri(path)
        with filesystem.open_input_stream(inner) as fh:
            return fh.read()
    except Exception:
        try:
            import fsspec

            with fsspec.open(path, "rb") as fh:
                return fh.read()
        except Exception:
            return None


class Scorer:
    """A Ray Data actor: one Detector, built once, scores the batches it is handed. Each
    input row is a file path; each output row is that file's rows (pickled: the exact
    values the plain engine writes) and whether it was scored / not judged. A file whose
    SHA-256 matches `done[path]` was scored by an earlier run and comes back marked skipped."""

    def __init__(self, model, threshold: float, stable: bool, done: dict[str, str], threads: int = 1):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        try:  # one actor per CPU: TF's own pools would otherwise fight over every core
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TF already initialised in this process
            pass
        self.det = inference.load_detector(model)
        self.threshold = threshold
        self.stable = stable
        self.done = done

    def __call__(self, rows: dict) -> dict:
        out = {"path": [], "rows": [], "scored": [], "not_judged": [], "skipped": []}
        for path in rows["path"]:
            path = str(path)
            data = read_any(path)
            if data is not None and path in self.done and self.done[path] == custody.sha256(data):
                result, skipped = None, True
            else:
                result = batch.file_rows(path, data, self.det, self.threshold, stable=self.stable)
                skipped = False
            out["path"].append(path)
            out["rows"].append(b"" if result is None else pickle.dumps(result.rows))
            out["scored"].append(bool(result and result.scored))
            out["not_judged"].append(bool(result and result.not_judged))
            out["skipped"].append(skipped)
        return out


class Output:
    """The rows on disk, appended per batch: a .csv file, or a .parquet folder of parts
    (a Parquet file cannot be appended to; pandas/pyarrow read the folder as one table).
    `done` maps each path already in it to its SHA-256 (rows without one, files that could
    not be read, are tried again)."""

    def __init__(self, path: str, fields: list[str]):
        self.path, self.fields = path, fields
        self.parquet = path.rstrip("/").lower().endswith(".parquet")
        self.done: dict[str, str] = {}
        self.parts = 0
        if self.parquet:
            os.makedirs(path, exist_ok=True)
            parts = sorted(Path(path).glob("part-*.parquet"))
            self.parts = len(parts)
            if parts:
                import pyarrow.parquet as pq

                table = pq.read_table(parts)
                self._check(table.column_names)
                for p, s in zip(table.column("path").to_pylist(), table.column("sha256").to_pylist()):
                    if s:
                        self.done[p] = s
        elif os.path.exists(path) and os.path.getsize(path):
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                self._check(reader.fieldnames or [])
                for r in reader:
                    if r.get("sha256"):
                        self.done[r["path"]] = r["sha256"]
        else:
            with open(path, "w", newline="") as fh:
                csv.DictWriter(fh, fields).writeheader()

    def key(self, path: str) -> str:
        """How `path` is stored in this output (a CSV cell neutralises a formula-like path)."""
        return path if self.parquet else textsafe.csv_cell(path)

    def _check(self, columns: list[str]) -> None:
        if list(columns) != list(self.fields):
            raise ScaleError(f"{self.path} holds other columns (another model or --stability setting?); "
                             "name a new output to start afresh")

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.parquet:
            frame = frame_of(rows, self.fields)
            self.parts += 1
            name = Path(self.path) / f"part-{self.parts:06d}-{os.getpid()}.parquet"
            frame.to_parquet(str(name) + ".tmp", index=False)
            os.replace(str(name) + ".tmp", name)  # a part is there whole or not at all
        else:
            with open(self.path, "a", newline="") as fh:
                w = csv.DictWriter(fh, self.fields, extrasaction="ignore")
                w.writerows({k: textsafe.csv_cell(v) for k, v in r.items()} for r in rows)


def frame_of(rows: list[dict], fields: list[str]):
    """Rows as a DataFrame with one fixed type per column, so every Parquet part of a run
    (and of its resumptions) has the same schema."""
    import pandas as pd

    frame = pd.DataFrame([{k: r.get(k) for k in fields} for r in rows], columns=fields)
    for c in fields:
        if c in INT_COLUMNS:
            frame[c] = pd.to_numeric(frame[c]).astype("Int64")
        elif c in FLOAT_COLUMNS:
            frame[c] = pd.to_numeric(frame[c]).astype("float64")
        elif c in BOOL_COLUMNS:
            frame[c] = frame[c].astype("boolean")
        else:
            frame[c] = frame[c].map(lambda v: None if v is None else str(v)).astype("string")
    return frame


def start_ray(address: str | None, workers: int | None):
    """Connect to `address` (ray://host:port, or auto), or start a local Ray with this
    machine's CPUs. Returns (ray, started_here)."""
    try:
        import ray
    except ImportError as exc:
        raise ScaleError("--engine ray needs Ray: pip install -r requirements-scale.txt") from exc
    if ray.is_initialized():
        return ray, False
    root = str(Path(__file__).resolve().parent.parent)
    if address:
        # the cluster's workers get this checkout's detector package (its dependencies must be installed there)
        ray.init(address=address, runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]},
                 logging_level=logging.WARNING, log_to_driver=False)
        return ray, True
    # the local workers import detector from this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=max(os.cpu_count() or 1, workers or 1), include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=False)
    return ray, True


def run(sources: list[str], out: str, model=None, threshold: float | None = None, *, address: str | None = None,
        workers: int | None = None, batch_size: int = 16, stable: bool = False, progress: bool = True) -> dict:
    """Score every file under `sources` not already in `out`, appending its rows to `out`.
    Returns counts: files, already (skipped), scored, not_judged, failed, seconds, rate."""
    det = inference.load_detector(model)
    threshold = det.threshold if threshold is None else threshold
    block = batch.custody_block(det, threshold)
    fields = batch.fields(det, block, with_stability=stable)
    output = Output(out, fields)
    files = list_files(sources)
    done = {p: output.done[output.key(p)] for p in files if output.key(p) in output.done}
    paths_done = set(done)
    todo = [p for p in files if p not in paths_done]
    maybe_done = [p for p in files if p in paths_done]  # skipped in the actor when the SHA-256 still matches
    counts = {"files": len(files), "already": 0, "scored": 0, "not_judged": 0, "failed": 0}
    ordered = maybe_done + todo
    start = time.perf_counter()
    if ordered:
        ray, started = start_ray(address, workers)
        try:
            from ray.data import DataContext

            ctx = DataContext.get_current()
            ctx.enable_progress_bars = False  # ours below counts images, with images/s and ETA
            n_workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            ds = ray.data.from_items([{"path": p} for p in ordered],
                                     override_num_blocks=max(1, -(-len(ordered) // batch_size)))
            model_ref = det.card["dir"] if model is None else model
            ds = ds.map_batches(Scorer, batch_size=batch_size, concurrency=n_workers, num_cpus=1,
                                fn_constructor_kwargs={"model": str(model_ref), "threshold": threshold,
                                                       "stable": stable, "done": done})
            custody_cols = custody.columns(block)
            bar = _bar(len(todo), progress)
            pending: list[dict] = []
            for n, row in enumerate(ds.iter_rows(), start=1):
                if row["skipped"]:
                    counts["already"] += 1
                else:
                    if row["path"] in paths_done:  # changed since the earlier run: scored again
                        bar.total += 1
                    file_rows = pickle.loads(row["rows"])
                    for r in file_rows:
                        r.update(custody_cols)
                    pending += file_rows
                    counts["scored"] += bool(row["scored"])
                    counts["failed"] += not row["scored"]
                    counts["not_judged"] += bool(row["not_judged"])
                    bar.update(1)
                if n % batch_size == 0:
                    output.write(pending)
                    pending = []
            output.write(pending)
            bar.close()
        finally:
            if started:
                ray.shutdown()
    counts["seconds"] = time.perf_counter() - start
    counts["rate"] = (counts["scored"] + counts["failed"]) / counts["seconds"] if counts["seconds"] else 0.0
    counts["model"], counts["threshold"] = det.name, threshold
    return counts


def _bar(total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, disable=not show, smoothing=0.1)


def cmd_predict_ray(args) -> int:
    """`predict --engine ray`: the rows go to --out (.csv or .parquet) or --csv, not stdout."""
    out = getattr(args, "out", None) or args.csv
    if not out:
        print("--engine ray writes its rows to a file: add --csv out.csv or --out out.parquet", file=sys.stderr)
        return 2
    if args.pdf:
        print("--engine ray does not write the PDF report (it keeps no pictures); use the plain engine",
              file=sys.stderr)
        return 2
    try:
        c = run(args.paths, out, args.model, args.threshold, address=args.address, workers=args.workers,
                batch_size=args.batch_size, stable=args.stability)
    except ScaleError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{c['scored']} of {c['files']} images scored with {c['model']} (threshold {c['threshold']:.3f}) "
          f"on Ray in {c['seconds']:.1f} s ({c['rate']:.2f} images/s); {c['failed']} could not be read or "
          f"decoded (error rows); {c['already']} already in {out} (skipped)"
          + (f"; {c['not_judged']} image(s) NO FACE / CANNOT JUDGE (see reason)" if c["not_judged"] else ""),
          file=sys.stderr)
    return 0 if (c["scored"] + c["already"]) else 1


def bench_engines(source: str, model=None, n: int = 200, workers: tuple[int, ...] = (1, 2),
                  batch_size: int = 16) -> dict:
    """Images/s of the plain engine and of the Ray engine with each count of local workers,
    on the same first `n` images under `source`, each run end to end in a fresh interpreter
    (start-up, model loading and, for Ray, starting the local cluster and its actors
    included: what a user waits for). `ratio` is each Ray rate over the plain one."""
    import subprocess
    import tempfile

    files = [p for p in list_files([source]) if not is_url(p)][:n]
    if not files:
        raise ScaleError(f"no images under {source}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i, p in enumerate(files):  # the same files for every engine, by link
            (folder / f"{i:05d}{Path(p).suffix.lower()}").symlink_to(Path(p).resolve())
        base = [sys.executable, "-m", "detector", "predict", str(folder)] + (["--model", str(model)] if model else [])
        plans = [("plain", None, [])] + [("ray", k, ["--engine", "ray", "--workers", str(k),
                                                      "--batch-size", str(batch_size)]) for k in workers]
        root = str(Path(__file__).resolve().parent.parent)
        for engine, k, extra in plans:
            out = Path(tmp) / f"{engine}-{k}.csv"
            start = time.perf_counter()
            done = subprocess.run(base + extra + ["--csv", str(out)], cwd=root, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
            seconds = time.perf_counter() - start
            if done.returncode:
                raise ScaleError(f"{engine} engine failed: {done.stderr[-2000:]}")
            with open(out, newline="") as fh:
                rows = len({r["path"] for r in csv.DictReader(fh)})
            runs.append({"engine": engine, "workers": k or 1, "images": rows, "seconds": seconds,
                         "images_per_s": len(files) / seconds})
    plain = runs[0]["images_per_s"]
    for r in runs:
        r["ratio"] = r["images_per_s"] / plain
    return {"n": len(files), "model": model, "cpus": os.cpu_count(), "runs": runs}


def format_bench(result: dict) -> str:
    lines = [f"{result['n']} images, {result['cpus']} CPUs, end to end (start-up and model loading included)",
             f"{'engine':<8}{'workers':>8}{'seconds':>10}{'images/s':>10}{'x plain':>9}"]
    for r in result["runs"]:
        lines.append(f"{r['engine']:<8}{r['workers']:>8}{r['seconds']:>10.1f}{r['images_per_s']:>10.2f}"
                     f"{r['ratio']:>9.2f}")
    return "\n".join(lines)
