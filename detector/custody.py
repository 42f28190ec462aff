"""Chain of custody: what every export (CSV, HTML, PDF) says about how its verdicts were made,
so a result can be traced back to the exact bytes, model and software:

* the SHA-256 of each file's bytes as received (for a zip member, of the member itself);
* the model name(s) and the SHA-256 of each weights file;
* the software version (package version + git commit when the code runs from a checkout);
* the threshold and the uncertainty band; the UTC time of the export.

The HTML report ends with a line holding the SHA-256 of its own content above that line
(`seal_html` / `check_html_seal`), so an edit made after export can be detected.
"""
from __future__ import annotations

import functools
import hashlib
import subprocess
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEAL_PREFIX = "<!-- sha256 of everything above this line: "
SEAL_SUFFIX = " -->"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=32)
def _file_sha256(path: str, mtime: float, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, cached per (path, mtime, size): a weights file is hashed once."""
    p = Path(path)
    st = p.stat()
    return _file_sha256(str(p.resolve()), st.st_mtime, st.st_size)


@functools.lru_cache(maxsize=1)
def software_version() -> str:
    """"deepfake-lab <version>+git <commit>[-dirty]"; the commit part only in a git checkout."""
    try:
        from importlib.metadata import version
        pkg = version("deepfake-lab")
    except Exception:  # run from a checkout, not installed
        import detector
        pkg = getattr(detector, "__version__", "unreleased")
    commit = ""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            commit = out.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5)
            if dirty.returncode == 0 and dirty.stdout.strip():
                commit += "-dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return f"deepfake-lab {pkg}" + (f" (git {commit})" if commit else "")


def model_weights(model: str) -> dict:
    """{"model": name, "weights": file name, "sha256": ...} of a model name or folder;
    sha256 "unknown" when the folder or file cannot be found."""
    from detector import store

    try:
        folder = Path(store.resolve(model))
        weights = folder / store.MODEL_FILE
        return {"model": Path(model).name if "/" in str(model) else str(model), "weights": weights.name,
                "sha256": file_sha256(weights)}
    except Exception as exc:
        return {"model": str(model), "weights": "", "sha256": f"unknown ({type(exc).__name__})"}


def block(models: list[str], threshold: float, band: float = 0.0, *, when: datetime | None = None,
          trust_list: str | None = None) -> dict:
    """The custody block of one export: models with their weights' SHA-256, software,
    threshold, band, UTC time (and the C2PA trust list used, when given)."""
    when = when or datetime.now(timezone.utc)
    out = {"models": [model_weights(m) for m in models], "software": software_version(),
           "threshold": round(float(threshold), 4), "band": round(float(band), 4),
           "created_utc": when.astimezone(timezone.utc).isoformat(timespec="seconds")}
    if trust_list:
        out["c2pa_trust_list"] = trust_list
    return out


def lines(b: dict) -> list[str]:
    """The custody block as lines of text (HTML and PDF reports)."""
    out = [f"Model {m['model']}: weights {m['weights']} sha256 {m['sha256']}" for m in b["models"]]
    out += [f"Software: {b['software']}", f"Threshold {b['threshold']:.4f}, uncertainty band +-{b['band']:.4f}",
            f"Created (UTC): {b['created_utc']}"]
    if b.get("c2pa_trust_list"):
        out.append(f"C2PA trust list: {b['c2pa_trust_list']}")
    return out


def columns(b: dict) -> dict:
    """The custody block as constant CSV columns (one value per row, so any row read alone
    still carries it): model_sha256, software, threshold, band, created_utc."""
    return {"model_sha256": " ".join(f"{m['model']}={m['sha256']}" for m in b["models"]),
            "software": b["software"], "threshold": b["threshold"], "band": b["band"],
            "created_utc": b["created_utc"]}


def seal_html(text: str) -> str:
    """`text` followed by a last line holding the SHA-256 of `text` (UTF-8)."""
    body = text if text.endswith("\n") else text + "\n"
    return body + SEAL_PREFIX + sha256(body.encode("utf-8")) + SEAL_SUFFIX + "\n"


def check_html_seal(text: str) -> bool:
    """Whether a sealed HTML report is unchanged since export."""
    body, sep, last = text.rstrip("\n").rpartition("\n")
    if not sep or not last.startswith(SEAL_PREFIX) or not last.endswith(SEAL_SUFFIX):
        return False
    return sha256((body + "\n").encode("utf-8")) == last[len(SEAL_PREFIX):-len(SEAL_SUFFIX)]
